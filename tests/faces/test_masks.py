"""Landmark masks: exact pixel-centre rasterisation, the holes, skin refinement, the method registry."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeca.errors import VitdecaError
from vitdeca.faces import face_mask, landmark_mask, register_mask_method, skin_refine
from vitdeca.faces.masks import MASK_METHODS, polygon_mask


def _square_face(low: float, high: float, centre: float = 20.0) -> np.ndarray:
    """68 'landmarks': the hull is the square [low, high]², eyes and mouth collapse to the centre."""
    points = np.full((68, 2), centre)
    points[:4] = [[low, low], [high, low], [high, high], [low, high]]
    return points


@pytest.mark.parametrize(
    ("low", "high", "first", "last"),
    [(10.0, 30.0, 10, 29), (10.2, 29.8, 10, 29), (10.7, 29.3, 11, 28), (10.5, 29.5, 10, 28)],
)
def test_mask_holds_exactly_the_pixel_centres_inside(low: float, high: float, first: int, last: int) -> None:
    mask = landmark_mask(_square_face(low, high), 40, 40)
    expected = np.zeros((40, 40), bool)
    expected[first : last + 1, first : last + 1] = True  # pixel j is in when low ≤ j + 0.5 < high
    np.testing.assert_array_equal(mask, expected)


def test_polygon_area_matches_shoelace() -> None:
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    radius = np.where(np.arange(10) % 2 == 0, 300.0, 120.0)  # a concave star
    star = np.stack([500 + radius * np.cos(angles), 480 + radius * np.sin(angles)], axis=1)
    x, y = star.T
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    assert polygon_mask(star, 1000, 1000).sum() == pytest.approx(area, rel=2e-3)
    mask = polygon_mask(star, 1000, 1000)
    assert not mask[597, 661]  # radius 200 at 36°, between two spikes: the concave part
    assert mask[480, 780]  # radius 280 at 0°: inside a spike


def _face_like() -> np.ndarray:
    """A plausible 68-point layout (jaw, brows, nose, open eyes and mouth) in a 200×200 image."""
    t = np.linspace(np.pi, 0, 17)
    jaw = np.stack([100 - 80 * np.cos(t), 90 + 90 * np.sin(t)], 1)
    brows = np.stack([np.linspace(40, 160, 10), np.full(10, 60.0)], 1)
    nose = np.array(
        [[100, 70], [100, 85], [100, 100], [100, 110], [90, 115], [95, 117], [100, 118], [105, 117]]
    )
    nose = np.concatenate([nose, [[110, 115]]])
    eye = np.array([[-15, 0], [-7, -6], [7, -6], [15, 0], [7, 6], [-7, 6]], float)
    eyes = np.concatenate([eye + [70, 80], eye + [130, 80]])
    outer_mouth = np.stack(
        [
            100 + 30 * np.cos(np.linspace(np.pi, -np.pi, 13)[:12]),
            140 + 12 * np.sin(-np.linspace(np.pi, -np.pi, 13)[:12]),
        ],
        1,
    )
    inner = np.array([[-20, 0], [-8, -5], [0, -5], [8, -5], [20, 0], [8, 5], [0, 5], [-8, 5]], float) + [
        100,
        140,
    ]
    points = np.concatenate([jaw, brows, nose, eyes, outer_mouth, inner])
    assert points.shape == (68, 2)
    return points


def test_holes_for_eyes_and_mouth() -> None:
    points = _face_like()
    mask = landmark_mask(points, 200, 200)
    assert mask[100, 100]  # nose area
    assert not mask[80, 70] and not mask[80, 130]  # eye centres
    assert not mask[140, 100]  # open mouth
    assert not mask[10, 100] and not mask[195, 5]  # outside the hull
    with_forehead = landmark_mask(points, 200, 200, forehead=0.3)
    assert with_forehead[45, 100] and not mask[45, 100]
    assert (with_forehead | mask).sum() == with_forehead.sum()


def test_skin_refine_drops_an_occluder() -> None:
    rng = np.random.default_rng(0)
    points = _face_like()
    image = np.clip(rng.normal([200, 150, 120], 4, size=(200, 200, 3)), 0, 255).astype(np.uint8)
    image[100:130, 40:80] = [40, 160, 60]  # a green hand over the cheek
    base = landmark_mask(points, 200, 200)
    refined = skin_refine(image, base)
    occluder = np.zeros_like(base)
    occluder[100:130, 40:80] = True
    occluder &= base
    assert refined[occluder].mean() < 0.02
    skin = base & ~occluder
    assert refined[skin].mean() > 0.95
    assert not (refined & ~base).any()
    np.testing.assert_array_equal(face_mask(image, points, "skin"), refined)


def test_mask_registry() -> None:
    image = np.zeros((50, 60, 3), np.uint8)
    points = _square_face(10, 30)
    np.testing.assert_array_equal(face_mask(image, points), landmark_mask(points, 50, 60))
    with pytest.raises(VitdecaError, match="unknown mask method"):
        face_mask(image, points, "segnet")
    register_mask_method("everything", lambda img, lm: np.ones(img.shape[:2], bool))
    register_mask_method("wrong", lambda img, lm: np.ones((3, 3), bool))
    try:
        assert face_mask(image, points, "everything").all()
        with pytest.raises(ValueError, match="shape"):
            face_mask(image, points, "wrong")
    finally:
        del MASK_METHODS["everything"], MASK_METHODS["wrong"]
