"""``vitdeca reconstruct INPUT... --out DIR``: 3D faces from photos, folders (recursive), globs and videos.

With ``--checkpoint`` a trained model regresses the codes; without one every face is reconstructed by
per-image fitting (``vitdeca fit`` exposes its options). Per input: ``DIR/<stem>/`` with the files chosen
by ``--save``; ``DIR/summary.json`` records every input (ok / no_face / failed).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("vitdeca")

DEMO_NAME = "astronaut.png"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reconstruct",
        help="reconstruct 3D faces from photos, folders and videos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--checkpoint",
        metavar="NAME|PATH",
        help="a zoo model name (`vitdeca model list`) or a checkpoint file; default: the default model "
        "when it is installed",
    )
    parser.add_argument(
        "--method",
        choices=("regress", "refine", "fit"),
        help="regress: one forward pass; refine: regression then a short fit; fit: fitting from the "
        "template (default: refine with a model, fit without one)",
    )
    parser.add_argument("--refine", action="store_true", help=argparse.SUPPRESS)  # old spelling
    parser.set_defaults(func=run)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The input/output options shared by ``reconstruct`` and ``fit``."""
    from vitdeca.pipeline.batch import DEFAULT_SAVE, SAVE_CHOICES

    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image/video files, folders or globs")
    parser.add_argument(
        "-o", "--out", default="vitdeca_output", metavar="DIR", help="output folder (%(default)s)"
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also reconstruct the astronaut photo (scikit-image, public domain)",
    )
    parser.add_argument(
        "--save",
        default=",".join(DEFAULT_SAVE),
        metavar="LIST",
        help=f"comma list from {','.join(SAVE_CHOICES)} or 'all'; '+x' adds x to the defaults (%(default)s)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(%(default)s)")
    parser.add_argument("--detector", default="dlib", help="face detector backend (%(default)s)")
    parser.add_argument("--batch-size", type=_positive_int, default=4, metavar="N", help="(%(default)s)")
    parser.add_argument("--all-faces", action="store_true", help="every detected face (default: the largest)")
    parser.add_argument(
        "--same-person",
        action="store_true",
        help="all images show one person: one shape fitted jointly over them (the largest face of each)",
    )
    parser.add_argument(
        "--detail", action=argparse.BooleanOptionalAction, default=True, help="run the detail branch (on)"
    )
    parser.add_argument(
        "--smooth", action=argparse.BooleanOptionalAction, default=True, help="videos: smooth codes over time"
    )
    parser.add_argument("--frames", action="store_true", help="videos: also write the per-frame files")
    parser.add_argument("--max-frames", type=_positive_int, metavar="N", help="videos: read at most N frames")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose output folder exists")
    parser.add_argument(
        "--threads", type=_positive_int, metavar="N", help="CPU threads for torch (its default)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def run_options(args: argparse.Namespace):
    """The :class:`~vitdeca.pipeline.batch.RunOptions` of the parsed arguments."""
    from vitdeca.pipeline.batch import RunOptions, parse_save

    return RunOptions(
        save=parse_save(args.save),
        overwrite=args.overwrite,
        all_faces=args.all_faces,
        smooth=args.smooth,
        video_frames=args.frames,
        max_frames=args.max_frames,
        batch_size=args.batch_size,
        same_person=args.same_person,
        progress=not (args.no_progress or getattr(args, "quiet", False)),
    )


def input_paths(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """Check the output folder, expand the inputs (adding the demo photo); returns (out, paths)."""
    from vitdeca.errors import VitdecaError
    from vitdeca.media import expand_inputs, save_png
    from vitdeca.pipeline.batch import prepare_output_dir

    if not args.inputs and not args.demo:
        raise VitdecaError("no input: give image/video files, folders or globs (or --demo)")
    out = prepare_output_dir(args.out)
    paths = expand_inputs(args.inputs) if args.inputs else []
    if args.demo:
        from skimage import data

        demo = out / "inputs" / DEMO_NAME
        if not demo.exists():
            save_png(demo, data.astronaut())
        paths.append(demo.resolve())
    return out, paths


def execute(args: argparse.Namespace, make_reconstructor) -> int:
    """Expand inputs, build the reconstructor, run the batch, print the counts; the exit status."""
    from vitdeca.errors import VitdecaError
    from vitdeca.pipeline.batch import BatchRunner, drop_unsupported

    if args.same_person and args.all_faces:
        raise VitdecaError("--same-person uses the largest face of each image: drop --all-faces")
    out, paths = input_paths(args)
    options = run_options(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rec = make_reconstructor()
    if hasattr(rec, "model"):
        options = drop_unsupported(options, rec.model.head)
    summary = BatchRunner(rec, out, options).run(paths)
    print(summary.line())
    return 1 if summary.counts["failed"] else 0


def run(args: argparse.Namespace) -> int:
    from vitdeca.pipeline import Reconstructor

    checkpoint, method = choose_model(args.checkpoint, args.method or ("refine" if args.refine else None))

    def make():
        return Reconstructor.from_pretrained(
            checkpoint, device=args.device, detector=args.detector, detail=args.detail, method=method
        )

    return execute(args, make)


def choose_model(checkpoint: str | None, method: str | None) -> tuple[str | None, str]:
    """(model, method) for ``reconstruct``: an explicit checkpoint with ``refine`` unless told otherwise;
    without one, the default zoo model with ``refine`` when it is on disk, else fitting (said once)."""
    from vitdeca.zoo import DEFAULT_MODEL, installed

    if checkpoint is not None:
        return checkpoint, method or "refine"
    if method == "fit":
        return None, "fit"
    if installed(DEFAULT_MODEL) is not None:
        log.info("using the default model %s (method %s)", DEFAULT_MODEL, method or "refine")
        return DEFAULT_MODEL, method or "refine"
    if method is not None:
        from vitdeca.errors import VitdecaError

        raise VitdecaError(f"--method {method} needs a model: pass --checkpoint NAME|PATH")
    log.info("no model installed: reconstructing by per-image fitting (--checkpoint NAME|PATH for a model)")
    return None, "fit"
