"""Exact point-to-mesh distances against an independent brute force (every point x every triangle)."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeca.evaluation.meshdist import CoherentQuery, TriangleIndex, point_mesh_distances

REGIONS = ("A", "B", "C", "AB", "AC", "BC", "face")


def ericson_closest(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray):
    """Closest points of one point p (3,) on triangles (T,3) by Voronoi-region tests (Ericson, Real-Time
    Collision Detection 5.1.5): returns (T,3) points and (T,) region names. Non-degenerate triangles."""
    dot = lambda x, y: np.einsum("ij,ij->i", x, y)  # noqa: E731
    ab, ac, ap, bp, cp = b - a, c - a, p - a, p - b, p - c
    d1, d2, d3, d4, d5, d6 = dot(ab, ap), dot(ac, ap), dot(ab, bp), dot(ac, bp), dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    out = np.full_like(a, np.nan)
    region = np.full(len(a), "", dtype=object)
    with np.errstate(divide="ignore", invalid="ignore"):
        cases = [
            ("A", (d1 <= 0) & (d2 <= 0), a),
            ("B", (d3 >= 0) & (d4 <= d3), b),
            ("AB", (vc <= 0) & (d1 >= 0) & (d3 <= 0), a + (d1 / (d1 - d3))[:, None] * ab),
            ("C", (d6 >= 0) & (d5 <= d6), c),
            ("AC", (vb <= 0) & (d2 >= 0) & (d6 <= 0), a + (d2 / (d2 - d6))[:, None] * ac),
            (
                "BC",
                (va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0),
                b + ((d4 - d3) / ((d4 - d3) + (d5 - d6)))[:, None] * (c - b),
            ),
            (
                "face",
                np.ones(len(a), bool),
                a + (vb / (va + vb + vc))[:, None] * ab + (vc / (va + vb + vc))[:, None] * ac,
            ),
        ]
    for name, mask, point in cases:
        take = mask & (region == "")
        out[take] = point[take]
        region[take] = name
    return out, region


def brute_force(points, vertices, faces):
    """Distances (N,) and regions (N,) of the nearest triangle, trying every triangle for every point."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    dist, regions = np.empty(len(points)), []
    for i, p in enumerate(points):
        q, region = ericson_closest(p, a, b, c)
        d = np.linalg.norm(q - p, axis=1)
        dist[i] = d.min()
        regions.append(region[np.argmin(d)])
    return dist, np.array(regions)


def random_faces(rng, n_vertices: int, n_faces: int) -> np.ndarray:
    """Random triangles with three distinct corners."""
    faces = np.stack([rng.choice(n_vertices, 3, replace=False) for _ in range(n_faces)])
    return faces


def test_single_triangle_hand_computed():
    verts = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    faces = np.array([[0, 1, 2]])
    points = np.array(
        [
            [0.2, 0.2, 0.5],  # above the interior: plane distance
            [-1, -1, 0],  # vertex a
            [2, -1, 1],  # vertex b
            [0.5, -1, 0],  # edge ab
            [1, 1, 0],  # edge bc
            [-0.5, 0.5, -2],  # edge ac, below
        ]
    )
    expected = [0.5, np.sqrt(2), np.sqrt(3), 1.0, np.sqrt(0.5), np.sqrt(0.25 + 4)]
    result = TriangleIndex(verts, faces).query(points)
    np.testing.assert_allclose(result.distances, expected, rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.points[4], [0.5, 0.5, 0.0], atol=1e-12)
    assert (result.faces == 0).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_soup_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    verts = rng.normal(size=(80, 3)) * rng.uniform(0.2, 3.0, size=(80, 1))  # triangles of many sizes
    faces = random_faces(rng, 80, 200)
    near = verts[rng.integers(0, 80, 300)] + rng.normal(size=(300, 3)) * 0.05
    far = rng.normal(size=(100, 3)) * 20  # far points take the wide searches
    points = np.concatenate([near, rng.normal(size=(300, 3)) * 2, far])
    expected, regions = brute_force(points, verts, faces)
    result = TriangleIndex(verts, faces).query(points)
    np.testing.assert_allclose(result.distances, expected, rtol=1e-9, atol=1e-9)
    # the returned points lie on the returned triangles at the returned distance
    np.testing.assert_allclose(np.linalg.norm(result.points - points, axis=1), result.distances, atol=1e-12)
    assert set(regions) == set(REGIONS), "the brute force must exercise every Voronoi region"


def test_points_in_every_voronoi_region_of_a_mesh(synth):
    verts, faces = synth.sphere(2, radius=10.0)
    rng = np.random.default_rng(7)
    centroids = verts[faces].mean(1)
    edges_mid = (verts[faces[:, 0]] + verts[faces[:, 1]]) / 2
    points = np.concatenate(
        [
            centroids * 1.05,  # face interiors (outside)
            centroids * 0.7,  # face interiors (inside)
            edges_mid * 1.2,  # edges
            verts * 1.3,  # vertices
            verts * rng.uniform(0.0, 3.0, size=(len(verts), 1)),
        ]
    )
    expected, regions = brute_force(points, verts, faces)
    assert set(regions) >= {"A", "B", "C", "AB", "AC", "BC", "face"}
    np.testing.assert_allclose(point_mesh_distances(points, verts, faces), expected, rtol=1e-9, atol=1e-9)


def test_degenerate_triangles_are_measured_as_segments():
    verts = np.array([[0.0, 0, 0], [2, 0, 0], [1, 0, 0], [5, 5, 5]])
    faces = np.array([[0, 1, 2], [3, 3, 3]])  # collinear triangle and a single point
    points = np.array([[1.0, 1, 0], [-1, 0, 0], [3, 0, 0], [5, 5, 6], [1, 0, 0]])
    np.testing.assert_allclose(
        point_mesh_distances(points, verts, faces), [1.0, 1.0, 1.0, 1.0, 0.0], atol=1e-12
    )


def test_coherent_query_matches_fresh_queries_while_points_move():
    rng = np.random.default_rng(3)
    verts = rng.normal(size=(200, 3)) * 5
    faces = random_faces(rng, 200, 400)
    index = TriangleIndex(verts, faces)
    query = CoherentQuery(index, margin=0.3)
    points = rng.normal(size=(500, 3)) * 6
    for step in range(6):  # small moves reuse candidates, large ones refresh them
        points = points + rng.normal(size=points.shape) * (0.05 if step % 2 else 1.0)
        fresh, _ = brute_force(points, verts, faces)
        np.testing.assert_allclose(query(points).distances, fresh, rtol=1e-9, atol=1e-9)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError):
        TriangleIndex(np.zeros((3, 3)), np.zeros((0, 3), int))
    with pytest.raises(ValueError):
        TriangleIndex(np.eye(3), np.array([[0, 1, 2]])).query(np.zeros((4, 2)))


def test_points_exactly_on_the_surface_measure_zero():
    rng = np.random.default_rng(5)
    verts = rng.normal(size=(100, 3))
    faces = random_faces(rng, 100, 150)
    bary = rng.dirichlet([1, 1, 1], size=len(faces))
    on_faces = np.einsum("fk,fkc->fc", bary, verts[faces])
    points = np.concatenate(
        [verts[np.unique(faces)], on_faces, (verts[faces[:, 0]] + verts[faces[:, 1]]) / 2]
    )
    assert TriangleIndex(verts, faces).query(points).distances.max() < 1e-9
