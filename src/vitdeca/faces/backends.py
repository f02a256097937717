"""The face backends and their registry: ``cascade`` (default), ``dlib``, ``dlib_cnn``, ``mtcnn`` and
``fan`` (optional, online), by name in :data:`BACKENDS`; :func:`get_backend` builds one once per process.

- ``dlib``: dlib's HOG frontal-face detector + the 68-point shape predictor shipped by the
  ``face_recognition_models`` wheel (found with importlib, never imported: that package's ``__init__``
  needs ``pkg_resources``, which new setuptools no longer provides).
- ``dlib_cnn``: dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``, same wheel) + the same
  predictor. Finds turned heads the HOG detector misses, but costs seconds per image on a CPU.
- ``cascade``: the HOG detector, on a miss MTCNN (if facenet-pytorch is installed), and on a miss of both
  dlib's CNN: fast on frontal faces (HOG), robust to yaw; the CNN's ~1 s is paid only by images the first
  two miss, mostly profiles (measured in ``benchmarks/results/pose.md``).
- ``mtcnn``: facenet-pytorch's MTCNN (weights in its wheel) for boxes and 5 key points, then the same dlib
  68-point predictor, run in a dlib-style box derived from the 5 points (see :func:`box_from_five_points`).
- ``fan``: the ``face-alignment`` package (S3FD detector + FAN 68 points). Its weights are downloaded on
  first use; offline that fails with a :class:`VitdecaError`.

dlib coordinates are integer pixel indices: a part (x, y) is the centre of pixel (row y, col x), i.e.
(x + 0.5, y + 0.5) in our frame; a dlib rectangle (left, top, right, bottom) is inclusive, i.e. the box
[left, top, right + 1, bottom + 1].
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.faces.detection import Detection, Face, FaceBackend

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "cascade"  # HOG, then MTCNN, then dlib's CNN on a miss (benchmarks/results/pose.md)
DLIB_LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
DLIB_CNN_FILE = "mmod_human_face_detector.dat"

# dlib-style box from MTCNN's 5 points (eyes e_l, e_r, nose n, mouth corners m_l, m_r), fitted by least
# squares to the dlib HOG boxes of 92 faces in ../shared/faces (median landmark NME vs the dlib backend
# 0.011). With e = eye midpoint, m = mouth midpoint:
#   centre = e + 0.475 (m − e) + 0.084 (n − (e + m)/2),  side = 0.432 |m − e| + 1.854 |e_r − e_l|.
_CENTRE_ALONG, _CENTRE_NOSE, _SIDE_EYE_MOUTH, _SIDE_EYES = 0.475, 0.084, 0.432, 1.854


def face_model_path(name: str) -> Path:
    """Path of the model file ``name`` inside the installed face_recognition_models wheel."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise VitdecaError("the dlib face models are missing: pip install face_recognition_models")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise VitdecaError(f"face_recognition_models is installed but has no models/{name}")


def dlib_landmarks_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside the installed face_recognition_models."""
    return face_model_path(DLIB_LANDMARKS_FILE)


@functools.lru_cache(maxsize=2)
def _shape_predictor(path: str):  # noqa: ANN202 - dlib type
    import dlib

    try:
        return dlib.shape_predictor(path)
    except RuntimeError as exc:
        raise VitdecaError(f"{path}: cannot load the dlib shape predictor ({exc})") from exc


def to_dlib_rectangle(box: np.ndarray):  # noqa: ANN201 - dlib type
    """Box [x0,y0,x1,y1] (pixel edges) → inclusive dlib.rectangle of pixel indices."""
    import dlib

    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x0, y0, max(x1 - 1, x0), max(y1 - 1, y0))


def predict_dlib_landmarks(image: np.ndarray, box: np.ndarray, model_path: str | None = None) -> np.ndarray:
    """dlib's 68 landmarks (68,2) in the pixel-centre frame, predicted inside ``box`` [x0,y0,x1,y1]."""
    predictor = _shape_predictor(str(model_path or dlib_landmarks_path()))
    shape = predictor(image, to_dlib_rectangle(box))
    return np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], dtype=np.float64) + 0.5


# How the predictor's box is moved to measure its spread (predictor_spread): (dx, dy) as fractions of the
# box's width and height, and a scale about its centre. Fixed, so a photo's spread is reproducible.
SPREAD_JITTERS = (
    (0.0, 0.0, 1.0), (0.05, 0.0, 1.0), (-0.05, 0.0, 1.0), (0.0, 0.05, 1.0), (0.0, -0.05, 1.0),
    (0.0, 0.0, 1.07), (0.0, 0.0, 0.93), (0.035, 0.035, 1.0),
)  # fmt: skip


