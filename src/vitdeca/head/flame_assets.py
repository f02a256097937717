"""Reading the user's FLAME files: the model pickle, a landmark embedding, an optional UV template and
optional region masks. FLAME is not bundled (its licence requires registration), see :data:`HOW_TO_GET`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse

from vitdeca.errors import VitdecaError
from vitdeca.head.objparse import read_obj_polygons, read_obj_uvs, triangulate
from vitdeca.safe_pickle import load_npy, load_pickle

ENV_FLAME = "VITDECA_FLAME"
HOW_TO_GET = (
    "FLAME is not bundled: register at https://flame.is.tue.mpg.de, download FLAME 2020 or 2023 and pass "
    f"its generic_model.pkl (path=... / --flame-path) or set {ENV_FLAME}=/path/to/generic_model.pkl"
)
MODEL_NAMES = ("generic_model.pkl", "flame2023.pkl", "FLAME_NEUTRAL.pkl")
N_SHAPE_MAX, N_EXPRESSION_MAX, N_JOINTS = 300, 100, 5
DECA_EMBEDDING = "landmark_embedding.npy"
RINGNET_EMBEDDING = ("flame_static_embedding.pkl", "flame_dynamic_embedding.npy")
UV_TEMPLATE = "head_template.obj"
MASKS = "FLAME_masks.pkl"


@dataclass
class FlameArrays:
    """FLAME model data as plain arrays (float32 unless noted)."""

    template: np.ndarray  # (V,3) metres
    shapedirs: np.ndarray  # (V,3,400): 300 identity then 100 expression components
    posedirs: np.ndarray  # ((J-1)*9, V*3) pose correctives
    j_regressor: np.ndarray  # (J,V)
    weights: np.ndarray  # (V,J) skinning weights
    parents: tuple[int, ...]  # (J,), -1 for the root
    faces: np.ndarray  # (F,3) int64


@dataclass
class LandmarkEmbedding:
    """68 landmarks as barycentric points: 51 static (iBUG 17-67) plus a 17-point jaw contour chosen
    from a 79-row table by head yaw. ``yaw_sign`` is the sign convention of the table's source code
    (+1: DECA's landmark_embedding.npy, -1: RingNet/smplx's pair)."""

    static_faces: np.ndarray  # (51,) int64
    static_bary: np.ndarray  # (51,3)
    dynamic_faces: np.ndarray  # (79,17) int64
    dynamic_bary: np.ndarray  # (79,17,3)
    yaw_sign: float


def resolve_model_path(path: str | os.PathLike | None) -> Path:
    """The FLAME pickle from ``path`` or ``$VITDECA_FLAME`` (a file, or a folder holding one)."""
    text = os.fspath(path) if path is not None else os.environ.get(ENV_FLAME)
    if not text:
        raise VitdecaError(HOW_TO_GET)
    found = Path(text).expanduser()
    if found.is_dir():
        for name in MODEL_NAMES:
            if (found / name).is_file():
                return found / name
        raise VitdecaError(f"{found}: no {' / '.join(MODEL_NAMES)} in this folder. {HOW_TO_GET}")
    if not found.is_file():
        raise VitdecaError(f"{found}: no such FLAME model file. {HOW_TO_GET}")
    return found


def _array(data: dict, key: str, label: str, shape: tuple[int | None, ...], dtype=np.float32) -> np.ndarray:
    """``data[key]`` as a dense array of the given shape (None = any size) or a VitdecaError."""
    if key not in data:
        raise VitdecaError(f"{label}: missing '{key}' (not a FLAME model file)")
    value = data[key]
    if scipy.sparse.issparse(value):
        value = value.toarray()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise VitdecaError(f"{label}: '{key}' is not a numeric array ({exc})") from exc
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
        raise VitdecaError(f"{label}: '{key}' has shape {arr.shape}, expected {shape} (wrong file?)")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise VitdecaError(f"{label}: '{key}' contains NaN or infinite values (corrupt file)")
    return arr


def read_flame_model(path: Path) -> FlameArrays:
    """Load and validate a FLAME ``generic_model.pkl`` without chumpy."""
    data, label = load_pickle(path), str(path)
    if not isinstance(data, dict):
        raise VitdecaError(f"{label}: not a FLAME model file (expected a dict, got {type(data).__name__})")
    template = _array(data, "v_template", label, (None, 3))
    n_v = template.shape[0]
    shapedirs = _array(data, "shapedirs", label, (n_v, 3, None))
    if shapedirs.shape[2] < N_SHAPE_MAX + N_EXPRESSION_MAX:
        raise VitdecaError(
            f"{label}: 'shapedirs' has {shapedirs.shape[2]} components, expected 400 (FLAME 2020/2023)"
        )
    posedirs = _array(data, "posedirs", label, (n_v, 3, (N_JOINTS - 1) * 9))
    kintree = _array(data, "kintree_table", label, (2, N_JOINTS), dtype=np.int64)
    parents = (-1, *(int(p) for p in kintree[0, 1:]))
    if any(not 0 <= p < j for j, p in enumerate(parents) if j):
        raise VitdecaError(f"{label}: 'kintree_table' is not a valid joint tree")
    faces = _array(data, "f", label, (None, 3), dtype=np.int64)
    if faces.size == 0 or faces.min() < 0 or faces.max() >= n_v:
        raise VitdecaError(f"{label}: 'f' has vertex indices out of range (corrupt file)")
    return FlameArrays(
        template=template,
        shapedirs=shapedirs,
        posedirs=posedirs.reshape(-1, posedirs.shape[-1]).T.copy(),
        j_regressor=_array(data, "J_regressor", label, (N_JOINTS, n_v)),
        weights=_array(data, "weights", label, (n_v, N_JOINTS)),
        parents=parents,
        faces=faces,
    )


def find_landmark_files(model_path: Path, landmarks: str | os.PathLike | None) -> list[Path]:
    """Landmark embedding file(s): ``landmarks`` (DECA .npy, or a folder), else beside the model."""
    folder = model_path.parent
    if landmarks is not None:
        given = Path(landmarks).expanduser()
        if given.is_file():
            return (
                [given]
                if given.suffix == ".npy" and given.name != RINGNET_EMBEDDING[1]
                else _pair(given.parent)
            )
        if not given.is_dir():
            raise VitdecaError(f"{given}: no such landmark embedding file or folder")
        folder = given
    if (folder / DECA_EMBEDDING).is_file():
        return [folder / DECA_EMBEDDING]
    return _pair(folder)


def _pair(folder: Path) -> list[Path]:
    pair = [folder / name for name in RINGNET_EMBEDDING]
    if all(p.is_file() for p in pair):
        return pair
    raise VitdecaError(
        f"{folder}: no FLAME landmark embedding ({DECA_EMBEDDING} from DECA's data folder, or "
        f"{' + '.join(RINGNET_EMBEDDING)} from RingNet's flame_model folder); pass landmarks=PATH"
    )


def read_landmark_embedding(files: list[Path], n_faces: int) -> LandmarkEmbedding:
    """Read DECA's ``landmark_embedding.npy`` or RingNet's static .pkl + dynamic .npy pair."""
    label = " + ".join(str(f) for f in files)
    if len(files) == 1:
        data = load_npy(files[0])
        keys = (
            "static_lmk_faces_idx",
            "static_lmk_bary_coords",
            "dynamic_lmk_faces_idx",
            "dynamic_lmk_bary_coords",
        )
        sign = 1.0
    else:
        static, dynamic = load_pickle(files[0]), load_npy(files[1])
        if not isinstance(static, dict) or not isinstance(dynamic, dict):
            raise VitdecaError(f"{label}: not a FLAME landmark embedding (expected dicts)")
        data = {
            "sf": static.get("lmk_face_idx"),
            "sb": static.get("lmk_b_coords"),
            "df": dynamic.get("lmk_face_idx"),
            "db": dynamic.get("lmk_b_coords"),
        }
        keys, sign = ("sf", "sb", "df", "db"), -1.0
    if not isinstance(data, dict) or any(data.get(k) is None for k in keys):
        raise VitdecaError(f"{label}: not a FLAME landmark embedding (missing keys {keys})")
    emb = LandmarkEmbedding(
        static_faces=_array(data, keys[0], label, (51,), dtype=np.int64),
        static_bary=_array(data, keys[1], label, (51, 3)),
        dynamic_faces=_array(data, keys[2], label, (79, 17), dtype=np.int64),
        dynamic_bary=_array(data, keys[3], label, (79, 17, 3)),
        yaw_sign=sign,
    )
    for faces in (emb.static_faces, emb.dynamic_faces):
        if faces.min() < 0 or faces.max() >= n_faces:
            raise VitdecaError(f"{label}: landmark face indices out of range for this FLAME model")
    return emb


def read_uv_template(path: Path, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UVs (T,2) and uv_faces (F,3) from an OBJ with FLAME's topology (DECA's ``head_template.obj``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise VitdecaError(f"{path}: cannot read UV template ({exc.strerror})") from exc
    uvs = read_obj_uvs(data, str(path))
    polygons, uv_polygons = read_obj_polygons(data, str(path))
    tris = triangulate(polygons)
    if len(uvs) == 0 or tris.shape != faces.shape or not np.array_equal(tris, faces):
        raise VitdecaError(f"{path}: UV template faces do not match the FLAME model's topology")
    if len(uv_polygons) != len(polygons) or any(
        len(u) != len(p) for u, p in zip(uv_polygons, polygons, strict=True)
    ):
        raise VitdecaError(f"{path}: UV template lacks texture coordinates on some faces")
    uv_faces = triangulate(uv_polygons)
    if uv_faces.min() < 0 or uv_faces.max() >= len(uvs):
        raise VitdecaError(f"{path}: texture-coordinate indices out of range")
    return uvs.astype(np.float32), uv_faces


def read_face_mask(path: Path, n_vertices: int) -> np.ndarray:
    """Vertex mask (V,) bool from FLAME's ``FLAME_masks.pkl`` (its ``face`` region)."""
    masks = load_pickle(path)
    if not isinstance(masks, dict) or "face" not in masks:
        raise VitdecaError(f"{path}: not a FLAME masks file (no 'face' region)")
    idx = np.asarray(masks["face"], dtype=np.int64).reshape(-1)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_vertices:
        raise VitdecaError(f"{path}: 'face' region indices out of range for this FLAME model")
    mask = np.zeros(n_vertices, dtype=bool)
    mask[idx] = True
    return mask
