"""Training data: the annotated-face dataset (``FaceDataset``), identity-grouped batches
(``IdentityBatchSampler``), DECA-style augmentation, and the manifest format written by ``vitdeca annotate``.

Names are imported lazily so that ``vitdeca.data.manifest`` (used by the annotation workers) does not
pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FaceDataset": "vitdeca.data.faces",
    "FaceSample": "vitdeca.data.faces",
    "IdentityBatchSampler": "vitdeca.data.sampler",
    "Augmentation": "vitdeca.data.augment",
    "ColourJitter": "vitdeca.data.augment",
    "read_manifest": "vitdeca.data.manifest",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vitdeca.data' has no attribute {name!r}")
