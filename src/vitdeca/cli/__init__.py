"""The ``vitdeca`` command. Each subcommand lives in its own module of this package and defines
``add_parser(subparsers)`` (registering its options and ``func``); modules import heavy libraries only
inside ``func``, so ``vitdeca --help`` stays fast."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from vitdeca import __version__
from vitdeca.errors import VitdecaError

# Module names under vitdeca.cli, in the order ``vitdeca --help`` lists them.
SUBCOMMANDS: list[str] = [
    "reconstruct",
    "fit",
    "train",
    "plot_curves",
    "transfer",
    "annotate",
    "assets",
    "model",
    "eval",
    "synth",
    "experiment",
    "demo",
]

log = logging.getLogger("vitdeca")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitdeca",
        description="Monocular 3D face reconstruction (DECA with a ViT + DropKey encoder).",
        epilog="Run 'vitdeca COMMAND --help' for the options of one command.",
    )
    parser.add_argument("--version", action="version", version=f"vitdeca {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log messages (-vv: debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"vitdeca.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 some inputs failed, 2 user error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = args.func(args)
    except VitdecaError as exc:
        print(f"vitdeca: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitdeca: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)
