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
    shading_kernels,
    vertex_normals,
    weak_perspective_to_screen,
)
from vitdeca.render.rasterize import (
    barycentric_torch,
    interpolate_packed,
    interpolate_packed_torch,
    scatter_packed,
)
from vitdeca.render.uv import sample_uv_packed, sample_uv_packed_torch


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
    # the numba forward/backward (used on CPU) against plain torch autograd (used on CUDA), at arbitrary
    # (also uncovered) pixels of random triangles
    gen = torch.Generator().manual_seed(6)
    scale = torch.tensor([20.0, 20.0, 2.0], dtype=torch.float64)
    vertices = torch.rand(2, 6, 3, generator=gen, dtype=torch.float64) * scale + torch.tensor([0, 0, 0.5])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [1, 3, 5]])
    pixels = torch.stack(
        [torch.randperm(2 * 20 * 20, generator=gen)[:50], torch.randint(0, 3, (50,), generator=gen)]
    )
    upstream = (
        torch.randn(3, 50, generator=gen, dtype=torch.float64),
        torch.randn(50, generator=gen, dtype=torch.float64),
    )
    results = []
    for fn in (kernels.BarycentricFunction.apply, barycentric_torch):
        leaf = vertices.clone().requires_grad_(True)
        bary, depth = fn(leaf, faces, pixels, (20, 20), perspective)
        ((bary * upstream[0]).sum() + (depth * upstream[1]).sum()).backward()
        results.append((bary, depth, leaf.grad))
    for kernel, reference in zip(*results, strict=True):
        torch.testing.assert_close(kernel, reference)


@pytest.mark.parametrize("per_vertex", [False, True])
@pytest.mark.parametrize("attr_batch", [1, 2])
def test_interpolate_kernel_matches_torch(per_vertex, attr_batch):
    # the numba path against the torch path (used on CUDA) and a plain gather written here
    vertices, faces, _ = _scene(7)
    frags = rasterize(vertices.expand(2, -1, -1).contiguous(), faces, 9, 11)
    gen = torch.Generator().manual_seed(8)
    attributes = torch.randn(attr_batch, 6, 4, generator=gen, dtype=torch.float64)
    if not per_vertex:
        attributes = attributes[:, faces]
    upstream = torch.randn(2, 4, 9, 11, generator=gen, dtype=torch.float64)
    results = []
    for packed in (interpolate_packed, interpolate_packed_torch, _interpolate_reference):
        leaf = attributes.clone().requires_grad_(True)
        bary = frags.pixel_bary.detach().clone().requires_grad_(True)
        frags_b = type(frags)(frags.face_index, frags.depth, frags.pixels, bary)
        image = scatter_packed(packed(frags_b, faces, leaf), frags_b, channels_last=False)
        grads = torch.autograd.grad((image * upstream).sum(), (leaf, bary))
        results.append((image, *grads))
    for kernel, *references in zip(*results, strict=True):
        for reference in references:
            torch.testing.assert_close(kernel, reference)


def _interpolate_reference(fragments, faces, attributes):
    """Plain torch interpolation: gather the corner values of every covered pixel → (N,C)."""
    height, width = fragments.face_index.shape[1:]
    b = torch.div(fragments.pixel_index, height * width, rounding_mode="floor") * (attributes.shape[0] > 1)
    if attributes.ndim == 3:
        corners = attributes[b[:, None], faces[fragments.pixel_face]]  # (N,3,C)
    else:
        corners = attributes[b, fragments.pixel_face]
    return (corners * fragments.pixel_bary[:, :, None]).sum(1)


def test_uv_sampling_kernel_matches_grid_sample():
    gen = torch.Generator().manual_seed(9)
    texture = torch.rand(2, 3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(40, 2, generator=gen, dtype=torch.float64) * 2.4 - 1.2).requires_grad_(
        True
    )  # some outside
    batch = torch.sort(torch.randint(0, 2, (40,), generator=gen)).values
    padded = torch.zeros(2, 1, 40, 2, dtype=torch.float64)
    padded[batch, 0, torch.arange(40)] = grid.detach()
    reference = sample_uv_map(texture.detach(), padded)[batch, :, 0, torch.arange(40)]
    for fn in (sample_uv_packed, sample_uv_packed_torch):
        torch.testing.assert_close(fn(texture, grid, batch), reference)
        torch.autograd.gradcheck(lambda t, g, fn=fn: fn(t, g, batch), (texture, grid))
    shared = texture[:1].detach().clone().requires_grad_(True)
    torch.testing.assert_close(
        sample_uv_packed(shared, grid, batch), sample_uv_packed_torch(shared, grid, batch)
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_scatter_and_unit_kernels(channels_last):
    vertices, faces, _ = _scene(10)
    frags = rasterize(vertices, faces, 9, 11)
    gen = torch.Generator().manual_seed(10)
    values = torch.randn(frags.pixel_index.numel(), 3, generator=gen, dtype=torch.float64, requires_grad=True)
    image = scatter_packed(values, frags, channels_last=channels_last)
    reference = torch.zeros(9 * 11, 3, dtype=torch.float64).index_copy(0, frags.pixel_index, values.detach())
    reference = reference.view(1, 9, 11, 3)
    torch.testing.assert_close(image, reference if channels_last else reference.permute(0, 3, 1, 2))
    torch.autograd.gradcheck(lambda v: scatter_packed(v, frags, channels_last=channels_last), (values,))
    vectors = torch.randn(3, 20, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(
        shading_kernels.UnitFunction.apply(vectors), F.normalize(vectors.detach(), dim=0)
    )
    torch.autograd.gradcheck(shading_kernels.UnitFunction.apply, (vectors,))
