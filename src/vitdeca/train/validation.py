"""Validation during training: a held-out dataset scored every ``run.val_every`` steps, in eval mode.

``data.val_manifest`` names any dataset :class:`vitdeca.data.FaceDataset` reads (``vitdeca annotate`` or
``vitdeca synth`` output). At each validation (every ``run.val_every`` steps and at the end of every
stage; ``val_every: 0`` = stage ends only) the model runs in eval mode (no DropKey, no dropout, BatchNorm
statistics fixed) under ``torch.no_grad`` on the fixed, un-augmented crops, and the trainer's own
:meth:`~vitdeca.train.trainer.Trainer.training_step` computes the current stage's loss terms, without the
shape/detail-consistency swap (held-out images are not grouped by identity). Logged (rank 0 only) to
``losses.csv`` as ``val_total`` and ``val_<term>`` columns of the step's row, and to TensorBoard under
``val/``; the mean over the validation images (each weighs alike).

Ground truth: a synthetic dataset's ``codes.npz`` holds the true shape code of every image (rows marked
``pseudo``, codes fitted by ``vitdeca annotate --fit``, are no ground truth and are left out); then
``val_shape_mm`` is the neutral-shape error: the mean distance in mm over the head model's face-region
vertices between the neutral mesh (expression and pose zero) of the predicted shape code, scaled and moved
onto the true one (:func:`vitdeca.losses.align_scale_translation`: a weak-perspective image shows neither
size nor position), and that of the true shape code, averaged over the images with ground truth;
``val_shape_mm_mean_face`` is the same for the template (zero shape), the baseline a model has to beat.
Validation draws no random numbers from the training streams (the RNG states are forked), so a run with
validation trains exactly as one without.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitdeca.errors import VitdecaError

log = logging.getLogger(__name__)

PREFIX = "val_"
SHAPE_COLUMNS = ("val_shape_mm", "val_shape_mm_mean_face")


@dataclass
class ShapeTruth:
    """True shape codes by dataset index ({index: (n_shape,) float32}) and the head they belong to."""

    shapes: dict[int, np.ndarray]
    head_name: str
    head_checksum: str


def read_shape_truth(dataset: Any) -> ShapeTruth | None:
    """The exact shape codes of ``dataset``'s images (``FaceDataset.truth``, from a ``vitdeca synth``
    dataset's codes.npz); None for a real-photo dataset or one with pseudo-labels only (``vitdeca annotate
    --fit``: fitted codes are no ground truth)."""
    truth = getattr(dataset, "truth", None)
    if truth is None:
        return None
    exact = np.flatnonzero(truth.exact)
    if exact.size == 0:
        where = getattr(dataset, "dataset_dir", "the validation set")
        log.info("%s: pseudo-labels only (fitted codes), no exact truth: no val_shape_mm", where)
        return None
    shapes = {int(i): truth.codes["shape"][i].astype(np.float32) for i in exact}
    return ShapeTruth(shapes, truth.head_model, truth.head_checksum)


class Validator:
    """Scores ``dataset`` (items as training items: dicts or FaceSample) for a :class:`Trainer`.

    ``every``: steps between validations (0: only at stage ends); ``batch_size``: images per forward
    pass; ``max_images``: an evenly spaced subset of at most this many (0: all); ``truth``: ground truth
    for ``val_shape_mm`` or None.
    """

    def __init__(self, dataset: Any, every: int = 0, batch_size: int = 8, max_images: int = 0,
                 truth: ShapeTruth | None = None) -> None:  # fmt: skip
        if len(dataset) == 0:
            raise VitdecaError("the validation dataset is empty")
        self.dataset, self.every, self.batch_size, self.truth = dataset, every, batch_size, truth
        n = len(dataset)
        count = n if max_images <= 0 else min(n, max_images)
        self.indices = np.unique(np.linspace(0, n - 1, count).round().astype(int)).tolist()

    def columns(self, terms: list[str]) -> list[str]:
        """The ``losses.csv`` columns this validator fills: val_total, val_<term>, val_shape_mm…"""
        return [f"{PREFIX}total", *[PREFIX + t for t in terms], *(SHAPE_COLUMNS if self.truth else ())]

    def due(self, step: int, stage_end: int) -> bool:
        return step == stage_end or (self.every > 0 and step % self.every == 0)

    def run(self, trainer: Any, stage: str) -> dict[str, float]:
        """One validation pass of ``trainer``'s model; returns {column: value}."""
        from vitdeca.train.distributed import unwrap

        model = unwrap(trainer.model)
        modes = {module: module.training for module in model.modules()}
        model.eval()
        try:
            with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices(trainer.device)):
                return self._score(trainer, model, stage)
        finally:
            for module, mode in modes.items():
                module.train(mode)

    def _score(self, trainer: Any, model: Any, stage: str) -> dict[str, float]:
        from vitdeca.train.data import collate

        sums: dict[str, float] = {}
        shape_errors: list[np.ndarray] = []
        for start in range(0, len(self.indices), self.batch_size):
            chunk = self.indices[start : start + self.batch_size]
            batch = collate([self.dataset[i] for i in chunk])
            result = trainer.training_step(batch, stage, validation=True)
            values = {"total": result.total, **result.values}
            for name, value in values.items():
                sums[PREFIX + name] = sums.get(PREFIX + name, 0.0) + float(value) * len(chunk)
            if self.truth is not None and result.codes is not None:
                shape_errors.append(self._shape_errors(model, chunk, result.codes.shape))
        out = {name: total / len(self.indices) for name, total in sums.items()}
        errors = np.concatenate(shape_errors) if shape_errors else np.zeros((0, 2))
        if len(errors):
            out[SHAPE_COLUMNS[0]], out[SHAPE_COLUMNS[1]] = (float(v) for v in errors.mean(axis=0))
        return out

    def _shape_errors(self, model: Any, chunk: list[int], predicted: torch.Tensor) -> np.ndarray:
        """(n, 2): per image with ground truth, the predicted and the template's neutral-shape error."""
        rows = [k for k, index in enumerate(chunk) if index in self.truth.shapes]
        if not rows:
            return np.zeros((0, 2))
        from vitdeca.evaluation.baseline import neutral_meshes
        from vitdeca.losses import align_scale_translation

        head = model.head
        self._check_head(head)
        device = head.template_vertices.device
        true = torch.from_numpy(np.stack([self.truth.shapes[chunk[k]] for k in rows])).to(device)
        pred = predicted[rows].float().to(device)
        if true.shape[1] != pred.shape[1]:
            raise VitdecaError(
                f"validation ground truth has {true.shape[1]} shape coefficients, the model's head "
                f"{pred.shape[1]}; use the head model (n_shape) the dataset was made with"
            )
        meshes, _ = neutral_meshes(head, torch.cat([pred, true, torch.zeros_like(true)]))
        face = head.face_mask.cpu().numpy()
        meshes = meshes[:, face] if face.any() else meshes
        n = len(rows)
        target = torch.from_numpy(meshes[n : 2 * n]).double()
        pred_err, mean_err = (
            (align_scale_translation(torch.from_numpy(m).double(), target) - target).norm(dim=-1).mean(dim=1)
            .numpy()
            for m in (meshes[:n], meshes[2 * n :])
        )  # fmt: skip
        return np.stack([pred_err, mean_err], axis=1) / float(head.units_per_mm)

    def _check_head(self, head: Any) -> None:
        if self.truth.head_checksum and head.checksum() != self.truth.head_checksum:
            raise VitdecaError(
                f"the validation set's codes.npz was made with another {self.truth.head_name} head model "
                f"({self.truth.head_checksum[:16]}); its shape errors would be meaningless"
            )
        self.truth.head_checksum = ""  # checked once


def _cuda_devices(device: Any) -> list[int]:
    device = torch.device(device)
    return [device.index or 0] if device.type == "cuda" else []


def build_validator(config: Any) -> Validator | None:
    """The validator of a :class:`~vitdeca.train.config.TrainConfig` (None without
    ``data.val_manifest``): its dataset cropped as the training data, without augmentation."""
    from vitdeca.data import FaceDataset

    data = config.data
    if not data.val_manifest:
        return None
    folder = Path(data.val_manifest)
    folder = folder.parent if folder.is_file() else folder
    if not folder.is_dir():
        raise VitdecaError(f"data.val_manifest {data.val_manifest}: no such dataset folder")
    dataset = FaceDataset(folder, size=data.image_size, augmentation=None, seed=config.run.seed)
    truth = read_shape_truth(dataset)
    log.info("validation: %d images of %s%s", len(dataset), folder, " with true shapes" if truth else "")
    return Validator(dataset, config.run.val_every, data.batch_size, data.val_max_images, truth)
