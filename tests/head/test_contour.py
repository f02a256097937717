"""ICT-FaceKit's yaw-dependent jaw contour (vitdeca.head.contour): fixed vertices when the head faces the
camera, the silhouette of the posed face when a side turns away (checked against a rasterised mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vitdeca.head.contour import CONTOUR_LANDMARKS, contour_paths, march_contour


def _pose(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> torch.Tensor:
    rotvec = Rotation.from_euler("xyz", [pitch, yaw, roll], degrees=True).as_rotvec()
    return torch.tensor(rotvec, dtype=torch.float32)[None]


def _landmarks(head, pose, shape=None, expression=None):
    shape = torch.zeros(1, head.n_shape) if shape is None else shape
    expression = torch.zeros(1, head.n_expression) if expression is None else expression
    return head(shape, expression, pose)


@pytest.mark.parametrize(("pitch", "roll"), [(0, 0), (20, 0), (-25, 0), (0, 30), (15, -20)])
def test_fixed_vertices_without_yaw(ict_head, pitch, roll):
    out = _landmarks(ict_head, _pose(0.0, pitch, roll))
    torch.testing.assert_close(out.landmarks3d, out.vertices[:, ict_head.landmark_indices], rtol=0, atol=0)


@pytest.mark.parametrize("yaw", [25.0, 45.0, 70.0, 88.0])
def test_near_side_keeps_its_vertices_far_side_slides_forward(ict_head, yaw):
    for sign in (1.0, -1.0):
        out = _landmarks(ict_head, _pose(sign * yaw))
        fixed = out.vertices[0, ict_head.landmark_indices]
        moved = (out.landmarks3d[0] - fixed).norm(dim=-1)
        near, far = (range(0, 8), range(9, 17)) if sign > 0 else (range(9, 17), range(0, 8))
        assert moved[list(near)].max() == 0 and moved[8] == 0  # the chin never marches
        assert moved[list(far)].max() > 0.2  # cm
        # sliding forwards: the far-side points come closer to the camera (larger posed z)
        assert (out.landmarks3d[0, list(far), 2] >= fixed[list(far), 2] - 1e-5).all()


def _face_silhouette(head, vertices: torch.Tensor, size: int = 512) -> tuple[np.ndarray, float, float]:
    """Rasterised mask (size², orthographic along z) of the face-region triangles, with its scale and
    offset: pixel x = (X - x0) * k."""
    from vitdeca.render.rasterize import rasterize

    faces = head.faces[head.face_mask[head.faces].all(dim=1)]
    xy = vertices[0, :, :2]
    x0, k = float(xy.min()) - 1.0, size / (float((xy.max(0).values - xy.min(0).values).max()) + 2.0)
    y_top = float(xy[:, 1].max()) + 1.0
    screen = torch.stack([(xy[:, 0] - x0) * k, (y_top - xy[:, 1]) * k, -vertices[0, :, 2]], dim=-1)
    mask = rasterize(screen[None].double(), faces, size, size).mask[0].numpy()
    return mask, k, x0, y_top


@pytest.mark.parametrize("yaw", [30.0, 50.0, 75.0])
def test_far_side_points_lie_on_the_rendered_silhouette(ict_head, yaw):
    out = _landmarks(ict_head, _pose(yaw))
    mask, k, x0, y_top = _face_silhouette(ict_head, out.vertices)
    far = [k_ for k_ in range(10, 17)]  # yaw > 0: the subject's left (+x) turns away
    for index in far:
        x, y = out.landmarks3d[0, index, :2].tolist()
        row = int((y_top - y) * k)
        columns = np.nonzero(mask[row])[0]
        silhouette_x = (columns.max() + 1) / k + x0  # right edge of the face in the image, model units
        # within one path step (2.5 mm) plus two pixels
        assert abs(x - silhouette_x) < 0.25 + 2.0 / k, (index, x, silhouette_x)


def test_contour_follows_shape_and_expression_with_gradients(ict_head):
    torch.manual_seed(0)
    shape = torch.randn(1, ict_head.n_shape, requires_grad=True)
    expression = torch.zeros(1, ict_head.n_expression)
    expression[0, ict_head.expression_names.index("jawOpen")] = 0.6
    out = _landmarks(ict_head, _pose(60.0), shape, expression)
    out.landmarks3d[0, 14].sum().backward()
    assert shape.grad is not None and shape.grad.abs().sum() > 0
    static = _landmarks(ict_head, _pose(60.0), shape.detach(), expression)
    assert torch.equal(out.landmarks3d[0, 20:], static.landmarks3d[0, 20:])


def test_contour_is_continuous_in_yaw(ict_head):
    """Refined between path points: 0.5° of yaw moves no contour point by more than a path step."""
    previous = None
    for yaw in np.arange(0.0, 90.5, 0.5):
        points = _landmarks(ict_head, _pose(float(yaw))).landmarks3d[0, list(CONTOUR_LANDMARKS), :2]
        if previous is not None:
            assert (points - previous).norm(dim=-1).max() < 0.25
        previous = points


def test_paths_on_a_toy_cylinder():
    """A half cylinder of radius 1 about the y axis (facing +z): the path from the vertex at x = 1 runs
    over the front to x = 0, and marching at yaw θ picks the point at angle θ from the side."""
    angles = np.linspace(0, np.pi, 181)  # 0: +x side, pi/2: front, pi: -x side
    heights = np.array([-0.5, 0.0, 0.5])
    grid = np.array([[np.cos(a), h, np.sin(a)] for h in heights for a in angles])
    n = len(angles)
    rows = [(r * n + i, (r + 1) * n + i) for r in range(2) for i in range(n - 1)]
    quads = [(low, low + 1, high + 1, high) for low, high in rows]
    faces = np.array([tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))])
    landmarks = np.zeros(68, np.int64)
    landmarks[list(CONTOUR_LANDMARKS)] = n  # the middle row's +x vertex (index n + 0)
    paths = contour_paths(grid, faces, landmarks, np.ones(len(grid), bool), step=0.01)
    assert paths.a[0, 0] == n and paths.t[0, 0] == 0 and paths.side[0] == 1
    points = torch.from_numpy(grid).float()
    t = torch.from_numpy(paths.t).float()[..., None]
    path = points[paths.a] * (1 - t) + points[paths.b] * t  # (C,P,3) at rest
    for yaw in (20.0, 45.0, 80.0):
        rot = torch.from_numpy(Rotation.from_euler("y", yaw, degrees=True).as_matrix()).float()[None]
        posed = (path @ rot[0].T)[None]
        point = march_contour(posed, torch.from_numpy(paths.side).float(), rot)[0, 0]
        # the silhouette of a unit cylinder seen along z is at x = 1 whatever the yaw
        assert abs(point[0].item() - 1.0) < 1e-3
        rest = point @ rot[0]  # back to the cylinder's frame: the point at angle yaw from +x
        assert abs(np.degrees(np.arctan2(rest[2].item(), rest[0].item())) - yaw) < 1.0
