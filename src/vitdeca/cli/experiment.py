"""``vitdeca experiment ablation``: the paper's encoder ablation (Table 2 and figure 4) in one command.

Trains every ``configs/ablation/*.yaml`` (and the ``--pretrained-config`` row) with the same data, seeds
and step budget, evaluates each final checkpoint on a NoW-layout dataset (a ``vitdeca synth`` folder or
the real NoW validation set) against the mean face measured in the same run, and writes ``table.md``
(per model: median / mean / std in mm averaged over seeds, seed spread, bootstrap 95 % intervals, median
÷ mean face overall and per category, landmark NME on ``--nme-data`` photos, validation shape error; then
the mean face) and ``curves.png`` (training and ``--val`` validation curves). Runs that already finished
are not trained again. On GPUs: ``--nproc-per-node N`` starts each training under ``torchrun``;
``--launcher subprocess --jobs N`` runs N trainings at once (small runs sharing one large GPU).
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
    ablation.add_argument(
        "--seeds",
        default="0",
        metavar="S,S...",
        help="run.seed values; the first trains every row (%(default)s)",
    )
    ablation.add_argument(
        "--extra-seed-rows",
        default="",
        metavar="NAME,...",
        help="rows the further seeds train (default: all)",
    )
    ablation.add_argument(
        "--pretrained-config",
        default="",
        metavar="YAML",
        help="an extra row: ViT from a pretrained start (configs/ablation_pretrained/vit_dinov2_small.yaml)",
    )
    ablation.add_argument(
        "--vit",
        default="",
        metavar="ENCODER",
        help="encoder of the random-init ViT rows (e.g. vit_small_patch16_224)",
    )
    ablation.add_argument(
        "--val", default="", metavar="MANIFEST", help="held-out dataset validated during training"
    )
    ablation.add_argument(
        "--val-every", type=int, default=0, metavar="N", help="validation period (0: stage ends)"
    )
    ablation.add_argument(
        "--nme-data",
        default="",
        metavar="DATASET",
        help="real photos with landmarks (vitdeca annotate) for the NME",
    )
    ablation.add_argument(
        "--bootstrap", type=int, default=2000, metavar="N", help="subject resamples (%(default)s)"
    )
    ablation.add_argument(
        "--launcher",
        choices=("inline", "subprocess", "torchrun"),
        help="how each training runs (default: torchrun with --nproc-per-node > 1, subprocess with "
        "--jobs > 1, else inline)",
    )
    ablation.add_argument("--nproc-per-node", type=int, default=1, metavar="N", help="torchrun processes")
    ablation.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="trainings at once (subprocess launcher)"
    )
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


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _run_ablation(args: argparse.Namespace) -> int:
    from vitdeca.errors import VitdecaError
    from vitdeca.evaluation.ablation import AblationOptions, run_ablation

    if (
        min(args.steps, args.nproc_per_node, args.workers, args.jobs) < 1
        or min(args.val_every, args.bootstrap) < 0
    ):
        raise VitdecaError(
            "--steps, --nproc-per-node, --workers and --jobs must be >= 1; --val-every and --bootstrap >= 0"
        )
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as exc:
        raise VitdecaError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from exc
    launcher = args.launcher or (
        "torchrun" if args.nproc_per_node > 1 else "subprocess" if args.jobs > 1 else "inline"
    )
    options = AblationOptions(
        data=args.data, eval_dir=args.eval, steps=args.steps, out=args.out, configs=args.configs,
        overrides=list(args.set), seeds=seeds, extra_seed_rows=_names(args.extra_seed_rows),
        pretrained_config=args.pretrained_config, vit=args.vit, val_data=args.val, val_every=args.val_every,
        nme_data=args.nme_data, launcher=launcher, nproc_per_node=args.nproc_per_node, jobs=args.jobs,
        landmarks=args.landmarks, device=args.device, workers=args.workers, bootstrap=args.bootstrap,
        progress=not args.quiet,
    )  # fmt: skip
    rows = run_ablation(options)
    for row in rows:
        stats = "  ".join(
            f"{k} {getattr(row, k):.4f}"
            for k in ("median", "mean", "std", "relative_median")
            if getattr(row, k) is not None
        )
        seed = "" if row.seed < 0 else f" seed {row.seed}"
        print(f"{row.name}{seed}: {stats} ({row.count}/{row.expected} images)")
    print(f"ablation: table {args.out}/table.md, curves {args.out}/curves.png")
    return 0
