"""DropKey: random masking of attention *keys* before the softmax, as an attention layer for timm's ViTs.

DropKey (Li et al., CVPR 2023) regularises self-attention by dropping attention logits instead of attention
weights: during training each logit ``(sample, head, query, key)`` is independently set to ``-inf`` with
probability ``ratio`` **before** the softmax, so the remaining keys of a row are renormalised by the softmax
itself (no ``1/(1-ratio)`` rescaling, unlike dropout). In eval mode nothing is dropped and the layer is
exactly timm's :class:`timm.layers.Attention`.

The ViT is not forked: :class:`DropKeyAttention` subclasses timm's ``Attention`` and is injected through the
``attn_layer`` constructor argument of ``timm.models.VisionTransformer``; the drop mask reaches timm's own
forward as an additive ``attn_mask`` (``F.scaled_dot_product_attention`` on the fused path,
``softmax(qk^T + mask)`` on the manual path), so GPUs keep fused kernels.

Note on the paper's code listing: it adds ``mask * -1e-12`` to the logits. Adding ``-1e-12`` changes a logit
by far less than float32 resolution, i.e. it drops nothing; the intended value is a large negative
(``-1e12``). This module uses ``-inf`` and guarantees that no query row loses all of its keys (no NaN).
"""

from __future__ import annotations

import math

import torch
from timm.layers import Attention
from torch import nn

from vitdeca.errors import VitdecaError

SCHEDULES = ("constant", "linear")


