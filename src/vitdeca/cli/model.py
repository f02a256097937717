"""``vitdeca model``: list the model zoo and export a training checkpoint as a small inference file."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "model",
        help="list the model zoo; export a checkpoint as an inference file",
        description="List the named models `reconstruct --checkpoint NAME` accepts (where each is found), or "
        "export a training checkpoint as an inference file (weights only, float16 by default).",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the zoo's models and whether each is on disk")
    listing.set_defaults(func=run_list)
    export = actions.add_parser(
        "export",
        help="checkpoint -> inference file",
        description="Keep the model's weights, config and head-model identity; drop optimiser state.",
    )
    export.add_argument("checkpoint", help="a `vitdeca train` checkpoint (e.g. RUN/checkpoints/last.pt)")
    export.add_argument("--out", required=True, help="the inference file to write (.pt)")
    export.add_argument("--fp32", action="store_true", help="keep float32 weights (default: float16)")
    export.set_defaults(func=run_export)


def run_list(args: argparse.Namespace) -> int:
    from vitdeca.zoo import ZOO, installed

    if not ZOO:
        print("no zoo models are registered")
    for name, entry in sorted(ZOO.items()):
        where = installed(name)
        print(f"{name}: {entry.file_name} ({entry.size / 1e6:.1f} MB, {entry.licence})")
        print(f"  {'on disk: ' + str(where) if where else 'not on disk; downloads from ' + entry.url}")
        for key, value in entry.metrics.items():
            print(f"  {key}: {value}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from vitdeca.zoo import export_inference

    result = export_inference(args.checkpoint, args.out, half=not args.fp32)
    print(f"{result['path']}: {result['size'] / 1e6:.1f} MB, sha256 {result['sha256']}")
    return 0
