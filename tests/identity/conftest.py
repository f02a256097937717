"""Identity-test fixtures: dlib's own models, and faces with dlib's 68 landmarks from ../shared/faces."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dlib
import imageio.v3 as iio
import numpy as np
import pytest
import torch

from vitdeca.identity import dlib_model_path, load_identity_net

# Faces in dlib's bald_guys.jpg (4 actors, 6 photos each), boxes (left, top, right, bottom) as found by
# dlib's frontal face detector; identities labelled by looking at the photo.
BALD_GUYS = (
    ("rock", (1070, 1309, 1249, 1488)), ("diesel", (54, 74, 234, 254)),
    ("rock", (1461, 1351, 1586, 1475)), ("willis", (771, 811, 950, 990)),
    ("diesel", (54, 373, 234, 552)), ("willis", (1050, 751, 1229, 930)),
    ("statham", (327, 443, 476, 593)), ("willis", (62, 991, 211, 1140)),
    ("rock", (1655, 699, 1759, 803)), ("statham", (62, 709, 211, 858)),
    ("diesel", (552, 433, 731, 612)), ("rock", (1828, 446, 1932, 549)),
    ("diesel", (18, 1260, 233, 1475)), ("willis", (1107, 1074, 1256, 1223)),
    ("statham", (400, 830, 615, 1045)), ("willis", (352, 1260, 567, 1475)),
    ("willis", (771, 1249, 950, 1428)), ("statham", (871, 413, 1050, 592)),
    ("diesel", (532, 114, 711, 293)), ("statham", (342, 54, 446, 158)),
    ("rock", (1786, 1289, 1966, 1468)), ("rock", (1437, 95, 1746, 405)),
    ("diesel", (314, 231, 438, 355)), ("statham", (875, 128, 1024, 277)),
)  # fmt: skip

# Single-face photos of different sizes: small and large faces (the last two use dlib's image pyramid).
SINGLE_FACES = (
    "deca_testsamples/exp/7.jpg",
    "deca_testsamples/exp/0.jpg",
    "deca_testsamples/examples/IMG_0392_inputs.jpg",
    "deca_testsamples/AFLW2000/image02202.jpg",
    "dlib_examples/Tom_Cruise_avp_2014_4.jpg",
    "deca_testsamples/exp/4.jpg",
)


@dataclass
class Face:
    """An RGB uint8 image (H,W,3), its (1,3,H,W) float tensor, dlib's 68-point shape of one face, a label."""

    image: np.ndarray
    pixels: torch.Tensor
    shape: dlib.full_object_detection
    label: str = ""

    def landmarks(self, parts: dlib.full_object_detection | None = None) -> torch.Tensor:
        """(1,N,2) float64 landmarks in vitdeca's frame (dlib's integer points + 0.5)."""
        parts = self.shape if parts is None else parts
        return torch.tensor([[p.x + 0.5, p.y + 0.5] for p in parts.parts()], dtype=torch.float64)[None]


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    """(1,3,H,W) float32 RGB in [0,1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(module_single_thread):
    """Every module here runs on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def shape_predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))


@pytest.fixture(scope="session")
def dlib_recognizer() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(dlib_model_path()))


@pytest.fixture(scope="session")
def identity_net():
    return load_identity_net("dlib")


def _read_rgb(path: Path) -> np.ndarray:
    image = iio.imread(path)
    return np.ascontiguousarray(image[..., :3] if image.ndim == 3 else np.repeat(image[..., None], 3, -1))


@pytest.fixture(scope="session")
def bald_guys(faces_dir: Path, shape_predictor) -> list[Face]:
    image = _read_rgb(faces_dir / "dlib_examples" / "bald_guys.jpg")
    pixels = _to_tensor(image)
    return [
        Face(image, pixels, shape_predictor(image, dlib.rectangle(*box)), label) for label, box in BALD_GUYS
    ]


@pytest.fixture(scope="session")
def single_faces(faces_dir: Path, shape_predictor) -> list[Face]:
    detector, faces = dlib.get_frontal_face_detector(), []
    for name in SINGLE_FACES:
        image = _read_rgb(faces_dir / name)
        boxes = detector(image, 1 if max(image.shape) < 1000 else 0)  # upsample small images only
        assert boxes, f"dlib finds no face in {name}"
        shape = shape_predictor(image, max(boxes, key=lambda b: b.area()))
        faces.append(Face(image, _to_tensor(image), shape, name))
    return faces
