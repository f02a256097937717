"""Files users keep: mesh export (OBJ with UVs + MTL + texture PNG, PLY, GLB).

Every writer has one contract: ``save_x(path, vertices, faces, *, options...) -> list[Path]``, the
files it wrote (``path`` first). All writes are atomic (a crash never leaves a half-written file under
the final name) and accept numpy arrays or torch tensors. Conventions: vertices (V,3) float in model
units, faces (F,3) 0-based with counter-clockwise (outward) winding, uv_coords (T,2) in [0,1] with v
up, uv_faces (F,3) indices into uv_coords; a texture is (H,W,3) RGB, uint8 or float in [0,1], whose
first row is v = 1 (the usual OBJ/PNG convention). An OBJ may hold further objects after the main mesh
(:class:`ObjPart`, e.g. the eyeballs): each an ``o`` record with its own vertices, UVs and material,
appended so that the main mesh's vertex and UV indices are those it would have alone.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.media import float_to_uint8
from vitdeca.storage import atomic_path


def _np(array: Any, dtype: Any, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    """``array`` (numpy or torch) as a numpy array of ``dtype`` with shape (N, *shape_tail)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    out = np.asarray(array, dtype=dtype)
    if out.ndim != 1 + len(shape_tail) or out.shape[1:] != shape_tail:
        raise ValueError(f"{name} must have shape (N,{','.join(map(str, shape_tail))}), got {out.shape}")
    return out


def texture_uint8(texture: Any) -> np.ndarray:
    """A texture (H,W,3) uint8 or float in [0,1] (numpy or torch) → (H,W,3) uint8."""
    tex = float_to_uint8(texture, np.float64)
    if tex.ndim != 3 or tex.shape[2] != 3:
        raise ValueError(f"texture must be (H,W,3), got {tex.shape}")
    return tex


def _write_bytes(path: Path, data: bytes) -> None:
    """``data`` into ``path`` atomically; a failure is the user's (a full disk, a read-only folder)."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as exc:
        raise VitdecaError(f"{path}: cannot write ({exc.strerror})") from exc


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _save_texture_png(path: Path, image: Any) -> Path:
    """Write an RGB texture (H,W,3) uint8 or float in [0,1] as PNG, atomically."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(texture_uint8(image), mode="RGB").save(buffer, format="PNG")
    _write_bytes(path, buffer.getvalue())
    return path


def _rows(tag: str, values: np.ndarray) -> str:
    """One OBJ record per row, e.g. ``v x y z`` (one ``%`` call on the whole array: fast)."""
    line = f"{tag} {' '.join(['%.8g'] * values.shape[1])}\n"
    return (line * len(values)) % tuple(values.ravel().tolist())


def _face_rows(faces: np.ndarray, uv_faces: np.ndarray | None, with_normals: bool) -> str:
    """OBJ ``f`` records (1-based): ``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` (normals indexed like v)."""
    columns = [faces + 1]
    if uv_faces is not None:
        columns.append(uv_faces + 1)
    if with_normals:
        columns.append(faces + 1)
    corner = {1: "%d", 2: "%d/%d", 3: "%d/%d/%d"}[len(columns)]
    if uv_faces is None and with_normals:
        corner = "%d//%d"
    values = np.stack(columns, axis=2)  # (F,3 corners,k)
    return (f"f {corner} {corner} {corner}\n" * len(faces)) % tuple(values.ravel().tolist())


def _mesh_arrays(vertices: Any, faces: Any, uv_coords: Any = None, uv_faces: Any = None):
    """Checked numpy arrays (vertices, faces, uv_coords or None, uv_faces or None): faces index inside
    the vertices; uv_faces default to the faces when there is one UV per vertex, and must match the faces
    and index inside uv_coords."""
    v = _np(vertices, np.float64, (3,), "vertices")
    f = _np(faces, np.int64, (3,), "faces")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError("faces index outside the vertex array")
    if uv_coords is None:
        if uv_faces is not None:
            raise ValueError("uv_faces need uv_coords")
        return v, f, None, None
    uv = _np(uv_coords, np.float64, (2,), "uv_coords")
    if uv_faces is None and len(uv) != len(v):
        raise ValueError("uv_faces are needed unless there is one UV per vertex")
    uvf = f if uv_faces is None else _np(uv_faces, np.int64, (3,), "uv_faces")
    if uvf.shape != f.shape or (uvf.size and (uvf.min() < 0 or uvf.max() >= len(uv))):
        raise ValueError("uv_faces must match faces and index inside uv_coords")
    return v, f, uv, uvf


