"""Shading: DECA's SH constants, normals, and golden values of a flat quad."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vitdeca.render import (
    MeshRenderer,
    face_normals,
    sh_basis,
    sh_shading,
    sh_shading_packed,
    shape_shading_image,
    shape_shading_packed,
    vertex_normals,
)
from vitdeca.render.shading import SH_CONSTANTS, sh_shading_packed_torch, unit_vectors, vertex_normals_torch


def test_sh_constants_are_decas():
    # 1/sqrt(4pi), (2pi/3)sqrt(3/(4pi)) ×3, (pi/4)·3·sqrt(5/(12pi)) ×3,
    # (pi/4)(3/2)sqrt(5/(12pi)), (pi/4)(1/2)sqrt(5/(4pi))
    expected = [
        0.2820948,
        1.0233267,
        1.0233267,
        1.0233267,
        0.8580855,
        0.8580855,
        0.8580855,
        0.4290428,
        0.2477079,
    ]
    assert list(SH_CONSTANTS) == pytest.approx(expected, abs=1e-6)


def test_sh_basis_order():
    n = torch.tensor([0.48, 0.6, 0.64])  # unit length
    x, y, z = n.tolist()
    raw = torch.tensor([1.0, x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1])
    torch.testing.assert_close(sh_basis(n), raw * torch.tensor(SH_CONSTANTS))


def test_sh_shading_per_channel_and_checks():
    normals = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    light = torch.zeros(1, 9, 3)
    light[0, 0] = torch.tensor([1.0, 2.0, 3.0])
    light[0, 1] = torch.tensor([0.5, 0.0, 0.0])  # x band, red only
    shading = sh_shading(normals, light)
    c0, c1 = SH_CONSTANTS[0], SH_CONSTANTS[1]
    torch.testing.assert_close(shading[0, 0], torch.tensor([c0, 2 * c0, 3 * c0]))
    torch.testing.assert_close(shading[0, 1], torch.tensor([c0 + 0.5 * c1, 2 * c0, 3 * c0]))
    with pytest.raises(ValueError, match=r"\(B,9,3\)"):
        sh_shading(normals, torch.zeros(1, 27))


def test_vertex_normals_are_area_weighted():
    # vertex 0 is shared by a large face in the z=0 plane (normal +z) and a small face in the x=0 plane (+x)
    vertices = torch.tensor(
        [[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]]
    )
    faces = torch.tensor([[0, 1, 2], [0, 4, 3]])
    normals = vertex_normals(vertices, faces)
    expected = torch.tensor([0.5, 0.0, 2.0]) / math.sqrt(4.25)  # areas 2 and 0.5
    torch.testing.assert_close(normals[0, 0], expected)
    torch.testing.assert_close(normals[0, 1], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(
        face_normals(vertices, faces)[0], torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    )


def test_flat_quad_golden_values(grid_mesh):
    vertices, faces, uv = grid_mesh(1, 1, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    renderer = MeshRenderer(faces, uv, faces, image_size=16, uv_size=8)
    albedo = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1).expand(1, 3, 8, 8)
    light = torch.zeros(1, 9, 3)
    light[0, 0] = torch.tensor([1.0, 2.0, 3.0])
    light[0, 3] = 0.5  # z band
    light[0, 8] = torch.tensor([0.1, 0.0, 0.0])  # 3z^2-1 band
    out = renderer(vertices[None], torch.tensor([[0.5, 0.0, 0.0]]), albedo, light)
    # s = 0.5 maps the quad to NDC [-0.5, 0.5] → pixels [4, 12]: centres 4.5 … 11.5 are covered
    expected_mask = torch.zeros(16, 16)
    expected_mask[4:12, 4:12] = 1
    torch.testing.assert_close(out.alpha[0, 0], expected_mask)
    c0, c1, c8 = SH_CONSTANTS[0], SH_CONSTANTS[3], SH_CONSTANTS[8]
    shading = torch.tensor([c0 * 1 + c1 * 0.5 + 2 * c8 * 0.1, c0 * 2 + c1 * 0.5, c0 * 3 + c1 * 0.5])
    inside = out.image[0, :, 4:12, 4:12]
    torch.testing.assert_close(
        inside, (torch.tensor([0.2, 0.4, 0.6]) * shading).view(3, 1, 1).expand_as(inside)
    )
    assert not out.image[0, :, :4].any() and not out.image[0, :, 12:].any()
    torch.testing.assert_close(out.normal_image[0, :, 8, 8], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(out.depth[0, 0, 4:12, 4:12], torch.zeros(8, 8))
    grey = 180 / 255 * 1.7 * (4 / math.sqrt(3) + 1) / 5  # five lights: four at 1/sqrt(3), one head-on
    torch.testing.assert_close(out.shape_image[0, :, 8, 8], torch.full((3,), grey))


def test_shape_lights_clamp_back_facing_normals():
    normals = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1)
    assert shape_shading_image(normals).abs().sum() == 0


def test_vertex_normals_kernel_matches_torch(uv_sphere):
    vertices, faces, _ = uv_sphere(5, 7, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    vertices = vertices[None] + 0.1 * torch.randn(2, *vertices.shape, generator=gen, dtype=torch.float64)
    upstream = torch.randn(vertices.shape, generator=gen, dtype=torch.float64)
    results = []
    for fn in (vertex_normals, vertex_normals_torch):
        leaf = vertices.clone().requires_grad_(True)
        normals = fn(leaf, faces)
        (normals * upstream).sum().backward()
        results.append((normals, leaf.grad))
    for kernel, reference in zip(*results, strict=True):
        torch.testing.assert_close(kernel, reference)


def test_packed_sh_kernel_matches_reference_and_gradcheck():
    gen = torch.Generator().manual_seed(3)
    normals = F.normalize(torch.randn(30, 3, generator=gen, dtype=torch.float64), dim=-1).requires_grad_(True)
    light = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    batch = torch.randint(0, 2, (30,), generator=gen)
    reference = (sh_basis(normals)[:, :, None] * light[batch]).sum(1)
    torch.testing.assert_close(sh_shading_packed(normals, light, batch), reference)
    scaled = light * torch.tensor(SH_CONSTANTS, dtype=torch.float64)[:, None]
    torch.testing.assert_close(sh_shading_packed_torch(normals, scaled, batch), reference)
    torch.autograd.gradcheck(lambda n, s: sh_shading_packed(n, s, batch), (normals, light))
    shared = light[:1].detach().clone().requires_grad_(True)  # one light for every image
    torch.autograd.gradcheck(lambda n, s: sh_shading_packed(n, s, batch), (normals, shared))
    image = normals.detach().t().reshape(1, 3, 5, 6)
    torch.testing.assert_close(
        shape_shading_packed(normals.detach()).t().reshape(1, 1, 5, 6).expand(1, 3, 5, 6),
        shape_shading_image(image),
    )
    torch.autograd.gradcheck(shape_shading_packed, (normals,))
    directions = F.normalize(
        torch.tensor([[-1.0, 1, 1], [1, 1, 1], [-1, -1, 1], [1, -1, 1], [0, 0, 1]]), dim=-1
    )
    expected = (normals @ directions.t().double()).clamp(0, 1).mean(-1, keepdim=True) * 1.7 * 180 / 255
    torch.testing.assert_close(shape_shading_packed(normals), expected)


@pytest.mark.parametrize(("shape", "dim"), [((2, 3, 16, 16), 1), ((2, 50, 3), -1)])
def test_unit_vectors_is_f_normalize(shape, dim):
    """Values and gradients of F.normalize, zero vectors included (length clamped to eps)."""
    torch.manual_seed(0)
    vectors = torch.randn(*shape, dtype=torch.float64)
    vectors.select(dim, 0).zero_(), vectors.select(dim, 1).zero_(), vectors.select(dim, 2).zero_()
    vectors[0, 1:] = torch.randn_like(vectors[0, 1:])  # some zero vectors, the rest random
    vectors.requires_grad_(True)
    upstream = torch.randn(*shape, dtype=torch.float64)
    got = unit_vectors(vectors, dim=dim)
    want = F.normalize(vectors, dim=dim, eps=1e-12)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    (grad_got,) = torch.autograd.grad((got * upstream).sum(), vectors)
    (grad_want,) = torch.autograd.grad((want * upstream).sum(), vectors)
    torch.testing.assert_close(grad_got, grad_want, atol=1e-9, rtol=1e-9)


def test_unit_vectors_of_small_float16_vectors_stay_finite():
    vectors = torch.tensor([[1e-4, 2e-4, 0.0], [3.0, 4.0, 0.0]], dtype=torch.float16)
    out = unit_vectors(vectors)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), F.normalize(vectors.float(), dim=-1), atol=1e-3, rtol=1e-3)
