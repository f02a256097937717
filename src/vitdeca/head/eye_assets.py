"""ICT-FaceKit's eyeballs as an extra cache file next to the head model's (the head cache and its
checksum, which trained models record, are left unchanged).

Kept: the two sclera shells (README "Eyeball Details": sclera left [21451:22220], right
[23021:23790]), the outer surface of each eye with its cornea bulge. ICT's iris meshes lie inside them
(hidden by an opaque sclera) and are dropped; the iris is painted into the eyeball texture instead
(:func:`eye_texture`). Each identity mode's displacement of the kept vertices is stored, so the eyes
follow the head's shape.

Files (``<home>/head/ict/``): ``ict_eyeballs_v1.npz`` (arrays, see :func:`convert_eyeballs`) and
``ict_eyeballs_v1.json`` (its SHA-256 and the head cache's, written last). A head cache converted
before the eyeballs existed gets them on first use (:func:`install_eyeballs`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.head.ict_assets import (
    N_IDENTITY,
    N_VERTICES_ALL,
    CachePaths,
    _Source,
    read_manifest,
    read_neutral_obj,
)
from vitdeca.head.objparse import read_obj_vertices, triangulate
from vitdeca.storage import atomic_path, sha256_file

log = logging.getLogger(__name__)

EYE_CACHE_STEM = "ict_eyeballs_v1"
EYES = ("left", "right")  # the subject's own left (+x in model space) first
# Sclera shells: vertex and polygon index ranges [first, last + 1) per eye (README "Eyeball Details").
SCLERA_VERTICES = ((21451, 22221), (23021, 23791))
SCLERA_POLYGONS = ((21496, 22296), (23094, 23894))
IRIS_DEGREES = 29.0  # angular radius of the painted iris about the optical axis (11.7 mm on a 12 mm ball)
PUPIL_DEGREES = 11.0
_CORNEA_FRACTION = 0.1  # the vertices farthest from the centre (the cornea bulge) give the optical axis


def eye_cache_files(paths: CachePaths) -> tuple[Path, Path]:
    """(arrays, manifest) of the eyeball cache in the head cache's folder."""
    return paths.folder / f"{EYE_CACHE_STEM}.npz", paths.folder / f"{EYE_CACHE_STEM}.json"


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares sphere through (N,3) points: |p|² = 2 p·c + (r² - |c|²) is linear in c."""
    a = np.concatenate([2.0 * points, np.ones((len(points), 1))], axis=1)
    sol, *_ = np.linalg.lstsq(a, (points**2).sum(axis=1), rcond=None)
    centre = sol[:3]
    return centre, float(np.sqrt(sol[3] + centre @ centre))


def rest_frame(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Pivot (3,), rest orientation (3,3) (columns: the eye's x, y and optical z axes in model space)
    and ball radius of one eye's shell (N,3). The optical axis points from the centre to the cornea
    bulge; x is kept horizontal (perpendicular to model y)."""
    centre, radius = fit_sphere(points)
    offsets = points - centre
    distance = np.linalg.norm(offsets, axis=1)
    cornea = offsets[distance >= np.quantile(distance, 1.0 - _CORNEA_FRACTION)]
    z = cornea.mean(axis=0)
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 1.0, 0.0], z)
    x /= np.linalg.norm(x)
    rest = np.stack([x, np.cross(z, x), z], axis=1)
    # refit the ball without the cornea cap, which bulges beyond the sphere
    behind = offsets @ z < radius * np.cos(np.radians(2 * IRIS_DEGREES))
    centre, radius = fit_sphere(points[behind])
    return centre, rest, radius


def _read_eyes(src: _Source) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """All neutral vertices (N_VERTICES_ALL,3) and the eyeballs' topology (faces/uvs reindexed)."""
    label, neutral, uvs, polygons, uv_polygons = read_neutral_obj(src)
    faces, uv_faces, offset, uv_ids = [], [], 0, []
    for (v0, v1), (p0, p1) in zip(SCLERA_VERTICES, SCLERA_POLYGONS, strict=True):
        tri = triangulate(polygons[p0:p1]) - v0
        if len(polygons) < p1 or tri.min() < 0 or tri.max() >= v1 - v0:
            raise VitdecaError(f"{label}: unexpected eyeball layout (not the ICT-FaceKit topology)")
        faces.append(tri + offset)
        uv_faces.append(triangulate(uv_polygons[p0:p1]))
        uv_ids.append(np.unique(uv_faces[-1]))
        offset += v1 - v0
    used = np.unique(np.concatenate(uv_ids))
    remap = np.full(len(uvs), -1, np.int64)
    remap[used] = np.arange(len(used))
    topology = {
        "faces": np.concatenate(faces).astype(np.int32),
        "uv_faces": remap[np.concatenate(uv_faces)].astype(np.int32),
        "uv_coords": np.clip(uvs[used], 0.0, 1.0).astype(np.float32),
    }
    return neutral, topology


