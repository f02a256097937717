"""Rasterisation: screen-space triangles → :class:`Fragments` (face index, depth, barycentrics).

Two passes:

1. Visibility (not differentiable): a z-buffer. Each pixel centre is tested against every triangle whose
   bounding box contains it; a pixel is covered when all three barycentric coordinates are >= 0 (shared
   edges are covered by both triangles, so meshes are watertight); the nearest depth wins, ties go to the
   lower face index. Two implementations with identical results (``backend``): a numba kernel on a host
   copy of the vertices (``"numba"``), and torch operations on the vertices' own device (``"torch"``,
   :mod:`vitdeca.render.zbuffer_torch`); ``"auto"`` picks torch on CUDA and numba elsewhere.
2. Barycentrics and depth (differentiable): recomputed from the screen vertices for the covered pixels
   only, so gradients reach the vertex positions through every interpolated attribute. With the numba
   backend on CPU, numba kernels with analytic backward passes do this; otherwise the same maths runs as
   torch ops. Silhouettes and occlusion boundaries get no gradient (hard rasterisation).

Covered pixels are kept "packed": ``Fragments.pixel_index`` lists them, and :func:`interpolate_packed`
/ :func:`scatter_packed` move values between the packed (N,C) form and images.

Faces are rendered from both sides unless ``cull_backfaces`` is set. Front-facing means counter-clockwise
in model space seen from the viewer (right-handed, y up), which is clockwise on screen (y down): a
negative ``(x1-x0)*(y2-y0) - (x2-x0)*(y1-y0)``. Faces whose projected area is below ``1e-12`` pixels²
(zero-area faces) cover nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitdeca.errors import NonFiniteError
from vitdeca.render import kernels
from vitdeca.render.kernels import MIN_AREA, tensor_max, tensor_min
from vitdeca.render.zbuffer_torch import ZBufferSettings, zbuffer_torch

BACKENDS = ("auto", "numba", "torch")


@dataclass
class Fragments:
    """Per-pixel rasterisation result for a (B,H,W) image; the only contract between geometry and shading.

    face_index: (B,H,W) long, -1 for background. depth: (B,H,W) (0 at background).
    pixels: (2,N) long, the covered pixels as rows ``pixel_index`` (flat ``b*H*W + i*W + j``, increasing)
    and ``pixel_face`` (their faces); pixel_bary: (N,3) their barycentrics. ``bary`` (B,H,W,3) is the same
    barycentrics scattered into the image (computed on access, 0 at background).
    """

    face_index: torch.Tensor
    depth: torch.Tensor
    pixels: torch.Tensor
    pixel_bary: torch.Tensor

    @property
    def pixel_index(self) -> torch.Tensor:
        """(N,) flat indices ``b*H*W + i*W + j`` of the covered pixels."""
        return self.pixels[0]

    @property
    def pixel_face(self) -> torch.Tensor:
        """(N,) face index of each covered pixel."""
        return self.pixels[1]

    @property
    def bary(self) -> torch.Tensor:
        """(B,H,W,3) barycentrics, 0 at background."""
        return scatter_packed(self.pixel_bary, self, channels_last=True)

    @property
    def mask(self) -> torch.Tensor:
        """(B,H,W) bool: pixel covered by a face."""
        return self.face_index >= 0

    @property
    def alpha(self) -> torch.Tensor:
        """(B,1,H,W) float coverage mask (1 covered, 0 background), in the dtype of ``pixel_bary``."""
        return self.mask[:, None].to(self.pixel_bary.dtype)


def rasterize(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    height: int,
    width: int,
    *,
    perspective_correct: bool = False,
    cull_backfaces: bool = False,
    near: float | None = None,
    backend: str = "auto",
) -> Fragments:
    """Rasterise screen vertices (B,V,3) = (x_pix, y_pix, depth) with faces (F,3) into an H×W image.

    Pixel (i, j) is sampled at its centre (j+0.5, i+0.5); smaller depth is nearer.
    perspective_correct: the vertex depth is the pinhole view depth; barycentrics are corrected by 1/depth
    and the depth interpolated as 1/sum(b_i/z_i). Faces with a vertex at depth < ``near`` are dropped
    (no clipping); ``near`` defaults to 1e-6 with ``perspective_correct`` and to no limit otherwise.
    backend: ``"numba"`` (visibility on a host copy, numba kernels on CPU), ``"torch"`` (torch ops on the
    vertices' device, no host round trip) or ``"auto"`` (torch on CUDA, numba elsewhere); the face index
    is identical, barycentrics and gradients agree to float rounding.
    Raises :class:`~vitdeca.errors.NonFiniteError` for NaN/Inf vertices, ValueError/TypeError for bad
    shapes, dtypes or out-of-range face indices (programming errors).
    """
    use_torch = _use_torch_backend(backend, vertices.device)
    _check_inputs(vertices, faces, height, width)
    if near is None and perspective_correct:
        near = 1e-6
    settings = ZBufferSettings(height, width, perspective_correct, cull_backfaces, near)
    if use_torch:
        face_index = zbuffer_torch(vertices, faces.to(vertices.device, torch.long), settings)
    else:
        face_index = _zbuffer_face_index(vertices, faces, settings)
    kernels_ok = not use_torch and vertices.device.type == "cpu"
    return _fragments_from_face_index(vertices, faces, face_index, perspective_correct, kernels_ok)


OUTWARD_VOLUME_SHARE = 0.25  # signed ÷ unsigned volume above which a mesh's faces point outward


def faces_point_outward(vertices: torch.Tensor, faces: torch.Tensor) -> bool:
    """True when the faces (F,3) of the mesh ``vertices`` (V,3) are wound counter-clockwise seen from
    outside (the orientation :func:`rasterize` calls front-facing), judged by the signed volume of the
    tetrahedra from the centroid: positive and above :data:`OUTWARD_VOLUME_SHARE` of their unsigned
    volume. An open mesh (a head cut at the neck) passes when most of it is outward; a reversed or
    mixed winding does not. Back-face culling is safe only for a mesh that passes."""
    points = vertices.detach().double().cpu()
    corners = points[faces.long().cpu()] - points.mean(0)  # (F,3,3)
    volumes = (corners[:, 0] * torch.cross(corners[:, 1], corners[:, 2], dim=1)).sum(1)
    return bool(volumes.sum() > OUTWARD_VOLUME_SHARE * volumes.abs().sum())


def _use_torch_backend(backend: str, device: torch.device) -> bool:
    """Whether ``backend`` (one of :data:`BACKENDS`) means the torch visibility pass on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"rasterize: backend must be one of {BACKENDS}, got {backend!r}")
    return backend == "torch" or (backend == "auto" and device.type == "cuda")


