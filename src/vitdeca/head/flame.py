"""The FLAME head model (from the user's own ``generic_model.pkl``): identity and expression blend
shapes, pose correctives and linear blend skinning over 5 joints (global, neck, jaw, left eye, right eye).

Model space is FLAME's native frame: right-handed, y up, the face looking along +z, metres.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vitdeca.errors import VitdecaError
from vitdeca.head.base import HeadModel, HeadOutput
from vitdeca.head.derived import cylindrical_uvs, landmark_face_mask
from vitdeca.head.flame_assets import (
    MASKS,
    N_EXPRESSION_MAX,
    N_SHAPE_MAX,
    UV_TEMPLATE,
    FlameArrays,
    LandmarkEmbedding,
    find_landmark_files,
    read_face_mask,
    read_flame_model,
    read_landmark_embedding,
    read_uv_template,
    resolve_model_path,
)
from vitdeca.head.landmarks import IBUG68_NAMES
from vitdeca.head.lbs import (
    batch_rodrigues,
    blend_shapes,
    dynamic_contour_rows,
    joint_blend_basis,
    lbs,
    rot_mat_to_yaw,
    vertices2landmarks,
)
from vitdeca.storage import sha256_file


def _t(array: np.ndarray, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(array)).to(dtype)


class FLAMEHead(HeadModel):
    """FLAME: shape (B,n_shape ≤ 300), expression (B,n_expression ≤ 100), pose (B,6) = global (3) +
    jaw (3) axis-angle. The neck and eyes stay at rest unless ``neck_pose`` (B,3) / ``eye_pose``
    (B,6: left, right) are given to :meth:`forward`. Landmarks: 51 static points plus the 17-point jaw
    contour chosen by the head's yaw (global ∘ neck rotation), in iBUG-68 order."""

    name = "flame"
    units_per_mm = 0.001
    landmark_names = IBUG68_NAMES

    def __init__(
        self,
        model: FlameArrays,
        embedding: LandmarkEmbedding,
        uv: tuple[np.ndarray, np.ndarray],
        face_mask: np.ndarray,
        n_shape: int,
        n_expression: int,
        checksum: str,
    ):
        super().__init__()
        self.n_shape, self.n_expression, self.n_pose = n_shape, n_expression, 6
        self.parents = model.parents
        self.yaw_sign = embedding.yaw_sign
        self._checksum = checksum
        dirs = np.concatenate(
            [
                model.shapedirs[:, :, :n_shape],
                model.shapedirs[:, :, N_SHAPE_MAX : N_SHAPE_MAX + n_expression],
            ],
            axis=2,
        )
        self.register_buffer("template", _t(model.template))
        self.register_buffer("shapedirs", _t(dirs.reshape(-1, dirs.shape[2]).T))  # (K, V*3)
        self.register_buffer("posedirs", _t(model.posedirs))
        self.register_buffer("j_regressor", _t(model.j_regressor))
        j_template, j_dirs = joint_blend_basis(
            torch.as_tensor(model.j_regressor, dtype=torch.float64),
            torch.as_tensor(model.template, dtype=torch.float64),
            torch.as_tensor(dirs.reshape(-1, dirs.shape[2]).T, dtype=torch.float64),
        )
        self.register_buffer("j_template", j_template.float())  # (J,3) rest joints of the template
        self.register_buffer("j_dirs", j_dirs.float())  # (K,J*3) joint offsets per blend shape
        self.register_buffer("lbs_weights", _t(model.weights))
        self.register_buffer("faces", _t(model.faces, torch.long))
        self.register_buffer("uv_coords", _t(uv[0]))
        self.register_buffer("uv_faces", _t(uv[1], torch.long))
        self.register_buffer("face_mask", torch.as_tensor(face_mask, dtype=torch.bool))
        self.register_buffer("static_lmk_faces", _t(embedding.static_faces, torch.long))
        self.register_buffer("static_lmk_bary", _t(embedding.static_bary))
        self.register_buffer("dynamic_lmk_faces", _t(embedding.dynamic_faces, torch.long))
        self.register_buffer("dynamic_lmk_bary", _t(embedding.dynamic_bary))

    @property
    def template_vertices(self) -> Tensor:
        return self.template

    def checksum(self) -> str:
        return f"flame:{self._checksum}"

    def forward(
        self,
        shape: Tensor,
        expression: Tensor,
        pose: Tensor,
        *,
        neck_pose: Tensor | None = None,
        eye_pose: Tensor | None = None,
    ) -> HeadOutput:
        """shape (B,n_shape), expression (B,n_expression), pose (B,6) → vertices (B,V,3) m,
        landmarks3d (B,68,3), joints (B,5,3)."""
        self.check_codes(shape, expression, pose)
        batch = shape.shape[0]
        zeros = pose.new_zeros(batch, 3)
        neck = zeros if neck_pose is None else neck_pose
        eyes = pose.new_zeros(batch, 6) if eye_pose is None else eye_pose
        full_pose = torch.cat([pose[:, :3], neck, pose[:, 3:], eyes], dim=1)  # (B,15)
        rot_mats = batch_rodrigues(full_pose.view(-1, 3)).view(batch, -1, 3, 3)
        coeffs = torch.cat([shape, expression], dim=1)
        v_shaped = blend_shapes(coeffs, self.shapedirs, self.template)
        joints = blend_shapes(coeffs, self.j_dirs, self.j_template)  # == J_regressor @ v_shaped
        vertices, joints = lbs(v_shaped, joints, rot_mats, self.posedirs, self.parents, self.lbs_weights)
        return HeadOutput(vertices=vertices, landmarks3d=self.landmarks(vertices, rot_mats), joints=joints)

    def landmarks(self, vertices: Tensor, rot_mats: Tensor) -> Tensor:
        """iBUG-68 landmarks (B,68,3): dynamic jaw contour (by yaw of global ∘ neck) + 51 static points."""
        batch = vertices.shape[0]
        head_rot = rot_mats[:, 0] @ rot_mats[:, 1]
        rows = dynamic_contour_rows(self.yaw_sign * rot_mat_to_yaw(head_rot))
        faces_idx = torch.cat([self.dynamic_lmk_faces[rows], self.static_lmk_faces.expand(batch, -1)], dim=1)
        bary = torch.cat([self.dynamic_lmk_bary[rows], self.static_lmk_bary.expand(batch, -1, -1)], dim=1)
        return vertices2landmarks(vertices, self.faces, faces_idx, bary)

    def extra_repr(self) -> str:
        return (
            f"vertices={self.n_vertices}, faces={self.faces.shape[0]}, n_shape={self.n_shape}, "
            f"n_expression={self.n_expression}, n_pose={self.n_pose}, units=m"
        )