@dataclass(frozen=True)
class ObjPart:
    """A further object of an OBJ (:func:`save_obj`'s ``parts``): ``name`` its ``o`` record, vertices
    (V,3) and faces (F,3) indexing its own vertices, optional uv_coords (T,2) with uv_faces (F,3), and
    ``texture_name`` (the PNG beside the OBJ, its material's ``map_Kd``) with ``texture`` (H,W,3) to
    write it (None: another part writes it, or it exists). Parts with the same texture_name share a
    material named after the PNG's stem."""

    name: str
    vertices: Any
    faces: Any
    uv_coords: Any = None
    uv_faces: Any = None
    texture: Any = None
    texture_name: str | None = None


def _material(obj: Path, materials: dict[str, tuple[str, Any]], written: list[Path]) -> None:
    """Write ``<stem>.mtl`` with one material per entry of ``materials`` {name: (texture_name, texture
    or None)} (and each texture PNG given), appending the files to ``written``."""
    records, pngs = [], []
    for name, (texture_name, texture) in materials.items():
        records.append(f"newmtl {name}\nKa 1 1 1\nKd 1 1 1\nKs 0 0 0\nillum 1\nmap_Kd {texture_name}\n")
        if texture is not None:
            pngs.append(_save_texture_png(obj.with_name(texture_name), texture))
    mtl = obj.with_suffix(".mtl")
    _write_text(mtl, "\n".join(records))
    written += [mtl, *pngs]


def _part_materials(parts: tuple[ObjPart, ...]) -> dict[str, tuple[str, Any]]:
    """{material name: (texture_name, the first texture given for it)} of the textured parts."""
    out: dict[str, tuple[str, Any]] = {}
    for part in parts:
        name = None if part.texture_name is None else Path(part.texture_name).stem
        if name is not None and out.get(name, (None, None))[1] is None:
            out[name] = (part.texture_name, part.texture)
    return out


def _part_rows(parts: tuple[ObjPart, ...], n_vertices: int, n_uvs: int) -> str:
    """The OBJ records of ``parts``, whose indices continue after ``n_vertices`` and ``n_uvs``."""
    body = []
    for part in parts:
        v, f, uv, uvf = _mesh_arrays(part.vertices, part.faces, part.uv_coords, part.uv_faces)
        if part.texture_name is not None and uv is None:
            raise ValueError(f"part {part.name!r}: a texture needs UVs")
        body += [f"o {part.name}\n", _rows("v", v)]
        if uv is not None:
            body.append(_rows("vt", uv))
        if part.texture_name is not None:
            body.append(f"usemtl {Path(part.texture_name).stem}\n")
        body.append(_face_rows(f + n_vertices, None if uv is None else uvf + n_uvs, False))
        n_vertices, n_uvs = n_vertices + len(v), n_uvs + (0 if uv is None else len(uv))
    return "".join(body)


