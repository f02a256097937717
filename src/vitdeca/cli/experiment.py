"""``vitdeca experiment ablation``: the paper's encoder ablation (Table 2 and figure 4) in one command.

Trains every ``configs/ablation/*.yaml`` with the same data, seed and step budget, evaluates each final
checkpoint on a NoW-layout dataset (a ``vitdeca synth`` folder or the real NoW validation set), and writes
``table.md`` (model | median | mean | std, mm) and ``curves.png`` (the training-loss curves). Runs that
already finished are not trained again. On GPUs: ``--nproc-per-node N`` starts each training under
``torchrun`` (``--launcher subprocess`` runs ``vitdeca train`` in a child process instead of in-process).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "experiment",
        help="reproduce the paper's experiments (ablation of the encoders)",
        description="Experiments that train and evaluate several models.",
    )
    sub = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    ablation = sub.add_parser(
        "ablation",
        help="train the configs/ablation models and tabulate their NoW errors",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ablation.add_argument(
        "--data", required=True, metavar="MANIFEST", help="training dataset folder (or its manifest.jsonl)"
    )
    ablation.add_argument(
        "--eval", required=True, metavar="NOW_OR_SYNTH_DIR", help="NoW-layout folder to evaluate on"
    )
    ablation.add_argument("--steps", type=int, required=True, metavar="N", help="training steps per stage")
    ablation.add_argument("--out", required=True, metavar="DIR", help="experiment folder")
    ablation.add_argument(
        "--configs", default="configs/ablation", metavar="DIR", help="folder of the configs (%(default)s)"
    )
    ablation.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override for every run (repeatable)"
    )
    ablation.add_argument("--seed", type=int, default=0, help="run.seed of every run (default 0)")
    ablation.add_argument(
        "--launcher",
        choices=("inline", "subprocess", "torchrun"),
        help="how each training runs (default: torchrun with --nproc-per-node > 1, else inline)",
    )
    ablation.add_argument("--nproc-per-node", type=int, default=1, metavar="N", help="torchrun processes")
    ablation.add_argument(
        "--landmarks",
        choices=("auto", "gt", "detect"),
        default="auto",
        help="evaluation crops: the dataset's landmarks (gt), a detector, or gt when present (auto)",
    )
    ablation.add_argument("--device", default="cpu", help="device for the evaluation (default cpu)")
    ablation.add_argument("--workers", type=int, default=1, help="processes of the NoW measurement")
    ablation.set_defaults(func=_run_ablation)
    parser.set_defaults(func=lambda args: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _run_ablation(args: argparse.Namespace) -> int:
    from vitdeca.errors import VitdecaError
    from vitdeca.evaluation.ablation import AblationOptions, run_ablation

    if args.steps < 1 or args.nproc_per_node < 1 or args.workers < 1:
        raise VitdecaError("--steps, --nproc-per-node and --workers must be at least 1")
    launcher = args.launcher or ("torchrun" if args.nproc_per_node > 1 else "inline")
    options = AblationOptions(
        data=args.data, eval_dir=args.eval, steps=args.steps, out=args.out, configs=args.configs,
        overrides=list(args.set), seed=args.seed, launcher=launcher, nproc_per_node=args.nproc_per_node,
        landmarks=args.landmarks, device=args.device, workers=args.workers, progress=not args.quiet,
    )  # fmt: skip
    rows = run_ablation(options)
    for row in rows:
        stats = "  ".join(
            f"{k} {getattr(row, k):.4f}" for k in ("median", "mean", "std") if getattr(row, k) is not None
        )
        print(f"{row.name}: {stats} mm ({row.count}/{row.expected} images)")
    print(f"ablation: table {args.out}/table.md, curves {args.out}/curves.png")
    return 0
