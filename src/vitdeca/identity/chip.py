"""Differentiable face-chip alignment, the same geometry as dlib's ``get_face_chip``.

dlib (``dlib/image_transforms/interpolation.h``: ``get_face_chip_details``, ``chip_details``,
``extract_image_chips``) aligns a face in four steps, reproduced here with torch ops:

1. A template of mean-face landmark positions in [0,1]² (5 points, or 33 of the 68 points: nose,
   eyes and upper lip; eyebrows, jaw and lower lip are ignored) is padded,
   ``p = (padding + t) / (2 * padding + 1)``, and scaled to chip pixels, ``p * size``.
2. The least-squares similarity transform chip → image between template and landmarks
   (the closed-form solution of Umeyama's problem in 2D) gives a rotation angle, a scale ``s`` and
   the image point ``c`` that the chip point ``(size/2, size/2)`` maps to.
3. dlib turns these into a ``size*s`` wide square centred on ``c`` (its ``centered_drect`` spans
   ``size*s - 1`` between the first and last pixel centres) and samples chip pixel ``u`` at
   ``c + R(angle) * k * (u - (size-1)/2)`` with ``k = (size*s - 1) / (size - 1)``: slightly different
   from the fitted transform, and what the network was trained on.
4. When the face is much larger than the chip, dlib first halves the image with a 5x5 binomial
   pyramid (``pyramid_down<2>``) until one more level would make the face smaller than the chip,
   then samples bilinearly. Here the pyramid uses the same filter (without uint8 rounding), its
   geometrically exact point mapping, and the same rule for the number of levels.

Conventions: dlib puts pixel centres at integer coordinates; vitdeca puts them at +0.5. Landmarks
given here are in vitdeca's frame; landmarks from dlib's shape predictor need ``+ 0.5`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# dlib's 5-point template (shape_predictor_5_face_landmarks order), in [0,1]².
TEMPLATE_5 = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

# dlib's mean face for landmarks 17..67 of the 68-point (iBUG 300-W) scheme, in [0,1]².
_MEAN_FACE_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689,
)  # fmt: skip
_MEAN_FACE_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182,
)  # fmt: skip
# The 68-point landmarks dlib fits: 27-54 (nose, eyes, outer mouth to 54) and 60-64 (inner upper lip).
INDICES_68 = tuple(range(27, 55)) + tuple(range(60, 65))


def face_template(num_landmarks: int, size: int, padding: float) -> tuple[list[int], torch.Tensor]:
    """Landmark indices dlib uses and their chip positions (K,2), float64, in dlib's pixel frame."""
    if num_landmarks == 5:
        indices, unit = list(range(5)), torch.tensor(TEMPLATE_5, dtype=torch.float64)
    elif num_landmarks == 68:
        indices = list(INDICES_68)
        unit = torch.tensor(
            [(_MEAN_FACE_X[i - 17], _MEAN_FACE_Y[i - 17]) for i in indices], dtype=torch.float64
        )
    else:
        raise ValueError(f"face chips need 5 or 68 landmarks, got {num_landmarks}")
    return indices, (padding + unit) / (2 * padding + 1) * size


def fit_similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity ``dst ≈ A @ src + t`` with ``A = [[a, -b], [b, a]]``.

    src (B,K,2) or (K,2), dst (B,K,2) → (B,2,3) ``[A | t]``. Differentiable in both point sets.
    """
    src = src.expand_as(dst)
    src_mean, dst_mean = src.mean(dim=1, keepdim=True), dst.mean(dim=1, keepdim=True)
    p, q = src - src_mean, dst - dst_mean
    norm = (p * p).sum(dim=(1, 2))
    a = (p * q).sum(dim=(1, 2)) / norm
    b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(dim=1) / norm
    A = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)
    t = dst_mean[:, 0] - (A @ src_mean[:, 0, :, None])[..., 0]
    return torch.cat([A, t[..., None]], dim=-1)


@dataclass
class ChipGeometry:
    """dlib's chip placement for a batch: chip → image matrix, fitted scale and rotation."""

    matrix: torch.Tensor  # (B,2,3) float64, chip pixels → image pixels, vitdeca frame
    scale: torch.Tensor  # (B,) similarity scale s (image pixels per template chip pixel)
    cos_sin: torch.Tensor  # (B,2) rotation of the chip in the image
    centre: torch.Tensor  # (B,2) image point of the chip centre, dlib frame


