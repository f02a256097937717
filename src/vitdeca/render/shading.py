"""Shading maths: normals, DECA's 9-band spherical-harmonics lighting, directional lights, compositing.

Pure tensor functions; normals are in model ("world") space, channels last (...,3).
"""

from __future__ import annotations

import math

import torch

from vitdeca.render import shading_kernels
from vitdeca.render.kernels import tensor_max

# DECA's SH normalisation (Lambertian kernel factors pi, 2pi/3, pi/4 folded into the basis constants),
# for the basis order [1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1].
SH_CONSTANTS: tuple[float, ...] = (
    1.0 / math.sqrt(4.0 * math.pi),
    (2.0 * math.pi / 3.0) * math.sqrt(3.0 / (4.0 * math.pi)),
    (2.0 * math.pi / 3.0) * math.sqrt(3.0 / (4.0 * math.pi)),
    (2.0 * math.pi / 3.0) * math.sqrt(3.0 / (4.0 * math.pi)),
    (math.pi / 4.0) * 3.0 * math.sqrt(5.0 / (12.0 * math.pi)),
    (math.pi / 4.0) * 3.0 * math.sqrt(5.0 / (12.0 * math.pi)),
    (math.pi / 4.0) * 3.0 * math.sqrt(5.0 / (12.0 * math.pi)),
    (math.pi / 4.0) * 1.5 * math.sqrt(5.0 / (12.0 * math.pi)),
    (math.pi / 4.0) * 0.5 * math.sqrt(5.0 / (4.0 * math.pi)),
)

# DECA's fixed lights for the grey "shape" render: five directions towards +z, intensity 1.7, grey 180/255.
SHAPE_LIGHT_DIRECTIONS: tuple[tuple[float, float, float], ...] = (
    (-1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0),
    (-1.0, -1.0, 1.0),
    (1.0, -1.0, 1.0),
    (0.0, 0.0, 1.0),
)
SHAPE_LIGHT_INTENSITY = 1.7
SHAPE_GREY = 180.0 / 255.0


def unit_vectors(vectors: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """``vectors`` divided by their length along ``dim`` (at least ``eps``): ``F.normalize``'s result.

    Written as a sum of squares and ``rsqrt``: on CPU, torch's vector norm along a dimension that is not
    the last (the channels of a (B,3,H,W) map) is ~60x slower (20 ms against 0.3 ms for a 4×3×256×256
    normal map, torch 2.14, 2 threads), and its backward is ~2x slower along the last. float16 input is
    normalised in float32 (its squares underflow) and returned as float16."""
    if vectors.dtype == torch.float16:
        return unit_vectors(vectors.float(), dim, eps).half()
    return vectors * torch.rsqrt((vectors * vectors).sum(dim, keepdim=True).clamp_min(eps * eps))


def face_normals(vertices: torch.Tensor, faces: torch.Tensor, unit: bool = True) -> torch.Tensor:
    """(B,V,3), faces (F,3) → (B,F,3) normals cross(v1-v0, v2-v0) (length = 2·area unless ``unit``).

    Counter-clockwise faces (seen from the viewer, y up) point towards the viewer (+z).
    """
    corners = vertices[:, faces]  # (B,F,3,3)
    normals = torch.linalg.cross(
        corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0], dim=-1
    )
    return unit_vectors(normals) if unit else normals


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals: (B,V,3), faces (F,3) → (B,V,3); isolated vertices get 0.

    Each face adds cross(v1-v0, v2-v0) (length 2·area) to its three vertices. numba kernel on CPU,
    :func:`vertex_normals_torch` elsewhere.
    """
    if faces.numel() and int(tensor_max(faces)) >= vertices.shape[1]:
        raise ValueError(f"vertex_normals: faces index vertices beyond the {vertices.shape[1]} given")
    if vertices.device.type == "cpu":
        return shading_kernels.VertexNormalsFunction.apply(vertices, faces.long())
    return vertex_normals_torch(vertices, faces)


def vertex_normals_torch(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`vertex_normals`, on a (V, 3·B) row layout so gathers move whole rows."""
    batch, n_verts, _ = vertices.shape
    n_faces = faces.shape[0]
    corners = faces.t().reshape(-1)  # corner-major (3F,)
    rows = vertices.permute(1, 2, 0).reshape(n_verts, 3 * batch)  # (V, coordinate·batch)
    c0, c1, c2 = rows.index_select(0, corners).view(3, n_faces, 3, batch).unbind(0)  # (F, coordinate, batch)
    (ax, ay, az), (bx, by, bz) = (c1 - c0).unbind(1), (c2 - c0).unbind(1)
    weighted = torch.stack([ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx], 1).view(n_faces, -1)
    normals = weighted.new_zeros(n_verts, 3 * batch).index_add(0, corners, weighted.repeat(3, 1))
    normals = normals.view(n_verts, 3, batch)
    normals = unit_vectors(normals, dim=1)
    return normals.permute(2, 0, 1)


