"""Synthetic-face generator throughput (images per second), CPU.

Claim (docs/synth.md): ``vitdeca synth`` renders and writes 224×224 images at the rate below; the price of
its realism (2× supersampling, procedural albedos, backgrounds, eyeballs, camera effects, JPEG/PNG/npy
files) is stated against the bare renderer.

Measured, each the median of ``--repeats`` runs over ``--images`` images in batches of 8 (wall seconds):
1. baseline, same run: :class:`vitdeca.render.MeshRenderer` alone on the same posed meshes at 224² with a
   uniform albedo and no background (what any render of the head model costs);
2. :class:`SynthRenderer.render` with ``supersample=1``;
3. :class:`SynthRenderer.render` with ``supersample=2`` (the default);
4. :func:`write_synthetic_dataset` end to end (head model, texel geometry, sampling, rendering, every
   file), ``supersample=2``, ``uv_size=512``, procedural backgrounds.

Usage: ``python benchmarks/bench_synth.py [--images 16] [--repeats 3]``.
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

from timing import median_seconds
from vitdeca.data.synth import SynthOptions, image_specs, load_synth_head, write_synthetic_dataset
from vitdeca.data.synth_render import SynthRenderer, fit_camera
from vitdeca.render import MeshRenderer
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "synth.md"
BATCH = 8


def bare_render(head, specs) -> None:
    renderer = MeshRenderer(head.faces, head.uv_coords, head.uv_faces, 224, 256)
    albedo = torch.full((1, 3, 256, 256), 0.6)
    with torch.no_grad():
        for start in range(0, len(specs), BATCH):
            batch = specs[start : start + BATCH]
            codes = [torch.from_numpy(np.stack([s.subject.shape for s in batch]))]
            codes += [
                torch.from_numpy(np.stack([getattr(s, k) for s in batch])) for k in ("expression", "pose")
            ]
            out = head(*codes)
            n = len(batch)
            camera = fit_camera(out.landmarks3d, torch.full((n,), 0.67), torch.zeros(n, 2))
            light = torch.from_numpy(np.stack([s.light for s in batch]))
            renderer(out.vertices, camera, albedo.expand(n, -1, -1, -1), light)


def synth_render(head, specs, supersample: int) -> float:
    """Seconds of SynthRenderer.render over the specs (setup excluded)."""
    renderer = SynthRenderer(head, SynthOptions(supersample=supersample, uv_size=512))
    start = time.perf_counter()
    for s in range(0, len(specs), BATCH):
        renderer.render(specs[s : s + BATCH])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    options = SynthOptions(n_images=args.images, seed=0)
    head = load_synth_head(options)
    specs = image_specs(options, head, [])
    n = len(specs)
    base = median_seconds(lambda: bare_render(head, specs), args.repeats, warmup=False)
    ss1 = statistics.median(synth_render(head, specs, 1) for _ in range(args.repeats))
    ss2 = statistics.median(synth_render(head, specs, 2) for _ in range(args.repeats))

    def end_to_end() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            write_synthetic_dataset(Path(tmp) / "d", options, progress=False)

    full = median_seconds(end_to_end, args.repeats, warmup=False)
    rows = [
        ("baseline: MeshRenderer alone, 224², uniform albedo", base),
        ("SynthRenderer.render, supersample 1", ss1),
        ("SynthRenderer.render, supersample 2 (default)", ss2),
        (f"write_synthetic_dataset end to end ({n} images, setup and files included)", full),
    ]
    lines = [
        f"Synthetic generator, {n} images of 224×224 in batches of {BATCH}; median of {args.repeats} runs, "
        f"wall time. Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch threads {torch.get_num_threads()}; shared with other engineers' jobs while measured "
        "(timings are noisy).",
        "",
        "| what | images/s | s/image | time vs baseline |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in rows:
        lines.append(f"| {label} | {n / seconds:.2f} | {seconds / n:.3f} | {seconds / base:.1f}× |")
    table = "\n".join(lines) + "\n"
    print(table)
    atomic_write_bytes(RESULTS, table.encode())


if __name__ == "__main__":
    main()
