"""Videos of a head that turns to a profile and back (issue 19): landmark error per frame by yaw, with and
without the video's re-framing of turned faces, in one run (CPU).

Clip: one synthetic subject (``vitdeca synth``'s generator, ICT-FaceKit eyes, a photo background) rendered
at 320 px while its head turns about the vertical axis from 0° to ``--max-yaw`` and back over ``--frames``
frames (30 fps, H.264), with the exact 68 landmarks of every frame. Each row runs ``Reconstructor.iter_video``
on it (default detector cascade, the default model) and scores every frame's ``landmarks2d`` against the
truth: box NME (mean point error / sqrt(w·h) of the true points' box, the AFLW2000-3D protocol) by |yaw|
bin, and the frames with a face. Rows: ``regress`` and ``refine``, each with the video's re-framing of
turned faces (the default, ``Reconstructor.reframe_min_yaw`` 45°) and without it (the baseline: crops
from the detector's smoothed points only), and refine fitting the detector's points alone
(``FitConfig(refine_fusion=False)``, video refine before session 15), paired per subject with the
default refine. Accuracy only: no timings.

Usage: ``python benchmarks/bench_video_turn.py [--frames 90] [--max-yaw 80] [--seeds 0,1]``; writes
``benchmarks/results/video_turn.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from inputs import shared_dir
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "video_turn.md"
FPS = 30.0
BINS = ((0, 30), (30, 60), (60, 90))


def turning_clip(path: Path, frames: int, max_yaw: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Write the clip; returns (true landmarks (N,68,2) pixels, yaw (N,) degrees) per frame."""
    from vitdeca import media
    from vitdeca.data.synth import SynthOptions, SynthRenderer, image_specs, load_synth_head

    shared = shared_dir()
    options = SynthOptions(n_images=1, images_per_subject=1, seed=seed, size=320, yaw_max=0.0, eyes="ict",
                           face_fraction=(0.42, 0.42), shift=0.0, blur_fraction=0.0, occluder_fraction=0.0,
                           backgrounds=str(shared / "faces" / "dlib_examples")).validated()  # fmt: skip
    head = load_synth_head(options)
    spec = image_specs(options, head, [])[0]
    renderer = SynthRenderer(head, options)
    yaws = max_yaw * np.sin(np.pi * np.arange(frames) / (frames - 1))  # 0 → max → 0
    truth = []
    with media.video_writer(path, fps=FPS) as write:
        for yaw in yaws:
            pose = np.zeros_like(spec.pose)
            pose[1] = math.radians(yaw)
            rendered = renderer.render([dataclasses.replace(spec, pose=pose, blur=None, occluder=None)])
            write(rendered.images[0])
            truth.append(np.asarray(rendered.landmarks[0], np.float64))
    return np.stack(truth), yaws


def box_nme(pred: np.ndarray, truth: np.ndarray) -> float:
    from vitdeca.evaluation.landmarks import nme

    return float(nme(pred, truth, "box"))


