"""``vitdeca reconstruct`` quality and speed on the shared photos (``../shared/faces``, CPU).

Claims measured:
1. Per-image fitting (no weights, default :class:`~vitdeca.fit.FitConfig`): the 2D landmark NME of the
   fitted face against the detector's landmarks (mean point error / outer-eye-corner distance), per photo
   and median, and the seconds per photo (detection + crop + fit + decode + texture, in memory; model
   construction excluded). Baseline in the same run: the NME of the closed-form rigid start (template
   face, fitted pose and camera). Targets: median NME <= 3 %, <= 10 s per photo.
2. With a checkpoint (an untrained default model saved to a temporary file, or ``--checkpoint NAME|PATH``,
   e.g. the shipped ``vitdeca-vits14``, with ``--method regress``): the whole reconstruction per
   image after detection (``Reconstructor.reconstruct_crops``: encoders, decode with detail, texture,
   results) against the encoder-only time (``DecaModel.encode``: coarse + detail encoder) on the same
   crops, measured in turn in one run; the same without the detail branch; and the model's own decode
   times for the breakdown. Medians of ``--repeats``. Target ratio <= 1.15.

Runs on one torch thread by default (``--threads``, for fitting too): on the shared 2-core machine two
threads made the timings erratic (up to 8x slower, varying run to run). ``--skip-fitting`` prints the
checkpoint section only and leaves the results file alone.
Usage: ``python benchmarks/bench_reconstruct.py [--repeats 5] [--limit N] [--batch 8] [--skip-fitting]
[--threads 1] [--checkpoint vitdeca-vits14]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from inputs import shared_dir
from vitdeca.faces.image_io import IMAGE_SUFFIXES
from vitdeca.model import ModelConfig
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "reconstruct.md"


def shared_photos(limit: int | None) -> list[Path]:
    shared = shared_dir()
    photos = sorted(p for p in (shared / "faces").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos under {shared / 'faces'} (set VITDECA_SHARED)")
    return photos[:limit]


def fitting_rows(photos: list[Path]) -> list[tuple[str, float, float, float, float]]:
    """Per photo with a face: (name, start NME, fitted NME, fit seconds, whole seconds)."""
    from vitdeca.fit import initial_codes, landmark_nme, landmarks2d
    from vitdeca.pipeline import Reconstructor

    rec = Reconstructor.from_pretrained(None, device="cpu")
    rec(photos[0])  # warm-up: numba kernels, detector models
    rows = []
    for path in photos:
        start = time.perf_counter()
        prepared = rec.prepare(path)
        if not prepared.crops:
            print(f"{path.name}: no face (skipped)")
            continue
        fit_start = time.perf_counter()
        (face,) = rec.reconstruct_crops([prepared])[0]
        end = time.perf_counter()
        target = torch.from_numpy(prepared.crops[0].crop_landmarks).float()[None]
        with torch.no_grad():
            rigid = landmarks2d(rec.model, initial_codes(rec.model, target, rec.crop_size), rec.crop_size)
        rows.append(
            (path.name, float(landmark_nme(rigid, target)), face.fit_nme, end - fit_start, end - start)
        )
        print(f"{path.name}: NME {face.fit_nme:.4f}, {end - start:.2f} s")
    return rows


def checkpoint_timing(
    photos: list[Path], repeats: int, batch: int, checkpoint: str | None = None
) -> dict[str, float]:
    """Median seconds per image of each measure (see :data:`MEASURES`) with a saved untrained model, or
    ``checkpoint`` (a zoo name or a path, e.g. the default model ``vitdeca-vits14``), with ``regress``.

    All measures run in turn inside every repeat (interleaved, so a busy machine slows them alike); the
    crops go in batches of ``batch`` (the CLI's default ``--batch-size``)."""
    from vitdeca.model import DecaModel, ModelConfig
    from vitdeca.pipeline import Reconstructor
    from vitdeca.pipeline.decode import crop_batch

    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint or Path(tmp) / "untrained.pt"
        if checkpoint is None:
            DecaModel(ModelConfig()).save(path)
        full = Reconstructor.from_pretrained(path, device="cpu", detail=True, method="regress")
        coarse = Reconstructor(full.model, device="cpu", detail=False)
    prepared = [p for p in (full.prepare(path) for path in photos) if p.crops]
    chunks = [prepared[i : i + batch] for i in range(0, len(prepared), batch)]
    images = [crop_batch([c for p in chunk for c in p.crops]) for chunk in chunks]
    n_images = sum(len(p.crops) for p in prepared)
    model = full.model

    def run(fn) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for i, chunk in enumerate(chunks):
                fn(i, chunk)
        return (time.perf_counter() - start) / n_images

    measures = {
        "encoder": lambda i, chunk: full.encode(images[i]),  # as the pipeline encodes (flip included)
        "whole": lambda i, chunk: full.reconstruct_crops(chunk),
        "coarse_encoder": lambda i, chunk: coarse.encode(images[i]),
        "coarse_whole": lambda i, chunk: coarse.reconstruct_crops(chunk),
        # the render makes its images when read: read the two the results keep (render, shape render)
        "decode_coarse": lambda i, chunk: model.decode(coarse_codes[i], detail=False).renders(),
        "decode_detail": lambda i, chunk: model.decode(codes[i], detail=True).renders(),
    }
    with torch.no_grad():
        codes = [model.encode(x) for x in images]
        coarse_codes = [c.replace(detail=None) for c in codes]
    runs: dict[str, list[float]] = {name: [] for name in measures}
    for repeat in range(repeats + 1):
        for name, fn in measures.items():
            seconds = run(fn)
            if repeat:  # the first pass warms caches up
                runs[name].append(seconds)
    out = {name: statistics.median(values) for name, values in runs.items()}
    out["images"] = n_images
    return out


def table(rows, timing: dict[str, float], repeats: int, batch: int, model: str) -> str:
    """The results page: the fitting section (when ``rows`` has any) and the checkpoint section."""
    lines = [
        "# Benchmark: reconstruct",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} torch thread(s). Other jobs on the machine, if any, "
        f"inflate the times (1-min load average at the end: {os.getloadavg()[0]:.1f}).",
        "",
    ]
    if rows:
        lines += fitting_section(rows)
    return "\n".join(lines + checkpoint_section(timing, repeats, batch, model))


