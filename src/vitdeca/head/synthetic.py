"""Synthetic FLAME-format files (random content, official keys, shapes and dtypes) for tests and
benchmarks, since the real FLAME model cannot be redistributed.

:func:`write_flame_pickle` writes a Python-2-style protocol-2 pickle in which the arrays the official
file stores as chumpy objects appear as ``chumpy.ch.Ch`` instances (with chumpy's pickled state), the
joint regressor is a ``scipy.sparse.csc.csc_matrix`` and numpy arrays use the ``numpy.core`` names —
without chumpy being installed.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse

from vitdeca.storage import atomic_path, atomic_write_bytes

N_VERTICES, N_FACES = 5023, 9976
CHUMPY_KEYS = ("v_template", "shapedirs", "posedirs", "J", "weights")


class _ChumpyArray:
    """Pickles like a plain ``chumpy.ch.Ch`` holding ``x`` (its class name is rewritten in the stream)."""

    def __init__(self, x: np.ndarray):
        self.x = x
        self._dirty_vars: set = set()
        self._itr = None
        self._depends_on_deps: dict = {}
        self._make_dense = False
        self._make_sparse = False


# Global names in protocol-2 streams: ours → the ones found in the official (Python 2) FLAME pickle.
_RENAMES = (
    (f"c{__name__}\n{_ChumpyArray.__name__}\n".encode(), b"cchumpy.ch\nCh\n"),
    (b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"),
    (b"cscipy.sparse._csc\ncsc_matrix\n", b"cscipy.sparse.csc\ncsc_matrix\n"),
)


def random_flame_arrays(seed: int = 0, n_vertices: int = N_VERTICES, n_faces: int = N_FACES) -> dict:
    """Random arrays with the keys, shapes and dtypes of FLAME 2020's ``generic_model.pkl``.

    The template is a head-sized ellipsoid in metres; the blend shapes are small; skinning weights are
    positive and sum to one; the joint regressor is sparse with rows summing to one.
    """
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(n_vertices, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    template = direction * np.array([0.08, 0.11, 0.1]) + rng.normal(scale=0.002, size=(n_vertices, 3))
    weights = rng.dirichlet(np.full(5, 0.3), size=n_vertices)
    regressor = np.zeros((5, n_vertices))
    for j in range(5):
        idx = rng.choice(n_vertices, size=20, replace=False)
        regressor[j, idx] = rng.dirichlet(np.ones(20))
    return {
        "f": rng.integers(0, n_vertices, size=(n_faces, 3)).astype(np.uint32),
        "v_template": template,
        "shapedirs": rng.normal(scale=1e-3, size=(n_vertices, 3, 400)),
        "posedirs": rng.normal(scale=1e-3, size=(n_vertices, 3, 36)),
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "J": regressor @ template,
        "weights": weights,
        "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
    }


def flame_pickle_bytes(arrays: dict, chumpy: bool = True) -> bytes:
    """A protocol-2 pickle of ``arrays``; with ``chumpy``, :data:`CHUMPY_KEYS` become chumpy objects and
    global names are those of the official Python-2 file (such a stream needs chumpy for plain pickle)."""
    payload = {k: (_ChumpyArray(v) if chumpy and k in CHUMPY_KEYS else v) for k, v in arrays.items()}
    data = pickle.dumps(payload, protocol=2)
    if chumpy:
        for ours, official in _RENAMES:
            data = data.replace(ours, official)
    return data


def write_flame_pickle(path: str | os.PathLike, arrays: dict, chumpy: bool = True) -> Path:
    """Write :func:`flame_pickle_bytes` to ``path`` atomically."""
    atomic_write_bytes(path, flame_pickle_bytes(arrays, chumpy=chumpy))
    return Path(path)


def random_landmark_embedding(n_faces: int = N_FACES, seed: int = 1) -> dict:
    """Random static (51) and dynamic (79 rows × 17) landmark faces and barycentric coordinates."""
    rng = np.random.default_rng(seed)
    return {
        "static_faces": rng.integers(0, n_faces, size=51),
        "static_bary": rng.dirichlet(np.ones(3), size=51),
        "dynamic_faces": rng.integers(0, n_faces, size=(79, 17)),
        "dynamic_bary": rng.dirichlet(np.ones(3), size=(79, 17)),
    }


def write_ringnet_embedding(folder: str | os.PathLike, emb: dict) -> list[Path]:
    """RingNet/smplx format: ``flame_static_embedding.pkl`` + ``flame_dynamic_embedding.npy``."""
    folder = Path(folder)
    static = {"lmk_face_idx": emb["static_faces"].astype(np.uint32), "lmk_b_coords": emb["static_bary"]}
    dynamic = {"lmk_face_idx": emb["dynamic_faces"].astype(np.int64), "lmk_b_coords": emb["dynamic_bary"]}
    atomic_write_bytes(folder / "flame_static_embedding.pkl", pickle.dumps(static, protocol=2))
    dyn_path = folder / "flame_dynamic_embedding.npy"
    _save_object_npy(dyn_path, dynamic)
    return [folder / "flame_static_embedding.pkl", dyn_path]


def write_deca_embedding(path: str | os.PathLike, emb: dict, full_faces: np.ndarray | None = None) -> Path:
    """DECA format ``landmark_embedding.npy`` (dynamic entries as torch tensors, as in DECA's file)."""
    import torch

    if full_faces is None:
        full_faces = np.concatenate([emb["dynamic_faces"][0], emb["static_faces"]])
    data = {
        "static_lmk_faces_idx": emb["static_faces"].astype(np.int64),
        "static_lmk_bary_coords": emb["static_bary"].astype(np.float32),
        "dynamic_lmk_faces_idx": torch.from_numpy(emb["dynamic_faces"].astype(np.int64)),
        "dynamic_lmk_bary_coords": torch.from_numpy(emb["dynamic_bary"].astype(np.float32)),
        "full_lmk_faces_idx": full_faces[None].astype(np.int64),
        "full_lmk_bary_coords": np.full((1, 68, 3), 1 / 3, dtype=np.float32),
    }
    _save_object_npy(path, data)
    return Path(path)


def _save_object_npy(path: str | os.PathLike, obj: dict) -> None:
    """``np.save`` of a pickled dict (a 0-d object array), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.array(obj, dtype=object), allow_pickle=True)
