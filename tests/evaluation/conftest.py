"""Synthetic geometry for the evaluation tests: head-like closed surfaces, icospheres, similarities."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation

# (x, y) of the 7 NoW landmarks on the synthetic head (mm): outer/inner eye corners, nose bottom, mouth.
LANDMARK_XY = np.array([[-45, 32], [-15, 32], [15, 32], [45, 32], [0, -22], [-25, -48], [25, -48]], float)


def _fibonacci_sphere(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    r = np.sqrt(1 - z * z)
    phi = np.pi * (1 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def head_mesh(n: int, size: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A closed head-like surface (mm): ellipsoid (75, 95, 90) * size with a nose bump; no symmetry but
    the x mirror. Returns vertices (n,3), faces (F,3), and the 7 NoW landmarks (7,3) (mesh vertices)."""
    dirs = _fibonacci_sphere(n)
    faces = ConvexHull(dirs).simplices
    x, y, z = dirs.T
    rad = size / np.sqrt((x / 75) ** 2 + (y / 95) ** 2 + (z / 90) ** 2)
    p = dirs * rad[:, None]
    rad = rad + 22 * size * np.exp(-(p[:, 0] ** 2 / 162 + (p[:, 1] + 5 * size) ** 2 / 512)) * np.clip(
        z, 0, None
    )
    verts = dirs * rad[:, None]
    front = np.flatnonzero(z > 0)
    picks = [front[np.argmin(np.linalg.norm(verts[front, :2] - xy * size, axis=1))] for xy in LANDMARK_XY]
    return verts, faces, verts[picks]


def icosphere(subdivisions: int, radius: float = 1.0, centre=(0.0, 0.0, 0.0)):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices) + np.asarray(centre, float), np.asarray(mesh.faces)


def random_similarity(seed: int, scale: float | None = None):
    """(scale, R (3,3) proper rotation, t (3,)) and the map x -> s R x + t."""
    rng = np.random.default_rng(seed)
    s = float(rng.uniform(0.001, 5.0)) if scale is None else scale
    rot = Rotation.random(random_state=seed).as_matrix()
    t = rng.normal(size=3) * 100

    def apply(x: np.ndarray) -> np.ndarray:
        return s * x @ rot.T + t

    return s, rot, t, apply


@pytest.fixture
def synth():
    """Namespace of the helpers above."""

    class _Synth:
        head = staticmethod(head_mesh)
        sphere = staticmethod(icosphere)
        similarity = staticmethod(random_similarity)

    return _Synth
