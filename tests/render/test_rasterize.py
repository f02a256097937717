"""The numba z-buffer + differentiable barycentrics against a brute-force reference, and degenerate input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from vitdeca.errors import NonFiniteError, VitdecaError
from vitdeca.render import interpolate, rasterize


def brute_force(vertices, faces, height, width, perspective=False, cull=False, near=-np.inf):
    """Every pixel centre against every triangle, in plain Python (float64)."""
    verts = np.asarray(vertices, dtype=np.float64)
    batch = verts.shape[0]
    face_index = np.full((batch, height, width), -1)
    depth = np.zeros((batch, height, width))
    bary = np.zeros((batch, height, width, 3))
    for b in range(batch):
        for i in range(height):
            for j in range(width):
                px, py, best = j + 0.5, i + 0.5, np.inf
                for f, (a, c, d) in enumerate(np.asarray(faces)):
                    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = verts[b, a], verts[b, c], verts[b, d]
                    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
                    if abs(area) < 1e-12 or (cull and area > 0) or min(z0, z1, z2) < near:
                        continue
                    w = [
                        ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) / area,
                        ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) / area,
                        ((x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)) / area,
                    ]
                    if min(w) < 0:
                        continue
                    if perspective:
                        t = [w[0] / z0, w[1] / z1, w[2] / z2]
                        w, z = [k / sum(t) for k in t], 1.0 / sum(t)
                    else:
                        z = w[0] * z0 + w[1] * z1 + w[2] * z2
                    if z < best:
                        best, face_index[b, i, j], depth[b, i, j], bary[b, i, j] = z, f, z, w
    return face_index, depth, bary


def random_mesh(seed, batch=2, n_faces=14, height=17, width=23, z_range=(0.5, 3.0), dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    n_verts = 3 * n_faces
    xy = torch.rand(batch, n_verts, 2, generator=gen, dtype=dtype) * torch.tensor([width + 6, height + 6]) - 3
    z = torch.rand(batch, n_verts, 1, generator=gen, dtype=dtype) * (z_range[1] - z_range[0]) + z_range[0]
    faces = torch.randperm(n_verts, generator=gen).view(n_faces, 3)
    return torch.cat([xy, z], -1), faces


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("perspective", [False, True])
def test_matches_brute_force(seed, perspective):
    vertices, faces = random_mesh(seed)
    frags = rasterize(vertices, faces, 17, 23, perspective_correct=perspective)
    ref_index, ref_depth, ref_bary = brute_force(
        vertices, faces, 17, 23, perspective, near=1e-6 if perspective else -np.inf
    )
    assert (ref_index >= 0).mean() > 0.3  # the scene is not trivially empty
    np.testing.assert_array_equal(frags.face_index.numpy(), ref_index)
    np.testing.assert_allclose(frags.depth.numpy(), ref_depth, rtol=0, atol=1e-9)
    np.testing.assert_allclose(frags.bary.numpy(), ref_bary, rtol=0, atol=1e-5)


def test_matches_brute_force_float32_and_culling():
    vertices, faces = random_mesh(5, dtype=torch.float32)
    frags = rasterize(vertices, faces, 17, 23, cull_backfaces=True)
    ref_index, ref_depth, ref_bary = brute_force(vertices.double(), faces, 17, 23, cull=True)
    np.testing.assert_array_equal(frags.face_index.numpy(), ref_index)
    np.testing.assert_allclose(frags.depth.numpy(), ref_depth, atol=1e-5)
    np.testing.assert_allclose(frags.bary.numpy(), ref_bary, atol=1e-4)


def test_serial_kernel_in_thread_matches_parallel():
    vertices, faces = random_mesh(7, batch=3, n_faces=40, height=40, width=30)
    main = rasterize(vertices, faces, 40, 30)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("f", rasterize(vertices, faces, 40, 30)))
    thread.start()
    thread.join()
    assert torch.equal(main.face_index, result["f"].face_index)


def test_pixel_centre_convention_by_hand():
    # right triangle with the right angle at the origin, legs of 3 pixels (y down): covered centres satisfy
    # x + y <= 3 with x = j + 0.5, y = i + 0.5
    vertices = torch.tensor([[[0.0, 0.0, 1.0], [3.0, 0.0, 1.0], [0.0, 3.0, 1.0]]])
    frags = rasterize(vertices, torch.tensor([[0, 1, 2]]), 4, 4)
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(frags.mask[0], expected)
    # pixel (row 0, col 1): centre (1.5, 0.5) → bary (1 - 0.5 - 1/6, 0.5, 1/6)
    torch.testing.assert_close(frags.bary[0, 0, 1], torch.tensor([1 / 3, 0.5, 1 / 6]))


def test_nearer_depth_wins_and_ties_go_to_lower_index():
    quad = torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]])
    far, near = torch.cat([quad, torch.full((4, 1), 2.0)], 1), torch.cat([quad, torch.full((4, 1), 1.0)], 1)
    faces = torch.tensor([[0, 1, 2], [4, 5, 6], [8, 9, 10]])
    vertices = torch.cat([far, near, near])[None]  # faces 1 and 2 coincide at depth 1
    frags = rasterize(vertices, faces, 8, 8)
    assert frags.face_index[0, 0, 0] == 1
    assert frags.depth[0, 0, 0] == pytest.approx(1.0)


def test_zero_area_and_back_facing():
    degenerate = torch.tensor([[1.0, 1.0, 1.0], [5.0, 5.0, 1.0], [3.0, 3.0, 1.0]])  # collinear
    front = torch.tensor([[0.0, 8.0, 1.0], [8.0, 8.0, 1.0], [0.0, 0.0, 1.0]])  # clockwise on screen
    back = front[[0, 2, 1]]
    faces = torch.tensor([[0, 1, 2]])
    assert not rasterize(degenerate[None], faces, 8, 8).mask.any()
    assert rasterize(front[None], faces, 8, 8).mask.sum() > 20
    assert torch.equal(rasterize(back[None], faces, 8, 8).mask, rasterize(front[None], faces, 8, 8).mask)
    assert rasterize(front[None], faces, 8, 8, cull_backfaces=True).mask.sum() > 20
    assert not rasterize(back[None], faces, 8, 8, cull_backfaces=True).mask.any()


def test_vertices_behind_the_camera():
    tri = torch.tensor([[[0.0, 0.0, 1.0], [8.0, 0.0, 1.0], [0.0, 8.0, 1.0]]])
    behind = tri.clone()
    behind[0, 1, 2] = -0.5
    faces = torch.tensor([[0, 1, 2]])
    assert rasterize(tri, faces, 8, 8, perspective_correct=True).mask.any()
    assert not rasterize(behind, faces, 8, 8, perspective_correct=True).mask.any()  # dropped, not clipped
    assert not rasterize(tri, faces, 8, 8, near=1.5).mask.any()
    assert rasterize(behind, faces, 8, 8).mask.any()  # orthographic: any depth is valid


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_vertices_raise(bad):
    vertices = torch.rand(1, 3, 3)
    vertices[0, 1, 0] = bad
    with pytest.raises(NonFiniteError, match="NaN or Inf") as raised:
        rasterize(vertices, torch.tensor([[0, 1, 2]]), 4, 4)
    # a numerical failure, not a user error: the trainer counts it, elsewhere it keeps its traceback
    assert isinstance(raised.value, RuntimeError) and not isinstance(raised.value, VitdecaError)


def test_bad_inputs_raise():
    vertices = torch.rand(1, 3, 3)
    with pytest.raises(ValueError, match="face indices"):
        rasterize(vertices, torch.tensor([[0, 1, 3]]), 4, 4)
    with pytest.raises(ValueError, match=r"\(B,V,3\)"):
        rasterize(vertices[0], torch.tensor([[0, 1, 2]]), 4, 4)
    with pytest.raises(ValueError, match="image size"):
        rasterize(vertices, torch.tensor([[0, 1, 2]]), 0, 4)
    with pytest.raises(TypeError, match="floating point"):
        rasterize(vertices.long(), torch.tensor([[0, 1, 2]]), 4, 4)


@pytest.mark.parametrize("n_verts", [0, 3])
def test_empty_mesh(n_verts):
    vertices = torch.rand(2, n_verts, 3, requires_grad=True)
    frags = rasterize(vertices, torch.zeros(0, 3, dtype=torch.long), 5, 6)
    assert frags.face_index.shape == (2, 5, 6) and (frags.face_index == -1).all()
    assert frags.bary.shape == (2, 5, 6, 3) and not frags.bary.any()
    image = interpolate(frags, torch.zeros(0, 3, dtype=torch.long), vertices)
    assert image.shape == (2, 3, 5, 6) and not image.any()


def test_one_pixel_image():
    vertices = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 3.0]]])
    frags = rasterize(vertices, torch.tensor([[0, 1, 2]]), 1, 1)  # centre (0.5, 0.5) lies on the hypotenuse
    assert frags.face_index.item() == 0
    torch.testing.assert_close(frags.bary[0, 0, 0], torch.tensor([0.0, 0.5, 0.5]))
    torch.testing.assert_close(frags.depth[0, 0, 0], torch.tensor(2.5))


def test_large_image_is_watertight():
    # two triangles covering 1024x1024 exactly, sharing the diagonal: every pixel covered, bary sum to 1
    corners = torch.tensor([[0.0, 0.0, 1.0], [1024.0, 0.0, 1.0], [0.0, 1024.0, 1.0], [1024.0, 1024.0, 1.0]])
    faces = torch.tensor([[0, 2, 1], [1, 2, 3]])
    frags = rasterize(corners[None], faces, 1024, 1024)
    assert frags.mask.all()
    torch.testing.assert_close(frags.bary.sum(-1), torch.ones(1, 1024, 1024))
    xy = interpolate(frags, faces, corners[None, :, :2])
    j = torch.arange(1024) + 0.5
    torch.testing.assert_close(xy[0, 0], j.expand(1024, 1024), atol=1e-3, rtol=0)
    torch.testing.assert_close(xy[0, 1], j[:, None].expand(1024, 1024), atol=1e-3, rtol=0)


def test_huge_coordinates_do_not_overflow():
    vertices = torch.tensor(
        [[[-1e30, -1e30, 1.0], [1e30, -1e30, 1.0], [0.0, 1e30, 1.0]]], dtype=torch.float64
    )
    frags = rasterize(vertices, torch.tensor([[0, 1, 2]]), 3, 3)
    assert frags.mask.all()
