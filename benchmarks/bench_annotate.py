"""Annotation throughput on the shared photos (``../shared/faces``, CPU).

Claims measured:
1. per-stage cost of each backend, in-process: detector ms/image (on the ≤1024-px copy) and 68-landmark
   ms/face, separately;
2. end-to-end ``annotate_folder`` throughput (images/s, dlib backend, largest face, no crops) with 1 and 2
   worker processes, on the photos repeated ``--copies`` times; the ratio is against 1 worker measured in
   the same run. Process start and model loading are included (they are part of a real run).

Each number is the median of ``--repeats`` runs (after one warm-up for stage timings).
Usage: ``python benchmarks/bench_annotate.py [--repeats 3] [--copies 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from inputs import shared_dir
from vitdeca.faces import get_backend, read_image
from vitdeca.faces.annotate import AnnotateOptions, annotate_folder
from vitdeca.faces.backends import clear_backends
from vitdeca.faces.detect import DEFAULT_MAX_SIDE, shrink_for_detection
from vitdeca.faces.image_io import IMAGE_SUFFIXES
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "annotate.md"


def shared_photos() -> list[Path]:
    shared = shared_dir()
    photos = sorted(p for p in (shared / "faces").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos under {shared / 'faces'} (set VITDECA_SHARED)")
    return photos


def stage_times(backend_name: str, images: list[np.ndarray], repeats: int) -> tuple[float, float, int]:
    """(detector ms/image, landmarks ms/face, faces) — medians over ``repeats`` passes after a warm-up."""
    backend = get_backend(backend_name)
    small = [shrink_for_detection(image, DEFAULT_MAX_SIDE) for image in images]
    detect_runs, landmark_runs, faces = [], [], 0
    for run in range(repeats + 1):
        detect_s = landmark_s = 0.0
        faces = 0
        for image, (copy, sx, sy) in zip(images, small, strict=True):
            start = time.perf_counter()
            hits = backend.detect(copy)
            detect_s += time.perf_counter() - start
            start = time.perf_counter()
            for hit in hits:
                backend.landmarks(image, hit.scaled(1 / sx, 1 / sy))
            landmark_s += time.perf_counter() - start
            faces += len(hits)
        if run:  # the first pass warms caches and lazy initialisation
            detect_runs.append(1000 * detect_s / len(images))
            landmark_runs.append(1000 * landmark_s / max(faces, 1))
    return statistics.median(detect_runs), statistics.median(landmark_runs), faces


def throughput(root: Path, n_images: int, workers: int, repeats: int) -> tuple[float, float, float]:
    """Medians of a fresh ``annotate_folder`` run: (images/s overall, images/s after the first image is
    written, i.e. without process start and model loading, seconds to the first image)."""
    overall, steady, first = [], [], []
    for _ in range(repeats):
        stamps: list[float] = []
        clear_backends()  # model loading counts for 1 worker too
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            annotate_folder(
                root, Path(out) / "dataset", AnnotateOptions(), workers=workers, progress=False,
                on_image=lambda rel, records, stamps=stamps: stamps.append(time.perf_counter()),
            )  # fmt: skip
            overall.append(n_images / (time.perf_counter() - start))
        steady.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
        first.append(stamps[0] - start)
    return statistics.median(overall), statistics.median(steady), statistics.median(first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--copies", type=int, default=3, help="copies of the photo set for the throughput runs"
    )
    parser.add_argument("--quick", action="store_true", help="1 repeat, 1 copy, dlib stages only")
    args = parser.parse_args()
    repeats, copies = (1, 1) if args.quick else (args.repeats, args.copies)
    torch.set_num_threads(1)  # as in annotate's workers; 2 threads thrash on a shared 2-core machine
    photos = shared_photos()
    images = [read_image(p) for p in photos]
    lines = [
        "# Annotation throughput (`benchmarks/bench_annotate.py`)",
        "",
        f"{len(photos)} photos from `shared/faces` (224–2444 px), "
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        "one torch thread (MTCNN); the machine was shared with other jobs, so absolute times are noisy. "
        f"Medians of {repeats} runs.",
        "",
        "| backend | detector ms/image | landmarks ms/face | faces found |",
        "|---|---|---|---|",
    ]
    for name in ["dlib"] if args.quick else ["dlib", "mtcnn"]:
        detect_ms, landmark_ms, faces = stage_times(name, images, repeats)
        lines.append(f"| {name} | {detect_ms:.1f} | {landmark_ms:.2f} | {faces} |")
        print(lines[-1], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        for copy in range(copies):
            for k, photo in enumerate(photos):
                target = root / f"set{copy}" / f"{k:03d}{photo.suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(photo, target)
        n_images = len(photos) * copies
        lines += [
            "",
            f"`annotate_folder`, dlib backend, {n_images} images, process start and model loading included:",
            "",
            "| workers | images/s (all) | ratio vs 1 worker | images/s (after start-up) | ratio vs 1 worker "
            "| start-up s |",
            "|---|---|---|---|---|---|",
        ]
        baseline = None
        for workers in (1, 2):
            overall, steady, first = throughput(root, n_images, workers, repeats)
            baseline = baseline or (overall, steady)
            lines.append(
                f"| {workers} | {overall:.2f} | {overall / baseline[0]:.2f}× | {steady:.2f} "
                f"| {steady / baseline[1]:.2f}× | {first:.1f} |"
            )
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    atomic_write_bytes(RESULTS, table.encode())


if __name__ == "__main__":
    main()
