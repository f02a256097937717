"""Mirror images of codes: the codes whose head is the left-right mirror (x → −x) of a given head.

A photo and its horizontal flip show mirror-image heads, so an encoder's codes of the flipped photo,
mirrored back, are a second estimate of the photo's codes: averaging the two (``DecaModel.encode(...,
flip=True)``) is test-time augmentation that needs no training.

For a rigid linear blend-shape head (:class:`~vitdeca.head.base.LinearBasis`, e.g. ICT-FaceKit),
mirroring is exact in vertex space and linear in code space:

* vertices: ``mirror(V)[i] = F · V[m(i)]`` with ``F = diag(−1, 1, 1)`` and ``m`` the vertex nearest to
  the mirror image of each template vertex (:func:`nearest_mirror_images`);
* shape and expression coefficients ``c`` (K,) → ``c' = offset + c · matrix``: the least-squares
  coefficients of the mirrored mesh (``matrix`` (K,K) is close to a signed permutation on a symmetric
  basis: ``eyeBlinkLeft`` ↔ ``eyeBlinkRight``);
* the global rotation (axis-angle r) → ``F R F``, i.e. ``(r_x, −r_y, −r_z)``;
* the weak-perspective camera ``(s, tx, ty)`` → ``(s, −tx, ty)``: a flipped image maps x_ndc to −x_ndc.

Light, albedo and detail codes are not geometry: :func:`flip_averaged` keeps the unflipped image's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitdeca.codes import Codes

GEOMETRY_CODES = ("shape", "expression", "pose", "camera")  # what a mirror map moves; flip_averaged averages
MIRROR = (-1.0, 1.0, 1.0)  # x → −x: the head model's left-right mirror (model space: x right, y up)


def nearest_mirror_images(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``points`` (N,3), the distance (N,) to the point nearest to its mirror image (x → −x)
    and that point's index (N,) int64 (a symmetric cloud pairs left with right, the midline with itself)."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    distance, index = cKDTree(points).query(points * MIRROR, k=1)
    return distance, index.astype(np.int64)


@dataclass(frozen=True)
class CodeMirror:
    """The mirror map of a rigid linear blend-shape head's codes (see the module docstring).

    ``matrix`` (K,K) and ``offset`` (K,) act on ``[shape, expression]`` (K = n_shape + n_expression);
    ``n_shape`` splits them again. Build with :meth:`of_head`.
    """

    matrix: torch.Tensor
    offset: torch.Tensor
    n_shape: int

    @classmethod
    def of_head(cls, head) -> CodeMirror:
        """The mirror map of ``head`` (a :class:`~vitdeca.head.base.HeadModel`); ValueError for a head
        without a rigid linear basis (:meth:`HeadModel.linear_basis` is None, e.g. FLAME)."""
        linear = head.linear_basis()
        if linear is None:
            raise ValueError(f"{head.name}: no rigid linear basis, so its codes have no linear mirror map")
        template = linear.template.detach().double().cpu()
        basis = linear.basis.detach().double().cpu()  # (K, V*3)
        index = torch.from_numpy(nearest_mirror_images(template.numpy())[1])
        flip = template.new_tensor(MIRROR)
        mirrored_basis = (basis.view(basis.shape[0], -1, 3)[:, index] * flip).reshape(basis.shape)
        mirrored_template = template[index] * flip
        pseudo_inverse = torch.linalg.pinv(basis)  # (V*3, K)
        matrix = mirrored_basis @ pseudo_inverse
        offset = (mirrored_template - template).reshape(1, -1) @ pseudo_inverse
        return cls(matrix.float(), offset[0].float(), linear.n_shape)

    def __call__(self, codes: Codes) -> Codes:
        """The mirror images of ``codes``' shape, expression, pose and camera; the other codes as given."""
        matrix, offset = self.matrix.to(codes.shape), self.offset.to(codes.shape)
        coefficients = torch.cat([codes.shape, codes.expression], dim=1) @ matrix + offset
        return codes.replace(
            shape=coefficients[:, : self.n_shape],
            expression=coefficients[:, self.n_shape :],
            pose=codes.pose * codes.pose.new_tensor([1.0, -1.0, -1.0]).repeat(codes.pose.shape[1] // 3),
            camera=codes.camera * codes.camera.new_tensor([1.0, -1.0, 1.0]),
        )


def flip_averaged(codes: Codes, flipped: Codes, mirror: CodeMirror) -> Codes:
    """The mean of ``codes`` and the mirror image of ``flipped`` (the codes of the horizontally flipped
    images) for shape, expression, pose and camera; light, albedo and detail from ``codes``."""
    back = mirror(flipped)
    return codes.replace(
        **{name: (getattr(codes, name) + getattr(back, name)) / 2 for name in GEOMETRY_CODES}
    )
