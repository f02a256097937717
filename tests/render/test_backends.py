"""The torch visibility pass (``backend="torch"``) against the numba z-buffer: identical face index on
every mesh the renderer tests use, barycentrics, depth and gradients equal to float tolerance."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

from vitdeca.head.lbs import batch_rodrigues
from vitdeca.render import PinholeCamera, interpolate, rasterize, weak_perspective_to_screen
from vitdeca.render.zbuffer_torch import ZBufferSettings, zbuffer_torch

_spec = importlib.util.spec_from_file_location("_raster_tests", Path(__file__).with_name("test_rasterize.py"))
_raster_tests = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_raster_tests)
random_mesh, brute_force = _raster_tests.random_mesh, _raster_tests.brute_force


def assert_same(vertices, faces, height, width, chunks=(None, 5), **options):
    """Both backends give the same face index (also with tiny chunks); barycentrics and depth agree."""
    ref = rasterize(vertices, faces, height, width, backend="numba", **options)
    out = rasterize(vertices, faces, height, width, backend="torch", **options)
    assert torch.equal(out.face_index, ref.face_index)
    torch.testing.assert_close(out.depth, ref.depth, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out.pixel_bary, ref.pixel_bary, rtol=1e-5, atol=1e-5)
    near = options.get("near", 1e-6 if options.get("perspective_correct") else None)
    for chunk in chunks[1:]:
        settings = ZBufferSettings(height, width, options.get("perspective_correct", False),
                                   options.get("cull_backfaces", False), near)  # fmt: skip
        index = zbuffer_torch(vertices, faces, settings, chunk=chunk)
        assert torch.equal(index, ref.face_index), f"chunk {chunk}"
    return ref


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("perspective", [False, True])
def test_random_soups(seed, perspective):
    vertices, faces = random_mesh(seed, batch=3, n_faces=60, height=29, width=31)
    ref = assert_same(vertices, faces, 29, 31, chunks=(None, 997), perspective_correct=perspective)
    assert ref.mask.float().mean() > 0.5


def test_against_brute_force_float32_culled():
    vertices, faces = random_mesh(5, dtype=torch.float32)
    out = rasterize(vertices, faces, 17, 23, cull_backfaces=True, backend="torch")
    ref_index, _, _ = brute_force(vertices.double(), faces, 17, 23, cull=True)
    assert torch.equal(out.face_index, torch.from_numpy(ref_index))
    assert_same(vertices, faces, 17, 23, cull_backfaces=True)


def test_ties_degenerate_and_near():
    quad = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])
    far, near = torch.cat([quad, torch.full((4, 1), 2.0)], 1), torch.cat([quad, torch.full((4, 1), 1.0)], 1)
    collinear = torch.tensor([[1.0, 1.0, 0.5], [5.0, 5.0, 0.5], [3.0, 3.0, 0.5]])
    vertices = torch.cat([far, near, near, collinear])[None].double()
    # faces 1 and 2 coincide (tie → 1), 4 and 5 share the diagonal, 3 is a zero-area face in front
    faces = torch.tensor([[0, 1, 2], [4, 5, 6], [8, 9, 10], [12, 13, 14], [5, 7, 6], [1, 3, 2]])
    ref = assert_same(vertices, faces, 8, 8, chunks=(None, 13))
    assert ref.face_index[0, 0, 0] == 1 and (ref.face_index != 3).all()
    assert_same(vertices, faces, 8, 8, near=1.5)
    assert_same(vertices, faces, 8, 8, cull_backfaces=True)


@pytest.mark.parametrize("n_verts", [0, 3])
def test_empty_inputs(n_verts):
    vertices = torch.rand(2, n_verts, 3)
    empty = torch.zeros(0, 3, dtype=torch.long)
    assert (rasterize(vertices, empty, 5, 6, backend="torch").face_index == -1).all()
    outside = torch.tensor([[[-5.0, -5.0, 1.0], [-1.0, -5.0, 1.0], [-5.0, -1.0, 1.0]]])
    assert not rasterize(outside, torch.tensor([[0, 1, 2]]), 4, 4, backend="torch").mask.any()
    assert rasterize(torch.rand(0, 3, 3), torch.tensor([[0, 1, 2]]), 4, 4, backend="torch").mask.shape == (
        0, 4, 4,
    )  # fmt: skip


def test_large_triangles_in_small_chunks():
    corners = torch.tensor([[0.0, 0.0, 1.0], [300.0, 0.0, 1.0], [0.0, 300.0, 1.0], [300.0, 300.0, 1.0]])
    huge = torch.tensor([[-1e30, -1e30, 2.0], [1e30, -1e30, 2.0], [0.0, 1e30, 2.0]])
    vertices = torch.cat([corners, huge])[None].double()
    faces = torch.tensor([[0, 2, 1], [1, 2, 3], [4, 5, 6]])
    ref = assert_same(vertices, faces, 300, 300, chunks=(None, 4096, 99_999))
    assert ref.mask.all() and (ref.face_index < 2).all()


@pytest.mark.parametrize("yaw", [-70.0, 0.0, 35.0])
def test_ict_head_at_several_poses(ict_head, yaw):
    vertices = ict_head.template_vertices.detach().float()[None]
    axis = torch.tensor([[0.1, math.radians(yaw), 0.05 * yaw / 90]])
    posed = vertices @ batch_rodrigues(axis).transpose(1, 2)
    camera = torch.tensor([[0.075, 0.0, 2.0]])
    screen = weak_perspective_to_screen(posed, camera, 96, 80)
    ref = assert_same(screen, ict_head.faces, 96, 80, chunks=(None, 20_000))
    assert ref.mask.float().mean() > 0.1
    assert_same(screen, ict_head.faces, 96, 80, chunks=(None,), cull_backfaces=True)
    pinhole = PinholeCamera(focal=180.0, translation=torch.tensor([[0.0, 2.0, -60.0]]))
    ref = assert_same(pinhole.to_screen(posed, 96, 80), ict_head.faces, 96, 80, perspective_correct=True)
    assert ref.mask.float().mean() > 0.1


@pytest.mark.parametrize("perspective", [False, True])
def test_gradients_agree(perspective):
    gen = torch.Generator().manual_seed(3)
    vertices, faces = random_mesh(11, batch=2, n_faces=30, height=21, width=19)
    colours = torch.rand(2, vertices.shape[1], 4, generator=gen, dtype=torch.float64)
    upstream = torch.rand(2, 4, 21, 19, generator=gen, dtype=torch.float64)
    grads = []
    for backend in ("numba", "torch"):
        v, c = vertices.clone().requires_grad_(True), colours.clone().requires_grad_(True)
        frags = rasterize(v, faces, 21, 19, perspective_correct=perspective, backend=backend)
        loss = (interpolate(frags, faces, c) * upstream).sum() + frags.depth.square().sum()
        grads.append(torch.autograd.grad(loss, (v, c)))
    for numba_grad, torch_grad in zip(*grads, strict=True):
        assert numba_grad.abs().max() > 0
        torch.testing.assert_close(torch_grad, numba_grad, rtol=1e-9, atol=1e-9)


def test_unknown_backend_is_a_programming_error():
    with pytest.raises(ValueError, match="backend"):
        rasterize(torch.rand(1, 3, 3), torch.tensor([[0, 1, 2]]), 4, 4, backend="opengl")
