"""Exact unsigned distances from points to triangle meshes, with numpy and scipy only.

:class:`TriangleIndex` finds, for each query point, the nearest point of a triangle mesh exactly (no
approximation): KD-trees over sample points of the triangles propose candidate triangles, candidates are
measured exactly, and a lower bound proves that no other triangle can be nearer.

Bound. Triangle ``f`` is cut into ``n_f**2`` congruent sub-triangles (``n_f`` grows with its size) and
sampled at their centroids, so every point of ``f`` lies within ``rho_f`` of one of its samples, and a
sample of ``f`` at distance ``d_s`` from ``p`` proves ``dist(p, f) >= d_s - rho_f``. With ``u`` the exact
distance to the triangle of the nearest sample, only triangles with a sample closer than
``u + rho_max`` can be nearer than ``u``; all of those with ``d_s - rho_f < u`` are measured.

Margin. Candidates gathered with margin ``m`` (bound ``u + 2m``) stay sufficient for any point within
``m`` of where they were gathered (distances are 1-Lipschitz). :class:`CoherentQuery` uses this to answer
the repeated queries of an optimiser, whose points move a little per step, without new tree searches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

_CHUNK = 1 << 14  # (point, triangle) pairs measured at once: small arrays stay in cache
_MAX_SUBDIV = 32  # a sliver triangle gets at most 32*32 samples; its looser bound goes into rho_max
# Rows of the (22, F) per-triangle table: corner a, edges b-a, c-a, c-b, unit normal, Gram terms.
_A, _E1, _E2, _E3, _N = slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12), slice(12, 15)
_D11, _D12, _D22, _INVDET, _INV11, _INV22, _INV33 = 15, 16, 17, 18, 19, 20, 21


@dataclass(frozen=True)
class ClosestPoints:
    """Nearest points of a mesh to N query points.

    distances: (N,) unsigned Euclidean distances; faces: (N,) index of the nearest triangle;
    points: (N,3) the nearest points on the mesh.
    """

    distances: np.ndarray
    faces: np.ndarray
    points: np.ndarray


@dataclass(frozen=True)
class Candidates:
    """Candidate triangles per query point, flat and grouped by point.

    rows: (M,) point index, non-decreasing, every point present; faces: (M,) triangle index;
    starts: (N,) offset of each point's first pair.
    """

    rows: np.ndarray
    faces: np.ndarray
    starts: np.ndarray


def _safe_inverse(x: np.ndarray) -> np.ndarray:
    """1/x where x > 0, else 0."""
    return np.where(x > 0.0, 1.0, 0.0) / np.where(x > 0.0, x, 1.0)


def triangle_table(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Per-triangle constants for the distance kernels: (V,3), (F,3) -> (22, F) float64.

    Degenerate (zero-area) triangles get ``invdet = nan``: the kernels then measure only their edges.
    """
    tri = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    e1, e2, e3 = b - a, c - a, c - b
    normal = np.cross(e1, e2)
    d11, d12, d22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    det = d11 * d22 - d12 * d12
    invdet = np.where(det > 1e-12 * d11 * d22, 1.0, np.nan) / np.where(det > 0.0, det, 1.0)
    unit = normal * _safe_inverse(np.linalg.norm(normal, axis=1))[:, None]
    inv = [_safe_inverse(x) for x in (d11, d22, (e3 * e3).sum(1))]
    return np.ascontiguousarray(np.vstack([a.T, e1.T, e2.T, e3.T, unit.T, d11, d12, d22, invdet, *inv]))


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Column-wise dot products: (3,P), (3,P) -> (P,)."""
    return np.einsum("ij,ij->j", x, y)


def _barycentric(w: np.ndarray, tab: np.ndarray) -> tuple[np.ndarray, ...]:
    """For w = p - a (3,P): (r1, r2, beta, gamma, inside) with r1 = w.(b-a), r2 = w.(c-a) and
    (beta, gamma) the barycentric coordinates of p's projection onto the triangle's plane."""
    r1, r2 = _dot(w, tab[_E1]), _dot(w, tab[_E2])
    beta = (tab[_D22] * r1 - tab[_D12] * r2) * tab[_INVDET]
    gamma = (tab[_D11] * r2 - tab[_D12] * r1) * tab[_INVDET]
    return r1, r2, beta, gamma, (beta >= 0.0) & (gamma >= 0.0) & (beta + gamma <= 1.0)


def pair_sqdist(points: np.ndarray, tab: np.ndarray) -> np.ndarray:
    """Squared distance from points[:, i] to triangle tab[:, i]: (3,P), (22,P) -> (P,).

    1. Project onto the triangle's plane; if the barycentric coordinates are all non-negative, the
       distance is the distance to the plane.
    2. Otherwise the nearest point lies on the boundary: the nearest of the three clamped edge points,
       each from |w - t e|^2 = |w|^2 - t (2 w.e - t |e|^2) (exact up to rounding of order |w|^2 eps).
    """
    w = points - tab[_A]
    r1, r2, _, _, inside = _barycentric(w, tab)
    h, ww = _dot(w, tab[_N]), _dot(w, w)
    d11, d12, d22 = tab[_D11], tab[_D12], tab[_D22]
    t = np.clip(r1 * tab[_INV11], 0.0, 1.0)
    edge = ww - t * (2.0 * r1 - t * d11)  # edge a-b
    t = np.clip(r2 * tab[_INV22], 0.0, 1.0)
    np.minimum(edge, ww - t * (2.0 * r2 - t * d22), out=edge)  # edge a-c
    r3 = r2 - r1 - d12 + d11  # (p - b).(c - b)
    t = np.clip(r3 * tab[_INV33], 0.0, 1.0)
    np.minimum(edge, ww - 2.0 * r1 + d11 - t * (2.0 * r3 - t * (d11 - 2.0 * d12 + d22)), out=edge)  # b-c
    return np.maximum(np.where(inside, h * h, edge), 0.0)


def closest_on_triangles(points: np.ndarray, tab: np.ndarray) -> np.ndarray:
    """Nearest point on triangle tab[:, i] to points[:, i]: (3,P), (22,P) -> (3,P); same rule as above."""
    _, _, beta, gamma, inside = _barycentric(points - tab[_A], tab)
    best = np.where(inside, tab[_A] + beta * tab[_E1] + gamma * tab[_E2], 0.0)
    best_d2 = np.where(inside, -1.0, np.inf)
    starts = (tab[_A], tab[_A], tab[_A] + tab[_E1])
    edges = ((tab[_E1], tab[_INV11]), (tab[_E2], tab[_INV22]), (tab[_E3], tab[_INV33]))
    for start, (edge, inv) in zip(starts, edges, strict=True):
        t = np.clip(_dot(points - start, edge) * inv, 0.0, 1.0)
        q = start + t * edge
        d2 = _dot(points - q, points - q)
        better = d2 < best_d2
        best = np.where(better, q, best)
        best_d2 = np.where(better, d2, best_d2)
    return best


def _subdivision_centroids(n: int) -> np.ndarray:
    """Barycentric (u, v) of the centroids of the n*n sub-triangles of a triangle cut n times: (n*n, 2)."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    up, down = (i + j) <= n - 1, (i + j) <= n - 2
    uv = np.concatenate(
        [np.stack([i[up] + 1 / 3, j[up] + 1 / 3], 1), np.stack([i[down] + 2 / 3, j[down] + 2 / 3], 1)]
    )
    return uv / n


