"""Faces in: robust image reading, detection + 68 landmarks, DECA crops with their transforms, face masks.

Conventions: images RGB uint8 (H,W,3); pixel (row i, col j) has centre (j + 0.5, i + 0.5); landmarks
(68,2) in iBUG order; boxes [x0,y0,x1,y1]; crop matrices (2,3) map original → crop pixels.
"""

from vitdeca.faces.backends import DEFAULT_BACKEND, backend_names, get_backend
from vitdeca.faces.detect import detect_faces
from vitdeca.faces.detection import Detection, Face, FaceBackend
from vitdeca.faces.geometry import (
    Crop,
    compose,
    crop_face,
    crop_square,
    invert_similarity,
    square_matrix,
    transform_points,
    warp_image,
)
from vitdeca.faces.image_io import ImageReadError, as_rgb_uint8, read_image
from vitdeca.faces.masks import face_mask, landmark_mask, register_mask_method, skin_refine

__all__ = [
    "DEFAULT_BACKEND",
    "Crop",
    "Detection",
    "Face",
    "FaceBackend",
    "ImageReadError",
    "as_rgb_uint8",
    "backend_names",
    "compose",
    "crop_face",
    "crop_square",
    "detect_faces",
    "face_mask",
    "get_backend",
    "invert_similarity",
    "landmark_mask",
    "read_image",
    "register_mask_method",
    "skin_refine",
    "square_matrix",
    "transform_points",
    "warp_image",
]
