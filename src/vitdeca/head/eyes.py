"""Eyeballs that look: rigid eyes posed by shape, head pose and gaze, and gaze from an image point.

An eye is the ball of :mod:`vitdeca.head.eye_assets` (ICT-FaceKit's sclera shell): its vertices follow
the identity (shape) code like the head's, then rotate rigidly about the eye's pivot by the gaze, then
with the head about the model origin (:class:`vitdeca.head.ict.ICTHead`):
``v = R_head · (p + R_gaze · (t + S·shape - p))`` with ``p`` the pivot of that shape. Expressions do
not deform the eyes. Gaze angles (degrees) use :mod:`vitdeca.arkit`'s signs: yaw positive towards the
subject's left, pitch positive down; they rotate the eye about its own rest axes:
``R_gaze = rest · R_y(yaw) · R_x(pitch) · restᵀ`` (0, 0 = the model's rest gaze, straight ahead).

Eyes are indexed left (the subject's own left, +x) first, as :data:`~vitdeca.head.eye_assets.EYES`.
The iris centre seen in an image is the centre of the iris rim, ``iris_distance`` in front of the pivot
along the optical axis (``radius · cos IRIS_DEGREES``, about 0.87 of the ball radius, as in a real eye).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from vitdeca.head.eye_assets import IRIS_DEGREES, eye_texture

log = logging.getLogger(__name__)


def gaze_rotation(gaze: Tensor) -> Tensor:
    """(…,2) yaw, pitch degrees → (…,3,3) ``R_y(yaw) · R_x(pitch)`` (maps +z to the gaze direction)."""
    yaw, pitch = torch.deg2rad(gaze[..., 0]), torch.deg2rad(gaze[..., 1])
    cy, sy, cp, sp = torch.cos(yaw), torch.sin(yaw), torch.cos(pitch), torch.sin(pitch)
    zero = torch.zeros_like(yaw)
    rows = [
        torch.stack([cy, sy * sp, sy * cp], -1),
        torch.stack([zero, cp, -sp], -1),
        torch.stack([-sy, cy * sp, cy * cp], -1),
    ]
    return torch.stack(rows, -2)


def gaze_angles(direction: np.ndarray) -> np.ndarray:
    """(…,3) gaze directions in an eye's rest frame → (…,2) yaw, pitch degrees (inverse of
    :func:`gaze_rotation` applied to +z)."""
    d = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    yaw = np.degrees(np.arctan2(d[..., 0], d[..., 2]))
    pitch = np.degrees(np.arcsin(np.clip(-d[..., 1], -1.0, 1.0)))
    return np.stack([yaw, pitch], -1)


@dataclass
class EyesOutput:
    """Posed eyes: vertices (B,E,3), pivots (B,2,3), axes (B,2,3,3) each eye's rest axes after the
    head rotation (columns x, y, optical z; the gaze is applied on top), model units."""

    vertices: Tensor
    pivots: Tensor
    axes: Tensor


class Eyeballs:
    """The eyeballs of a head model (CPU tensors; not an ``nn.Module``, so never in a state dict).

    ``arrays``: :func:`vitdeca.head.eye_assets.convert_eyeballs`'s. ``faces`` (F,3), ``uv_coords``
    (T,2), ``uv_faces`` (F,3) and :meth:`texture` describe the mesh; :meth:`forward` poses it."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        as_tensor = lambda key, dtype=torch.float32: torch.from_numpy(np.asarray(arrays[key])).to(dtype)  # noqa: E731
        self.template = as_tensor("template")
        self.shapedirs = as_tensor("shapedirs")
        self.faces = as_tensor("faces", torch.int64)
        self.uv_coords = as_tensor("uv_coords")
        self.uv_faces = as_tensor("uv_faces", torch.int64)
        self.eye_index = as_tensor("eye_index", torch.int64)
        self.pivot = as_tensor("pivot")
        self.pivot_dirs = as_tensor("pivot_dirs")
        self.rest = as_tensor("rest")
        self.radius = as_tensor("radius")
        self._texture: np.ndarray | None = None

    @property
    def n_vertices(self) -> int:
        return int(self.template.shape[0])

    @property
    def iris_distance(self) -> Tensor:
        """(2,) pivot → iris-rim plane along the optical axis (model units)."""
        return self.radius * float(np.cos(np.radians(IRIS_DEGREES)))

    @property
    def iris_radius(self) -> Tensor:
        """(2,) radius of the iris disk (model units)."""
        return self.radius * float(np.sin(np.radians(IRIS_DEGREES)))

    def texture(self, size: int = 256) -> np.ndarray:
        """(size,size,3) float32 albedo of both eyes (:func:`~vitdeca.head.eye_assets.eye_texture`)."""
        if self._texture is None or self._texture.shape[0] != size:
            offsets = self.template - self.pivot[self.eye_index]
            local = torch.einsum("eji,ej->ei", self.rest[self.eye_index], offsets)  # restᵀ · offset
            args = (self.faces, self.uv_coords, self.uv_faces)
            self._texture = eye_texture(*(a.numpy() for a in args), local.numpy(), size)
        return self._texture

    def forward(self, shape: Tensor, pose: Tensor, gaze: Tensor | None = None) -> EyesOutput:
        """shape (B,n≤100), pose (B,3+) axis-angle head rotation, gaze (B,2,2) degrees (None: rest). Each
        face's result is the bits it gets in a batch of one (the shape's products row by row,
        :func:`vitdeca.batching.each_row`)."""
        from vitdeca.batching import each_row
        from vitdeca.head.lbs import batch_rodrigues

        shape = shape.detach().cpu().float()
        batch = shape.shape[0]
        shaped = each_row(self._shaped, shape)  # (B,E+2,3): each face's bits whatever the batch
        vertices, pivots = shaped[:, :-2], shaped[:, -2:]
        if gaze is None:
            gaze = torch.zeros(batch, 2, 2)
        turn = self.rest @ gaze_rotation(gaze.detach().cpu().float()) @ self.rest.transpose(-1, -2)
        pivot_of_vertex = pivots[:, self.eye_index]  # (B,E,3)
        local = vertices - pivot_of_vertex
        vertices = pivot_of_vertex + torch.einsum("beij,bej->bei", turn[:, self.eye_index], local)
        head = batch_rodrigues(pose.detach().cpu().float()[:, :3])  # (B,3,3)
        posed = torch.einsum("bij,bej->bei", head, vertices)
        return EyesOutput(posed, torch.einsum("bij,bej->bei", head, pivots), head[:, None] @ self.rest)

    __call__ = forward

    def _shaped(self, shape: Tensor) -> Tensor:
        """(1,E+2,3): the unposed vertices of one shape code (1,n), then its two pivots."""
        n = shape.shape[1]
        vertices = self.template + (shape @ self.shapedirs[:n]).reshape(1, -1, 3)
        pivots = self.pivot + torch.einsum("bk,kec->bec", shape, self.pivot_dirs[:n])
        return torch.cat([vertices, pivots], dim=1)


