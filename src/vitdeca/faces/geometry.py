"""Crops as DECA makes them, and the 2×3 similarity transforms that tie a crop to its original image.

Coordinates follow the project convention: x right, y down, pixel (row i, col j) has its centre at
(j + 0.5, i + 0.5), so a W-pixel-wide image spans x ∈ [0, W]. A crop matrix ``M`` (2,3) maps original
pixels to crop pixels: ``p_crop = M[:, :2] @ p + M[:, 2]``; :func:`invert_similarity` gives the way back.

DECA's crop from 68 landmarks: the landmarks' bounding box (w, h, centre c) gives a square of side
``1.1 · scale · (w + h) / 2`` centred on c (DECA's ``kpt68`` box, scale 1.25 at test time), resized to
``size`` (224). Unlike DECA the side is not rounded to an integer and the square maps onto [0, size]
exactly (DECA maps corners to pixel indices 0 and size-1, a ~0.4 % scale error).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

LANDMARK_BOX_PAD = 1.1  # DECA's enlargement of the landmark bounding box ("kpt68" boxes)
DEFAULT_SCALE = 1.25
DEFAULT_SIZE = 224


@dataclass(frozen=True, eq=False)
class Crop:
    """A face crop: ``image`` (size,size,3) uint8 and ``matrix`` (2,3) mapping original → crop pixels."""

    image: np.ndarray
    matrix: np.ndarray

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """Crop pixels (...,2) → original-image pixels (...,2)."""
        return transform_points(points, invert_similarity(self.matrix))


def crop_square(landmarks: np.ndarray, scale: float = DEFAULT_SCALE) -> tuple[np.ndarray, float]:
    """DECA's square around (68,2) landmarks: (centre (2,), side) in pixels."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    low, high = points.min(axis=0), points.max(axis=0)
    side = LANDMARK_BOX_PAD * float(scale) * float((high - low).sum()) / 2.0
    return (low + high) / 2.0, side


def square_matrix(centre: np.ndarray, side: float, size: int = DEFAULT_SIZE) -> np.ndarray:
    """(2,3) matrix taking the axis-aligned square (centre, side) onto the crop [0,size]²."""
    if side <= 0:
        raise ValueError(f"crop side must be positive, got {side}")
    k = size / float(side)
    cx, cy = np.asarray(centre, dtype=np.float64)
    return np.array([[k, 0.0, size / 2.0 - k * cx], [0.0, k, size / 2.0 - k * cy]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2,3) matrix to points (...,2); returns float64 (...,2)."""
    points = np.asarray(points, dtype=np.float64)
    matrix = np.asarray(matrix, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_similarity(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2,3) similarity (or any invertible affine) matrix, as (2,3)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    linear = np.linalg.inv(matrix[:, :2])
    return np.concatenate([linear, -(linear @ matrix[:, 2])[:, None]], axis=1)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2,3) matrix of ``outer ∘ inner`` (apply ``inner`` first)."""
    outer = np.asarray(outer, dtype=np.float64)
    inner = np.asarray(inner, dtype=np.float64)
    return np.concatenate(
        [outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]], 1
    )


def warp_image(
    image: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int], nearest: bool = False
) -> np.ndarray:
    """Resample ``image`` (H,W[,C]) through ``matrix`` (source → output) into (h,w[,C]); outside is 0.

    ``size`` is an int (square) or (width, height). Bilinear by default; strong shrinking (zoom < 1/2)
    first area-averages the needed region so the output is not aliased. Any dtype cv2 accepts (float64
    is resampled in float32).
    """
    width, height = (size, size) if isinstance(size, int) else size
    matrix = np.asarray(matrix, dtype=np.float64)
    zoom = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if zoom < 0.5 and not nearest:
        image, matrix = _preshrink(image, matrix, zoom, (width, height))
    # Pixel-centre frame → cv2's index frame (integer = pixel centre): idx' = A idx + (b + A·½ − ½).
    cv_matrix = matrix.copy()
    cv_matrix[:, 2] += matrix[:, :2] @ np.array([0.5, 0.5]) - 0.5
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    source = image.astype(np.float32) if image.dtype == np.float64 else image  # cv2's float64 path is coarse
    out = cv2.warpAffine(source, cv_matrix, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT)
    return out.astype(image.dtype, copy=False)


def _preshrink(
    image: np.ndarray, matrix: np.ndarray, zoom: float, out_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Area-downsample the source region the output needs to ~1:1 zoom; return (image, updated matrix)."""
    height, width = image.shape[:2]
    corners = np.array([[0, 0], [out_size[0], 0], [0, out_size[1]], [out_size[0], out_size[1]]], float)
    source = transform_points(corners, invert_similarity(matrix))
    x0, y0 = np.maximum(np.floor(source.min(axis=0)) - 2, 0).astype(int)
    x1 = int(min(np.ceil(source[:, 0].max()) + 2, width))
    y1 = int(min(np.ceil(source[:, 1].max()) + 2, height))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, matrix
    small_w, small_h = max(1, round((x1 - x0) * zoom)), max(1, round((y1 - y0) * zoom))
    small = cv2.resize(image[y0:y1, x0:x1], (small_w, small_h), interpolation=cv2.INTER_AREA)
    fx, fy = small_w / (x1 - x0), small_h / (y1 - y0)
    shrink = np.array([[fx, 0.0, -fx * x0], [0.0, fy, -fy * y0]])  # original → small (centre frame)
    return small, compose(matrix, invert_similarity(shrink))


def crop_face(
    image: np.ndarray, landmarks: np.ndarray, scale: float = DEFAULT_SCALE, size: int = DEFAULT_SIZE
) -> Crop:
    """DECA crop of ``image`` (H,W,3) around ``landmarks`` (68,2): a :class:`Crop` (image + matrix)."""
    centre, side = crop_square(landmarks, scale)
    matrix = square_matrix(centre, side, size)
    return Crop(image=warp_image(image, matrix, size), matrix=matrix)
