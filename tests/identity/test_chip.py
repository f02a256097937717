"""Chip alignment: hand-computed geometry, and pixel-exact agreement with dlib.get_face_chip."""

from __future__ import annotations

import math

import dlib
import numpy as np
import pytest
import torch

from vitdeca.identity import dlib_model_path
from vitdeca.identity.chip import (
    chip_to_image_matrix,
    extract_chips,
    face_template,
    fit_similarity,
    image_to_chip_matrix,
    pyramid_down,
)


def _apply(m: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    return pts @ m[:, :2].T + m[:, 2]


def test_fit_similarity_recovers_transform() -> None:
    src = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 1.0]], dtype=torch.float64)
    angle, scale, t = 0.3, 2.5, torch.tensor([4.0, -1.0], dtype=torch.float64)
    A = scale * torch.tensor(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=torch.float64
    )
    fit = fit_similarity(src, (src @ A.T + t)[None])
    torch.testing.assert_close(fit[0], torch.cat([A, t[:, None]], 1).to(torch.float64))


def _landmarks_from_template(n: int, a: float, b: float, t: tuple[float, float]) -> torch.Tensor:
    """(1,n,2) landmarks (vitdeca frame): dlib's template under x → [[a,-b],[b,a]] x + t (dlib frame)."""
    indices, template = face_template(n, 150, 0.25)
    pts = torch.full((n, 2), 1e6, dtype=torch.float64)  # unused landmarks must not matter
    A = torch.tensor([[a, -b], [b, a]], dtype=torch.float64)
    pts[indices] = template @ A.T + torch.tensor(t, dtype=torch.float64)
    return (pts + 0.5)[None]


def test_identity_placement_is_half_pixel_shift() -> None:
    # Template landmarks: scale 1, so dlib's chip pixel j samples the image at dlib coordinate j + 0.5
    # (its chip centre is (size-1)/2 while the fit maps size/2), i.e. vitdeca x → x + 0.5.
    m = chip_to_image_matrix(_landmarks_from_template(68, 1.0, 0.0, (0.0, 0.0)))
    torch.testing.assert_close(m[0], torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]], dtype=torch.float64))


def test_scaled_rotated_placement() -> None:
    a, b, t = 1.6, 1.2, (30.0, -7.0)  # scale 2, angle atan2(1.2, 1.6)
    m = chip_to_image_matrix(_landmarks_from_template(5, a, b, t))[0]
    k = (150 * 2.0 - 1) / 149  # dlib spans size*s - 1 pixels between the first and last chip pixel centres
    rot = torch.tensor([[0.8, -0.6], [0.6, 0.8]], dtype=torch.float64)
    torch.testing.assert_close(m[:, :2], k * rot)
    centre = torch.tensor([[a, -b], [b, a]], dtype=torch.float64) @ torch.tensor(
        [75.0, 75.0], dtype=torch.float64
    )
    centre = centre + torch.tensor(t, dtype=torch.float64)
    # chip pixel centre (74.5, 74.5) in dlib's frame = (75, 75) in vitdeca's maps to the fitted centre (+0.5).
    torch.testing.assert_close(_apply(m, torch.tensor([75.0, 75.0], dtype=torch.float64)), centre + 0.5)
    back = _apply(
        image_to_chip_matrix(_landmarks_from_template(5, a, b, t))[0],
        _apply(m, torch.eye(2, dtype=torch.float64)),
    )
    torch.testing.assert_close(back, torch.eye(2, dtype=torch.float64))


def test_pyramid_down_filter() -> None:
    image = torch.zeros(1, 1, 11, 13)
    image[0, 0, 6, 4] = 256.0  # impulse on the centre of output pixel (2, 1)
    down = pyramid_down(image)
    assert down.shape == (1, 1, 4, 5)
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    assert down[0, 0, 2, 1] == 36.0 and down.sum() == 64.0  # even taps (1+6+1) in each direction
    assert down[0, 0, 1, 1] == pytest.approx(float(taps[0] * taps[2]))  # row offset 2: weights 1 x 6
    assert torch.allclose(pyramid_down(torch.full((1, 3, 20, 20), 0.3)), torch.tensor(0.3))


def test_wrong_landmark_count() -> None:
    with pytest.raises(ValueError, match="5 or 68 landmarks"):
        extract_chips(torch.zeros(1, 3, 50, 50), torch.zeros(1, 10, 2))


@pytest.mark.parametrize("points", [68, 5])
def test_chips_equal_dlib_get_face_chip(single_faces, bald_guys, points: int) -> None:
    """Float images, so no uint8 rounding: the torch chips must equal dlib's pixel for pixel.

    Covers faces crossing the image border, rotations, and the large faces dlib samples from its pyramid.
    """
    predictor5 = (
        dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
        if points == 5
        else None
    )
    worst, grays = 0.0, {}
    for face in single_faces + bald_guys[::6]:
        shape = face.shape if predictor5 is None else predictor5(face.image, face.shape.rect)
        if id(face.image) not in grays:
            grays[id(face.image)] = np.ascontiguousarray(face.image.mean(-1, dtype=np.float32))
        gray = grays[id(face.image)]
        ref = dlib.get_face_chip(gray, shape, size=150, padding=0.25)
        ours = extract_chips(torch.from_numpy(gray)[None, None].double(), face.landmarks(shape))[0, 0]
        worst = max(worst, float(np.abs(ours.numpy() - ref).max()))
    assert worst < 1e-3  # intensities in 0..255


def test_chips_are_differentiable() -> None:
    torch.manual_seed(0)
    image = torch.rand(1, 1, 14, 14, dtype=torch.float64, requires_grad=True)
    _, template = face_template(5, 8, 0.25)
    rot = 1.13 * torch.tensor(
        [[math.cos(0.2), -math.sin(0.2)], [math.sin(0.2), math.cos(0.2)]], dtype=torch.float64
    )
    lm = (template @ rot.T + 2.3)[None].clone().requires_grad_(True)  # off-grid samples, inside the image
    torch.autograd.gradcheck(lambda im, pts: extract_chips(im, pts, size=8), (image, lm), atol=1e-6)
