"""DECA-style training augmentation: a randomly scaled and shifted square crop (landmarks and masks follow
through the same 2×3 matrix), and an optional colour jitter (off by default).

Units: the crop side is ``1.1 · scale · (w + h)/2`` of the 68-landmark bounding box (see
:func:`vitdeca.faces.crop_square`). DECA trains with sides of 1.4–1.8 × (w + h)/2 and no shift, i.e.
``scale_range = (1.4/1.1, 1.8/1.1)`` here; the default adds a ±5 % shift (of (w + h)/2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitdeca.faces.geometry import crop_square


@dataclass(frozen=True)
class ColourJitter:
    """Random brightness, contrast and saturation factors, each uniform in [1 − x, 1 + x]."""

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


@dataclass(frozen=True)
class Augmentation:
    """Crop jitter (``scale_range`` in :func:`crop_square` units, ``translation`` as a fraction of the
    landmark box size (w + h)/2) and an optional :class:`ColourJitter`."""

    scale_range: tuple[float, float] = (1.4 / 1.1, 1.8 / 1.1)
    translation: float = 0.05
    colour: ColourJitter | None = None

    def __post_init__(self) -> None:
        low, high = self.scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        if self.translation < 0:
            raise ValueError(f"translation must be >= 0, got {self.translation}")


def jittered_square(
    landmarks: np.ndarray, augmentation: Augmentation, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """A random crop square (centre (2,), side) around ``landmarks`` (68,2)."""
    centre, unit_side = crop_square(landmarks, scale=1.0)  # side for scale 1: 1.1 · (w + h)/2
    box_size = unit_side / 1.1
    scale = rng.uniform(*augmentation.scale_range)
    shift = rng.uniform(-1.0, 1.0, size=2) * augmentation.translation * box_size
    return centre + shift, unit_side * scale


def colour_jitter(image: np.ndarray, jitter: ColourJitter, rng: np.random.Generator) -> np.ndarray:
    """Jitter a float image (H,W,3) in [0,1]; returns a new float32 image clipped to [0,1]."""
    factors = rng.uniform(-1.0, 1.0, size=3) * np.array(
        [jitter.brightness, jitter.contrast, jitter.saturation]
    )
    out = image.astype(np.float32) * (1.0 + factors[0])
    grey = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = grey.mean() + (out - grey.mean()) * (1.0 + factors[1])
    grey = out @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out = grey[..., None] + (out - grey[..., None]) * (1.0 + factors[2])
    return np.clip(out, 0.0, 1.0).astype(np.float32)
