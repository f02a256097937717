"""Annotate a folder of photos: faces, 68 landmarks, optional crops and masks → ``manifest.jsonl``.

Identity = first-level folder under the image root (VGGFace2 layout). Resumable: images already in the
manifest are skipped. Parallel: worker processes (spawned) each load the backend once; the main process is
the only writer of the manifest. A worker that dies (native crash) is replaced; its images are retried
once, then recorded as ``crashed``. See :mod:`vitdeca.data.manifest` for the record format. With
``AnnotateOptions.fit`` every kept face is also fitted (pseudo-labels, :mod:`vitdeca.data.pseudo`): its
codes go into its record, and ``codes.npz`` is rewritten from the manifest at the end of every run.
"""

from __future__ import annotations

import logging
import multiprocessing
import traceback
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from vitdeca.data.manifest import (
    MANIFEST_NAME,
    STATUS_OK,
    ManifestWriter,
    read_meta,
    repair_manifest,
    write_meta,
)
from vitdeca.errors import VitdecaError
from vitdeca.faces.backends import get_backend
from vitdeca.faces.detect import DEFAULT_MAX_SIDE, detect_faces
from vitdeca.faces.detection import Face
from vitdeca.faces.geometry import DEFAULT_SCALE, DEFAULT_SIZE, crop_face, transform_points
from vitdeca.faces.image_io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageReadError, read_image
from vitdeca.faces.masks import face_mask
from vitdeca.storage import atomic_path

log = logging.getLogger(__name__)

# Statuses of files that could not be processed at all (the CLI exits 1 when any occur).
FAILED_STATUSES = ("unreadable", "too_large", "error", "crashed")


@dataclass(frozen=True)
class AnnotateOptions:
    """How images are annotated; stored in ``dataset.json`` and checked again on resume."""

    backend: str = "dlib"
    all_faces: bool = False
    save_crops: bool = False
    save_masks: bool = False
    mask_method: str = "landmarks"
    scale: float = DEFAULT_SCALE
    size: int = DEFAULT_SIZE
    max_side: int = DEFAULT_MAX_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = 32
    fit: dict[str, Any] | None = None  # FitConfig values (vitdeca.config.to_dict): fit every face; None: off
    fit_head: str = "ict"  # the head model the faces are fitted with


@dataclass
class AnnotateReport:
    """Outcome of a run: files per status (whole manifest), faces written, files processed this run."""

    files: Counter = field(default_factory=Counter)
    faces: int = 0
    processed: int = 0
    skipped: int = 0

    @property
    def failed(self) -> int:
        return sum(self.files[s] for s in FAILED_STATUSES)


def list_images(root: Path, exclude: Path | None = None) -> list[PurePosixPath]:
    """Image files under ``root`` (by suffix, hidden entries skipped), relative POSIX paths, sorted."""
    skip = None
    if exclude is not None and exclude.resolve().is_relative_to(root.resolve()):
        skip = exclude.resolve().relative_to(root.resolve()).parts
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if (skip and rel.parts[: len(skip)] == skip) or not path.is_file():
            continue
        found.append(PurePosixPath(rel.as_posix()))
    return sorted(found)


def identity_of(rel: PurePosixPath) -> str | None:
    """First-level folder name, or None for a file directly in the root."""
    return rel.parts[0] if len(rel.parts) > 1 else None


def _record(rel: PurePosixPath, status: str, message: str = "", **fields: Any) -> dict[str, Any]:
    record = {
        "image": str(rel), "identity": identity_of(rel), "face_index": None, "box": None, "landmarks": None,
        "score": None, "mask": None, "crop": None, "crop_matrix": None, "width": None, "height": None,
        "faces_found": 0, "image_records": 1, "status": status, "message": message,
    }  # fmt: skip
    record.update(fields)
    return record


def _rounded(array: np.ndarray, digits: int = 3) -> list:
    return np.round(np.asarray(array, dtype=np.float64), digits).tolist()


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image[..., ::-1] if image.ndim == 3 else image)
    if not ok:
        raise VitdecaError(f"{path}: cannot encode PNG")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())


