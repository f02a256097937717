"""The ICT-FaceKit head model against the archive's own OBJ files and hand-checked geometry."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vitdeca.head import IBUG68_NAMES, HeadOutput
from vitdeca.head.derived import landmark_face_mask
from vitdeca.head.ict_assets import EXPRESSION_NAMES


def _obj_vertices(archive, name: str, n: int) -> np.ndarray:
    """Independent reference: the first ``n`` ``v`` records of an archive OBJ, parsed line by line."""
    with zipfile.ZipFile(archive) as zf:
        member = next(m for m in zf.namelist() if m.endswith(f"FaceXModel/{name}"))
        lines = zf.read(member).decode().splitlines()
    rows = [[float(x) for x in line.split()[1:4]] for line in lines if line.startswith("v ")]
    return np.asarray(rows[:n])


def _codes(head, batch=1):
    return (
        torch.zeros(batch, head.n_shape),
        torch.zeros(batch, head.n_expression),
        torch.zeros(batch, head.n_pose),
    )


def test_interface_sizes_and_buffers(ict_head):
    head = ict_head
    assert (head.name, head.n_shape, head.n_expression, head.n_pose) == ("ict", 100, 55, 3)
    assert head.units_per_mm == 0.1 and head.landmark_names == IBUG68_NAMES
    assert head.n_vertices == 14062 and head.faces.shape == (28068, 3) and head.faces.dtype == torch.long
    assert head.faces.max() < head.n_vertices and head.uv_faces.max() < len(head.uv_coords)
    assert head.uv_faces.shape == head.faces.shape
    assert head.uv_coords.min() >= 0 and head.uv_coords.max() <= 1
    assert list(head.regions) == [
        "face",
        "head_and_neck",
        "mouth_socket",
        "eye_socket_left",
        "eye_socket_right",
    ]
    assert head.expression_names == EXPRESSION_NAMES and len(set(EXPRESSION_NAMES)) == 55
    assert "PupilDilate_L" not in head.expression_names and "jawOpen" in head.expression_names
    assert head.checksum().startswith("ict:") and len(head.checksum()) == 4 + 64


def test_zero_codes_give_the_template_exactly(ict_head):
    out = ict_head(*_codes(ict_head, batch=2))
    assert isinstance(out, HeadOutput) and out.joints is None
    assert out.vertices.shape == (2, 14062, 3) and out.landmarks3d.shape == (2, 68, 3)
    assert torch.equal(out.vertices[1], ict_head.template_vertices)


def test_template_is_the_neutral_obj(ict_head, ict_archive):
    ref = _obj_vertices(ict_archive, "generic_neutral_mesh.obj", ict_head.n_vertices)
    np.testing.assert_array_equal(ict_head.template_vertices.numpy(), ref.astype(np.float32))


@pytest.mark.parametrize("k", [0, 41, 99])
def test_unit_identity_coefficient_reproduces_identity_obj(ict_head, ict_archive, k):
    shape, expression, pose = _codes(ict_head)
    shape[0, k] = 1.0
    got = ict_head(shape, expression, pose).vertices[0].double().numpy()
    ref = _obj_vertices(ict_archive, f"identity{k:03d}.obj", ict_head.n_vertices)
    np.testing.assert_allclose(got, ref, atol=1e-5)  # cm; float32 storage
    assert np.abs(ref - ict_head.template_vertices.numpy()).max() > 0.02  # the mode really moves the mesh


@pytest.mark.parametrize("name", ["jawOpen", "cheekRaiser_R", "mouthShrugUpper", "eyeBlink_L"])
def test_unit_expression_weight_reproduces_expression_obj(ict_head, ict_archive, name):
    shape, expression, pose = _codes(ict_head)
    expression[0, ict_head.expression_names.index(name)] = 1.0
    got = ict_head(shape, expression, pose).vertices[0].double().numpy()
    np.testing.assert_allclose(got, _obj_vertices(ict_archive, f"{name}.obj", ict_head.n_vertices), atol=1e-5)


def test_identity_and_expression_add_linearly(ict_head):
    shape, expression, pose = _codes(ict_head)
    shape[0, 3], expression[0, 28] = 1.5, 0.7
    both = ict_head(shape, expression, pose).vertices
    only_shape = ict_head(shape, torch.zeros_like(expression), pose).vertices
    only_expr = ict_head(torch.zeros_like(shape), expression, pose).vertices
    torch.testing.assert_close(both, only_shape + only_expr - ict_head.template_vertices, atol=1e-5, rtol=0)


def test_native_frame_y_up_face_looking_plus_z(ict_head):
    v = ict_head.template_vertices
    lm = ict_head(*_codes(ict_head)).landmarks3d[0]
    nose_tip = v[v[:, 2].argmax()]
    assert nose_tip[2] > 12 and abs(nose_tip[0]) < 1e-3  # nose points to +z, on the midline
    assert lm[27, 1] > lm[8, 1]  # nose bridge above the chin: y up
    assert (lm[36:42, 0] < 0).all() and (lm[42:48, 0] > 0).all()  # subject's right eye at -x
    assert (lm[0, 0] < 0) and (lm[16, 0] > 0)  # iBUG jaw starts on the subject's right
    # outward winding: the nose-tip triangles face +z
    tri = v[ict_head.faces]
    normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1)
    nearest = (tri.mean(1) - nose_tip).norm(dim=1).argsort()[:8]
    assert (normals[nearest, 2] > 0).all()


def test_landmarks_are_the_readme_vertices_and_follow_the_mesh(ict_head):
    shape, expression, pose = _codes(ict_head)
    expression[0, ict_head.expression_names.index("jawOpen")] = 1.0
    out = ict_head(shape, expression, pose)
    assert ict_head.landmark_indices[51].item() == 0  # README list: upper lip centre is vertex 0
    torch.testing.assert_close(out.landmarks3d, out.vertices[:, ict_head.landmark_indices])
    rest = ict_head(*_codes(ict_head)).landmarks3d
    assert out.landmarks3d[0, 8, 1] < rest[0, 8, 1] - 1.0  # the chin drops when the jaw opens


def test_pose_rotates_about_the_origin(ict_head):
    shape, expression, _ = _codes(ict_head)
    rotvec = np.array([0.2, -0.5, 0.1])
    out = ict_head(shape, expression, torch.tensor(rotvec, dtype=torch.float32)[None])
    expected = Rotation.from_rotvec(rotvec).apply(ict_head.template_vertices.double().numpy())
    np.testing.assert_allclose(out.vertices[0].double().numpy(), expected, atol=1e-4)
    # 90° yaw: the face (nose tip on +z) turns to +x
    turn = ict_head(shape, expression, torch.tensor([[0.0, np.pi / 2, 0.0]])).vertices[0]
    nose = ict_head.template_vertices[:, 2].argmax()
    assert turn[nose, 0] > 12 and abs(turn[nose, 2]) < 1e-3


def test_face_mask_is_the_narrow_face_area_and_matches_the_landmark_heuristic(ict_head):
    mask = ict_head.face_mask
    assert mask.dtype == torch.bool and mask.shape == (14062,)
    assert mask.sum() == 6706 and mask[:6706].all()
    # an independent definition (landmark box) agrees on the skin regions (face + head/neck)
    v = ict_head.template_vertices.numpy()
    heuristic = landmark_face_mask(v, v[ict_head.landmark_indices.numpy()])[:11248]
    ours = mask.numpy()[:11248]
    assert (heuristic & ours).sum() / (heuristic | ours).sum() > 0.9


def test_uv_tiles_are_packed_side_by_side(ict_head):
    corner_u = ict_head.uv_coords[ict_head.uv_faces][..., 0]
    n_face_tris = 2 * 9230  # README: the face region is polygons [0:9229], all quads, listed first
    assert (corner_u[:n_face_tris] <= 0.5).all()  # face tile → left half
    assert (corner_u[n_face_tris:] >= 0.5).all()  # head/neck/socket tile → right half


def test_batched_forward_and_gradients(ict_head):
    shape = torch.randn(3, 100, requires_grad=True)
    expression = torch.rand(3, 55)
    pose = torch.randn(3, 3) * 0.2
    out = ict_head(shape, expression, pose)
    single = ict_head(shape[1:2], expression[1:2], pose[1:2])
    torch.testing.assert_close(out.vertices[1:2], single.vertices)
    out.landmarks3d.sum().backward()
    assert shape.grad is not None and torch.isfinite(shape.grad).all() and shape.grad.abs().sum() > 0


def test_wrong_code_sizes_raise(ict_head):
    with pytest.raises(ValueError, match="expression"):
        ict_head(torch.zeros(1, 100), torch.zeros(1, 50), torch.zeros(1, 3))


@pytest.mark.parametrize("yaw", [25.0, -70.0])
def test_landmarks3d_from_the_support_rows_match_the_forward(ict_head, yaw):
    """The cheap landmark path (fitting's landmark stage) equals the full mesh's landmarks, also when the
    jaw contour marches (large yaw)."""
    g = torch.Generator().manual_seed(0)
    shape = torch.randn(1, ict_head.n_shape, generator=g) * 0.8
    expression = torch.zeros(1, ict_head.n_expression)
    expression[0, ::11] = torch.rand(expression[0, ::11].shape, generator=g) * 0.6
    pose = torch.tensor([[0.1, math.radians(yaw), -0.05]])
    full = ict_head(shape, expression, pose).landmarks3d
    torch.testing.assert_close(ict_head.landmarks3d(shape, expression, pose), full, atol=1e-4, rtol=0)


def test_rows_of_a_batch_get_the_bits_of_a_batch_of_one(ict_head):
    """``forward_rows`` and ``landmarks3d`` (what per-image fitting runs on a batch) give each row exactly
    what ``forward`` gives that row alone; the plain batched ``forward`` agrees to rounding."""
    g = torch.Generator().manual_seed(1)
    shape = torch.randn(3, ict_head.n_shape, generator=g)
    expression = torch.rand(3, ict_head.n_expression, generator=g) * 0.3
    pose = torch.tensor([[0.1, 0.4, 0.0], [-0.2, -1.2, 0.1], [0.0, 0.0, 0.0]])
    alone = [ict_head(shape[b : b + 1], expression[b : b + 1], pose[b : b + 1]) for b in range(3)]
    rows = ict_head.forward_rows(shape, expression, pose)
    assert torch.equal(rows.vertices, torch.cat([a.vertices for a in alone]))
    assert torch.equal(rows.landmarks3d, torch.cat([a.landmarks3d for a in alone]))
    one = [(shape[b : b + 1], expression[b : b + 1], pose[b : b + 1]) for b in range(3)]
    single = [ict_head.landmarks3d(*codes) for codes in one]
    assert torch.equal(ict_head.landmarks3d(shape, expression, pose), torch.cat(single))
    torch.testing.assert_close(ict_head(shape, expression, pose).vertices, rows.vertices, atol=1e-4, rtol=0)


def test_capabilities_of_a_linear_blend_shape_model(ict_head):
    linear = ict_head.linear_basis()
    assert linear.n_shape == ict_head.n_shape and ict_head.expression_bounds == (0.0, 1.0)
    expression = torch.zeros(1, ict_head.n_expression)
    expression[0, 3] = 1.0
    zeros = torch.zeros(1, ict_head.n_shape), torch.zeros(1, 3)
    moved = ict_head(zeros[0], expression, zeros[1]).vertices[0] - ict_head.template_vertices
    torch.testing.assert_close(moved.reshape(-1), linear.expression_basis[3])
