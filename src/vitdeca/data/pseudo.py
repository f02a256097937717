"""Pseudo-labels: the head model fitted to every face of an annotated dataset (``vitdeca annotate --fit``).

Each face is fitted exactly as ``vitdeca reconstruct --method fit`` fits it (a
:class:`~vitdeca.pipeline.Reconstructor` without a model: its crop of the face, then
:func:`vitdeca.fit.fit_codes` with the given :class:`~vitdeca.fit.FitConfig`), in the annotation worker
that detected it, on ``torch.get_num_threads()`` threads (the caller's policy). The fitted shape,
expression and pose codes and the fit's landmark NME go into the face's manifest record (:data:`FIT_FIELD`),
written and fsynced with the image's other records, so a killed run resumes as annotation does. At the
end of every run :func:`write_pseudo_codes` gathers them into ``codes.npz``, the file
:class:`~vitdeca.data.FaceDataset` reads a synthetic dataset's true codes from, keyed per face (``image``,
``face_index``) and marked as pseudo-labels (``pseudo``: True per row). Training gives these samples the
supervised terms weighted by ``losses.pseudo_weight`` (fitted codes are estimates, not truth); validation
leaves them out of ``val_shape_mm``.
"""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from vitdeca.data.faces import PSEUDO_KEY, TRUTH_CODES
from vitdeca.data.manifest import STATUS_OK
from vitdeca.storage import atomic_path

log = logging.getLogger(__name__)

FIT_FIELD = "fit"
"""The manifest record key of a face's fitted codes: {``shape``, ``expression``, ``pose``: lists of
floats, ``nme``: float}, or None when its fit failed (the face keeps its landmarks and trains as a photo)."""


@lru_cache(maxsize=1)
def _reconstructor(head: str, fit_json: str):
    """The fitting :class:`~vitdeca.pipeline.Reconstructor` of a head model and FitConfig (as JSON); one
    per process."""
    from vitdeca.config import from_dict
    from vitdeca.fit import FitConfig
    from vitdeca.pipeline.reconstructor import Reconstructor

    config = from_dict(FitConfig, json.loads(fit_json), "fit").validated()
    return Reconstructor.from_pretrained(None, device="auto", method="fit", fit=config, head=head)


def with_fit_defaults(fit: dict[str, Any]) -> dict[str, Any]:
    """FitConfig values ``fit`` (as a dataset.json stored them) with the keys they lack at FitConfig's
    defaults: a dataset annotated before a key was added was fitted with its default."""
    from vitdeca.config import to_dict
    from vitdeca.fit import FitConfig

    return {**to_dict(FitConfig()), **fit}


def fitter(head: str, fit: dict[str, Any]):
    """The fitting Reconstructor for head model ``head`` and FitConfig values ``fit`` (cached)."""
    return _reconstructor(head, json.dumps(fit, sort_keys=True))


def fit_face(image: np.ndarray, face: Any, head: str, fit: dict[str, Any]) -> dict[str, Any]:
    """The :data:`FIT_FIELD` of one detected ``face`` (a :class:`~vitdeca.faces.Face`) of ``image`` (H,W,3)
    uint8 RGB: its codes fitted as ``reconstruct --method fit`` fits them. Raises FloatingPointError when
    the fit ends non-finite (and whatever the fit raises)."""
    rec = fitter(head, fit)
    codes, nme = rec.estimate_codes(rec.crop_faces(image, [face]))
    values = {name: getattr(codes, name)[0].detach().double().cpu().numpy() for name in TRUTH_CODES}
    if not (np.isfinite(nme).all() and all(np.isfinite(v).all() for v in values.values())):
        raise FloatingPointError("the fit ended with non-finite codes")
    return {**{name: np.round(v, 6).tolist() for name, v in values.items()}, "nme": round(float(nme[0]), 6)}


def write_pseudo_codes(out_dir: Path, records: list[dict[str, Any]], head: str, fit: dict[str, Any]) -> int:
    """Write ``out_dir/codes.npz`` (atomically) from the fitted faces of ``records``; the number of faces
    in it. Arrays per face: ``image``, ``face_index``, ``shape``, ``expression``, ``pose`` (float32),
    ``nme``, ``pseudo`` (True); and ``head_model``, ``head_checksum``, ``units_per_mm`` as a synthetic
    dataset's. Nothing is written when no face has fitted codes."""
    from vitdeca.data.synth import CODES_NAME

    rows = [r for r in records if r["status"] == STATUS_OK and r.get(FIT_FIELD)]
    if not rows:
        log.warning("%s: no face has fitted codes; no %s written", out_dir, CODES_NAME)
        return 0
    model_head = fitter(head, fit).model.head
    arrays = {
        "image": np.array([r["image"] for r in rows]),
        "face_index": np.array([r["face_index"] for r in rows], dtype=np.int64),
        **{name: np.array([r[FIT_FIELD][name] for r in rows], dtype=np.float32) for name in TRUTH_CODES},
        "nme": np.array([r[FIT_FIELD]["nme"] for r in rows], dtype=np.float32),
        PSEUDO_KEY: np.ones(len(rows), dtype=bool),
        "head_model": np.array(model_head.name),
        "head_checksum": np.array(model_head.checksum()),
        "units_per_mm": np.array(model_head.units_per_mm),
    }
    with atomic_path(out_dir / CODES_NAME, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return len(rows)