def interpolate(fragments: Fragments, faces: torch.Tensor | None, attributes: torch.Tensor) -> torch.Tensor:
    """Interpolate attributes over the covered pixels → (B,C,H,W), zeros at background.

    attributes: per vertex (B,V,C) (needs ``faces`` (F,3)) or per face corner (B,F,3,C) (``faces`` unused).
    Batch sizes of fragments and attributes must match, or one of them be 1 (broadcast).
    """
    return scatter_packed(interpolate_packed(fragments, faces, attributes), fragments, channels_last=False)


def interpolate_packed(
    fragments: Fragments, faces: torch.Tensor | None, attributes: torch.Tensor
) -> torch.Tensor:
    """Interpolated values at the covered pixels only (order of ``fragments.pixel_index``): (N,C), or
    (B,N,C) when batch-1 fragments serve B attribute sets. Arguments as :func:`interpolate`."""
    frag_batch, height, width = fragments.face_index.shape
    per_vertex = attributes.ndim == 3
    if not per_vertex and (attributes.ndim != 4 or attributes.shape[2] != 3):
        raise ValueError(
            f"interpolate: attributes must be (B,V,C) or (B,F,3,C), got {tuple(attributes.shape)}"
        )
    if per_vertex and faces is None:
        raise ValueError("interpolate: per-vertex attributes (B,V,C) need faces (F,3)")
    if per_vertex and faces.numel() and int(tensor_max(faces)) >= attributes.shape[1]:
        raise ValueError(f"interpolate: faces index vertices beyond the {attributes.shape[1]} attributes")
    n_faces = faces.shape[0] if per_vertex else attributes.shape[1]
    if fragments.pixels.numel() and int(tensor_max(fragments.pixel_face)) >= n_faces:
        raise ValueError(f"interpolate: the fragments refer to faces beyond the {n_faces} given")
    attr_batch, channels = attributes.shape[0], attributes.shape[-1]
    bary = fragments.pixel_bary.t().to(attributes.dtype).contiguous()  # (3,N)
    if frag_batch == 1 and attr_batch > 1:  # one layout (e.g. UV space), many attribute sets
        corners = _corner_index(fragments.pixel_face, faces, per_vertex, attributes.shape[1], None)
        flat = attributes.reshape(attr_batch, -1, channels)
        values = flat.index_select(1, corners.reshape(-1)).view(attr_batch, 3, -1, channels)
        return (values * bary[None, :, :, None]).sum(1)
    if attr_batch not in (1, frag_batch):
        raise ValueError(
            f"interpolate: batch {attr_batch} of attributes does not match fragments' {frag_batch}"
        )
    if attributes.device.type == "cpu":  # numba kernel; the same maths in torch below
        pixels = fragments.pixels
        corner_faces = faces.long() if per_vertex else pixels.new_zeros(0, 3)  # unused for face corners
        flat = attributes if per_vertex else attributes.reshape(attr_batch, -1, channels)
        values = kernels.InterpolateFunction.apply(
            flat, per_vertex, corner_faces, pixels, (height, width), bary
        )
        return values.t()  # (N,C), a view of a contiguous (C,N) tensor
    return interpolate_packed_torch(fragments, faces, attributes)


