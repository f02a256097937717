"""The default model (issue 12): regress / refine / fit against each other and against the mean face.

Claims measured, all in one run on this machine:
1. Held-out real photos (default ``../shared/faces/deca_testsamples``, none used in training): 2D landmark
   NME (mean point error / outer-eye-corner distance, against the detector's 68 landmarks — the landmarks
   fitting is fitted to) for ``regress``, ``refine`` and ``fit``, and the seconds per photo each takes after
   detection (codes only: encoder and/or fitting). Targets: regress ≤ 4.5 %; refine ≤ fit's NME in ≤ 1/3 of
   fit's time.
2. A held-out synthetic set (``vitdeca synth`` with a seed not used in training): the neutral shape through
   the NoW protocol (median / mean / std of the scan-to-mesh distance, mm) for the mean face (the head
   model's template), regress, refine and fit, each median ÷ the mean face's median, with a bootstrap 95 %
   interval over subjects. Target: regress ≤ 0.80.
3. ``regress`` throughput after detection, batch 8 (codes + decode of mesh and renders, no detail; and with
   the detail branch). Target ≥ 8 img/s.

4. With ``--profiles DIR`` (a ``vitdeca synth`` set at any yaw, e.g. ``--yaw-max 90``): 2D landmark NME (mean
   point error / sqrt(w·h) of the true 68 points' box, the AFLW2000-3D protocol) by yaw bin of every
   ``regress`` row (this model's and the baseline model's), on crops made from the true landmarks (no
   detector: profiles that detectors miss still count). ``refine`` and ``fit`` are left out there: they fit
   the given landmarks, which would be the truth (``benchmarks/bench_pose.py`` measures them after detection).

With ``--baseline-model PATH`` a previous model's ``regress`` and ``refine`` run in the same run as extra rows
(labelled ``regress (baseline)``, ...), so a retrained model is compared under identical conditions. With
``--detector-refine-rows`` refine fitting the detector's points alone (before session 14) runs as the row
``refine (detector's points)``; with ``--flip-rows`` the same model with the other test-time flip setting
(``regress (no flip)``, ``refine (flip)``: by default regress flips and refine does not); with
``--bf16-rows`` the same model under ``--precision bf16`` (``regress (bf16)``, ``refine (bf16)``, and
regress's throughput). Each such row gets a paired difference to its method over the photos.

Usage: ``python benchmarks/bench_default_model.py --model vitdeca-vits14 --synth DIR [--photos DIR]
[--baseline-model PATH] [--flip-rows]``. Writes ``benchmarks/results/default_model.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from inputs import shared_dir
from stats import BOOTSTRAP, bootstrap_interval
from vitdeca.faces.image_io import IMAGE_SUFFIXES
from vitdeca.storage import atomic_write_bytes

RESULTS = Path(__file__).resolve().parent / "results" / "default_model.md"
METHODS = ("regress", "refine", "fit")


def reconstructors(
    model: str, baseline: str | None = None, other_flip: bool = False, bf16: bool = False,
    detector_refine: bool = False,
) -> dict:  # fmt: skip
    """{row label: Reconstructor}: regress / refine / fit, plus the baseline model's regress / refine
    (``baseline``), the same model's with the other test-time flip setting (``other_flip``), under
    bfloat16 inference (``bf16``) and refine fitting the detector's points alone (``detector_refine``:
    ``FitConfig(refine_fusion=False)``, refine before session 14)."""
    from vitdeca.fit import FitConfig
    from vitdeca.pipeline import Reconstructor

    recs = {m: Reconstructor.from_pretrained(model, device="cpu", detail=False, method=m) for m in METHODS}
    recs["fit"] = Reconstructor.from_pretrained(None, device="cpu", method="fit")  # today's fitting
    for m in METHODS[:2] if baseline else ():
        rec = Reconstructor.from_pretrained(baseline, device="cpu", detail=False, method=m)
        recs[f"{m} (baseline)"] = rec
    for m in METHODS[:2] if other_flip else ():
        flip = not recs[m].flip
        recs[f"{m} ({'flip' if flip else 'no flip'})"] = Reconstructor.from_pretrained(
            model, device="cpu", detail=False, method=m, flip=flip
        )
    for m in METHODS[:2] if bf16 else ():
        rec = Reconstructor.from_pretrained(model, device="cpu", detail=False, method=m, precision="bf16")
        recs[f"{m} (bf16)"] = rec
    if detector_refine:
        recs["refine (detector's points)"] = Reconstructor.from_pretrained(
            model, device="cpu", detail=False, method="refine", fit=FitConfig(refine_fusion=False)
        )
    return recs


def paired_rows(photos: list) -> list[str]:
    """A Markdown table: each variant row ``"m (…)"`` against its method ``m``, per photo (points)."""
    lines = [
        "| | median difference, points [95 % CI over photos] | mean difference [95 % CI] | photos better |",
        "|---|---|---|---|",
    ]
    for variant in photos[0][1]:
        method = variant.split(" (")[0]
        if variant == method:
            continue
        diff = 100 * np.array([r[1][method] - r[1][variant] for r in photos])
        (mlo, mhi), (alo, ahi) = bootstrap_interval(diff, np.median), bootstrap_interval(diff, np.mean)
        lines.append(
            f"| {method} − {variant} | {np.median(diff):+.2f} [{mlo:+.2f}, {mhi:+.2f}] "
            f"| {diff.mean():+.2f} [{alo:+.2f}, {ahi:+.2f}] | {int((diff < 0).sum())} of {len(diff)} |"
        )
    return lines


def photo_rows(recs: dict, photos: list[Path]) -> list[tuple[str, dict, dict]]:
    """Per photo with a face: (name, {method: NME}, {method: seconds after detection})."""
    from vitdeca.fit import landmark_nme, landmarks2d

    rows = []
    for path in photos:
        nme, seconds = {}, {}
        for method, rec in recs.items():
            prepared = rec.prepare(path)  # each method in its own model's crop (detection not timed)
            if not prepared.crops:
                break
            start = time.perf_counter()
            crops, codes, _ = rec.estimate_prepared([prepared])
            seconds[method] = time.perf_counter() - start
            target = torch.from_numpy(crops[0].crop_landmarks[None]).float()
            with torch.no_grad():
                pred = landmarks2d(rec.model, codes, rec.crop_size)
            nme[method] = float(landmark_nme(pred, target)[0])
        if len(nme) < len(recs):
            print(f"{path.name}: no face (skipped)")
            continue
        rows.append((path.name, nme, seconds))
        print(path.name, {m: f"{100 * v:.2f} %" for m, v in nme.items()})
    return rows


def synthetic_errors(recs: dict, dataset: Path, workdir: Path) -> dict[str, dict[str, np.ndarray]]:
    """{method: {subject: all scan-to-mesh distances (mm) of its images}}, mean face included."""
    from vitdeca.evaluation.baseline import evaluate_shapes
    from vitdeca.evaluation.now_dataset import evaluate_now
    from vitdeca.evaluation.synthetic import predict_dataset

    out = {}
    for index, method in enumerate(("mean_face", *recs)):
        folder = workdir / str(index)
        folder.mkdir()
        if method == "mean_face":
            head = recs["regress"].model.head
            results = evaluate_shapes(head, torch.zeros(1, head.n_shape), dataset, folder)
        else:
            predict_dataset(recs[method], dataset, folder, progress=False)
            results = evaluate_now(folder, dataset, workers=1, progress=False)
        per_subject: dict[str, list[np.ndarray]] = {}
        for result in results:
            if result.status == "ok":
                per_subject.setdefault(result.item.subject, []).append(result.distances)
        out[method] = {s: np.concatenate(d) for s, d in per_subject.items()}
        print(method, f"median {np.median(np.concatenate(list(out[method].values()))):.3f} mm")
    return out


def profile_rows(recs: dict, dataset: Path) -> dict[str, dict[int, list[float]]]:
    """{method: {yaw bin: [box NME of each face]}} on crops from the true landmarks of ``dataset``."""
    from bench_pose import bin_of, predict, synthetic_photos, truth_faces
    from vitdeca.evaluation.landmarks import nme
    from vitdeca.faces import read_image

    recs = {m: rec for m, rec in recs.items() if m.startswith("regress")}  # the others fit the truth
    rows: dict[str, dict[int, list[float]]] = {m: {} for m in recs}
    for photo in synthetic_photos(dataset, None):
        rgb = read_image(photo.path)
        for method, rec in recs.items():
            pred, _ = predict(rec, rgb, truth_faces(photo.gt))
            rows[method].setdefault(bin_of(photo.yaw[0]), []).append(float(nme(pred[0], photo.gt[0], "box")))
    return rows


def profile_report(rows: dict, dataset: str) -> list[str]:
    from bench_pose import BIN_NAMES

    lines = [
        "",
        f"## Any yaw: `{dataset}`, crops from the true landmarks (no detector), box NME by |yaw|",
        "",
        "| method | " + " | ".join(f"{name} mean [95 % CI over faces] (n)" for name in BIN_NAMES) + " |",
        "|---|" + "---|" * len(BIN_NAMES),
    ]
    for method, bins in rows.items():
        cells = []
        for k in range(len(BIN_NAMES)):
            values = np.asarray(bins.get(k, []))
            if not len(values):
                cells.append("–")
                continue
            low, high = bootstrap_interval(values, np.mean)
            cells.append(f"{100 * values.mean():.2f} % [{100 * low:.2f}, {100 * high:.2f}] ({len(values)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def bootstrap_ratio(errors: dict, method: str, seed: int = 0) -> tuple[float, float, float]:
    """Median ratio method ÷ mean face and its 95 % interval, resampling subjects (same draw for both)."""
    subjects = sorted(errors["mean_face"])
    rng = np.random.default_rng(seed)

    def ratio(chosen: list[str]) -> float:
        ours = np.median(np.concatenate([errors[method][s] for s in chosen]))
        base = np.median(np.concatenate([errors["mean_face"][s] for s in chosen]))
        return float(ours / base)

    draws = [
        ratio([subjects[i] for i in rng.integers(0, len(subjects), len(subjects))]) for _ in range(BOOTSTRAP)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return ratio(subjects), float(low), float(high)


def throughput(rec, photos: list[Path], batch: int, detail: bool) -> float:
    """Images per second of regress + decode for ``batch`` crops (after detection), median of 5."""
    prepared = []
    for path in photos:
        item = rec.prepare(path)
        if item.crops:
            prepared.append(item)
        if len(prepared) == batch:
            break
    prepared = (prepared * batch)[:batch]
    rec.detail = detail
    times = []
    for _ in range(6):
        start = time.perf_counter()
        with torch.no_grad():
            rec.reconstruct_crops(prepared)
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times[1:]))


def report(photos: list, synth: dict, speed: dict, args: argparse.Namespace, profiles=None) -> str:
    lines = [
        "# The default model: regress / refine / fit vs the mean face",
        "",
        f"Model `{args.model}`; {platform.machine()} CPU, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} at the end. "
        f"Command: `python benchmarks/bench_default_model.py --model {args.model} --synth {args.synth} "
        f"--photos {args.photos} --stride {args.stride}"
        + (f" --baseline-model {args.baseline_model}" if args.baseline_model else "")
        + (" --flip-rows" if args.flip_rows else "")
        + (" --detector-refine-rows" if args.detector_refine_rows else "")
        + (" --bf16-rows" if args.bf16_rows else "")
        + (f" --profiles {args.profiles}`." if args.profiles else "`."),
        "",
        f"## Held-out real photos ({len(photos)} faces of `{Path(args.photos).name}`), NME vs the detector",
        "",
        "| method | median NME [95 % CI over photos] | mean NME | median s/photo (after detection) |",
        "|---|---|---|---|",
    ]
    for m in synth:
        if m == "mean_face":
            continue
        nme = [r[1][m] for r in photos]
        sec = [r[2][m] for r in photos]
        low, high = bootstrap_interval(np.asarray(nme), np.median)
        lines.append(
            f"| {m} | {100 * np.median(nme):.2f} % [{100 * low:.2f}, {100 * high:.2f}] "
            f"| {100 * np.mean(nme):.2f} % | {np.median(sec):.2f} |"
        )
    lines += ["", "## Paired differences on the photos (negative: the first row is better)", ""]
    lines += paired_rows(photos)
    lines += [
        "",
        f"## Held-out synthetic set `{args.synth}` (neutral shape, NoW protocol, mm)",
        "",
        "| method | median | mean | std | median ÷ mean face [95 % CI over subjects] |",
        "|---|---|---|---|---|",
    ]
    for m in synth:
        d = np.concatenate(list(synth[m].values()))
        ratio = "1" if m == "mean_face" else "{:.3f} [{:.3f}, {:.3f}]".format(*bootstrap_ratio(synth, m))
        lines.append(f"| {m} | {np.median(d):.3f} | {np.mean(d):.3f} | {np.std(d):.3f} | {ratio} |")
    lines += [
        "",
        "## Regress throughput after detection, batch 8",
        "",
        f"- without detail: {speed['coarse']:.1f} img/s; with detail: {speed['detail']:.1f} img/s",
    ]
    if "coarse_bf16" in speed:
        lines.append(
            f"- `--precision bf16`: without detail {speed['coarse_bf16']:.1f} img/s "
            f"({speed['coarse_bf16'] / speed['coarse']:.2f}× float32); with detail "
            f"{speed['detail_bf16']:.1f} img/s ({speed['detail_bf16'] / speed['detail']:.2f}× float32); "
            "measured in turn after the float32 rows"
        )
    if profiles is not None:
        lines += profile_report(profiles, args.profiles)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vitdeca-vits14")
    parser.add_argument("--synth", required=True, help="a held-out `vitdeca synth` folder")
    shared = shared_dir()
    parser.add_argument("--photos", default=str(shared / "faces" / "deca_testsamples"))
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos")
    parser.add_argument("--stride", type=int, default=1, help="every k-th photo (sorted by path)")
    parser.add_argument("--baseline-model", default=None, help="a previous model, run as extra rows")
    parser.add_argument(
        "--flip-rows", action="store_true", help="also regress / refine with the other --flip setting"
    )
    parser.add_argument(
        "--bf16-rows", action="store_true", help="also regress / refine with --precision bf16 (and its speed)"
    )
    parser.add_argument(
        "--detector-refine-rows", action="store_true", help="also refine to the detector's points alone"
    )
    parser.add_argument("--profiles", default=None, help="a `vitdeca synth` set at any yaw: NME by yaw bin")
    parser.add_argument("--out", default=str(RESULTS), help=f"the report (default {RESULTS.name})")
    args = parser.parse_args()
    found = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    photos = found[:: args.stride][: args.limit]
    recs = reconstructors(
        args.model, args.baseline_model, args.flip_rows, args.bf16_rows, args.detector_refine_rows
    )
    recs["regress"](photos[0])  # warm-up: numba kernels, detector
    photo_results = photo_rows(recs, photos)
    with tempfile.TemporaryDirectory() as tmp:
        synth = synthetic_errors(recs, Path(args.synth), Path(tmp))
    speed = {"coarse": throughput(recs["regress"], photos, 8, False),
             "detail": throughput(recs["regress"], photos, 8, True)}  # fmt: skip
    if args.bf16_rows:
        speed["coarse_bf16"] = throughput(recs["regress (bf16)"], photos, 8, False)
        speed["detail_bf16"] = throughput(recs["regress (bf16)"], photos, 8, True)
    profiles = profile_rows(recs, Path(args.profiles)) if args.profiles else None
    text = report(photo_results, synth, speed, args, profiles)
    atomic_write_bytes(Path(args.out), text.encode())
    print(text)


if __name__ == "__main__":
    main()