def _face_record(
    rel: PurePosixPath, k: int, face: Face, image: np.ndarray, out_dir: Path, options: AnnotateOptions, n: int
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if options.save_crops or options.save_masks:
        crop = crop_face(image, face.landmarks, options.scale, options.size)
        stem = rel.with_suffix("").as_posix() + f"_{k}.png"
        fields["crop_matrix"] = _rounded(crop.matrix, 9)
        if options.save_crops:
            _write_png(out_dir / "crops" / stem, crop.image)
            fields["crop"] = f"crops/{stem}"
        if options.save_masks:
            crop_landmarks = transform_points(face.landmarks, crop.matrix)
            mask = face_mask(crop.image, crop_landmarks, options.mask_method)
            _write_png(out_dir / "masks" / stem, mask.astype(np.uint8) * 255)
            fields["mask"] = f"masks/{stem}"
    if options.fit is not None:
        fields["fit"] = _fit_fields(rel, k, face, image, options)
    return _record(
        rel, STATUS_OK, face_index=k, box=_rounded(face.box), landmarks=_rounded(face.landmarks),
        score=round(float(face.score), 4), width=image.shape[1], height=image.shape[0],
        faces_found=n, **fields,
    )  # fmt: skip


def _fit_fields(rel: PurePosixPath, k: int, face: Face, image: np.ndarray, options: AnnotateOptions):
    """The face's fitted codes (:func:`vitdeca.data.pseudo.fit_face`), or None after one warning line when
    its fit fails: the face keeps its landmarks and trains as a photo."""
    from vitdeca.data.pseudo import fit_face

    try:
        return fit_face(image, face, options.fit_head, options.fit)
    except Exception as exc:  # noqa: BLE001 - one face's failed fit must not cost the image or the run
        log.warning(
            "%s face %d: fit failed, kept without pseudo-label (%s: %s)", rel, k, type(exc).__name__, exc
        )
        return None


def annotate_file(
    root: Path, rel: PurePosixPath, out_dir: Path, options: AnnotateOptions
) -> list[dict[str, Any]]:
    """Records of one image (one per face kept, or one rejection). Never raises for a bad image."""
    try:
        image = read_image(root / rel, max_pixels=options.max_pixels)
        size = {"width": image.shape[1], "height": image.shape[0]}
        if min(image.shape[:2]) < options.min_side:
            return [
                _record(rel, "too_small", f"{image.shape[1]}x{image.shape[0]} < {options.min_side}", **size)
            ]
        faces = detect_faces(image, get_backend(options.backend), max_side=options.max_side)
        if not faces:
            return [_record(rel, "no_face", "no face detected", **size)]
        kept = faces if options.all_faces else faces[:1]
        records = [_face_record(rel, k, f, image, out_dir, options, len(faces)) for k, f in enumerate(kept)]
        for record in records:
            record["image_records"] = len(records)
        return records
    except ImageReadError as exc:
        return [_record(rel, exc.status, str(exc))]
    except Exception as exc:  # noqa: BLE001 - one bad image must not stop a long run; kept in the manifest
        where = traceback.extract_tb(exc.__traceback__)[-1]
        log.warning("%s: unexpected error", rel, exc_info=True)
        return [
            _record(rel, "error", f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})")
        ]


# Per worker process: why its backend could not load (reported by _ping), or None.
_WORKER_ERROR: list[str] = []


def _init_worker(options: AnnotateOptions) -> None:
    cv2.setNumThreads(1)
    if options.backend in ("mtcnn", "fan") or options.fit is not None:
        import torch

        torch.set_num_threads(1)
    try:
        get_backend(options.backend)
    except VitdecaError as exc:
        _WORKER_ERROR.append(str(exc))


def _ping() -> str | None:
    return _WORKER_ERROR[0] if _WORKER_ERROR else None


def _check_start(pool: ProcessPoolExecutor) -> None:
    """Fail clearly when workers cannot start or load the backend (so no image is blamed for it)."""
    try:
        error = pool.submit(_ping).result()
    except BrokenProcessPool as exc:
        raise VitdecaError(
            "annotation worker processes failed to start; run with --workers 1 to see why "
            "(from Python, guard the calling script with `if __name__ == '__main__':`)"
        ) from exc
    if error:
        raise VitdecaError(error)


Emit = Callable[[PurePosixPath, list[dict[str, Any]]], None]


def _run_serial(
    root: Path, todo: list[PurePosixPath], out_dir: Path, options: AnnotateOptions, emit: Emit
) -> None:
    for rel in todo:
        emit(rel, annotate_file(root, rel, out_dir, options))


def _run_parallel(
    root: Path, todo: list[PurePosixPath], out_dir: Path, options: AnnotateOptions, emit: Emit, workers: int
) -> None:
    queue, attempts = deque(todo), Counter()
    context = multiprocessing.get_context("spawn")
    while queue:
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(options,)
        ) as pool:
            _check_start(pool)
            inflight: dict[Any, PurePosixPath] = {}
            broken = False
            while (queue or inflight) and not broken:
                while queue and len(inflight) < 2 * workers:
                    rel = queue.popleft()
                    inflight[pool.submit(annotate_file, root, rel, out_dir, options)] = rel
                done, _ = wait(inflight, return_when=FIRST_COMPLETED)
                for future in done:
                    rel = inflight.pop(future)
                    try:
                        emit(rel, future.result())
                    except BrokenProcessPool:
                        broken = True
                        inflight[future] = rel
            for future, rel in inflight.items():  # a worker died: retry its images once, then give up
                if future.done() and not future.cancelled() and future.exception() is None:
                    emit(rel, future.result())
                    continue
                attempts[rel] += 1
                if attempts[rel] >= 2:
                    emit(rel, [_record(rel, "crashed", "the worker process died twice on this image")])
                else:
                    queue.appendleft(rel)
            if broken:
                log.warning("a worker process died; restarting the pool (%d images retried)", len(inflight))


