"""``vitdeca eval``: evaluations, one sub-subcommand each (``now``, ``landmarks``).

To add one, write ``_add_<name>(sub)`` that registers its parser with ``func`` set, and append it to
``EVALUATIONS``. Exit status of every evaluation: 0 when everything was evaluated, 1 when some inputs
were missing or malformed (the report lists them), 2 on user errors.
"""

from __future__ import annotations

import argparse
import os


def _add_now(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "now",
        help="NoW scan-to-mesh error of a folder of predictions",
        description="The NoW benchmark protocol (landmark similarity alignment, face crop, rigid+scale "
        "refinement, scan-to-mesh distances) on a NoW-layout dataset. The mean face (the head model's "
        "template) is measured in the same run as the baseline; summary.json and report.md give both, "
        "the relative median (method / mean face) and bootstrap 95% intervals over subjects, overall "
        "and per category. Writes summary.json, report.md, per_image.csv and cumulative_error.png.",
    )
    parser.add_argument(
        "--predictions",
        required=True,
        metavar="DIR",
        help="DIR/SUBJECT/CATEGORY/IMAGE.obj|.ply and IMAGE.npy|.txt (7x3 landmarks), or the output of "
        "'vitdeca reconstruct --save now --out DIR/SUBJECT/CATEGORY' (IMAGE/IMAGE_neutral.obj, ...)",
    )
    parser.add_argument(
        "--dataset",
        required=True,
        metavar="NOW_DIR",
        help="NoW folder with imagepaths*.txt, scans/ and scans_lmks_onlypp/",
    )
    parser.add_argument("--split", choices=("val", "test"), default="val", help="image list (default: val)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        metavar="N",
        help="parallel processes (default: number of CPUs, at most 8)",
    )
    parser.add_argument(
        "--save-distances", action="store_true", help="also write every distance to distances.npz (large)"
    )
    parser.add_argument(
        "--mean-face",
        choices=("ict", "flame", "none"),
        default="ict",
        help="head model whose template is measured in the same run as the baseline row (default ict; "
        "flame reads $VITDECA_FLAME)",
    )
    _add_bootstrap(parser)
    parser.set_defaults(func=_run_now)


def _add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=2000,
        metavar="N",
        help="subject resamples of the 95%% intervals (default %(default)s; 0: none)",
    )
    parser.add_argument("--bootstrap-seed", type=int, default=0, metavar="S", help="its seed (default 0)")


def _bootstrap_options(args: argparse.Namespace):
    from vitdeca.errors import VitdecaError
    from vitdeca.evaluation.baseline import BootstrapOptions

    if args.bootstrap < 0:
        raise VitdecaError("--bootstrap must be >= 0")
    return BootstrapOptions(resamples=args.bootstrap, seed=args.bootstrap_seed)


def _print_now(name: str, summary: dict, out: str, units: str = "") -> None:
    """One line: counts, median/mean/std, the relative median and the mean face's median."""
    stats = "  ".join(f"{k} {summary[k]:.4f}" for k in ("median", "mean", "std") if summary[k] is not None)
    base = (summary.get("baseline") or {}).get("mean_face")
    if base and base["median"] is not None and summary.get("relative_median") is not None:
        stats += f"  (mean face median {base['median']:.4f}; relative {summary['relative_median']:.3f})"
    print(f"{name}: {summary['count']}/{summary['expected']} images  {stats}{units}  -> {out}")


def _run_now(args: argparse.Namespace) -> int:
    from vitdeca.errors import VitdecaError
    from vitdeca.evaluation.now_dataset import evaluate_now
    from vitdeca.evaluation.now_report import write_report

    if args.workers < 1:
        raise VitdecaError("--workers must be at least 1")
    bootstrap = _bootstrap_options(args)
    results = evaluate_now(args.predictions, args.dataset, args.split, args.workers, progress=not args.quiet)
    baseline = None
    if args.mean_face != "none":
        from vitdeca.evaluation.baseline import evaluate_mean_face
        from vitdeca.head import load_head_model

        head = load_head_model(args.mean_face)
        baseline = evaluate_mean_face(head, args.dataset, args.split, args.workers)
    summary = write_report(
        results,
        args.out,
        save_distances=args.save_distances,
        baseline=baseline,
        bootstrap=bootstrap,
        split=args.split,
        dataset=str(args.dataset),
        predictions=str(args.predictions),
    )
    _print_now(f"NoW {args.split}", summary, args.out)
    return _report_gaps(summary, ("missing", "malformed"))


