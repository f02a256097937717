"""Face detection + 68 landmarks behind one small interface, chosen by name.

A backend has two steps: ``detect(image) → [Detection]`` (boxes, scores, optional key points) and
``landmarks(image, detection) → (68,2)``. :func:`detect_faces` runs the detector on a copy shrunk to
``max_side`` pixels (large photos), maps the detections back to the original pixels, then predicts the
landmarks on the full-resolution image. All coordinates are in the original image's pixel-centre frame
(pixel (i, j) has centre (j + 0.5, i + 0.5)); boxes are [x0, y0, x1, y1] pixel-edge coordinates.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import cv2
import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.faces.image_io import as_rgb_uint8

DEFAULT_BACKEND = "dlib"
DEFAULT_MAX_SIDE = 1024


@dataclass(frozen=True, eq=False)
class Detection:
    """One detector hit: ``box`` (4,) [x0,y0,x1,y1], ``score`` (backend-specific scale), ``points`` (K,2)
    or None (5 MTCNN key points; 68 landmarks for backends that find both at once)."""

    box: np.ndarray
    score: float
    points: np.ndarray | None = None

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

    @abstractmethod
    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (H,W,3) uint8 RGB, in its own pixels."""

    @abstractmethod
    def landmarks(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        """(68,2) landmarks of ``detection`` in ``image`` (H,W,3) uint8 RGB (full resolution)."""


def backend_names() -> list[str]:
    """Registered backend names."""
    from vitdeca.faces.backends import BACKENDS

    return sorted(BACKENDS)


def check_backend(name: str) -> None:
    """Raise :class:`VitdecaError` (before any work) when ``name`` is no registered backend or its
    optional package is not installed; nothing is loaded."""
    import importlib.util

    from vitdeca.faces.backends import BACKENDS

    if name not in BACKENDS:
        raise VitdecaError(f"unknown face backend {name!r} (known: {', '.join(sorted(BACKENDS))})")
    if BACKENDS[name].requires is None:
        return
    module, install = BACKENDS[name].requires
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules
        found = False
    if not found:
        raise VitdecaError(f"the {name!r} face backend needs the {module} package: {install}")


@functools.lru_cache(maxsize=4)
def _cached_backend(name: str, options: tuple[tuple[str, Any], ...]) -> FaceBackend:
    from vitdeca.faces.backends import BACKENDS

    try:
        cls = BACKENDS[name]
    except KeyError:
        raise VitdecaError(f"unknown face backend {name!r} (known: {', '.join(sorted(BACKENDS))})") from None
    return cls(**dict(options))


def get_backend(name: str = DEFAULT_BACKEND, **options: Any) -> FaceBackend:
    """The backend registered as ``name`` built with ``options``; models load once per process."""
    return _cached_backend(name, tuple(sorted(options.items())))


def clear_backends() -> None:
    """Forget the cached backends and models of this process (frees their memory)."""
    from vitdeca.faces.backends import _shape_predictor

    _cached_backend.cache_clear()
    _shape_predictor.cache_clear()


def shrink_for_detection(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float, float]:
    """``image`` shrunk (area filter) so its longer side is ≤ ``max_side``: (small, sx, sy), small ≈ sx·x."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, 1.0, 1.0
    factor = max_side / max(height, width)
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, new_w / width, new_h / height


def detect_faces(
    image: np.ndarray, backend: str | FaceBackend = DEFAULT_BACKEND, max_side: int | None = DEFAULT_MAX_SIDE
) -> list[Face]:
    """Every face in ``image`` (H,W[,C], any dtype :func:`as_rgb_uint8` takes), largest box first.

    Detection runs on a copy shrunk to ``max_side`` (None: never shrink); landmarks on the full image.
    """
    rgb = as_rgb_uint8(image)
    model = get_backend(backend) if isinstance(backend, str) else backend
    small, sx, sy = shrink_for_detection(rgb, max_side)
    faces = []
    for hit in model.detect(small):
        hit = hit.scaled(1.0 / sx, 1.0 / sy)
        landmarks = np.asarray(model.landmarks(rgb, hit), dtype=np.float64).reshape(68, 2)
        faces.append(Face(box=np.asarray(hit.box, np.float64), score=float(hit.score), landmarks=landmarks))
    return sorted(faces, key=lambda face: -face.area)