def chip_geometry(landmarks: torch.Tensor, size: int = 150, padding: float = 0.25) -> ChipGeometry:
    """dlib's chip placement for (B,N,2) landmarks (N = 5 or 68) in vitdeca's pixel frame."""
    if landmarks.dim() != 3 or landmarks.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B,N,2), got {tuple(landmarks.shape)}")
    indices, template = face_template(landmarks.shape[1], size, padding)
    pts = landmarks[:, indices].to(torch.float64) - 0.5  # to dlib's frame
    fit = fit_similarity(template.to(pts.device), pts)
    A, t = fit[..., :2], fit[..., 2]
    s = torch.linalg.vector_norm(A[..., 0], dim=-1)
    half = torch.full((2, 1), size / 2.0, dtype=torch.float64, device=pts.device)
    centre = (A @ half)[..., 0] + t
    linear = A / s[:, None, None] * ((size * s - 1.0) / (size - 1.0))[:, None, None]
    # vitdeca frame: image = centre + 0.5 + k R (u - size/2), u a chip pixel in vitdeca's frame.
    offset = centre + 0.5 - (linear @ half)[..., 0]
    return ChipGeometry(torch.cat([linear, offset[..., None]], dim=-1), s, A[..., 0] / s[:, None], centre)


def chip_to_image_matrix(landmarks: torch.Tensor, size: int = 150, padding: float = 0.25) -> torch.Tensor:
    """(B,2,3) float64 similarity: chip pixels → image pixels (vitdeca frame), for (B,N,2) landmarks."""
    return chip_geometry(landmarks, size, padding).matrix


def image_to_chip_matrix(landmarks: torch.Tensor, size: int = 150, padding: float = 0.25) -> torch.Tensor:
    """(B,2,3) float64 crop matrix (image pixels → chip pixels): inverse of :func:`chip_to_image_matrix`."""
    m = chip_to_image_matrix(landmarks, size, padding)
    inv = torch.linalg.inv(m[..., :2])
    return torch.cat([inv, -(inv @ m[..., 2:])], dim=-1)


def pyramid_down(images: torch.Tensor) -> torch.Tensor:
    """dlib's ``pyramid_down<2>``: 5x5 binomial filter, every other pixel kept.

    (B,C,H,W) → (B,C,(H-3)//2,(W-3)//2).

    Output pixel (i, j) is centred on input pixel (2i+2, 2j+2); dlib nevertheless maps points with
    ``x/2 - 1.25, y/2 - 0.75`` (its frame), which :func:`extract_chips` follows to match its chips.
    """
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=images.dtype, device=images.device) / 16.0
    kernel = (taps[:, None] * taps[None, :]).expand(images.shape[1], 1, 5, 5)
    return F.conv2d(images, kernel, stride=2, groups=images.shape[1])


def _pyramid_levels(scale: torch.Tensor, size: int) -> list[int]:
    """How often dlib halves the image for each face: while the halved face is still larger than the chip."""
    levels = []
    for side in (scale.detach() * size).tolist():
        n = 0
        while (side + 1.0) / 2.0 > size:
            side, n = (side + 1.0) / 2.0, n + 1
        levels.append(n)
    return levels


