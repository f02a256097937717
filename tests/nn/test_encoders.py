"""Encoders: every registered name builds, has the right output shape and back-propagates; weight loading."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from vitdeca.errors import VitdecaError
from vitdeca.nn import ENCODERS, build_encoder, list_encoders
from vitdeca.nn.encoders import IMAGENET_MEAN

# size at which forward+backward is tested (ViT-B/16 is only checked for shape at 224: slow on CPU)
BACKWARD_SIZE = {"resnet50": 64, "vit_small_patch16_224": 64}


def test_registry() -> None:
    assert list_encoders() == list(ENCODERS)
    assert {"resnet50", "vit_small_patch16_224", "vit_base_patch16_224"} <= set(ENCODERS)


@pytest.mark.parametrize("name", ENCODERS)
def test_shape_at_224(name: str) -> None:
    enc = build_encoder(name, 7).eval()
    with torch.no_grad():
        out = enc(torch.rand(1, 3, 224, 224))
    assert out.shape == (1, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in ENCODERS if n in BACKWARD_SIZE])
def test_forward_backward(name: str) -> None:
    size = BACKWARD_SIZE[name]
    kwargs = {"img_size": size, "dropkey": 0.1} if name.startswith("vit") else {}
    enc = build_encoder(name, 11, **kwargs).train()
    out = enc(torch.rand(2, 3, size, size))
    assert out.shape == (2, 11)
    out.square().sum().backward()
    grads = {n: p.grad for n, p in enc.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    first_backbone = next(g for n, g in grads.items() if n.startswith("backbone."))
    assert first_backbone.abs().sum() > 0  # the small head init still lets gradients reach the backbone


def test_initial_codes_near_zero() -> None:
    enc = build_encoder("vit_small_patch16_224", 236, img_size=32).eval()
    with torch.no_grad():
        out = enc(torch.rand(4, 3, 32, 32))
    assert out.abs().max() < 0.1
    assert torch.count_nonzero(enc.head[-1].bias) == 0


def test_normalisation_inside() -> None:
    vit = build_encoder("vit_small_patch16_224", 3, img_size=32)
    res = build_encoder("resnet50", 3)
    assert vit.mean.flatten().tolist() == [0.5] * 3 and vit.std.flatten().tolist() == [0.5] * 3
    assert res.mean.flatten().tolist() == pytest.approx(IMAGENET_MEAN)
    assert "mean" not in res.state_dict()  # constants, not weights


def test_token_and_mean_pooling() -> None:
    x = torch.rand(2, 3, 32, 32)
    token = build_encoder("vit_tiny_patch16_224", 5, img_size=32, pool="token").eval()
    mean = build_encoder("vit_tiny_patch16_224", 5, img_size=32, pool="mean").eval()
    mean.load_state_dict(token.state_dict())
    with torch.no_grad():
        tokens = token.backbone.forward_features((x - 0.5) / 0.5)
        torch.testing.assert_close(token.features(x), tokens[:, 0])
        torch.testing.assert_close(mean.features(x), tokens[:, 1:].mean(1))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "resnet50", "dropkey": 0.1},
        {"name": "no_such_net"},
        {"name": "convnext_tiny"},
        {"name": "vit_tiny_patch16_224", "pool": "max"},
        {"name": "vit_tiny_patch16_224", "dropkey": 1.5},
        {"name": "vit_tiny_patch16_224", "dropkey_schedule": "cosine", "dropkey": 0.1},
        {"name": "vit_tiny_patch16_224", "pretrained": "/nonexistent/weights.pth"},
    ],
)
def test_bad_options(kwargs: dict) -> None:
    with pytest.raises(VitdecaError):
        build_encoder(n_outputs=3, img_size=32, **kwargs)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_vit_weights(tmp_path: Path, suffix: str) -> None:
    import timm

    source = timm.create_model("vit_tiny_patch16_224", img_size=32)  # with its 1000-class head
    path = tmp_path / f"vit{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, path)
    else:
        torch.save({"state_dict": state}, path)
    enc = build_encoder("vit_tiny_patch16_224", 4, pretrained=path, img_size=32)
    for key, value in enc.backbone.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0)


def test_local_vit_weights_resample_position_embedding(tmp_path: Path) -> None:
    import timm

    source = timm.create_model("vit_tiny_patch16_224", img_size=32)
    torch.save(source.state_dict(), tmp_path / "vit.bin")
    enc = build_encoder("vit_tiny_patch16_224", 4, pretrained=tmp_path / "vit.bin", img_size=64)
    assert enc.backbone.pos_embed.shape == (1, 17, 192)
    torch.testing.assert_close(enc.backbone.blocks[3].attn.qkv.weight, source.blocks[3].attn.qkv.weight)


def test_local_resnet_weights(tmp_path: Path) -> None:
    import torchvision

    source = torchvision.models.resnet50(weights=None)
    torch.save(source.state_dict(), tmp_path / "r50.pth")
    enc = build_encoder("resnet50", 4, pretrained=tmp_path / "r50.pth")
    torch.testing.assert_close(enc.backbone.layer4[2].conv3.weight, source.layer4[2].conv3.weight)
    with pytest.raises(VitdecaError, match="do not fit"):
        build_encoder("vit_tiny_patch16_224", 4, pretrained=tmp_path / "r50.pth", img_size=32)


def test_unreadable_weights(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(VitdecaError, match="garbage.pth"):
        build_encoder("vit_tiny_patch16_224", 4, pretrained=bad, img_size=32)
    torch.save({"weights": [1, 2, 3]}, tmp_path / "list.pth")
    with pytest.raises(VitdecaError, match="list.pth"):
        build_encoder("resnet50", 4, pretrained=tmp_path / "list.pth")


def _offline(*_args, **_kwargs):
    raise urllib.error.URLError("[Errno -2] Name or service not known")


def test_download_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.errors
    import timm.models._hub

    def hub_offline(*_args, **_kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach huggingface.co")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty torch.hub cache
    monkeypatch.setattr("torch.hub.urlopen", _offline)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", hub_offline)
    with pytest.raises(VitdecaError, match="offline"):
        build_encoder("resnet50", 4, pretrained=True)
    with pytest.raises(VitdecaError, match="offline"):
        build_encoder("vit_small_patch16_224", 4, pretrained=True)
