"""``refine`` (issue 12): the short fit after the trained encoder, against per-image fitting, in one run.

Claim measured: ``refine`` (the default model's codes, then :meth:`vitdeca.fit.FitConfig.refining`) reaches
per-image fitting's 2D landmark NME (mean point error / outer-eye-corner distance, against the detector's 68
landmarks, the points both fit) in ≤ 1/3 of fitting's time per face after detection. Rows, each on the
same faces:

- ``fit``: fitting from the template with the default :class:`~vitdeca.fit.FitConfig` (the reference);
- ``refine``: the current rule (``FitConfig.refining``, each landmark's target the mix of the detector's
  point and the encoder's, :func:`vitdeca.fit.fuse_landmarks`), timed with the detector's spread it needs;
- ``refine to the detector's points (before session 14)``: the same without the mix
  (``refine_fusion=False``), the baseline for that change;
- with ``--steps N ...``: ``refine (N steps)``, the current rule with ``refine_landmark_iterations`` N (the
  accuracy / time trade-off of the step count).

Per photo folder: median and mean NME with bootstrap 95 % intervals, the paired difference to ``fit`` (its
median over faces, with a bootstrap interval) and the median seconds per face ÷ fit's. Where the folder
holds dlib imglab XML annotations (``dlib_examples``), also the NME against them (the truth; the detector's
points are only what every row fits). Every face of each
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

from inputs import add_model_and_photos
from stats import bootstrap_interval
from vitdeca.faces.image_io import IMAGE_SUFFIXES

RESULTS = Path(__file__).resolve().parent / "results" / "refine.md"
BEFORE = "refine to the detector's points (before session 14)"  # FitConfig(refine_fusion=False)


def annotations(folder: Path) -> dict[str, np.ndarray]:
    """{image file name: (K,68,2) annotated points} from the dlib imglab XML files in ``folder``."""
    from vitdeca.errors import VitdecaError
    from vitdeca.evaluation.landmarks import read_dlib_xml

    truth: dict[str, list[np.ndarray]] = {}
    for xml in sorted(folder.glob("*.xml")):
        try:
            found = read_dlib_xml(xml)
        except VitdecaError:  # boxes only (dlib's testing.xml): no landmarks to compare with
            continue
        for ann in found:
            truth.setdefault(Path(ann.image).name, []).extend(ann.landmarks)
    return {name: np.stack(points) for name, points in truth.items()}


def faces_of(
    folder: Path, recs: dict, largest: bool
) -> list[tuple[str, np.ndarray, dict, np.ndarray | None]]:
    """[(label, image, {row: FaceCrop}, annotated (68,2) or None)]: the faces of every photo under
    ``folder``, cropped by each row's model, with the annotation matched to each where the folder has one."""
    from vitdeca.evaluation.landmarks import match_faces

    truth = annotations(folder)
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    faces = []
    for path in photos:
        prepared = {row: rec.prepare(path, all_faces=not largest) for row, rec in recs.items()}
        count = min(len(p.crops) for p in prepared.values())
        crops = next(iter(prepared.values())).crops[:count]
        matched = [None] * count
        if path.name in truth and count:
            for g, k in enumerate(match_faces(np.stack([c.landmarks for c in crops]), truth[path.name])):
                if k is not None:
                    matched[k] = truth[path.name][g]
        image = next(iter(prepared.values())).image
        for k in range(count):
            faces.append(
                (f"{path.name}#{k}", image, {row: prepared[row].crops[k] for row in recs}, matched[k])
            )
    return faces


