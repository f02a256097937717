"""The NoW benchmark's scan-to-mesh error, re-implemented with numpy and scipy (no psbody-mesh, no chumpy).

The protocol of the official ``now_evaluation`` code (``scan2mesh_computations.compute_errors``):

1. similarity Procrustes of the predicted 7 landmarks onto the scan's 7 landmarks (with scaling; the
   orthogonal factor is the unconstrained SVD solution, as the official ``reflection='best'``);
2. crop the scan to a sphere around the face (:func:`crop_sphere`);
3. refine scale, rotation and translation of the aligned prediction, minimising the sum of squared
   unsigned distances from the cropped scan vertices to the predicted surface (scale kept positive);
4. the error is the unsigned distance from every cropped scan vertex to the aligned predicted surface.

Landmark order (NoW's ``scans_lmks_onlypp``): right eye outer corner, right eye inner corner, left eye
inner corner, left eye outer corner, nose bottom (subnasale), right mouth corner, left mouth corner —
iBUG-68 indices :data:`NOW_LANDMARKS_IBUG68`. Distances are in the scan's units (NoW scans: mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from vitdeca.evaluation.meshdist import ClosestPoints, CoherentQuery, TriangleIndex

NOW_LANDMARKS_IBUG68: tuple[int, ...] = (36, 39, 42, 45, 33, 48, 54)
"""The NoW landmarks as indices into the 68-point iBUG scheme (0-based)."""


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation. rotation (3,3) is orthogonal (det -1 = reflection)."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    @staticmethod
    def identity() -> Similarity:
        return Similarity(1.0, np.eye(3), np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N,3) -> (N,3)."""
        return self.scale * points @ self.rotation.T + self.translation

    def inverse_apply(self, points: np.ndarray) -> np.ndarray:
        """The inverse map: (N,3) -> (N,3)."""
        return (points - self.translation) @ self.rotation / self.scale

    def then(self, other: Similarity) -> Similarity:
        """The map x -> other(self(x))."""
        return Similarity(
            other.scale * self.scale,
            other.rotation @ self.rotation,
            other.apply(self.translation[None])[0],
        )


@dataclass(frozen=True)
class RefineOptions:
    """Settings of step 3 (Levenberg-Marquardt on exact point-to-surface distances).

    coarse_points: the refinement first converges on an evenly strided subset of about this many scan
    vertices, then on all of them (0: all from the start). tolerance: stop when an accepted step lowers
    the summed squared distance by less than this fraction. margin: candidate-reuse distance of the
    closest-point cache, as a fraction of the median predicted-triangle size (speed only, never accuracy).
    threads: KD-tree query threads (-1: all cores; 1 inside worker processes).
    """

    coarse_points: int = 4000
    max_iterations: int = 50
    tolerance: float = 1e-7
    margin: float = 0.1
    threads: int = -1


@dataclass(frozen=True)
class NowAlignment:
    """Everything :func:`align_and_measure` computes.

    distances: (K,) unsigned distances of the cropped scan vertices, in scan units;
    kept: (K,) indices of those vertices in the scan; procrustes: the landmark similarity (step 1);
    transform: the final similarity, prediction -> scan (steps 1 and 3 composed);
    aligned_vertices: (V,3) the prediction under ``transform``.
    """

    distances: np.ndarray
    kept: np.ndarray
    procrustes: Similarity
    transform: Similarity
    aligned_vertices: np.ndarray = field(repr=False)


def procrustes(target: np.ndarray, source: np.ndarray, reflection: str | bool = "best") -> Similarity:
    """Least-squares similarity mapping source (N,3) onto target (N,3), as MATLAB's ``procrustes``.

    reflection: "best" leaves the orthogonal factor free (a reflection when it fits better, as the
    official NoW code); True forces a reflection; False forbids one.
    """
    target, source = _as_array(target, "target"), _as_array(source, "source")
    if target.shape != source.shape:
        raise ValueError(f"landmark shapes differ: {target.shape} vs {source.shape}")
    mu_x, mu_y = target.mean(0), source.mean(0)
    x0, y0 = target - mu_x, source - mu_y
    norm_x, norm_y = np.linalg.norm(x0), np.linalg.norm(y0)
    if not (norm_x > 0 and norm_y > 0):
        raise ValueError("landmarks are all at one point; no similarity can be estimated")
    u, s, vt = np.linalg.svd((x0 / norm_x).T @ (y0 / norm_y))
    v = vt.T
    if reflection != "best" and bool(np.linalg.det(v @ u.T) < 0) != bool(reflection):
        v[:, -1] *= -1
        s[-1] *= -1
    rotation = u @ v.T  # column convention: target ~ scale * rotation @ source + translation
    scale = float(s.sum() * norm_x / norm_y)
    return Similarity(scale, rotation, mu_x - scale * rotation @ mu_y)