def _add_landmarks(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "landmarks",
        help="NME of 68-point 2D landmarks against annotations",
        description="Normalised mean error of 68 landmarks per annotated face, normalised by the "
        "outer-eye-corner distance and by the landmark box size. Writes landmarks_nme.json and .csv.",
    )
    parser.add_argument(
        "--annotations",
        required=True,
        metavar="FILE",
        help="dlib imglab .xml with 68 parts, or a folder of <stem>.npy (68x2 or Kx68x2)",
    )
    parser.add_argument(
        "--predictions",
        required=True,
        metavar="DIR|detector:BACKEND",
        help="folder of <stem>_landmarks2d.npy (or see --pattern), or detector:dlib etc. "
        "to run vitdeca.faces on the images",
    )
    parser.add_argument(
        "--images", metavar="DIR", help="folder of the annotated images (default: the annotations' folder)"
    )
    parser.add_argument(
        "--pattern",
        action="append",
        metavar="PATTERN",
        help="prediction file pattern relative to --predictions, with {parent} and {stem} "
        "(repeatable; default: {parent}/{stem}_landmarks2d.npy, "
        "{parent}/{stem}/{stem}_landmarks2d.npy, {parent}/{stem}.npy)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    parser.set_defaults(func=_run_landmarks)


def _run_landmarks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vitdeca.evaluation.landmarks import (
        DEFAULT_PATTERNS,
        evaluate_landmarks,
        read_annotations,
        write_landmark_report,
    )

    annotations_path = Path(args.annotations)
    images = (
        Path(args.images)
        if args.images
        else (annotations_path if annotations_path.is_dir() else annotations_path.parent)
    )
    annotations = read_annotations(annotations_path, images)
    patterns = tuple(args.pattern) if args.pattern else DEFAULT_PATTERNS
    results = evaluate_landmarks(annotations, args.predictions, images, patterns, progress=not args.quiet)
    summary = write_landmark_report(
        results, args.out, annotations=str(annotations_path), predictions=str(args.predictions)
    )
    eye, box = summary["nme_outer_eye"], summary["nme_box"]
    stats = (
        f"NME(outer eye) median {eye['median']:.4f}  NME(box) median {box['median']:.4f}"
        if summary["count"]
        else ""
    )
    print(f"landmarks: {summary['count']}/{summary['expected']} faces  {stats}  -> {args.out}")
    return _report_gaps(summary, ("missing",))


def _report_gaps(summary: dict, keys: tuple[str, ...]) -> int:
    """Warn about missing/malformed inputs; 1 if there were any, else 0."""
    import logging

    log = logging.getLogger("vitdeca")
    gaps = 0
    for key in keys:
        entries = summary[key]
        gaps += len(entries)
        if entries:
            log.warning(
                "%d %s (first: %s: %s); see the report",
                len(entries),
                key,
                entries[0].get("image"),
                entries[0].get("reason"),
            )
    return 1 if gaps else 0


def _add_synth(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "synth",
        help="NoW error of a checkpoint (or per-image fitting) on a 'vitdeca synth' dataset",
        description="Reconstruct every listed image of a NoW-layout dataset with a checkpoint, or by "
        "per-image fitting without one, write the neutral meshes and their 7 landmarks to "
        "OUT/predictions, and evaluate them with the NoW protocol (summary.json, per_image.csv, "
        "cumulative_error.png in OUT). "
        "Faces are cropped from the dataset's true 68 landmarks (landmarks2d/) when it has them, so no "
        "detector runs; otherwise they are detected.",
    )
    parser.add_argument("--dataset", required=True, metavar="DIR", help="a 'vitdeca synth' (or NoW) folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for predictions/ and the report")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--checkpoint", metavar="PATH", help="trained model (default: per-image fitting)")
    what.add_argument(
        "--oracle",
        action="store_true",
        help="evaluate the true neutral meshes (codes.npz): a check that should give ~0 mm",
    )
    parser.add_argument(
        "--landmarks",
        choices=("auto", "gt", "detect"),
        default="auto",
        help="crop from the dataset's landmarks (gt), a detector (detect), or gt when present (auto)",
    )
    parser.add_argument("--iterations", metavar="L,P", help="fitting iterations per stage (e.g. 150,20)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="B", help="images per batch (default 8)")
    parser.add_argument(
        "--workers",
        type=int,
        default=min(8, os.cpu_count() or 1),
        metavar="N",
        help="parallel processes of the NoW measurement (default: number of CPUs, at most 8)",
    )
    _add_bootstrap(parser)
    parser.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from vitdeca.errors import VitdecaError
    from vitdeca.evaluation.synthetic import evaluate_model

    if args.workers < 1 or args.batch_size < 1:
        raise VitdecaError("--workers and --batch-size must be at least 1")
    summary = evaluate_model(
        args.dataset, args.out, args.checkpoint, oracle=args.oracle, landmarks=args.landmarks,
        fit_iterations=args.iterations, device=args.device, batch_size=args.batch_size,
        workers=args.workers, progress=not args.quiet, bootstrap=_bootstrap_options(args),
    )  # fmt: skip
    _print_now("synth", summary, args.out, " (mm)")
    return _report_gaps(summary, ("missing", "malformed"))


EVALUATIONS = [_add_now, _add_landmarks, _add_synth]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate reconstructions (NoW protocol, landmark NME, synthetic ground truth)",
        description="Evaluations. Exit status: 0 all inputs evaluated, 1 some missing or malformed "
        "(listed in the report), 2 user error.",
    )
    sub = parser.add_subparsers(dest="evaluation", metavar="EVALUATION")
    for add in EVALUATIONS:
        add(sub)
    parser.set_defaults(func=lambda args: _print_help(parser))


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
