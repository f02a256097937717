"""2D landmark accuracy: NME of 68-point predictions against dlib-XML or ``.npy`` annotations.

NME of one face = mean over the 68 points of ||pred - gt|| divided by a normaliser:
- ``outer_eye``: the distance between the outer eye corners of the annotation (iBUG 36 and 45);
- ``box``: sqrt(width * height) of the tight bounding box of the 68 annotated points.

Coordinates follow the project convention (x right, y down, pixel (row i, col j) centred at
(j + 0.5, i + 0.5)). dlib XML stores integer pixel indices, so its points are read as (x + 0.5, y + 0.5);
``.npy`` annotations and predictions are taken as already in the project convention. (A constant offset
does not change the normalisers, but it would bias the errors.)

Predictions come from a folder of ``.npy`` files, (68,2) or (K,68,2) for K faces (``vitdeca reconstruct``
writes ``<stem>_landmarks2d.npy``), or from a live detector (``detector:BACKEND``, through
``vitdeca.faces.detect_faces``). Predicted faces are assigned to annotated faces one-to-one (Hungarian
assignment on the mean point distance) among pairs whose predicted centroid lies inside the annotated
landmarks' box; an annotated face left without a prediction is reported as missing.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError

log = logging.getLogger(__name__)

OUTER_EYE_CORNERS = (36, 45)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_PATTERNS = (
    "{parent}/{stem}_landmarks2d.npy",
    "{parent}/{stem}/{stem}_landmarks2d.npy",
    "{parent}/{stem}.npy",
)


@dataclass(frozen=True)
class ImageAnnotation:
    """Annotated faces of one image: ``image`` relative to the images folder, ``stem`` its name without
    suffix, landmarks (K,68,2) in the project's pixel frame."""

    image: str
    stem: str
    landmarks: np.ndarray


@dataclass(frozen=True)
class FaceResult:
    """One annotated face: status "ok" or "missing"; NMEs None when missing."""

    image: str
    face: int
    status: str
    nme_outer_eye: float | None = None
    nme_box: float | None = None
    mean_error_px: float | None = None
    reason: str = ""


def outer_eye_distance(gt: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners (iBUG 36, 45): (...,68,2) -> (...)."""
    return np.linalg.norm(gt[..., OUTER_EYE_CORNERS[0], :] - gt[..., OUTER_EYE_CORNERS[1], :], axis=-1)


def box_size(gt: np.ndarray) -> np.ndarray:
    """sqrt(width * height) of the tight box of the points: (...,68,2) -> (...)."""
    extent = gt.max(axis=-2) - gt.min(axis=-2)
    return np.sqrt(extent[..., 0] * extent[..., 1])


def nme(pred: np.ndarray, gt: np.ndarray, norm: str = "outer_eye") -> np.ndarray:
    """Normalised mean error: (...,68,2), (...,68,2) -> (...). norm: "outer_eye" or "box"."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or gt.shape[-2:] != (68, 2):
        raise ValueError(f"need matching (...,68,2) arrays, got {pred.shape} and {gt.shape}")
    normaliser = {"outer_eye": outer_eye_distance, "box": box_size}.get(norm)
    if normaliser is None:
        raise ValueError(f"unknown NME normalisation {norm!r}; use 'outer_eye' or 'box'")
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) / normaliser(gt)


