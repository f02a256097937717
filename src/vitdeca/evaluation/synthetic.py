"""Evaluating a model on a NoW-layout dataset end to end: predictions, then the NoW protocol.

:func:`evaluate_model` runs a checkpoint (:meth:`vitdeca.model.DecaModel.load`) or per-image fitting
(:mod:`vitdeca.fit`) on every listed image, writes the neutral meshes and their 7 NoW landmarks in the
challenge layout (``OUT/predictions/SUBJECT/CATEGORY/IMAGE.obj`` + ``IMAGE.npy``), then measures them with
:func:`vitdeca.evaluation.now_dataset.evaluate_now` and writes the usual report into ``OUT``.

Faces are located from the dataset's own 68 landmarks when it has them (``landmarks2d/`` of a
``vitdeca synth`` dataset: no detector runs, so detection errors do not enter the score) or by the
detector otherwise (real NoW images); the crop is DECA's (:func:`vitdeca.faces.crop_face`) either way.
``oracle=True`` instead writes the true neutral meshes of a synthetic dataset (from ``codes.npz``, in
head-model units): the report must then show ≈ 0, which checks units, landmarks and the protocol.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitdeca.errors import VitdecaError
from vitdeca.evaluation.baseline import evaluate_mean_face, neutral_meshes, write_prediction
from vitdeca.evaluation.now_dataset import NowItem, read_image_list

log = logging.getLogger(__name__)

LANDMARK_SOURCES = ("auto", "gt", "detect")
MARKER = ".vitdeca_predictions"


def synthetic_meta(dataset: str | os.PathLike) -> dict[str, Any] | None:
    """The ``synth`` options recorded in a ``vitdeca synth`` dataset's dataset.json, else None."""
    from vitdeca.data.manifest import read_meta

    meta = read_meta(dataset)
    return meta.get("synth") if meta else None


def landmark_path(dataset: Path, item: NowItem) -> Path:
    """Where a synthetic dataset keeps an image's 68 landmarks (68,2) in image pixels."""
    return dataset / "landmarks2d" / item.subject / item.category / f"{item.stem}.npy"


def image_path(dataset: Path, item: NowItem) -> Path:
    return dataset / "iphone_pictures" / item.image


def write_oracle_predictions(dataset: str | os.PathLike, predictions: str | os.PathLike):
    """The true neutral meshes of a synthetic dataset as predictions (model units); returns the head
    model they were made with."""
    from vitdeca.data.synth import CODES_NAME
    from vitdeca.head import load_head_model

    dataset, predictions = Path(dataset), Path(predictions)
    path = dataset / CODES_NAME
    if not path.is_file():
        raise VitdecaError(f"{path}: no true codes (is {dataset} a 'vitdeca synth' dataset?)")
    codes = np.load(path)
    head_path = (synthetic_meta(dataset) or {}).get("head_path")
    head = load_head_model(str(codes["head_model"]), **({"path": head_path} if head_path else {}))
    if head.checksum() != str(codes["head_checksum"]):
        raise VitdecaError(
            f"{path}: made with another {head.name} model ({str(codes['head_checksum'])[:16]})"
        )
    shapes = {str(i): s for i, s in zip(codes["image"], codes["shape"], strict=True)}
    faces = head.faces.numpy()
    items = read_image_list(dataset, "val")
    for item in items:
        if item.image not in shapes:
            raise VitdecaError(f"{path}: no codes for {item.image}")
        vertices, landmarks = neutral_meshes(head, torch.from_numpy(shapes[item.image])[None])
        write_prediction(predictions, item, vertices[0], faces, landmarks[0])
    return head


def listed_face_crop(reconstructor, dataset: Path, item: NowItem, use_gt: bool):
    """(the image (H,W,3) uint8, the :class:`~vitdeca.pipeline.reconstructor.FaceCrop` of its face) of a
    listed image, its crop made from the dataset's landmarks (``use_gt``) or the detector's; or a reason
    (str) for none."""
    from vitdeca.faces import crop_face, read_image
    from vitdeca.pipeline.reconstructor import FaceCrop

    path = image_path(dataset, item)
    try:
        if not use_gt:
            prepared = reconstructor.prepare(path)
            return (prepared.image, prepared.crops[0]) if prepared.crops else "no face detected"
        image = read_image(path)
        landmarks = np.load(landmark_path(dataset, item)).astype(np.float64)[..., :2].reshape(68, 2)
    except (VitdecaError, OSError, ValueError) as exc:
        return str(exc)
    box = np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)])
    return image, FaceCrop(0, box, 1.0, landmarks, crop_face(image, landmarks, size=reconstructor.crop_size))