def interpolate_packed_torch(
    fragments: Fragments, faces: torch.Tensor | None, attributes: torch.Tensor
) -> torch.Tensor:
    """Torch version of the CPU kernel path of :func:`interpolate_packed` (attribute batch 1 or B) → (N,C)."""
    height, width = fragments.face_index.shape[1:]
    per_vertex, channels = attributes.ndim == 3, attributes.shape[-1]
    batch = None
    if attributes.shape[0] > 1:
        batch = torch.div(fragments.pixel_index, height * width, rounding_mode="floor")
    corners = _corner_index(fragments.pixel_face, faces, per_vertex, attributes.shape[1], batch)
    # channel-major gather: (C, rows) → (C, 3, N), so no large tensor is ever transposed
    rows = attributes.reshape(-1, channels).t().contiguous()
    values = rows.index_select(1, corners.reshape(-1)).view(channels, 3, -1)
    bary = fragments.pixel_bary.t().to(attributes.dtype)
    return (values * bary[None]).sum(1).t()  # (N,C), a view of a contiguous (C,N) tensor


def scatter_packed(values: torch.Tensor, fragments: Fragments, channels_last: bool) -> torch.Tensor:
    """Packed values (N,C) or (B,N,C) (see :func:`interpolate_packed`) → image (B,H,W,C) if
    ``channels_last`` else (B,C,H,W), zeros at background."""
    frag_batch, height, width = fragments.face_index.shape
    index, channels = fragments.pixel_index, values.shape[-1]
    if values.ndim == 3:  # batch-1 layout: pixel_index addresses H*W
        batch = values.shape[0]
        if channels_last:
            out = values.new_zeros(batch, height * width, channels).index_copy_(1, index, values)
            return out.view(batch, height, width, channels)
        out = values.new_zeros(batch, channels, height * width).index_copy_(2, index, values.transpose(1, 2))
        return out.view(batch, channels, height, width)
    if channels_last:
        if values.device.type == "cpu":
            out = kernels.ScatterFunction.apply(values, index, frag_batch * height * width, True)
            return out.view(frag_batch, height, width, channels)
        out = values.new_zeros(frag_batch * height * width, channels).index_copy_(0, index, values)
        return out.view(frag_batch, height, width, channels)
    # (C, B·H·W) storage viewed as (B,C,H,W): each channel plane stays contiguous
    total = frag_batch * height * width
    if values.device.type == "cpu":
        out = kernels.ScatterFunction.apply(values.t(), index, total, False)
    else:
        out = values.new_zeros(channels, total).index_copy_(1, index, values.t())
    return out.view(channels, frag_batch, height, width).permute(1, 0, 2, 3)


def _corner_index(
    pixel_face: torch.Tensor,
    faces: torch.Tensor | None,
    per_vertex: bool,
    n_items: int,
    batch: torch.Tensor | None,
) -> torch.Tensor:
    """(3,N) flat row indices of the three corner attributes of each covered pixel's face."""
    if per_vertex:
        corners = faces.to(pixel_face.device).t().contiguous().index_select(1, pixel_face)  # vertex ids
    else:
        corners = pixel_face[None, :] * 3 + torch.arange(3, device=pixel_face.device)[:, None]
        n_items = n_items * 3
    if batch is not None:
        corners = corners + (batch * n_items)[None, :]
    return corners


def _check_inputs(vertices: torch.Tensor, faces: torch.Tensor, height: int, width: int) -> None:
    if vertices.ndim != 3 or vertices.shape[-1] != 3:
        raise ValueError(f"rasterize: vertices must be (B,V,3), got {tuple(vertices.shape)}")
    if not vertices.is_floating_point():
        raise TypeError(f"rasterize: vertices must be floating point, got {vertices.dtype}")
    if faces.ndim != 2 or faces.shape[-1] != 3 or faces.is_floating_point():
        raise ValueError(f"rasterize: faces must be an integer (F,3) tensor, got {tuple(faces.shape)}")
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"rasterize: image size must be positive, got {height}x{width}")
    if faces.numel() and (int(tensor_min(faces)) < 0 or int(tensor_max(faces)) >= vertices.shape[1]):
        raise ValueError(f"rasterize: face indices must lie in [0, {vertices.shape[1]})")
    if vertices.numel() and not _all_finite(vertices):
        raise NonFiniteError("rasterize: vertices contain NaN or Inf")


