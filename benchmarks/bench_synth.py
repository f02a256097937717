"""Synthetic-face generator throughput (images per second), CPU.

Claim (docs/synth.md): ``vitdeca synth`` renders and writes S×S images (default 224) at the rate below;
the price of its realism (2× supersampling, procedural albedos, backgrounds, eyeballs, camera effects,
JPEG/PNG/npy files) is stated against the bare renderer.

Measured, each the median of ``--repeats`` runs over ``--images`` images in batches of 8 (wall seconds):
1. baseline, same run: :class:`vitdeca.render.MeshRenderer` alone on the same posed meshes at S² with a
   uniform albedo and no background (what any render of the head model costs);
2. :class:`SynthRenderer.render` with ``supersample=1``;
3. :class:`SynthRenderer.render` with ``supersample=2`` (the default);
4. :func:`write_synthetic_dataset` end to end (head model, texel geometry, sampling, rendering, every
   file), ``supersample=2``, ``uv_size`` (default 512), procedural backgrounds.

Usage: ``python benchmarks/bench_synth.py [--images 16] [--repeats 3] [--size 224 --uv-size 512 --batch 8]``;
writes ``results/synth.md`` (224 px) or ``results/synth_<S>.md``. The default model's data are made at
``--size 128 --uv-size 256 --batch 16`` (issue 12's target: ≥ 20 images/s at 128 px).
"""

from __future__ import annotations

import argparse
import dataclasses
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

RESULTS = Path(__file__).resolve().parent / "results"


def bare_render(head, specs, size: int, batch_size: int) -> None:
    renderer = MeshRenderer(head.faces, head.uv_coords, head.uv_faces, size, 256)
    albedo = torch.full((1, 3, 256, 256), 0.6)
    with torch.no_grad():
        for start in range(0, len(specs), batch_size):
            batch = specs[start : start + batch_size]
            codes = [torch.from_numpy(np.stack([s.subject.shape for s in batch]))]
            codes += [
                torch.from_numpy(np.stack([getattr(s, k) for s in batch])) for k in ("expression", "pose")
            ]
            out = head(*codes)
            n = len(batch)
            camera = fit_camera(out.landmarks3d, torch.full((n,), 0.67), torch.zeros(n, 2))
            light = torch.from_numpy(np.stack([s.light for s in batch]))
            renderer(out.vertices, camera, albedo.expand(n, -1, -1, -1), light)


def synth_render(head, specs, options: SynthOptions, supersample: int) -> float:
    """Seconds of SynthRenderer.render over the specs (setup excluded)."""
    renderer = SynthRenderer(head, dataclasses.replace(options, supersample=supersample))
    start = time.perf_counter()
    for s in range(0, len(specs), options.batch_size):
        renderer.render(specs[s : s + options.batch_size])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--uv-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    size, batch = args.size, args.batch
    options = SynthOptions(n_images=args.images, seed=0, size=size, uv_size=args.uv_size, batch_size=batch)
    head = load_synth_head(options)
    specs = image_specs(options, head, [])
    n = len(specs)
    load_before = os.getloadavg()[0]
    base = median_seconds(lambda: bare_render(head, specs, size, batch), args.repeats, warmup=False)
    ss1 = statistics.median(synth_render(head, specs, options, 1) for _ in range(args.repeats))
    ss2 = statistics.median(synth_render(head, specs, options, 2) for _ in range(args.repeats))

    plain = dataclasses.replace(options, blur_fraction=0.0, occluder_fraction=0.0, neck_fade_mm=0.0)

    def end_to_end(chosen: SynthOptions) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            write_synthetic_dataset(Path(tmp) / "d", chosen, progress=False)

    full = median_seconds(lambda: end_to_end(options), args.repeats, warmup=False)
    full_plain = median_seconds(lambda: end_to_end(plain), args.repeats, warmup=False)
    rows = [
        (f"baseline: MeshRenderer alone, {size}², uniform albedo", base),
        ("SynthRenderer.render, supersample 1", ss1),
        ("SynthRenderer.render, supersample 2 (default)", ss2),
        (f"write_synthetic_dataset end to end ({n} images, setup and files included)", full),
        ("same, without blur, occluders and neck fade", full_plain),
    ]
    lines = [
        f"Synthetic generator, {n} images of {size}×{size} (UV maps {args.uv_size}²) in batches of {batch}; "
        f"median of {args.repeats} runs, wall time. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; 1-min load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after. Command: "
        f"`python benchmarks/bench_synth.py --images {args.images} --repeats {args.repeats} --size {size} "
        f"--uv-size {args.uv_size} --batch {batch}`.",
        "",
        "| what | images/s | s/image | time vs baseline |",
        "|---|---:|---:|---:|",
    ]
    for label, seconds in rows:
        lines.append(f"| {label} | {n / seconds:.2f} | {seconds / n:.3f} | {seconds / base:.1f}× |")
    table = "\n".join(lines) + "\n"
    print(table)
    atomic_write_bytes(RESULTS / ("synth.md" if size == 224 else f"synth_{size}.md"), table.encode())


if __name__ == "__main__":
    main()
