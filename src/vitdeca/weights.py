"""The one reader of weights files: checkpoints, ``run.init``, pretrained encoders, identity and VGG nets.

Nothing read from a file is executed. The formats and how each is read:

- ``.safetensors`` (or a file with a safetensors header): :func:`safetensors.torch.load_file`;
- torch's zip format (``torch.save`` since 1.6) and its legacy format
  (``_use_new_zipfile_serialization=False``): ``torch.load(weights_only=True)`` with the small allow-list
  :data:`SAFE_GLOBALS` (numpy arrays and scalars, ``argparse.Namespace`` as timm's training script stores
  its arguments), all of them plain data without behaviour;
- any other pickle (``pickle.dump`` of a dict of tensors or arrays): the restricted unpickler of
  :mod:`vitdeca.safe_pickle`, which resolves only an allow-list of data types.

A file holding anything else (e.g. a ``__reduce__`` that calls ``os.system``) is refused with a one-line
:class:`~vitdeca.errors.VitdecaError` naming the file and the object, before that object is built.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitdeca.errors import VitdecaError, first_line

ZIP_MAGIC = b"PK\x03\x04"
# torch's legacy format starts with the pickled int 0x1950a86a20f9469cfc6c (protocol 2, LONG1 of 10 bytes)
LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
STATE_DICT_KEYS = ("state_dict", "model", "module")  # where checkpoints nest their state dict


def _numpy_globals() -> list[Any]:
    core = np._core if hasattr(np, "_core") else np.core
    found = [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: one class per dtype (pickled by name)
    if dtypes is not None:
        found += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return found


SAFE_GLOBALS: list[Any] = [*_numpy_globals(), argparse.Namespace]


def file_format(path: Path, what: str = "weights file") -> str:
    """``"safetensors"``, ``"torch-zip"``, ``"torch-legacy"`` or ``"pickle"`` from the file's first bytes
    (a safetensors file starts with its JSON header's length, then ``{``)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if not head:
        raise VitdecaError(f"{path}: not a readable {what} (empty file)")
    header_length = int.from_bytes(head[:8], "little") if len(head) > 8 else -1
    if path.suffix.lower() == ".safetensors" or (
        head[8:9] == b"{" and 0 < header_length < path.stat().st_size
    ):
        return "safetensors"
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(LEGACY_MAGIC):
        return "torch-legacy"
    return "pickle"


def read_weights(
    path: str | os.PathLike, what: str = "checkpoint", map_location: str | torch.device = "cpu"
) -> Any:
    """The object stored in weights file ``path`` (usually a dict of tensors or a checkpoint dict).

    ``what`` names the file's role in messages (``"checkpoint"``, ``"VGG19 weights"``, ...). A missing,
    truncated or foreign file, and one holding non-data objects, raise :class:`VitdecaError`."""
    path = Path(path)
    if not path.is_file():
        raise VitdecaError(f"{path}: no such {what}")
    kind = file_format(path, what)
    try:
        if kind == "safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device=str(map_location))
        if kind == "pickle":
            from vitdeca.safe_pickle import RestrictedUnpickler

            with open(path, "rb") as handle:
                return RestrictedUnpickler(handle, f"{path}").load()
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except VitdecaError:
        raise
    except pickle.UnpicklingError as exc:
        refused = _refused_global(str(exc))
        if refused:
            raise VitdecaError(
                f"{path}: refusing to load this {what}: it holds {refused}, not only weights "
                "(loading it could run code)"
            ) from exc
        raise VitdecaError(f"{path}: not a readable {what} ({first_line(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many types for broken files
        raise VitdecaError(f"{path}: not a readable {what} ({first_line(exc)})") from exc


def read_state_dict(path: str | os.PathLike, what: str = "weights file") -> dict[str, torch.Tensor]:
    """A state dict (name → tensor) from ``path``: unwrapped from a checkpoint's ``state_dict``/``model``
    entry and without DataParallel's ``module.`` prefixes. Numpy arrays become tensors."""
    payload = read_weights(path, what)
    for key in STATE_DICT_KEYS:
        if isinstance(payload, dict) and isinstance(payload.get(key), dict):
            payload = payload[key]
            break
    if not isinstance(payload, dict) or not payload:
        raise VitdecaError(f"{path}: not a state dict of tensors (a {type(payload).__name__})")
    state = {}
    for name, value in payload.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value)
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise VitdecaError(f"{path}: not a state dict of tensors (entry {name!r})")
        state[name.removeprefix("module.")] = value
    return state


def _refused_global(message: str) -> str:
    """What torch's weights-only unpickler refused, from its error message ('' when it refused
    nothing: the file is broken rather than hostile). torch's own advice in that message (to turn the
    weights-only unpickler off, which would run the file's code) is never shown."""
    for pattern in (
        r"GLOBAL ([\w.]+)",
        r"unrecognized function <?[`']?([\w.]+)",
        r"Unsupported operand (\w+)",
    ):
        match = re.search(pattern, message)
        if match:
            return match.group(1)
    return "an object that is not plain data" if "Weights only load failed" in message else ""
