"""Occluders over synthetic faces: the area cap, the mask and the landmarks' visibility without them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from vitdeca.data.synth import SynthOptions, image_specs
from vitdeca.data.synth_occluders import covered_landmarks, draw_occluder
from vitdeca.data.synth_render import SynthRenderer
from vitdeca.data.synth_spec import OCCLUDER_KINDS, Occluder

OPTIONS = dict(n_images=3, images_per_subject=3, seed=4, size=64, supersample=1, uv_size=128, noise=0.0,
               blur_fraction=0.0, occluder_fraction=0.0, neck_fade_mm=0.0)  # fmt: skip


@pytest.fixture(scope="module")
def plain(ict_head):
    """Three faces without occluders: (renderer, specs, rendered)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    renderer = SynthRenderer(ict_head, SynthOptions(**OPTIONS))
    specs = image_specs(SynthOptions(**OPTIONS), ict_head, [])
    yield renderer, specs, renderer.render(specs)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", OCCLUDER_KINDS)
def test_the_mask_and_the_visibility_exclude_the_occluder(plain, kind):
    renderer, specs, base = plain
    occluders = [Occluder(kind, 100 + k) for k in range(len(specs))]
    rendered = renderer.render([replace(s, occluder=o) for s, o in zip(specs, occluders, strict=True)])
    assert rendered.occluded.all()
    for k, occluder in enumerate(occluders):
        image = np.zeros((64, 64, 3), np.float32)
        _, hidden = draw_occluder(occluder, image, base.masks[k], base.landmarks[k], 0.4)
        assert (hidden & base.masks[k]).any()
        np.testing.assert_array_equal(rendered.masks[k], base.masks[k] & ~hidden)  # what masks/*.png holds
        under = covered_landmarks(hidden, base.landmarks[k])
        np.testing.assert_array_equal(rendered.visible[k], base.visible[k] & ~under)
        changed = np.abs(rendered.images[k].astype(int) - base.images[k].astype(int)).max(axis=2) > 0
        assert changed[hidden].mean() > 0.9  # the occluder is drawn where it is said to be
        np.testing.assert_array_equal(rendered.landmarks[k], base.landmarks[k])
    if kind == "hand":
        assert not rendered.visible.all()  # a hand over the jaw or lips hides some landmarks


def test_occluders_cover_at_most_the_cap_of_the_face(plain):
    _, specs, base = plain
    fractions = []
    for seed in range(30):
        kind = OCCLUDER_KINDS[seed % 3]
        k = seed % len(specs)
        for cap in (0.4, 0.1):
            image = np.full((64, 64, 3), 0.5, np.float32)
            out, hidden = draw_occluder(Occluder(kind, seed), image, base.masks[k], base.landmarks[k], cap)
            share = (hidden & base.masks[k]).sum() / base.masks[k].sum()
            assert share <= cap
            if not hidden.any():
                np.testing.assert_array_equal(out, image)  # dropped: nothing drawn
            fractions.append(share)
    assert max(fractions) > 0.1  # the cap matters: some occluders were large


def test_covered_landmarks_use_the_pixel_under_each_point():
    occluded = np.zeros((10, 10), bool)
    occluded[2, 3] = True
    points = np.array([[3.5, 2.5], [3.99, 2.01], [4.0, 2.5], [-1.0, 2.0], [3.5, 12.0]])
    np.testing.assert_array_equal(covered_landmarks(occluded, points), [True, True, False, False, False])


def test_occluders_are_deterministic_in_their_seed(plain):
    _, _, base = plain
    image = np.random.default_rng(0).uniform(size=(64, 64, 3)).astype(np.float32)
    for kind in OCCLUDER_KINDS:
        a = draw_occluder(Occluder(kind, 7), image, base.masks[0], base.landmarks[0], 0.4)
        b = draw_occluder(Occluder(kind, 7), image, base.masks[0], base.landmarks[0], 0.4)
        c = draw_occluder(Occluder(kind, 8), image, base.masks[0], base.landmarks[0], 0.4)
        np.testing.assert_array_equal(a[0], b[0])
        assert not np.array_equal(a[1], c[1])
