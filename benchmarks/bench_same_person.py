"""Shape from all images of a subject vs from one image (``--same-person``), on synthetic faces (CPU).

Claim measured (issue 14): on a ``vitdeca synth`` set with K images per subject (expressions, head poses
and lights vary; faces located from the true landmarks, so detection does not enter), the NoW median
scan-to-mesh error (mm) of the neutral shape

- fitted from each image alone (the default per-image fit),
- fitted jointly from all K images of the subject (:func:`vitdeca.pipeline.identity.shared_identity`:
  per-image fits, then a joint refit with one shape and albedo: what ``--same-person`` does),
- of the mean face (zero shape code) through the same protocol (the baseline),

all in the same run, with the same per-image fits. Target: all-images / one-image <= 0.85.
Accuracy only, no timings. Usage: ``python benchmarks/bench_same_person.py [--images 48]
[--per-subject 4] [--seed 0]``.
"""

from __future__ import annotations

import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from synth_setup import make_dataset, parse_arguments, publish

RESULTS = Path(__file__).resolve().parent / "results" / "same_person.md"


def subject_shapes(rec, dataset: Path) -> tuple[list, np.ndarray, np.ndarray]:
    """(items, per-image fitted shapes (N,n), jointly fitted shapes per image (N,n)), list order."""
    from vitdeca.evaluation.now_dataset import read_image_list
    from vitdeca.evaluation.synthetic import listed_face_crop
    from vitdeca.pipeline.decode import crop_batch
    from vitdeca.pipeline.identity import shared_identity

    items = read_image_list(dataset, "val")
    alone, joint = {}, {}
    for subject in dict.fromkeys(i.subject for i in items):
        group = [i for i in items if i.subject == subject]
        crops = [listed_face_crop(rec, dataset, item, use_gt=True)[1] for item in group]
        codes, _ = rec.estimate_codes(crops)
        marks = torch.from_numpy(np.stack([c.crop_landmarks for c in crops])).float()
        shared, _ = shared_identity(rec, codes, marks, crop_batch(crops))
        for k, item in enumerate(group):
            alone[item.image] = codes.shape[k].detach().numpy()
            joint[item.image] = shared.shape[k].detach().numpy()
        print(f"  {subject}: {len(group)} images", flush=True)
    return items, np.stack([alone[i.image] for i in items]), np.stack([joint[i.image] for i in items])


def now_median(head, dataset: Path, folder: Path, shapes: np.ndarray) -> tuple[float, float]:
    """Write the neutral meshes of ``shapes`` as predictions into ``folder``; (median, mean) mm."""
    from vitdeca.evaluation.baseline import evaluate_shapes
    from vitdeca.evaluation.now_report import summarize

    summary = summarize(evaluate_shapes(head, torch.from_numpy(shapes).float(), dataset, folder))
    assert summary["complete"], summary["missing"] + summary["malformed"]
    return float(summary["median"]), float(summary["mean"])


def main() -> None:
    args = parse_arguments(__doc__.splitlines()[0])
    from vitdeca.evaluation.synthetic import build_reconstructor

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = make_dataset(Path(tmp) / "synth", args)
        rec = build_reconstructor(None)
        head = rec.model.head
        items, alone, joint = subject_shapes(rec, dataset)
        rows = {
            "mean face (zero shape), baseline": now_median(head, dataset, Path(tmp) / "p0", 0 * alone),
            "one image (per-image fit)": now_median(head, dataset, Path(tmp) / "p1", alone),
            f"all {args.per_subject} images (joint fit, --same-person)": now_median(
                head, dataset, Path(tmp) / "p2", joint
            ),
        }
    one = rows["one image (per-image fit)"][0]
    all_images = list(rows.values())[2][0]
    lines = ["| neutral shape from | NoW median (mm) | NoW mean (mm) |", "|---|---|---|"]
    lines += [f"| {name} | {median:.3f} | {mean:.3f} |" for name, (median, mean) in rows.items()]
    report = (
        f"# Shape from all images of a subject vs one image (synthetic, seed {args.seed})\n\n"
        f"`python benchmarks/bench_same_person.py --images {args.images} --per-subject {args.per_subject} "
        f"--seed {args.seed}`; {platform.machine()}, torch {torch.__version__}. {len(items)} images, "
        f"{len(items) // args.per_subject} subjects; faces located from the true landmarks; default "
        f"FitConfig; accuracy only (no timings).\n\n" + "\n".join(lines) + "\n\n"
        f"all images / one image = **{all_images / one:.3f}** (target <= 0.85)\n"
    )
    publish(report, RESULTS, args)


if __name__ == "__main__":
    main()
