"""Fast, strict reading of the Wavefront OBJ pieces the head models need (vertices, UVs, polygons).

Only what ICT-FaceKit and DECA's ``head_template.obj`` use: ``v``, ``vt`` and ``f`` records. Any
malformed number, wrong count or out-of-range index raises :class:`VitdecaError` naming the file.
"""

from __future__ import annotations

import re

import numpy as np

from vitdeca.errors import VitdecaError

_NOT_OBJ = "is not a valid OBJ file"


def _block_rows(data: bytes, tag: bytes, label: str) -> np.ndarray:
    """Parse the first contiguous block of ``tag`` records (e.g. b"v") into a float64 (N,k) array."""
    prefix = tag + b" "
    if data.startswith(prefix):
        start = 0
    elif (start := data.find(b"\n" + prefix) + 1) == 0:
        return np.zeros((0, 3))
    pattern = re.compile(rb"\n(?!" + re.escape(prefix) + rb")")
    match = pattern.search(data, start)
    end = match.start() if match else len(data)
    block = data[start:end]
    n_lines = block.count(b"\n") + 1
    try:
        values = np.array(block.replace(prefix, b" ").split(), dtype=np.float64)
    except ValueError as exc:
        raise VitdecaError(f"{label}: {_NOT_OBJ} (bad number in a '{tag.decode()}' record)") from exc
    if values.size % n_lines or not np.isfinite(values).all():
        raise VitdecaError(f"{label}: {_NOT_OBJ} (malformed '{tag.decode()}' records; truncated?)")
    return values.reshape(n_lines, -1)


def read_obj_vertices(data: bytes, label: str, n_expected: int | None = None) -> np.ndarray:
    """The ``v`` records of an OBJ file's bytes as float64 (V,3) (extra per-vertex colours dropped).

    All ``v`` records must form one contiguous block (true for ICT-FaceKit and most exporters).
    """
    rows = _block_rows(data, b"v", label)
    total = data.count(b"\nv ") + int(data.startswith(b"v "))
    if rows.shape[1] < 3 or rows.shape[0] != total:
        raise VitdecaError(f"{label}: {_NOT_OBJ} (unsupported or broken vertex records)")
    if n_expected is not None and rows.shape[0] != n_expected:
        raise VitdecaError(
            f"{label}: has {rows.shape[0]} vertices, expected {n_expected} (wrong or truncated mesh)"
        )
    return rows[:, :3]


def read_obj_uvs(data: bytes, label: str) -> np.ndarray:
    """The ``vt`` records as float64 (T,2) (a third coordinate, if any, is dropped)."""
    rows = _block_rows(data, b"vt", label)
    total = data.count(b"\nvt ") + int(data.startswith(b"vt "))
    if rows.shape[0] != total or (total and rows.shape[1] < 2):
        raise VitdecaError(f"{label}: {_NOT_OBJ} (unsupported or broken texture-coordinate records)")
    return rows[:, :2]


def read_obj_polygons(data: bytes, label: str) -> tuple[list[list[int]], list[list[int]]]:
    """The ``f`` records as 0-based (vertex indices, uv indices) per polygon (uv list empty if absent)."""
    polygons: list[list[int]] = []
    uv_polygons: list[list[int]] = []
    try:
        for line in data.split(b"\nf ")[1:]:
            corners = line.split(b"\n", 1)[0].split()
            parts = [c.split(b"/") for c in corners]
            polygons.append([int(p[0]) - 1 for p in parts])
            uv_polygons.append([int(p[1]) - 1 for p in parts if len(p) > 1 and p[1]])
    except ValueError as exc:
        raise VitdecaError(f"{label}: {_NOT_OBJ} (bad index in a face record)") from exc
    if any(len(p) < 3 for p in polygons):
        raise VitdecaError(f"{label}: {_NOT_OBJ} (a face with fewer than 3 corners)")
    return polygons, uv_polygons


def triangulate(polygons: list[list[int]]) -> np.ndarray:
    """Fan-triangulate polygons ``(a,b,c,d,…) → (a,b,c), (a,c,d), …`` keeping their winding: (F,3) int64.

    Apply the same function to vertex and UV polygons so that triangles correspond one to one.
    """
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3)
