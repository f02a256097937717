"""ICT-FaceKit's eyeballs: the extra cache, rigid gaze rotation about the pivot, head pose, and the
inverse (gaze from where the iris is seen)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitdeca.head.eye_assets import eye_cache_files, fit_sphere
from vitdeca.head.eyes import gaze_angles, gaze_from_image, gaze_rotation, iris_ellipse
from vitdeca.head.ict_assets import cache_paths, read_manifest


@pytest.fixture(scope="module")
def eyes(ict_head):
    eyes = ict_head.eyeballs()
    assert eyes is not None
    return eyes


def test_eye_cache_is_separate_and_leaves_the_head_cache_alone(eyes, ict_home):
    paths = cache_paths(ict_home)
    arrays, manifest = eye_cache_files(paths)
    assert arrays.is_file() and manifest.is_file() and arrays != paths.arrays
    assert read_manifest(paths)["n_vertices"] == 14062  # the head cache still holds the kept prefix only


def test_eyeball_geometry(eyes):
    assert eyes.n_vertices == 2 * 770 and int(eyes.faces.max()) < eyes.n_vertices
    left = eyes.template[eyes.eye_index == 0].double().numpy()
    right = eyes.template[eyes.eye_index == 1].double().numpy()
    assert np.allclose(left[:, 0], -right[:, 0], atol=1e-3)  # mirror images
    centre, radius = fit_sphere(left)
    assert np.linalg.norm(centre - eyes.pivot[0].numpy()) < 0.15 and 1.3 < radius < 1.8  # cm
    for rest in eyes.rest.numpy():
        assert np.allclose(rest.T @ rest, np.eye(3), atol=1e-5) and np.linalg.det(rest) > 0
        assert rest[2, 2] > 0.95  # the optical axis looks forward (+z)
    texture = eyes.texture(64)
    assert texture.shape == (64, 64, 3) and texture.min() < 0.1 and texture.max() > 0.7


def test_gaze_rotation_matches_the_angles():
    gaze = torch.tensor([[20.0, -10.0], [-35.0, 25.0], [0.0, 0.0]])
    rot = gaze_rotation(gaze).double()
    assert torch.allclose(
        rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand(3, 3, 3), atol=1e-6
    )
    forward = rot[:, :, 2].numpy()
    assert np.allclose(gaze_angles(forward), gaze.numpy(), atol=1e-4)
    assert forward[0, 0] > 0 and forward[0, 1] > 0  # yaw + towards the subject's left (+x), pitch - up


def test_gaze_is_rigid_about_the_pivot_and_follows_the_head(eyes):
    shape = torch.randn(2, 100, generator=torch.Generator().manual_seed(0))
    pose = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.4, 0.05]])
    gaze = torch.tensor([[[15.0, 10.0], [15.0, 10.0]], [[-20.0, -5.0], [-20.0, -5.0]]])
    still, turned = eyes(shape, pose), eyes(shape, pose, gaze)
    assert torch.allclose(still.pivots, turned.pivots)
    for b in range(2):
        for e in range(2):
            index = eyes.eye_index == e
            a = still.vertices[b, index] - still.pivots[b, e]
            c = turned.vertices[b, index] - turned.pivots[b, e]
            assert torch.allclose(a.norm(dim=1), c.norm(dim=1), atol=1e-4)  # distances to the pivot kept
            assert torch.allclose(torch.cdist(a, a), torch.cdist(c, c), atol=1e-3)  # rigid
            # the optical axis turned by the gaze: back in the eye's rest frame it gives the angles back
            axes = turned.axes[b, e].double()
            u = (c.double() @ axes).mean(0)  # in rest coordinates: near the optical axis on average
            cornea = (c.double() @ axes)[(c.double() @ axes @ torch.tensor(gaze_dir(gaze[b, e]))) > 1.4]
            assert np.allclose(gaze_angles(cornea.mean(0).numpy()), gaze[b, e].numpy(), atol=3.0), u
    # the head pose rotates pivots about the model origin
    from vitdeca.head.lbs import batch_rodrigues

    neutral = eyes(shape, torch.zeros_like(pose))
    expected = torch.einsum("bij,bej->bei", batch_rodrigues(pose), neutral.pivots)
    assert torch.allclose(still.pivots, expected, atol=1e-5)


def gaze_dir(angles: torch.Tensor) -> np.ndarray:
    return gaze_rotation(angles.double()[None])[0, :, 2].numpy()


@pytest.mark.parametrize("gaze", [(0.0, 0.0), (18.0, -7.0), (-25.0, 12.0)])
def test_gaze_from_image_inverts_the_projection(gaze):
    """A weak-perspective view of an eye on a turned head: the iris centre's pixel gives the gaze back."""
    from scipy.spatial.transform import Rotation

    head = Rotation.from_euler("YXZ", [30.0, -10.0, 5.0], degrees=True).as_matrix()
    rest = Rotation.from_euler("Y", 6.0, degrees=True).as_matrix()
    axes = head @ rest
    scale = np.array([[40.0, 0.0, 0.0], [0.0, -40.0, 0.0]])  # pixels per cm, image y down
    basis = scale @ axes * 1.3  # iris distance 1.3 cm
    pivot = np.array([100.0, 80.0])
    iris = pivot + basis @ gaze_dir(torch.tensor(gaze))
    assert np.allclose(gaze_from_image(iris, pivot, basis), gaze, atol=1e-6)
    # a point beyond the silhouette is pulled onto it, still in the right direction
    far = gaze_from_image(pivot + np.array([200.0, 0.0]), pivot, basis)
    assert far[0] > 30.0


@pytest.mark.parametrize("gaze", [(0.0, 0.0), (25.0, -10.0), (-15.0, 20.0)])
def test_iris_ellipse_is_the_rim_seen_in_the_image(gaze):
    """Every point of the iris rim (a circle about the optical axis, drawn here from its own orthonormal
    frame) projects onto the ellipse about the projected iris centre."""
    from scipy.spatial.transform import Rotation

    axes = Rotation.from_euler("YXZ", [-20.0, 15.0, 5.0], degrees=True).as_matrix()
    basis = np.array([[40.0, 0.0, 0.0], [0.0, -40.0, 0.0]]) @ axes * 1.2
    ratio = 0.55
    ellipse = iris_ellipse(np.array(gaze), basis, ratio)
    u = gaze_dir(torch.tensor(gaze))
    a = np.cross(u, [0.3, 0.9, 0.1])
    a /= np.linalg.norm(a)
    b = np.cross(u, a)
    t = np.linspace(0.0, 2.0 * np.pi, 17)
    rim = basis @ (ratio * (np.outer(np.cos(t), a) + np.outer(np.sin(t), b))).T  # about the centre
    assert np.allclose(np.linalg.norm(np.linalg.solve(ellipse, rim), axis=0), 1.0, atol=1e-9)