def predictor_spread(image: np.ndarray, box: np.ndarray, model_path: str | None = None) -> np.ndarray:
    """(68,) pixels: the mean distance of each of dlib's 68 points, predicted in ``box`` [x0,y0,x1,y1]
    moved by each of :data:`SPREAD_JITTERS`, from their mean. A point the predictor has found stays put
    when its box moves a little; one it guesses (a profile's far side, a render, an occluder) wanders.
    Eight predictions: about 14 ms per face."""
    box = np.asarray(box, dtype=np.float64)
    size, centre = box[2:] - box[:2], (box[:2] + box[2:]) / 2
    predictions = []
    for dx, dy, scale in SPREAD_JITTERS:
        moved = centre + np.array([dx, dy]) * size
        half = scale * size / 2
        moved_box = np.concatenate([moved - half, moved + half])
        predictions.append(predict_dlib_landmarks(image, moved_box, model_path))
    points = np.stack(predictions)
    return np.linalg.norm(points - points.mean(axis=0), axis=-1).mean(axis=0)


def box_from_five_points(points: np.ndarray) -> np.ndarray:
    """A dlib-HOG-like square box [x0,y0,x1,y1] from 5 key points (eyes, nose, mouth corners) (5,2)."""
    points = np.asarray(points, dtype=np.float64)
    eyes, mouth = (points[0] + points[1]) / 2, (points[3] + points[4]) / 2
    centre = eyes + _CENTRE_ALONG * (mouth - eyes) + _CENTRE_NOSE * (points[2] - (eyes + mouth) / 2)
    side = _SIDE_EYE_MOUTH * np.linalg.norm(mouth - eyes) + _SIDE_EYES * np.linalg.norm(points[1] - points[0])
    return np.concatenate([centre - side / 2, centre + side / 2])


class DlibBackend(FaceBackend):
    """dlib HOG detector (``upsample`` doublings of the image first: 1 finds faces down to ~40 px)."""

    name = "dlib"
    window = 80  # the detector's smallest face, pixels, before upsampling

    def __init__(self, upsample: int = 1, model_path: str | None = None) -> None:
        import dlib

        self.upsample = int(upsample)
        self.model_path = str(model_path or dlib_landmarks_path())
        self.detector = dlib.get_frontal_face_detector()
        _shape_predictor(self.model_path)

    @property
    def min_face_size(self) -> float:
        return self.window / 2**self.upsample

    def detect(self, image: np.ndarray) -> list[Detection]:
        rects, scores, _ = self.detector.run(image, self.upsample, 0.0)
        return [
            Detection(box=np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64), score=s)
            for r, s in zip(rects, scores, strict=True)
        ]

    def landmarks(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        return predict_dlib_landmarks(image, detection.box, self.model_path)

    def landmark_spread(self, image: np.ndarray, face: Face) -> np.ndarray:
        return predictor_spread(image, face.box, self.model_path)


class DlibCnnBackend(DlibBackend):
    """dlib's MMOD CNN face detector (confidence ≥ ``min_score``; ``upsample`` doublings first) + the
    68-point predictor in its box (MMOD boxes are tighter than HOG's: grown by ``box_scale``)."""

    name = "dlib_cnn"
    window = 80

    def __init__(
        self, upsample: int = 0, min_score: float = 0.5, box_scale: float = 1.0, model_path: str | None = None
    ) -> None:
        import dlib

        self.upsample, self.min_score, self.box_scale = int(upsample), float(min_score), float(box_scale)
        self.model_path = str(model_path or dlib_landmarks_path())
        _shape_predictor(self.model_path)
        cnn_path = face_model_path(DLIB_CNN_FILE)
        try:
            self.detector = dlib.cnn_face_detection_model_v1(str(cnn_path))
        except RuntimeError as exc:
            raise VitdecaError(f"{cnn_path}: cannot load the dlib CNN face detector ({exc})") from exc

    def detect(self, image: np.ndarray) -> list[Detection]:
        hits = []
        for found in self.detector(image, self.upsample):
            r = found.rect
            box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float64)
            centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * self.box_scale
            if found.confidence >= self.min_score:
                hits.append(
                    Detection(box=np.concatenate([centre - half, centre + half]), score=found.confidence)
                )
        return hits