def _validate(options: AnnotateOptions) -> None:
    from vitdeca.faces.masks import MASK_METHODS

    if options.save_masks and options.mask_method not in MASK_METHODS:
        known = ", ".join(sorted(MASK_METHODS))
        raise VitdecaError(f"unknown mask method {options.mask_method!r} (known: {known})")
    if options.scale <= 0 or options.size < 1 or options.max_side < 1 or options.max_pixels < 1:
        raise VitdecaError("scale, size, max_side and max_pixels must be positive")
    if options.fit is not None:  # fail early: bad settings, or a head model that cannot load
        from vitdeca.data.pseudo import fitter

        fitter(options.fit_head, options.fit)


def _check_options(out_dir: Path, root: Path, options: AnnotateOptions) -> None:
    meta = read_meta(out_dir)
    wanted = asdict(options)
    if meta is not None:
        defaults = asdict(AnnotateOptions())  # keys an older dataset.json lacks had their default
        old = {**defaults, **meta.get("options", {})}
        if isinstance(old["fit"], dict):  # likewise FitConfig keys added since (e.g. torch_compile)
            from vitdeca.data.pseudo import with_fit_defaults

            old["fit"] = with_fit_defaults(old["fit"])
        differing = sorted(k for k in wanted if old[k] != wanted[k])
        if differing:
            was = ", ".join(
                f"other {k} settings" if isinstance(old[k], dict) else f"{k}={old[k]!r}" for k in differing
            )
            raise VitdecaError(
                f"{out_dir} was annotated with {was}; resume with the same options or use a new --out"
            )
    write_meta(out_dir, {"image_root": str(root.resolve()), "options": wanted, "manifest": MANIFEST_NAME})


def annotate_folder(
    root: str | Path, out_dir: str | Path, options: AnnotateOptions = AnnotateOptions(), workers: int = 1,
    progress: bool = True, on_image: Emit | None = None,
) -> AnnotateReport:  # fmt: skip
    """Annotate every image under ``root`` into ``out_dir`` (resuming); return the whole set's report.

    ``on_image(image, records)`` is called after each image's records are safely written.
    """
    from tqdm import tqdm

    root, out_dir = Path(root).expanduser(), Path(out_dir).expanduser()
    if not root.is_dir():
        raise VitdecaError(f"{root}: not a folder of images")
    if out_dir.resolve() == root.resolve():
        raise VitdecaError(f"{out_dir}: the dataset folder must differ from the image folder")
    _validate(options)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_options(out_dir, root, options)
    if workers <= 1:  # fail early (missing package, offline download); workers check it in _check_start
        get_backend(options.backend)
    existing = repair_manifest(out_dir / MANIFEST_NAME)
    done = {r["image"] for r in existing}
    images = list_images(root, exclude=out_dir)
    todo = [rel for rel in images if str(rel) not in done]
    report = AnnotateReport(skipped=len(images) - len(todo))
    bar = tqdm(total=len(images), initial=report.skipped, unit="img", disable=not progress, desc="annotate")
    with ManifestWriter(out_dir / MANIFEST_NAME) as writer:

        def emit(rel: PurePosixPath, records: list[dict[str, Any]]) -> None:
            writer.append(records)
            report.processed += 1
            bar.update(1)
            if on_image is not None:
                on_image(rel, records)

        try:
            if workers <= 1:
                _run_serial(root, todo, out_dir, options, emit)
            else:
                _run_parallel(root, todo, out_dir, options, emit, workers)
        finally:
            bar.close()
    if options.fit is not None:
        from vitdeca.data.manifest import read_manifest
        from vitdeca.data.pseudo import write_pseudo_codes

        write_pseudo_codes(out_dir, read_manifest(out_dir / MANIFEST_NAME), options.fit_head, options.fit)
    return summarise(out_dir, report)


def summarise(out_dir: Path, report: AnnotateReport | None = None) -> AnnotateReport:
    """Count the whole manifest by status; write ``rejected.txt`` and ``report.json`` atomically."""
    import json

    from vitdeca.data.manifest import REJECTED_NAME, REPORT_NAME, read_manifest

    report = report or AnnotateReport()
    records = read_manifest(out_dir / MANIFEST_NAME)
    by_image = {r["image"]: r for r in records}
    report.files = Counter(r["status"] for r in by_image.values())
    report.faces = sum(1 for r in records if r["status"] == STATUS_OK)
    rejected = sorted(
        (r["image"], r["status"], r["message"]) for r in by_image.values() if r["status"] != STATUS_OK
    )
    with atomic_path(out_dir / REJECTED_NAME) as tmp:
        tmp.write_text("".join(f"{image}\t{status}\t{message}\n" for image, status, message in rejected))
    summary = {"files": dict(report.files), "faces": report.faces, "processed_this_run": report.processed}
    with atomic_path(out_dir / REPORT_NAME) as tmp:
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return report
