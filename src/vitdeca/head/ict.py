"""The ICT-FaceKit head model (the embedded default): linear identity + expression blend shapes and a
global rotation.

Model space is ICT's native frame, unchanged: right-handed, y up, the face looking along +z,
centimetres. The global rotation pivots about the origin of that frame, which lies on the
mid-sagittal plane roughly between the ears, at the height of the nose tip and 13 cm behind it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vitdeca.errors import VitdecaError
from vitdeca.head.base import HeadModel, HeadOutput
from vitdeca.head.ict_assets import N_IDENTITY, cache_paths, install_ict, load_cache
from vitdeca.head.landmarks import IBUG68_NAMES
from vitdeca.head.lbs import batch_rodrigues, blend_shapes

_REQUIRED = ("template", "shapedirs", "exprdirs", "faces", "uv_coords", "uv_faces", "landmarks", "face_mask")


class ICTHead(HeadModel):
    """ICT-FaceKit: ``vertices = R(pose) · (template + Σ shape_k S_k + Σ expression_e E_e)``.

    shape: up to 100 identity PCA coefficients (unit = the mode as stored, ~1 standard deviation);
    expression: (up to) 55 ARKit-style blend-shape weights (0 = neutral, 1 = the full expression, see
    ``expression_names``); pose: (3,) axis-angle global rotation about the origin.
    Landmarks are the 68 Multi-PIE vertices of ICT's README; ``face_mask`` is ICT's "narrow face area".
    """

    name = "ict"
    units_per_mm = 0.1
    landmark_names = IBUG68_NAMES

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        checksum: str,
        n_shape: int = N_IDENTITY,
        n_expression: int | None = None,
    ):
        super().__init__()
        missing = [k for k in _REQUIRED if k not in arrays]
        if missing:
            raise VitdecaError(
                f"ICT cache lacks {missing}; reinstall with 'vitdeca assets install ict-facekit --force'"
            )
        if not 0 < n_shape <= arrays["shapedirs"].shape[0]:
            raise VitdecaError(f"ict: n_shape must be in 1..{arrays['shapedirs'].shape[0]}, got {n_shape}")
        n_all = int(arrays["exprdirs"].shape[0])
        n_expression = n_all if n_expression is None else n_expression
        if not 0 < n_expression <= n_all:
            raise VitdecaError(f"ict: n_expression must be in 1..{n_all}, got {n_expression}")
        self.n_shape, self.n_expression, self.n_pose = n_shape, n_expression, 3
        self.expression_names = tuple(str(n) for n in arrays.get("expression_names", ()))[:n_expression]
        self.regions = {
            str(n): (int(a), int(b))
            for n, (a, b) in zip(arrays.get("region_names", ()), arrays.get("region_ranges", ()), strict=True)
        }
        self._checksum = checksum
        basis = np.concatenate([arrays["shapedirs"][:n_shape], arrays["exprdirs"][:n_expression]], axis=0)
        self.register_buffer(
            "template", torch.from_numpy(np.ascontiguousarray(arrays["template"], np.float32))
        )
        self.register_buffer("basis", torch.from_numpy(np.ascontiguousarray(basis, np.float32)))
        self.register_buffer("faces", torch.from_numpy(arrays["faces"].astype(np.int64)))
        self.register_buffer("uv_coords", torch.from_numpy(arrays["uv_coords"].astype(np.float32)))
        self.register_buffer("uv_faces", torch.from_numpy(arrays["uv_faces"].astype(np.int64)))
        self.register_buffer("landmark_indices", torch.from_numpy(arrays["landmarks"].astype(np.int64)))
        self.register_buffer("face_mask", torch.from_numpy(arrays["face_mask"].astype(bool)))
        self.register_buffer("pivot", torch.zeros(3))

    @property
    def template_vertices(self) -> Tensor:
        return self.template

    @property
    def blendshape_names(self) -> tuple[str, ...]:
        """ICT's expression shapes are ARKit-named blend shapes (see :mod:`vitdeca.arkit`)."""
        return self.expression_names

    def checksum(self) -> str:
        return f"ict:{self._checksum}"

    def forward(self, shape: Tensor, expression: Tensor, pose: Tensor) -> HeadOutput:
        """shape (B,n_shape), expression (B,55), pose (B,3) axis-angle → vertices (B,V,3) cm, landmarks3d."""
        self.check_codes(shape, expression, pose)
        vertices = blend_shapes(torch.cat([shape, expression], dim=1), self.basis, self.template)
        rot = batch_rodrigues(pose)  # (B,3,3), exactly I for zero pose
        # rotate about the origin (the pivot); (R @ V^T)^T is a BLAS-friendly bmm
        vertices = torch.bmm(rot, vertices.transpose(1, 2)).transpose(1, 2).contiguous()
        return HeadOutput(vertices=vertices, landmarks3d=vertices[:, self.landmark_indices])

    def extra_repr(self) -> str:
        return (
            f"vertices={self.n_vertices}, faces={self.faces.shape[0]}, n_shape={self.n_shape}, "
            f"n_expression={self.n_expression}, n_pose={self.n_pose}, units=cm"
        )


def load_ict(
    n_shape: int = N_IDENTITY,
    n_expression: int | None = None,
    source: str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
) -> ICTHead:
    """The ICT model from the cache under ``home``; installs it from ``source`` (alias ``path``; default
    ``$VITDECA_ICT_FACEKIT`` or the official archive URL) when the cache is empty.

    ``n_shape`` ≤ 100 keeps the leading identity modes; ``n_expression`` ≤ 55 keeps the first expression
    shapes in :data:`~vitdeca.head.ict_assets.EXPRESSION_NAMES` order (default: all 55).
    """
    paths = cache_paths(home)
    if not paths.manifest.exists():
        install_ict(source if source is not None else path, home=home)
    arrays, manifest = load_cache(paths)
    return ICTHead(arrays, checksum=str(manifest["sha256"]), n_shape=n_shape, n_expression=n_expression)


def cache_location(home: str | os.PathLike | None = None) -> Path:
    """The folder holding the converted ICT model."""
    return cache_paths(home).folder
