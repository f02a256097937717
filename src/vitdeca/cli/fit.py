"""``vitdeca fit INPUT... --out DIR``: reconstruct by per-image fitting (analysis by synthesis).

The codes of each face are optimised with Adam against the face's detected landmarks (stage
``landmarks``), then also against the photo (stage ``photometric``), with the training losses and code
regularisers. No trained weights are needed; ``--checkpoint`` starts from a trained model's codes.
Outputs and ``summary.json`` as ``vitdeca reconstruct``.
"""

from __future__ import annotations

import argparse

from vitdeca.cli.reconstruct import (
    add_fit_set_argument,
    add_flip_argument,
    add_precision_argument,
    add_run_arguments,
    execute,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "fit",
        help="reconstruct by per-image fitting (no weights needed)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    parser.add_argument("--checkpoint", metavar="PATH", help="start from a trained model's codes")
    add_flip_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--head", default="ict", help="head model without --checkpoint (%(default)s)")
    parser.add_argument("--config", metavar="YAML", help="a FitConfig YAML file")
    add_fit_set_argument(parser)
    parser.add_argument("--stages", metavar="LIST", help="stages in order, from: landmarks,photometric")
    parser.add_argument("--iterations", metavar="N[,N]", help="iterations per stage, e.g. 100,30")
    parser.add_argument(
        "--losses", metavar="LIST", help="loss terms, from: landmark,eye,lip,photometric,reg (default all)"
    )
    parser.add_argument("--lr", type=float, metavar="LR", help="Adam learning rate")
    parser.set_defaults(func=run)
    return parser


def fit_config(args: argparse.Namespace):
    """The :class:`~vitdeca.fit.FitConfig` of ``--config``/``--set`` and the shorthand options."""
    from vitdeca.config import load_config
    from vitdeca.fit import FitConfig

    overrides = list(args.set)
    if args.stages:
        overrides.append(f"stages=[{args.stages}]")
    if args.losses:
        overrides.append(f"losses=[{args.losses}]")
    if args.lr is not None:
        overrides.append(f"lr={args.lr}")
    config = load_config(FitConfig, args.config, overrides)
    if args.iterations:
        config = config.with_iterations(args.iterations)
    return config.validated()


def run(args: argparse.Namespace) -> int:
    from vitdeca.pipeline import Reconstructor

    config = fit_config(args)

    def make():
        return Reconstructor.from_pretrained(
            args.checkpoint,
            device=args.device,
            detector=args.detector,
            detail=args.detail,
            fit=config,
            refine=args.checkpoint is not None,
            head=args.head,
            flip=args.flip,
            precision=args.precision,
        )

    return execute(args, make)
