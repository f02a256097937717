"""The files of a NoW evaluation: summary.json, per_image.csv, cumulative_error.png, distances.npz.

summary.json holds the statistics over all distances of all evaluated images concatenated (as the NoW
challenge reports them), the same per category, the image counts, and every missing or malformed
prediction with its reason.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from vitdeca.evaluation.now_dataset import ImageResult, error_stats
from vitdeca.storage import atomic_path, atomic_write_bytes


def summarize(results: list[ImageResult], **context: str) -> dict:
    """The content of summary.json (``context``: e.g. split, dataset and predictions paths)."""
    ok = [r for r in results if r.status == "ok"]
    summary: dict = {"protocol": "NoW scan-to-mesh distance (vitdeca re-implementation)", **context}
    summary["units"] = "scan units (NoW scans: mm)"
    summary.update(error_stats(_concat(ok)))
    summary["count"] = len(ok)
    summary["expected"] = len(results)
    for status in ("missing", "malformed"):
        summary[status] = [{"image": r.item.image, "reason": r.reason} for r in results if r.status == status]
    summary["complete"] = len(ok) == len(results)
    categories = sorted({r.item.category for r in results})
    summary["per_category"] = {
        c: {
            **error_stats(_concat([r for r in ok if r.item.category == c])),
            "count": sum(r.item.category == c for r in ok),
        }
        for c in categories
    }
    return summary


def _concat(results: list[ImageResult]) -> np.ndarray:
    return np.concatenate([r.distances for r in results]) if results else np.zeros(0, np.float32)


def write_report(
    results: list[ImageResult], out: str | Path, save_distances: bool = False, **context
) -> dict:
    """Write summary.json, per_image.csv and cumulative_error.png (+ distances.npz) into ``out``."""
    out = Path(out)
    summary = summarize(results, **context)
    text = json.dumps(summary, indent=2, allow_nan=False)
    atomic_write_bytes(out / "summary.json", (text + "\n").encode())
    atomic_write_bytes(out / "per_image.csv", _per_image_csv(results).encode())
    ok = [r for r in results if r.status == "ok"]
    plot_cumulative_error(_concat(ok), out / "cumulative_error.png")
    if save_distances:
        lengths = [len(r.distances) for r in ok]
        with atomic_path(out / "distances.npz") as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                images=np.array([r.item.image for r in ok], dtype=str),
                offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                values=_concat(ok),
            )
    return summary


def _per_image_csv(results: list[ImageResult]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["image", "subject", "category", "status", "n_points", "median", "mean", "std", "reason"])
    for r in results:
        stats = error_stats(r.distances) if r.distances is not None else {}
        values = [stats.get(k) for k in ("median", "mean", "std")]
        writer.writerow(
            [r.item.image, r.item.subject, r.item.category, r.status, stats.get("n_distances", 0)]
            + ["" if v is None else f"{v:.6f}" for v in values]
            + [r.reason]
        )
    return buffer.getvalue()


def cumulative_curve(distances: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Percentage of distances <= each threshold: (T,) -> (T,)."""
    values = np.sort(np.asarray(distances, dtype=np.float64))
    if values.size == 0:
        return np.zeros(len(thresholds))
    return 100.0 * np.searchsorted(values, thresholds, side="right") / values.size


def plot_cumulative_error(distances: np.ndarray, path: str | Path, label: str = "prediction") -> None:
    """Cumulative error curve as a PNG: x from 0 to max(8, 99th percentile), as NoW's plots."""
    from matplotlib.figure import Figure

    top = max(8.0, float(np.percentile(distances, 99))) if distances.size else 8.0
    x = np.linspace(0.0, top, 512)
    fig = Figure(figsize=(6, 4.5), dpi=100)
    ax = fig.subplots()
    ax.plot(
        x,
        cumulative_curve(distances, x),
        label=f"{label} (median {np.median(distances):.3f})" if distances.size else label,
    )
    ax.set_xlim(0, top)
    ax.set_ylim(0, 100)
    ax.set_xlabel("Error [mm]")
    ax.set_ylabel("Percentage of scan vertices")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