class MtcnnBackend(FaceBackend):
    """facenet-pytorch MTCNN boxes (probability ≥ ``min_score``) + dlib's 68-point predictor."""

    name = "mtcnn"
    requires = ("facenet_pytorch", "pip install --no-deps facenet-pytorch")

    def __init__(
        self, min_face_size: int = 20, min_score: float = 0.9, model_path: str | None = None
    ) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise VitdecaError(
                f"the 'mtcnn' backend needs facenet-pytorch: pip install --no-deps facenet-pytorch ({exc})"
            ) from exc
        self.mtcnn = MTCNN(keep_all=True, device="cpu", min_face_size=min_face_size, post_process=False)
        self.min_score = float(min_score)
        self.model_path = str(model_path or dlib_landmarks_path())
        _shape_predictor(self.model_path)

    @property
    def min_face_size(self) -> float:
        return float(self.mtcnn.min_face_size)

    def detect(self, image: np.ndarray) -> list[Detection]:
        import torch

        with torch.no_grad():
            boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        return [
            Detection(box=np.asarray(b, np.float64), score=float(p), points=np.asarray(k, np.float64))
            for b, p, k in zip(boxes, probs, points, strict=True)
            if float(p) >= self.min_score
        ]

    def landmarks(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        return predict_dlib_landmarks(image, box_from_five_points(detection.points), self.model_path)

    def landmark_spread(self, image: np.ndarray, face: Face) -> np.ndarray:
        return predictor_spread(image, face.box, self.model_path)


class FanBackend(FaceBackend):
    """face-alignment's detector (``detector``: sfd, blazeface, ...) + 2D FAN landmarks."""

    name = "fan"
    requires = ("face_alignment", "pip install face-alignment")

    def __init__(self, detector: str = "sfd", device: str = "cpu") -> None:
        try:
            import face_alignment
        except ImportError as exc:
            raise VitdecaError(
                "the 'fan' backend needs the face-alignment package: pip install face-alignment "
                f"(its weights download on first use) ({exc})"
            ) from exc
        kind = getattr(face_alignment.LandmarksType, "TWO_D", None) or face_alignment.LandmarksType._2D
        try:
            self.model = face_alignment.FaceAlignment(
                kind, device=device, face_detector=detector, flip_input=False
            )
        except Exception as exc:  # noqa: BLE001 - network/cache failures surface as many types
            raise VitdecaError(
                f"face-alignment could not load its models ({type(exc).__name__}: {exc}); they are "
                "downloaded on first use, so the 'fan' backend needs to be online once "
                "(or use --backend dlib)"
            ) from exc

    def detect(self, image: np.ndarray) -> list[Detection]:
        try:
            found = self.model.get_landmarks_from_image(image, return_bboxes=True, return_landmark_score=True)
            landmarks, scores, boxes = found
        except TypeError:  # face-alignment < 1.3: landmarks only
            landmarks, scores, boxes = self.model.get_landmarks_from_image(image), None, None
        hits = []
        for k, points in enumerate(landmarks or []):
            # FAN reports pixel-index coordinates (like dlib): shift to pixel centres.
            points = np.asarray(points, np.float64)[:, :2] + 0.5
            box = np.asarray(boxes[k][:4], np.float64) if boxes is not None else _points_box(points)
            score = float(boxes[k][4]) if boxes is not None and len(boxes[k]) > 4 else _mean(scores, k)
            hits.append(Detection(box=box, score=score, points=points))
        return hits

    def landmarks(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        return detection.points


class CascadeBackend(FaceBackend):
    """Backends tried in order until one finds a face (``stages``: registered names; default the HOG
    detector, then MTCNN, then dlib's CNN). A stage that cannot load (MTCNN without facenet-pytorch) is
    left out, with one warning the first time an image goes through every other stage without a face (the
    only time the missing stage could have mattered). Each face's landmarks come from the stage that found
    it."""

    name = "cascade"
    # options of a stage inside the cascade: MTCNN stops at the HOG stage's smallest face (40 px), which
    # skips its slowest pyramid levels
    stage_options: ClassVar[dict[str, dict[str, Any]]] = {"mtcnn": {"min_face_size": 40}}

    def __init__(self, stages: tuple[str, ...] = ("dlib", "mtcnn", "dlib_cnn")) -> None:
        self.stages: dict[str, FaceBackend] = {}
        self.missing: dict[str, str] = {}  # stage → why it could not load
        for stage in stages:
            try:
                self.stages[stage] = get_backend(stage, **self.stage_options.get(stage, {}))
            except VitdecaError as exc:
                self.missing[stage] = str(exc)
        if not self.stages:
            raise VitdecaError(f"face cascade: none of the stages {list(stages)} could load")
        self._warned = False

    @property
    def min_face_size(self) -> float | None:
        sizes = [s.min_face_size for s in self.stages.values() if s.min_face_size is not None]
        return min(sizes) if sizes else None

    def detect(self, image: np.ndarray) -> list[Detection]:
        for name, stage in self.stages.items():
            hits = stage.detect(image)
            if hits:
                return [replace(hit, source=name) for hit in hits]
        if self.missing and not self._warned:
            self._warned = True
            for stage, why in self.missing.items():
                log.warning("face cascade: found no face without the %r stage, which might (%s)", stage, why)
        return []

    def landmarks(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        stage = self.stages.get(detection.source or "") or next(iter(self.stages.values()))
        return stage.landmarks(image, detection)

    def landmark_spread(self, image: np.ndarray, face: Face) -> np.ndarray | None:
        # every stage's points come from the same dlib predictor; a face does not record its stage
        return next(iter(self.stages.values())).landmark_spread(image, face)


def _points_box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _mean(scores: object, k: int) -> float:
    return float(np.mean(scores[k])) if scores is not None else 1.0  # type: ignore[index]


# ------------------------------------------------------------------------------------------ registry
BACKENDS: dict[str, type[FaceBackend]] = {
    "cascade": CascadeBackend,
    "dlib": DlibBackend,
    "dlib_cnn": DlibCnnBackend,
    "mtcnn": MtcnnBackend,
    "fan": FanBackend,
}


def backend_names() -> list[str]:
    """Registered backend names."""
    return sorted(BACKENDS)


def check_backend(name: str) -> None:
    """Raise :class:`VitdecaError` (before any work) when ``name`` is no registered backend or its
    optional package is not installed; nothing is loaded."""
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
    _cached_backend.cache_clear()
    _shape_predictor.cache_clear()
