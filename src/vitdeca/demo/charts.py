"""ARKit charts for the demo: the weights of ``<stem>_arkit.json`` (one photo's faces) as horizontal bars,
and the curves of ``<stem>_arkit.csv`` (a video, Live Link Face layout) over frames.

Only files written by ``vitdeca reconstruct --save arkit`` are read; the charts are PNG files drawn with
matplotlib's object API (no pyplot state, so handlers may run in threads).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path

# Bar colours by the region an ARKit name starts with (Apple's 52 names; Live Link capitalises them).
REGION_COLOURS = {
    "eye": "#4c72b0",
    "jaw": "#dd8452",
    "mouth": "#c44e52",
    "brow": "#55a868",
    "cheek": "#8172b3",
    "nose": "#937860",
    "tongue": "#da8bc3",
}
ROTATION_START = "HeadYaw"  # Live Link Face: the first column after the blendshapes
N_CURVES = 8  # a video's chart shows the weights that move most over time


@dataclass
class ArkitWeights:
    """One face's ARKit weights: ``names`` (N,) in the file's order and ``weights`` (N,) in [0, 1], NaN
    where the head model has no such shape (e.g. ``tongueOut`` on ICT-FaceKit)."""

    names: list[str]
    weights: np.ndarray


@dataclass
class ArkitCurves:
    """A video's ARKit weights over frames: ``names`` (N,), ``weights`` (T,N), ``frames`` (T,) row index."""

    names: list[str]
    weights: np.ndarray
    frames: np.ndarray


def read_arkit_json(path: str | os.PathLike) -> ArkitWeights:
    """Read ``<stem>_arkit.json`` (``{"names": [...], "weights": [...], "unavailable": [...], ...}``); the
    names listed as unavailable (or with a null weight) get NaN. VitdecaError if malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        names = [str(n) for n in data["names"]]
        weights = np.array([math.nan if w is None else float(w) for w in data["weights"]], np.float64)
        unavailable = set(data.get("unavailable") or ())
        weights[[k for k, n in enumerate(names) if n in unavailable]] = math.nan
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VitdecaError(f"{path}: not an ARKit weights file ({type(exc).__name__}: {exc})") from exc
    if len(names) != len(weights) or not names:
        raise VitdecaError(f"{path}: {len(names)} names but {len(weights)} weights")
    return ArkitWeights(names, weights)


def read_arkit_csv(path: str | os.PathLike) -> ArkitCurves:
    """Read a Live Link Face CSV (``Timecode, BlendShapeCount, <52 names>, HeadYaw, ...``): the blendshape
    columns (from ``BlendShapeCount`` to ``HeadYaw``, the first rotation) of every row; VitdecaError if
    malformed."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        header, body = rows[0], [r for r in rows[1:] if r]
        start = header.index("BlendShapeCount") + 1
        names = header[start : header.index(ROTATION_START)]
        count = len(names)
        weights = np.array([[float(v or "nan") for v in r[start : start + count]] for r in body], np.float64)
    except (OSError, ValueError, IndexError) as exc:
        raise VitdecaError(f"{path}: not a Live Link Face CSV ({type(exc).__name__}: {exc})") from exc
    weights = weights.reshape(len(body), len(names))
    return ArkitCurves(names, weights, np.arange(len(body)))


def region_colour(name: str) -> str:
    """The bar colour of an ARKit name by its region prefix (grey when unknown)."""
    lower = name.lower()
    return next((c for prefix, c in REGION_COLOURS.items() if lower.startswith(prefix)), "#8c8c8c")


def most_moving(curves: ArkitCurves, n: int = N_CURVES) -> list[int]:
    """Indices of the ``n`` names whose weights vary most over frames (peak-to-peak, NaN ignored)."""
    w = np.where(np.isfinite(curves.weights), curves.weights, np.nan)
    spread = np.nan_to_num(np.nanmax(w, 0) - np.nanmin(w, 0), nan=-1.0) if len(w) else np.zeros(w.shape[1])
    return [int(i) for i in np.argsort(-spread, kind="stable")[:n]]


def bar_chart(faces: list[tuple[str, ArkitWeights]], path: str | os.PathLike) -> Path:
    """Draw each face's weights as horizontal bars (one panel per face, names top to bottom in the file's
    order, unavailable shapes labelled ``n/a``) into the PNG ``path``."""
    from matplotlib.figure import Figure

    names = faces[0][1].names
    fig = Figure(figsize=(2.6 + 2.4 * len(faces), 0.16 * len(names) + 1.0), dpi=100)
    axes = fig.subplots(1, len(faces), sharey=True, squeeze=False)[0]
    y = np.arange(len(names))
    for ax, (title, face) in zip(axes, faces, strict=True):
        values = np.nan_to_num(face.weights, nan=0.0)
        ax.barh(y, values, color=[region_colour(n) for n in face.names], height=0.75)
        for k in np.flatnonzero(~np.isfinite(face.weights)):
            ax.text(0.01, k, "n/a", va="center", fontsize=6, color="#555555")
        ax.set_xlim(0, 1)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=7)
    axes[0].set_yticks(y, names, fontsize=6.5)
    axes[0].invert_yaxis()
    fig.tight_layout()
    return _save(fig, path)


def curve_chart(curves: ArkitCurves, path: str | os.PathLike, n: int = N_CURVES) -> Path:
    """Draw the ``n`` most moving weights of a video over frames into the PNG ``path``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6), dpi=100)
    ax = fig.subplots()
    for i in most_moving(curves, n):
        ax.plot(curves.frames, curves.weights[:, i], label=curves.names[i], linewidth=1.4)
    ax.set_xlabel("frame")
    ax.set_ylabel("weight")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | os.PathLike) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)
