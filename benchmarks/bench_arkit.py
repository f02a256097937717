"""ARKit weights from per-image fitting, on synthetic faces whose true expression is known (CPU).

Claims measured (issue 14), on a ``vitdeca synth`` set (ICT-FaceKit, sparse expressions with mostly
symmetric left/right pairs; faces located from the true landmarks, so detection does not enter):
1. Mean absolute error of the 51 available ARKit weights (:mod:`vitdeca.arkit`) between the fitted and
   the true expression, over all images. Target <= 0.08.
2. Blink agreement: per eye, ``eyeBlink > 0.5`` fitted vs true. Target >= 95 %.
3. Spread on images without that shape: the mean fitted eyeLook* weight where the truth has none (the
   issue's symptom: 0.4-0.5 with no gaze evidence).
Each with the default fit (ARKit priors on: sparsity, left/right coherence, exclusive pairs) against the
same fit with the three priors switched off, in the same run (the baseline).

Not measured here (not implemented yet): gaze error (the synthetic generator has no gaze truth), shape
from several images (``--same-person``). Accuracy numbers do not depend on machine load; no timings are
reported. Usage: ``python benchmarks/bench_arkit.py [--images 48] [--per-subject 4] [--seed 0]``.
"""

from __future__ import annotations

import dataclasses
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from synth_setup import make_dataset, parse_arguments, publish

RESULTS = Path(__file__).resolve().parent / "results" / "arkit.md"
PRIORS = ("reg_sparsity", "reg_pair_symmetry", "reg_pair_exclusion")


def fitted_expressions(rec, dataset: Path, config) -> np.ndarray:
    """(N,n_expression) fitted expression codes of every listed image (true landmarks → crop → fit)."""
    from vitdeca.evaluation.now_dataset import read_image_list
    from vitdeca.evaluation.synthetic import _face_crop

    rec.fit_config = config
    out = []
    items = read_image_list(dataset, "val")
    for start in range(0, len(items), 8):
        crops = [_face_crop(rec, dataset, item, use_gt=True) for item in items[start : start + 8]]
        codes, _ = rec.estimate_codes(crops)
        out.append(codes.expression.detach().cpu().numpy())
        print(f"  {min(start + 8, len(items))}/{len(items)}", flush=True)
    return np.concatenate(out)


def measures(mapping, true_expr: np.ndarray, fitted_expr: np.ndarray) -> dict[str, float]:
    from vitdeca.arkit import ARKIT_NAMES

    truth, fitted = mapping.weights(true_expr), mapping.weights(fitted_expr)
    avail = mapping.available
    blink = [ARKIT_NAMES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]
    look = [i for i, n in enumerate(ARKIT_NAMES) if n.startswith("eyeLook")]
    no_look = truth[:, look] == 0
    return {
        "mae": float(np.abs(truth - fitted)[:, avail].mean()),
        "mae_expressive": float(np.abs(truth - fitted)[:, avail][truth.max(axis=1) > 0].mean()),
        "blink_agreement": float(((truth[:, blink] > 0.5) == (fitted[:, blink] > 0.5)).mean()),
        "blinks_true": int((truth[:, blink] > 0.5).sum()),
        "eyelook_spread": float(fitted[:, look][no_look].mean()),
        "active_true": float((truth[:, avail] > 0.05).sum(axis=1).mean()),
        "active_fitted": float((fitted[:, avail] > 0.05).sum(axis=1).mean()),
    }


def table(rows: dict[str, dict[str, float]], n: int) -> str:
    lines = [
        f"| fit ({n} images) | ARKit MAE (51) | MAE, expressive images | blink agreement | "
        "eyeLook* where truth has none | active shapes > 0.05 (truth) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        lines.append(
            f"| {name} | {m['mae']:.3f} | {m['mae_expressive']:.3f} | {100 * m['blink_agreement']:.1f} % "
            f"({m['blinks_true']} true blinks) | {m['eyelook_spread']:.3f} | "
            f"{m['active_fitted']:.1f} ({m['active_true']:.1f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0])
    from vitdeca.arkit import arkit_mapping
    from vitdeca.evaluation.synthetic import build_reconstructor
    from vitdeca.fit import FitConfig

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp) / "synth", args, neutral_fraction=0.2)
        true_expr = np.load(dataset / "codes.npz")["expression"]
        rec = build_reconstructor(None)
        mapping = arkit_mapping(rec.model.head)
        base = FitConfig()
        off = dataclasses.replace(
            base, weights=dataclasses.replace(base.weights, **dict.fromkeys(PRIORS, 0.0))
        )
        rows = {}
        for name, config in (("priors off (baseline)", off), ("default (ARKit priors)", base)):
            print(name, flush=True)
            rows[name] = measures(mapping, true_expr, fitted_expressions(rec, dataset, config))
    text = table(rows, len(true_expr))
    weights = ", ".join(f"{p} {getattr(FitConfig().weights, p):g}" for p in PRIORS)
    report = (
        f"# ARKit weights from per-image fitting (synthetic, seed {args.seed})\n\n"
        f"`python benchmarks/bench_arkit.py --images {args.images} --per-subject {args.per_subject} "
        f"--seed {args.seed}`; {platform.machine()}, torch {torch.__version__}. Default prior weights: "
        f"{weights}. Faces located from the true landmarks; accuracy only (no timings).\n\n{text}\n"
    )
    publish(report, RESULTS, args)


if __name__ == "__main__":
    main()
