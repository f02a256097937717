"""The mean-face baseline of every NoW report, and the statistics that compare a method with it.

The *mean face* is the head model's template (every code zero) with its 7 NoW landmarks, submitted as the
prediction for every listed image and measured by exactly the same protocol
(:func:`vitdeca.evaluation.now.align_and_measure`). Its prediction does not depend on the image, so it is
measured once per subject (identical inputs give identical distances) and the result is repeated for each
of that subject's images: the statistics then weigh subjects exactly as the method's do.

Noise: a **bootstrap over subjects** (resampling the subjects with replacement, each taking all its
images' distances along) gives a 95 % interval of the median (distances of all images concatenated, as
the NoW challenge reports it) and, with the same resamples for both, of the ratio method median ÷
mean-face median. Medians of a resample are read from per-subject histograms over edges at the pooled
quantiles (:data:`HISTOGRAM_BINS` bins, linear inside a bin): exact to a small fraction of the bin width,
and fast enough for the full NoW set (millions of distances).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68, RefineOptions, align_and_measure
from vitdeca.evaluation.now_dataset import (
    ImageResult,
    NowItem,
    error_stats,
    evaluate_now,
    ground_truth_paths,
    load_ground_truth,
    read_image_list,
)

log = logging.getLogger(__name__)

HISTOGRAM_BINS = 4096


@dataclass(frozen=True)
class BootstrapOptions:
    """Resamples, seed and level of the subject bootstrap (``resamples=0`` switches it off)."""

    resamples: int = 2000
    seed: int = 0
    level: float = 0.95


@dataclass(frozen=True)
class FixedPrediction:
    """One prediction used for every image: vertices (V,3), faces (F,3) int, landmarks7 (7,3) in the
    NoW order, all in head-model units (the protocol's similarity absorbs the units)."""

    vertices: np.ndarray
    faces: np.ndarray
    landmarks7: np.ndarray


def neutral_meshes(head: Any, shape: Any) -> tuple[np.ndarray, np.ndarray]:
    """Neutral vertices (B,V,3) (expression and pose zero) of ``shape`` (B,n_shape) (a tensor) and their
    NoW landmarks (B,7,3), in model units."""
    import torch

    with torch.no_grad():
        zeros = [
            torch.zeros(shape.shape[0], n, device=shape.device) for n in (head.n_expression, head.n_pose)
        ]
        out = head(shape, *zeros)
    return out.vertices.cpu().numpy(), out.landmarks3d[:, list(NOW_LANDMARKS_IBUG68)].cpu().numpy()


def write_prediction(predictions: Path, item: NowItem, vertices: np.ndarray, faces: np.ndarray,
                     landmarks7: np.ndarray) -> None:  # fmt: skip
    """``PRED/SUBJECT/CATEGORY/IMAGE.obj`` (vertices (V,3), faces (F,3)) and ``IMAGE.npy`` (7,3)."""
    from vitdeca import io
    from vitdeca.storage import atomic_path

    folder = predictions / item.subject / item.category
    io.save_obj(folder / f"{item.stem}.obj", vertices, faces)
    with atomic_path(folder / f"{item.stem}.npy", suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(landmarks7, dtype=np.float32))


def evaluate_shapes(head: Any, shapes: Any, dataset: str | os.PathLike, predictions: str | os.PathLike,
                    split: str = "val", workers: int = 1) -> list[ImageResult]:  # fmt: skip
    """NoW results (list order) of the neutral meshes of ``shapes`` (a tensor (N,n_shape), one row per
    listed image, or (1,n_shape) for every image: zeros give the mean face), written into the folder
    ``predictions`` and measured with :func:`~vitdeca.evaluation.now_dataset.evaluate_now`."""
    items = read_image_list(Path(dataset), split)
    if len(shapes) not in (1, len(items)):
        raise ValueError(f"evaluate_shapes: {len(shapes)} shapes for {len(items)} images")
    vertices, landmarks7 = neutral_meshes(head, shapes)
    faces = head.faces.cpu().numpy()
    for k, item in enumerate(items):
        row = k if len(shapes) > 1 else 0
        write_prediction(Path(predictions), item, vertices[row], faces, landmarks7[row])
    return evaluate_now(predictions, dataset, split, workers, progress=False)


def mean_face_prediction(head: Any) -> FixedPrediction:
    """The template of a :class:`vitdeca.head.HeadModel` (shape, expression and pose zero) with its 7 NoW
    landmarks."""
    import torch

    shape = torch.zeros(1, head.n_shape, device=head.template_vertices.device)
    vertices, landmarks7 = neutral_meshes(head, shape)
    return FixedPrediction(vertices[0], head.faces.cpu().numpy(), landmarks7[0])


def _measure_subject(task: tuple[Path, Path, FixedPrediction, RefineOptions]) -> np.ndarray:
    scan, scan_lmk, prediction, options = task
    scan_v, scan_f, scan_l = load_ground_truth(scan, scan_lmk)
    result = align_and_measure(
        scan_v, scan_f, scan_l, prediction.vertices, prediction.faces, prediction.landmarks7, options=options
    )
    return result.distances.astype(np.float32)


def evaluate_fixed_prediction(prediction: FixedPrediction, dataset: str | os.PathLike, split: str = "val",
                              workers: int = 1) -> list[ImageResult]:  # fmt: skip
    """NoW results (list order) of ``prediction`` submitted for every listed image of ``dataset``."""
    items = read_image_list(Path(dataset), split)
    subjects = list(dict.fromkeys(i.subject for i in items))
    options = RefineOptions(threads=1 if workers > 1 else -1)
    tasks = [(*ground_truth_paths(Path(dataset), s), prediction, options) for s in subjects]
    if workers > 1 and len(tasks) > 1:
        with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
            measured = pool.map(_measure_subject, tasks)
    else:
        measured = [_measure_subject(t) for t in tasks]
    by_subject = dict(zip(subjects, measured, strict=True))
    return [ImageResult(item, "ok", distances=by_subject[item.subject]) for item in items]


def evaluate_mean_face(head: Any, dataset: str | os.PathLike, split: str = "val",
                       workers: int = 1) -> list[ImageResult]:  # fmt: skip
    """The mean face of ``head`` (a HeadModel) through the NoW protocol on every listed image."""
    return evaluate_fixed_prediction(mean_face_prediction(head), dataset, split, workers)


# ------------------------------------------------------------------------------------------- bootstrap
def subject_groups(results: list[ImageResult], subjects: list[str] | None = None) -> list[np.ndarray]:
    """The ``ok`` distances of each subject concatenated (one array per subject, in ``subjects`` order;
    default: the subjects with an ``ok`` image, in order of appearance)."""
    ok = [r for r in results if r.status == "ok"]
    subjects = subjects if subjects is not None else list(dict.fromkeys(r.item.subject for r in ok))
    groups = []
    for subject in subjects:
        parts = [r.distances for r in ok if r.item.subject == subject]
        groups.append(np.concatenate(parts) if parts else np.zeros(0, np.float32))
    return groups


def resample_counts(n_subjects: int, resamples: int, seed: int) -> np.ndarray:
    """How often each subject is drawn in each resample: (resamples, n_subjects) int, rows sum to
    n_subjects."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_subjects, np.full(n_subjects, 1.0 / n_subjects), size=resamples)


def weighted_medians(groups: list[np.ndarray], counts: np.ndarray) -> np.ndarray:
    """The median of the concatenation of ``counts[b, s]`` copies of ``groups[s]``, for each row b:
    (B,S) -> (B,), from histograms over the pooled quantiles (see the module docstring)."""
    pooled = np.concatenate(groups).astype(np.float64)
    edges = np.unique(np.quantile(pooled, np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)))
    if len(edges) < 2:  # every distance equal
        return np.full(len(counts), pooled[0] if pooled.size else np.nan)
    hist = np.stack([np.histogram(g, bins=edges)[0] for g in groups]).astype(np.float64)  # (S,K)
    totals = counts.astype(np.float64) @ hist  # (B,K)
    cumulative = np.cumsum(totals, axis=1)
    half = cumulative[:, -1] / 2.0
    k = np.argmax(cumulative >= half[:, None], axis=1)
    rows = np.arange(len(counts))
    before = np.where(k > 0, cumulative[rows, np.maximum(k - 1, 0)], 0.0)
    fraction = (half - before) / np.maximum(totals[rows, k], 1e-12)
    medians = edges[k] + np.clip(fraction, 0.0, 1.0) * (edges[k + 1] - edges[k])
    return np.where(cumulative[:, -1] > 0, medians, np.nan)


def _interval(values: np.ndarray, level: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 50.0 * (1.0 - level)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_intervals(method: list[np.ndarray], baseline: list[np.ndarray] | None,
                        options: BootstrapOptions) -> dict[str, list[float] | None]:  # fmt: skip
    """95 % (``options.level``) intervals of the method's median and of method ÷ baseline medians, from
    the same subject resamples. ``method`` and ``baseline``: per-subject distances, same subjects."""
    out: dict[str, list[float] | None] = {"ci95_median": None}
    if baseline is not None:
        out["relative_median_ci95"] = None
    if options.resamples <= 0 or not method or sum(g.size for g in method) == 0:
        return out
    counts = resample_counts(len(method), options.resamples, options.seed)
    medians = weighted_medians(method, counts)
    out["ci95_median"] = _interval(medians, options.level)
    if baseline is not None:
        ratio = medians / weighted_medians(baseline, counts)
        out["relative_median_ci95"] = _interval(ratio, options.level)
    return out


# ------------------------------------------------------------------------------------------- summary
def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b <= 0 else float(a / b)


def _stats(results: list[ImageResult]) -> dict[str, Any]:
    ok = [r.distances for r in results if r.status == "ok"]
    stats = error_stats(np.concatenate(ok) if ok else np.zeros(0, np.float32))
    return {k: stats[k] for k in ("median", "mean", "std")} | {"count": len(ok)}


def compare_with_baseline(results: list[ImageResult], baseline: list[ImageResult] | None,
                          options: BootstrapOptions | None = None) -> dict[str, Any]:  # fmt: skip
    """Summary fields for a method's results: ``ci95_median`` and, with a baseline (the mean face's
    results on the same list), ``baseline.mean_face`` stats over the images the method evaluated,
    ``relative_median`` and its interval; ``per_category`` the same per category."""
    options = options or BootstrapOptions()
    out: dict[str, Any] = {"bootstrap": {"unit": "subject", "resamples": options.resamples,
                                         "seed": options.seed, "level": options.level}}  # fmt: skip
    categories = sorted({r.item.category for r in results})
    out.update(_compare(results, baseline, options))
    out["per_category"] = {
        c: _compare(
            [r for r in results if r.item.category == c],
            None if baseline is None else [r for r in baseline if r.item.category == c],
            options,
        )
        for c in categories
    }
    return out


def _compare(results: list[ImageResult], baseline: list[ImageResult] | None,
             options: BootstrapOptions) -> dict[str, Any]:  # fmt: skip
    evaluated = {r.item.image for r in results if r.status == "ok"}
    subjects = list(dict.fromkeys(r.item.subject for r in results if r.status == "ok"))
    method_groups = subject_groups(results, subjects)
    if baseline is None:
        return bootstrap_intervals(method_groups, None, options)
    matched = [r for r in baseline if r.item.image in evaluated]
    base = _stats(matched)
    out: dict[str, Any] = bootstrap_intervals(method_groups, subject_groups(matched, subjects), options)
    out["relative_median"] = _ratio(_stats(results)["median"], base["median"])
    base["ci95_median"] = bootstrap_intervals(subject_groups(matched, subjects), None, options)["ci95_median"]
    out["baseline"] = {"mean_face": base}
    return out
