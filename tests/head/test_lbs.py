"""The pure maths of vitdeca.head.lbs against independent references (scipy, hand-computed values)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vitdeca.head.lbs import (
    batch_rodrigues,
    blend_shapes,
    dynamic_contour_rows,
    joint_blend_basis,
    lbs,
    rigid_transforms,
    rot_mat_to_yaw,
    skin,
    vertices2joints,
    vertices2landmarks,
)


def test_rodrigues_matches_scipy_including_tiny_angles():
    rng = np.random.default_rng(0)
    vecs = np.concatenate([rng.normal(size=(50, 3)), rng.normal(size=(5, 3)) * 1e-6, [[0.0, 0.0, 3.0]]])
    got = batch_rodrigues(torch.tensor(vecs, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, Rotation.from_rotvec(vecs).as_matrix(), atol=1e-12)


def test_rodrigues_is_exact_identity_at_zero_with_finite_gradient():
    r = torch.zeros(4, 3, requires_grad=True)
    rot = batch_rodrigues(r)
    assert torch.equal(rot, torch.eye(3).expand(4, 3, 3))
    (rot * torch.randn(4, 3, 3)).sum().backward()
    assert torch.isfinite(r.grad).all()


def test_yaw_of_pure_y_rotation():
    for angle in (-0.6, -0.1, 0.0, 0.3, 0.65):
        rot = torch.tensor(Rotation.from_euler("y", angle).as_matrix(), dtype=torch.float64)[None]
        assert rot_mat_to_yaw(rot).item() == pytest.approx(angle, abs=1e-12)


def test_dynamic_contour_rows_follow_the_flame_table_layout():
    deg = torch.tensor([0.0, 1.0, 12.4, 39.0, 60.0, -1.0, -20.0, -39.0, -40.0, -90.0])
    rows = dynamic_contour_rows(torch.deg2rad(deg))
    assert rows.tolist() == [0, 1, 12, 39, 39, 40, 59, 78, 78, 78]


def test_blend_shapes_is_template_plus_weighted_sum():
    template = torch.randn(4, 3)
    basis = torch.randn(2, 12)
    coeffs = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    out = blend_shapes(coeffs, basis, template)
    assert torch.equal(out[0], template)
    torch.testing.assert_close(out[1], template + basis[0].view(4, 3) - 2 * basis[1].view(4, 3))


def test_rigid_transforms_chain_by_hand():
    # root at the origin rotates 90° about z; child joint at (1,0,0) rotates 90° about z too
    rz = torch.tensor(Rotation.from_euler("z", 90, degrees=True).as_matrix(), dtype=torch.float64)
    rot_mats = torch.stack([rz, rz])[None]
    joints = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]], dtype=torch.float64)
    rot, trans = rigid_transforms(rot_mats, joints, parents=(-1, 0))
    point = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)  # on the child's bone, 1 beyond the joint
    moved = rot[0, 1] @ point + trans[0, 1]
    # child joint goes to (0,1,0); the point 1 further along the child's x (rotated twice) → (-1,1,0)
    torch.testing.assert_close(moved, torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64))


def test_skin_is_exact_at_rest_and_blends_linearly():
    verts = torch.randn(2, 6, 3)
    weights = torch.rand(6, 2)
    weights /= weights.sum(1, keepdim=True)
    eye = torch.eye(3).expand(2, 2, 3, 3)
    assert torch.equal(skin(verts, weights, eye, torch.zeros(2, 2, 3)), verts)
    rot = batch_rodrigues(torch.randn(4, 3)).view(2, 2, 3, 3)
    trans = torch.randn(2, 2, 3)
    per_joint = torch.einsum("bjkl,bvl->bvjk", rot, verts) + trans[:, None]
    expected = (weights[None, :, :, None] * per_joint).sum(2)
    torch.testing.assert_close(skin(verts, weights, rot, trans), expected)


def test_lbs_rigid_when_all_weights_on_the_root():
    n = 10
    template = torch.randn(1, n, 3, dtype=torch.float64)
    weights = torch.zeros(n, 2, dtype=torch.float64)
    weights[:, 0] = 1
    j_reg = torch.full((2, n), 1.0 / n, dtype=torch.float64)
    pose = torch.tensor([[0.1, 0.4, -0.2], [0.5, 0.0, 0.0]], dtype=torch.float64)
    rot_mats = batch_rodrigues(pose)[None]
    joints = vertices2joints(j_reg, template)
    posedirs = torch.zeros(9, n * 3, dtype=torch.float64)
    verts, posed_joints = lbs(template, joints, rot_mats, posedirs, (-1, 0), weights)
    centre = template[0].mean(0)
    expected = (template[0] - centre) @ rot_mats[0, 0].T + centre  # rotation about the root joint
    torch.testing.assert_close(verts[0], expected)
    torch.testing.assert_close(posed_joints[0, 0], centre)


def test_joint_blend_basis_equals_regressing_the_blended_mesh():
    j_reg, template, shapedirs = torch.rand(5, 40), torch.randn(40, 3), torch.randn(7, 120)
    coeffs = torch.randn(3, 7)
    j_template, j_dirs = joint_blend_basis(j_reg, template, shapedirs)
    direct = vertices2joints(j_reg, blend_shapes(coeffs, shapedirs, template))
    torch.testing.assert_close(blend_shapes(coeffs, j_dirs, j_template), direct)


def test_vertices2landmarks_barycentric():
    verts = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [0, 2, 0], [0, 0, 2]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    bary = torch.tensor([[[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]]])
    out = vertices2landmarks(verts, faces, torch.tensor([[0, 1]]), bary)
    torch.testing.assert_close(out[0], torch.tensor([[1.0, 0, 0], [0, 2 / 3, 2 / 3]]))
    assert math.isclose(out.sum().item(), 1 + 4 / 3, rel_tol=1e-6)
