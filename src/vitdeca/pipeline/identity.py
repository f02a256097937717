"""One identity per person: a single shape (and albedo) for several images or video frames of one face.

Faces are first estimated one by one (regressed or fitted). Then, for the images of one person
(``--same-person``) or the frames of one video track:

- with fitting: a joint refit with the fit's full iterations (with :meth:`vitdeca.fit.FitConfig.warm`'s
  30 % the shape stays too close to its start: all/one NoW ratio 0.87 instead of 0.78 in
  ``benchmarks/bench_same_person.py``), in which one shape and one albedo, starting at the
  per-coordinate median of the per-image codes, are fitted to every image at once, while expression,
  pose, camera and light stay per image (:func:`vitdeca.fit.fit_codes`, ``shared``). Without the crops
  (video tracks, where the frames are not kept) only the landmark stage runs, so the albedo is the
  median. A video under ``refine`` keeps the encoder's codes per frame and this joint fit, with
  :meth:`~vitdeca.fit.FitConfig.refining`'s settings, is their refinement
  (:mod:`vitdeca.pipeline.video`);
- without fitting (a trained encoder alone): shape and albedo become the per-coordinate median of the
  regressed ones (a robust average: one bad frame or photo does not pull it).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from vitdeca.codes import Codes

IDENTITY_CODES = ("shape", "albedo")


def cat_codes(items: list[Codes]) -> Codes:
    """Concatenate codes along the batch (every item has the same codes present)."""
    first = items[0].as_dict()
    return Codes(
        **{k: None if v is None else torch.cat([getattr(c, k) for c in items]) for k, v in first.items()}
    )


def median_identity(codes: Codes) -> Codes:
    """``codes`` (B) with shape and albedo replaced by their per-coordinate median over the batch (the
    mean of the two middle values for an even B)."""
    changes = {}
    for name in IDENTITY_CODES:
        value = getattr(codes, name)
        if value is not None:
            median = torch.quantile(value.float(), 0.5, dim=0, keepdim=True).to(value.dtype)
            changes[name] = median.expand_as(value).clone()
    return codes.replace(**changes)


def shared_identity(
    rec, codes: Codes, landmarks: torch.Tensor, images: torch.Tensor | None = None, config=None
):
    """One shape and albedo for all of ``codes`` (B faces of one person); returns (codes, landmark NME
    per face or None without fitting).

    ``rec``: the :class:`~vitdeca.pipeline.Reconstructor` (its model and fit settings); ``landmarks``
    (B,68,2) crop pixels, the fit's targets; ``images`` (B,3,S,S) the crops, or None (landmark stage
    only); ``config``: the joint fit's :class:`~vitdeca.fit.FitConfig` (default ``rec.fit_config``). A
    single face is returned as it is.
    """
    if codes.batch_size < 2:
        return codes, None
    fitted = np.flatnonzero(rec.fits(codes)).tolist()
    if not fitted:
        return median_identity(codes), None
    from vitdeca.fit import fit_codes

    config = config or rec.fit_config
    if images is None:
        config = config.landmarks_only()
    chosen = None if images is None else images[fitted]
    init = codes.detach().index(fitted)
    result = fit_codes(rec.model, chosen, landmarks[fitted], config, init=init, shared=IDENTITY_CODES)
    if len(fitted) == codes.batch_size:
        return result.codes, result.nme
    return _with_shared_identity(rec, codes, result, fitted, landmarks)


def _with_shared_identity(rec, codes: Codes, result, fitted: list[int], landmarks: torch.Tensor):
    """(codes, NME per face): the jointly fitted faces ``fitted`` from ``result``, the others (faces
    refine leaves as regressed: turned far) with their own codes and the shared shape and albedo."""
    first = result.codes.index(0)  # every fitted face holds the shared identity
    shared = {name: getattr(first, name).expand_as(getattr(codes, name)) for name in IDENTITY_CODES}
    joined = codes.detach().replace(**shared).with_rows(fitted, result.codes)
    nme = rec.landmark_error(joined, landmarks)
    nme[fitted] = result.nme
    return joined, nme


def reconstruct_same_person(rec, prepared: list) -> list[list]:
    """Reconstruct the largest face of every image of ``prepared`` (:class:`Prepared`) as one person:
    each face estimated alone, then :func:`shared_identity` over all of them with the crops. Returns
    the results grouped per image ([] for an image without a face), like ``reconstruct_crops``."""
    from vitdeca.pipeline.decode import crop_batch

    largest = [dataclasses.replace(p, crops=p.crops[:1]) for p in prepared if p.crops]
    if not largest:
        return [[] for _ in prepared]
    crops, codes, nme = rec.estimate_prepared(largest)
    images = crop_batch(crops, rec.device)
    marks = torch.from_numpy(np.stack([c.crop_landmarks for c in crops])).float().to(rec.device)
    codes, joint_nme = shared_identity(rec, codes, marks, images if rec.fit_config is not None else None)
    results = iter(rec.decode(codes, crops, joint_nme if joint_nme is not None else nme))
    return [[next(results)] if p.crops else [] for p in prepared]
