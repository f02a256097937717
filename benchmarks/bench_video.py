"""Video with ``--save arkit`` (issue 14): frames per second of regress, refine and fit, in one run.

The clip: a held-out real photo (``--photo``, default the DECA test sample ``IMG_0392_inputs.jpg``) moved by
a smooth similarity warp per frame (rotation ±6°, scale ±5 %, a few pixels of shift; ``--frames`` at 30 fps),
written as an H.264 MP4 with :func:`vitdeca.media.video_writer`, so the detector and the tracker see one
moving face.

Measured per method, interleaved in one process: the whole ``BatchRunner`` run on the clip with
``--save arkit`` (the Live Link Face CSV; two passes over the video: detection, codes, one identity per
track, smoothing, decoding, eyes), its frames per second, and frames per second after detection: the
run's time minus the detector's own time on the same frames (``detect_faces`` of the default backend,
timed separately on every frame). Target: ≥ 5 frames/s after detection with the learned model. ``fit``
(no weights, warm-started from the previous frame) is the reference; ratios are to it. Accuracy, in an
untimed pass of ``Reconstructor.iter_video`` per method: each frame's final 2D landmarks against the
detector's 68 points of that frame (the points refine and fit fit), outer-eye NME, mean and median over the
frames.

Usage: ``python benchmarks/bench_video.py [--frames 60] [--model vitdeca-vits14]``. Writes
``benchmarks/results/video.md``. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "video.md"
FPS = 30.0


def make_clip(photo: Path, path: Path, frames: int) -> list[np.ndarray]:
    """Write the moving-photo clip to ``path``; returns its frames (H,W,3) uint8 RGB."""
    from vitdeca import media
    from vitdeca.faces import read_image

    image = read_image(photo)
    height, width = image.shape[:2]
    height, width = height - height % 2, width - width % 2  # H.264 wants even sides
    image = image[:height, :width]
    out = []
    with media.video_writer(path, fps=FPS) as write:
        for k in range(frames):
            phase = 2 * math.pi * k / frames
            matrix = cv2.getRotationMatrix2D(
                (width / 2, height / 2), 6 * math.sin(phase), 1 + 0.05 * math.sin(2 * phase)
            )
            matrix[:, 2] += (4 * math.cos(phase), 3 * math.sin(phase))
            frame = cv2.warpAffine(image, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
            write(frame)
            out.append(frame)
    return out


def detector_seconds(frames: list[np.ndarray], backend: str) -> float:
    from vitdeca.faces import detect_faces

    start = time.perf_counter()
    for frame in frames:
        detect_faces(frame, backend=backend)
    return time.perf_counter() - start


def run_seconds(rec, clip: Path) -> tuple[float, str]:
    """Seconds of one ``--save arkit`` run on the clip, and its summary message."""
    from vitdeca.pipeline import BatchRunner, RunOptions

    with tempfile.TemporaryDirectory() as tmp:
        options = RunOptions(save=frozenset({"arkit"}), progress=False)
        start = time.perf_counter()
        summary = BatchRunner(rec, Path(tmp) / "out", options).run([clip])
        seconds = time.perf_counter() - start
    (record,) = summary.records
    if record.status != "ok":
        raise SystemExit(f"{clip}: {record.status} {record.message}")
    return seconds, record.message


def frame_errors(rec, clip: Path) -> np.ndarray:
    """(frames with a face,) outer-eye NME of each frame's final landmarks against its detected ones."""
    from vitdeca.evaluation.landmarks import nme

    faces = [frame.face for frame in rec.iter_video(clip) if frame.face is not None]
    return np.array([nme(face.landmarks2d, face.detected_landmarks) for face in faces])


def main() -> None:
    from vitdeca.faces.backends import DEFAULT_BACKEND
    from vitdeca.pipeline import Reconstructor

    shared = Path(os.environ.get("VITDECA_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_photo = shared / "faces" / "deca_testsamples" / "examples" / "IMG_0392_inputs.jpg"
    parser.add_argument("--photo", default=str(default_photo))
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--model", default="vitdeca-vits14")
    parser.add_argument("--repeats", type=int, default=2, help="runs per method (the median is kept)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    recs = {
        method: Reconstructor.from_pretrained(args.model, device="cpu", method=method)
        for method in ("regress", "refine")
    }
    recs["fit"] = Reconstructor.from_pretrained(None, device="cpu", method="fit")
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        frames = make_clip(Path(args.photo), clip, args.frames)
        detect = float(np.median([detector_seconds(frames, DEFAULT_BACKEND) for _ in range(args.repeats)]))
        runs: dict[str, list[float]] = {m: [] for m in recs}
        messages = {}
        for _ in range(args.repeats):
            for method, rec in recs.items():  # interleaved: load changes hit every method alike
                seconds, messages[method] = run_seconds(rec, clip)
                runs[method].append(seconds)
        errors = {method: frame_errors(rec, clip) for method, rec in recs.items()}
    medians = {m: float(np.median(v)) for m, v in runs.items()}
    report = render(args, frames[0].shape, detect, medians, messages, errors)
    print(report)
    atomic_write_bytes(RESULTS, report.encode())


def render(args, shape, detect: float, seconds: dict, messages: dict, errors: dict) -> str:
    n = args.frames
    lines = [
        "# Video with `--save arkit`: frames per second (issue 14)",
        "",
        f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}, 2 threads; 1-minute "
        f"load average {os.getloadavg()[0]:.1f} at the end. Command: `python benchmarks/bench_video.py "
        f"--frames {n} --repeats {args.repeats}`. Clip: `{Path(args.photo).name}` ({shape[1]}×{shape[0]}) "
        f"moved by a smooth similarity warp, {n} frames at {FPS:g} fps. Detector (default backend) alone on "
        f"the same frames: {detect:.2f} s ({n / detect:.1f} frames/s). Median of {args.repeats} runs per "
        "method, interleaved.",
        "",
        "| method | run s | frames/s | frames/s after detection | time ÷ fit's | NME vs detector, mean "
        "(median) | summary |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for method, total in seconds.items():
        after = max(total - detect, 1e-9)
        error = errors[method]
        lines.append(
            f"| {method} | {total:.1f} | {n / total:.1f} | {n / after:.1f} | {total / seconds['fit']:.2f} "
            f"| {100 * error.mean():.2f} % ({100 * np.median(error):.2f} %) | {messages[method]} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
