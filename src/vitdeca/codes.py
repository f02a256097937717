"""The codes the encoders regress, as one typed container.

Layout of the coarse encoder's flat output vector (in this order):
``shape | expression | pose | camera (3: scale, tx, ty) | light (27 = 9 SH bands x RGB) | albedo``.
The detail code (128-d by default) comes from the separate detail encoder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

N_CAMERA = 3
N_LIGHT = 27
N_DETAIL = 128


@dataclass(frozen=True)
class CodeLayout:
    """Sizes of each code; derived from the head model plus the appearance settings."""

    n_shape: int
    n_expression: int
    n_pose: int
    n_albedo: int = 50
    n_detail: int = N_DETAIL

    @property
    def sizes(self) -> dict[str, int]:
        """Sizes of the coarse codes, in flat-vector order."""
        return {
            "shape": self.n_shape,
            "expression": self.n_expression,
            "pose": self.n_pose,
            "camera": N_CAMERA,
            "light": N_LIGHT,
            "albedo": self.n_albedo,
        }

    @property
    def n_coarse(self) -> int:
        """Length of the coarse encoder's flat output."""
        return sum(self.sizes.values())


@dataclass
class Codes:
    """Per-image codes. Shapes: shape (B,n_shape), expression (B,n_expression), pose (B,n_pose),
    camera (B,3) = (scale, tx, ty), light (B,9,3) SH coefficients per RGB channel, albedo (B,n_albedo),
    detail (B,n_detail) or None when the detail branch is off."""

    shape: torch.Tensor
    expression: torch.Tensor
    pose: torch.Tensor
    camera: torch.Tensor
    light: torch.Tensor
    albedo: torch.Tensor
    detail: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return self.shape.shape[0]

    def _map(self, fn) -> Codes:
        return Codes(**{k: (None if v is None else fn(v)) for k, v in self.as_dict().items()})

    def as_dict(self) -> dict[str, torch.Tensor | None]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def to(self, device: torch.device | str) -> Codes:
        return self._map(lambda t: t.to(device))

    def detach(self) -> Codes:
        return self._map(torch.Tensor.detach)

    def clone(self) -> Codes:
        return self._map(torch.Tensor.clone)

    def index(self, idx: torch.Tensor | slice | int | list[int]) -> Codes:
        """Select images of the batch (an int keeps the batch dimension)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return self._map(lambda t: t[idx])

    def with_rows(self, rows: list[int], other: Codes) -> Codes:
        """A copy whose images ``rows`` (in order) are ``other``'s (a batch of ``len(rows)``), e.g. the codes
        of the faces that were fitted again; a code that either side lacks (None) is None, as in
        :meth:`concat`."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.shape.device)

        def put(mine: torch.Tensor | None, theirs: torch.Tensor | None) -> torch.Tensor | None:
            if mine is None or theirs is None:
                return None
            return mine.index_copy(0, index, theirs.to(mine))

        return Codes(**{name: put(value, getattr(other, name)) for name, value in self.as_dict().items()})

    def replace(self, **changes: torch.Tensor | None) -> Codes:
        """A copy with some codes replaced (e.g. ``codes.replace(shape=other.shape)``)."""
        return dataclasses.replace(self, **changes)

    def cat(self) -> torch.Tensor:
        """The coarse codes as the encoder's flat vector (B, layout.n_coarse)."""
        parts = [self.shape, self.expression, self.pose, self.camera, self.light.flatten(1), self.albedo]
        return torch.cat(parts, dim=1)

    @classmethod
    def split(cls, flat: torch.Tensor, layout: CodeLayout, detail: torch.Tensor | None = None) -> Codes:
        """Inverse of :meth:`cat`: cut a flat vector (B, layout.n_coarse) into codes."""
        if flat.ndim != 2 or flat.shape[1] != layout.n_coarse:
            raise ValueError(f"expected a (B,{layout.n_coarse}) code vector, got {tuple(flat.shape)}")
        parts = dict(zip(layout.sizes, torch.split(flat, list(layout.sizes.values()), dim=1), strict=True))
        parts["light"] = parts["light"].reshape(-1, 9, 3)
        return cls(**parts, detail=detail)

    @classmethod
    def concat(cls, items: list[Codes]) -> Codes:
        """Concatenate several batches of codes along the batch dimension."""
        names = [f.name for f in dataclasses.fields(cls)]
        out = {}
        for name in names:
            values = [getattr(c, name) for c in items]
            out[name] = None if any(v is None for v in values) else torch.cat(values, dim=0)
        return cls(**out)

    @classmethod
    def zeros(cls, layout: CodeLayout, batch_size: int = 1, device: str | torch.device = "cpu") -> Codes:
        """Neutral codes: zero shape/expression/pose/light/albedo, unit scale camera, zero detail."""
        z = {name: torch.zeros(batch_size, n, device=device) for name, n in layout.sizes.items()}
        z["light"] = z["light"].reshape(batch_size, 9, 3)
        z["camera"][:, 0] = 1.0
        return cls(**z, detail=torch.zeros(batch_size, layout.n_detail, device=device))
