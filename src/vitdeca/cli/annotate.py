"""``vitdeca annotate IMAGE_ROOT --out DATASET_DIR``: faces, 68 landmarks, crops, masks → manifest.jsonl."""

from __future__ import annotations

import argparse
import logging

from vitdeca.cli.reconstruct import add_threads_argument, apply_threads
from vitdeca.wording import counted

log = logging.getLogger("vitdeca")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "annotate",
        help="detect faces and 68 landmarks in a folder of photos (resumable, parallel)",
        description=(
            "Annotate every image under IMAGE_ROOT (identity = first-level folder name) into "
            "DATASET_DIR/manifest.jsonl, one JSON line per face and one per rejected file. "
            "Re-running resumes. With --fit every face is also fitted (pseudo-labels in codes.npz; one "
            "torch thread per worker process, --threads with --workers 1). "
            "Exit status: 0 all files processed, 1 some files unreadable/too large/failed, 2 usage error."
        ),
    )
    parser.add_argument(
        "image_root", metavar="IMAGE_ROOT", help="folder of images (IMAGE_ROOT/<identity>/*.jpg)"
    )
    parser.add_argument("--out", required=True, metavar="DATASET_DIR", help="dataset folder to write/resume")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--backend",
        default="dlib",
        choices=["cascade", "dlib", "dlib_cnn", "mtcnn", "fan"],
        help="face backend (%(default)s)",
    )
    parser.add_argument(
        "--all-faces", action="store_true", help="keep every face (default: the largest only)"
    )
    parser.add_argument("--save-crops", action="store_true", help="write 224x224 DECA crops under crops/")
    parser.add_argument("--save-masks", action="store_true", help="write crop-frame face masks under masks/")
    parser.add_argument("--mask-method", default="landmarks", help="mask method: landmarks (default) or skin")
    parser.add_argument("--scale", type=float, default=1.25, help="crop scale (DECA: 1.25)")
    parser.add_argument("--size", type=int, default=224, help="crop size in pixels (default 224)")
    parser.add_argument(
        "--max-side", type=int, default=1024, help="shrink larger images to this for detection"
    )
    parser.add_argument("--max-pixels", type=int, default=80_000_000, help="refuse larger images (too_large)")
    parser.add_argument("--min-side", type=int, default=32, help="smaller images are rejected (too_small)")
    parser.add_argument(
        "--fit",
        action="store_true",
        help="also fit the head model to every face (as `reconstruct --method fit`) and store its shape, "
        "expression and pose codes as pseudo-labels (codes.npz) for training's supervised terms",
    )
    parser.add_argument("--fit-head", default="ict", help="head model of --fit (%(default)s)")
    parser.add_argument(
        "--fit-iterations", metavar="N[,N]", help="--fit: iterations per fitting stage (default: FitConfig's)"
    )
    add_threads_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def fit_values(iterations: str | None) -> dict:
    """The FitConfig of ``--fit`` as plain values: ``reconstruct --method fit``'s, with
    ``--fit-iterations``."""
    from vitdeca.config import to_dict
    from vitdeca.fit import FitConfig

    config = FitConfig()
    return to_dict((config.with_iterations(iterations) if iterations else config).validated())


def run(args: argparse.Namespace) -> int:
    from vitdeca.errors import VitdecaError
    from vitdeca.faces.annotate import AnnotateOptions, annotate_folder

    if args.workers < 1:
        raise VitdecaError(f"--workers must be at least 1, got {args.workers}")
    if args.fit_iterations and not args.fit:
        raise VitdecaError("--fit-iterations needs --fit")
    apply_threads(args)
    options = AnnotateOptions(
        backend=args.backend, all_faces=args.all_faces,
        save_crops=args.save_crops, save_masks=args.save_masks,
        mask_method=args.mask_method, scale=args.scale, size=args.size, max_side=args.max_side,
        max_pixels=args.max_pixels, min_side=args.min_side,
        fit=fit_values(args.fit_iterations) if args.fit else None, fit_head=args.fit_head,
    )  # fmt: skip
    report = annotate_folder(
        args.image_root, args.out, options, workers=args.workers, progress=not args.no_progress
    )
    counts = ", ".join(f"{status} {n}" for status, n in sorted(report.files.items()))
    files, faces = counted(sum(report.files.values()), "file"), counted(report.faces, "face")
    print(f"annotate: {files} ({counts}); {faces}; {report.processed} processed now, "
          f"{report.skipped} already done")  # fmt: skip
    if report.failed:
        failed = counted(report.failed, "file")
        print(f"annotate: {failed} could not be processed; see {args.out}/rejected.txt")
    return 1 if report.failed else 0
