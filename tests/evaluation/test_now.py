"""The NoW protocol: Procrustes, the crop sphere, refinement and the final distances."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeca.evaluation.now import (
    NOW_LANDMARKS_IBUG68,
    RefineOptions,
    align_and_measure,
    crop_scan,
    crop_sphere,
    procrustes,
    scan_to_mesh_errors,
)

# Hand-made landmarks: outer eyes 160 apart, inner eyes at y=40, nose bottom 60 below them.
HAND_LANDMARKS = np.array(
    [[-80, 40, 0], [-20, 40, 0], [20, 40, 0], [80, 40, 0], [0, -20, 0], [-30, -50, 0], [30, -50, 0]], float
)


def test_crop_sphere_formula_on_hand_made_landmarks():
    centre, radius = crop_sphere(HAND_LANDMARKS)
    # centre = nose + 0.3 * (bridge - nose) = (0,-20,0) + 0.3 * (0,60,0); radius = 1.4 * (160 + 60) / 2
    np.testing.assert_allclose(centre, [0.0, -2.0, 0.0])
    assert radius == pytest.approx(154.0)
    points = np.array([[0, -2, 154.0], [0, -2, 154.01], [154.0, -2, 0], [0, 152.5, 0], [120, 100, 0]])
    np.testing.assert_array_equal(crop_scan(points, HAND_LANDMARKS), [0, 2])


def test_procrustes_recovers_a_similarity(synth):
    rng = np.random.default_rng(0)
    source = rng.normal(size=(7, 3))
    s, rot, t, apply = synth.similarity(1)
    sim = procrustes(apply(source), source)
    assert sim.scale == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(sim.rotation, rot, atol=1e-12)
    np.testing.assert_allclose(sim.translation, t, atol=1e-9)


def test_procrustes_reflection_modes():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(7, 3))
    mirrored = source * np.array([-1.0, 1.0, 1.0])
    best = procrustes(mirrored, source)  # official 'best': the reflection fits exactly
    assert np.linalg.det(best.rotation) == pytest.approx(-1.0)
    np.testing.assert_allclose(best.apply(source), mirrored, atol=1e-12)
    proper = procrustes(mirrored, source, reflection=False)
    assert np.linalg.det(proper.rotation) == pytest.approx(1.0)
    assert np.abs(proper.apply(source) - mirrored).max() > 0.1
    forced = procrustes(source, source, reflection=True)
    assert np.linalg.det(forced.rotation) == pytest.approx(-1.0)


def test_identical_meshes_give_zero(synth):
    verts, faces, lmk = synth.head(1500)
    d = scan_to_mesh_errors(verts, faces, lmk, verts, faces, lmk)
    assert len(d) == len(crop_scan(verts, lmk)) > 300
    assert np.abs(d).max() < 1e-9


def test_prediction_under_a_similarity_gives_zero(synth):
    verts, faces, lmk = synth.head(1500)
    _, _, _, apply = synth.similarity(5, scale=0.001)  # a prediction in metres, rotated and moved
    d = scan_to_mesh_errors(verts, None, lmk, apply(verts), faces, apply(lmk))
    assert np.abs(d).max() < 1e-7


def test_refinement_repairs_a_poor_landmark_alignment(synth):
    verts, faces, lmk = synth.head(1500)
    rng = np.random.default_rng(2)
    _, _, _, apply = synth.similarity(6)
    noisy = lmk + rng.normal(size=(7, 3)) * 4.0  # 4 mm landmark noise: Procrustes alone is off
    coarse = align_and_measure(verts, faces, lmk, apply(verts), faces, apply(noisy), refine=False)
    fine = align_and_measure(verts, faces, lmk, apply(verts), faces, apply(noisy))
    assert np.median(coarse.distances) > 0.5
    assert np.abs(fine.distances).max() < 1e-4
    assert fine.transform.scale > 0
    np.testing.assert_allclose(fine.aligned_vertices, verts, atol=1e-3)


def test_normal_offset_of_d_measures_d(synth):
    verts, faces = synth.sphere(3, radius=30.0)
    d = 0.5
    shifted = verts * (1 + d / 30.0)  # offset along the (radial) vertex normals
    result = align_and_measure(verts, faces, HAND_LANDMARKS, shifted, faces, HAND_LANDMARKS, refine=False)
    # nearest points lie on facets tilted by < 0.1 rad from the vertex normals: d cos(tilt) <= dist <= d
    assert result.distances.max() <= d + 1e-9
    assert result.distances.min() >= d * np.cos(0.1)


def test_normal_offset_survives_the_refinement(synth):
    """Two spheres, one offset outwards and one inwards by d: no similarity can undo both, so the full
    protocol (with a random similarity on the prediction) must still measure about d everywhere."""
    d = 0.5
    left, faces = synth.sphere(4, radius=30.0, centre=(-50, 0, 0))
    right, _ = synth.sphere(4, radius=30.0, centre=(50, 0, 0))
    scan = np.concatenate([left, right])
    both = np.concatenate([faces, faces + len(left)])
    grown = np.array([-50.0, 0, 0]) + (left - [-50, 0, 0]) * (1 + d / 30)
    shrunk = np.array([50.0, 0, 0]) + (right - [50, 0, 0]) * (1 - d / 30)
    _, _, _, apply = synth.similarity(9)
    pred = apply(np.concatenate([grown, shrunk]))
    result = align_and_measure(scan, both, HAND_LANDMARKS, pred, both, apply(HAND_LANDMARKS))
    dist = result.distances
    assert len(dist) == len(scan)  # the crop sphere (radius 154) holds both spheres
    assert np.mean(dist) == pytest.approx(d, rel=0.03)
    assert np.abs(dist - d).max() < 0.1 * d
    assert np.mean(dist[: len(left)]) == pytest.approx(d, rel=0.05)  # neither sphere absorbed the offset
    assert np.mean(dist[len(left) :]) == pytest.approx(d, rel=0.05)
    # the refinement only ever lowers the objective below its start (the exact landmark alignment)
    start = align_and_measure(scan, both, HAND_LANDMARKS, pred, both, apply(HAND_LANDMARKS), refine=False)
    assert np.sum(dist**2) <= np.sum(start.distances**2)


def test_coarse_to_fine_matches_a_single_full_solve(synth):
    verts, faces, lmk = synth.head(4000)
    pred_v, pred_f, pred_l = synth.head(800, size=1.04)
    rng = np.random.default_rng(4)
    pred_l = pred_l + rng.normal(size=(7, 3))
    staged = align_and_measure(verts, faces, lmk, pred_v, pred_f, pred_l, RefineOptions(coarse_points=300))
    direct = align_and_measure(verts, faces, lmk, pred_v, pred_f, pred_l, RefineOptions(coarse_points=0))
    # the objective is not convex (facets): both must reach minima of about the same depth
    assert np.sum(staged.distances**2) == pytest.approx(np.sum(direct.distances**2), rel=1e-2)
    # the refinement lowers the objective below the landmark-only alignment
    landmark_only = align_and_measure(verts, faces, lmk, pred_v, pred_f, pred_l, refine=False)
    assert np.sum(direct.distances**2) < 0.9 * np.sum(landmark_only.distances**2)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: {**a, "pred_landmarks7": a["pred_landmarks7"][:5]}, "predicted landmarks"),
        (lambda a: {**a, "pred_faces": a["pred_faces"] + 10_000}, "outside"),
        (lambda a: {**a, "pred_vertices": a["pred_vertices"] * np.nan}, "NaN"),
        (lambda a: {**a, "pred_landmarks7": np.zeros((7, 3))}, "one point"),
        (lambda a: {**a, "scan_landmarks7": a["scan_landmarks7"] + 1e4}, "crop sphere"),
    ],
)
def test_malformed_inputs_raise_value_error(synth, change, message):
    verts, faces, lmk = synth.head(300)
    args = dict(
        scan_vertices=verts,
        scan_faces=faces,
        scan_landmarks7=lmk,
        pred_vertices=verts,
        pred_faces=faces,
        pred_landmarks7=lmk,
    )
    with pytest.raises(ValueError, match=message):
        scan_to_mesh_errors(**change(args))


def test_now_landmarks_are_the_ibug_eye_nose_mouth_points():
    assert NOW_LANDMARKS_IBUG68 == (36, 39, 42, 45, 33, 48, 54)