def read_dlib_xml(path: str | os.PathLike) -> list[ImageAnnotation]:
    """Faces with all 68 parts from a dlib imglab XML file; boxes without parts or marked ignore are
    skipped. Points become (x + 0.5, y + 0.5) (dlib pixel indices -> pixel centres)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except OSError as exc:
        raise VitdecaError(f"{path}: cannot read ({exc.strerror})") from exc
    except ET.ParseError as exc:
        raise VitdecaError(f"{path}: not an XML file ({exc})") from exc
    found, skipped = [], 0
    for image in root.iter("image"):
        name = image.attrib.get("file")
        if not name:
            raise VitdecaError(f"{path}: an <image> element has no file attribute")
        faces = []
        for box in image.iter("box"):
            parts = {p.attrib.get("name"): p for p in box.iter("part")}
            if box.attrib.get("ignore", "0") not in ("0", "") or len(parts) != 68:
                skipped += 1
                continue
            try:
                faces.append([[float(parts[f"{k:02d}"].attrib[c]) + 0.5 for c in "xy"] for k in range(68)])
            except (KeyError, ValueError) as exc:
                raise VitdecaError(f"{path}: {name}: parts must be named 00..67 with numeric x, y") from exc
        if faces:
            found.append(ImageAnnotation(name, Path(name).stem, np.asarray(faces, np.float64)))
    if skipped:
        log.info("%s: skipped %d boxes without 68 landmarks", path, skipped)
    if not found:
        raise VitdecaError(f"{path}: no face with 68 landmarks")
    return found


def read_npy_annotations(
    folder: str | os.PathLike, images: str | os.PathLike | None = None
) -> list[ImageAnnotation]:
    """``<stem>.npy`` files of (68,2) or (K,68,2) points; the image is ``<stem>.*`` in ``images`` if found."""
    folder = Path(folder)
    files = sorted(folder.glob("*.npy"))
    if not files:
        raise VitdecaError(f"{folder}: no .npy annotation files")
    found = []
    for file in files:
        points = load_points(file)
        image = _find_image(Path(images), file.stem) if images else None
        found.append(ImageAnnotation(image or file.stem, file.stem, points))
    return found


def read_annotations(
    path: str | os.PathLike, images: str | os.PathLike | None = None
) -> list[ImageAnnotation]:
    """dlib XML (a file) or a folder of ``.npy`` annotations."""
    path = Path(path)
    if path.is_dir():
        return read_npy_annotations(path, images)
    if path.suffix.lower() == ".xml":
        return read_dlib_xml(path)
    raise VitdecaError(f"{path}: annotations must be a dlib .xml file or a folder of .npy files")


def load_points(path: Path) -> np.ndarray:
    """(K,68,2) from a .npy file holding (68,2), (K,68,2), or the same with a third column (dropped)."""
    try:
        arr = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
    except (OSError, ValueError, TypeError) as exc:
        raise VitdecaError(f"{path}: cannot read landmarks ({exc})") from exc
    if arr.ndim not in (2, 3) or arr.shape[-2] != 68 or arr.shape[-1] not in (2, 3):
        raise VitdecaError(f"{path}: expected (68,2) or (K,68,2) landmarks, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise VitdecaError(f"{path}: landmarks contain NaN or infinite values")
    return arr.reshape(-1, 68, arr.shape[-1])[..., :2]


def _find_image(images: Path, stem: str) -> str | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (images / (stem + suffix), images / (stem + suffix.upper())):
            if candidate.is_file():
                return candidate.name
    return None


def match_faces(pred: np.ndarray, gt: np.ndarray) -> list[int | None]:
    """For each annotated face (G,68,2), the index of its predicted face in (P,68,2), or None.

    Pairs are allowed when the predicted centroid is inside the annotation's landmark box; among them the
    assignment minimising the summed mean point distance is chosen.
    """
    from scipy.optimize import linear_sum_assignment

    if len(pred) == 0:
        return [None] * len(gt)
    cost = np.linalg.norm(pred[None] - gt[:, None], axis=-1).mean(-1)  # (G,P)
    centre = pred.mean(axis=1)  # (P,2)
    lo, hi = gt.min(axis=1), gt.max(axis=1)  # (G,2)
    allowed = ((centre[None] >= lo[:, None]) & (centre[None] <= hi[:, None])).all(-1)
    big = 1e6 * (1.0 + cost.max())
    rows, cols = linear_sum_assignment(np.where(allowed, cost, big))
    match: list[int | None] = [None] * len(gt)
    for r, c in zip(rows, cols, strict=True):
        if allowed[r, c]:
            match[r] = int(c)
    return match


def score_image(ann: ImageAnnotation, pred: np.ndarray | None, reason: str = "") -> list[FaceResult]:
    """FaceResults of one image; pred (P,68,2) or None (nothing predicted, with ``reason``)."""
    match = match_faces(pred, ann.landmarks) if pred is not None else [None] * len(ann.landmarks)
    results = []
    for k, (gt, m) in enumerate(zip(ann.landmarks, match, strict=True)):
        if m is None:
            results.append(FaceResult(ann.image, k, "missing", reason=reason or "no predicted face here"))
            continue
        p = pred[m]
        results.append(
            FaceResult(
                ann.image,
                k,
                "ok",
                float(nme(p, gt, "outer_eye")),
                float(nme(p, gt, "box")),
                float(np.linalg.norm(p - gt, axis=-1).mean()),
            )
        )
    return results


def prediction_file(folder: Path, ann: ImageAnnotation, patterns: tuple[str, ...]) -> Path | None:
    """The first existing file among ``patterns`` ({parent}: the image's folder, {stem}: its name)."""
    parent = str(Path(ann.image).parent)
    for pattern in patterns:
        path = folder / pattern.format(parent=parent, stem=ann.stem)
        if path.is_file():
            return path
    return None


def evaluate_landmarks(
    annotations: list[ImageAnnotation],
    predictions: str | os.PathLike,
    images: str | os.PathLike | None = None,
    patterns: tuple[str, ...] = DEFAULT_PATTERNS,
    progress: bool = True,
) -> list[FaceResult]:
    """Score every annotated face. ``predictions``: a folder of .npy files or "detector:BACKEND"
    (then ``images`` must hold the annotated images)."""
    from tqdm import tqdm

    text = os.fspath(predictions)
    if text.startswith("detector:"):
        if images is None:
            raise VitdecaError("a live detector needs --images, the folder of the annotated images")
        detect = landmark_detector(text.split(":", 1)[1])
        folder = None
    else:
        folder = Path(text)
        if not folder.is_dir():
            raise VitdecaError(
                f"{folder}: no such predictions folder (use detector:BACKEND for a live detector)"
            )
    results: list[FaceResult] = []
    for ann in tqdm(annotations, desc="landmarks", unit="image", disable=not progress):
        try:
            if folder is None:
                pred, reason = detect(Path(images) / ann.image), "no face detected here"
            else:
                path = prediction_file(folder, ann, patterns)
                pred, reason = (load_points(path), "") if path else (None, "no prediction file")
        except VitdecaError as exc:
            pred, reason = None, str(exc)
        results.extend(score_image(ann, pred, reason))
    return results


def landmark_detector(backend: str):
    """A function image path -> (P,68,2) landmarks of the faces ``vitdeca.faces`` finds with ``backend``."""
    from vitdeca.faces import backend_names, detect_faces, read_image

    if backend not in backend_names():
        raise VitdecaError(f"unknown face backend {backend!r}; available: {', '.join(backend_names())}")

    def detect(image_path: Path) -> np.ndarray:
        faces = detect_faces(read_image(image_path), backend=backend)
        return np.stack([f.landmarks for f in faces]) if faces else np.zeros((0, 68, 2))

    return detect


def summarize_landmarks(results: list[FaceResult], **context: str) -> dict:
    """Summary: counts, missing faces, and median/mean of both NMEs over the scored faces."""
    ok = [r for r in results if r.status == "ok"]
    summary: dict = {**context, "count": len(ok), "expected": len(results)}
    for key in ("nme_outer_eye", "nme_box", "mean_error_px"):
        values = np.array([getattr(r, key) for r in ok], dtype=np.float64)
        summary[key] = {
            "median": float(np.median(values)) if values.size else None,
            "mean": float(values.mean()) if values.size else None,
        }
    summary["missing"] = [
        {"image": r.image, "face": r.face, "reason": r.reason} for r in results if r.status != "ok"
    ]
    summary["complete"] = len(ok) == len(results)
    return summary


def write_landmark_report(results: list[FaceResult], out: str | os.PathLike, **context: str) -> dict:
    """Write landmarks_nme.json (summary + every face) and landmarks_nme.csv into ``out``."""
    import csv
    import io
    import json
    from dataclasses import asdict

    from vitdeca.storage import atomic_write_bytes

    out = Path(out)
    summary = summarize_landmarks(results, **context)
    document = {"summary": summary, "faces": [asdict(r) for r in results]}
    atomic_write_bytes(out / "landmarks_nme.json", (json.dumps(document, indent=2) + "\n").encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    fields = list(asdict(results[0]).keys()) if results else ["image"]
    writer.writerow(fields)
    for r in results:
        writer.writerow(["" if v is None else v for v in asdict(r).values()])
    atomic_write_bytes(out / "landmarks_nme.csv", buffer.getvalue().encode())
    return summary
