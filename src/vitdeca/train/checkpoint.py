"""Training checkpoints: one ``torch.save`` dict, written atomically, loadable with ``weights_only=True``.

Keys: ``model``, ``optimizer``, ``scheduler``, ``scaler`` (fp16 only, else None), ``step`` (global step:
optimiser steps taken, counting skipped ones), ``stage``, ``rng`` (python, numpy, torch, cuda),
``data`` (sampler ``epoch`` and ``index`` of the next batch), ``config`` (the resolved TrainConfig as plain
dicts), ``head_model`` ({``name``, ``checksum``}), ``vitdeca_version``, ``format`` (this layout's version).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitdeca import __version__
from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path

FORMAT = 1
REQUIRED = ("model", "optimizer", "scheduler", "step", "stage", "rng", "data", "config", "head_model")


def checkpoint_path(run_dir: str | Path) -> Path:
    """A run folder's resumable checkpoint, ``checkpoints/last.pt`` (a stage's end links it to its name)."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def rng_state() -> dict[str, Any]:
    """The random states of python, numpy, torch and (when present) every CUDA device, as plain data."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the legacy global state is what we save)
    return {
        "python": [version, list(internal), gauss],
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state` (CUDA states only when the device count matches)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (the keys above; ``rng``, ``vitdeca_version`` and ``format`` are added) atomically:
    a temporary file beside ``path``, renamed onto it only once complete."""
    missing = [k for k in REQUIRED if k not in state and k != "rng"]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    payload = dict(state)
    payload.setdefault("rng", rng_state())
    payload["vitdeca_version"] = __version__
    payload["format"] = FORMAT
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def link_checkpoint(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Give the finished checkpoint ``source`` a second name ``path``, replaced atomically: a hard link,
    so the two names share one file on disk (a stage's checkpoint and ``last.pt`` at the stage's end: a
    ResNet50 checkpoint with its Adam state is ~300 MB); a copy where the filesystem has no hard links.
    Safe because checkpoints are only ever replaced by renaming a new file onto the name
    (:func:`save_checkpoint`), never rewritten in place."""
    with atomic_path(path) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; a missing, truncated or foreign file raises
    :class:`VitdecaError` naming it."""
    from vitdeca.weights import read_weights

    payload = read_weights(path, "checkpoint", map_location)
    if not isinstance(payload, dict):
        raise VitdecaError(f"{path}: not a vitdeca training checkpoint (a {type(payload).__name__})")
    missing = [k for k in REQUIRED if k not in payload]
    if missing:
        raise VitdecaError(f"{path}: not a vitdeca training checkpoint (missing {', '.join(missing)})")
    if payload.get("format", 0) > FORMAT:
        raise VitdecaError(
            f"{path}: written by a newer vitdeca ({payload.get('vitdeca_version')}); upgrade to resume it"
        )
    return payload


def check_head_model(path: str | os.PathLike, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume with a different head model than the checkpoint was trained with."""
    if saved.get("name") != current.get("name"):
        raise VitdecaError(
            f"{path}: trained with head model {saved.get('name')!r}, but the config builds "
            f"{current.get('name')!r}"
        )
    if saved.get("checksum") and current.get("checksum") and saved["checksum"] != current["checksum"]:
        raise VitdecaError(
            f"{path}: head model {saved.get('name')!r} data differ from the checkpoint's "
            f"(checksum {saved['checksum'][:12]}… vs {current['checksum'][:12]}…)"
        )


def load_model_state(path: str | os.PathLike, model: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load ``state`` into ``model`` strictly, turning a key/shape mismatch into a one-line error."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise VitdecaError(
            f"{path}: the model in this checkpoint does not match the config ({detail})"
        ) from exc
