"""Face detection + 68 landmarks with a backend chosen by name (:mod:`vitdeca.faces.backends`).

A backend (:class:`~vitdeca.faces.detection.FaceBackend`) has two steps: ``detect(image) →
[Detection]`` (boxes, scores, optional key points) and ``landmarks(image, detection) → (68,2)``.
:func:`detect_faces` runs the detector on a copy shrunk to ``max_side`` pixels (large photos), maps the
detections back to the original pixels, then predicts the landmarks on the full-resolution image. All
coordinates are in the original image's pixel-centre frame (pixel (i, j) has centre (j + 0.5, i + 0.5));
boxes are [x0, y0, x1, y1] pixel-edge coordinates.
"""

from __future__ import annotations

import cv2
import numpy as np

from vitdeca.faces.backends import DEFAULT_BACKEND, get_backend
from vitdeca.faces.detection import Face, FaceBackend
from vitdeca.faces.image_io import as_rgb_uint8

DEFAULT_MAX_SIDE = 1024


def shrink_for_detection(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float, float]:
    """``image`` shrunk (area filter) so its longer side is ≤ ``max_side``: (small, sx, sy), small ≈ sx·x."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image, 1.0, 1.0
    factor = max_side / max(height, width)
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    small = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return small, new_w / width, new_h / height


def min_face_side(image_shape: tuple[int, ...], backend: str | FaceBackend = DEFAULT_BACKEND,
                  max_side: int | None = DEFAULT_MAX_SIDE) -> int | None:  # fmt: skip
    """The smallest face side (original pixels) that :func:`detect_faces` finds in an image of
    ``image_shape`` (H, W, ...): the backend's own limit, scaled up when the image is shrunk for
    detection. None when the backend states no limit."""
    model = get_backend(backend) if isinstance(backend, str) else backend
    if model.min_face_size is None:
        return None
    longest = max(image_shape[:2])
    factor = longest / max_side if max_side and longest > max_side else 1.0
    return int(np.ceil(model.min_face_size * factor))


def no_face_message(image_shape: tuple[int, ...], backend: str | FaceBackend = DEFAULT_BACKEND) -> str:
    """One line for an image where no face was found, naming the smallest face the detector finds."""
    side = min_face_side(image_shape, backend)
    if side is None:
        return "no face found"
    return f"no face found (faces smaller than about {side} px across are missed in this image)"


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
