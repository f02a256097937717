"""The synthetic renderer's photo-like effects: blur, the neck's fade, and the old images with both off."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vitdeca.data.synth import SynthOptions, image_specs
from vitdeca.data.synth_render import SynthRenderer, boundary_loops, motion_kernel, neck_fade
from vitdeca.data.synth_spec import Blur

GOLDEN = Path(__file__).parent / "golden" / "synth_effects_off.npz"
OFF = dict(blur_fraction=0.0, occluder_fraction=0.0, neck_fade_mm=0.0, consistent_expressions=False)


pytestmark = pytest.mark.usefixtures("module_single_thread")


def _render(head, specs, **options):
    return SynthRenderer(head, SynthOptions(**options)).render(specs)


def test_effects_off_give_the_images_of_before(ict_head):
    """The golden arrays were rendered by the code before blur, occluders and the fade existed (commit
    a1c8c2c, these options); with the three off, and the shapes drawn independently as then, the same
    seed gives the same pixels."""
    options = dict(
        n_images=3, images_per_subject=3, seed=5, size=40, supersample=2, uv_size=128, batch_size=3
    )
    specs = image_specs(SynthOptions(**options, **OFF), ict_head, [])
    assert all(s.blur is None and s.occluder is None for s in specs)
    rendered = _render(ict_head, specs, **options, **OFF)
    golden = np.load(GOLDEN)
    np.testing.assert_array_equal(rendered.masks, golden["masks"])
    np.testing.assert_array_equal(rendered.visible, golden["visible"])
    difference = np.abs(rendered.images.astype(int) - golden["images"].astype(int))
    assert difference.max() <= 1  # float rounding at most; other random draws would move the noise
    assert not rendered.occluded.any()


def _high_frequency(image: np.ndarray, mask: np.ndarray) -> float:
    grey = image.astype(np.float32).mean(axis=2)
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return float((cv2.Laplacian(grey, cv2.CV_32F)[inner] ** 2).mean())


@pytest.mark.parametrize("kind", ["gaussian", "motion"])
def test_blur_lowers_the_high_frequencies_inside_the_face(ict_head, kind):
    options = dict(
        n_images=2, images_per_subject=2, seed=1, size=96, supersample=1, uv_size=256, noise=0.0, **OFF
    )
    specs = image_specs(SynthOptions(**options), ict_head, [])
    blurred = [replace(s, blur=Blur(kind, 1.5, 30.0)) for s in specs]
    sharp, soft = _render(ict_head, specs, **options), _render(ict_head, blurred, **options)
    np.testing.assert_array_equal(soft.landmarks, sharp.landmarks)
    np.testing.assert_array_equal(soft.masks, sharp.masks)
    for k in range(2):
        assert _high_frequency(soft.images[k], sharp.masks[k]) < 0.5 * _high_frequency(
            sharp.images[k], sharp.masks[k]
        )


def test_motion_kernel_is_a_normalised_streak_with_the_drawn_std():
    length, angle = 8.0, 30.0
    kernel = motion_kernel(length, angle)
    assert kernel.sum() == pytest.approx(1.0, abs=1e-5) and kernel.shape[0] % 2 == 1
    half = kernel.shape[0] // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    along = x * np.cos(np.radians(angle)) + y * np.sin(np.radians(angle))
    across = -x * np.sin(np.radians(angle)) + y * np.cos(np.radians(angle))
    assert np.sqrt((kernel * along**2).sum()) == pytest.approx(length / np.sqrt(12.0), rel=0.2)
    assert np.sqrt((kernel * across**2).sum()) < 0.6  # a thin line (anti-aliased)
    assert (kernel * along).sum() == pytest.approx(0.0, abs=1e-6)  # centred


def test_the_neck_is_the_only_open_boundary_and_fades_out(ict_head):
    loops = boundary_loops(ict_head.faces.numpy())
    assert len(loops) == 1 and len(loops[0]) > 40  # ICT: the cut at the neck; eyes and mouth are closed
    fade = neck_fade(ict_head, 25.0)
    assert fade[loops[0]].max() == 0.0
    assert fade[ict_head.face_mask.numpy().astype(bool)].min() == 1.0  # the face is untouched
    assert 0 < ((fade > 0) & (fade < 1)).sum() < 0.05 * len(fade)
    assert neck_fade(ict_head, 0.0) is None


def _neck_profile(head, fade_mm: float) -> tuple[np.ndarray, object]:
    """Luma difference to a flat grey background down the image column under the chin of a frontal,
    small face whose neck cut is in view."""
    options = dict(n_images=1, seed=2, size=96, supersample=2, uv_size=128, noise=0.0, shift=0.0,
                   face_fraction=(0.35, 0.35), **{**OFF, "neck_fade_mm": fade_mm})  # fmt: skip
    spec = image_specs(SynthOptions(**options), head, [])[0]
    spec = replace(spec, pose=np.zeros_like(spec.pose), gain=np.ones(3), gamma=1.0)
    renderer = SynthRenderer(head, SynthOptions(**options))
    renderer.background = lambda rng: torch.full((3, 192, 192), 0.5)
    rendered = renderer.render([spec])
    chin = rendered.landmarks[0, 8]
    column = rendered.images[0, int(chin[1]) + 2 :, int(chin[0]) - 1 : int(chin[0]) + 2].astype(float)
    background = rendered.images[0, 0, 0].astype(float)
    return np.abs(column - background).mean(axis=(1, 2)), rendered


def test_the_neck_edge_is_gradual_and_the_mask_and_landmarks_stay(ict_head):
    hard, hard_render = _neck_profile(ict_head, 0.0)
    soft, soft_render = _neck_profile(ict_head, 25.0)
    contrast = hard.max()
    assert contrast > 20  # the skin stands out from the grey
    assert np.abs(np.diff(hard)).max() > 0.5 * contrast  # the hard cut: most of it in one pixel
    assert np.abs(np.diff(soft)).max() < 0.25 * contrast  # the fade: no big step anywhere
    assert ((soft > 0.1 * contrast) & (soft < 0.9 * contrast)).sum() >= 5  # spread over several pixels
    assert hard[-1] < 0.05 * contrast and soft[-1] < 0.05 * contrast  # background at the bottom
    np.testing.assert_array_equal(soft_render.masks, hard_render.masks)
    np.testing.assert_array_equal(soft_render.landmarks, hard_render.landmarks)
    np.testing.assert_array_equal(soft_render.visible, hard_render.visible)
