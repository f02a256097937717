"""``vitdeca transfer --identity A.jpg --expression B.jpg --out DIR``: A's face with B's expression.

Both photos are reconstructed (largest face each); the result keeps A's shape, camera, light, albedo and
head rotation and takes B's expression (and jaw, for head models with a jaw joint). Writes
``DIR/<A>_as_<B>/`` with the mesh, renders and a vis strip: A | B | transferred.
"""

from __future__ import annotations

import argparse

from vitdeca.cli.reconstruct import add_precision_argument, add_threads_argument, apply_threads


def add_parser(subparsers) -> argparse.ArgumentParser:
    from vitdeca.faces.backends import DEFAULT_BACKEND

    parser = subparsers.add_parser(
        "transfer",
        help="A's identity with B's expression",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--identity", required=True, metavar="A", help="photo giving the identity")
    parser.add_argument("--expression", required=True, metavar="B", help="photo giving the expression")
    parser.add_argument("-o", "--out", default="vitdeca_output", metavar="DIR", help="(%(default)s)")
    parser.add_argument("--checkpoint", metavar="PATH", help="a trained model (default: per-image fitting)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(%(default)s)")
    parser.add_argument("--detector", default=DEFAULT_BACKEND, help="face detector backend (%(default)s)")
    parser.add_argument("--save", default="obj,texture,vis", metavar="LIST", help="outputs (%(default)s)")
    add_precision_argument(parser)
    add_threads_argument(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from vitdeca.faces.backends import check_backend
    from vitdeca.pipeline import Reconstructor
    from vitdeca.pipeline.batch import parse_save, prepare_output_dir
    from vitdeca.pipeline.reconstructor import resolve_device
    from vitdeca.pipeline.transfer import transfer

    apply_threads(args)
    save = parse_save(args.save)  # every option is checked before any work
    check_backend(args.detector)
    resolve_device(args.device)
    out = prepare_output_dir(args.out)
    rec = Reconstructor.from_pretrained(
        args.checkpoint, device=args.device, detector=args.detector, precision=args.precision
    )
    written = transfer(rec, args.identity, args.expression, out, save)
    for path in written:
        print(path)
    return 0
