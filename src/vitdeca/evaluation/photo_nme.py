"""Landmark NME of a checkpoint on real photos, and of the mean face, for the ablation's second column.

The photos come as any dataset :class:`vitdeca.data.FaceDataset` reads (a ``vitdeca annotate`` folder:
the detector's 68 landmarks are the reference; or hand annotations written in that format). Each face is
cropped from its reference landmarks exactly as for training (DECA's crop, no augmentation); the model's
68 projected landmarks are compared with the reference in the crop, where the NME (mean point error ÷
outer-eye-corner distance, :func:`vitdeca.evaluation.landmarks.nme`) equals the one in the original image
(a similarity scales both alike).

The mean face's NME: the template's 68 landmarks (frontal orthographic view: x, −y) placed by the 2D
similarity that fits each face's reference landmarks best (least squares): an oracle camera, so it
bounds from below any method that predicts only the camera.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from vitdeca.evaluation.landmarks import nme


def _stats(values: np.ndarray) -> dict[str, float | int]:
    return {"median": float(np.median(values)), "mean": float(values.mean()), "count": int(values.size)}


def _faces(dataset: str | os.PathLike, size: int):
    from vitdeca.data import FaceDataset

    return FaceDataset(Path(dataset), size=size, augmentation=None)


@torch.no_grad()
def checkpoint_nme(checkpoint: str | os.PathLike, dataset: str | os.PathLike, device: str = "cpu",
                   batch_size: int = 8) -> dict[str, float | int]:  # fmt: skip
    """{median, mean, count} of the outer-eye NME (a fraction) of a checkpoint's landmarks on ``dataset``."""
    from vitdeca.model import DecaModel

    model = DecaModel.load(checkpoint, map_location=device).eval()
    faces = _faces(dataset, model.config.image_size)
    errors = []
    for start in range(0, len(faces), batch_size):
        items = [faces[i] for i in range(start, min(len(faces), start + batch_size))]
        images = torch.stack([it.image for it in items]).to(device)
        recon = model.decode(model.encode(images, detail=False), detail=False)
        target = np.stack([it.landmarks.numpy() for it in items])
        errors.append(nme(recon.landmarks2d.float().cpu().numpy(), target))
    return _stats(np.concatenate(errors))


def similarity_fit_2d(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``source`` (N,2) moved by the least-squares 2D similarity (rotation, scale, shift) onto ``target``."""
    z, w = source[:, 0] + 1j * source[:, 1], target[:, 0] + 1j * target[:, 1]
    zc, wc = z - z.mean(), w - w.mean()
    a = np.vdot(zc, wc) / np.vdot(zc, zc)  # vdot conjugates its first argument
    moved = a * zc + w.mean()
    return np.stack([moved.real, moved.imag], axis=1)


def mean_face_nme(head, dataset: str | os.PathLike) -> dict[str, float | int]:
    """{median, mean, count} of the outer-eye NME of the template's landmarks, similarity-aligned to each
    face's reference landmarks (see the module docstring)."""
    with torch.no_grad():
        zeros = [torch.zeros(1, n) for n in (head.n_shape, head.n_expression, head.n_pose)]
        template = head(*zeros).landmarks3d[0, :, :2].cpu().numpy().astype(np.float64)
    template *= np.array([1.0, -1.0])  # y up (model) -> y down (image)
    errors = []
    for record in _faces(dataset, 32).records:
        target = np.asarray(record["landmarks"], np.float64)
        errors.append(nme(similarity_fit_2d(template, target), target))
    return _stats(np.asarray(errors))
