"""Crops and their similarity transforms: hand-computed boxes, exact round trips, and the pixel-centre
convention of the warp checked on linear ramps (which bilinear and area resampling reproduce exactly)."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeca.faces import (
    compose,
    crop_face,
    crop_square,
    invert_similarity,
    square_matrix,
    transform_points,
    warp_image,
)


def _similarity(rng: np.random.Generator) -> np.ndarray:
    angle, scale = rng.uniform(-np.pi, np.pi), rng.uniform(0.1, 5.0)
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, rng.uniform(-300, 300)], [s, c, rng.uniform(-300, 300)]])


def _landmarks(rng: np.random.Generator, centre=(300.0, 200.0), spread=80.0) -> np.ndarray:
    return np.asarray(centre) + rng.uniform(-spread, spread, size=(68, 2))


def test_crop_square_by_hand() -> None:
    points = np.array([[10.0, 20.0], [50.0, 80.0], [30.0, 40.0]] + [[20.0, 30.0]] * 65)
    centre, side = crop_square(points, scale=1.25)
    np.testing.assert_allclose(centre, [30.0, 50.0])
    assert side == pytest.approx(1.1 * 1.25 * (40 + 60) / 2)  # DECA: kpt68 box · 1.1 · scale


def test_square_matrix_maps_square_onto_crop() -> None:
    matrix = square_matrix(np.array([30.0, 50.0]), 80.0, 224)
    corners = np.array([[-10.0, 10.0], [70.0, 90.0], [30.0, 50.0]])
    np.testing.assert_allclose(
        transform_points(corners, matrix), [[0, 0], [224, 224], [112, 112]], atol=1e-12
    )


def test_round_trip_is_exact() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        matrix = _similarity(rng)
        points = rng.uniform(-1000, 1000, size=(5, 68, 2))
        back = transform_points(transform_points(points, matrix), invert_similarity(matrix))
        np.testing.assert_allclose(back, points, rtol=0, atol=1e-9)
        np.testing.assert_allclose(compose(invert_similarity(matrix), matrix), np.eye(2, 3), atol=1e-12)


def test_compose_matches_homogeneous_product() -> None:
    rng = np.random.default_rng(1)
    a, b = _similarity(rng), _similarity(rng)
    full = np.vstack([a, [0, 0, 1]]) @ np.vstack([b, [0, 0, 1]])
    np.testing.assert_allclose(compose(a, b), full[:2], atol=1e-9)
    points = rng.normal(size=(10, 2))
    np.testing.assert_allclose(
        transform_points(points, compose(a, b)), transform_points(transform_points(points, b), a)
    )


def test_crop_face_landmarks_round_trip() -> None:
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, size=(400, 600, 3), dtype=np.uint8)
    landmarks = _landmarks(rng)
    crop = crop_face(image, landmarks)
    assert crop.image.shape == (224, 224, 3) and crop.image.dtype == np.uint8
    in_crop = transform_points(landmarks, crop.matrix)
    assert in_crop.min() > 0 and in_crop.max() < 224  # the 1.25 DECA box holds every landmark
    np.testing.assert_allclose(crop.to_original(in_crop), landmarks, rtol=0, atol=1e-9)


def _ramp(height: int, width: int, a: float = 0.37, b: float = -0.21, c: float = 300.0) -> np.ndarray:
    """Float image whose value at pixel centre (x, y) is a·x + b·y + c."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    return (a * x + b * y + c).astype(np.float64)


@pytest.mark.parametrize("side", [40.0, 300.0, 1200.0])  # zoom 5.6 (upsampling), 0.75, 0.19 (pre-shrunk)
def test_warp_follows_pixel_centre_convention(side: float) -> None:
    image = _ramp(1500, 1500)
    matrix = square_matrix(np.array([731.3, 702.9]), side, 224)
    out = warp_image(image, matrix, 224)
    y, x = np.mgrid[0:224, 0:224] + 0.5
    source = transform_points(np.stack([x, y], -1), invert_similarity(matrix))
    expected = 0.37 * source[..., 0] - 0.21 * source[..., 1] + 300.0
    inner = slice(2, -2)  # the area filter's border pixels see the crop edge
    # ≤ 0.02 pixel of position error (the ramp rises 0.43 per pixel)
    np.testing.assert_allclose(out[inner, inner], expected[inner, inner], rtol=0, atol=0.43 * 0.02)


def test_warp_with_rotation_and_bright_dot() -> None:
    image = np.zeros((200, 200), np.float32)
    image[120, 50] = 1.0  # pixel (row 120, col 50): centre (50.5, 120.5)
    angle = np.deg2rad(30)
    matrix = np.array([[np.cos(angle), -np.sin(angle), 80.0], [np.sin(angle), np.cos(angle), -20.0]]) * 2.0
    out = warp_image(image, matrix, (300, 300))
    row, col = np.unravel_index(np.argmax(out), out.shape)
    expected = transform_points(np.array([50.5, 120.5]), matrix)
    assert np.hypot(col + 0.5 - expected[0], row + 0.5 - expected[1]) <= 0.75
    centroid = (np.argwhere(out > 0) * out[out > 0][:, None]).sum(0) / out.sum() + 0.5
    np.testing.assert_allclose(centroid[::-1], expected, atol=0.05)


def test_outside_is_black() -> None:
    image = np.full((10, 10, 3), 255, np.uint8)
    out = warp_image(image, square_matrix(np.array([0.0, 0.0]), 10.0, 20), 20)
    assert out[:8, :8].max() == 0 and out[12:, 12:].min() == 255
