"""ARKit weights from per-image fitting, on synthetic faces whose true expression is known (CPU).

Claims measured (issue 14), on a ``vitdeca synth`` set (ICT-FaceKit, sparse expressions with mostly
symmetric left/right pairs; faces located from the true landmarks, so detection does not enter):
1. Mean absolute error of the 51 available ARKit weights (:mod:`vitdeca.arkit`) between the fitted and
   the true expression, over all images. Target <= 0.08.
2. Blink agreement: per eye, ``eyeBlink > 0.5`` fitted vs true. Target >= 95 %.
3. Spread on images without that shape: the mean fitted eyeLook* weight where the truth has none (the
   issue's symptom: 0.4-0.5 with no gaze evidence).
4. Gaze error: median angle (degrees) between the true and the measured direction of each open eye
   (:mod:`vitdeca.pipeline.eyes`: iris located between the lids, turned into yaw/pitch with the fitted
   eyeball). Target <= 5. Baseline in the same run: gaze always 0 (looking straight ahead).
5. Blink agreement of the lids' eye aspect ratio (``blink`` > 0.5 vs the true eyeBlink > 0.5).
The synthetic set renders ICT-FaceKit's eyeballs turned by a random gaze (``synth --eyes ict``).
Rows 1-3 with the default fit (ARKit priors on: sparsity, left/right coherence, exclusive pairs) against
the same fit with the three priors switched off, in the same run (the baseline).

Not measured here: shape from several images (``--same-person``, benchmarks/bench_same_person.py).
Accuracy numbers do not depend on machine load; no timings are
reported. Usage: ``python benchmarks/bench_arkit.py [--images 48] [--per-subject 4] [--seed 0]
[--blink-fraction 0.25] [--seeds 0,1,2] [--yaw-max 90]`` (writes ``results/arkit.md``, or
``results/arkit_seed<N>.md`` for another seed; with several seeds also ``results/arkit_pooled.md``, the blink
and gaze pooled; with ``--yaw-max Y``, the yaw uniform in ±Y, ``results/arkit_yaw<Y>_seed<N>.md`` and
``_pooled``). Every report also gives the gaze error by how far the head is turned.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from synth_setup import make_dataset, parse_arguments, publish

RESULTS = Path(__file__).resolve().parent / "results" / "arkit.md"
PRIORS = ("reg_sparsity", "reg_pair_symmetry", "reg_pair_exclusion")


def fitted(rec, dataset: Path, config) -> dict[str, np.ndarray]:
    """Per listed image (true landmarks → crop → fit → decode): ``fitted`` (N,n) the fit's expression
    codes, ``expression`` (N,n) the results' (eyelids settled on the measured gaze and the lids,
    :func:`vitdeca.pipeline.eyes.settle_eyelids`), ``gaze`` (N,2,2) measured yaw/pitch degrees,
    ``blink`` (N,2) the lids' blink weights, ``open`` (N,2) whether the iris was located."""
    from vitdeca.evaluation.now_dataset import read_image_list
    from vitdeca.evaluation.synthetic import listed_face_crop

    rec.fit_config = config
    out: dict[str, list] = {"fitted": [], "expression": [], "gaze": [], "blink": [], "open": []}
    items = read_image_list(dataset, "val")
    for start in range(0, len(items), 8):
        crops = [listed_face_crop(rec, dataset, item, use_gt=True)[1] for item in items[start : start + 8]]
        codes, _ = rec.estimate_codes(crops)
        out["fitted"].append(codes.expression.detach().cpu().numpy())
        for face in rec.decode(codes, crops):
            out["expression"].append(face.codes.expression.reshape(1, -1).numpy())
            for key in ("gaze", "blink", "open"):
                out[key].append(getattr(face.eyes, key)[None])
        print(f"  {min(start + 8, len(items))}/{len(items)}", flush=True)
    return {key: np.concatenate(values) for key, values in out.items()}