def dropkey_schedule(
    ratio: float, depth: int, schedule: str = "linear", end_factor: float = 0.0
) -> list[float]:
    """Per-block DropKey ratios for a ViT with ``depth`` blocks.

    ``"constant"``: every block gets ``ratio``. ``"linear"``: block 0 gets ``ratio``, decreasing linearly to
    ``ratio * end_factor`` at block ``depth - 1`` (the paper's depth-decreasing schedule); a single block gets
    ``ratio``. Raises :class:`VitdecaError` for a ratio outside [0, 1), an unknown schedule or a bad factor.
    """
    if not 0.0 <= ratio < 1.0:
        raise VitdecaError(f"dropkey ratio must be in [0, 1), got {ratio}")
    if schedule not in SCHEDULES:
        raise VitdecaError(f"unknown dropkey schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    if not 0.0 <= end_factor or ratio * end_factor >= 1.0:
        raise VitdecaError(f"dropkey end_factor must be >= 0 with ratio*end_factor < 1, got {end_factor}")
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if schedule == "constant" or depth == 1:
        return [float(ratio)] * depth
    return [ratio * (1.0 - (1.0 - end_factor) * i / (depth - 1)) for i in range(depth)]


class DropKey(nn.Module):
    """Samples the additive DropKey logit mask; a named submodule so forward hooks can read it.

    ``forward(batch, heads, n_query, n_key, device, dtype) -> (B,H,Nq,Nk)`` tensor of ``dtype`` holding 0 for
    kept and ``-inf`` for dropped logits, independent Bernoulli(``ratio``) per element. A row whose keys were
    all drawn keeps one key (the query's own position when Nq == Nk, else key 0): no softmax row is all -inf.
    On CPU, ratios below ``SPARSE_BELOW`` sample only the dropped positions (geometric gaps, ~ratio·n draws
    instead of n; the same distribution), which keeps the training overhead small.
    """

    SPARSE_BELOW = 0.25

    def __init__(self, ratio: float = 0.0) -> None:
        super().__init__()
        self.ratio = float(ratio)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio:g}"

    def forward(
        self,
        batch: int,
        heads: int,
        n_query: int,
        n_key: int,
        device: torch.device | str,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        device = torch.device(device)
        shape = (batch, heads, n_query, n_key)
        if device.type == "cpu" and self.ratio < self.SPARSE_BELOW:
            return _sparse_key_mask(shape, self.ratio).to(dtype)
        return _dense_key_mask(shape, self.ratio, device).to(dtype)


def _dense_key_mask(shape: tuple[int, int, int, int], ratio: float, device: torch.device) -> torch.Tensor:
    """DropKey mask (B,H,Nq,Nk) of 0/-inf from one uniform draw per logit."""
    draws = torch.rand(shape, device=device)
    # 1. a row lost every key iff its largest draw is below the ratio; 2. un-drop one key there (in place)
    full = draws.amax(dim=-1) < ratio
    kept = draws.diagonal(dim1=-2, dim2=-1) if shape[2] == shape[3] else draws[..., 0]
    kept.masked_fill_(full, 1.0)
    # 3. dropped logits get -inf, kept ones 0 (no rescaling: the softmax renormalises); reuse the buffer
    dropped = draws < ratio
    return draws.zero_().masked_fill_(dropped, -math.inf)


def _sparse_key_mask(shape: tuple[int, int, int, int], ratio: float) -> torch.Tensor:
    """DropKey mask (B,H,Nq,Nk) of 0/-inf on CPU from the dropped positions only.

    In a Bernoulli(ratio) sequence the gaps between successes are i.i.d. Geometric(ratio) (support 1, 2, ...),
    so the cumulative sums of geometric draws, minus one, are the flat indices of the dropped logits.
    """
    n_query, n_key = shape[2], shape[3]
    total = math.prod(shape)
    mask = torch.zeros(total)
    if ratio <= 0.0 or total == 0:
        return mask.view(shape)
    # 1. draw gaps until the positions pass the end (one round suffices except with probability ~1e-9)
    expected = total * ratio
    n_draws = int(expected + 6 * math.sqrt(expected) + 16)
    last, chunks = -1.0, []
    while last < total - 1:
        gaps = torch.empty(n_draws, dtype=torch.float64).geometric_(ratio)
        positions = gaps.cumsum_(0).add_(last)
        chunks.append(positions)
        last = positions[-1].item()
    positions = torch.cat(chunks).to(torch.int64)
    positions = positions[positions < total]
    mask[positions] = -math.inf
    # 2. rows that lost every key keep one (the query's own position, or key 0)
    rows = torch.bincount(positions // n_key, minlength=total // n_key)
    full = (rows == n_key).nonzero().flatten()
    if full.numel():
        kept = full % n_query if n_query == n_key else torch.zeros_like(full)
        mask[full * n_key + kept] = 0.0
    return mask.view(shape)


def _logit_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the attention logits will have (the autocast dtype under autocast, else ``x.dtype``)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class DropKeyAttention(Attention):
    """timm's ``Attention`` plus DropKey; same constructor, same parameters (state dicts interchange).

    ``forward(x (B,N,C), attn_mask=None, is_causal=False) -> (B,N,C_out)``. In training with ``ratio > 0`` an
    additive mask (0 or ``-inf``, shape (B,H,N,N), from the ``dropkey`` submodule) is combined with any given
    mask and passed to timm's forward; otherwise this is timm's forward unchanged.
    """

    def __init__(self, *args, dropkey_ratio: float = 0.0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dropkey = DropKey(dropkey_ratio)

    @property
    def dropkey_ratio(self) -> float:
        return self.dropkey.ratio

    @dropkey_ratio.setter
    def dropkey_ratio(self, ratio: float) -> None:
        if not 0.0 <= ratio < 1.0:
            raise VitdecaError(f"dropkey ratio must be in [0, 1), got {ratio}")
        self.dropkey.ratio = float(ratio)

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        if not self.training or self.dropkey.ratio <= 0.0:
            return super().forward(x, attn_mask=attn_mask, is_causal=is_causal)
        batch, n_tokens, _ = x.shape
        dtype = _logit_dtype(x)
        bias = self.dropkey(batch, self.num_heads, n_tokens, n_tokens, x.device, dtype)
        base = _additive_mask(attn_mask, is_causal, n_tokens, dtype, x.device)
        if base is not None:
            # rows the given mask leaves open but DropKey would close entirely fall back to the given mask
            combined = base + bias
            closed = torch.isneginf(combined).all(-1, keepdim=True)
            closed &= ~torch.isneginf(base).all(-1, keepdim=True)
            bias = torch.where(closed, base.expand_as(combined), combined)
        return super().forward(x, attn_mask=bias, is_causal=False)


def _additive_mask(
    attn_mask: torch.Tensor | None, is_causal: bool, n: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor | None:
    """A caller's bool/float attention mask (and/or causal flag) as an additive float mask, or None."""
    if is_causal:
        return torch.full((n, n), -math.inf, dtype=dtype, device=device).triu_(1)
    if attn_mask is None:
        return None
    if attn_mask.dtype == torch.bool:
        return torch.zeros(attn_mask.shape, dtype=dtype, device=device).masked_fill_(~attn_mask, -math.inf)
    return attn_mask.to(dtype)


def dropkey_layers(model: nn.Module) -> list[DropKeyAttention]:
    """All :class:`DropKeyAttention` layers of ``model`` in forward (block) order."""
    return [m for m in model.modules() if isinstance(m, DropKeyAttention)]


def set_dropkey_ratios(model: nn.Module, ratios: list[float]) -> None:
    """Assign one ratio per DropKey layer of ``model`` (block order)."""
    layers = dropkey_layers(model)
    if len(layers) != len(ratios):
        raise ValueError(f"{len(ratios)} ratios for {len(layers)} DropKey layers")
    for layer, ratio in zip(layers, ratios, strict=True):
        layer.dropkey_ratio = ratio
