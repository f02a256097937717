"""Detection at any pose: the cascade backend (HOG, then MTCNN on a miss), dlib's CNN detector, and the
"no face" line that names the smallest face a detector finds."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from vitdeca.errors import VitdecaError
from vitdeca.faces import Detection, FaceBackend, detect_faces, read_image
from vitdeca.faces.backends import BACKENDS, CascadeBackend, clear_backends
from vitdeca.faces.detect import min_face_side, no_face_message


class _Finds(FaceBackend):
    """A stand-in stage: one box (or none), landmarks that say which stage made them."""

    name = "test_finds"
    min_face_size = 30.0
    box = np.array([10.0, 10.0, 50.0, 50.0])

    def detect(self, image):
        return [Detection(box=self.box, score=1.0)]

    def landmarks(self, image, detection):
        return np.full((68, 2), 1.0)


class _Misses(_Finds):
    name = "test_misses"
    min_face_size = 60.0

    def detect(self, image):
        return []

    def landmarks(self, image, detection):  # pragma: no cover - never asked: it finds nothing
        raise AssertionError("a stage that found nothing was asked for landmarks")


@pytest.fixture
def stand_in_stages():
    BACKENDS.update({"test_finds": _Finds, "test_misses": _Misses})
    yield
    for name in ("test_finds", "test_misses"):
        BACKENDS.pop(name)
    clear_backends()


def test_cascade_falls_through_to_the_stage_that_finds(stand_in_stages):
    cascade = CascadeBackend(stages=("test_misses", "test_finds"))
    faces = detect_faces(np.zeros((64, 64, 3), np.uint8), cascade)
    assert len(faces) == 1 and np.array_equal(faces[0].box, _Finds.box)
    assert np.all(faces[0].landmarks == 1.0)  # landmarks from the stage that found the face
    assert cascade.detect(np.zeros((8, 8, 3), np.uint8))[0].source == "test_finds"
    assert cascade.min_face_size == 30.0


def test_cascade_leaves_out_a_stage_that_cannot_load(stand_in_stages, caplog):
    """A missing stage is said once, and only when an image finds no face without it."""
    with caplog.at_level(logging.WARNING):
        cascade = CascadeBackend(stages=("no_such_backend", "test_finds"))
        assert cascade.detect(np.zeros((8, 8, 3), np.uint8))  # found: the missing stage did not matter
    assert list(cascade.stages) == ["test_finds"] and caplog.text == ""
    with caplog.at_level(logging.WARNING):
        missing = CascadeBackend(stages=("no_such_backend", "test_misses"))
        assert missing.detect(np.zeros((8, 8, 3), np.uint8)) == []
        assert missing.detect(np.zeros((8, 8, 3), np.uint8)) == []
    assert caplog.text.count("without the 'no_such_backend' stage") == 1
    with pytest.raises(VitdecaError, match="none of the stages"):
        CascadeBackend(stages=("no_such_backend",))


def test_min_face_side_scales_with_the_detection_shrink(stand_in_stages):
    assert min_face_side((500, 800, 3), "test_finds") == 30
    assert min_face_side((2048, 1024, 3), "test_finds", max_side=1024) == 60  # shrunk by 2 for detection
    message = no_face_message((4096, 3000), "test_finds")
    assert message == "no face found (faces smaller than about 120 px across are missed in this image)"


def test_dlib_hog_minimum_face_is_stated_and_real(face_photo):
    """The stated minimum of the HOG detector (40 px at upsample 1): found at 2x the minimum, missed at
    half of it."""
    image = read_image(face_photo)
    side = min_face_side(image.shape, "dlib")
    assert side == 40
    face = detect_faces(image, "dlib")[0]
    width = face.box[2] - face.box[0]
    for target, expect in ((2.0 * side, True), (0.5 * side, False)):
        scale = target / width
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        canvas = np.full((max(small.shape[0], 120), max(small.shape[1], 120), 3), 128, np.uint8)
        canvas[: small.shape[0], : small.shape[1]] = small
        assert bool(detect_faces(canvas, "dlib")) == expect, target


def test_dlib_cnn_finds_a_face(face_photo):
    image = read_image(face_photo)
    small = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # seconds per image
    faces = detect_faces(small, "dlib_cnn")
    assert len(faces) == 1
    hog = detect_faces(small, "dlib")[0]
    assert np.abs(faces[0].landmarks - hog.landmarks).mean() < 0.05 * (hog.box[2] - hog.box[0])


def test_cascade_finds_the_turned_head_hog_misses(faces_dir):
    """AFLW2000-3D image00181 (a head turned ~60°): the HOG detector finds nothing, the cascade a face."""
    pytest.importorskip(
        "facenet_pytorch", reason="the MTCNN stage needs facenet-pytorch", exc_type=ImportError
    )
    image = read_image(faces_dir / "deca_testsamples" / "AFLW2000" / "image00181.jpg")
    assert detect_faces(image, "dlib") == []
    faces = detect_faces(image, "cascade")
    assert len(faces) >= 1
    centre = faces[0].landmarks.mean(axis=0)
    box = faces[0].box
    assert box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3]