def run_row(rec, clip: Path, truth: np.ndarray, yaws: np.ndarray) -> dict[int, list[float]]:
    """{bin: [box NME of each frame with a face]}; frames without a face count as misses (NaN)."""
    out: dict[int, list[float]] = {b: [] for b in range(len(BINS))}
    for frame in rec.iter_video(clip):
        b = min(int(abs(yaws[frame.index]) // 30), len(BINS) - 1)
        face = frame.face
        out[b].append(np.nan if face is None else box_nme(face.landmarks2d, truth[frame.index]))
    return out


def cell(values: list[float]) -> str:
    values = np.asarray(values, np.float64)
    found = values[~np.isnan(values)]
    if not len(found):
        return f"– (0/{len(values)})"
    return f"{100 * found.mean():.2f} % (median {100 * np.median(found):.2f}; {len(found)}/{len(values)})"


ROWS = (  # (row, method, reframe_min_yaw: None the default, refine's landmark mix)
    ("regress, re-framed (default)", "regress", None, True),
    ("regress, not re-framed", "regress", math.inf, True),
    ("refine, re-framed (default)", "refine", None, True),
    ("refine, not re-framed", "refine", math.inf, True),
    ("refine, re-framed, detector's points (before session 15)", "refine", None, False),
)
PAIRED = ("refine, re-framed (default)", "refine, re-framed, detector's points (before session 15)")


def run_rows(args, clip: Path, truth: np.ndarray, yaws: np.ndarray, seed: int) -> dict[str, dict]:
    """{row: {bin: [box NME per frame]}} of every row of :data:`ROWS` on one clip."""
    from vitdeca.fit import FitConfig
    from vitdeca.pipeline import Reconstructor

    rows = {}
    for key, method, min_yaw, fusion in ROWS:
        fit = FitConfig(refine_fusion=fusion) if method == "refine" else None
        rec = Reconstructor.from_pretrained(args.model, device="cpu", method=method, fit=fit)
        rec.reframe_min_yaw = rec.reframe_min_yaw if min_yaw is None else min_yaw
        rows[key] = run_row(rec, clip, truth, yaws)
        print(key, seed, {b: cell(v) for b, v in rows[key].items()}, flush=True)
    return rows


def paired_lines(per_seed: dict[int, dict[str, dict]]) -> list[str]:
    """Mean per-frame NME difference of :data:`PAIRED`'s rows, per subject and bin (frames of one clip
    are not independent, so the subjects, not a bootstrap over frames, show the noise)."""
    row, baseline = PAIRED
    lines = ["", f"Paired: `{row}` − `{baseline}`, mean box NME difference in points over the same frames,",
             "per subject:", "", "| subject | " + " | ".join(f"{lo}-{hi}°" for lo, hi in BINS) + " |",
             "|---|" + "---|" * len(BINS)]  # fmt: skip
    for seed, rows in per_seed.items():
        diffs = []
        for b in range(len(BINS)):
            diff = 100 * (np.asarray(rows[row][b]) - np.asarray(rows[baseline][b]))
            diffs.append(f"{np.nanmean(diff):+.2f}" if np.isfinite(diff).any() else "–")
        lines.append(f"| {seed} | " + " | ".join(diffs) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--max-yaw", type=float, default=80.0)
    parser.add_argument("--seeds", default="0,1", help="comma-separated subjects (synth seeds)")
    parser.add_argument("--model", default="vitdeca-vits14")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    per_seed: dict[int, dict[str, dict]] = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "turn.mp4"
            truth, yaws = turning_clip(clip, args.frames, args.max_yaw, seed)
            per_seed[seed] = run_rows(args, clip, truth, yaws, seed)
    header = " | ".join(f"{lo}-{hi}° box NME" for lo, hi in BINS)
    lines = [
        "# Video of a head turning to a profile and back: landmarks by yaw (issue 19)",
        "",
        f"`python benchmarks/bench_video_turn.py --frames {args.frames} --max-yaw {args.max_yaw:g} "
        f"--seeds {args.seeds}`; model `{args.model}`; {platform.machine()} CPU, torch {torch.__version__}. "
        "Accuracy only. Cells: mean box NME over the frames with a face (median; frames with a face / "
        "frames in the bin), all subjects pooled.",
        "",
        f"| method, crops | {header} |",
        "|---|" + "---|" * len(BINS),
    ]
    for key, *_ in ROWS:
        pooled = [sum((rows[key][b] for rows in per_seed.values()), []) for b in range(len(BINS))]
        lines.append(f"| {key} | " + " | ".join(cell(values) for values in pooled) + " |")
    text = "\n".join(lines + paired_lines(per_seed)) + "\n"
    print(text)
    atomic_write_bytes(Path(args.out), text.encode())


if __name__ == "__main__":
    main()
