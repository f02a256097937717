"""Pure tensor maths of the head models: rotations, blend shapes, linear blend skinning, landmarks.

Stateless functions (tensors in, tensors out), in the spirit of smplx's ``lbs.py`` but with a flat
blend-shape layout for speed: a basis is ``(K, V*3)`` so that ``template + coeffs @ basis`` is one
``torch.addmm``. This module is the one home of axis-angle → rotation-matrix conversion.

Every function is exact at rest: zero coefficients and zero rotations return the template bit for
bit (the rotation is the exact identity and skinning adds exactly zero displacement).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from vitdeca.batching import each_row

_SMALL_ANGLE2 = 1e-10  # below this squared angle, sin/cos terms use their Taylor series


def skew(vectors: Tensor) -> Tensor:
    """Cross-product matrices: (N,3) → (N,3,3) with ``skew(a) @ b == a × b``."""
    x, y, z = vectors.unbind(-1)
    zero = torch.zeros_like(x)
    rows = (zero, -z, y, z, zero, -x, -y, x, zero)
    return torch.stack(rows, dim=-1).reshape(*vectors.shape[:-1], 3, 3)


def batch_rodrigues(rot_vecs: Tensor) -> Tensor:
    """Axis-angle vectors (N,3) (direction = axis, norm = angle in radians) → rotation matrices (N,3,3).

    ``R = I + a K + b K²`` with ``K = skew(r)``, ``a = sin θ / θ``, ``b = (1 - cos θ) / θ²``; uses the
    Taylor series near θ = 0, so ``r = 0`` gives the exact identity and gradients stay finite there.
    """
    theta2 = (rot_vecs * rot_vecs).sum(-1)[:, None, None]
    small = theta2 < _SMALL_ANGLE2
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    half_sin = torch.sin(0.5 * theta) / theta
    b = torch.where(small, 0.5 - theta2 / 24.0, 2.0 * half_sin * half_sin)
    k = skew(rot_vecs)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def rot_mat_to_yaw(rot_mats: Tensor) -> Tensor:
    """Rotation about the y axis (radians, (N,)) of rotation matrices (N,3,3), from a Z-Y-X Euler split.

    For ``R = R_y(θ)`` it returns θ (positive: the face, looking along +z, turns towards +x).
    """
    cos_y = torch.sqrt(rot_mats[:, 0, 0] ** 2 + rot_mats[:, 1, 0] ** 2)
    return torch.atan2(-rot_mats[:, 2, 0], cos_y)


def blend_shapes(coeffs: Tensor, basis: Tensor, template: Tensor) -> Tensor:
    """``template + Σ_k coeffs[:,k] basis[k]``: coeffs (B,K), basis (K,V*3), template (V,3) → (B,V,3)."""
    flat = torch.addmm(template.reshape(1, -1), coeffs, basis)
    return flat.view(coeffs.shape[0], -1, 3)


def blend_shapes_by_row(coeffs: Tensor, basis: Tensor, template: Tensor) -> Tensor:
    """:func:`blend_shapes` with each row through its own matrix product: a row's result, and its
    gradient, are then the bits it gets in a batch of one, whatever the batch (a batched product rounds
    differently from a single row's, and fitting promises batch-independent codes: :mod:`vitdeca.fit`).
    B products instead of one, which reads the basis B times: for fitting's few faces, not for training."""
    return each_row(lambda row: blend_shapes(row, basis, template), coeffs)


def vertices2joints(j_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Joint locations as weighted vertex sums: j_regressor (J,V), vertices (B,V,3) → (B,J,3)."""
    return torch.einsum("jv,bvk->bjk", j_regressor, vertices)


def pose_features(rot_mats: Tensor) -> Tensor:
    """Pose-corrective features ``R_j - I`` of every joint but the root: (B,J,3,3) → (B,(J-1)*9)."""
    eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
    return (rot_mats[:, 1:] - eye).flatten(1)


def rigid_transforms(rot_mats: Tensor, joints: Tensor, parents: Sequence[int]) -> tuple[Tensor, Tensor]:
    """World transforms of a kinematic chain posed by local rotations about the rest joints.

    rot_mats (B,J,3,3) local rotations, joints (B,J,3) rest joint locations, ``parents[j] < j``
    (``-1`` for the root). Returns ``(rot, trans)`` of shapes (B,J,3,3) and (B,J,3): a rest-pose point
    ``x`` moved rigidly by joint ``j`` goes to ``rot[:, j] @ x + trans[:, j]``.
    """
    # 1. each joint rotates about its own rest location: x -> R (x - J) + J = R x + (J - R J)
    local_t = joints - (rot_mats @ joints.unsqueeze(-1)).squeeze(-1)
    rots, transs = [], []
    for j, parent in enumerate(parents):
        # 2. compose with the parent's world transform: A_j = A_parent ∘ L_j
        if parent < 0:
            rots.append(rot_mats[:, j])
            transs.append(local_t[:, j])
        else:
            rots.append(rots[parent] @ rot_mats[:, j])
            transs.append((rots[parent] @ local_t[:, j].unsqueeze(-1)).squeeze(-1) + transs[parent])
    return torch.stack(rots, dim=1), torch.stack(transs, dim=1)


def skin(vertices: Tensor, weights: Tensor, rot: Tensor, trans: Tensor) -> Tensor:
    """Linear blend skinning as a displacement, exact at rest.

    vertices (B,V,3), weights (V,J), rot (B,J,3,3), trans (B,J,3) → (B,V,3):
    ``v + Σ_j w_vj ((rot_j - I) v + trans_j)`` (equal to ``Σ_j w_vj (rot_j v + trans_j)`` when the
    weights of each vertex sum to one).
    """
    batch, n_joints = rot.shape[:2]
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    per_joint = torch.cat([(rot - eye).flatten(2), trans], dim=2)  # (B,J,12)
    blended = torch.matmul(weights, per_joint)  # (B,V,12)
    rot_part = blended[..., :9].reshape(batch, -1, 3, 3)
    return vertices + (rot_part @ vertices.unsqueeze(-1)).squeeze(-1) + blended[..., 9:]


def lbs(
    v_shaped: Tensor,
    joints: Tensor,
    rot_mats: Tensor,
    posedirs: Tensor,
    parents: Sequence[int],
    weights: Tensor,
) -> tuple[Tensor, Tensor]:
    """Linear blend skinning with pose correctives (SMPL/FLAME), from the shaped rest mesh.

    v_shaped (B,V,3) rest vertices after blend shapes (:func:`blend_shapes`), joints (B,J,3) rest joints
    (:func:`vertices2joints` of ``v_shaped``, or the same regression applied to the blend-shape basis),
    rot_mats (B,J,3,3) local joint rotations, posedirs ((J-1)*9, V*3), parents (J,), weights (V,J).
    Returns posed vertices (B,V,3) and posed joints (B,J,3).
    """
    # 1. pose-dependent corrective offsets
    v_posed = v_shaped + (pose_features(rot_mats) @ posedirs).view_as(v_shaped)
    # 2. world transforms of the kinematic chain
    rot, trans = rigid_transforms(rot_mats, joints, parents)
    # 3. skinning
    vertices = skin(v_posed, weights, rot, trans)
    posed_joints = (rot @ joints.unsqueeze(-1)).squeeze(-1) + trans
    return vertices, posed_joints


def joint_blend_basis(j_regressor: Tensor, template: Tensor, shapedirs: Tensor) -> tuple[Tensor, Tensor]:
    """Regress joints from the blend-shape basis once: (J,3) rest joints and a (K,J*3) basis, so that
    ``blend_shapes(coeffs, j_dirs, j_template)`` equals ``vertices2joints(j_regressor, v_shaped)``.

    j_regressor (J,V), template (V,3), shapedirs (K,V*3).
    """
    n_modes = shapedirs.shape[0]
    j_template = j_regressor @ template
    j_dirs = vertices2joints(j_regressor, shapedirs.view(n_modes, -1, 3)).reshape(n_modes, -1)
    return j_template, j_dirs


def vertices2landmarks(vertices: Tensor, faces: Tensor, lmk_faces_idx: Tensor, lmk_bary: Tensor) -> Tensor:
    """Landmarks as barycentric points on mesh triangles.

    vertices (B,V,3), faces (F,3) long, lmk_faces_idx (B,L) long, lmk_bary (B,L,3) → (B,L,3).
    """
    batch = vertices.shape[0]
    corners = faces[lmk_faces_idx]  # (B,L,3)
    rows = torch.arange(batch, device=vertices.device).view(-1, 1, 1)
    tri = vertices[rows, corners]  # (B,L,3 corners,3 xyz)
    return torch.einsum("blcx,blc->blx", tri, lmk_bary)


def dynamic_contour_rows(yaw: Tensor, max_degrees: int = 39) -> Tensor:
    """Row of a FLAME dynamic-contour lookup table for each head yaw (radians, (B,)) → (B,) long.

    The table has ``2*max_degrees + 1`` rows: row ``d`` for ``d = 0..max`` degrees, row ``max - d``
    for ``d = -1..-max`` (i.e. rows ``max+1 .. 2*max``), the last row for anything beyond ``-max``.
    """
    deg = torch.clamp(torch.round(torch.rad2deg(yaw)), max=max_degrees).long()
    negative = torch.where(deg < -max_degrees, torch.full_like(deg, 2 * max_degrees), max_degrees - deg)
    return torch.where(deg >= 0, deg, negative)