def convert_eyeballs(source: Path) -> dict[str, np.ndarray]:
    """Read the eyeballs of an ICT-FaceKit zip or folder. Keys: ``template`` (E,3) cm (left eye first);
    ``shapedirs`` (100,E*3) identity displacements; ``faces``/``uv_faces`` (F,3); ``uv_coords`` (T,2);
    ``eye_index`` (E,) 0 left / 1 right; ``pivot`` (2,3) centres; ``pivot_dirs`` (100,2,3) the mean
    displacement of each eye per identity mode; ``rest`` (2,3,3) orientations; ``radius`` (2,)."""
    src = _Source(source)
    try:
        neutral, topology = _read_eyes(src)
        ids = np.concatenate([np.arange(a, b) for a, b in SCLERA_VERTICES])
        shapedirs = np.empty((N_IDENTITY, len(ids) * 3), np.float32)
        for k in range(N_IDENTITY):
            name = f"identity{k:03d}.obj"
            verts = read_obj_vertices(src.read(name), src.label(name), N_VERTICES_ALL)
            shapedirs[k] = (verts[ids] - neutral[ids]).reshape(-1)
    finally:
        src.close()
    template = neutral[ids]
    eye_index = np.concatenate([np.full(b - a, e) for e, (a, b) in enumerate(SCLERA_VERTICES)])
    frames = [rest_frame(template[eye_index == e]) for e in range(len(EYES))]
    deltas = shapedirs.reshape(N_IDENTITY, -1, 3)
    return {
        "template": template.astype(np.float32),
        "shapedirs": shapedirs,
        **topology,
        "eye_index": eye_index.astype(np.int8),
        "pivot": np.stack([f[0] for f in frames]).astype(np.float32),
        "pivot_dirs": np.stack([deltas[:, eye_index == e].mean(axis=1) for e in range(len(EYES))], 1),
        "rest": np.stack([f[1] for f in frames]).astype(np.float32),
        "radius": np.array([f[2] for f in frames], np.float32),
    }


def install_eyeballs(paths: CachePaths, source: Path) -> None:
    """Convert the eyeballs of ``source`` into the cache beside the (installed) head cache."""
    head_sha = read_manifest(paths)["sha256"]
    arrays_path, manifest_path = eye_cache_files(paths)
    log.info("converting ICT-FaceKit's eyeballs from %s (once)", source)
    arrays = convert_eyeballs(source)
    with atomic_path(arrays_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        digest = sha256_file(tmp)
    manifest = {"sha256": digest, "head_sha256": head_sha, "source": str(source), "units": "cm"}
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")


def load_eye_cache(paths: CachePaths) -> dict[str, np.ndarray] | None:
    """The verified eyeball arrays, None when missing, stale (another head cache) or corrupt."""
    arrays_path, manifest_path = eye_cache_files(paths)
    try:
        manifest = json.loads(manifest_path.read_text())
        head_sha = json.loads(paths.manifest.read_text())["sha256"]
        if manifest["head_sha256"] != head_sha or sha256_file(arrays_path) != manifest["sha256"]:
            return None
        with np.load(arrays_path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, KeyError, TypeError):
        return None


IRIS_RGB = (0.33, 0.22, 0.13)


def eye_texture(
    faces: np.ndarray, uv_coords: np.ndarray, uv_faces: np.ndarray, directions: np.ndarray, size: int = 256
) -> np.ndarray:
    """(size,size,3) float32 albedo in the eyeballs' UV space: sclera, iris (a darker rim and radial
    fibres) and pupil, painted by each texel's angle from its eye's optical axis. ``directions`` (E,3):
    per vertex, the unit direction from its eye's centre in the eye's rest frame (z optical)."""
    import torch

    from vitdeca.render.rasterize import interpolate
    from vitdeca.render.uv import rasterize_uv

    fragments = rasterize_uv(torch.from_numpy(uv_coords), torch.from_numpy(uv_faces.astype(np.int64)), size)
    attr = torch.from_numpy(directions.astype(np.float32))[None]
    dirs = interpolate(fragments, torch.from_numpy(faces.astype(np.int64)), attr)[0].permute(1, 2, 0).numpy()
    covered = fragments.mask[0].numpy()
    norm = np.linalg.norm(dirs, axis=-1).clip(1e-6)
    angle = np.degrees(np.arccos(np.clip(dirs[..., 2] / norm, -1.0, 1.0)))
    around = np.arctan2(dirs[..., 1], dirs[..., 0])
    sclera = np.array([0.86, 0.83, 0.80], np.float32)
    fibres = 1.0 + 0.18 * np.sin(around * 37.0) * np.sin(around * 11.0 + 1.0)
    rim = np.clip((angle - 0.8 * IRIS_DEGREES) / (0.2 * IRIS_DEGREES), 0.0, 1.0)
    iris = np.asarray(IRIS_RGB, np.float32) * (fibres * (1.0 - 0.45 * rim))[..., None]
    out = np.where((angle < IRIS_DEGREES)[..., None], iris, sclera)
    out = np.where((angle < PUPIL_DEGREES)[..., None], np.float32(0.04), out)
    out[~covered] = sclera
    return out.astype(np.float32)