def gaze_errors(true_gaze: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """Angles (degrees) between gaze directions (…,2) yaw/pitch degrees (:mod:`vitdeca.head.eyes`)."""
    from vitdeca.head.eyes import gaze_rotation

    def direction(g):
        return gaze_rotation(torch.as_tensor(np.asarray(g, np.float64)))[..., :, 2].numpy()

    cos = (direction(true_gaze) * direction(gaze)).sum(-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def eye_measures(
    true_weights: np.ndarray, true_gaze: np.ndarray, found: dict[str, np.ndarray], true_pose: np.ndarray
) -> dict:
    """Gaze error (open eyes: true eyeBlink < 0.5) against the look-ahead baseline, and each open eye's
    head turn (degrees off the camera's axis, of the true pose (N,P)); blink agreement of the lids (left
    eye first, like the gaze arrays)."""
    from vitdeca.arkit import ARKIT_NAMES, off_axis_degrees

    blink = true_weights[:, [ARKIT_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]] > 0.5
    errors = gaze_errors(true_gaze, found["gaze"])[~blink]
    baseline = gaze_errors(true_gaze, np.zeros_like(true_gaze))[~blink]
    turn = np.repeat(off_axis_degrees(true_pose)[:, None], 2, axis=1)[~blink]
    return {
        "errors": errors,
        "baseline_errors": baseline,
        "turn": turn,
        "gaze_median": float(np.median(errors)),
        "gaze_p90": float(np.quantile(errors, 0.9)),
        "gaze_baseline": float(np.median(baseline)),
        "located": float(found["open"][~blink].mean()),
        "blink_lids": float(((found["blink"] > 0.5) == blink).mean()),
        "eyes": int((~blink).sum()),
    }


def measures(mapping, true_expr: np.ndarray, fitted_expr: np.ndarray) -> dict[str, float]:
    from vitdeca.arkit import ARKIT_NAMES

    truth, fitted = mapping.weights(true_expr), mapping.weights(fitted_expr)
    avail = mapping.available
    blink = [ARKIT_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]
    look = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith("eyeLook")]
    no_look = truth[:, look] == 0
    true_blink, found_blink = truth[:, blink] > 0.5, fitted[:, blink] > 0.5  # (N,2) per eye
    per_image = (true_blink == found_blink).mean(axis=1)  # (N,): both eyes of an image weigh alike
    return {
        "mae": float(np.abs(truth - fitted)[:, avail].mean()),
        "mae_expressive": float(np.abs(truth - fitted)[:, avail][truth.max(axis=1) > 0].mean()),
        "blink_agreement": float(per_image.mean()),
        "blink_per_image": per_image,
        "blinks_true": int(true_blink.sum()),
        "blinks_found": int((true_blink & found_blink).sum()),
        "blinks_false": int((~true_blink & found_blink).sum()),
        "eyelook_spread": float(fitted[:, look][no_look].mean()),
        "active_true": float((truth[:, avail] > 0.05).sum(axis=1).mean()),
        "active_fitted": float((fitted[:, avail] > 0.05).sum(axis=1).mean()),
    }


def eye_table(m: dict) -> str:
    return (
        "| eyes (default fit) | gaze error, median (p90) | baseline: gaze 0 | irises located | "
        "blink agreement (lids) |\n|---|---|---|---|---|\n"
        f"| {m['eyes']} open eyes | {m['gaze_median']:.1f}° ({m['gaze_p90']:.1f}°) | "
        f"{m['gaze_baseline']:.1f}° | "
        f"{100 * m['located']:.1f} % | {100 * m['blink_lids']:.1f} % |"
    )


TURN_BINS = (0.0, 30.0, 45.0, 60.0, 90.0)  # degrees off the camera's axis (vitdeca.pipeline.eyes)


def turn_table(eyes: list[dict]) -> str:
    """Gaze error by how far the head is turned (the true pose, degrees off the camera's axis), pooled
    over ``eyes`` (:func:`eye_measures` of one or more sets): median error against looking ahead, and the
    median paired difference with its bootstrap 95 % interval (resampling open eyes)."""
    from stats import bootstrap_interval

    turn = np.concatenate([e["turn"] for e in eyes])
    errors = np.concatenate([e["errors"] for e in eyes])
    ahead = np.concatenate([e["baseline_errors"] for e in eyes])
    lines = [
        "| head turned | open eyes | gaze error, median | looking ahead, median | paired difference, median "
        "[95 % interval] |",
        "|---|---:|---|---|---|",
    ]
    for low, high in zip(TURN_BINS[:-1], TURN_BINS[1:], strict=True):
        inside = (turn >= low) & (turn < high) if high < TURN_BINS[-1] else turn >= low
        if not inside.any():
            continue
        difference = errors[inside] - ahead[inside]
        lo, hi = bootstrap_interval(difference, np.median)
        lines.append(
            f"| {low:.0f}–{high:.0f}° | {inside.sum()} | {np.median(errors[inside]):.1f}° | "
            f"{np.median(ahead[inside]):.1f}° | {np.median(difference):+.1f}° [{lo:+.1f}, {hi:+.1f}] |"
        )
    return "\n".join(lines)


def table(rows: dict[str, dict[str, float]], n: int) -> str:
    lines = [
        f"| fit ({n} images) | ARKit MAE (51) | MAE, expressive images | blink agreement | "
        "true blinks found | false blinks | eyeLook* where truth has none | active shapes > 0.05 (truth) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        lines.append(
            f"| {name} | {m['mae']:.3f} | {m['mae_expressive']:.3f} | {100 * m['blink_agreement']:.1f} % "
            f"| {m['blinks_found']} of {m['blinks_true']} | {m['blinks_false']} | "
            f"{m['eyelook_spread']:.3f} | {m['active_fitted']:.1f} ({m['active_true']:.1f}) |"
        )
    return "\n".join(lines)


def measure_seed(args, seed: int) -> tuple[str, dict]:
    """One synthetic set of seed ``seed``: its report (Markdown) and its measures (:func:`measures` per
    row, :func:`eye_measures` under ``"eyes"``)."""
    from vitdeca.arkit import arkit_mapping
    from vitdeca.evaluation.synthetic import build_reconstructor
    from vitdeca.fit import FitConfig

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(
            Path(tmp) / "synth",
            argparse.Namespace(**(vars(args) | {"seed": seed})),
            neutral_fraction=0.2,
            eyes="ict",
        )
        truth = np.load(dataset / "codes.npz")
        true_expr, true_gaze = truth["expression"], truth["gaze"]
        rec = build_reconstructor(None)
        mapping = arkit_mapping(rec.model.head)
        base = FitConfig()
        off = dataclasses.replace(
            base, weights=dataclasses.replace(base.weights, **dict.fromkeys(PRIORS, 0.0))
        )
        rows = {}
        for name, config in (("priors off (baseline)", off), ("default (ARKit priors)", base)):
            print(name, flush=True)
            found = fitted(rec, dataset, config)
            rows[f"{name}, the fit's codes"] = measures(mapping, true_expr, found["fitted"])
            rows[f"{name}, eyelids settled (results)"] = measures(mapping, true_expr, found["expression"])
        eyes = eye_measures(mapping.weights(true_expr), true_gaze, found, truth["pose"])
    text = table(rows, len(true_expr)) + "\n\n" + eye_table(eyes) + "\n\n" + turn_table([eyes])
    weights = ", ".join(f"{p} {getattr(FitConfig().weights, p):g}" for p in PRIORS)
    report = (
        f"# ARKit weights from per-image fitting (synthetic, seed {seed})\n\n"
        f"`python benchmarks/bench_arkit.py --images {args.images} --per-subject {args.per_subject} "
        f"--seed {seed} --blink-fraction {args.blink_fraction:g}{yaw_option(args)}`; "
        f"{platform.machine()}, torch "
        f"{torch.__version__}. Default prior weights: "
        f"{weights}. Faces located from the true landmarks; accuracy only (no timings).\n\n{text}\n"
    )
    return report, rows | {"eyes": eyes}


def pooled_report(args, results: list[dict]) -> str:
    """The seeds' blink agreement and gaze error pooled, with bootstrap 95 % intervals: agreement
    resampling images (both eyes of a face together), the gaze median resampling open eyes."""
    from stats import bootstrap_interval

    seeds = ",".join(map(str, args.seeds))
    lines = [
        f"# ARKit blink and gaze, pooled over seeds {seeds} (synthetic)\n",
        f"`python benchmarks/bench_arkit.py --images {args.images} --per-subject {args.per_subject} "
        f"--seeds {seeds} --blink-fraction {args.blink_fraction:g}{yaw_option(args)}`; "
        f"{platform.machine()}, torch "
        f"{torch.__version__}. Per seed: {per_seed_files(args)}. "
        "Intervals: bootstrap 95 %, over images for agreement (both eyes of a face resampled together), "
        "over open eyes for the gaze (one gaze per face in these sets, so it is somewhat narrow).\n",
        "| measure (default fit) | pooled [95 % interval] | per seed | target |",
        "|---|---|---|---|",
    ]
    for row, label in (
        ("default (ARKit priors), eyelids settled (results)", "blink agreement, results"),
        ("default (ARKit priors), the fit's codes", "blink agreement, the fit's codes"),
        ("priors off (baseline), eyelids settled (results)", "blink agreement, priors off"),
    ):
        per_image = np.concatenate([r[row]["blink_per_image"] for r in results])
        low, high = bootstrap_interval(per_image, np.mean)
        each = " / ".join(f"{100 * r[row]['blink_agreement']:.1f}" for r in results)
        lines.append(
            f"| {label} ({2 * len(per_image)} eyes) | {100 * per_image.mean():.1f} % "
            f"[{100 * low:.1f}, {100 * high:.1f}] | {each} % | >= 95 % |"
        )
    for key, label, target in (
        ("errors", "gaze error, median", "<= 5°"),
        ("baseline_errors", "baseline: gaze 0", ""),
    ):
        errors = np.concatenate([r["eyes"][key] for r in results])
        low, high = bootstrap_interval(errors, np.median)
        each = " / ".join(f"{np.median(r['eyes'][key]):.1f}" for r in results)
        lines.append(
            f"| {label} ({len(errors)} open eyes) | {np.median(errors):.1f}° [{low:.1f}, {high:.1f}] "
            f"| {each}° | {target} |"
        )
    lines += [
        "",
        "Gaze by how far the head is turned (true pose), pooled:",
        "",
        turn_table([r["eyes"] for r in results]),
    ]
    return "\n".join(lines) + "\n"


def yaw_option(args) -> str:
    return f" --yaw-max {args.yaw_max:g}" if args.yaw_max else ""


def per_seed_files(args) -> str:
    if args.yaw_max:
        return f"`results/{result_path(args, '_seed<N>').name}`"
    return "`results/arkit.md` (seed 0), `results/arkit_seed<N>.md`"


def result_path(args, name: str) -> Path:
    """``results/arkit<name>.md``; sets with ``--yaw-max Y`` write ``results/arkit_yaw<Y><name>.md``."""
    turned = f"_yaw{args.yaw_max:g}" if args.yaw_max else ""
    return RESULTS.with_name(f"arkit{turned}{name}.md")


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0], several_seeds=True)
    results = []
    for seed in args.seeds:
        report, measured = measure_seed(args, seed)
        publish(report, result_path(args, "" if seed == 0 and not args.yaw_max else f"_seed{seed}"), args)
        results.append(measured)
    if len(results) > 1:
        publish(pooled_report(args, results), result_path(args, "_pooled"), args)


if __name__ == "__main__":
    main()