def measure(rec, crop, image: np.ndarray, truth: np.ndarray | None) -> tuple[float, float, float]:
    """(NME against the detector's points, NME against the annotation (NaN: none), seconds) of one face:
    what the pipeline does after detection, :meth:`Reconstructor.estimate_codes` (encoder and fit), and for
    a refine that mixes in the encoder's points the detector's spread it needs (timed here)."""
    from dataclasses import replace as with_field

    from vitdeca.faces import Face, get_backend, transform_points
    from vitdeca.fit import landmark_nme, landmarks2d

    target = torch.from_numpy(crop.crop_landmarks[None]).float()
    start = time.perf_counter()
    if rec.fuses_landmarks:
        face = Face(crop.box, crop.score, crop.landmarks)
        crop = with_field(crop, spread=get_backend(rec.detector).landmark_spread(image, face))
    codes, _ = rec.estimate_codes([crop])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        points = landmarks2d(rec.model, codes, rec.crop_size)
    annotated = float("nan")
    if truth is not None:
        truth_crop = torch.from_numpy(transform_points(truth, crop.crop.matrix)[None]).float()
        annotated = float(landmark_nme(points, truth_crop)[0])
    return float(landmark_nme(points, target)[0]), annotated, seconds


def folder_table(name: str, nme: dict, truth: dict, seconds: dict) -> list[str]:
    """Markdown rows for one photo folder (``nme``/``truth``/``seconds``: row → (N,) per face, ``fit``
    first; ``truth`` NaN where a face has no annotation)."""
    lines = [
        f"## {name} ({len(nme['fit'])} faces)",
        "",
        "| method | median NME [95 % CI] | mean NME [95 % CI] | paired difference to fit, median [95 % CI] "
        "| against the annotations: median NME, paired difference to fit (faces) | median s/face "
        "| time ÷ fit |",
        "|---|---|---|---|---|---|---|",
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
            f"| {annotated_cell(truth[row], truth['fit'])} "
            f"| {np.median(seconds[row]):.3f} | {np.median(seconds[row]) / reference:.2f} |"
        )
    return lines + [""]


def annotated_cell(values: np.ndarray, fit: np.ndarray) -> str:
    """Median NME against the annotations and the paired median difference to fit, bootstrap 95 %."""
    known = ~np.isnan(values)
    if not known.any():
        return "–"
    values, difference = 100 * values[known], 100 * (values[known] - fit[known])
    med, diff = bootstrap_interval(values, np.median), bootstrap_interval(difference, np.median)
    return (
        f"{np.median(values):.2f} % [{med[0]:.2f}, {med[1]:.2f}], {np.median(difference):+.2f} "
        f"[{diff[0]:+.2f}, {diff[1]:+.2f}] ({int(known.sum())})"
    )


def main() -> None:
    from vitdeca.fit import FitConfig
    from vitdeca.pipeline import Reconstructor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_and_photos(parser)
    parser.add_argument("--largest", action="store_true", help="only the largest face of each photo")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--steps", type=int, nargs="*", default=[], help="extra rows: refine with N steps")
    args = parser.parse_args()
    torch.set_num_threads(2)

    def refine_with(**settings) -> Reconstructor:
        config = replace(FitConfig(), **settings)
        return Reconstructor.from_pretrained(
            args.model, device="cpu", detail=False, method="refine", fit=config
        )

    fit = Reconstructor.from_pretrained(None, device="cpu", method="fit")
    recs = {"fit": fit, "refine": refine_with(), BEFORE: refine_with(refine_fusion=False)}
    for steps in args.steps:
        recs[f"refine ({steps} steps)"] = refine_with(refine_landmark_iterations=steps)
    rows = list(recs)
    tables = []
    for folder in map(Path, args.photos):
        faces = faces_of(folder, recs, args.largest)
        nme, truth, seconds = ({row: np.zeros(len(faces)) for row in rows} for _ in range(3))
        for i, (label, image, crops, annotated) in enumerate(faces):
            for row in rows:  # interleaved, so load changes hit every row alike
                nme[row][i], truth[row][i], seconds[row][i] = measure(recs[row], crops[row], image, annotated)
            print(label, {row: f"{100 * nme[row][i]:.2f} %" for row in rows}, flush=True)
        tables += folder_table(folder.name, nme, truth, seconds)
    base, refining = fit.fit_config, recs["refine"].fit_config.refining()
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