def _all_finite(tensor: torch.Tensor) -> bool:
    if tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(tensor.detach().numpy()).all())
    return bool(torch.isfinite(tensor).all())


def _zbuffer_face_index(
    vertices: torch.Tensor, faces: torch.Tensor, settings: ZBufferSettings
) -> torch.Tensor:
    """(B,H,W) long face index of the nearest face per pixel centre (-1: none), from the numba kernel."""
    batch, height, width, near = vertices.shape[0], settings.height, settings.width, settings.near
    face_index = np.full((batch, height, width), -1, dtype=np.int64)
    if faces.shape[0] and batch:
        verts = np.ascontiguousarray(vertices.detach().to("cpu", torch.float64).numpy())
        faces_np = np.ascontiguousarray(faces.detach().to("cpu", torch.int64).numpy())
        zbuf = np.full((batch, height, width), np.inf)
        near_value = -np.inf if near is None else float(near)
        bands = kernels.zbuffer_bands(batch, height)
        flags = (settings.perspective, settings.cull, near_value)
        kernels.launch(kernels.zbuffer, verts, faces_np, *flags, bands, face_index, zbuf)
    return torch.from_numpy(face_index).to(vertices.device)


def _fragments_from_face_index(
    vertices: torch.Tensor, faces: torch.Tensor, face_index: torch.Tensor, perspective: bool, kernels_ok: bool
) -> Fragments:
    """Recompute barycentrics and depth differentiably for the covered pixels of ``face_index`` (with the
    numba kernels when ``kernels_ok``, else torch ops)."""
    batch, height, width = face_index.shape
    flat = face_index.reshape(-1)
    pixel_index = torch.nonzero(flat >= 0).squeeze(1)
    pixels = torch.stack([pixel_index, flat[pixel_index]])
    faces = faces.to(vertices.device, torch.long)
    if kernels_ok:
        bary, pixel_depth = kernels.BarycentricFunction.apply(
            vertices, faces, pixels, (height, width), perspective
        )
    else:
        bary, pixel_depth = barycentric_torch(vertices, faces, pixels, (height, width), perspective)
    pixel_bary = bary.t()
    if kernels_ok:
        depth = kernels.ScatterFunction.apply(pixel_depth[None], pixel_index, batch * height * width, False)
    else:
        depth = pixel_depth.new_zeros(batch * height * width).index_copy_(0, pixel_index, pixel_depth)
    return Fragments(face_index, depth.view(batch, height, width), pixels, pixel_bary)


def barycentric_torch(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    pixels: torch.Tensor,
    size: tuple[int, int],
    perspective: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Torch version of :class:`kernels.BarycentricFunction`: vertices (B,V,3), faces (F,3),
    pixels (2,N) = (pixel_index, pixel_face), size (H,W) → bary (3,N), depth (N,)."""
    height, width = size
    pixel_index, pixel_face = pixels
    batch = torch.div(pixel_index, height * width, rounding_mode="floor")
    rest = pixel_index - batch * (height * width)
    row = torch.div(rest, width, rounding_mode="floor")
    centre = torch.stack([rest - row * width, row]).to(vertices.dtype) + 0.5  # (2,N) pixel centres
    corner = faces.t().contiguous().index_select(1, pixel_face) + batch * vertices.shape[1]  # (3,N)
    rows = vertices.reshape(-1, 3)
    coords = rows.t().contiguous().index_select(1, corner.reshape(-1)).view(3, 3, -1)
    (x0, x1, x2), (y0, y1, y2), (z0, z1, z2) = (c.unbind(0) for c in coords)  # coordinate, corner
    # 1. pixel centre and the two edges, relative to the first corner (well conditioned in float32)
    px, py = centre[0] - x0, centre[1] - y0
    ex, ey, fx, fy = x1 - x0, y1 - y0, x2 - x0, y2 - y0
    # 2. screen-space barycentrics by signed areas (the kernel guarantees |area| >= MIN_AREA)
    area = ex * fy - fx * ey
    area = torch.where(area.abs() < MIN_AREA, torch.full_like(area, MIN_AREA), area)
    w1 = (px * fy - fx * py) / area
    w2 = (ex * py - px * ey) / area
    w0 = 1.0 - w1 - w2
    # 3. perspective correction: weights proportional to b_i / z_i; depth = 1 / sum(b_i / z_i)
    if perspective:
        w0, w1, w2 = w0 / z0, w1 / z1, w2 / z2
        total = w0 + w1 + w2
        w0, w1, w2 = w0 / total, w1 / total, w2 / total
    return torch.stack([w0, w1, w2]), w0 * z0 + w1 * z1 + w2 * z2
