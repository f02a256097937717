"""The files of a NoW evaluation: summary.json, report.md, per_image.csv, cumulative_error.png,
distances.npz.

summary.json holds the statistics over all distances of all evaluated images concatenated (as the NoW
challenge reports them), the same per category, the image counts, and every missing or malformed
prediction with its reason. With a baseline (the mean face, :mod:`vitdeca.evaluation.baseline`) it also
holds ``baseline.mean_face.{median,mean,std,count,ci95_median}``, ``relative_median`` (method median ÷
mean-face median) and its interval, and a subject-bootstrap 95 % interval of the median (``ci95_median``),
overall and per category; report.md shows the same as a table (method row, mean-face row).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from vitdeca.evaluation.baseline import BootstrapOptions, compare_with_baseline
from vitdeca.evaluation.now_dataset import ImageResult, error_stats
from vitdeca.storage import atomic_path, atomic_write_bytes


def summarize(results: list[ImageResult], baseline: list[ImageResult] | None = None,
              bootstrap: BootstrapOptions | None = None, **context: str) -> dict:  # fmt: skip
    """The content of summary.json (``context``: e.g. split, dataset and predictions paths; ``baseline``:
    the mean face's results on the same image list, or None)."""
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
    comparison = compare_with_baseline(results, baseline, bootstrap)
    for category, extra in comparison.pop("per_category").items():
        summary["per_category"][category].update(extra)
    summary.update(comparison)
    return summary


def _concat(results: list[ImageResult]) -> np.ndarray:
    return np.concatenate([r.distances for r in results]) if results else np.zeros(0, np.float32)


def write_report(
    results: list[ImageResult],
    out: str | Path,
    save_distances: bool = False,
    baseline: list[ImageResult] | None = None,
    bootstrap: BootstrapOptions | None = None,
    **context,
) -> dict:
    """Write summary.json, report.md, per_image.csv and cumulative_error.png (+ distances.npz) into
    ``out``; ``baseline``: the mean face's results on the same list (a row and a curve of its own)."""
    out = Path(out)
    summary = summarize(results, baseline, bootstrap, **context)
    text = json.dumps(summary, indent=2, allow_nan=False)
    atomic_write_bytes(out / "summary.json", (text + "\n").encode())
    atomic_write_bytes(out / "report.md", format_report(summary).encode())
    atomic_write_bytes(out / "per_image.csv", _per_image_csv(results).encode())
    ok = [r for r in results if r.status == "ok"]
    curves = {"prediction": _concat(ok)}
    if baseline is not None:
        evaluated = {r.item.image for r in ok}
        curves["mean face"] = _concat([r for r in baseline if r.item.image in evaluated])
    plot_cumulative_error(curves, out / "cumulative_error.png")
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


def plot_cumulative_error(curves: dict[str, np.ndarray] | np.ndarray, path: str | Path) -> None:
    """Cumulative error curves as a PNG, one per {label: distances} (an array: one "prediction" curve);
    x from 0 to max(8, 99th percentile of the first), as NoW's plots."""
    from matplotlib.figure import Figure

    if isinstance(curves, np.ndarray):
        curves = {"prediction": curves}
    first = next(iter(curves.values()))
    top = max(8.0, float(np.percentile(first, 99))) if first.size else 8.0
    x = np.linspace(0.0, top, 512)
    fig = Figure(figsize=(6, 4.5), dpi=100)
    ax = fig.subplots()
    for k, (label, distances) in enumerate(curves.items()):
        ax.plot(
            x,
            cumulative_curve(distances, x),
            linestyle="-" if k == 0 else "--",
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


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"


def report_rows(block: dict) -> list[str]:
    """Markdown rows (method, then mean face when present) of a summary or one of its categories."""
    base = (block.get("baseline") or {}).get("mean_face")
    rows = [
        f"| method | {_number(block['median'])} | {_number(block['mean'])} | {_number(block['std'])} "
        f"| {_interval(block.get('ci95_median'))} | {_number(block.get('relative_median'))} "
        f"| {_interval(block.get('relative_median_ci95'))} | {block['count']} |"
    ]
    if base:
        rows.append(
            f"| mean face | {_number(base['median'])} | {_number(base['mean'])} | {_number(base['std'])} "
            f"| {_interval(base.get('ci95_median'))} | 1.000 | | {base['count']} |"
        )
    return rows


def format_report(summary: dict) -> str:
    """report.md: NoW statistics of the method and of the mean face, overall and per category."""
    boot = summary.get("bootstrap", {})
    lines = [
        f"# NoW scan-to-mesh error ({summary.get('units', 'scan units')})",
        "",
        f"Method: {summary.get('method', summary.get('predictions', 'predictions'))}; dataset "
        f"`{summary.get('dataset', '?')}`, split {summary.get('split', '?')}; "
        f"{summary['count']}/{summary['expected']} images. Intervals: {boot.get('level', 0.95):.0%} "
        f"bootstrap over subjects ({boot.get('resamples', 0)} resamples, seed {boot.get('seed', 0)}); "
        "relative = median ÷ the mean face's median on the same images.",
        "",
    ]
    header = "| | median | mean | std | 95 % CI median | relative | 95 % CI relative | images |"
    for title, block in [("all images", summary), *summary.get("per_category", {}).items()]:
        lines += [f"## {title}", "", header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [*report_rows(block), ""]
    return "\n".join(lines)
