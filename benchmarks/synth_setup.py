"""Set-up shared by the benchmarks that measure fitting on a fresh synthetic set (bench_arkit,
bench_same_person): their command line and the dataset they draw."""

from __future__ import annotations

import argparse
from pathlib import Path


def parse_arguments(description: str, several_seeds: bool = False) -> argparse.Namespace:
    """``--images``, ``--per-subject``, ``--seed``, ``--blink-fraction``, ``--yaw-max`` of the synthetic
    set and ``--no-write``; with ``several_seeds``, ``--seeds`` (comma-separated, e.g. ``0,1,2``: one set
    each, results pooled) in place of ``--seed``, as ``args.seeds`` (a list; ``[args.seed]`` otherwise)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--per-subject", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    if several_seeds:
        parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=None)
    parser.add_argument("--blink-fraction", type=float, default=0.0, help="synth's --blink-fraction")
    parser.add_argument(
        "--yaw-max",
        type=float,
        default=0.0,
        help="synth's --yaw-max (yaw uniform in ±this; 0: synth's default)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only (for a quick check)")
    args = parser.parse_args()
    args.seeds = getattr(args, "seeds", None) or [args.seed]
    return args


def make_dataset(folder: Path, args: argparse.Namespace, **options) -> Path:
    """A ``vitdeca synth`` set of ``args.images`` images (``args.per_subject`` per subject, ``args.seed``)
    in ``folder``; ``options``: more :class:`~vitdeca.data.synth.SynthOptions` fields."""
    from vitdeca.data.synth import SynthOptions, write_synthetic_dataset

    # the published results predate the blur, occluders and neck fade: kept off so they reproduce
    effects_off = {"blur_fraction": 0.0, "occluder_fraction": 0.0, "neck_fade_mm": 0.0}
    synth = SynthOptions(
        n_images=args.images,
        images_per_subject=args.per_subject,
        seed=args.seed,
        blink_fraction=args.blink_fraction,
        yaw_max=args.yaw_max,
        **(effects_off | options),
    )
    write_synthetic_dataset(folder, synth, progress=False)
    return folder


def publish(report: str, results: Path, args: argparse.Namespace) -> None:
    """Print the report and, unless ``--no-write``, write it (atomically) to ``results``."""
    from vitdeca.storage import atomic_write_bytes

    print(report)
    if not args.no_write:
        atomic_write_bytes(results, report.encode())
        print(f"written to {results}")
