"""Evaluating a folder of predictions on a NoW-layout dataset, in parallel, and writing the report.

Layout (the NoW challenge's)::

    NOW_DIR/imagepathsvalidation.txt        lines SUBJECT/CATEGORY/IMAGE.jpg (imagepathstest.txt: test)
    NOW_DIR/scans/SUBJECT/*.obj             one ground-truth scan per subject (mm)
    NOW_DIR/scans_lmks_onlypp/SUBJECT/*.pp  its 7 landmarks (MeshLab picked points, NoW order)
    PRED_DIR/SUBJECT/CATEGORY/IMAGE.obj|.ply + IMAGE.npy|.txt (7x3 landmarks, NoW order), or what
        ``vitdeca reconstruct --save now --out PRED_DIR/SUBJECT/CATEGORY`` writes (see prediction_paths)

Every listed image ends as ``ok``, ``missing`` (no mesh or no landmark file) or ``malformed`` (a file
that cannot be read or a prediction the protocol rejects); only ``ok`` images contribute distances, and
the others are listed in the report. Problems with the ground truth abort the run (VitdecaError).
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.evaluation.meshfile import read_landmarks, read_mesh
from vitdeca.evaluation.now import RefineOptions, align_and_measure
from vitdeca.evaluation.pp import read_pp

log = logging.getLogger(__name__)

IMAGE_LISTS = {"val": "imagepathsvalidation.txt", "test": "imagepathstest.txt"}


@dataclass(frozen=True)
class NowItem:
    """One listed image: ``image`` is SUBJECT/CATEGORY/IMAGE.jpg as in the list."""

    image: str
    subject: str
    category: str
    stem: str


@dataclass(frozen=True)
class ImageResult:
    """status: "ok" | "missing" | "malformed"; distances (K,) float32 when ok, else None."""

    item: NowItem
    status: str
    reason: str = ""
    distances: np.ndarray | None = None


def read_image_list(dataset: Path, split: str) -> list[NowItem]:
    """The images of a split, from NOW_DIR/imagepaths*.txt."""
    if split not in IMAGE_LISTS:
        raise VitdecaError(f"unknown NoW split {split!r}; use one of {sorted(IMAGE_LISTS)}")
    path = Path(dataset) / IMAGE_LISTS[split]
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise VitdecaError(f"{path}: cannot read the NoW image list ({exc.strerror})") from exc
    items = []
    for number, line in enumerate(lines, 1):
        parts = line.strip().replace("\\", "/").split("/")
        if parts == [""]:
            continue
        if len(parts) < 3:
            raise VitdecaError(f"{path}:{number}: expected SUBJECT/CATEGORY/IMAGE, got {line.strip()!r}")
        subject, category, name = parts[-3:]
        items.append(NowItem("/".join(parts[-3:]), subject, category, Path(name).stem))
    if not items:
        raise VitdecaError(f"{path}: lists no images")
    return items


def ground_truth_paths(dataset: Path, subject: str) -> tuple[Path, Path]:
    """(scan .obj, landmarks .pp) of a subject: the first of each, sorted by name."""
    found = []
    for folder, pattern in (("scans", "*.obj"), ("scans_lmks_onlypp", "*.pp")):
        matches = sorted((Path(dataset) / folder / subject).glob(pattern))
        if not matches:
            raise VitdecaError(
                f"{Path(dataset) / folder / subject}: no {pattern} ground truth for subject {subject}"
                " (the NoW test scans are not public: evaluate the test split on the challenge server)"
            )
        if len(matches) > 1:
            log.warning(
                "%s: %d %s files, using %s", matches[0].parent, len(matches), pattern, matches[0].name
            )
        found.append(matches[0])
    return found[0], found[1]


def prediction_paths(predictions: Path, item: NowItem) -> tuple[Path | None, Path | None]:
    """(mesh, landmarks) files of one image, or None for each one not found.

    Looked for, in this order (the first layout with a mesh wins; .obj before .ply, .npy before .txt):
    1. the challenge's: ``SUBJECT/CATEGORY/IMAGE.obj`` + ``IMAGE.npy``;
    2. ``vitdeca reconstruct --save now --out PRED/SUBJECT/CATEGORY``'s:
       ``SUBJECT/CATEGORY/IMAGE/IMAGE_neutral.obj`` + ``IMAGE_now_landmarks.npy``.
    """
    folder = Path(predictions) / item.subject / item.category
    layouts = (
        (folder / item.stem, folder / item.stem),
        (folder / item.stem / f"{item.stem}_neutral", folder / item.stem / f"{item.stem}_now_landmarks"),
    )
    for mesh_base, lmk_base in layouts:
        mesh = _first_file(mesh_base, (".obj", ".ply"))
        if mesh is not None:
            return mesh, _first_file(lmk_base, (".npy", ".txt"))
    return None, _first_file(folder / item.stem, (".npy", ".txt"))


def _first_file(base: Path, suffixes: tuple[str, ...]) -> Path | None:
    return next((p for p in (base.parent / (base.name + s) for s in suffixes) if p.is_file()), None)


@functools.lru_cache(maxsize=2)  # per process: consecutive images mostly share a subject
def load_ground_truth(scan: Path, landmarks: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A subject's scan vertices (V,3), faces (F,3) and 7 landmarks (7,3), in scan units (cached)."""
    vertices, faces = read_mesh(scan)
    points = read_pp(landmarks).points
    if points.shape != (7, 3):
        raise VitdecaError(f"{landmarks}: expected the 7 NoW landmarks, found {len(points)} points")
    return vertices, faces, points


