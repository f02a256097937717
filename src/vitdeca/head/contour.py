"""A yaw-dependent jaw contour for head models whose 68 landmarks are fixed vertices (ICT-FaceKit).

In a photo, the jaw line on the side turned away from the camera is the face's *silhouette*, not the
fixed jaw vertices (which slide behind the cheek). This module implements 3DDFA's "landmark marching"
(Zhu et al., CVPR 2016), the role FLAME's dynamic contour plays for FLAME:

1. **Paths** (once, from the template, :func:`contour_paths`): for each of the 16 side contour landmarks
   (iBUG 0-7 and 9-16; the chin, 8, stays fixed) a horizontal path on the mesh surface. It starts at the
   landmark's own vertex and runs inwards, at the landmark's height (the template's y), over the front
   of the face to the mid-sagittal plane: the intersection of the plane ``y = y_k`` with the triangles
   of the face region, keeping per ``step`` of x the front-most point (largest z). Each path point is a
   point on a mesh edge, ``(1 − t) v_a + t v_b``, so it follows every shape and expression.
2. **Marching** (per posed mesh, :func:`march_contour`): the landmark is the path point furthest out
   along the head's own lateral axis as seen in the image, ``score = <p_xy, side · (R e_x)_xy>``
   (orthographic view along z, as DECA's weak-perspective camera), refined between path points with a
   parabola through the best score and its neighbours. For a path that is convex towards the side, that
   point is where the surface turns away from the viewer: the silhouette.

On the side that faces the camera (and at zero yaw) the inner path points are never further out than
the landmark's own vertex, so the fixed vertex is kept exactly; as the side turns away, the point slides
forwards along the cheek, and at a full profile it reaches the profile line. Pitch and roll need no
special case: roll turns the lateral axis with the face, pitch does not move x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

CONTOUR_LANDMARKS: tuple[int, ...] = (*range(0, 8), *range(9, 17))
"""iBUG-68 indices of the side contour landmarks that march (the chin, 8, is fixed)."""
_TILT = 0.01  # forward tilt of the marching direction (decides only within ~0.6° of an exact profile)


@dataclass(frozen=True)
class ContourPaths:
    """Paths of :data:`CONTOUR_LANDMARKS` as points on mesh edges, padded to a common length P by
    repeating each path's last point.

    a, b (C,P) long vertex indices; t (C,P) float weights: point = (1 − t) v_a + t v_b. side (C,) ±1:
    the landmark's side of the face (+1 = model +x, the subject's left). length (C,) true path lengths.
    """

    a: np.ndarray
    b: np.ndarray
    t: np.ndarray
    side: np.ndarray
    length: np.ndarray


def _plane_crossings(vertices: np.ndarray, edges: np.ndarray, height: float) -> tuple[np.ndarray, ...]:
    """Points where ``edges`` (E,2) cross the plane y = height: (a, b, t, xyz (N,3))."""
    ya, yb = vertices[edges[:, 0], 1] - height, vertices[edges[:, 1], 1] - height
    crossing = (ya * yb < 0) | ((ya == 0) & (yb != 0))
    a, b = edges[crossing, 0], edges[crossing, 1]
    t = ya[crossing] / (ya[crossing] - yb[crossing])
    xyz = vertices[a] * (1 - t)[:, None] + vertices[b] * t[:, None]
    return a, b, t, xyz


def _one_path(vertices: np.ndarray, edges: np.ndarray, vertex: int, step: float) -> tuple[list, ...]:
    """(a, b, t) lists of one landmark's path: its vertex, then the front envelope inwards to x = 0."""
    x0, y0, _ = vertices[vertex]
    side = 1.0 if x0 >= 0 else -1.0
    a, b, t, xyz = _plane_crossings(vertices, edges, y0)
    lateral = side * xyz[:, 0]
    inside = (lateral >= 0) & (lateral < side * x0 - 0.5 * step)
    a, b, t, xyz, lateral = a[inside], b[inside], t[inside], xyz[inside], lateral[inside]
    bins = np.floor(lateral / step).astype(np.int64)
    out_a, out_b, out_t = [vertex], [vertex], [0.0]
    for k in sorted(set(bins.tolist()), reverse=True):  # from the landmark inwards
        members = np.nonzero(bins == k)[0]
        best = members[np.argmax(xyz[members, 2])]  # the front-most point of the bin
        out_a.append(int(a[best]))
        out_b.append(int(b[best]))
        out_t.append(float(t[best]))
    return out_a, out_b, out_t


