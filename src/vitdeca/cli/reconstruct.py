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
    add_flip_argument(parser)
    add_precision_argument(parser)
    add_fit_set_argument(parser)
    parser.add_argument("--refine", action="store_true", help=argparse.SUPPRESS)  # old spelling
    parser.set_defaults(func=run)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The input/output options shared by ``reconstruct`` and ``fit``."""
    from vitdeca.faces.backends import DEFAULT_BACKEND
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
        help=f"comma list from {','.join(SAVE_CHOICES)} or 'all'; '+x,y' adds x and y to the defaults "
        "(%(default)s)",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(%(default)s)")
    parser.add_argument("--detector", default=DEFAULT_BACKEND, help="face detector backend (%(default)s)")
    parser.add_argument("--batch-size", type=_positive_int, default=8, metavar="N", help="(%(default)s)")
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
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_flip_argument(parser: argparse.ArgumentParser) -> None:
    """``--flip/--no-flip``: the encoder's test-time flip averaging (default: ``regress`` flips when the
    head supports it, ``refine`` does not)."""
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the model also reads each face mirrored and averages both estimates: about twice the "
        "encoder's time, lower landmark error for regress (default: on for the regress method when the head "
        "model supports it, off for refine)",
    )


def add_fit_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): a :class:`~vitdeca.fit.FitConfig` key of ``refine`` or ``fit``."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a FitConfig key (fitting and refine), e.g. refine_fusion=false, torch_compile=true, "
        "weights.photometric=0 (repeatable)",
    )


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision``: the networks' inference precision (:func:`vitdeca.model.inference_autocast`)."""
    from vitdeca.config import PRECISIONS

    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16: the model's networks under bfloat16 autocast (fitting, geometry and renderer stay "
        "float32); about 2.7x faster encoders on CPUs with native bf16 (AVX512-BF16, AMX) and on GPUs "
        "(%(default)s)",
    )


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: the process's CPU thread policy (see :func:`apply_threads`)."""
    parser.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help="CPU threads for torch and the renderer's kernels (default: all that torch allows)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set the thread count of ``--threads`` for the whole run (torch's, which the numba kernels follow);
    without it torch's default stays. The library never changes it."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


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


def check_options(args: argparse.Namespace):
    """Every option checked before any work (a bad one is a VitdecaError: exit 2); the RunOptions."""
    from vitdeca.errors import VitdecaError
    from vitdeca.faces.backends import check_backend
    from vitdeca.pipeline.reconstructor import resolve_device

    options = run_options(args)  # --save
    if args.same_person and args.all_faces:
        raise VitdecaError("--same-person uses the largest face of each image: drop --all-faces")
    check_backend(args.detector)
    resolve_device(args.device)
    return options


def input_paths(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """Expand the inputs (adding the demo photo), leave out any inside the output folder (the run's
    own files), then create and check the output folder; returns (out, paths)."""
    from vitdeca.errors import VitdecaError
    from vitdeca.media import expand_inputs
    from vitdeca.pipeline.batch import prepare_output_dir
    from vitdeca.pipeline.outdir import exclude_output_folder

    if not args.inputs and not args.demo:
        raise VitdecaError("no input: give image/video files, folders or globs (or --demo)")
    paths = expand_inputs(args.inputs) if args.inputs else []
    if args.demo:
        paths.append(demo_photo())
    paths, dropped = exclude_output_folder(paths, Path(args.out).expanduser())
    if dropped:
        log.warning("left out %d inputs inside the output folder %s", len(dropped), args.out)
    if not paths:
        raise VitdecaError(f"{args.out}: every input is inside the output folder; nothing to do")
    return prepare_output_dir(args.out), paths


def demo_photo() -> Path:
    """The astronaut photo (scikit-image, public domain) in ``$VITDECA_HOME/demo``, written once."""
    from skimage import data

    from vitdeca.media import save_png
    from vitdeca.storage import vitdeca_home

    path = vitdeca_home() / "demo" / DEMO_NAME
    if not path.exists():
        save_png(path, data.astronaut())
    return path.resolve()


def execute(args: argparse.Namespace, make_reconstructor) -> int:
    """Check the options, expand inputs, build the reconstructor, run the batch, print the counts;
    the exit status (1 when some input failed)."""
    from vitdeca.pipeline import shard as sharding
    from vitdeca.pipeline.batch import BatchRunner, drop_unsupported, merge_rank_summaries

    options = check_options(args)
    out, paths = input_paths(args)
    apply_threads(args)
    shard = sharding.Shard.from_env()
    sharding.use_local_device(shard)
    rec = make_reconstructor()
    if hasattr(rec, "model"):
        options = drop_unsupported(options, rec.model.head)
    summary = BatchRunner(rec, out, options, shard=shard).run(paths)
    print(summary.line())
    failed = summary.counts["failed"]
    if shard.active:
        order = [str(p) for p in paths]
        merged = sharding.finish(shard, lambda: merge_rank_summaries(out, shard.world_size, order))
        if merged is not None:
            print(f"all {shard.world_size} ranks: {merged.line()}")
    return 1 if failed else 0


def run(args: argparse.Namespace) -> int:
    from vitdeca.pipeline import Reconstructor

    checkpoint, method = choose_model(args.checkpoint, args.method or ("refine" if args.refine else None))
    fit = None
    if args.set:
        from vitdeca.config import load_config
        from vitdeca.errors import VitdecaError
        from vitdeca.fit import FitConfig

        if method == "regress":
            raise VitdecaError("--set sets FitConfig keys; --method regress does not fit")
        fit = load_config(FitConfig, None, list(args.set)).validated()

    def make():
        return Reconstructor.from_pretrained(
            checkpoint,
            device=args.device,
            detector=args.detector,
            detail=args.detail,
            fit=fit,
            method=method,
            flip=args.flip,
            precision=args.precision,
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