def predict_dataset(reconstructor, dataset: str | os.PathLike, predictions: str | os.PathLike,
                    split: str = "val", landmarks: str = "auto", batch_size: int = 8,
                    progress: bool = True) -> dict[str, str]:  # fmt: skip
    """Write the predictions of ``reconstructor`` (a :class:`vitdeca.pipeline.Reconstructor`) for every
    listed image. ``landmarks``: "gt" (the dataset's ``landmarks2d/``), "detect", or "auto" (gt when the
    file exists). Returns {image: reason} for the images without a prediction (no face, unreadable)."""
    from tqdm import tqdm

    if landmarks not in LANDMARK_SOURCES:
        raise VitdecaError(f"landmarks must be one of {LANDMARK_SOURCES}, got {landmarks!r}")
    dataset, predictions = Path(dataset), Path(predictions)
    items = read_image_list(dataset, split)
    head, faces = reconstructor.model.head, reconstructor.model.head.faces.cpu().numpy()
    failed: dict[str, str] = {}
    with tqdm(total=len(items), desc="predict", unit="image", disable=not progress) as bar:
        for start in range(0, len(items), batch_size):
            batch, images, crops = [], [], []
            for item in items[start : start + batch_size]:
                use_gt = landmarks == "gt" or (landmarks == "auto" and landmark_path(dataset, item).is_file())
                found = listed_face_crop(reconstructor, dataset, item, use_gt)
                if isinstance(found, str):
                    failed[item.image] = found
                    continue
                batch.append(item)
                images.append(found[0])
                crops.append(found[1])
            if crops:  # turned faces re-framed as in the pipeline (Reconstructor.reframe_turned)
                crops, encoded = reconstructor.reframe_turned(images, crops)
                codes, _ = reconstructor.estimate_codes(crops, encoded=encoded)
                vertices, lmk7 = neutral_meshes(head, codes.shape.detach())
                for k, item in enumerate(batch):
                    write_prediction(predictions, item, vertices[k], faces, lmk7[k])
            bar.update(len(items[start : start + batch_size]))
    for image, reason in failed.items():
        log.warning("%s: no prediction (%s)", image, reason)
    return failed


def build_reconstructor(checkpoint: str | os.PathLike | None, fit_iterations: str | None = None,
                        device: str = "cpu", head: str = "ict"):  # fmt: skip
    """A checkpoint's encoder (``checkpoint``), or per-image fitting (None; ``fit_iterations`` like
    "150,20" for the landmark and photometric stages)."""
    from vitdeca.fit import FitConfig
    from vitdeca.pipeline import Reconstructor

    fit = None
    if checkpoint is None:
        fit = FitConfig()
        if fit_iterations:
            fit = fit.with_iterations(fit_iterations)
    return Reconstructor.from_pretrained(checkpoint, device=device, detail=False, fit=fit, head=head)


def fresh_predictions_folder(folder: Path) -> Path:
    """An empty ``folder`` for predictions; an earlier one is removed only if this module made it
    (it holds :data:`MARKER`), so stale meshes never count and no user folder is deleted."""
    import shutil

    if folder.exists():
        if not (folder / MARKER).is_file():
            raise VitdecaError(
                f"{folder}: exists and was not written by 'vitdeca eval synth'; choose a new --out"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("predictions of vitdeca eval synth; replaced on every run\n")
    return folder


def evaluate_model(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    oracle: bool = False,
    landmarks: str = "auto",
    fit_iterations: str | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    workers: int = 1,
    split: str = "val",
    progress: bool = True,
    mean_face: bool | list | None = True,
    bootstrap=None,
) -> dict[str, Any]:
    """Predict (checkpoint / fitting / oracle) into ``OUT/predictions`` and write the NoW report into
    ``OUT`` (summary.json, report.md, per_image.csv, cumulative_error.png); returns the summary.

    ``mean_face``: True measures the mean face of the predictions' head model in the same run (the
    report's baseline), a list of its :class:`ImageResult` reuses one measured before, False/None skips
    it. ``bootstrap``: :class:`vitdeca.evaluation.baseline.BootstrapOptions` (None: the defaults)."""
    from vitdeca.evaluation.now_dataset import evaluate_now
    from vitdeca.evaluation.now_report import write_report

    dataset, out = Path(dataset), Path(out)
    predictions = fresh_predictions_folder(out / "predictions")
    if oracle:
        head = write_oracle_predictions(dataset, predictions)
        method = "oracle (true neutral meshes)"
    else:
        head_name = (synthetic_meta(dataset) or {}).get("head_model", "ict")
        reconstructor = build_reconstructor(checkpoint, fit_iterations, device, head_name)
        predict_dataset(reconstructor, dataset, predictions, split, landmarks, batch_size, progress)
        head = reconstructor.model.head
        method = f"checkpoint {checkpoint}" if checkpoint else "per-image fitting"
    results = evaluate_now(predictions, dataset, split, workers, progress=progress)
    baseline = mean_face if isinstance(mean_face, list) else None
    if mean_face is True:
        baseline = evaluate_mean_face(head, dataset, split, workers)
    return write_report(results, out, baseline=baseline, bootstrap=bootstrap, split=split,
                        dataset=str(dataset), predictions=str(predictions), method=method,
                        landmarks=landmarks)  # fmt: skip
