"""The iris localiser and eye openness on drawn eyes with a known iris, and on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vitdeca.faces.iris import (
    CLOSED_EAR,
    blink_weight,
    eye_aspect_ratio,
    eye_aspect_ratios,
    eyelids,
    landmark_eye_aspect_ratios,
    locate_iris,
)

LID = np.array([[20.0, 40.0], [40.0, 30.0], [60.0, 30.0], [80.0, 40.0], [60.0, 50.0], [40.0, 50.0]])


def drawn_eye(
    centre: tuple[float, float], radius: float = 11.0, lid: np.ndarray = LID, squash: float = 1.0
) -> np.ndarray:
    """A 100×80 RGB eye: skin, a white eye between ``lid`` (6,2) and a dark iris disk at ``centre``
    (pixel-centre frame; ``squash`` < 1: an ellipse narrower in x, an eye turned sideways), drawn
    8× larger and area-averaged (sub-pixel accurate edges)."""
    k = 8
    big = np.full((80 * k, 100 * k), 150, np.uint8)
    polygon = np.round((lid * k - 0.5) * 16).astype(np.int32)
    white = np.zeros_like(big)
    cv2.fillPoly(white, [polygon], 1, shift=4)
    yy, xx = np.mgrid[: big.shape[0], : big.shape[1]]
    dist = np.hypot(((xx + 0.5) / k - centre[0]) / squash, (yy + 0.5) / k - centre[1])
    eye = np.where(dist < radius, 70, 225)
    eye = np.where(dist < radius * 0.4, 10, eye)
    big = np.where(white > 0, eye, big).astype(np.float32)
    small = cv2.resize(big, (100, 80), interpolation=cv2.INTER_AREA)
    return np.repeat(np.round(small).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize("centre", [(50.0, 40.0), (42.3, 41.1), (61.7, 38.6), (35.5, 43.0)])
def test_locate_iris_finds_the_drawn_iris(centre):
    iris = locate_iris(drawn_eye(centre), LID, radius=11.0)
    assert iris is not None
    assert np.linalg.norm(iris.centre - np.array(centre)) < 0.8
    assert iris.contrast > 0.2


def test_locate_iris_default_radius_and_partly_hidden_iris():
    centre = (55.0, 34.0)  # the upper lid hides the top of the iris
    iris = locate_iris(drawn_eye(centre), LID, radius=11.0)
    assert iris is not None and np.linalg.norm(iris.centre - np.array(centre)) < 0.8
    iris = locate_iris(drawn_eye(centre), LID)  # radius from the eye's width: 15 % too large
    assert iris is not None and np.linalg.norm(iris.centre - np.array(centre)) < 2.5


def test_an_iris_seen_as_an_ellipse_is_located_with_its_shape():
    """A disk as wide as the iris slides along a narrow ellipse's short axis; the ellipse does not."""
    centre = np.array([38.0, 40.0])  # towards the corner, where lid and skin pull a loose filter
    image = drawn_eye(tuple(centre), squash=0.55)
    ellipse = np.array([[11.0 * 0.55, 0.0], [0.0, 11.0]])
    shaped = locate_iris(image, LID, radius=11.0, ellipse=ellipse)
    assert shaped is not None and np.linalg.norm(shaped.centre - centre) < 0.6
    disk = locate_iris(image, LID, radius=11.0)
    assert disk is not None and np.linalg.norm(disk.centre - centre) > np.linalg.norm(shaped.centre - centre)
    turned = ellipse @ np.array([[0.0, -1.0], [1.0, 0.0]])  # the same outline from other semi-axes
    again = locate_iris(image, LID, radius=11.0, ellipse=turned)
    assert np.allclose(again.centre, shaped.centre, atol=1e-6)


def test_closed_eye_has_no_iris_and_blinks():
    closed = LID.copy()
    closed[[1, 2], 1] = 39.0
    closed[[4, 5], 1] = 41.0
    assert eye_aspect_ratio(closed) < CLOSED_EAR
    assert locate_iris(drawn_eye((50.0, 40.0)), closed) is None
    assert blink_weight(eye_aspect_ratio(closed)) == 1.0
    assert blink_weight(eye_aspect_ratio(LID)) == 0.0
    assert eye_aspect_ratio(LID) == pytest.approx(1 / 3)


def test_crossed_lids_read_as_closed_at_any_roll():
    """An upper lid drawn below the lower one (a closed eye looking down) has a negative aspect ratio, not
    the open eye its unsigned distances would make; an open eye reads the same rolled by any angle."""
    crossed = LID.copy()
    crossed[[1, 2], 1] = 44.0
    crossed[[4, 5], 1] = 36.0  # 8 px apart, the wrong way round
    assert eye_aspect_ratio(crossed) == pytest.approx(-eye_aspect_ratio(_with_gap(LID, 8.0)))
    assert blink_weight(eye_aspect_ratio(crossed)) == 1.0
    for degrees in (30.0, 90.0, 180.0, 250.0):
        angle = np.radians(degrees)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        assert eye_aspect_ratio(LID @ rotation.T) == pytest.approx(1 / 3)
        assert eye_aspect_ratio(crossed @ rotation.T) < 0


