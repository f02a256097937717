"""Reading the meshes and landmark files of an evaluation: OBJ/PLY meshes, 7x3 ``.npy``/``.txt`` landmarks.

OBJ files are parsed here rather than by trimesh so that the vertices come back exactly as written
(trimesh may duplicate vertices along texture seams, which would count scan vertices twice). Polygons are
split into triangle fans. PLY files go through trimesh with ``process=False``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError


def read_obj(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V,3) float64 and triangles (F,3) int64 of an OBJ file (1-based or negative indices)."""
    path = Path(path)
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise VitdecaError(f"{path}: cannot read ({exc.strerror})") from exc
    v_lines = [line for line in lines if line.startswith(b"v ")]
    try:
        tokens = b" ".join(line[2:] for line in v_lines).split()
        if len(tokens) == 3 * len(v_lines):  # the common case: exactly "v x y z"
            vertices = np.array(tokens, dtype=np.float64).reshape(-1, 3)
        else:
            vertices = np.array([line.split()[1:4] for line in v_lines], dtype=np.float64).reshape(-1, 3)
    except ValueError as exc:
        raise VitdecaError(f"{path}: a vertex line does not hold three numbers") from exc
    faces = _triangles(lines, path)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise VitdecaError(f"{path}: a face refers to a vertex that does not exist")
    return vertices, faces


def _triangles(lines: list[bytes], path: Path) -> np.ndarray:
    """0-based triangles (F,3) of the 'f' lines; polygons become fans around their first corner."""
    f_lines = [line for line in lines if line.startswith(b"f ")]
    tokens = b" ".join(line[2:] for line in f_lines).split()
    if len(tokens) == 3 * len(f_lines):  # all triangles: vectorised
        corners = [t.split(b"/", 1)[0] for t in tokens[0::3] + tokens[1::3] + tokens[2::3]]
        try:
            idx = np.array(corners, dtype=np.int64).reshape(3, -1).T
        except ValueError as exc:
            raise VitdecaError(f"{path}: bad face line") from exc
        if idx.size == 0 or idx.min() > 0:
            return idx - 1
    tris: list[tuple[int, int, int]] = []  # general case: polygons, negative (relative) indices
    n_vertices = 0
    for number, line in enumerate(lines, 1):
        if line.startswith(b"v "):
            n_vertices += 1
        elif line.startswith(b"f "):
            tris.extend(_fan(line, n_vertices, path, number))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def _fan(line: bytes, n_vertices: int, path: Path, number: int) -> list[tuple[int, int, int]]:
    """Triangles of one 'f' line (0-based), as a fan around its first corner."""
    try:
        idx = [int(tok.split(b"/")[0]) for tok in line.split()[1:]]
    except ValueError as exc:
        raise VitdecaError(f"{path}:{number}: bad face line") from exc
    if len(idx) < 3:
        raise VitdecaError(f"{path}:{number}: a face needs at least three corners")
    idx = [i - 1 if i > 0 else n_vertices + i for i in idx]
    return [(idx[0], idx[k], idx[k + 1]) for k in range(1, len(idx) - 1)]


def read_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V,3) and triangles (F,3) of an .obj or .ply file; VitdecaError if it has no triangles."""
    path = Path(path)
    if path.suffix.lower() == ".obj":
        vertices, faces = read_obj(path)
    else:
        import trimesh

        try:
            mesh = trimesh.load(path, process=False, force="mesh")
        except Exception as exc:  # trimesh raises many types for broken files
            raise VitdecaError(f"{path}: cannot read the mesh ({exc})") from exc
        vertices, faces = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    if len(faces) == 0:
        raise VitdecaError(f"{path}: the mesh has no triangles")
    if not np.isfinite(vertices).all():
        raise VitdecaError(f"{path}: the mesh has NaN or infinite vertex coordinates")
    return vertices, faces.reshape(-1, 3)


def read_landmarks(path: str | os.PathLike, count: int = 7) -> np.ndarray:
    """A (count,3) landmark array from .npy or whitespace-separated .txt; VitdecaError otherwise."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.loadtxt(path, ndmin=2)
        arr = np.asarray(arr, dtype=np.float64)
    except (OSError, ValueError, TypeError) as exc:
        raise VitdecaError(f"{path}: cannot read landmarks ({exc})") from exc
    if arr.size != count * 3 or arr.squeeze().shape != (count, 3):
        raise VitdecaError(f"{path}: expected {count}x3 landmarks, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise VitdecaError(f"{path}: landmarks contain NaN or infinite values")
    return arr.reshape(count, 3)