def save_obj(
    path: str | os.PathLike,
    vertices: Any,
    faces: Any,
    *,
    uv_coords: Any = None,
    uv_faces: Any = None,
    texture: Any = None,
    texture_name: str | None = None,
    normals: Any = None,
    name: str = "mesh",
    parts: tuple[ObjPart, ...] = (),
) -> list[Path]:
    """Write a triangle mesh as Wavefront OBJ; with a texture also ``<stem>.mtl`` and the texture PNG.

    vertices (V,3), faces (F,3), optional uv_coords (T,2) with uv_faces (F,3) (uv_faces may be omitted
    when there is one UV per vertex, T == V), texture (H,W,3), normals (V,3) per vertex.
    ``texture_name``: the PNG's file name beside the OBJ (default ``<stem>.png``); with a name but no
    ``texture`` the material refers to that file without writing it (several meshes sharing one texture).
    A texture needs UVs. ``parts``: further objects after this one (:class:`ObjPart`); with parts, this
    mesh is the object ``name`` (without, the file has no ``o`` record). Returns the files written, the
    OBJ first.
    """
    path = Path(path)
    if texture is not None and texture_name is None:
        texture_name = path.with_suffix(".png").name
    v, f, uv, uvf = _mesh_arrays(vertices, faces, uv_coords, uv_faces)
    if texture_name is not None and uv is None:
        raise ValueError("a texture needs UVs")
    n = _np(normals, np.float64, (3,), "normals") if normals is not None else None
    if n is not None and len(n) != len(v):
        raise ValueError("normals must be per vertex (V,3)")
    header, written = "# written by vitdeca\n", [path]
    materials = {} if texture_name is None else {"material0": (texture_name, texture)}
    materials.update(_part_materials(parts))
    if materials:
        _material(path, materials, written)
        header += f"mtllib {path.with_suffix('.mtl').name}\n"
    body = [header + (f"o {name}\n" if parts else "")]
    body.append("usemtl material0\n" if texture_name is not None else "")
    body.append(_rows("v", v))
    if uv is not None:
        body.append(_rows("vt", uv))
    if n is not None:
        body.append(_rows("vn", n))
    body.append(_face_rows(f, uvf, n is not None))
    body.append(_part_rows(parts, len(v), 0 if uv is None else len(uv)))
    _write_text(path, "".join(body))
    return written


def _trimesh(vertices: Any, faces: Any, **kw: Any):
    import trimesh

    v, f, _, _ = _mesh_arrays(vertices, faces)
    return trimesh.Trimesh(v, f, process=False, **kw)


def _export(mesh: Any, path: Path, file_type: str) -> list[Path]:
    data = mesh.export(file_type=file_type)
    _write_bytes(path, data if isinstance(data, bytes) else data.encode())
    return [path]


def save_ply(path: str | os.PathLike, vertices: Any, faces: Any, *, vertex_colors: Any = None) -> list[Path]:
    """Write a binary PLY; vertex_colors (V,3) uint8 or float in [0,1] optional. Returns ``[path]``."""
    colors = None if vertex_colors is None else float_to_uint8(vertex_colors, np.float64)
    if colors is not None and (colors.ndim != 2 or colors.shape[1] != 3):
        raise ValueError(f"vertex_colors must be (V,3), got {colors.shape}")
    return _export(_trimesh(vertices, faces, vertex_colors=colors), Path(path), "ply")


def save_glb(
    path: str | os.PathLike,
    vertices: Any,
    faces: Any,
    *,
    uv_coords: Any = None,
    uv_faces: Any = None,
    texture: Any = None,
) -> list[Path]:
    """Write a binary glTF (GLB). With UVs (uv_faces as in :func:`save_obj`), vertices are split where UV
    seams need it (glTF stores one UV per vertex); with a texture it becomes the base-colour map.
    Returns ``[path]`` (the texture is inside the file)."""
    if uv_coords is None:
        return _export(_trimesh(vertices, faces), Path(path), "glb")
    import trimesh
    from PIL import Image

    v, f, uv, uvf = _mesh_arrays(vertices, faces, uv_coords, uv_faces)
    pairs, corner_ids = np.unique(np.stack([f.reshape(-1), uvf.reshape(-1)], 1), axis=0, return_inverse=True)
    image = Image.fromarray(texture_uint8(texture)) if texture is not None else None
    visual = trimesh.visual.TextureVisuals(uv=uv[pairs[:, 1]], image=image)
    mesh = trimesh.Trimesh(v[pairs[:, 0]], corner_ids.reshape(-1, 3), visual=visual, process=False)
    return _export(mesh, Path(path), "glb")
