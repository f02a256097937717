"""``FaceDataset``: the faces of an annotated dataset (``vitdeca annotate``) as network inputs.

Each item reads the original image, crops it as DECA does (fixed ``scale`` or a random
:class:`~vitdeca.data.augment.Augmentation`), and moves the landmarks and the mask through the same
matrix. Randomness is a pure function of (seed, epoch, index), so items are reproducible whatever the
DataLoader worker that loads them; call :meth:`FaceDataset.set_epoch` each epoch (with
``persistent_workers=True`` the workers keep the epoch they were started with).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vitdeca.data.augment import Augmentation, colour_jitter, jittered_square
from vitdeca.data.manifest import MANIFEST_NAME, STATUS_OK, read_manifest, read_meta
from vitdeca.errors import VitdecaError
from vitdeca.faces.geometry import (
    DEFAULT_SCALE,
    DEFAULT_SIZE,
    compose,
    crop_square,
    invert_similarity,
    square_matrix,
    transform_points,
    warp_image,
)
from vitdeca.faces.image_io import DEFAULT_MAX_PIXELS, read_image
from vitdeca.faces.masks import landmark_mask

MASK_SOURCES = ("auto", "landmarks", "file")


TRUTH_CODES = ("shape", "expression", "pose")
"""The true codes a synthetic dataset's ``codes.npz`` gives every sample (see :mod:`vitdeca.data.synth`)."""

PSEUDO_KEY = "pseudo"
"""The ``codes.npz`` array (bool per row) that marks fitted codes (``vitdeca annotate --fit``,
:mod:`vitdeca.data.pseudo`) rather than exact ones, and the ``FaceSample.truth`` entry that carries it."""


class Truth(NamedTuple):
    """A dataset's codes in record order: ``codes`` {code: (N,n) float32}, ``pseudo`` (N,) bool (fitted
    codes), ``present`` (N,) bool (the face has codes; a pseudo-labelled face whose fit failed has none),
    and the head model the codes belong to (``head_model``, ``head_checksum``; "" when the file does not
    say)."""

    codes: dict[str, np.ndarray]
    pseudo: np.ndarray
    present: np.ndarray
    head_model: str = ""
    head_checksum: str = ""

    @property
    def exact(self) -> np.ndarray:
        """(N,) bool: the faces with exact (not fitted) codes."""
        return self.present & ~self.pseudo


class FaceSample(NamedTuple):
    """One item (the default collate stacks each field): ``image`` (3,S,S) float32 [0,1], ``landmarks``
    (68,2) crop pixels, ``mask`` (1,S,S) float32 {0,1}, ``identity`` int64, ``index`` int64 (position in
    the dataset), ``matrix`` (2,3) float64 original → crop, ``truth``: empty for photos (so torch's
    default collate works), or the sample's codes from ``codes.npz`` (:data:`TRUTH_CODES`: float32
    (n_shape,), (n_expression,), (n_pose,)) and :data:`PSEUDO_KEY`: float32 scalar, 1 for pseudo-labels
    (fitted by ``vitdeca annotate --fit``), 0 for exact truth (``vitdeca synth``). Crops are similarities
    without rotation, so the true pose holds in the crop too."""

    image: torch.Tensor
    landmarks: torch.Tensor
    mask: torch.Tensor
    identity: torch.Tensor
    index: torch.Tensor
    matrix: torch.Tensor
    truth: dict[str, torch.Tensor] = {}  # noqa: RUF012 - never mutated; NamedTuple defaults are shared


