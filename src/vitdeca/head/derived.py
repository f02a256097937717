"""Fallback buffers derived from a template mesh when a head model ships without them:
a cylindrical UV map and a landmark-based face-region mask (numpy, run once at load time)."""

from __future__ import annotations

import numpy as np


def cylindrical_uvs(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A UV map by cylindrical projection about the vertical (y) axis through the mesh's x/z centre.

    vertices (V,3), faces (F,3) → uv_coords (T,2) float32 in [0,1] (v up), uv_faces (F,3) int64.
    ``u`` grows with the angle ``atan2(x, z)`` (0.5 = facing +z, the seam is at the back, -z) and ``v``
    with height. Triangles crossing the seam get duplicated UVs shifted by one turn, then ``u`` is
    rescaled so that everything fits in [0,1] (a few percent narrower than a full turn). Like any
    cylindrical map it is singular where the axis leaves the mesh (the crown of a head): triangles
    there are stretched.
    """
    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    rel = vertices - centre
    u = 0.5 + np.arctan2(rel[:, 0], rel[:, 2]) / (2 * np.pi)
    height = max(float(np.ptp(vertices[:, 1])), 1e-12)
    v = (vertices[:, 1] - vertices[:, 1].min()) / height
    uv_faces = faces.astype(np.int64).copy()
    corner_u = u[faces]
    seam = (corner_u.max(1) - corner_u.min(1)) > 0.5
    low = seam[:, None] & (corner_u < 0.5)
    extra = uv_faces[low]  # vertex ids needing a copy one turn to the right
    uv_faces[low] = len(vertices) + np.arange(len(extra))
    u_all = np.concatenate([u, u[extra] + 1.0])
    v_all = np.concatenate([v, v[extra]])
    u_all /= max(1.0, float(u_all.max()))
    return np.stack([u_all, v_all], axis=1).astype(np.float32), uv_faces


def landmark_face_mask(vertices: np.ndarray, landmarks: np.ndarray, forehead: float = 0.3) -> np.ndarray:
    """Face-region vertex mask (V,) bool from the template's 68 iBUG landmarks (68,3).

    Keeps vertices inside the jaw contour's x range, from slightly below the chin (landmark 8) up to
    ``forehead`` × (brow-to-chin height) above the highest brow point, and in front (z) of the jaw
    contour's two ends (landmarks 0 and 16, next to the ears) — the front of the face, no ears, neck
    or scalp. Used when a head model has no face-region definition of its own.
    """
    jaw, brows = landmarks[0:17], landmarks[17:27]
    chin_y, brow_y = float(landmarks[8, 1]), float(brows[:, 1].max())
    height = brow_y - chin_y
    x_ok = (vertices[:, 0] >= jaw[:, 0].min()) & (vertices[:, 0] <= jaw[:, 0].max())
    y_ok = (vertices[:, 1] >= chin_y - 0.05 * height) & (vertices[:, 1] <= brow_y + forehead * height)
    z_ok = vertices[:, 2] >= 0.5 * (landmarks[0, 2] + landmarks[16, 2])
    return x_ok & y_ok & z_ok
