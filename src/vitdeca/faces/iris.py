"""Eyes in a face image from its 68 landmarks: where each iris is, and whether the eye is open.

iBUG-68 eyelids: 36-41 is the subject's right eye (on the image's left in a frontal photo), 42-47 the
subject's left eye; each runs outer corner, two upper-lid points, inner corner, two lower-lid points
(mirrored for the left eye). Results are indexed left eye first, like :mod:`vitdeca.head.eyes`.

Iris localiser (:func:`locate_iris`): the darkest disk of the iris's size inside the eyelid polygon.
The eye box is upsampled (sub-pixel precision); each pixel inside the lids gets a darkness (how much
darker than the midpoint between the sclera and the pupil, the lids' 90th and 5th grey percentiles;
negative for the sclera), pixels outside the lids none; the disk that holds the most darkness (a
matched filter: an iris partly hidden by a lid is still found at its centre) wins, refined by a
parabola through its neighbours. Its centre lies inside the lids or, for an eye looking up under a
lowered lid, a little above the upper lid (:data:`IRIS_ABOVE_LID`). No model, nothing to download.
An eye turned away from the camera shows its iris as an ellipse, and a disk as wide as the iris slides
along the ellipse's short axis with no change of score; given the expected ellipse (``ellipse``: from a
first estimate of the gaze, :func:`vitdeca.head.eyes.iris_ellipse`) the filter takes its shape instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EYELIDS = {"left": tuple(range(42, 48)), "right": tuple(range(36, 42))}  # subject's own sides
CLOSED_EAR = 0.12  # eye aspect ratio below which the eye counts as closed (open eyes: about 0.25-0.35)
OPEN_EAR = 0.25  # at or above: blink 0
IRIS_WIDTH_RATIO = 0.21  # iris radius / eye width (corner to corner) when no model gives it
IRIS_ABOVE_LID = 0.4  # how far (iris radii) above the upper lid the iris centre may be located
_UPSAMPLE = 4


@dataclass(frozen=True)
class Iris:
    """A located iris: ``centre`` (2,) image pixels (pixel-centre frame), ``contrast`` the disk's mean
    darkness below the sclera's grey level (in [0, 1]; low when no iris stands out)."""

    centre: np.ndarray
    contrast: float


def eye_aspect_ratio(eyelid: np.ndarray) -> float:
    """(6,2) eyelid points → (±|p1-p5| ± |p2-p4|) / (2 |p0-p3|): lid opening over eye width. Each
    distance is negative when its upper-lid point lies below its lower-lid one (the lids cross, as on a
    closed eye looking down), where unsigned distances would rise again and read as an open eye;
    "below" is along the normal of the corner axis p0→p3 (the points run p0, upper lid, p3, lower lid).
    """
    return float(eye_aspect_ratios(eyelid))


def eye_aspect_ratios(eyelids: np.ndarray) -> np.ndarray:
    """:func:`eye_aspect_ratio` of many eyelids at once: (…,6,2) points → (…)."""
    p = np.asarray(eyelids, np.float64)
    upward, width = _upward(p)
    gaps = p[..., [1, 2], :] - p[..., [5, 4], :]  # upper minus lower lid, (…,2,2)
    signed = np.copysign(np.linalg.norm(gaps, axis=-1), (gaps * upward[..., None, :]).sum(axis=-1))
    return signed.sum(axis=-1) / (2.0 * np.maximum(width, 1e-9))


def landmark_eye_aspect_ratios(landmarks: np.ndarray) -> np.ndarray:
    """(…,68,2) landmarks → (…,2) :func:`eye_aspect_ratio` of each eye, left eye first."""
    pts = np.asarray(landmarks, np.float64)
    return eye_aspect_ratios(pts[..., [list(ids) for ids in EYELIDS.values()], :])