def _unique_pairs(rows: np.ndarray, faces: np.ndarray, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (row, face) pairs, sorted by row then face."""
    key = np.sort(rows * np.int64(n_faces) + faces)
    distinct = np.ones(len(key), dtype=bool)
    distinct[1:] = key[1:] != key[:-1]
    return np.divmod(key[distinct], np.int64(n_faces))


def _group_pairs(rows: np.ndarray, faces: np.ndarray, n_points: int, n_faces: int) -> Candidates:
    """Distinct (row, face) pairs sorted by row; every row in 0..n_points-1 must occur."""
    rows, faces = _unique_pairs(rows, faces, n_faces)
    return Candidates(rows, faces, np.searchsorted(rows, np.arange(n_points)))


class TriangleIndex:
    """Exact nearest-point queries against one triangle mesh: vertices (V,3), faces (F,3) int.

    ``resolution`` is the quantile of triangle sizes above which triangles are cut for sampling
    (smaller: more samples, tighter bounds, more work); ``workers`` the KD-tree query threads (-1: all).
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, resolution: float = 0.9, workers: int = -1):
        faces = np.asarray(faces, dtype=np.int64)
        if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
            raise ValueError(f"faces must be a non-empty (F,3) array, got shape {faces.shape}")
        self.table = triangle_table(vertices, faces)
        a, e1, e2 = self.table[_A].T, self.table[_E1].T, self.table[_E2].T
        corners = np.stack([-(e1 + e2) / 3, (2 * e1 - e2) / 3, (2 * e2 - e1) / 3], axis=1)
        radius = np.linalg.norm(corners, axis=2).max(axis=1)  # centroid to its farthest corner
        target = max(float(np.quantile(radius, resolution)), float(radius.max()) / _MAX_SUBDIV, 1e-300)
        subdiv = np.clip(np.ceil(radius / target), 1, _MAX_SUBDIV).astype(np.int64)
        samples, owners = [], []
        for n in np.unique(subdiv):
            ids = np.flatnonzero(subdiv == n)
            uv = _subdivision_centroids(int(n))
            pts = a[ids, None] + uv[None, :, :1] * e1[ids, None] + uv[None, :, 1:] * e2[ids, None]
            samples.append(pts.reshape(-1, 3))
            owners.append(np.repeat(ids, len(uv)))
        self.sample_face = np.concatenate(owners)
        self.centroid = a + (e1 + e2) / 3
        self.normal = np.ascontiguousarray(self.table[_N].T)
        self.face_radius = radius * (1 + 1e-9)
        # Inflated a little so that rounding never makes a bound overestimate.
        self.face_rho = (radius / subdiv) * (1 + 1e-9) + 1e-12 * max(float(radius.max()), 1.0)
        self.rho_max = float(self.face_rho.max())
        self.tree = cKDTree(np.concatenate(samples))
        self.workers = workers

    @property
    def n_faces(self) -> int:
        return self.table.shape[1]

    def query(self, points: np.ndarray) -> ClosestPoints:
        """Exact nearest points on the mesh for points (N,3)."""
        points = _as_points(points)
        return self.evaluate(points, self.candidates(points))

    def candidates(self, points: np.ndarray, margin: float = 0.0) -> Candidates:
        """Triangles that can be nearest to any point within ``margin`` of points (N,3)."""
        points = _as_points(points)
        n = len(points)
        if n == 0:
            return Candidates(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
        # 1. Upper bound: exact distance to the triangle of the nearest sample.
        _, nearest = self.tree.query(points, k=1, workers=self.workers)
        first = self.sample_face[nearest]
        bound = np.sqrt(self._sqdist(points.T, np.arange(n), first)) + 2.0 * margin
        # 2. Samples within bound + rho_max (searched in groups of similar radius), kept when their
        #    sphere bound is below the upper bound.
        radius = bound + self.rho_max
        group = np.floor(4.0 * np.log2(radius / radius.min())).astype(np.int64)  # radius ratio <= 1.19
        rows, faces = [np.arange(n)], [first]
        for g in np.unique(group):
            ids = np.flatnonzero(group == g)
            pairs = cKDTree(points[ids]).sparse_distance_matrix(
                self.tree, float(radius[ids].max()), output_type="ndarray"
            )
            row, face = ids[pairs["i"]], self.sample_face[pairs["j"]]
            keep = pairs["v"] - self.face_rho[face] <= bound[row]
            rows.append(row[keep])
            faces.append(face[keep])
        rows, faces = _unique_pairs(np.concatenate(rows), np.concatenate(faces), self.n_faces)
        # 3. The disk bound: triangle f lies in the disk of radius R_f around its centroid in its plane.
        keep = (self._disk_bound(points, rows, faces) <= bound[rows]) | (faces == first[rows])
        rows, faces = rows[keep], faces[keep]
        return Candidates(rows, faces, np.searchsorted(rows, np.arange(n)))

    def _disk_bound(self, points: np.ndarray, rows: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Lower bound of dist(points[rows[i]], triangle faces[i]) from the triangle's bounding disk."""
        out = np.empty(len(rows))
        for start in range(0, len(rows), _CHUNK):
            sl = slice(start, start + _CHUNK)
            rel = points[rows[sl]] - self.centroid[faces[sl]]
            h = np.einsum("ij,ij->i", rel, self.normal[faces[sl]])
            lateral = np.sqrt(np.maximum(np.einsum("ij,ij->i", rel, rel) - h * h, 0.0))
            out[sl] = np.hypot(h, np.maximum(lateral - self.face_radius[faces[sl]], 0.0))
        return out * (1 - 1e-9)

    def evaluate(self, points: np.ndarray, cand: Candidates) -> ClosestPoints:
        """Nearest points among the candidate triangles of each point (N,3)."""
        points = _as_points(points)
        if len(points) == 0:
            return ClosestPoints(np.zeros(0), np.zeros(0, np.int64), np.zeros((0, 3)))
        pts_t = np.ascontiguousarray(points.T)
        d2 = self._sqdist(pts_t, cand.rows, cand.faces)
        row_min = np.minimum.reduceat(d2, cand.starts)
        hit = np.flatnonzero(d2 == row_min[cand.rows])
        first_hit = np.ones(len(hit), dtype=bool)
        first_hit[1:] = cand.rows[hit[1:]] != cand.rows[hit[:-1]]
        best_face = cand.faces[hit[first_hit]]
        closest = np.empty_like(pts_t)
        for start in range(0, len(points), _CHUNK):
            sl = slice(start, start + _CHUNK)
            closest[:, sl] = closest_on_triangles(pts_t[:, sl], self.table[:, best_face[sl]])
        closest = closest.T
        return ClosestPoints(np.linalg.norm(closest - points, axis=1), best_face, closest)

    def _sqdist(self, pts_t: np.ndarray, rows: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Squared distances of the (point rows[i], triangle faces[i]) pairs, chunked: -> (P,)."""
        out = np.empty(len(rows))
        for start in range(0, len(rows), _CHUNK):
            sl = slice(start, start + _CHUNK)
            out[sl] = pair_sqdist(pts_t[:, rows[sl]], self.table[:, faces[sl]])
        return out


class CoherentQuery:
    """Exact nearest points for a fixed set of N points that move a little between calls.

    Candidates are gathered with ``margin`` and reused for every point that stays within ``margin`` of
    where its candidates were gathered; points that moved farther get new candidates.
    """

    def __init__(self, index: TriangleIndex, margin: float):
        self.index, self.margin = index, float(margin)
        self._anchor: np.ndarray | None = None
        self._cand: Candidates | None = None

    def __call__(self, points: np.ndarray) -> ClosestPoints:
        points = _as_points(points)
        if self._anchor is None or self._anchor.shape != points.shape:
            self._anchor, self._cand = points.copy(), self.index.candidates(points, self.margin)
        else:
            moved = np.flatnonzero(np.linalg.norm(points - self._anchor, axis=1) > self.margin)
            if moved.size:
                self._refresh(points, moved)
        return self.index.evaluate(points, self._cand)

    def _refresh(self, points: np.ndarray, moved: np.ndarray) -> None:
        new = self.index.candidates(points[moved], self.margin)
        old = self._cand
        stale = np.zeros(len(points), dtype=bool)
        stale[moved] = True
        keep = ~stale[old.rows]
        rows = np.concatenate([old.rows[keep], moved[new.rows]])
        faces = np.concatenate([old.faces[keep], new.faces])
        self._cand = _group_pairs(rows, faces, len(points), self.index.n_faces)
        self._anchor[moved] = points[moved]


def _as_points(points: np.ndarray) -> np.ndarray:
    points = np.ascontiguousarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N,3), got shape {points.shape}")
    return points


def point_mesh_distances(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unsigned distance from each point (N,3) to the triangle mesh (vertices (V,3), faces (F,3)): (N,)."""
    return TriangleIndex(vertices, faces).query(points).distances