def evaluate_item(task: tuple[NowItem, Path, Path, Path, RefineOptions]) -> ImageResult:
    """Evaluate one image: (item, predictions dir, scan, scan landmarks, options) -> its result."""
    item, predictions, scan, scan_lmk, options = task
    mesh_path, lmk_path = prediction_paths(predictions, item)
    if mesh_path is None or lmk_path is None:
        what = "mesh (.obj/.ply)" if mesh_path is None else "landmarks (.npy/.txt)"
        return ImageResult(item, "missing", f"no predicted {what}")
    scan_v, scan_f, scan_l = load_ground_truth(scan, scan_lmk)
    try:
        pred_v, pred_f = read_mesh(mesh_path)
        pred_l = read_landmarks(lmk_path)
        result = align_and_measure(scan_v, scan_f, scan_l, pred_v, pred_f, pred_l, options=options)
    except (VitdecaError, ValueError) as exc:
        return ImageResult(item, "malformed", str(exc))
    return ImageResult(item, "ok", distances=result.distances.astype(np.float32))


def evaluate_now(
    predictions: str | os.PathLike,
    dataset: str | os.PathLike,
    split: str = "val",
    workers: int = 1,
    progress: bool = True,
) -> list[ImageResult]:
    """Evaluate every image of a split; results in list order. Parallel over images when workers > 1."""
    from tqdm import tqdm

    predictions, dataset = Path(predictions), Path(dataset)
    if not predictions.is_dir():
        raise VitdecaError(f"{predictions}: no such predictions folder")
    items = read_image_list(dataset, split)
    truth = {s: ground_truth_paths(dataset, s) for s in dict.fromkeys(i.subject for i in items)}
    options = RefineOptions(threads=1 if workers > 1 else -1)
    order = sorted(range(len(items)), key=lambda i: items[i].subject)  # keeps the scan cache warm
    tasks = [(items[i], predictions, *truth[items[i].subject], options) for i in order]
    results: list[ImageResult] = []
    bar = functools.partial(tqdm, total=len(tasks), desc="NoW", unit="image", disable=not progress)
    if workers > 1:
        chunk = max(1, min(16, len(tasks) // (4 * workers)))  # runs of one subject: few scan loads
        with multiprocessing.get_context().Pool(workers) as pool, bar() as progress_bar:
            for res in pool.imap_unordered(evaluate_item, tasks, chunksize=chunk):
                results.append(res)
                progress_bar.update()
    else:
        with bar() as progress_bar:
            for task in tasks:
                results.append(evaluate_item(task))
                progress_bar.update()
    position = {item.image: k for k, item in enumerate(items)}
    return sorted(results, key=lambda r: position[r.item.image])


def error_stats(distances: np.ndarray) -> dict[str, float | int | None]:
    """median, mean, std (population, as numpy's default) and count of a distance array."""
    if distances.size == 0:
        return {"median": None, "mean": None, "std": None, "n_distances": 0}
    values = distances.astype(np.float64)
    return {
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "n_distances": int(values.size),
    }
