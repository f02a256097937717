"""A tiny stand-in for vitdeca's reconstructor and data, for testing the training infrastructure.

``StandInModel`` honours the ``DecaModel`` contract (``encode(images) -> Codes``, ``decode(codes, detail)
-> Reconstruction``-like object) with a few small layers on 32×32 synthetic crops; ``SyntheticFaces`` is a
map-style dataset with identity labels and a seeded random augmentation. The loop's own tests run on them
in milliseconds per step; the end-to-end tests (test_real_model.py) use the real model.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vitdeca.codes import CodeLayout, Codes

SIZE = 32
UV = 8


@dataclass
class StandInReconstruction:
    vertices: torch.Tensor
    landmarks3d: torch.Tensor
    landmarks2d: torch.Tensor
    image: torch.Tensor
    alpha: torch.Tensor
    albedo_uv: torch.Tensor
    shading: torch.Tensor
    normal_image: torch.Tensor
    shape_image: torch.Tensor
    codes: Codes
    depth: torch.Tensor
    displacement_uv: torch.Tensor | None = None
    detail_image: torch.Tensor | None = None
    detail_normal_image: torch.Tensor | None = None
    uv_detail_normals: torch.Tensor | None = None


def _tiny_cnn(n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(8 * 8 * 8, n_out),
    )


class StandInModel(nn.Module):
    """Linear 'head model' on 68 landmarks, weak-perspective projection, a flat-shaded disc render."""

    def __init__(self, dropout: float = 0.0, delay: float = 0.0, nan_steps: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.layout = CodeLayout(n_shape=6, n_expression=4, n_pose=3, n_albedo=3, n_detail=4)
        self.coarse_encoder = _tiny_cnn(self.layout.n_coarse, dropout)
        self.detail_encoder = _tiny_cnn(self.layout.n_detail, dropout)
        self.detail_decoder = nn.Linear(self.layout.n_detail + self.layout.n_expression, UV * UV)
        gen = torch.Generator().manual_seed(7)
        angles = torch.linspace(0, 2 * math.pi, 69)[:68]
        template = torch.stack([0.5 * angles.cos(), 0.6 * angles.sin(), torch.zeros(68)], dim=1)
        self.register_buffer("template", template)
        self.register_buffer("shape_basis", 0.05 * torch.randn(6, 68, 3, generator=gen))
        self.register_buffer("expression_basis", 0.05 * torch.randn(4, 68, 3, generator=gen))
        yy, xx = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
        disc = (((xx - SIZE / 2) ** 2 + (yy - SIZE / 2) ** 2) < (0.4 * SIZE) ** 2).float()
        self.register_buffer("disc", disc[None, None])
        self.delay, self.nan_steps, self.calls = delay, set(nan_steps), 0

    def encode(self, images: torch.Tensor, detail: bool = True) -> Codes:
        flat = self.coarse_encoder(images)
        return Codes.split(flat, self.layout, detail=self.detail_encoder(images) if detail else None)

    def decode(self, codes: Codes, detail: bool = False) -> StandInReconstruction:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        b = codes.batch_size
        lm3d = (
            self.template
            + torch.einsum("bn,nkc->bkc", codes.shape, self.shape_basis)
            + torch.einsum("bn,nkc->bkc", codes.expression, self.expression_basis)
        )
        scale = 1.0 + codes.camera[:, :1, None]
        ndc = scale * (lm3d[..., :2] + codes.camera[:, None, 1:])
        pixels = torch.stack([(ndc[..., 0] + 1) * SIZE / 2, (1 - ndc[..., 1]) * SIZE / 2], dim=-1)
        if self.calls in self.nan_steps:
            pixels = pixels * float("nan")
        colour = torch.sigmoid(codes.albedo)[:, :, None, None] * (1 + codes.light[:, 0, :, None, None])
        alpha = self.disc.expand(b, 1, SIZE, SIZE)
        image = colour * alpha
        out = StandInReconstruction(
            vertices=lm3d, landmarks3d=lm3d, landmarks2d=pixels, image=image, alpha=alpha,
            albedo_uv=colour.expand(b, 3, UV, UV), shading=image, normal_image=image,
            shape_image=alpha.expand(b, 3, SIZE, SIZE) * 0.7, codes=codes,
            depth=alpha * 1e3,  # a flat backdrop far behind the landmarks: every landmark is visible
        )  # fmt: skip
        if detail:
            z = torch.tanh(self.detail_decoder(torch.cat([codes.detail, codes.expression], dim=1)))
            out.displacement_uv = 0.01 * z.view(b, 1, UV, UV)
            up = F.interpolate(out.displacement_uv, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
            out.detail_image = image * (1 + 10 * up)
        return out


class SyntheticFaces(torch.utils.data.Dataset):
    """``n_identities`` × ``per_identity`` crops: identity-coloured noise; landmarks of the template,
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


BASE_OVERRIDES = [
    "data.identities_per_batch=4",
    "data.images_per_identity=2",
    "data.image_size=32",
    "model.image_size=32",
    "losses.identity=0",
    "losses.mrf=0",
    "run.device=cpu",
    "run.progress=false",
    "run.image_every=2",
    "run.log_every=1",
]
