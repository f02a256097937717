"""``refine`` (issue 12): the short fit after the trained encoder, against per-image fitting, in one run.

Claim measured: ``refine`` (the default model's codes, then :meth:`vitdeca.fit.FitConfig.refining`) reaches
per-image fitting's 2D landmark NME (mean point error / outer-eye-corner distance, against the detector's 68
landmarks, the points both fit) in ≤ 1/3 of fitting's time per face after detection. Rows, each on the
same faces:

- ``fit``: fitting from the template with the default :class:`~vitdeca.fit.FitConfig` (the reference);
- ``refine``: the current rule (``FitConfig.refining``);
- ``refine (previous rule)``: the rule before it, ``FitConfig.warm`` (30 % of fit's steps in both
  stages, fit's learning rates), as a baseline for the change;
- with ``--steps N ...``: ``refine (N steps)``, the current rule with ``refine_landmark_iterations`` N (the
  accuracy / time trade-off of the step count).

Per photo folder: median and mean NME with bootstrap 95 % intervals, the paired difference to ``fit`` (its
median over faces, with a bootstrap interval) and the median seconds per face ÷ fit's. Every face of each
photo is used (the largest only with ``--largest``); a face the two crops disagree on is skipped.

Usage: ``python benchmarks/bench_refine.py [--model vitdeca-vits14] [--photos DIR ...] [--steps N ...]``.
Writes ``benchmarks/results/refine.md``. Run it on a quiet machine: the time ratio is only meaningful then.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from stats import bootstrap_interval
from vitdeca.faces.image_io import IMAGE_SUFFIXES

RESULTS = Path(__file__).resolve().parent / "results" / "refine.md"


def faces_of(folder: Path, recs: dict, largest: bool) -> list[tuple[str, dict]]:
    """[(label, {row: FaceCrop})]: the faces of every photo under ``folder``, cropped by each row's model."""
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    faces = []
    for path in photos:
        prepared = {row: rec.prepare(path, all_faces=not largest) for row, rec in recs.items()}
        count = min(len(p.crops) for p in prepared.values())
        for k in range(count):
            faces.append((f"{path.name}#{k}", {row: prepared[row].crops[k] for row in recs}))
    return faces


def measure(rec, crop, config) -> tuple[float, float]:
    """(NME, seconds) of one face: encoder (if any) + fitting with ``config``."""
    from vitdeca.fit import fit_codes, landmark_nme, landmarks2d
    from vitdeca.pipeline.decode import crop_batch

    target = torch.from_numpy(crop.crop_landmarks[None]).float()
    start = time.perf_counter()
    images = crop_batch([crop], rec.device)
    init = None
    if rec.refine:
        with torch.no_grad():
            init = rec.encode(images)
    codes = fit_codes(rec.model, images, target, config, init=init).codes
    seconds = time.perf_counter() - start
    with torch.no_grad():
        nme = landmark_nme(landmarks2d(rec.model, codes, rec.crop_size), target)
    return float(nme[0]), seconds


def folder_table(name: str, nme: dict, seconds: dict) -> list[str]:
    """Markdown rows for one photo folder (``nme``/``seconds``: row → (N,) per face, ``fit`` first)."""
    lines = [
        f"## {name} ({len(nme['fit'])} faces)",
        "",
        "| method | median NME [95 % CI] | mean NME [95 % CI] | paired difference to fit, median [95 % CI] "
        "| median s/face | time ÷ fit |",
        "|---|---|---|---|---|---|",
    ]
    reference = float(np.median(seconds["fit"]))
    for row in nme:
        values = 100 * nme[row]
        difference = values - 100 * nme["fit"]
        med, mean = bootstrap_interval(values, np.median), bootstrap_interval(values, np.mean)
        diff = bootstrap_interval(difference, np.median)
        lines.append(
            f"| {row} | {np.median(values):.2f} % [{med[0]:.2f}, {med[1]:.2f}] "
            f"| {values.mean():.2f} % [{mean[0]:.2f}, {mean[1]:.2f}] "
            f"| {np.median(difference):+.2f} [{diff[0]:+.2f}, {diff[1]:+.2f}] "
            f"| {np.median(seconds[row]):.3f} | {np.median(seconds[row]) / reference:.2f} |"
        )
    return lines + [""]


def main() -> None:
    from vitdeca.pipeline import Reconstructor

    shared = Path(os.environ.get("VITDECA_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vitdeca-vits14")
    parser.add_argument(
        "--photos",
        nargs="+",
        default=[str(shared / "faces" / "deca_testsamples"), str(shared / "faces" / "dlib_examples")],
    )
    parser.add_argument("--largest", action="store_true", help="only the largest face of each photo")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--steps", type=int, nargs="*", default=[], help="extra rows: refine with N steps")
    args = parser.parse_args()
    torch.set_num_threads(2)

    refine = Reconstructor.from_pretrained(args.model, device="cpu", detail=False, method="refine")
    fit = Reconstructor.from_pretrained(None, device="cpu", method="fit")
    recs = {"fit": fit, "refine": refine, "refine (previous rule)": refine}
    base = fit.fit_config
    configs = {"fit": base, "refine": refine.fit_config.refining(), "refine (previous rule)": base.warm()}
    for steps in args.steps:
        recs[f"refine ({steps} steps)"] = refine
        configs[f"refine ({steps} steps)"] = replace(
            refine.fit_config, refine_landmark_iterations=steps
        ).refining()
    rows = list(recs)
    tables = []
    for folder in map(Path, args.photos):
        faces = faces_of(folder, recs, args.largest)
        nme = {row: np.zeros(len(faces)) for row in rows}
        seconds = {row: np.zeros(len(faces)) for row in rows}
        for i, (label, crops) in enumerate(faces):
            for row in rows:  # interleaved, so load changes hit every row alike
                nme[row][i], seconds[row][i] = measure(recs[row], crops[row], configs[row])
            print(label, {row: f"{100 * nme[row][i]:.2f} %" for row in rows}, flush=True)
        tables += folder_table(folder.name, nme, seconds)
    refining = configs["refine"]
    head = [
        "# `refine` against per-image fitting (issue 12)",
        "",
        f"Model `{args.model}`; {platform.machine()} CPU, torch {torch.__version__}, 2 threads, load average "
        f"{os.getloadavg()[0]:.1f} at the end. Command: `python benchmarks/bench_refine.py "
        f"--photos {' '.join(args.photos)}{' --largest' if args.largest else ''}"
        f"{' --steps ' + ' '.join(map(str, args.steps)) if args.steps else ''}`.",
        "",
        f"`refine`: {refining.landmark_iterations} landmark steps, {refining.photometric_iterations} "
        f"photometric, lr_scale {refining.lr_scale}; `fit`: {base.landmark_iterations} + "
        f"{base.photometric_iterations} from the template, lr_scale {base.lr_scale}. NME against the "
        "detector's 68 points (outer-eye normalised); seconds per face after detection (encoder + fit).",
        "",
    ]
    Path(args.out).write_text("\n".join(head + tables), encoding="utf-8")
    print("\n".join(head + tables))


if __name__ == "__main__":
    main()