class FaceDataset(Dataset):
    """Faces with status ``ok`` from ``dataset_dir/manifest.jsonl``.

    ``image_root`` overrides the folder recorded in ``dataset.json``. ``mask_source``: ``"auto"`` uses a
    saved mask when the record has one and the landmark mask otherwise; ``"landmarks"`` always draws it
    from the landmarks; ``"file"`` requires saved masks. Files directly in the image root have no
    identity folder: each becomes its own one-image identity.
    """

    def __init__(
        self, dataset_dir: str | os.PathLike, image_root: str | os.PathLike | None = None,
        size: int = DEFAULT_SIZE, scale: float = DEFAULT_SCALE, augmentation: Augmentation | None = None,
        seed: int = 0, mask_source: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:  # fmt: skip
        if mask_source not in MASK_SOURCES:
            raise VitdecaError(f"mask_source must be one of {MASK_SOURCES}, got {mask_source!r}")
        self.dataset_dir = Path(dataset_dir)
        meta = read_meta(self.dataset_dir) or {}
        root = image_root or meta.get("image_root")
        if root is None:
            raise VitdecaError(f"{self.dataset_dir}: no dataset.json; pass image_root")
        self.image_root = Path(root)
        self.records = [
            r for r in read_manifest(self.dataset_dir / MANIFEST_NAME) if r["status"] == STATUS_OK
        ]
        if not self.records:
            raise VitdecaError(f"{self.dataset_dir / MANIFEST_NAME}: no usable faces (status ok)")
        names = [r["identity"] if r["identity"] is not None else f"/{r['image']}" for r in self.records]
        self.identities: list[str] = sorted(set(names))
        lookup = {name: k for k, name in enumerate(self.identities)}
        self.identity_index = np.array([lookup[name] for name in names], dtype=np.int64)
        self.size, self.scale, self.augmentation = size, scale, augmentation
        self.seed, self.epoch, self.mask_source, self.max_pixels = seed, 0, mask_source, max_pixels
        self.truth = _read_truth(self.dataset_dir, self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def _square(self, landmarks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        if self.augmentation is None:
            return crop_square(landmarks, self.scale)
        return jittered_square(landmarks, self.augmentation, rng)

    def __getitem__(self, index: int) -> FaceSample:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        landmarks = np.asarray(record["landmarks"], dtype=np.float64)
        image = read_image(self._image_path(record["image"]), max_pixels=self.max_pixels)
        matrix = square_matrix(*self._square(landmarks, rng), self.size)
        crop = warp_image(image, matrix, self.size).astype(np.float32) / 255.0
        if self.augmentation is not None and self.augmentation.colour is not None:
            crop = colour_jitter(crop, self.augmentation.colour, rng)
        crop_landmarks = transform_points(landmarks, matrix)
        mask = self._mask(record, matrix, crop_landmarks)
        return FaceSample(
            image=torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))),
            landmarks=torch.from_numpy(crop_landmarks.astype(np.float32)),
            mask=torch.from_numpy(mask.astype(np.float32)[None]),
            identity=torch.tensor(self.identity_index[index]),
            index=torch.tensor(index, dtype=torch.int64),
            matrix=torch.from_numpy(matrix),
            truth=self._truth(index),
        )

    def _truth(self, index: int) -> dict[str, torch.Tensor]:
        if self.truth is None or not self.truth.present[index]:
            return {}
        codes = {k: torch.from_numpy(v[index]) for k, v in self.truth.codes.items()}
        return {**codes, PSEUDO_KEY: torch.tensor(float(self.truth.pseudo[index]))}

    @property
    def has_truth(self) -> bool:
        """Whether samples carry codes (a dataset with ``codes.npz``: synthetic, or pseudo-labelled)."""
        return self.truth is not None

    @property
    def has_pseudo_labels(self) -> bool:
        """Whether some samples carry fitted codes (``vitdeca annotate --fit``) rather than exact ones."""
        return self.truth is not None and bool(self.truth.pseudo.any())

    def _image_path(self, image: str) -> Path:
        path = Path(image)
        return path if path.is_absolute() else self.image_root / path

    def _mask(self, record: dict, matrix: np.ndarray, crop_landmarks: np.ndarray) -> np.ndarray:
        """Bool (S,S) mask in the new crop: the saved one warped over, or drawn from the landmarks."""
        saved = record.get("mask")
        if self.mask_source == "landmarks" or (saved is None and self.mask_source == "auto"):
            return landmark_mask(crop_landmarks, self.size, self.size)
        if saved is None or record.get("crop_matrix") is None:
            raise VitdecaError(f"{record['image']}: no saved mask in the manifest (mask_source='file')")
        path = self.dataset_dir / saved
        stored = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if stored is None:
            raise VitdecaError(f"{path}: cannot read the saved mask")
        to_new = compose(matrix, invert_similarity(np.asarray(record["crop_matrix"], dtype=np.float64)))
        return warp_image(stored.astype(np.float32) / 255.0, to_new, self.size) >= 0.5


def _read_truth(dataset_dir: Path, records: list[dict]) -> Truth | None:
    """The codes of ``records`` from ``dataset_dir/codes.npz`` (rows matched by ``image``, and by
    ``face_index`` too when the file has it), or None when the dataset has no such file. Raises
    :class:`VitdecaError` when it is unreadable, or when it lacks a record and is not a pseudo-label file
    (where a face whose fit failed has no row: it trains as a photo)."""
    from vitdeca.data.synth import CODES_NAME

    path = dataset_dir / CODES_NAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            per_face = "face_index" in data.files
            keys = _row_keys(data["image"], data["face_index"] if per_face else None)
            arrays = {key: np.asarray(data[key], dtype=np.float32) for key in TRUTH_CODES}
            fitted = PSEUDO_KEY in data.files
            pseudo = np.asarray(data[PSEUDO_KEY], dtype=bool) if fitted else np.zeros(len(keys), dtype=bool)
            head = tuple(str(data[k]) if k in data.files else "" for k in ("head_model", "head_checksum"))
    except (OSError, KeyError, ValueError) as exc:
        raise VitdecaError(f"{path}: unreadable ground-truth codes ({exc})") from exc
    row = {key: k for k, key in enumerate(keys)}
    wanted = _row_keys(
        [r["image"] for r in records], [r["face_index"] for r in records] if per_face else None
    )
    order = np.array([row.get(key, -1) for key in wanted], dtype=np.int64)
    present = order >= 0
    if not fitted and not present.all():
        missing = [key for key, ok in zip(wanted, present, strict=True) if not ok]
        raise VitdecaError(f"{path}: no true codes for {len(missing)} images (e.g. {missing[0]})")
    order = np.where(present, order, 0)
    codes = {key: np.ascontiguousarray(value[order]) for key, value in arrays.items()}
    return Truth(codes, pseudo[order] & present, present, *head)


def _row_keys(images, face_indices) -> list:
    """The keys that match records to ``codes.npz`` rows: the image path, or (image, face index)."""
    if face_indices is None:
        return [str(image) for image in images]
    return [(str(image), -1 if k is None else int(k)) for image, k in zip(images, face_indices, strict=True)]
