"""Identity embedding throughput: the torch port of dlib's ResNet vs dlib's own compute_face_descriptor.

Both embed the same 16 aligned 150x150 chips (dlib.get_face_chip on faces of dlib's bald_guys.jpg),
one batch of 16 per call, on the CPU. Reports chips/s (median of several runs) and the ratio to dlib,
plus the port's end-to-end cost (torch alignment + network, forward and backward) as used by L_id.

Run: ``python benchmarks/bench_identity.py`` (writes benchmarks/results/identity.md).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import dlib
import imageio.v3 as iio
import numpy as np
import torch

from inputs import shared_dir
from vitdeca.identity import dlib_model_path, load_identity_net
from vitdeca.storage import atomic_write_bytes

REPO = Path(__file__).resolve().parents[1]
BATCH, RUNS = 16, 7


def _median_seconds(fn: Callable[[], object], runs: int = RUNS) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _faces() -> tuple[np.ndarray, list, list[np.ndarray]]:
    shared = shared_dir()
    image = np.ascontiguousarray(iio.imread(shared / "faces" / "dlib_examples" / "bald_guys.jpg")[..., :3])
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
    shapes = [predictor(image, box) for box in dlib.get_frontal_face_detector()(image, 0)][:BATCH]
    chips = [dlib.get_face_chip(image, shape, size=150, padding=0.25) for shape in shapes]
    return image, shapes, chips


def main() -> None:
    image, shapes, chips = _faces()
    assert len(chips) == BATCH, f"found only {len(chips)} faces"
    recognizer = dlib.face_recognition_model_v1(str(dlib_model_path()))
    net = load_identity_net("dlib")
    batch = torch.from_numpy(np.stack(chips)).permute(0, 3, 1, 2).float() / 255.0
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    landmarks = [torch.tensor([[p.x + 0.5, p.y + 0.5] for p in s.parts()])[None] for s in shapes]

    def port_chips() -> torch.Tensor:
        with torch.no_grad():
            return net.forward_chips(batch)

    def port_end_to_end() -> None:  # what L_id does in training: align from landmarks, embed, backprop
        img = pixels.clone().requires_grad_(True)
        aligned = torch.cat([net.align(img, lm) for lm in landmarks])
        torch.nn.functional.normalize(net.forward_chips(aligned), dim=1).sum().backward()

    dlib_s = _median_seconds(lambda: recognizer.compute_face_descriptor(chips))
    default_threads = torch.get_num_threads()
    rows = [("dlib compute_face_descriptor (16 chips)", dlib_s)]
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        rows.append((f"port forward_chips, {threads} torch thread(s)", _median_seconds(port_chips)))
        rows.append(
            (f"port align+embed fwd+bwd, {threads} torch thread(s)", _median_seconds(port_end_to_end, 3))
        )
    torch.set_num_threads(default_threads)

    ref = np.array([np.array(d) for d in recognizer.compute_face_descriptor(chips)])
    max_diff = float(np.abs(port_chips().numpy() - ref).max())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        "# Identity embedding throughput (CPU, batch 16, 150x150 chips)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"dlib {dlib.__version__}; 1-min load average at the end: {load:.1f} (shared with other jobs, "
        "so absolute numbers are noisy; both sides were measured in the same run).",
        f"Median of {RUNS} runs (3 for the end-to-end rows); "
        f"port vs dlib max |descriptor diff| = {max_diff:.1e}.",
        "",
        "| method | s / batch | chips/s | vs dlib |",
        "|---|---:|---:|---:|",
    ]
    for name, seconds in rows:
        lines.append(f"| {name} | {seconds:.3f} | {BATCH / seconds:.1f} | {dlib_s / seconds:.2f}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    atomic_write_bytes(REPO / "benchmarks" / "results" / "identity.md", text.encode())


if __name__ == "__main__":
    main()
