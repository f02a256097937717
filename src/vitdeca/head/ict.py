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
from vitdeca.head.base import HeadModel, HeadOutput, LinearBasis
from vitdeca.head.contour import CONTOUR_LANDMARKS, contour_paths, march_contour
from vitdeca.head.ict_assets import N_IDENTITY, cache_paths, install_ict, load_cache
from vitdeca.head.landmarks import IBUG68_NAMES
from vitdeca.head.lbs import batch_rodrigues, blend_shapes, blend_shapes_by_row

CONTOUR_STEP_MM = 2.5  # x spacing of the jaw-contour marching paths (vitdeca.head.contour)
_REQUIRED = ("template", "shapedirs", "exprdirs", "faces", "uv_coords", "uv_faces", "landmarks", "face_mask")


_NOT_LOADED = object()  # ICTHead._eyeballs before the first eyeballs() call


class ICTHead(HeadModel):
    """ICT-FaceKit: ``vertices = R(pose) · (template + Σ shape_k S_k + Σ expression_e E_e)``.

    shape: up to 100 identity PCA coefficients (unit = the mode as stored, ~1 standard deviation);
    expression: (up to) 55 ARKit-style blend-shape weights (0 = neutral, 1 = the full expression, see
    ``expression_names``); pose: (3,) axis-angle global rotation about the origin.
    Landmarks are the 68 Multi-PIE vertices of ICT's README; with ``dynamic_contour`` (the default) the
    16 side jaw points march to the silhouette of the posed head (:mod:`vitdeca.head.contour`).
    ``face_mask`` is ICT's "narrow face area".
    """

    name = "ict"
    units_per_mm = 0.1
    landmark_names = IBUG68_NAMES
    expression_bounds = (0.0, 1.0)  # blend-shape weights

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        checksum: str,
        n_shape: int = N_IDENTITY,
        n_expression: int | None = None,
        dynamic_contour: bool = True,
    ):
        super().__init__()
        self.asset_location: tuple = (None, None)  # (home, source) of the cache, for :meth:`eyeballs`
        self._eyeballs: object = _NOT_LOADED
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
        self.dynamic_contour = bool(dynamic_contour)
        self._register_landmark_support(arrays)

    def _register_landmark_support(self, arrays: dict[str, np.ndarray]) -> None:
        """Buffers for landmarks from a vertex subset: ``landmark_support`` (S,) the vertices the 68
        landmarks (and the contour paths) read, and indices into it."""
        landmarks = arrays["landmarks"].astype(np.int64)
        ids = [landmarks]
        if self.dynamic_contour:
            step = CONTOUR_STEP_MM * self.units_per_mm
            paths = contour_paths(arrays["template"], arrays["faces"], landmarks, arrays["face_mask"], step)
            ids += [paths.a.ravel(), paths.b.ravel()]
        support, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        self.register_buffer("landmark_support", torch.from_numpy(support))
        index = torch.from_numpy(support)
        columns = (index[:, None] * 3 + torch.arange(3)).reshape(-1)
        self.register_buffer("_support_basis", self.basis[:, columns].contiguous())  # (K,S*3)
        self.register_buffer("_support_template", self.template[index])  # (S,3)
        self.register_buffer("_static_pos", torch.from_numpy(inverse[: len(landmarks)]))
        if self.dynamic_contour:
            a_pos, b_pos = np.split(inverse[len(landmarks) :], 2)
            self.register_buffer("_contour_a", torch.from_numpy(a_pos.reshape(paths.a.shape)))
            self.register_buffer("_contour_b", torch.from_numpy(b_pos.reshape(paths.a.shape)))
            self.register_buffer("_contour_t", torch.from_numpy(paths.t.astype(np.float32)))
            self.register_buffer("_contour_side", torch.from_numpy(paths.side.astype(np.float32)))

    def landmarks_from_support(self, points: Tensor, rotation: Tensor) -> Tensor:
        """iBUG-68 landmarks (B,68,3) from the posed ``landmark_support`` vertices (B,S,3) and the global
        rotation (B,3,3): fixed vertices, the side jaw points marched to the silhouette."""
        out = points[:, self._static_pos]
        if not self.dynamic_contour:
            return out
        t = self._contour_t.to(points.dtype)[None, :, :, None]
        path = points[:, self._contour_a] * (1 - t) + points[:, self._contour_b] * t  # (B,C,P,3)
        contour = march_contour(path, self._contour_side, rotation)
        return out.index_copy(1, torch.tensor(CONTOUR_LANDMARKS, device=out.device), contour)

    @property
    def template_vertices(self) -> Tensor:
        return self.template

    def linear_basis(self) -> LinearBasis:
        return LinearBasis(self.template, self.basis, self.n_shape)

    def landmarks3d(self, shape: Tensor, expression: Tensor, pose: Tensor) -> Tensor:
        """As ``forward(...).landmarks3d`` from the ``landmark_support`` rows of the basis only (a fraction
        of a millisecond instead of the full mesh); each face's result is independent of the batch
        (:func:`blend_shapes_by_row`)."""
        points = blend_shapes_by_row(
            torch.cat([shape, expression], dim=1), self._support_basis, self._support_template
        )
        rotation = batch_rodrigues(pose[:, :3])
        return self.landmarks_from_support(points @ rotation.transpose(1, 2), rotation)

    @property
    def blendshape_names(self) -> tuple[str, ...]:
        """ICT's expression shapes are ARKit-named blend shapes (see :mod:`vitdeca.arkit`)."""
        return self.expression_names

    def checksum(self) -> str:
        return f"ict:{self._checksum}"

    def eyeballs(self):
        """ICT-FaceKit's eyeballs (:class:`vitdeca.head.eyes.Eyeballs`), loaded (converted once) on first
        use from the cache this model came from; None when unavailable."""
        if self._eyeballs is _NOT_LOADED:
            from vitdeca.head.eyes import load_eyeballs

            self._eyeballs = load_eyeballs(*self.asset_location)
        return self._eyeballs

    def forward(self, shape: Tensor, expression: Tensor, pose: Tensor) -> HeadOutput:
        """shape (B,n_shape), expression (B,55), pose (B,3) axis-angle → vertices (B,V,3) cm, landmarks3d."""
        return self._posed(shape, expression, pose, blend_shapes)

    def forward_rows(self, shape: Tensor, expression: Tensor, pose: Tensor) -> HeadOutput:
        """``forward``, batch-independent row by row (:meth:`HeadModel.forward_rows`): the blend shapes by
        row (:func:`blend_shapes_by_row`), the rest already is."""
        return self._posed(shape, expression, pose, blend_shapes_by_row)

    def _posed(self, shape: Tensor, expression: Tensor, pose: Tensor, blend) -> HeadOutput:
        self.check_codes(shape, expression, pose)
        vertices = blend(torch.cat([shape, expression], dim=1), self.basis, self.template)
        rot = batch_rodrigues(pose)  # (B,3,3), exactly I for zero pose
        # rotate about the origin (the pivot); (R @ V^T)^T is a BLAS-friendly bmm
        vertices = torch.bmm(rot, vertices.transpose(1, 2)).transpose(1, 2).contiguous()
        landmarks = self.landmarks_from_support(vertices[:, self.landmark_support], rot)
        return HeadOutput(vertices=vertices, landmarks3d=landmarks)

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
    dynamic_contour: bool = True,
) -> ICTHead:
    """The ICT model from the cache under ``home``; installs it from ``source`` (alias ``path``; default
    ``$VITDECA_ICT_FACEKIT`` or the official archive URL) when the cache is empty.

    ``n_shape`` ≤ 100 keeps the leading identity modes; ``n_expression`` ≤ 55 keeps the first expression
    shapes in :data:`~vitdeca.head.ict_assets.EXPRESSION_NAMES` order (default: all 55).
    ``dynamic_contour=False`` keeps the 17 jaw landmarks on their fixed vertices (the earlier definition).
    """
    paths = cache_paths(home)
    if not paths.manifest.exists():
        install_ict(source if source is not None else path, home=home)
    arrays, manifest = load_cache(paths)
    head = ICTHead(
        arrays,
        checksum=str(manifest["sha256"]),
        n_shape=n_shape,
        n_expression=n_expression,
        dynamic_contour=dynamic_contour,
    )
    head.asset_location = (home, source if source is not None else path)
    return head


def cache_location(home: str | os.PathLike | None = None) -> Path:
    """The folder holding the converted ICT model."""
    return cache_paths(home).folder