def test_aspect_ratios_of_many_eyes_at_once():
    """The vectorised ratios: any leading shape, each eye its own sign; from 68 landmarks, left eye
    (points 42-47) first."""
    crossed = LID.copy()
    crossed[[1, 2], 1], crossed[[4, 5], 1] = 44.0, 36.0
    lids = np.stack([LID, crossed, _with_gap(LID, 5.0), LID * 2.0 + 7.0]).reshape(2, 2, 6, 2)
    expected = np.array([1 / 3, -8 / 60, 5 / 60, 1 / 3]).reshape(2, 2)
    np.testing.assert_allclose(eye_aspect_ratios(lids), expected, rtol=1e-12)
    landmarks = np.zeros((3, 68, 2))
    landmarks[:, 42:48], landmarks[:, 36:42] = crossed, _with_gap(LID, 5.0)
    np.testing.assert_allclose(landmark_eye_aspect_ratios(landmarks), [[-8 / 60, 5 / 60]] * 3, rtol=1e-12)
    assert landmark_eye_aspect_ratios(landmarks[0]).shape == (2,)


def _with_gap(lid: np.ndarray, gap: float) -> np.ndarray:
    """``lid`` with its upper points ``gap`` pixels above its lower points, about the same middle."""
    out = lid.copy()
    middle = lid[[1, 2, 4, 5], 1].mean()
    out[[1, 2], 1], out[[4, 5], 1] = middle - gap / 2, middle + gap / 2
    return out


def test_eye_off_the_image():
    assert locate_iris(drawn_eye((50.0, 40.0)), LID + 500.0) is None


def test_real_photos_iris_inside_the_eye(xml_faces):
    """dlib's annotated faces with open eyes: each located iris lies within its eyelid box."""
    checked = 0
    for face in xml_faces:
        image = cv2.imread(str(face.file))[..., ::-1]
        for eye, lid in eyelids(face.parts + 0.5).items():
            if eye_aspect_ratio(lid) < 0.2 or np.linalg.norm(lid[0] - lid[3]) < 8:
                continue
            iris = locate_iris(image, lid)
            assert iris is not None, (face.file.name, eye)
            low, high = lid.min(axis=0), lid.max(axis=0)
            assert np.all(iris.centre >= low - 1) and np.all(iris.centre <= high + 1), (face.file.name, eye)
            # the iris is away from the corners: within the middle 70 % of the eye's width
            t = (iris.centre - lid[0]) @ (lid[3] - lid[0]) / np.sum((lid[3] - lid[0]) ** 2)
            assert 0.15 < t < 0.85, (face.file.name, eye, t)
            checked += 1
    assert checked >= 15


def test_window_sum_is_filter2d_at_one_pixel():
    """The lids' coverage under the iris filter is read at the winning pixel only, as filter2D gives it
    (zero border; asymmetric ellipse kernels, pixels at the edges)."""
    from vitdeca.faces.iris import _kernel, _window_sum

    rng = np.random.default_rng(0)
    kernels = [_kernel(1.7, None), _kernel(2.0, np.array([[2.5, 0.3], [0.1, 1.2]]))]
    for trial in range(100):
        values = rng.random(tuple(rng.integers(5, 40, 2))).astype(np.float32)
        kernel = kernels[trial % 2]
        full = cv2.filter2D(values, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        for row, col in [(0, 0), (values.shape[0] - 1, values.shape[1] - 1), tuple(rng.integers(0, 5, 2))]:
            assert _window_sum(values, kernel, int(row), int(col)) == pytest.approx(full[row, col], abs=1e-4)


def test_an_iris_raised_under_a_lowered_lid_is_located_above_the_lid():
    """An eye looking up under a half-closed lid shows only the lower part of its iris, whose centre is
    above the upper lid: it is located there (up to IRIS_ABOVE_LID radii above), not pulled inside."""
    lowered = LID.copy()
    lowered[[1, 2], 1] = 38.0  # the upper lid 8 px lower than LID's
    centre = np.array([50.0, 35.0])  # 3 px above the lid, within 0.4 × 11 px
    iris = locate_iris(drawn_eye(tuple(centre), lid=lowered), lowered, radius=11.0)
    assert iris is not None and np.linalg.norm(iris.centre - centre) < 1.0
    below = np.array([50.0, 53.0])  # below the lower lid: the centre stays inside the lids
    iris = locate_iris(drawn_eye(tuple(below)), LID, radius=11.0)
    assert iris is not None and iris.centre[1] <= 50.5