def crop_sphere(landmarks7: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (3,) and radius of NoW's face crop from the scan's 7 landmarks (7,3).

    centre = nose_bottom + 0.3 * (inner-eye midpoint - nose_bottom);
    radius = 1.4 * (outer-eye distance + |inner-eye midpoint - nose_bottom|) / 2.
    """
    lmk = _as_array(landmarks7, "scan landmarks")
    if lmk.shape != (7, 3):
        raise ValueError(f"scan landmarks must be (7,3), got {lmk.shape}")
    nose_bottom, bridge = lmk[4], (lmk[1] + lmk[2]) / 2
    centre = nose_bottom + 0.3 * (bridge - nose_bottom)
    radius = 1.4 * (np.linalg.norm(lmk[0] - lmk[3]) + np.linalg.norm(bridge - nose_bottom)) / 2
    return centre, float(radius)


def crop_scan(scan_vertices: np.ndarray, landmarks7: np.ndarray) -> np.ndarray:
    """Indices of the scan vertices (V,3) inside (or on) the crop sphere: (K,) int."""
    centre, radius = crop_sphere(landmarks7)
    return np.flatnonzero(
        np.linalg.norm(_as_array(scan_vertices, "scan vertices") - centre, axis=1) <= radius
    )


def scan_to_mesh_errors(
    scan_vertices: np.ndarray,
    scan_faces: np.ndarray | None,
    scan_landmarks7: np.ndarray,
    pred_vertices: np.ndarray,
    pred_faces: np.ndarray,
    pred_landmarks7: np.ndarray,
) -> np.ndarray:
    """The NoW error of one prediction: distances (K,) from the cropped scan vertices, in scan units.

    scan_vertices (V,3), scan_faces (F,3) or None (the error only uses vertices, as the official code),
    scan_landmarks7 (7,3), pred_vertices (P,3) in any units, pred_faces (Q,3), pred_landmarks7 (7,3).
    Raises ValueError for malformed inputs.
    """
    return align_and_measure(
        scan_vertices, scan_faces, scan_landmarks7, pred_vertices, pred_faces, pred_landmarks7
    ).distances


def align_and_measure(
    scan_vertices: np.ndarray,
    scan_faces: np.ndarray | None,
    scan_landmarks7: np.ndarray,
    pred_vertices: np.ndarray,
    pred_faces: np.ndarray,
    pred_landmarks7: np.ndarray,
    options: RefineOptions | None = None,
    refine: bool = True,
) -> NowAlignment:
    """Steps 1-4 of the protocol (see the module docstring); ``refine=False`` skips step 3."""
    scan_vertices = _as_array(scan_vertices, "scan vertices")
    _check_faces(scan_faces, len(scan_vertices), "scan")
    pred_vertices = _as_array(pred_vertices, "predicted vertices")
    pred_faces = _check_faces(pred_faces, len(pred_vertices), "predicted")
    pred_landmarks7 = _as_array(pred_landmarks7, "predicted landmarks")
    if pred_landmarks7.shape != (7, 3):
        raise ValueError(f"predicted landmarks must be (7,3), got {pred_landmarks7.shape}")
    kept = crop_scan(scan_vertices, scan_landmarks7)  # step 2 (only needs the scan)
    if kept.size == 0:
        raise ValueError("no scan vertex lies inside the crop sphere; check the scan landmarks")
    points = scan_vertices[kept]
    first = procrustes(scan_landmarks7, pred_landmarks7)  # step 1
    opts = options or RefineOptions()
    index = TriangleIndex(first.apply(pred_vertices), pred_faces, workers=opts.threads)
    if refine:  # step 3, then step 4 from its last evaluation
        second, distances = refine_similarity(points, index, opts)
    else:
        second, distances = Similarity.identity(), index.query(points).distances
    total = first.then(second)
    return NowAlignment(distances, kept, first, total, total.apply(pred_vertices))


def refine_similarity(
    points: np.ndarray, index: TriangleIndex, options: RefineOptions | None = None
) -> tuple[Similarity, np.ndarray]:
    """Similarity S (scale > 0) minimising sum_i dist(points_i, S(mesh))^2, starting from the identity.

    points (N,3); index: the mesh. Returns S and the distances (N,) at S.
    """
    opts = options or RefineOptions()
    margin = opts.margin * float(np.median(index.face_radius))
    sim = Similarity.identity()
    if opts.coarse_points and len(points) > 2 * opts.coarse_points:
        subset = points[:: int(np.ceil(len(points) / opts.coarse_points))]
        sim, _ = _levenberg_marquardt(subset, index, sim, CoherentQuery(index, margin), opts)
    return _levenberg_marquardt(points, index, sim, CoherentQuery(index, margin), opts)


def _measure(points, index, sim, query) -> tuple[np.ndarray, np.ndarray, ClosestPoints]:
    """Distances (N,) from points to sim(mesh), nearest points (N,3) in the points' frame, raw result."""
    res = query(sim.inverse_apply(points))
    return sim.scale * res.distances, sim.apply(res.points), res


def _jacobian(points, nearest, distances, res, index, sim, centre) -> np.ndarray:
    """d(distance_i)/d(log-scale, rotation vector, translation) of an update about ``centre``: (N,7)."""
    diff = nearest - points
    normal = index.normal[res.faces] @ sim.rotation.T
    on_surface = distances <= 1e-12 * max(1.0, float(np.abs(points).max()))
    direction = np.where(on_surface[:, None], normal, diff / np.where(on_surface, 1.0, distances)[:, None])
    arm = nearest - centre
    return np.concatenate(
        [np.einsum("ij,ij->i", direction, arm)[:, None], np.cross(arm, direction), direction], axis=1
    )


def _step(sim: Similarity, delta: np.ndarray, centre: np.ndarray) -> Similarity:
    """x -> centre + exp(delta[0]) * Exp(delta[1:4]) @ (sim(x) - centre) + delta[4:7]."""
    grow, turn = float(np.exp(delta[0])), Rotation.from_rotvec(delta[1:4]).as_matrix()
    update = Similarity(grow, turn, centre - grow * turn @ centre + delta[4:7])
    return sim.then(update)


def _levenberg_marquardt(points, index, sim, query, opts) -> tuple[Similarity, np.ndarray]:
    """Minimise the summed squared point-to-surface distances over the similarity; returns (S, dist)."""
    centre = points.mean(0)
    dist, nearest, res = _measure(points, index, sim, query)
    cost, damping = float(dist @ dist), 1e-4
    for _ in range(opts.max_iterations):
        if cost <= 0.0:
            break
        jac = _jacobian(points, nearest, dist, res, index, sim, centre)
        hess, grad = jac.T @ jac, jac.T @ dist
        diag = np.diag(hess) + 1e-12 * np.trace(hess)
        while damping < 1e12:
            delta = np.linalg.solve(hess + damping * np.diag(diag), -grad)
            trial = _step(sim, delta, centre)
            t_dist, t_nearest, t_res = _measure(points, index, trial, query)
            t_cost = float(t_dist @ t_dist)
            if t_cost < cost:
                break
            damping *= 8.0
        else:
            break  # no step lowers the cost: converged
        gain = cost - t_cost
        sim, dist, nearest, res, cost = trial, t_dist, t_nearest, t_res, t_cost
        damping = max(damping / 4.0, 1e-9)
        if gain <= opts.tolerance * (cost + gain):
            break
    return sim, dist


def _as_array(x: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise ValueError(f"{what} must be a non-empty (N,3) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return arr


def _check_faces(faces: np.ndarray | None, n_vertices: int, what: str) -> np.ndarray | None:
    if faces is None and what == "scan":
        return None
    arr = np.asarray(faces)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} faces must be a non-empty (F,3) integer array, got {arr.dtype} {arr.shape}")
    if arr.min() < 0 or arr.max() >= n_vertices:
        raise ValueError(f"{what} faces index vertices outside 0..{n_vertices - 1}")
    return arr.astype(np.int64)
