"""A small real training setup: vitdeca's ``DecaModel`` (ICT head, tiny ViT + DropKey, 32×32 crops, 32×32
UV maps) and a synthetic map-style dataset, so the training loop's own tests take ~0.1 s per step.

``tiny_model`` can poison chosen forward passes of the head model (NaN vertices) to test how the trainer
handles a numerical failure; the end-to-end tests on real photos are in test_real_model.py.
"""

from __future__ import annotations

import math

import torch

from vitdeca.head.base import HeadOutput
from vitdeca.model import DecaModel

SIZE = 32

BASE_OVERRIDES = [
    "data.identities_per_batch=4",
    "data.images_per_identity=2",
    f"data.image_size={SIZE}",
    f"model.image_size={SIZE}",
    "model.encoder=vit_tiny_patch16_224",
    "model.pool=mean",
    "model.uv_size=32",
    "model.n_albedo=8",
    "losses.identity=0",
    "losses.mrf=0",
    "run.device=cpu",
    "run.amp=none",
    "run.progress=false",
    "run.image_every=2",
    "run.log_every=1",
]
RANDOM = ["model.dropkey=0.2"]  # DropKey draws random numbers at every training step


_POISON: list[torch.utils.hooks.RemovableHandle] = []


def tiny_model(config, head, nan_calls: tuple[int, ...] = ()) -> DecaModel:
    """``DecaModel(config.model)`` on ``head``; the head's forward passes numbered in ``nan_calls``
    (1-based, counted from now: one per decode) return NaN vertices and landmarks until
    :func:`remove_poison` (``head`` is shared between tests)."""
    model = DecaModel(config.model, head=head)
    if nan_calls:
        calls = {"n": 0}

        def poison(module, args, out: HeadOutput) -> HeadOutput:
            calls["n"] += 1
            if calls["n"] not in nan_calls:
                return out
            return HeadOutput(out.vertices * math.nan, out.landmarks3d * math.nan, out.joints)

        _POISON.append(model.head.register_forward_hook(poison))
    return model


def remove_poison() -> None:
    """Take the NaN hooks of :func:`tiny_model` off the head model."""
    while _POISON:
        _POISON.pop().remove()


class SyntheticFaces(torch.utils.data.Dataset):
    """``n_identities`` × ``per_identity`` crops: identity-coloured noise; landmarks on an ellipse,
    shifted per identity; a random brightness jitter (global torch RNG) when ``augment``."""

    def __init__(self, n_identities: int = 6, per_identity: int = 3, augment: bool = True) -> None:
        self.items = [(i, j) for i in range(n_identities) for j in range(per_identity)]
        self.identities = [i for i, _ in self.items]
        self.augment = augment
        angles = torch.linspace(0, 2 * math.pi, 69)[:68]
        self.base = torch.stack(
            [SIZE / 2 + 0.25 * SIZE * angles.cos(), SIZE / 2 - 0.3 * SIZE * angles.sin()], 1
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        identity, j = self.items[index]
        gen = torch.Generator().manual_seed(1000 * identity + j)
        image = 0.5 * torch.rand(3, SIZE, SIZE, generator=gen) + 0.1 * identity / max(1, len(self.items))
        shift = torch.tensor([identity - 2.0, 0.5 * j])
        if self.augment:
            image = image * (0.9 + 0.2 * torch.rand(()))
        return {"image": image.clamp(0, 1), "landmarks": self.base + shift, "mask": torch.ones(1, SIZE, SIZE)}
