"""A restricted unpickler for third-party model files (FLAME ``generic_model.pkl`` and landmark
embeddings, DECA's VGGFace2 ``resnet50_ft_weight.pkl``).

The official FLAME pickle was written with Python 2 and stores some arrays as ``chumpy`` objects;
chumpy is unmaintained and need not be installed. This unpickler resolves only an allow-list of
globals (numpy arrays, scipy sparse matrices, torch tensors, a few builtins); chumpy and scipy-sparse
objects become inert stand-ins whose state is turned back into numpy / scipy by :func:`to_plain`.
Anything else (e.g. ``os.system``) is refused, so a hostile file cannot run code.
"""

from __future__ import annotations

import codecs
import collections
import copyreg
import io
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from vitdeca.errors import VitdecaError


class _StandIn:
    """A chumpy or scipy-sparse object from the pickle: keeps its class name and pickled state."""

    origin = ""

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stand_in(origin: str) -> type:
    return type("StandIn", (_StandIn,), {"origin": origin})


def _safe_load_from_bytes(data: bytes) -> Any:
    """torch storages inside plain pickles; loaded with ``weights_only=True`` (no code execution)."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _allowed() -> dict[tuple[str, str], Any]:
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    table: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    for builtins in ("builtins", "__builtin__"):  # Python 3 and Python 2 names
        table.update(
            {(builtins, "object"): object, (builtins, "set"): set, (builtins, "frozenset"): frozenset}
        )
    for module in ("copyreg", "copy_reg"):
        table[(module, "_reconstructor")] = copyreg._reconstructor
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(module, "_reconstruct")] = multiarray._reconstruct
        table[(module, "scalar")] = multiarray.scalar
    numeric = np._core.numeric if hasattr(np, "_core") else np.core.numeric
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        table[(module, "_frombuffer")] = numeric._frombuffer
    return table


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that only resolves allow-listed globals (see the module docstring)."""

    def __init__(self, file: Any, label: str):
        super().__init__(file, encoding="latin1")
        self._label = label
        self._table = _allowed()
        self._stand_ins: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in self._table:
            return self._table[key]
        if module == "chumpy" or module.startswith("chumpy."):
            return self._stand_ins.setdefault(f"{module}.{name}", _stand_in(f"{module}.{name}"))
        if module.startswith("scipy.sparse") and name in {"csc_matrix", "csr_matrix", "coo_matrix"}:
            return self._stand_ins.setdefault(name, _stand_in(f"scipy.sparse.{name}"))
        if module == "torch._utils" and name in {"_rebuild_tensor_v2", "_rebuild_tensor"}:
            import torch._utils

            return getattr(torch._utils, name)
        if module == "torch.storage" and name == "_load_from_bytes":
            return _safe_load_from_bytes
        raise VitdecaError(
            f"{self._label}: refusing to load (unexpected object {module}.{name} in the pickle)"
        )


def to_plain(obj: Any, label: str) -> Any:
    """Replace stand-ins and tensors, recursively in dicts/lists, by numpy arrays or scipy matrices."""
    if isinstance(obj, dict):
        return {key: to_plain(value, label) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(to_plain(value, label) for value in obj)
    if isinstance(obj, _StandIn):
        return _from_stand_in(obj, label)
    if "torch" in sys.modules and isinstance(obj, sys.modules["torch"].Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0:
        return to_plain(obj.item(), label)
    return obj


def _from_stand_in(obj: _StandIn, label: str) -> Any:
    state = getattr(obj, "state", None)
    if isinstance(state, tuple):  # (dict, slots) form
        state = state[0]
    if not isinstance(state, dict):
        raise VitdecaError(f"{label}: unsupported {obj.origin} object in the pickle")
    if obj.origin.startswith("scipy.sparse."):
        shape = state.get("_shape", state.get("shape"))
        kind = getattr(scipy.sparse, obj.origin.rsplit(".", 1)[1])
        try:
            if kind is scipy.sparse.coo_matrix:
                return kind((state["data"], (state["row"], state["col"])), shape=shape)
            return kind((state["data"], state["indices"], state["indptr"]), shape=shape)
        except (KeyError, ValueError, TypeError) as exc:
            raise VitdecaError(f"{label}: broken sparse matrix in the pickle ({exc})") from exc
    if "x" not in state:  # a chumpy expression, not a plain chumpy array
        raise VitdecaError(f"{label}: unsupported chumpy expression {obj.origin} (only plain arrays are)")
    return np.asarray(to_plain(state["x"], label))


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` and return plain numpy/scipy content."""
    label = str(path)
    try:
        with open(path, "rb") as handle:
            obj = RestrictedUnpickler(handle, label).load()
    except VitdecaError:
        raise
    except FileNotFoundError as exc:
        raise VitdecaError(f"{path}: no such file") from exc
    except Exception as exc:  # noqa: BLE001  (any unpickling failure means a broken file)
        raise VitdecaError(
            f"{path}: not a readable pickle ({type(exc).__name__}: {exc}); truncated?"
        ) from exc
    return to_plain(obj, label)


def load_npy(path: Path) -> Any:
    """Load a ``.npy`` file; object arrays (pickled dicts, e.g. landmark embeddings) go through the
    restricted unpickler instead of ``np.load(allow_pickle=True)``."""
    label = str(path)
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = read_header(handle)
            if not dtype.hasobject:
                handle.seek(0)
                return np.load(handle, allow_pickle=False)
            obj = RestrictedUnpickler(handle, label).load()
    except VitdecaError:
        raise
    except FileNotFoundError as exc:
        raise VitdecaError(f"{path}: no such file") from exc
    except Exception as exc:  # noqa: BLE001
        raise VitdecaError(
            f"{path}: not a readable .npy file ({type(exc).__name__}: {exc}); truncated?"
        ) from exc
    return to_plain(obj, label)