def _upward(eyelid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit normal (…,2) of the corner axis p0→p3 on the upper lid's side, eye width |p0-p3| (…)) of
    eyelids (…,6,2) running p0, upper lid, p3, lower lid (image y points down)."""
    axis = eyelid[..., 3, :] - eyelid[..., 0, :]
    width = np.linalg.norm(axis, axis=-1)
    return np.stack([axis[..., 1], -axis[..., 0]], axis=-1) / np.maximum(width, 1e-9)[..., None], width


def blink_weight(ear: float) -> float:
    """Eye aspect ratio → an ``eyeBlink`` weight: 0 at :data:`OPEN_EAR` and above, 1 at
    :data:`CLOSED_EAR` and below, linear between."""
    return float(np.clip((OPEN_EAR - ear) / (OPEN_EAR - CLOSED_EAR), 0.0, 1.0))


def eyelids(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """(68,2) landmarks → {"left": (6,2), "right": (6,2)} eyelid polygons."""
    pts = np.asarray(landmarks, np.float64)
    return {eye: pts[list(ids)] for eye, ids in EYELIDS.items()}


def locate_iris(
    image: np.ndarray, eyelid: np.ndarray, radius: float | None = None, ellipse: np.ndarray | None = None
) -> Iris | None:
    """The iris centre in ``image`` (H,W[,3]) uint8 within ``eyelid`` (6,2) pixels; ``radius``: the
    iris radius in pixels (default :data:`IRIS_WIDTH_RATIO` × the eye's width); ``ellipse`` (2,2)
    pixels: the iris outline's two semi-axes as columns (the unit circle's image), the filter's shape
    in place of the disk of ``radius``. None when the eye is (nearly) closed or outside the image."""
    lid = np.asarray(eyelid, np.float64)
    width = float(np.linalg.norm(lid[0] - lid[3]))
    radius = IRIS_WIDTH_RATIO * width if radius is None else float(radius)
    if width < 2.0 or radius <= 0.5 or eye_aspect_ratio(lid) < CLOSED_EAR:
        return None
    grey, mask, origin = _eye_patch(image, lid, radius)
    if grey is None or mask.sum() < 4:
        return None
    disk = _kernel(radius, ellipse)
    inside = grey[mask > 0.5]
    bright, dark = np.quantile(inside, [0.9, 0.05])  # the sclera's and the pupil's grey levels
    # darker than the midpoint counts for the iris, brighter (the sclera) against it
    darkness = (bright - grey - 0.5 * (bright - dark)) * mask
    score = cv2.filter2D(darkness, -1, disk, borderType=cv2.BORDER_CONSTANT)  # dark mass under the disk
    score[~_centre_allowed(mask, lid, origin, radius)] = -np.inf
    row, col = np.unravel_index(np.argmax(score), score.shape)
    dy, dx = _parabola(-score, row, col)
    centre = origin + (np.array([col + dx, row + dy]) + 0.5) / _UPSAMPLE  # pixel-centre frame
    covered = _window_sum(mask, disk, row, col)
    contrast = float(score[row, col] / max(covered, 1.0) + 0.5 * (bright - dark))  # below the sclera
    return Iris(centre, contrast)


def _centre_allowed(mask: np.ndarray, lid: np.ndarray, origin: np.ndarray, radius: float) -> np.ndarray:
    """(h,w) bool over the eye patch: where the iris centre may lie. Inside the lids (``mask``), or above
    the upper lid between its two points (along the normal of the corner axis) by at most
    :data:`IRIS_ABOVE_LID` × ``radius`` pixels: a gaze raised under a lowered lid hides the centre
    there, and only the lower part of the iris shows. Never below the lower lid or beyond the corners."""
    upper = (lid[[1, 2]] - origin) * _UPSAMPLE - 0.5  # the upper lid's points in the patch's index frame
    raised = upper + _upward(lid)[0] * IRIS_ABOVE_LID * radius * _UPSAMPLE
    band = np.zeros(mask.shape, np.uint8)
    polygon = np.round(np.concatenate([upper, raised[::-1]]) * 16).astype(np.int32)
    cv2.fillPoly(band, [polygon], 1, lineType=cv2.LINE_8, shift=4)
    return (mask > 0.5) | (band > 0)


def _window_sum(values: np.ndarray, kernel: np.ndarray, row: int, col: int) -> float:
    """``cv2.filter2D(values, -1, kernel, borderType=BORDER_CONSTANT)[row, col]`` for an odd-sized
    ``kernel``, computed at that one pixel only."""
    half_h, half_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    top, left = row - half_h, col - half_w
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(row + half_h + 1, values.shape[0]), min(col + half_w + 1, values.shape[1])
    window = kernel[r0 - top : r1 - top, c0 - left : c1 - left]
    return float((values[r0:r1, c0:c1] * window).sum())


def _kernel(radius: float, ellipse: np.ndarray | None) -> np.ndarray:
    """The matched filter at the patch's scale: a disk of ``radius`` pixels, or the ``ellipse`` (2,2)
    (semi-axes as columns; a degenerate one, seen edge on, falls back to the disk)."""
    r = radius * _UPSAMPLE
    axes = None if ellipse is None else np.asarray(ellipse, np.float64) * _UPSAMPLE
    if axes is None or abs(np.linalg.det(axes)) < 1.0:
        axes = None
    extent = r if axes is None else float(np.linalg.norm(axes, axis=1).max())  # the half-width in x or y
    size = 2 * int(np.ceil(extent)) + 1
    yy, xx = np.mgrid[:size, :size] - size // 2
    if axes is None:
        return ((xx * xx + yy * yy) <= r * r).astype(np.float32)
    unit = np.linalg.solve(axes, np.stack([xx.ravel(), yy.ravel()]).astype(np.float64))
    return ((unit**2).sum(axis=0) <= 1.0).reshape(xx.shape).astype(np.float32)


def _eye_patch(image: np.ndarray, lid: np.ndarray, radius: float):
    """The eye's box (lids plus a margin of ``radius``) upsampled :data:`_UPSAMPLE` times: grey (h,w)
    float32 in [0,1], lid mask (h,w) float32, and the box's corner (2,) in pixel-centre coordinates
    (points are in the pixel-centre frame: a pixel's centre at +0.5).
    (None, None, None) when the box is off the image."""
    height, width = image.shape[:2]
    low = np.floor(lid.min(axis=0) - radius).astype(int)
    high = np.ceil(lid.max(axis=0) + radius).astype(int) + 1
    low, high = np.maximum(low, 0), np.minimum(high, [width, height])
    if (high - low).min() < 3:
        return None, None, None
    patch = image[low[1] : high[1], low[0] : high[0]]
    if patch.ndim == 3:
        patch = patch[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    size = (int(patch.shape[1] * _UPSAMPLE), int(patch.shape[0] * _UPSAMPLE))
    grey = cv2.resize(patch.astype(np.float32) / 255.0, size, interpolation=cv2.INTER_CUBIC)
    polygon = ((lid - low) * _UPSAMPLE - 0.5) * 16  # cv2 index frame, 4 fractional bits (shift=4)
    mask = np.zeros(grey.shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return np.clip(grey, 0.0, 1.0), mask.astype(np.float32), low.astype(np.float64)


def _parabola(values: np.ndarray, row: int, col: int) -> tuple[float, float]:
    """Sub-sample offsets (dy, dx) of a minimum from a parabola through its neighbours (0 at edges)."""
    out = []
    for step in ((1, 0), (0, 1)):
        before, after = (row - step[0], col - step[1]), (row + step[0], col + step[1])
        if min(before) < 0 or after[0] >= values.shape[0] or after[1] >= values.shape[1]:
            out.append(0.0)
            continue
        a, b, c = values[before], values[row, col], values[after]
        curvature = a - 2.0 * b + c
        ok = np.isfinite(curvature) and curvature > 0
        out.append(float(np.clip(0.5 * (a - c) / curvature, -0.5, 0.5)) if ok else 0.0)
    return out[0], out[1]
