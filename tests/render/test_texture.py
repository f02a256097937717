"""Texture completion: mirror map, facing weights, feathering and the composition rule."""

from __future__ import annotations

import pytest
import torch

from vitdeca.render import texture as tex
from vitdeca.render.uv import UVSpace


@pytest.fixture(scope="module")
def ict_uv(ict_head):
    return UVSpace(ict_head.faces, ict_head.uv_coords, ict_head.uv_faces, uv_size=128)


def test_mirror_texels_pair_mirror_images_on_the_ict_head(ict_head, ict_uv):
    mirror = tex.mirror_texels(ict_uv, ict_head.template_vertices)
    positions = ict_uv.world_to_uv(ict_head.template_vertices[None].float())[0].reshape(3, -1).T
    covered = ict_uv.mask.reshape(-1) > 0
    assert bool((mirror[~covered] == -1).all())
    paired = mirror >= 0
    assert paired[covered].float().mean() > 0.9  # the head is symmetric: nearly every texel has a partner
    extent = float((ict_head.template_vertices.amax(0) - ict_head.template_vertices.amin(0)).max())
    error = (positions[mirror[paired]] - positions[paired] * torch.tensor([-1.0, 1.0, 1.0])).norm(dim=1)
    assert float(error.median()) < 0.005 * extent
    back = mirror[mirror[paired]]
    near = (positions[back.clamp_min(0)] - positions[paired]).norm(dim=1) < 0.01 * extent
    assert near.float().mean() > 0.95  # the mirror of the mirror is (next to) the texel itself


def test_facing_is_one_head_on_and_zero_edge_on():
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    uv = UVSpace(faces, torch.tensor([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]), faces, uv_size=16)
    square = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    edge_on = square[:, [2, 1, 0]]  # the same square in the y-z plane: its normal is along x
    result = tex.facing(uv, torch.stack([square, edge_on]))
    inside = uv.mask[0, 0] > 0
    assert torch.allclose(result[0, 0][inside], torch.ones(())) and bool((result[1, 0][inside] == 0).all())


def test_feathered_stays_inside_and_keeps_the_interior():
    block = torch.zeros(1, 1, 20, 20)
    block[..., 4:16, 4:16] = 1.0
    soft = tex.feathered(block, radius=2)
    assert bool((soft <= block).all())
    assert bool((soft[..., 8:12, 8:12] == 1).all())
    assert 0 < float(soft[0, 0, 4, 10]) < 1  # the edge is soft


def _layout(size: int = 16):
    """A 1×size×size map whose left half mirrors onto its right half (column j ↔ size−1−j)."""
    cols = torch.arange(size * size) % size
    mirror = torch.arange(size * size) - cols + (size - 1 - cols)
    return mirror


def test_complete_texture_keeps_the_photo_mirrors_the_hidden_side_and_matches_the_colour():
    size = 16
    texture = torch.zeros(1, 3, size, size)
    texture[..., : size // 2] = torch.linspace(0.2, 0.6, size // 2)  # seen left half, a gradient
    confidence = torch.zeros(1, 1, size, size)
    confidence[..., : size // 2] = 1.0
    fallback = torch.full((1, 3, size, size), 0.5)
    out = tex.complete_texture(texture, confidence, fallback, _layout(size))
    # radius-2 feathering: the columns more than 2 texels from the seam are pure photo / pure mirror
    assert torch.allclose(out[..., :1], texture[..., :1])
    assert torch.allclose(out[..., size - 1 :], texture[..., :1])
    without_mirror = tex.complete_texture(texture, confidence, fallback, torch.full((size * size,), -1))
    offset = float(texture[0, 0, 0, : size // 2].median() - 0.5)
    assert torch.allclose(without_mirror[..., size - 1 :], torch.full((1, 3, size, 1), 0.5 + offset))


def test_colour_offset_is_a_median_that_outliers_do_not_move():
    texture = torch.full((1, 3, 10, 10), 0.7)
    texture[..., :2, :] = 0.0  # 20 % black hair over the seen face
    offset = tex.colour_offset(texture, torch.ones(1, 1, 10, 10), torch.full((1, 3, 10, 10), 0.5))
    assert torch.allclose(offset, torch.full((1, 3, 1, 1), 0.2))
    few = tex.colour_offset(texture, torch.zeros(1, 1, 10, 10), torch.full((1, 3, 10, 10), 0.5))
    assert bool((few == 0).all())