def sh_basis(normals: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Unit normals with xyz along ``dim`` (size 3) → DECA's SH basis times :data:`SH_CONSTANTS`,
    9 values along ``dim``."""
    x, y, z = normals.unbind(dim)
    basis = torch.stack(
        [torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3.0 * z * z - 1.0], dim
    )
    shape = [1] * basis.ndim
    shape[dim] = 9
    return basis * basis.new_tensor(SH_CONSTANTS).view(shape)


def sh_shading(normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """Lambertian SH irradiance: normals (B,...,3), light (B,9,3) (9 coefficients × RGB) → (B,...,3)."""
    _check_light(light, normals.shape[0])
    basis = sh_basis(normals).reshape(normals.shape[0], -1, 9)
    return torch.matmul(basis, light.to(basis.dtype)).reshape(normals.shape)


def sh_shading_packed(normals: torch.Tensor, light: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """:func:`sh_shading` for packed pixels: normals (N,3), light (B,9,3) (or (1,9,3)), batch (N,) long
    (the image of each pixel) → (N,3). numba kernel on CPU."""
    n_images = int(tensor_max(batch)) + 1 if batch.numel() else 1
    if light.ndim != 3 or light.shape[1:] != (9, 3) or 1 < light.shape[0] < n_images:
        raise ValueError(f"sh_shading: light must be (B,9,3) with B >= {n_images}, got {tuple(light.shape)}")
    scaled = light.to(normals.dtype) * normals.new_tensor(SH_CONSTANTS)[:, None]
    scaled = scaled.expand(n_images, 9, 3) if light.shape[0] == 1 else scaled
    if normals.device.type == "cpu":
        return shading_kernels.SHShadingFunction.apply(normals.t(), scaled, batch).t()  # channel-major inside
    return sh_shading_packed_torch(normals, scaled, batch)


def sh_shading_packed_torch(normals: torch.Tensor, scaled: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Torch version of the CPU kernel of :func:`sh_shading_packed`; ``scaled`` = light × constants."""
    basis = sh_basis(normals) / normals.new_tensor(SH_CONSTANTS)  # the raw basis
    return torch.einsum("nk,nkc->nc", basis, scaled[batch])


def sh_shading_image(normal_image: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """:func:`sh_shading` for channels-first images: normal_image (B,3,H,W), light (B,9,3) → (B,3,H,W).

    The constants are folded into the (small) light and the constant band into a bias, so only the eight
    non-constant basis planes are formed.
    """
    batch, _, height, width = normal_image.shape
    _check_light(light, batch)
    x, y, z = normal_image.unbind(1)
    basis = torch.stack([x, y, z, x * y, x * z, y * z, x * x - y * y, 3.0 * z * z - 1.0], 1)
    scaled = (light.to(basis.dtype) * basis.new_tensor(SH_CONSTANTS)[:, None]).expand(batch, 9, 3)
    bias = scaled[:, 0, :, None]  # (B,3,1)
    shading = torch.baddbmm(bias, scaled[:, 1:].transpose(1, 2), basis.reshape(batch, 8, -1))
    return shading.view(batch, 3, height, width)


def directional_shading_image(
    normal_image: torch.Tensor, directions: torch.Tensor, intensities: torch.Tensor
) -> torch.Tensor:
    """Mean over L directional lights of clamp(n·d, 0, 1) · intensity.

    normal_image (B,3,H,W); directions (L,3) (normalised here); intensities (L,C) → (B,C,H,W).
    """
    batch, _, height, width = normal_image.shape
    directions = unit_vectors(directions.to(normal_image.dtype))
    cosine = torch.matmul(directions, normal_image.reshape(batch, 3, -1)).clamp(0.0, 1.0)  # (B,L,HW)
    shading = torch.matmul(intensities.to(cosine.dtype).t(), cosine) / directions.shape[0]
    return shading.view(batch, intensities.shape[-1], height, width)


def shape_shading_image(normal_image: torch.Tensor) -> torch.Tensor:
    """DECA's grey shape render for normals (B,3,H,W) → (B,3,H,W) (five fixed white lights, grey 180/255).

    The lights are white, so one grey plane is computed and expanded to RGB.
    """
    directions = normal_image.new_tensor(SHAPE_LIGHT_DIRECTIONS)
    intensity = torch.full_like(directions[:, :1], SHAPE_LIGHT_INTENSITY * SHAPE_GREY)
    return directional_shading_image(normal_image, directions, intensity).expand(-1, 3, -1, -1)


def shape_shading_packed(normals: torch.Tensor) -> torch.Tensor:
    """DECA's grey shape render for packed normals (N,3) → (N,1) (five fixed white lights, grey 180/255).
    numba kernel on CPU."""
    directions = unit_vectors(normals.new_tensor(SHAPE_LIGHT_DIRECTIONS))
    scale = SHAPE_LIGHT_INTENSITY * SHAPE_GREY
    if normals.device.type == "cpu":
        return shading_kernels.DirectionalShadingFunction.apply(normals.t(), directions, scale)[:, None]
    return (normals @ directions.t()).clamp(0.0, 1.0).mean(-1, keepdim=True) * scale


def _check_light(light: torch.Tensor, batch: int) -> None:
    if light.ndim != 3 or light.shape[1:] != (9, 3):
        raise ValueError(f"sh_shading: light must be (B,9,3), got {tuple(light.shape)}")
    if light.shape[0] not in (1, batch):
        raise ValueError(f"sh_shading: light batch {light.shape[0]} does not match normals' {batch}")
