"""DropKey attention: schedule, masking statistics, equality with timm's attention, numerics."""

from __future__ import annotations

import math

import pytest
import torch
from timm.layers import Attention

from vitdeca.errors import VitdecaError
from vitdeca.nn import DropKey, DropKeyAttention, build_encoder, dropkey_layers, dropkey_schedule

DIM, HEADS, TOKENS = 48, 4, 37


def _pair(ratio: float = 0.0, **kwargs) -> tuple[Attention, DropKeyAttention]:
    """timm's Attention and a DropKeyAttention holding the same (random) weights."""
    torch.manual_seed(0)
    ref = Attention(DIM, num_heads=HEADS, qkv_bias=True, **kwargs)
    dk = DropKeyAttention(DIM, num_heads=HEADS, qkv_bias=True, dropkey_ratio=ratio, **kwargs)
    dk.load_state_dict(ref.state_dict())
    return ref, dk


def _capture(module: torch.nn.Module) -> list[torch.Tensor]:
    """Record every mask the module's DropKey submodule(s) produce."""
    masks: list[torch.Tensor] = []
    for layer in dropkey_layers(module):
        layer.dropkey.register_forward_hook(lambda _m, _args, out: masks.append(out.detach()))
    return masks


def test_schedule_linear_exact() -> None:
    assert dropkey_schedule(0.2, 5, "linear") == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0], abs=1e-15)
    linear = dropkey_schedule(0.3, 4, "linear", end_factor=0.5)
    assert linear == pytest.approx([0.3, 0.25, 0.2, 0.15], abs=1e-15)
    assert dropkey_schedule(0.1, 3, "constant") == [0.1, 0.1, 0.1]
    assert dropkey_schedule(0.1, 1, "linear") == [0.1]


@pytest.mark.parametrize(
    "args",
    [(1.0, 4, "linear", 0.0), (-0.1, 4, "linear", 0.0), (0.1, 4, "cosine", 0.0), (0.5, 4, "linear", 2.0)],
)
def test_schedule_rejects_bad_values(args: tuple) -> None:
    with pytest.raises(VitdecaError):
        dropkey_schedule(*args)


def test_encoder_exposes_linear_ratios() -> None:
    enc = build_encoder("vit_tiny_patch16_224", 4, dropkey=0.11, img_size=32)
    expected = [0.11 * (11 - i) / 11 for i in range(12)]
    assert enc.dropkey_ratios == pytest.approx(expected, abs=1e-15)
    assert [layer.dropkey_ratio for layer in dropkey_layers(enc)] == enc.dropkey_ratios
    enc.set_dropkey(0.05, "constant")
    assert enc.dropkey_ratios == [0.05] * 12


@pytest.mark.parametrize("kwargs", [{}, {"qk_norm": True, "norm_layer": torch.nn.LayerNorm}])
@pytest.mark.parametrize("fused", [True, False])
def test_eval_equals_timm_attention(kwargs: dict, fused: bool) -> None:
    ref, dk = _pair(0.5, **kwargs)
    ref.fused_attn = dk.fused_attn = fused
    x = torch.randn(3, TOKENS, DIM)
    ref.eval(), dk.eval()
    torch.testing.assert_close(dk(x), ref(x), rtol=0, atol=1e-6)
    # training with ratio 0 is timm's attention as well
    dk.train(), ref.train()
    dk.dropkey_ratio = 0.0
    torch.testing.assert_close(dk(x), ref(x), rtol=0, atol=1e-6)


