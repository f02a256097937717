"""The main job: photos, folders and videos in, reconstructed faces and their files out.

:class:`Reconstructor` turns one image into a list of :class:`FaceResult` (detect → crop → encode or
fit → decode → back to original pixels); :class:`BatchRunner` drives it over many inputs for the CLI.
Names load lazily, so ``vitdeca.pipeline.batch`` can be imported without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchRunner": "batch",
    "Record": "batch",
    "RunOptions": "batch",
    "Summary": "batch",
    "parse_save": "batch",
    "write_face_outputs": "batch",
    "CodeSmoother": "reconstructor",
    "Prepared": "reconstructor",
    "Reconstructor": "reconstructor",
    "DetailMesh": "results",
    "FaceResult": "results",
    "MeshTopology": "results",
    "VideoFrame": "results",
    "transfer": "transfer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'vitdeca.pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(f"vitdeca.pipeline.{_EXPORTS[name]}"), name)