def gaze_from_image(iris_px: np.ndarray, pivot_px: np.ndarray, basis_px: np.ndarray) -> np.ndarray:
    """Eye yaw, pitch (degrees) from where its iris centre is seen.

    iris_px (2,) the located iris centre; pivot_px (2,) the projected eye pivot; basis_px (2,3) the image
    displacement of the iris centre per unit of the eye's rest axes x, y, z (the projection's linear
    part times ``iris_distance``, head rotation included; weak perspective). The iris direction ``u``
    (unit, in the rest frame) solves ``basis_px · u = iris_px - pivot_px`` with ``u`` facing the camera;
    a point beyond the ball's silhouette is pulled onto it."""
    a = np.asarray(basis_px, np.float64)
    offset = np.asarray(iris_px, np.float64) - np.asarray(pivot_px, np.float64)
    # u = base + t·null: the in-image constraint leaves one free direction (the viewing ray)
    base, *_ = np.linalg.lstsq(a, offset, rcond=None)
    null = np.cross(a[0], a[1])
    null /= max(np.linalg.norm(null), 1e-12)
    b, c = base @ null, base @ base - 1.0
    disc = b * b - c
    if disc < 0:  # outside the silhouette: the nearest unit vector on the silhouette
        u = base - b * null
        u /= max(np.linalg.norm(u), 1e-12)
    else:
        roots = (-b + np.sqrt(disc), -b - np.sqrt(disc))
        candidates = [base + t * null for t in roots]
        u = max(candidates, key=lambda v: v[2])  # the one nearer the rest axis: the ball's front
    return gaze_angles(u)


def iris_ellipse(gaze: np.ndarray, basis_px: np.ndarray, ratio: float) -> np.ndarray:
    """(2,2) the iris outline seen in the image for an eye turned by ``gaze`` (2,) yaw/pitch degrees:
    its two semi-axes as columns (weak perspective: the rim circle's image is this ellipse about the
    iris centre). ``basis_px`` (2,3) as in :func:`gaze_from_image`; ``ratio`` = iris radius / iris
    distance (``tan IRIS_DEGREES``)."""
    turn = gaze_rotation(torch.as_tensor(np.asarray(gaze, np.float64))).numpy()
    return ratio * np.asarray(basis_px, np.float64) @ turn[:, :2]


def load_eyeballs(
    home: str | os.PathLike | None = None, source: str | os.PathLike | None = None
) -> Eyeballs | None:
    """ICT-FaceKit's eyeballs from the cache under ``home``; converted from ``source`` (default: the
    archive the head cache was converted from, else ``$VITDECA_ICT_FACEKIT``) when missing. None, with a
    warning, when they cannot be had (the head model works without them)."""
    from vitdeca.errors import VitdecaError
    from vitdeca.head.eye_assets import install_eyeballs, load_eye_cache
    from vitdeca.head.ict_assets import _local_source, cache_paths, default_source, read_manifest

    paths = cache_paths(home)
    arrays = load_eye_cache(paths)
    if arrays is None:
        try:
            recorded = str(read_manifest(paths).get("source") or "")
            text = source if source is not None else recorded if os.path.exists(recorded) else None
            text = os.fspath(text) if text is not None else default_source()
            local, temporary = _local_source(text, paths, None)
            try:
                install_eyeballs(paths, local)
            finally:
                if temporary is not None:
                    import shutil

                    shutil.rmtree(temporary.parent, ignore_errors=True)
        except VitdecaError as exc:
            log.warning("eyeballs unavailable (%s); renders and exports have no eyes", exc)
            return None
        arrays = load_eye_cache(paths)
    return None if arrays is None else Eyeballs(arrays)
