"""Encoder throughput on CPU and the training-time cost of DropKey.

Claims measured (batch 8, 224x224, CPU):
1. eval-mode forward images/s of resnet50, vit_small_patch16_224, vit_base_patch16_224 (ratio vs resnet50);
2. train-mode forward+backward time of a ViT with DropKey 0.05 in every block vs DropKey off, same model
   and weights, runs interleaved (target: overhead <= 10 %).

Each number is the median of ``--repeats`` timed runs after one warm-up run (plus the fastest run, the
least disturbed by other jobs on a shared machine).
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


def bench_forward(names: list[str], batch: int, repeats: int) -> list[tuple[str, float, float]]:
    """(name, images/s from the median run, images/s from the fastest run) of eval-mode forward passes.

    The encoders take turns (round robin), so a burst of load on the shared machine hits them all alike.
    """
    images = torch.rand(batch, 3, 224, 224)
    encoders = {name: build_encoder(name, 236).eval() for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for name in names:  # warm-up
            encoders[name](images)
        for _ in range(repeats):
            for name in names:
                start = time.perf_counter()
                encoders[name](images)
                times[name].append(time.perf_counter() - start)
    return [(name, batch / statistics.median(t), batch / min(t)) for name, t in times.items()]


def bench_dropkey(name: str, batch: int, repeats: int) -> dict[str, float]:
    """Train-step (forward+backward) timings without and with DropKey, from interleaved runs.

    Returns the median wall seconds of each (``off``, ``on``), the median of the per-pair wall ratios
    (``ratio``; adjacent runs see similar machine load), that ratio in process CPU time (``cpu_ratio``) and
    the ratio of the fastest runs (``min_ratio``: the least disturbed by other processes).
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
        "min_ratio": min(on[0] for _, on in pairs) / min(off[0] for off, _ in pairs),
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

    lines = [
        f"# Encoder benchmark (CPU, batch {args.batch}, 224x224, median of {args.repeats} runs)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads; 1-min load average "
        f"{load_before:.1f} before / {load_after:.1f} after. Other jobs on the machine "
        "make absolute numbers noisy; ratios come from runs in the same process.",
        "",
        "## Eval-mode forward",
        "",
        "| encoder | images/s (median) | ratio vs resnet50 | images/s (fastest run) | ratio vs resnet50 |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {med:.2f} | {med / forward[0][1]:.2f} | {best:.2f} | {best / forward[0][2]:.2f} |"
            for name, med, best in forward
        ),
        "",
        f"## Train-mode forward+backward, DropKey {DROPKEY} in every block vs off (interleaved runs)",
        "",
        "| encoder | off: s/step | DropKey: s/step | overhead: median pair | CPU time | fastest runs |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {name} | {t['off']:.3f} | {t['on']:.3f} | {100 * (t['ratio'] - 1):+.1f} % "
            f"| {100 * (t['cpu_ratio'] - 1):+.1f} % | {100 * (t['min_ratio'] - 1):+.1f} % |"
            for name, t in train.items()
        ),
        "",
        "Target: overhead <= 10 %. s/step are medians; 'median pair' is the median of per-pair wall ratios",
        "(each DropKey step timed right after a step without it), 'CPU time' the same in process CPU time,",
        "'fastest runs' the ratio of the minimum wall times (least disturbed by other jobs).",
        "",
    ]
    table = "\n".join(lines)
    print(table)
    atomic_write_bytes(RESULTS, table.encode())


if __name__ == "__main__":
    main()
