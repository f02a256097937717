"""Training-loss curves of several runs in one figure (the paper's figure 4), from their ``losses.csv``."""

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


def plot_curves(
    runs: list[str | os.PathLike],
    out: str | os.PathLike,
    terms: list[str] = ("total", "landmark"),
    smooth: float = 0.9,
    log_scale: bool = False,
) -> Path:
    """Draw one panel per term, one line per run, and write the figure atomically to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = {Path(run): read_losses_csv(_csv_of(run)) for run in runs}
    for run, table in tables.items():
        missing = [t for t in terms if t not in table]
        if not table or missing:
            raise VitdecaError(f"{_csv_of(run)}: no column {missing[0] if missing else 'step'} (or no rows)")
    fig, axes = plt.subplots(1, len(terms), figsize=(5.5 * len(terms), 4), squeeze=False)
    for ax, term in zip(axes[0], terms, strict=True):
        for run, table in tables.items():
            label = run.name if run.suffix != ".csv" else run.parent.name
            ax.plot(table["step"], ema(table[term], smooth), label=label, linewidth=1.2)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.set_ylabel("loss" + (" (EMA)" if smooth else ""))
        if log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fmt = out.suffix.lstrip(".").lower() or "png"
    if fmt not in fig.canvas.get_supported_filetypes():
        raise VitdecaError(f"{out}: unsupported image format {fmt!r} (use .png, .pdf or .svg)")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format=fmt)
    plt.close(fig)
    return out