def _optional(path: str | os.PathLike | None, beside: Path, default_name: str) -> Path | None:
    """An explicitly given file (must exist) or ``default_name`` next to the model if present."""
    if path is not None:
        found = Path(path).expanduser()
        if not found.is_file():
            raise VitdecaError(f"{found}: no such file")
        return found
    candidate = beside / default_name
    return candidate if candidate.is_file() else None


def load_flame(
    path: str | os.PathLike | None = None,
    n_shape: int = 100,
    n_expression: int = 50,
    landmarks: str | os.PathLike | None = None,
    uv_template: str | os.PathLike | None = None,
    masks: str | os.PathLike | None = None,
) -> FLAMEHead:
    """FLAME from ``path`` (or ``$VITDECA_FLAME``): a ``generic_model.pkl`` or a folder holding one.

    ``landmarks``: DECA's ``landmark_embedding.npy`` or RingNet's static/dynamic pair (default: found
    beside the model). ``uv_template``: an OBJ with FLAME's topology and UVs (default
    ``head_template.obj`` beside the model, else a cylindrical projection). ``masks``:
    ``FLAME_masks.pkl`` for the face region (default beside the model, else a landmark-based mask).
    """
    if not 0 < n_shape <= N_SHAPE_MAX or not 0 < n_expression <= N_EXPRESSION_MAX:
        raise VitdecaError(f"flame: n_shape must be 1..{N_SHAPE_MAX} and n_expression 1..{N_EXPRESSION_MAX}")
    model_path = resolve_model_path(path)
    model = read_flame_model(model_path)
    embedding = read_landmark_embedding(find_landmark_files(model_path, landmarks), len(model.faces))
    uv_path = _optional(uv_template, model_path.parent, UV_TEMPLATE)
    uv = read_uv_template(uv_path, model.faces) if uv_path else cylindrical_uvs(model.template, model.faces)
    mask_path = _optional(masks, model_path.parent, MASKS)
    head = FLAMEHead(
        model,
        embedding,
        uv,
        np.zeros(len(model.template), bool),
        n_shape,
        n_expression,
        checksum=sha256_file(model_path),
    )
    if mask_path is not None:
        mask = read_face_mask(mask_path, len(model.template))
    else:
        with torch.no_grad():
            rest = head.landmarks(head.template[None], torch.eye(3).expand(1, 5, 3, 3))[0].numpy()
        mask = landmark_face_mask(model.template, rest)
    head.face_mask.copy_(torch.from_numpy(mask))
    return head