def fitting_section(rows) -> list[str]:
    nme = np.array([r[2] for r in rows])
    start = np.array([r[1] for r in rows])
    seconds = np.array([r[4] for r in rows])
    fit_seconds = np.array([r[3] for r in rows])
    lines = [
        "## Per-image fitting (no weights, default FitConfig) on the shared photos",
        "",
        "NME = mean 2D landmark error / outer-eye-corner distance, against the dlib detector's landmarks "
        "(the fitting target). 'rigid start' = the template face with the closed-form pose and camera "
        "(the baseline). Seconds = detection + crop + fit + decode + texture of the largest face, in memory.",
        "",
        "| photo | rigid start NME | fitted NME | fit s | whole s |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {n} | {a:.4f} | {b:.4f} | {c:.2f} | {d:.2f} |" for n, a, b, c, d in rows]
    lines += [
        "",
        "| summary | value | target |",
        "|---|---:|---|",
        f"| photos with a face | {len(rows)} | |",
        f"| median NME fitted (rigid start) | {np.median(nme):.4f} ({np.median(start):.4f}) | <= 0.03 |",
        f"| ratio median NME fitted / rigid start | {np.median(nme) / np.median(start):.2f} | |",
        f"| max NME fitted | {nme.max():.4f} | |",
        f"| seconds per photo: median / max | {np.median(seconds):.2f} / {seconds.max():.2f} | <= 10 |",
        f"| of which the fit: median / max | {np.median(fit_seconds):.2f} / {fit_seconds.max():.2f} "
        "| <= 0.5 (issue 15) |",
        "",
    ]
    return lines


def checkpoint_section(timing: dict[str, float], repeats: int, batch: int, model: str) -> list[str]:
    ms = {k: 1000 * v for k, v in timing.items()}
    detail_ratio, coarse_ratio = ms["whole"] / ms["encoder"], ms["coarse_whole"] / ms["coarse_encoder"]
    return [
        f"## With a checkpoint ({model}), after detection",
        "",
        f"Median of {repeats} runs over {int(timing['images'])} crops in batches of {batch} (CLI default), "
        "every measure run in turn within each repeat. 'whole' = `Reconstructor.reconstruct_crops`: "
        "encoders, decode, texture extraction, neutral mesh, results in original pixels (the dense detail "
        "mesh is built lazily, when written). 'encoder only' = `Reconstructor.encode`, as the pipeline "
        "runs it: with `--method regress`'s test-time flip averaging (the coarse encoder on each crop and "
        "its mirror image).",
        "",
        "| measure | ms / image | ratio to its encoder |",
        "|---|---:|---:|",
        f"| encoder only: coarse (flipped) + detail encoders | {ms['encoder']:.1f} | 1.00 |",
        f"| whole, with the detail branch (default) | {ms['whole']:.1f} | {detail_ratio:.2f} |",
        f"| encoder only: coarse encoder (flipped) | {ms['coarse_encoder']:.1f} | 1.00 |",
        f"| whole, `--no-detail` | {ms['coarse_whole']:.1f} | {coarse_ratio:.2f} |",
        f"| of which `DecaModel.decode(detail=False)`, render and shape read | {ms['decode_coarse']:.1f} | |",
        f"| `DecaModel.decode(detail=True)`, same | {ms['decode_detail']:.1f} | |",
        "",
        "Target: whole / encoder <= 1.15.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    parser.add_argument(
        "--batch", type=int, default=8, help="crops per batch with a checkpoint (the CLI's --batch-size)"
    )
    parser.add_argument("--skip-fitting", action="store_true", help="only the checkpoint timing")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, see the doc)")
    parser.add_argument(
        "--checkpoint", default=None, help="time this model (zoo name or path) instead of an untrained one"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = shared_photos(args.limit)
    rows = [] if args.skip_fitting else fitting_rows(photos)
    timing = checkpoint_timing(photos[:12], args.repeats, args.batch, args.checkpoint)
    model = args.checkpoint or f"untrained default ModelConfig: {ModelConfig().encoder} + detail branch"
    text = table(rows, timing, args.repeats, args.batch, model)
    if rows:  # a partial run prints its section and leaves the full run's results file alone
        atomic_write_bytes(RESULTS, text.encode())
    print(text)


if __name__ == "__main__":
    main()
