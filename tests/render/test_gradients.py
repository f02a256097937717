"""Gradients: gradcheck on interpolation and shading, finite differences through the renderer, and an
optimisation round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vitdeca.render import (
    MeshRenderer,
    interpolate,
    kernels,
    rasterize,
    sample_uv_map,
    sh_shading,
    sh_shading_image,
    vertex_normals,
    weak_perspective_to_screen,
)
from vitdeca.render.rasterize import barycentric_torch


def _scene(seed=0):
    """Two overlapping triangles in a 9x11 image (float64 screen vertices)."""
    gen = torch.Generator().manual_seed(seed)
    vertices = torch.tensor(
        [
            [
                [1.2, 0.7, 1.0],
                [10.1, 2.3, 2.0],
                [3.1, 8.6, 1.5],
                [0.4, 4.2, 0.5],
                [9.3, 8.8, 3.0],
                [6.6, 0.2, 2.5],
            ]
        ],
        dtype=torch.float64,
    )
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    colours = torch.rand(1, 6, 2, generator=gen, dtype=torch.float64)
    return vertices, faces, colours


def test_gradcheck_interpolate_attributes():
    vertices, faces, colours = _scene()
    frags = rasterize(vertices, faces, 9, 11)
    assert frags.mask.sum() > 30
    colours.requires_grad_(True)
    torch.autograd.gradcheck(lambda c: interpolate(frags, faces, c), (colours,))
    per_corner = colours.detach()[:, faces].clone().requires_grad_(True)  # (1,F,3,C)
    torch.autograd.gradcheck(lambda c: interpolate(frags, None, c), (per_corner,))
    torch.testing.assert_close(interpolate(frags, None, per_corner), interpolate(frags, faces, colours))


@pytest.mark.parametrize("perspective", [False, True])
def test_gradcheck_through_barycentrics(perspective):
    vertices, faces, colours = _scene(1)

    def image(v):
        frags = rasterize(v, faces, 9, 11, perspective_correct=perspective)
        return interpolate(frags, faces, colours), frags.depth

    torch.autograd.gradcheck(image, (vertices.requires_grad_(True),))


def test_gradcheck_shading():
    gen = torch.Generator().manual_seed(2)
    normals = F.normalize(torch.randn(2, 5, 3, generator=gen, dtype=torch.float64), dim=-1).requires_grad_(
        True
    )
    light = torch.randn(2, 9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(sh_shading, (normals, light))
    image = normals.detach().permute(0, 2, 1).reshape(2, 3, 1, 5)
    torch.testing.assert_close(
        sh_shading_image(image, light).reshape(2, 3, 5).transpose(1, 2), sh_shading(normals, light)
    )
    vertices = torch.randn(1, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [1, 4, 2]])
    torch.autograd.gradcheck(lambda v: vertex_normals(v, faces), (vertices,))
    texture = torch.rand(1, 3, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(1, 3, 2, 2, generator=gen, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    torch.autograd.gradcheck(sample_uv_map, (texture, grid))


def _sphere_renderer(uv_sphere, size=24):
    vertices, faces, uv = uv_sphere(6, 10, dtype=torch.float64)
    renderer = MeshRenderer(faces, uv, faces, image_size=size, uv_size=16).double()
    renderer.face_uvs = renderer.face_uvs.double()
    return vertices[None], renderer


def test_finite_differences_match_autograd(uv_sphere):
    vertices, renderer = _sphere_renderer(uv_sphere)
    gen = torch.Generator().manual_seed(3)
    camera = torch.tensor([[0.8, 0.05, -0.02]], dtype=torch.float64)
    albedo = torch.rand(1, 3, 16, 16, generator=gen, dtype=torch.float64)
    light = torch.randn(1, 9, 3, generator=gen, dtype=torch.float64) * 0.3
    light[:, 0] += 2.0
    weights = torch.rand(1, 3, 24, 24, generator=gen, dtype=torch.float64)

    def loss(v):
        return (renderer(v, camera, albedo, light).image * weights).sum()

    vertices = vertices.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(vertices), vertices)
    base = renderer(vertices.detach(), camera, albedo, light).fragments.face_index
    checked, eps = 0, 1e-6
    for k in torch.randperm(vertices.shape[1], generator=gen)[:12]:
        for axis in range(3):
            plus, minus = vertices.detach().clone(), vertices.detach().clone()
            plus[0, k, axis] += eps
            minus[0, k, axis] -= eps
            same = [
                torch.equal(renderer(v, camera, albedo, light).fragments.face_index, base)
                for v in (plus, minus)
            ]
            if not all(same):
                continue  # visibility changed: no gradient expected to match
            numeric = (loss(plus) - loss(minus)) / (2 * eps)
            torch.testing.assert_close(grad[0, k, axis], numeric, rtol=1e-4, atol=1e-6)
            checked += 1
    assert checked >= 20


def _optimise(parameters, error, steps, lr, mask=None):
    optimiser = torch.optim.Adam(parameters, lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        error().backward()
        if mask is not None:
            parameters[0].grad *= mask
        optimiser.step()


def _plane_scene(grid_mesh):
    """A grid mesh filling the whole 32x32 image (no silhouettes) with a smooth albedo map."""
    vertices, faces, uv = grid_mesh(4, 4, -1.2, -1.2, 1.2, 1.2, dtype=torch.float32)
    renderer = MeshRenderer(faces, uv, faces, image_size=32, uv_size=32)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    albedo = torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(6 * xx + 4 * yy)])[None]
    light = torch.zeros(1, 9, 3)
    light[:, 0] = 3.0
    return vertices[None], renderer, albedo, light, torch.tensor([[1.0, 0.0, 0.0]])


def test_optimisation_recovers_vertices(grid_mesh):
    vertices, renderer, albedo, light, camera = _plane_scene(grid_mesh)
    target = renderer(vertices, camera, albedo, light).image
    gen = torch.Generator().manual_seed(4)
    interior = (vertices[..., :2].abs() < 1.0).all(-1, keepdim=True).float()  # 3x3 inner vertices move
    offset = (torch.rand(vertices.shape, generator=gen) - 0.5) * torch.tensor([0.12, 0.12, 0.0])
    start = (vertices + offset * interior).requires_grad_(True)
    guess = (light * 0.8).requires_grad_(True)

    def error():
        return (renderer(start, camera, albedo, guess).image - target).pow(2).mean()

    initial, initial_offset = error().item(), (start - vertices).abs().max().item()
    _optimise([start, guess], error, steps=80, lr=0.01, mask=interior)
    assert error().item() < initial / 20
    assert (start - vertices).abs().max().item() < initial_offset / 5


def test_optimisation_recovers_colours(grid_mesh):
    vertices, renderer, albedo, light, camera = _plane_scene(grid_mesh)
    target = renderer(vertices, camera, albedo, light).image
    gen = torch.Generator().manual_seed(5)
    colours = (albedo + 0.3 * (torch.rand(albedo.shape, generator=gen) - 0.5)).requires_grad_(True)

    def error():
        return (renderer(vertices, camera, colours, light).image - target).pow(2).mean()

    initial = error().item()
    _optimise([colours], error, steps=60, lr=0.02)
    assert error().item() < initial / 20


def test_gradient_reaches_camera_and_light(uv_sphere):
    vertices, faces, uv = uv_sphere(8, 12)
    renderer = MeshRenderer(faces, uv, faces, image_size=32, uv_size=16)
    camera = torch.tensor([[0.7, 0.0, 0.0]], requires_grad=True)
    light = torch.zeros(1, 9, 3)
    light[:, 0] = 2.0
    light.requires_grad_(True)
    albedo = torch.rand(1, 3, 16, 16, requires_grad=True)
    out = renderer(vertices[None], camera, albedo, light)
    (out.image.mean() + out.depth.mean()).backward()
    for tensor in (camera, light, albedo):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    screen = weak_perspective_to_screen(vertices[None], camera.detach(), 32, 32)
    torch.testing.assert_close(out.screen_vertices, screen)


@pytest.mark.parametrize("perspective", [False, True])
def test_cpu_kernels_match_torch_autograd(perspective):
    # the numba forward/backward (used on CPU) against plain torch autograd (used on CUDA)
    gen = torch.Generator().manual_seed(6)
    rows = torch.rand(12, 3, generator=gen, dtype=torch.float64) * torch.tensor(
        [20.0, 20.0, 2.0]
    ) + torch.tensor([0.0, 0.0, 0.5])
    corner = torch.randint(0, 12, (3, 40), generator=gen)
    corner = corner[:, (corner[0] != corner[1]) & (corner[1] != corner[2]) & (corner[0] != corner[2])]
    centre = torch.rand(2, corner.shape[1], generator=gen, dtype=torch.float64) * 20
    grads = (
        torch.randn(3, corner.shape[1], generator=gen, dtype=torch.float64),
        torch.randn(corner.shape[1], generator=gen, dtype=torch.float64),
    )
    results = []
    for fn in (kernels.BarycentricFunction.apply, barycentric_torch):
        leaf = rows.clone().requires_grad_(True)
        bary, depth = fn(leaf, corner, centre, perspective)
        ((bary * grads[0]).sum() + (depth * grads[1]).sum()).backward()
        results.append((bary, depth, leaf.grad))
    for kernel, reference in zip(*results, strict=True):
        torch.testing.assert_close(kernel, reference)

    attributes = torch.randn(12, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    weights = bary.detach().clone().requires_grad_(True)
    upstream = torch.randn(4, corner.shape[1], generator=gen, dtype=torch.float64)
    kernel_out = kernels.InterpolateFunction.apply(attributes, corner, weights)
    kernel_grads = torch.autograd.grad((kernel_out * upstream).sum(), (attributes, weights))
    reference = (attributes[corner] * weights[:, :, None]).sum(0).t()
    reference_grads = torch.autograd.grad((reference * upstream).sum(), (attributes, weights))
    torch.testing.assert_close(kernel_out, reference)
    for kernel, expected in zip(kernel_grads, reference_grads, strict=True):
        torch.testing.assert_close(kernel, expected)