def test_eval_vit_equals_timm_vit() -> None:
    import timm

    enc = build_encoder("vit_tiny_patch16_224", 4, dropkey=0.3, img_size=32).eval()
    ref = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32).eval()
    ref.load_state_dict(enc.backbone.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ours = enc.backbone.forward_features((x - enc.mean) / enc.std)
        theirs = ref.forward_features((x - 0.5) / 0.5)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_train_matches_manual_softmax_and_fused_path() -> None:
    _, dk = _pair(0.3)
    dk.train()
    masks = _capture(dk)
    x = torch.randn(2, TOKENS, DIM)
    outs = {}
    for fused in (True, False):
        dk.fused_attn = fused
        torch.manual_seed(7)
        outs[fused] = dk(x)
    torch.testing.assert_close(masks[0], masks[1], rtol=0, atol=0)
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-5, atol=1e-5)
    # independent reference: drop logits before the softmax, no rescaling
    qkv = dk.qkv(x).reshape(2, TOKENS, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    logits = (q @ k.transpose(-2, -1)) / math.sqrt(DIM // HEADS)
    logits = logits.masked_fill(torch.isneginf(masks[0]), float("-inf"))
    ref = (logits.softmax(-1) @ v).transpose(1, 2).reshape(2, TOKENS, DIM)
    torch.testing.assert_close(outs[True], dk.proj(ref), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.3])  # 0.05, 0.2: sparse sampler on CPU; 0.3: dense
def test_dropped_fraction_within_three_standard_errors(ratio: float) -> None:
    _, dk = _pair(ratio)
    dk.train()
    masks = _capture(dk)
    torch.manual_seed(3)
    dk(torch.randn(4, TOKENS, DIM))
    (mask,) = masks
    assert mask.shape == (4, HEADS, TOKENS, TOKENS)
    assert set(mask.unique().tolist()) <= {0.0, float("-inf")}
    n = mask.numel()
    frac = torch.isneginf(mask).sum().item() / n
    assert abs(frac - ratio) < 3 * math.sqrt(ratio * (1 - ratio) / n)


@pytest.mark.parametrize("ratio", [0.1, 0.4])
def test_row_counts_are_binomial(ratio: float) -> None:
    """Per-row drop counts have the Binomial(n_key, ratio) mean and variance (i.i.d. per logit)."""
    torch.manual_seed(11)
    mask = DropKey(ratio)(64, 8, 50, 50, "cpu")
    counts = torch.isneginf(mask).sum(-1).double().flatten()  # 25600 rows
    n_rows, mean, var = counts.numel(), 50 * ratio, 50 * ratio * (1 - ratio)
    assert abs(counts.mean().item() - mean) < 4 * math.sqrt(var / n_rows)
    assert abs(counts.var().item() / var - 1) < 4 * math.sqrt(2 / n_rows) + 0.01
    # neighbouring logits are uncorrelated
    dropped = torch.isneginf(mask).double().flatten()
    corr = torch.corrcoef(torch.stack([dropped[:-1], dropped[1:]]))[0, 1]
    assert abs(corr.item()) < 4 / math.sqrt(dropped.numel())


@pytest.mark.parametrize("ratio", [0.2, 0.9])
def test_sampler_restores_a_key_in_full_rows(ratio: float) -> None:
    single = DropKey(ratio)(4, 3, 5, 1, "cpu")  # one key per row: never dropped
    assert torch.equal(single, torch.zeros(4, 3, 5, 1))
    square = torch.isneginf(DropKey(ratio)(200, 4, 2, 2, "cpu"))
    assert (~square).sum(-1).min() >= 1
    # rows that drew both keys keep one, so P(exactly one dropped) = ratio^2 + 2 ratio (1 - ratio)
    p_one = ratio**2 + 2 * ratio * (1 - ratio)
    frac_one = (square.sum(-1) == 1).double().mean().item()
    assert abs(frac_one - p_one) < 4 * math.sqrt(p_one * (1 - p_one) / 1600)


def test_masks_independent_across_samples_and_heads() -> None:
    _, dk = _pair(0.5)
    dk.train()
    masks = _capture(dk)
    dk(torch.randn(2, TOKENS, DIM))
    dropped = torch.isneginf(masks[0])
    assert not torch.equal(dropped[0], dropped[1])
    assert not torch.equal(dropped[:, 0], dropped[:, 1])


def test_encoder_blocks_drop_their_own_ratio() -> None:
    enc = build_encoder("vit_tiny_patch16_224", 4, dropkey=0.4, dropkey_end_factor=0.25, img_size=64).train()
    masks = _capture(enc)
    torch.manual_seed(5)
    enc(torch.rand(4, 3, 64, 64))
    assert len(masks) == 12
    for mask, ratio in zip(masks, enc.dropkey_ratios, strict=True):
        n = mask.numel()
        frac = torch.isneginf(mask).sum().item() / n
        assert abs(frac - ratio) < 3 * math.sqrt(ratio * (1 - ratio) / n)


def test_high_ratio_no_nan_and_finite_gradients() -> None:
    _, dk = _pair(0.9)
    dk.train()
    x = torch.randn(3, TOKENS, DIM, requires_grad=True)
    out = dk(x)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for p in dk.parameters():
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("fused", [True, False])
def test_no_row_loses_all_keys(fused: bool) -> None:
    _, dk = _pair(0.99)  # with 5 keys most rows would lose every key
    dk.train()
    dk.fused_attn = fused
    masks = _capture(dk)
    out = dk(torch.randn(8, 5, DIM))
    kept = (~torch.isneginf(masks[0])).sum(-1)
    assert kept.min() >= 1 and (kept == 1).float().mean() > 0.9
    assert torch.isfinite(out).all()


def test_causal_and_given_masks_combine() -> None:
    ref, dk = _pair(0.99)
    dk.train()
    out = dk(torch.randn(2, 6, DIM), is_causal=True)
    assert torch.isfinite(out).all()
    keep = torch.ones(6, 6, dtype=torch.bool).tril()
    out = dk(torch.randn(2, 6, DIM), attn_mask=keep)
    assert torch.isfinite(out).all()


def test_train_calls_differ_eval_calls_identical() -> None:
    enc = build_encoder("vit_tiny_patch16_224", 6, dropkey=0.1, img_size=32)
    x = torch.rand(2, 3, 32, 32)
    enc.train()
    assert not torch.equal(enc.features(x), enc.features(x))
    enc.eval()
    torch.testing.assert_close(enc(x), enc(x), rtol=0, atol=0)
