"""What a face backend is and what it returns: :class:`Detection`, :class:`Face` and the
:class:`FaceBackend` interface, shared by the backends (:mod:`vitdeca.faces.backends`) and the detection
pipeline (:mod:`vitdeca.faces.detect`). Coordinates as in :mod:`vitdeca.faces.detect`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np


@dataclass(frozen=True, eq=False)
class Detection:
    """One detector hit: ``box`` (4,) [x0,y0,x1,y1], ``score`` (backend-specific scale), ``points`` (K,2)
    or None (5 MTCNN key points; 68 landmarks for backends that find both at once), ``source``: the
    backend that found it when a cascade ran several (else None)."""

    box: np.ndarray
    score: float
    points: np.ndarray | None = None
    source: str | None = None

    def scaled(self, sx: float, sy: float) -> Detection:
        """The same detection in an image scaled by (sx, sy) (pixel-centre frame: a pure scale)."""
        factor = np.array([sx, sy])
        points = None if self.points is None else self.points * factor
        return replace(self, box=self.box * np.tile(factor, 2), points=points)


@dataclass(frozen=True, eq=False)
class Face:
    """A face: ``box`` (4,) [x0,y0,x1,y1], detector ``score``, ``landmarks`` (68,2) iBUG order, all in
    original-image pixels."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        """Box area in pixels²."""
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


class FaceBackend(ABC):
    """A named detector + 68-landmark predictor. Subclasses load their models in ``__init__``;
    ``requires`` names an optional package the backend imports and how to install it."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, str] | None] = None
    min_face_size: float | None = None  # smallest face side it finds, pixels of the image it is given

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (H,W,3) uint8 RGB, in its own pixels."""

    @abstractmethod
    def landmarks(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        """(68,2) landmarks of ``detection`` in ``image`` (H,W,3) uint8 RGB (full resolution)."""

    def landmark_spread(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        """(68,) pixels: how unsure the backend's landmark predictor is of each of ``face``'s points in
        ``image`` (None: the backend cannot say; then every point is taken as sure)."""
        return None
