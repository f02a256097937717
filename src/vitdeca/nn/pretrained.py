"""Where an encoder's pretrained weights come from, and foreign key names converted to timm's.

``model.pretrained`` (``build_encoder(pretrained=...)``) accepts:

- ``None`` / ``False``: random initialisation; ``True``: timm's (ViT) / torchvision's (ResNet-50) default
  download for the encoder's architecture;
- ``"timm:<hub name>"``, e.g. ``timm:vit_small_patch14_dinov2.lvd142m``: that timm checkpoint (downloaded
  once into the Hugging Face cache; offline, one line naming the setting and the offline alternatives). The
  hub name's architecture must be the encoder's;
- a registered converted name (:data:`CONVERTED`, e.g. ``dinov2-small``): a file under
  ``$VITDECA_HOME/pretrained`` written by ``vitdeca assets install <name>``;
- a local state-dict file (``.pth``/``.pt``/``.bin`` torch, or ``.safetensors``) with timm, torchvision or
  Hugging Face (``Dinov2Model``, ``ViTModel``) key names; :func:`to_timm_names` converts the foreign ones.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from vitdeca.converted import CONVERTED, converted_files
from vitdeca.errors import VitdecaError

SETTING = "model.pretrained"
"""The config setting these values come from (named in error messages)."""
HUB_PREFIX = "timm:"


@dataclass(frozen=True)
class PretrainedSource:
    """A resolved ``model.pretrained`` value: ``kind`` is "none", "default", "hub" or "file"."""

    kind: str
    hub: str | None = None  # kind "hub": the timm hub name (without "timm:")
    path: Path | None = None  # kind "file"
    label: str = ""  # how the user wrote it (for messages)


def alternatives() -> str:
    """One phrase listing the offline alternatives (for error messages)."""
    names = ", ".join(f"{c.name!r} (after `{c.install_command}`)" for c in CONVERTED.values())
    return f"a local .pth/.pt/.safetensors state-dict file, or {names}"


def resolve_pretrained(value: object, encoder: str) -> PretrainedSource:
    """Interpret a ``model.pretrained`` value for the encoder architecture ``encoder``.

    Raises VitdecaError for a missing file, a converted name that is not installed or is for another
    architecture, a hub name of another architecture, and values of the wrong type.
    """
    if value is None or value is False:
        return PretrainedSource("none")
    if value is True:
        return PretrainedSource("default", label="True")
    if not isinstance(value, (str, os.PathLike)):
        raise VitdecaError(f"{SETTING}: expected a file, 'timm:<name>' or a converted name, got {value!r}")
    text = os.fspath(value).strip()
    if text.startswith(HUB_PREFIX):
        hub = text[len(HUB_PREFIX) :]
        if hub.split(".")[0] != encoder:
            raise VitdecaError(
                f"{SETTING}={text}: weights for {hub.split('.')[0]!r}, but the encoder is {encoder!r}"
            )
        return PretrainedSource("hub", hub=hub, label=text)
    if text in CONVERTED:
        entry = CONVERTED[text]
        if entry.arch != encoder:
            raise VitdecaError(f"{SETTING}={text}: weights for encoder {entry.arch!r}, not {encoder!r}")
        path, _ = converted_files(text)
        if not path.is_file():
            raise VitdecaError(f"{SETTING}={text}: {path} is missing; run: {entry.install_command}")
        return PretrainedSource("file", path=path, label=text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise VitdecaError(
            f"{path}: no such pretrained weights file ({SETTING} takes a file, 'timm:<hub name>' or one of "
            f"{', '.join(CONVERTED)})"
        )
    return PretrainedSource("file", path=path, label=str(path))


def hub_state_dict(hub: str) -> dict[str, torch.Tensor]:
    """The state dict of timm checkpoint ``hub`` (downloaded into the Hugging Face cache once).

    Offline or unknown: VitdecaError naming the setting and the offline alternatives.
    """
    import timm

    if not timm.is_model(hub):
        raise VitdecaError(f"{SETTING}=timm:{hub}: timm has no model {hub.split('.')[0]!r}")
    try:
        return timm.create_model(hub, pretrained=True, num_classes=0).state_dict()
    except Exception as exc:  # network / cache failures of the hub, unknown tags
        raise VitdecaError(
            f"{SETTING}=timm:{hub}: cannot get the weights ({type(exc).__name__}: {exc}); offline? "
            f"use {alternatives()}"
        ) from exc


# ---- foreign key names -> timm ----------------------------------------------------------------------

HF_PREFIXES = ("backbone.", "dinov2.", "vit.", "model.")
"""Prefixes in front of ``embeddings.``/``encoder.`` in Hugging Face checkpoints and wrapped models."""
_HF_BLOCK = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_BLOCK_PARTS = {
    "norm1": "norm1",  # Dinov2
    "norm2": "norm2",
    "layernorm_before": "norm1",  # ViT
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1",  # Dinov2
    "mlp.fc2": "mlp.fc2",
    "intermediate.dense": "mlp.fc1",  # ViT
    "output.dense": "mlp.fc2",
}
_HF_QKV = ("query", "key", "value")
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def _strip_hf_prefix(key: str) -> str:
    for prefix in HF_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def is_hf_vit(state: dict[str, torch.Tensor]) -> bool:
    """True for Hugging Face ``Dinov2Model`` / ``ViTModel`` key names (``encoder.layer.N.``...)."""
    return any(_strip_hf_prefix(k).startswith("encoder.layer.") for k in state)


def hf_vit_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face Dinov2 / ViT state dict to timm ``VisionTransformer`` names.

    Separate ``query``/``key``/``value`` Linear layers (weights (D, D), biases (D,)) are fused into timm's
    ``attn.qkv`` ((3D, D), (3D,), order q, k, v). ``mask_token`` (masked pre-training only), poolers,
    classifiers and decoders are dropped. Unknown block keys (e.g. Dinov2's SwiGLU MLP): ValueError.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        name = _strip_hf_prefix(key)
        if name in _HF_TOP:
            out[_HF_TOP[name]] = value
            continue
        match = _HF_BLOCK.match(name)
        if match is None:
            continue  # mask_token, pooler, classifier, decoder
        block, rest = int(match.group(1)), match.group(2)
        part, _, leaf = rest.rpartition(".")
        if part.startswith("attention.attention.") and part.rsplit(".", 1)[1] in _HF_QKV:
            qkv.setdefault((block, leaf), {})[part.rsplit(".", 1)[1]] = value
        elif part in _HF_BLOCK_PARTS:
            out[f"blocks.{block}.{_HF_BLOCK_PARTS[part]}.{leaf}"] = value
        elif rest in _HF_BLOCK_PARTS:  # layer scales: the parameter is the module's only tensor
            out[f"blocks.{block}.{_HF_BLOCK_PARTS[rest]}"] = value
        else:
            raise ValueError(f"unsupported Hugging Face ViT key {key!r}")
    for (block, leaf), parts in qkv.items():
        if set(parts) != set(_HF_QKV):
            raise ValueError(f"block {block}: incomplete q/k/v {leaf} ({', '.join(sorted(parts))})")
        out[f"blocks.{block}.attn.qkv.{leaf}"] = torch.cat([parts[p] for p in _HF_QKV])
    return out


_TV_BLOCK = re.compile(r"^encoder\.layers\.encoder_layer_(\d+)\.(.+)$")
_TV_BLOCK_PARTS = {
    "ln_1": "norm1",
    "ln_2": "norm2",
    "self_attention.in_proj_weight": "attn.qkv.weight",
    "self_attention.in_proj_bias": "attn.qkv.bias",
    "self_attention.out_proj": "attn.proj",
    "mlp.0": "mlp.fc1",
    "mlp.3": "mlp.fc2",
    "mlp.linear_1": "mlp.fc1",  # torchvision < 0.13
    "mlp.linear_2": "mlp.fc2",
}
_TV_TOP = {
    "class_token": "cls_token",
    "encoder.pos_embedding": "pos_embed",
    "conv_proj.weight": "patch_embed.proj.weight",
    "conv_proj.bias": "patch_embed.proj.bias",
    "encoder.ln.weight": "norm.weight",
    "encoder.ln.bias": "norm.bias",
}


def is_torchvision_vit(state: dict[str, torch.Tensor]) -> bool:
    """True for torchvision ``VisionTransformer`` key names (``encoder.layers.encoder_layer_N.``...)."""
    return any(_TV_BLOCK.match(k) for k in state)


def torchvision_vit_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``VisionTransformer`` state dict (``vit_b_16``, ...) to timm names.

    torchvision's fused ``in_proj`` is already timm's q, k, v order; the classifier (``heads.*``) is dropped.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _TV_TOP:
            out[_TV_TOP[key]] = value
            continue
        match = _TV_BLOCK.match(key)
        if match is None:
            continue  # heads.*
        block, rest = int(match.group(1)), match.group(2)
        if rest in _TV_BLOCK_PARTS:
            out[f"blocks.{block}.{_TV_BLOCK_PARTS[rest]}"] = value
            continue
        part, _, leaf = rest.rpartition(".")
        if part not in _TV_BLOCK_PARTS:
            raise ValueError(f"unsupported torchvision ViT key {key!r}")
        out[f"blocks.{block}.{_TV_BLOCK_PARTS[part]}.{leaf}"] = value
    return out


def to_timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ViT state dict with timm key names: Hugging Face and torchvision layouts converted, timm's kept."""
    if is_hf_vit(state):
        return hf_vit_to_timm(state)
    if is_torchvision_vit(state):
        return torchvision_vit_to_timm(state)
    return state