def contour_paths(
    vertices: np.ndarray,
    faces: np.ndarray,
    landmark_vertices: np.ndarray,
    region: np.ndarray,
    step: float,
) -> ContourPaths:
    """Build the marching paths from the template (see the module docstring).

    vertices (V,3) template; faces (F,3); landmark_vertices (68,) vertex index of each landmark;
    region (V,) bool: the vertices the paths may cross (the face surface: no ears, sockets or back of
    the head); step: the x spacing of path points, in model units.
    """
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces)[np.asarray(region)[faces].all(axis=1)]
    edges = np.unique(np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), axis=0)
    paths = [_one_path(vertices, edges, int(landmark_vertices[k]), step) for k in CONTOUR_LANDMARKS]
    width = max(len(p[0]) for p in paths)

    def padded(column: int, dtype: type) -> np.ndarray:
        return np.array([p[column] + [p[column][-1]] * (width - len(p[column])) for p in paths], dtype)

    side = np.sign(vertices[np.asarray(landmark_vertices)[list(CONTOUR_LANDMARKS)], 0])
    length = np.array([len(p[0]) for p in paths])
    return ContourPaths(padded(0, np.int64), padded(1, np.int64), padded(2, np.float64), side, length)


def march_contour(points: Tensor, side: Tensor, rotation: Tensor) -> Tensor:
    """The silhouette point of each path: points (B,C,P,3) posed path points, side (C,) ±1, rotation
    (B,3,3) the head's global rotation → (B,C,3) contour landmarks (model units, posed).

    The chosen point is differentiable in the vertex positions; the choice and the parabolic refinement
    weight are not (as FLAME's table lookup).
    """
    side = side.to(points.dtype)[None, :, None]  # (1,C,1)
    # the model's x axis seen in the image, tilted a little towards the face's forward axis on the side
    # turning away (so that an exact profile, where the x axis points at the viewer, is well defined)
    away = rotation[:, None, 2:3, 0] * side  # (B,C,1) > 0: this side's outward axis faces the viewer
    direction = side * rotation[:, None, :2, 0] - _TILT * away * rotation[:, None, :2, 2]  # (B,C,2)
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    with torch.no_grad():
        score = (points[..., :2] * direction[:, :, None, :]).sum(-1)  # (B,C,P)
        best = score.argmax(dim=-1, keepdim=True)  # (B,C,1): first maximum
        last = points.shape[2] - 1
        prev, nxt = (best - 1).clamp(min=0), (best + 1).clamp(max=last)
        s_prev, s_best, s_next = (score.gather(-1, i) for i in (prev, best, nxt))
        curvature = s_prev - 2 * s_best + s_next
        safe = torch.where(curvature.abs() > 1e-12, curvature, torch.ones_like(curvature))
        offset = torch.where(curvature.abs() > 1e-12, 0.5 * (s_prev - s_next) / safe, 0 * curvature)
        offset = offset.clamp(-0.5, 0.5)  # in path steps: > 0 towards the next point
        neighbour = torch.where(offset > 0, nxt, prev)

    def pick(index: Tensor) -> Tensor:
        return points.gather(2, index[..., None].expand(-1, -1, 1, 3)).squeeze(2)

    here = pick(best)
    return here + offset.abs() * (pick(neighbour) - here)
