"""Batch-independent evaluation: a function applied to each row of a batch alone.

A batched matrix product rounds differently from a single row's (~1e-7), and per-image fitting amplifies
that (L1 losses, Adam's normalised steps), so :func:`vitdeca.fit.fit_codes` promises each face the bits it
gets in a batch of one. The pieces of the model a fit differentiates through keep that promise with
:func:`each_row` (the head model, the albedo decoder, the blend shapes of the landmark rows), and so
do the eyeballs that :mod:`vitdeca.pipeline.eyes` measures a batch's gaze with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def each_row(fn: Callable[..., T], *batched: torch.Tensor) -> T:
    """``fn(*batched)`` computed row by row: ``fn`` gets the b-th row of every tensor in ``batched`` (each
    (B,...), sliced to (1,...)) and the B results are concatenated along dim 0. Each row's result, and
    its gradient, are then the bits it gets in a batch of one, whatever B, at the price of B calls.

    Every row is computed in memory of its own, forward and backward: ``fn`` gets a copy of the row,
    and the gradient of its result arrives as a copy too (:class:`_CopiedGradient`). A batch's row b
    starts b rows into its storage, and BLAS kernels round differently with the alignment of their
    operands (seen with MKL on an AVX2 AMD EPYC: 2e-10 in a gradient, then 1e-7 in a fit's codes).

    ``fn`` returns a tensor (1,...) or a dataclass whose fields are tensors (1,...) or None (e.g.
    :class:`vitdeca.head.HeadOutput`)."""
    rows = [
        _copied_gradient(fn(*(tensor[b : b + 1].clone() for tensor in batched)))
        for b in range(batched[0].shape[0])
    ]
    return rows[0] if len(rows) == 1 else _concat(rows)


class _CopiedGradient(torch.autograd.Function):
    """The identity, whose backward hands on a copy of the gradient, in a new (aligned) allocation."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ANN001 - autograd context
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        return grad.clone(memory_format=torch.contiguous_format)


def _copied_gradient(value: Any) -> Any:
    """``value`` (a tensor, or a dataclass of tensors or None) with :class:`_CopiedGradient` on each tensor
    that needs a gradient."""
    if isinstance(value, torch.Tensor):
        return _CopiedGradient.apply(value) if value.requires_grad else value
    fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    return dataclasses.replace(
        value, **{k: None if v is None else _copied_gradient(v) for k, v in fields.items()}
    )


def _concat(rows: list[Any]) -> Any:
    if isinstance(rows[0], torch.Tensor):
        return torch.cat(rows)
    fields = {
        f.name: None if getattr(rows[0], f.name) is None else torch.cat([getattr(r, f.name) for r in rows])
        for f in dataclasses.fields(rows[0])
    }
    return dataclasses.replace(rows[0], **fields)
