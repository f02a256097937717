"""Detail decoder (DECA generator) and albedo decoder D_A, including FLAME albedo file loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitdeca.errors import VitdecaError
from vitdeca.nn import AlbedoDecoder, DetailDecoder
from vitdeca.nn.decoders import SKIN_TONE


@pytest.mark.parametrize("uv_size", [256, 64])
def test_detail_decoder_shape_and_range(uv_size: int) -> None:
    dec = DetailDecoder(n_detail=128, n_expression=10, n_pose=3, uv_size=uv_size, out_scale=0.01)
    out = dec(torch.randn(2, 128), torch.randn(2, 10), torch.randn(2, 3))
    assert out.shape == (2, 1, uv_size, uv_size)
    assert out.abs().max() <= 0.01 and out.abs().max() > 0
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in dec.parameters())


def test_detail_decoder_matches_deca_layout() -> None:
    dec = DetailDecoder(n_detail=128, n_expression=50, n_pose=3)  # DECA's FLAME setting: latent 181
    state = dec.state_dict()
    assert state["l1.0.weight"].shape == (128 * 8 * 8, 181)
    convs = [m for m in dec.conv_blocks if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (128, 128), (128, 64), (64, 64), (64, 32), (32, 16), (16, 1)
    ]  # fmt: skip
    assert {int(k.split(".")[1]) for k in state if k.startswith("conv_blocks")} == {
        0, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 21
    }  # fmt: skip
    assert dec.conv_blocks[3].eps == 0.8 and dec.conv_blocks[0].eps == 1e-5


def test_detail_decoder_runs_channels_last_with_the_nchw_result(tmp_path: Path) -> None:
    """The convolutions run channels-last (for speed); the displacement and its gradients are those of the
    same weights in the default layout, and the weights survive a save/load into a fresh decoder."""
    torch.manual_seed(0)
    dec = DetailDecoder(n_detail=8, n_expression=4, n_pose=3, uv_size=64, out_scale=1.0)
    convs = [m for m in dec.conv_blocks if isinstance(m, torch.nn.Conv2d)]
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    reference = DetailDecoder(n_detail=8, n_expression=4, n_pose=3, uv_size=64, out_scale=1.0)
    reference.conv_blocks.to(memory_format=torch.contiguous_format)
    reference.load_state_dict(dec.state_dict())
    assert not convs[-2].weight.is_contiguous() and reference.conv_blocks[2].weight.is_contiguous()
    codes = [torch.randn(3, n, requires_grad=True) for n in (8, 4, 3)]
    out, expected = dec(*codes), reference(*codes)
    assert out.shape == (3, 1, 64, 64) and out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)
    grads = torch.autograd.grad(out.square().sum(), codes)
    expected_grads = torch.autograd.grad(expected.square().sum(), codes)
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-3)
    torch.save(dec.state_dict(), tmp_path / "d.pt")
    fresh = DetailDecoder(n_detail=8, n_expression=4, n_pose=3, uv_size=64, out_scale=1.0)
    fresh.load_state_dict(torch.load(tmp_path / "d.pt", weights_only=True))
    dec.eval(), fresh.eval()
    torch.testing.assert_close(fresh(*codes), dec(*codes), atol=0, rtol=0)


def test_detail_decoder_without_pose_and_bad_inputs() -> None:
    dec = DetailDecoder(n_detail=16, n_expression=4, n_pose=0, uv_size=32)
    assert dec(torch.randn(2, 16), torch.randn(2, 4)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError):
        dec(torch.randn(1, 16), torch.randn(1, 5))
    with pytest.raises(ValueError):
        DetailDecoder(n_detail=16, n_expression=4, n_pose=3, uv_size=32)(
            torch.randn(2, 16), torch.randn(2, 4)
        )
    with pytest.raises(VitdecaError):
        DetailDecoder(uv_size=100)


def test_albedo_default_is_uniform_and_learnable() -> None:
    dec = AlbedoDecoder(n_albedo=5, uv_size=16)
    out = dec(torch.randn(3, 5))
    assert out.shape == (3, 3, 16, 16)
    expected = torch.tensor(SKIN_TONE).view(1, 3, 1, 1).expand(3, 3, 16, 16)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert {n for n, _ in dec.named_parameters()} == {"mean", "basis"}
    out.sum().backward()
    assert dec.basis.grad.abs().sum() > 0  # the zero basis still learns


def test_albedo_linear_model_and_clamp() -> None:
    mean = torch.full((3, 4, 4), 0.5)
    basis = torch.zeros(2, 3, 4, 4)
    basis[0, 0] = 0.1
    basis[1, 2, 0, 0] = 1.0
    dec = AlbedoDecoder(n_albedo=2, uv_size=4, mean=mean, basis=basis, learnable=False)
    out = dec(torch.tensor([[2.0, 1.0]]))
    assert out[0, 0, 1, 1] == pytest.approx(0.7) and out[0, 1, 1, 1] == pytest.approx(0.5)
    assert out[0, 2, 0, 0] == 1.0  # 1.5 clamped
    assert dict(dec.named_parameters()) == {} and set(dec.state_dict()) == {"mean", "basis"}


def _texture_space(side: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 0.8, (1, side * side * 3)), rng.normal(0, 0.01, (side * side * 3, k))


def _reference(mu: np.ndarray, pc: np.ndarray, code: np.ndarray, side: int) -> torch.Tensor:
    """DECA's recipe: mean + basis @ code, as (S,S,BGR) -> (RGB,S,S)."""
    flat = mu.reshape(-1) + pc[:, : code.shape[0]] @ code
    return torch.from_numpy(flat.reshape(side, side, 3)[:, :, ::-1].transpose(2, 0, 1).copy()).float()


