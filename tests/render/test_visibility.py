"""Self-occlusion of landmarks (vitdeca.render.visibility) against hand-made depth images and a brute-force
ray cast through the ICT head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vitdeca.render.visibility import TOLERANCE, depth_visibility, mesh_visibility, render_visibility


def test_depth_test_on_a_hand_made_depth_image():
    depth = torch.zeros(1, 1, 20, 20)
    covered = torch.zeros(1, 1, 20, 20)
    depth[..., 5:15, 5:15] = 1.0  # a square occluder at depth 1
    covered[..., 5:15, 5:15] = 1.0
    points = torch.tensor(
        [
            [10.5, 10.5, 2.0],  # behind the square, its centre: hidden
            [10.5, 10.5, 0.5],  # in front of it: visible
            [10.5, 10.5, 1.05],  # on it, within the tolerance: visible
            [2.5, 2.5, 5.0],  # far behind but over background: visible
            [5.2, 10.5, 5.0],  # at the square's edge: the 3x3 window reaches background: visible
            [-3.0, 4.0, 9.0],  # off the image: visible
            [13.5, 6.5, 1.5],  # behind, inside: hidden
        ]
    )[None]
    visible = depth_visibility(points, depth, covered, torch.tensor([0.1]))
    assert visible[0].tolist() == [False, True, True, True, True, True, False]


def _ray_cast_visibility(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, slack: float):
    """Brute force: a point is hidden when a ray from it towards +z (the viewer) crosses a triangle more
    than ``slack`` in front of it (barycentric test of the projected triangles, all of them)."""
    tri = vertices[faces]  # (F,3,3)
    out = []
    for p in points:
        a, b, c = tri[:, 0, :2] - p[:2], tri[:, 1, :2] - p[:2], tri[:, 2, :2] - p[:2]
        cross = lambda u, v: u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]  # noqa: E731
        w0, w1, w2 = cross(b, c), cross(c, a), cross(a, b)
        area = w0 + w1 + w2
        inside = (np.sign(w0) == np.sign(area)) & (np.sign(w1) == np.sign(area))
        inside &= (np.sign(w2) == np.sign(area)) & (np.abs(area) > 1e-12)
        z = (w0 * tri[:, 0, 2] + w1 * tri[:, 1, 2] + w2 * tri[:, 2, 2]) / np.where(inside, area, 1.0)
        out.append(not np.any(inside & (z > p[2] + slack)))
    return np.array(out)


@pytest.mark.parametrize("yaw", [0.0, 40.0, 70.0, -85.0])
def test_ict_landmarks_agree_with_a_ray_cast(ict_head, yaw):
    rotvec = Rotation.from_euler("y", yaw, degrees=True).as_rotvec()
    zeros = [torch.zeros(1, n) for n in (ict_head.n_shape, ict_head.n_expression)]
    out = ict_head(*zeros, torch.tensor(rotvec, dtype=torch.float32)[None])
    visible = mesh_visibility(out.vertices, ict_head.faces, out.landmarks3d, resolution=256)[0].numpy()
    points = out.landmarks3d[0].double().numpy()
    box = np.mean(points[:, :2].max(0) - points[:, :2].min(0))
    slack = TOLERANCE * box
    expected = _ray_cast_visibility(out.vertices[0].double().numpy(), ict_head.faces.numpy(), points, slack)
    # the rasterised test is a little lenient at occlusion edges (3x3 window): a few borderline points
    assert (visible != expected).sum() <= 4
    assert not (expected & ~visible).any()  # never hides a point the ray cast sees
    if yaw == 0.0:
        assert visible.all()
    if abs(yaw) >= 70:
        far_eye = range(42, 48) if yaw > 0 else range(36, 42)
        near_eye = range(36, 42) if yaw > 0 else range(42, 48)
        assert not visible[list(far_eye)].all() and visible[list(near_eye)].all()


def test_render_visibility_matches_mesh_visibility(ict_head):
    from vitdeca.render import MeshRenderer

    renderer = MeshRenderer(ict_head.faces, ict_head.uv_coords, ict_head.uv_faces, image_size=160)
    rotvec = Rotation.from_euler("y", 75, degrees=True).as_rotvec()
    zeros = [torch.zeros(1, n) for n in (ict_head.n_shape, ict_head.n_expression)]
    out = ict_head(*zeros, torch.tensor(rotvec, dtype=torch.float32)[None])
    camera = torch.tensor([[0.06, 0.0, 0.0]])
    render = renderer(out.vertices, camera, torch.full((1, 3, 8, 8), 0.5), torch.zeros(1, 9, 3))
    seen = render_visibility(out.landmarks3d, camera, render.depth, render.alpha)
    reference = mesh_visibility(out.vertices, ict_head.faces, out.landmarks3d, resolution=160)
    assert (seen != reference).sum() <= 4 and not seen.all()
