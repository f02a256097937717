"""``vitdeca train --config FILE --out RUN_DIR [--set KEY=VALUE ...] [--resume]``: train the reconstructor.

Runs the coarse stage, then the detail stage (coarse frozen), as DECA. RUN_DIR receives ``config.yaml``
(the resolved config), ``losses.csv``, ``checkpoints/last.pt`` (and ``coarse.pt``/``detail.pt`` at the end
of each stage) and the TensorBoard events. SIGTERM or Ctrl-C finishes the step in flight, saves the
checkpoint and exits with status 0; ``--resume`` continues exactly where it stopped (``--config`` may then
be left out). Many GPUs or nodes: start it under torchrun, e.g.
``torchrun --nproc_per_node 8 -m vitdeca train --config ... --out ...``.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train the encoders on a dataset folder (coarse, then detail stage)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="FILE", help="training config YAML (see configs/)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="the run folder")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import logging

    from vitdeca.errors import VitdecaError
    from vitdeca.train.checkpoint import checkpoint_path
    from vitdeca.train.run import run_training

    if args.config is None and not (args.resume and checkpoint_path(args.out).exists()):
        raise VitdecaError("--config FILE is required to start a new run")
    status = run_training(args.config, args.out, args.set, resume=args.resume)
    log = logging.getLogger("vitdeca")
    if status == "interrupted":
        log.info("interrupted; continue with: vitdeca train --out %s --resume", args.out)
    else:
        log.info("finished; checkpoint %s", checkpoint_path(args.out))
    return 0