def test_flame_albedo_from_bfm_format(tmp_path: Path) -> None:
    mu, pc = _texture_space(8, 12)
    path = tmp_path / "FLAME_albedo_from_BFM.npz"
    np.savez(path, MU=mu, PC=pc, specMU=mu, specPC=pc)
    dec = AlbedoDecoder.from_flame_file(path, n_albedo=6, uv_size=8)
    code = np.linspace(-2, 2, 6)
    out = dec(torch.from_numpy(code).float()[None])
    torch.testing.assert_close(out[0], _reference(mu, pc, code, 8).clamp(0, 1), rtol=1e-5, atol=1e-6)
    assert dict(dec.named_parameters()) == {}


def test_flame_texture_format_resampled(tmp_path: Path) -> None:
    mu, pc = _texture_space(16, 5, seed=1)
    path = tmp_path / "FLAME_texture.npz"
    np.savez(path, mean=mu * 255, tex_dir=(pc * 255).reshape(16, 16, 3, 5))
    dec = AlbedoDecoder.from_flame_file(path, n_albedo=5, uv_size=8, learnable=True)
    code = np.array([1.0, -1.0, 0.5, 0.0, 2.0])
    out = dec(torch.from_numpy(code).float()[None])
    expected = F.avg_pool2d(_reference(mu, pc, code, 16)[None], 2)[0]  # halving = 2x2 average
    torch.testing.assert_close(out[0], expected.clamp(0, 1), rtol=1e-5, atol=1e-5)
    assert {n for n, _ in dec.named_parameters()} == {"mean", "basis"}


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"foo": np.zeros(3)}, "no MU/PC"),
        ({"MU": np.zeros(7 * 3), "PC": np.zeros((21, 10))}, "not a square"),
        ({"MU": np.zeros(4 * 3), "PC": np.zeros((13, 10))}, "does not fit"),
        ({"MU": np.zeros(4 * 3), "PC": np.zeros((12, 3))}, "fewer than"),
    ],
)
def test_flame_albedo_bad_files(tmp_path: Path, arrays: dict, message: str) -> None:
    path = tmp_path / "albedo.npz"
    np.savez(path, **arrays)
    with pytest.raises(VitdecaError, match=message):
        AlbedoDecoder.from_flame_file(path, n_albedo=5, uv_size=2)


def test_flame_albedo_unreadable(tmp_path: Path) -> None:
    with pytest.raises(VitdecaError, match="no such"):
        AlbedoDecoder.from_flame_file(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(VitdecaError, match="junk.npz"):
        AlbedoDecoder.from_flame_file(tmp_path / "junk.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(VitdecaError, match="plain.npy"):
        AlbedoDecoder.from_flame_file(tmp_path / "plain.npy")
