"""Loss curves of several runs in one figure (the paper's figure 4, with the held-out curve), from their
``losses.csv``: per term, the training value (column ``TERM``, EMA-smoothed, solid) and the validation
value (column ``val_TERM``, written every ``run.val_every`` steps, raw, dashed with markers) in the run's
colour. Terms with only a validation column (``shape_mm``: the neutral-shape error in mm) draw that alone,
with the mean face's value (``val_shape_mm_mean_face``) as a dotted line."""

from __future__ import annotations

import math
import os
from pathlib import Path

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path
from vitdeca.train.logging import read_losses_csv


def ema(values: list[float], factor: float) -> list[float]:
    """Exponential moving average ``m_t = f·m_{t−1} + (1−f)·v_t`` restarted after gaps (nan stays nan)."""
    if not 0.0 <= factor < 1.0:
        raise VitdecaError(f"--smooth must be in [0, 1), got {factor}")
    out, mean = [], math.nan
    for value in values:
        if math.isnan(value):
            mean = math.nan
        else:
            mean = value if math.isnan(mean) else factor * mean + (1.0 - factor) * value
        out.append(mean)
    return out


def _csv_of(run: str | os.PathLike) -> Path:
    path = Path(run)
    return path if path.suffix == ".csv" else path / "losses.csv"


def curve_series(run: str | os.PathLike, term: str, table: dict | None = None) -> list[tuple]:
    """The curves of ``term`` in one run: [(kind, steps, values)], kind "train" (column ``term``),
    "val" (``val_<term>``) and "mean face" (``val_<term>_mean_face``), each where its column has values."""
    table = table if table is not None else read_losses_csv(_csv_of(run))
    series = []
    for kind, column in (("train", term), ("val", f"val_{term}"), ("mean face", f"val_{term}_mean_face")):
        points = [(s, v) for s, v in zip(table.get("step", []), table.get(column, []), strict=False)]
        points = [(int(s), v) for s, v in points if not math.isnan(v)]
        if points:
            series.append((kind, [p[0] for p in points], [p[1] for p in points]))
    return series


def plot_curves(
    runs: list[str | os.PathLike],
    out: str | os.PathLike,
    terms: list[str] = ("total", "landmark"),
    smooth: float = 0.9,
    log_scale: bool = False,
    labels: list[str] | None = None,
) -> Path:
    """Draw one panel per term, one colour per run (train solid, val dashed), and write the figure
    atomically to ``out``. ``labels``: one legend label per run (default: the run folder's name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ema([], smooth)  # checks the factor
    tables = {Path(run): read_losses_csv(_csv_of(run)) for run in runs}
    labels = labels or [run.name if run.suffix != ".csv" else run.parent.name for run in tables]
    series = {}
    for run, table in tables.items():
        for term in terms:
            found = curve_series(run, term, table) if table else []
            if not found:
                raise VitdecaError(f"{_csv_of(run)}: no column {term} or val_{term} with values")
            series[run, term] = found
    fig, axes = plt.subplots(1, len(terms), figsize=(5.5 * len(terms), 4), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        for k, run in enumerate(tables):
            _draw_run(ax, series[run, term], labels[k], f"C{k % 10}", smooth)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.set_ylabel("mm" if term.endswith("_mm") else "loss" + (" (train: EMA)" if smooth else ""))
        if log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise VitdecaError(f"{out}: unsupported image format {fmt!r} (use .png, .pdf or .svg)")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=fmt)
    plt.close(fig)
    return out


def _draw_run(ax, series: list[tuple], label: str, colour: str, smooth: float) -> None:
    for kind, steps, values in series:
        if kind == "train":
            ax.plot(steps, ema(values, smooth), color=colour, linewidth=1.2, label=f"{label} train")
        elif kind == "val":
            ax.plot(steps, values, color=colour, linestyle="--", marker="o", ms=3, label=f"{label} val")
        else:
            ax.plot(steps, values, color=colour, linestyle=":", linewidth=1.0, label=f"{label} mean face")
