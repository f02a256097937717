"""Training records: ``losses.csv`` (every step), TensorBoard scalars and image grids, a progress bar.

Only rank 0 writes. ``losses.csv`` has the columns ``step, total, <every registered loss term>``: the
unweighted term values (empty when a term is off in the current stage) and the weighted total. A resumed
run first drops the rows after its checkpoint's step, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import torch

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path

GREEN = (0.1, 0.9, 0.1)
RED = (0.95, 0.1, 0.1)


class CsvLog:
    """Appends one row per step to ``path`` and flushes it, so the file is current while training runs."""

    def __init__(self, path: str | os.PathLike, terms: list[str], resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.columns = ["step", "total", *terms]
        rows = self._kept_rows(resume_step) if resume_step is not None else []
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(rows)
        self._handle = open(self.path, "a", newline="")  # kept open for the run
        self._writer = csv.DictWriter(self._handle, fieldnames=self.columns, restval="")

    def _kept_rows(self, resume_step: int) -> list[list[str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != self.columns:
                raise VitdecaError(f"{self.path}: columns differ from this run's loss terms; use a new --out")
            return [row for row in reader if row and int(row[0]) <= resume_step]

    def write(self, step: int, total: float, values: dict[str, float]) -> None:
        row = {"step": step, "total": _fmt(total), **{k: _fmt(v) for k, v in values.items()}}
        self._writer.writerow(row)
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.6g}"


def read_losses_csv(path: str | os.PathLike) -> dict[str, list[float]]:
    """A ``losses.csv`` as columns of floats (empty cells → nan)."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError as exc:
        raise VitdecaError(f"{path}: no such file (is this a training run folder?)") from exc
    if not rows:
        return {}
    try:
        return {
            key: [float(r[key]) if r[key] not in ("", None) else math.nan for r in rows] for key in rows[0]
        }
    except ValueError as exc:
        raise VitdecaError(f"{path}: not a losses.csv ({exc})") from exc


class TensorBoardLog:
    """Scalars under ``loss/<term>`` and ``train/<name>``, image grids under ``images/train``."""

    def __init__(self, run_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir), purge_step=purge_step)

    def scalars(self, step: int, values: dict[str, float], prefix: str = "loss") -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}/{name}", value, global_step=step)

    def image(self, step: int, grid: torch.Tensor, tag: str = "images/train") -> None:
        self.writer.add_image(tag, grid.clamp(0, 1), global_step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def draw_points(
    images: torch.Tensor, points: torch.Tensor, color: tuple[float, float, float], radius: int = 1
) -> torch.Tensor:
    """Copies of ``images`` (B,3,H,W) with a (2r+1)² square of ``color`` at each of ``points`` (B,N,2)
    (pixels, x right, y down; points outside the image are skipped)."""
    out = images.detach().clone().float()
    b, _, h, w = out.shape
    centres = points.detach().float().floor().long()
    offsets = torch.arange(-radius, radius + 1, device=out.device)
    xs = (centres[..., 0:1] + offsets).unsqueeze(-2).expand(-1, -1, offsets.numel(), -1)  # (B,N,k,k)
    ys = (centres[..., 1:2] + offsets).unsqueeze(-1).expand(-1, -1, -1, offsets.numel())
    batch = torch.arange(b, device=out.device).view(b, 1, 1, 1).expand_as(xs)
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    colour = torch.tensor(color, device=out.device, dtype=out.dtype)
    for c in range(3):
        out[batch[inside], c, ys[inside], xs[inside]] = colour[c]
    return out


def image_grid(
    images: torch.Tensor,
    target_landmarks: torch.Tensor,
    pred_landmarks: torch.Tensor,
    render: torch.Tensor,
    shape: torch.Tensor,
    max_rows: int = 8,
) -> torch.Tensor:
    """One row per image: input | landmarks (target green, prediction red) | render | shape.

    images, render, shape (B,3,H,W) in [0,1]; landmarks (B,68,2) pixels. Returns (3, rows·H, 4·W).
    """
    n = min(max_rows, images.shape[0])
    images = images[:n].detach().float().cpu()
    marked = draw_points(images, target_landmarks[:n].cpu(), GREEN)
    marked = draw_points(marked, pred_landmarks[:n].cpu(), RED)
    columns = [images, marked, render[:n].detach().float().cpu(), shape[:n].detach().float().cpu()]
    rows = torch.cat(columns, dim=3)  # (n,3,H,4W)
    return torch.cat(list(rows), dim=1).clamp(0, 1)


class Progress:
    """A tqdm bar over the global step with ETA (rank 0 only; silent when disabled)."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)

    def update(self, stage: str, total_loss: float) -> None:
        self.bar.set_postfix_str(f"{stage} loss {total_loss:.4g}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
