"""Face / skin masks for the photometric loss, from the 68 iBUG landmarks.

The base mask is the convex hull of the 68 points minus the eye openings (36–41, 42–47) and the inner
mouth (60–67). A method is a function ``(image (H,W,3) uint8, landmarks (68,2)) → bool (H,W)`` registered
by name, so a segmentation network can be plugged in later with :func:`register_mask_method`:

- ``"landmarks"``: the base mask;
- ``"skin"``: the base mask refined by a skin-colour model (a Gaussian in CrCb fitted to the pixels of the
  base mask itself, so it adapts to each face's skin tone and lighting; hair, glasses, beards and hands of
  another colour drop out).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from vitdeca.errors import VitdecaError

LEFT_EYE = tuple(range(36, 42))
RIGHT_EYE = tuple(range(42, 48))
INNER_MOUTH = tuple(range(60, 68))

MaskMethod = Callable[[np.ndarray, np.ndarray], np.ndarray]


def polygon_mask(vertices: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bool (height,width): pixels whose centre lies inside the polygon (even-odd rule), exactly.

    ``vertices`` (N,2) in the pixel-centre frame. Scanline fill: for each row centre y = i + 0.5, the
    crossings with edges (half-open in y) pair up into spans [a, b); pixel j is in when a ≤ j + 0.5 < b.
    """
    x, y = np.asarray(vertices, dtype=np.float64).reshape(-1, 2).T
    out = np.zeros((height, width), dtype=bool)
    top, bottom = max(int(np.floor(y.min())), 0), min(int(np.ceil(y.max())), height)
    if len(x) < 3 or bottom <= top or width == 0:
        return out
    yc = np.arange(top, bottom, dtype=np.float64)[:, None] + 0.5
    x2, y2 = np.roll(x, -1), np.roll(y, -1)
    crosses = ((y <= yc) & (yc < y2)) | ((y2 <= yc) & (yc < y))
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(crosses, x + (yc - y) / (y2 - y) * (x2 - x), np.inf)
    if xs.shape[1] % 2:
        xs = np.concatenate([xs, np.full((len(xs), 1), np.inf)], axis=1)
    xs.sort(axis=1)
    starts, ends = xs[:, 0::2], xs[:, 1::2]
    valid = np.isfinite(starts) & np.isfinite(ends)
    rows = np.broadcast_to(np.arange(bottom - top)[:, None], starts.shape)[valid]
    first = np.clip(np.ceil(starts[valid] - 0.5), 0, width).astype(np.int64)
    stop = np.clip(np.ceil(ends[valid] - 0.5), 0, width).astype(np.int64)
    counts = np.zeros((bottom - top, width + 1), dtype=np.int32)
    np.add.at(counts, (rows, first), 1)
    np.add.at(counts, (rows, stop), -1)
    out[top:bottom] = np.cumsum(counts, axis=1)[:, :width] > 0
    return out


def landmark_mask(landmarks: np.ndarray, height: int, width: int, forehead: float = 0.0) -> np.ndarray:
    """Bool (height,width) mask: hull of the 68 landmarks minus eyes and inner mouth.

    ``forehead`` > 0 extends the hull above the brows by that fraction of the brow-to-chin distance.
    A pixel is inside when its centre is inside (see :func:`polygon_mask`); degenerate holes (a closed
    eye or mouth) remove nothing.
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    hull_points = points
    if forehead > 0:
        brows = points[17:27]
        up = brows.mean(axis=0) - points[8]
        hull_points = np.concatenate([points, brows + forehead * up])
    hull = cv2.convexHull(hull_points.astype(np.float32)).reshape(-1, 2)
    mask = polygon_mask(hull, height, width)
    for part in (LEFT_EYE, RIGHT_EYE, INNER_MOUTH):
        mask &= ~polygon_mask(points[list(part)], height, width)
    return mask


def skin_refine(
    image: np.ndarray, mask: np.ndarray, threshold: float = 2.5, min_pixels: int = 50
) -> np.ndarray:
    """Keep the pixels of ``mask`` whose chroma fits the mask's own skin colour (Mahalanobis ≤ threshold).

    The CrCb Gaussian is fitted twice: to the whole mask, then to its inliers, so occluders do not skew it.
    A 3×3 opening removes isolated pixels. Masks with fewer than ``min_pixels`` pixels are returned as is.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.sum() < min_pixels:
        return mask
    chroma = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2YCrCb)[..., 1:].astype(np.float64)
    samples = chroma[mask]
    keep = np.ones(len(samples), dtype=bool)
    for _ in range(2):
        mean = samples[keep].mean(axis=0)
        cov = np.cov(samples[keep].T) + np.eye(2) * 1.0  # floor: 1 level² of chroma noise
        delta = samples - mean
        distance2 = np.einsum("ni,ij,nj->n", delta, np.linalg.inv(cov), delta)
        keep = distance2 <= threshold**2
        if keep.sum() < min_pixels:
            return mask
    refined = np.zeros(mask.shape, np.uint8)
    refined[mask] = keep
    refined = cv2.morphologyEx(refined, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    return refined.astype(bool)


def _landmarks_method(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return landmark_mask(landmarks, image.shape[0], image.shape[1])


def _skin_method(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return skin_refine(image, landmark_mask(landmarks, image.shape[0], image.shape[1]))


MASK_METHODS: dict[str, MaskMethod] = {"landmarks": _landmarks_method, "skin": _skin_method}


def register_mask_method(name: str, method: MaskMethod) -> None:
    """Make ``method`` (image (H,W,3) uint8, landmarks (68,2)) → bool (H,W) available by ``name``."""
    MASK_METHODS[name] = method


def face_mask(image: np.ndarray, landmarks: np.ndarray, method: str = "landmarks") -> np.ndarray:
    """Bool (H,W) face mask of ``image`` (H,W,3) uint8 by the named method."""
    try:
        fn = MASK_METHODS[method]
    except KeyError:
        raise VitdecaError(
            f"unknown mask method {method!r} (known: {', '.join(sorted(MASK_METHODS))})"
        ) from None
    mask = np.asarray(fn(image, landmarks), dtype=bool)
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask method {method!r} returned shape {mask.shape}, expected {image.shape[:2]}")
    return mask
