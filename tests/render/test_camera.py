"""Camera conventions: NDC ↔ pixels, DECA's weak perspective, the pinhole camera, landmarks vs raster."""

from __future__ import annotations

import pytest
import torch

from vitdeca.render import (
    MeshRenderer,
    PinholeCamera,
    ndc_to_pixels,
    perspective_to_screen,
    pixels_to_ndc,
    project_points,
    rasterize,
    weak_perspective,
    weak_perspective_to_screen,
)


def test_ndc_corners_and_centre_non_square():
    ndc = torch.tensor([[-1.0, 1.0], [1.0, -1.0], [0.0, 0.0], [-1.0, -1.0]])
    pixels = ndc_to_pixels(ndc, height=40, width=60)
    torch.testing.assert_close(pixels, torch.tensor([[0.0, 0.0], [60.0, 40.0], [30.0, 20.0], [0.0, 40.0]]))
    torch.testing.assert_close(pixels_to_ndc(pixels, 40, 60), ndc)


def test_weak_perspective_formula():
    points = torch.tensor([[[1.0, 2.0, 3.0], [-0.5, 0.25, -1.0]]])
    camera = torch.tensor([[2.0, 0.5, -1.0]])
    expected = torch.tensor([[[3.0, 2.0, 6.0], [0.0, -1.5, -2.0]]])  # s*(X+tx), s*(Y+ty), s*Z
    torch.testing.assert_close(weak_perspective(points, camera), expected)
    screen = weak_perspective_to_screen(points, camera, 10, 20)
    torch.testing.assert_close(screen[..., 2], -expected[..., 2])  # depth = -z_ndc: nearer = smaller
    torch.testing.assert_close(screen[..., :2], ndc_to_pixels(expected[..., :2], 10, 20))
    torch.testing.assert_close(project_points(points, camera, 10, 20), screen[..., :2])
    with pytest.raises(ValueError, match="camera"):
        weak_perspective(points, torch.ones(1, 2))


def test_model_y_up_is_image_up_and_nearer_face_wins():
    # two parallel squares; the one with larger model z (towards the viewer) must be visible
    square = torch.tensor([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
    back = torch.cat([square, torch.full((4, 1), -1.0)], 1)
    front = torch.cat([square, torch.full((4, 1), 1.0)], 1)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 6], [5, 7, 6]])
    screen = weak_perspective_to_screen(torch.cat([back, front])[None], torch.tensor([[1.0, 0.0, 0.0]]), 8, 8)
    frags = rasterize(screen, faces, 8, 8)
    assert set(frags.face_index[frags.mask].tolist()) == {2, 3}
    top = project_points(torch.tensor([[[0.0, 1.0, 0.0]]]), torch.tensor([[0.5, 0.0, 0.0]]), 8, 8)
    assert top[0, 0, 1] < 4.0  # +Y in the model is above the image centre


def test_landmark_projection_lands_on_rasterised_vertex():
    # a tiny triangle around a projected point: the pixel containing the point is covered by it
    point = torch.tensor([[[0.1234, -0.4321, 0.0]]])
    camera = torch.tensor([[0.9, 0.05, 0.1]])
    pixel = project_points(point, camera, 50, 70)[0, 0]
    tri = point + torch.tensor([[[-0.02, -0.02, 0.0], [0.03, -0.02, 0.0], [0.0, 0.03, 0.0]]])
    frags = rasterize(weak_perspective_to_screen(tri, camera, 50, 70), torch.tensor([[0, 1, 2]]), 50, 70)
    assert frags.mask[0, int(pixel[1]), int(pixel[0])]


def test_pinhole_projection():
    points = torch.tensor([[[0.0, 0.0, -5.0], [1.0, 2.0, -4.0], [0.0, 0.0, 1.0]]])
    screen = perspective_to_screen(points, 100.0, 60, 80)
    torch.testing.assert_close(screen[0, 0], torch.tensor([40.0, 30.0, 5.0]))
    torch.testing.assert_close(screen[0, 1], torch.tensor([40.0 + 25.0, 30.0 - 50.0, 4.0]))
    assert screen[0, 2, 2] < 0  # behind the camera
    camera = PinholeCamera(focal=torch.tensor([100.0]), translation=torch.tensor([[0.0, 0.0, -5.0]]))
    torch.testing.assert_close(camera.project(points[:, :1] * 0, 60, 80), torch.tensor([[[40.0, 30.0]]]))
    rotation = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # 90° about z
    rotated = PinholeCamera(100.0, torch.tensor([[0.0, 0.0, -5.0]]), rotation)
    moved = rotated.to_camera(torch.tensor([[[1.0, 0.0, 0.0]]]))
    torch.testing.assert_close(moved, torch.tensor([[[0.0, 1.0, -5.0]]]))


def test_pinhole_render_of_a_quad(grid_mesh):
    # a 2x2 quad 5 units in front of a camera with focal 40 px spans 16 px around the centre of 32x32
    vertices, faces, uv = grid_mesh(2, 2, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    renderer = MeshRenderer(faces, uv, faces, image_size=32, uv_size=8)
    camera = PinholeCamera(focal=40.0, translation=torch.tensor([[0.0, 0.0, -5.0]]))
    light = torch.zeros(1, 9, 3)
    light[0, 0] = 1.0
    out = renderer(vertices[None], camera, torch.ones(1, 3, 8, 8), light)
    expected = torch.zeros(32, 32)
    expected[8:24, 8:24] = 1
    torch.testing.assert_close(out.alpha[0, 0], expected)
    torch.testing.assert_close(out.depth[0, 0, 8:24, 8:24], torch.full((16, 16), 5.0))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(uv_sphere):
    vertices, faces, uv = uv_sphere(8, 12)
    renderer = MeshRenderer(faces, uv, faces, image_size=40, uv_size=16)
    inputs = [vertices[None], torch.tensor([[0.8, 0.1, 0.0]]), torch.rand(1, 3, 16, 16), torch.rand(1, 9, 3)]
    cpu = renderer(*inputs)
    gpu = renderer.cuda()(*[t.cuda() for t in inputs])
    assert torch.equal(cpu.fragments.face_index, gpu.fragments.face_index.cpu())
    for name in ("image", "depth", "normal_image", "shape_image", "uv_grid"):
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name), atol=1e-5, rtol=1e-5)
