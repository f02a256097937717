"""Encoder throughput on CPU and the training-time cost of DropKey.

Claims measured (batch 8, 224x224, CPU):
1. eval-mode forward images/s of resnet50, vit_small_patch16_224, vit_base_patch16_224 (ratio vs resnet50);
2. train-mode forward+backward time of a ViT with DropKey 0.05 in every block vs DropKey off, same model
   and weights, runs interleaved (target: overhead <= 10 %).

Each number is the median of ``--repeats`` timed runs after one warm-up run.
Usage: ``python benchmarks/bench_encoders.py [--repeats 5] [--batch 8] [--full]`` (``--full`` adds the slow
ViT-B/16 train-step comparison; by default only ViT-S/16 is timed in training).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from vitdeca.nn import ENCODERS, build_encoder
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "encoders.md"
DROPKEY = 0.05


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_forward(names: list[str], batch: int, repeats: int) -> list[tuple[str, float]]:
    """(name, images/s) of eval-mode forward passes."""
    images = torch.rand(batch, 3, 224, 224)
    rows = []
    for name in names:
        enc = build_encoder(name, 236).eval()

        def run(enc=enc) -> None:
            with torch.no_grad():
                enc(images)

        rows.append((name, batch / _median_seconds(run, repeats)))
    return rows


def bench_dropkey(name: str, batch: int, repeats: int) -> dict[str, float]:
    """Train-step (forward+backward) timings without and with DropKey, from interleaved runs.

    Returns the median wall seconds of each (``off``, ``on``), the median of the per-pair wall ratios
    (``ratio``; adjacent runs see similar machine load) and that ratio in process CPU time (``cpu_ratio``).
    """
    torch.manual_seed(0)
    enc = build_encoder(name, 236).train()
    images = torch.rand(batch, 3, 224, 224)

    def step(ratio: float) -> tuple[float, float]:
        enc.set_dropkey(ratio, "constant")
        enc.zero_grad(set_to_none=True)
        wall, cpu = time.perf_counter(), time.process_time()
        enc(images).square().mean().backward()
        return time.perf_counter() - wall, time.process_time() - cpu

    step(0.0), step(DROPKEY)  # warm-up both paths
    pairs = [(step(0.0), step(DROPKEY)) for _ in range(repeats)]
    return {
        "off": statistics.median(off[0] for off, _ in pairs),
        "on": statistics.median(on[0] for _, on in pairs),
        "ratio": statistics.median(on[0] / off[0] for off, on in pairs),
        "cpu_ratio": statistics.median(on[1] / off[1] for off, on in pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--full", action="store_true", help="train-step timing for vit_base too (slow)")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    forward = bench_forward(list(ENCODERS), args.batch, args.repeats)
    vits = [n for n in ENCODERS if n.startswith("vit")] if args.full else ["vit_small_patch16_224"]
    train = {name: bench_dropkey(name, args.batch, args.repeats) for name in vits}
    load_after = os.getloadavg()[0]

    base = forward[0][1]
    lines = [
        f"# Encoder benchmark (CPU, batch {args.batch}, 224x224, median of {args.repeats} runs)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; 1-min load average "
        f"{load_before:.1f} before / {load_after:.1f} after. The machine was shared with other engineers' "
        "jobs, so absolute numbers are noisy; ratios come from runs in the same process.",
        "",
        "## Eval-mode forward",
        "",
        "| encoder | images/s | ratio vs resnet50 |",
        "|---|---:|---:|",
        *(f"| {name} | {ips:.2f} | {ips / base:.2f} |" for name, ips in forward),
        "",
        f"## Train-mode forward+backward, DropKey {DROPKEY} in every block vs off (interleaved runs)",
        "",
        "| encoder | off: s/step | DropKey: s/step | overhead (wall) | overhead (CPU time) | <= 10 % |",
        "|---|---:|---:|---:|---:|---|",
        *(
            f"| {name} | {t['off']:.3f} | {t['on']:.3f} | {100 * (t['ratio'] - 1):+.1f} % "
            f"| {100 * (t['cpu_ratio'] - 1):+.1f} % | {'met' if t['ratio'] <= 1.10 else 'MISSED'} |"
            for name, t in train.items()
        ),
        "",
        "Overheads are medians of per-pair ratios (each DropKey step timed right after a step without it).",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    atomic_write_bytes(RESULTS, table.encode())


if __name__ == "__main__":
    main()