def _sample(image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (B,C,h,w) of (B,C,H,W) at points (B,h,w,2) in dlib's frame.

    A sample is zero unless all four neighbouring pixels exist (dlib's ``interpolate_bilinear``).
    """
    height, width = image.shape[-2:]
    x, y = points[..., 0], points[..., 1]
    inside = (x >= 0) & (y >= 0) & (x < width - 1) & (y < height - 1)
    extent = torch.tensor([width, height], dtype=points.dtype, device=points.device)
    grid = (2.0 * (points + 0.5) / extent - 1.0).to(image.dtype)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out * inside[:, None].to(image.dtype)


def _pyramid_sample(
    image: torch.Tensor, points: torch.Tensor, geo: ChipGeometry, i: int, levels: int, size: int
) -> torch.Tensor:
    """dlib's path for a large face: crop its grown bounding box, build the pyramid, sample the last level."""
    height, width = image.shape[-2:]
    half = (size * float(geo.scale[i].detach()) - 1.0) / 2.0
    c, s = (abs(float(v)) for v in geo.cos_sin[i].detach())
    reach = torch.tensor([c * half + s * half, s * half + c * half], dtype=torch.float64)
    grow = 2.0 ** (levels + 2) - 2.0  # dlib's margin: 6, 14, 30, ... pixels for 1, 2, 3 levels
    lo = torch.maximum(geo.centre[i].detach().cpu() - reach - grow, torch.zeros(2, dtype=torch.float64))
    hi = torch.minimum(
        geo.centre[i].detach().cpu() + reach + grow,
        torch.tensor([width - 1.0, height - 1.0], dtype=torch.float64),
    )
    (x0, y0), (x1, y1) = torch.floor(lo + 0.5).long().tolist(), torch.floor(hi + 0.5).long().tolist()
    if x1 < x0 or y1 < y0:  # the face lies outside the image
        return image.new_zeros(1, image.shape[1], size, size)
    level_image = image[i : i + 1, :, y0 : y1 + 1, x0 : x1 + 1]
    level_points = points[i : i + 1] - torch.tensor([x0, y0], dtype=torch.float64, device=points.device)
    shift = torch.tensor([1.25, 0.75], dtype=torch.float64, device=points.device)
    for _ in range(levels):
        if min(level_image.shape[-2:]) <= 8:
            break
        level_image, level_points = pyramid_down(level_image), level_points / 2.0 - shift
    return _sample(level_image, level_points)


def extract_chips(
    images: torch.Tensor,
    landmarks: torch.Tensor,
    size: int = 150,
    padding: float = 0.25,
    antialias: bool = True,
) -> torch.Tensor:
    """Aligned face chips (B,C,size,size) from images (B,C,H,W) and landmarks (B,5|68,2) in vitdeca's frame.

    Bilinear sampling as dlib's ``extract_image_chip`` (a chip pixel is zero unless its four image
    neighbours exist); differentiable in ``images`` and ``landmarks``. With ``antialias`` (dlib's
    behaviour) faces more than twice the chip size are sampled from dlib's image pyramid.
    """
    if images.dim() != 4 or landmarks.shape[0] != images.shape[0]:
        shapes = f"{tuple(images.shape)}, {tuple(landmarks.shape)}"
        raise ValueError(f"images (B,C,H,W) and landmarks (B,N,2) disagree: {shapes}")
    geo = chip_geometry(landmarks, size, padding)
    centres = torch.arange(size, dtype=torch.float64, device=images.device) + 0.5
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    uv1 = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)
    points = (uv1 @ geo.matrix.transpose(1, 2)).reshape(-1, size, size, 2) - 0.5  # dlib frame
    levels = _pyramid_levels(geo.scale, size) if antialias else [0] * images.shape[0]
    if not any(levels):
        return _sample(images, points)
    chips = [
        _pyramid_sample(images, points, geo, i, n, size)
        if n
        else _sample(images[i : i + 1], points[i : i + 1])
        for i, n in enumerate(levels)
    ]
    return torch.cat(chips, dim=0)
