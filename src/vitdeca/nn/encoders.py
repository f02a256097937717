"""Image encoders: a CNN or ViT backbone plus DECA's MLP head, mapping face crops to flat code vectors.

``build_encoder(name, n_outputs, ...)`` returns an :class:`Encoder` taking images (B,3,H,W) float RGB in [0,1]
(H = W = 224 by default) and returning (B, n_outputs). The ImageNet-style normalisation that the backbone's
pretrained weights expect happens inside the encoder (torchvision ImageNet mean/std for ``resnet50``; the timm
``pretrained_cfg`` mean/std for ViTs: 0.5/0.5 for the augreg ``vit_*_patch16_224`` weights, ImageNet's for
DINOv2 ``vit_*_patch14_dinov2``; a ``timm:<name>.<tag>`` hub name uses that tag's).

Supported names (:data:`ENCODERS` is the registry the tests iterate over): ``"resnet50"`` (torchvision
ResNet-50, 2048-d pooled features) and ``"vit_small_patch16_224"``, ``"vit_base_patch16_224"`` or any other
timm ``VisionTransformer`` name (class token or mean of the patch tokens after the final norm). The head is
DECA's ``Linear(feature_dim, 1024) -> ReLU -> Linear(1024, n_outputs)``; its last layer starts with zero bias
and N(0, 1e-3^2) weights, so initial codes are near zero (|code| ~ 1e-2) while gradients still reach the
backbone. The detail encoder is the same factory with ``n_outputs = 128``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from vitdeca.errors import VitdecaError
from vitdeca.nn.dropkey import DropKeyAttention, dropkey_layers, dropkey_schedule, set_dropkey_ratios
from vitdeca.nn.pretrained import (
    PretrainedSource,
    alternatives,
    hub_state_dict,
    resolve_pretrained,
    to_timm_names,
)

ENCODERS: tuple[str, ...] = ("resnet50", "vit_small_patch16_224", "vit_base_patch16_224")
"""Registered encoder names (any other timm ViT name is accepted too)."""

POOLS = ("token", "mean")
HEAD_HIDDEN = 1024
HEAD_INIT_STD = 1e-3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POS_EMBED_ANTIALIAS = False
"""Resample position embeddings of loaded weights without antialiasing: DINOv2 (original and Hugging Face)
interpolates its own embedding this way at other resolutions, so a converted model reproduces its source."""


def list_encoders() -> list[str]:
    """The registered encoder names (:data:`ENCODERS`)."""
    return list(ENCODERS)


class Encoder(nn.Module):
    """Normalise -> backbone features (B, feature_dim) -> MLP head (B, n_outputs).

    Attributes: ``name``, ``backbone`` (torchvision ResNet with ``fc = Identity`` or a timm
    ``VisionTransformer`` without classifier), ``head`` (the MLP), ``feature_dim``, ``n_outputs``, ``pool``
    ("token"/"mean"; ViTs only), ``dropkey_ratios`` (per ViT block; empty for CNNs).
    """

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        feature_dim: int,
        n_outputs: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        pool: str = "token",
    ) -> None:
        super().__init__()
        self.name = name
        self.backbone = backbone
        self.is_vit = hasattr(backbone, "forward_features") and hasattr(backbone, "blocks")
        self.pool = pool
        self.feature_dim = feature_dim
        self.n_outputs = n_outputs
        # normalisation constants: buffers that follow .to(device) but stay out of the state dict
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Sequential(
            nn.Linear(feature_dim, HEAD_HIDDEN), nn.ReLU(inplace=True), nn.Linear(HEAD_HIDDEN, n_outputs)
        )
        nn.init.normal_(self.head[-1].weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head[-1].bias)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (B, feature_dim) of images (B,3,H,W) in [0,1]."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B,3,H,W), got {tuple(images.shape)}")
        x = (images - self.mean) / self.std
        if not self.is_vit:
            return self.backbone(x)
        tokens = self.backbone.forward_features(x)  # (B, N, D) after the final norm
        if self.pool == "token":
            return tokens[:, 0]
        return tokens[:, self.backbone.num_prefix_tokens :].mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Codes (B, n_outputs) of images (B,3,H,W) float RGB in [0,1]."""
        return self.head(self.features(images))

    @property
    def dropkey_ratios(self) -> list[float]:
        """DropKey ratio of each ViT block, block 0 first (empty for CNN backbones)."""
        return [layer.dropkey_ratio for layer in dropkey_layers(self.backbone)]

    def set_dropkey(self, ratio: float, schedule: str = "linear", end_factor: float = 0.0) -> None:
        """Re-assign the per-block DropKey ratios (see :func:`vitdeca.nn.dropkey.dropkey_schedule`)."""
        layers = dropkey_layers(self.backbone)
        if not layers:
            if ratio > 0:
                raise VitdecaError(f"encoder {self.name!r} has no timm attention blocks; DropKey needs a ViT")
            return
        set_dropkey_ratios(self.backbone, dropkey_schedule(ratio, len(layers), schedule, end_factor))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, feature_dim={self.feature_dim}, n_outputs={self.n_outputs}"


def build_encoder(
    name: str,
    n_outputs: int,
    dropkey: float = 0.0,
    dropkey_schedule: str = "linear",
    dropkey_end_factor: float = 0.0,
    pretrained: bool | str | os.PathLike | None = None,
    pool: str = "token",
    *,
    img_size: int = 224,
) -> Encoder:
    """Build an encoder mapping images (B,3,img_size,img_size) in [0,1] to codes (B, n_outputs).

    ``name``: ``"resnet50"`` or a timm ViT name (see :data:`ENCODERS`). ``dropkey``: DropKey ratio of block 0,
    spread over the blocks by ``dropkey_schedule`` ("linear" or "constant") and ``dropkey_end_factor``.
    ``pretrained`` (``model.pretrained``; see :mod:`vitdeca.nn.pretrained`): None/False (random init), True
    (timm's / torchvision's own download), ``"timm:<hub name>"`` (that timm checkpoint; needs internet once),
    a converted name such as ``"dinov2-small"`` (``vitdeca assets install dinov2-small``) or a local weights
    file (.pth/.pt/.bin torch state dict or .safetensors; timm, torchvision or Hugging Face key names; a
    classifier head in it is ignored). ``pool``: "token" (class token) or "mean" (patch mean), ViT only.
    ``img_size``: input resolution of a ViT (its position embedding is resampled for pretrained weights).
    Raises :class:`VitdecaError` for unknown names, bad options, unreadable or mismatched weight files and
    failed downloads.
    """
    if n_outputs < 1:
        raise VitdecaError(f"encoder n_outputs must be >= 1, got {n_outputs}")
    if pool not in POOLS:
        raise VitdecaError(f"unknown encoder pool {pool!r}; expected one of {', '.join(POOLS)}")
    source = resolve_pretrained(pretrained, name)
    if name == "resnet50":
        if dropkey > 0:
            raise VitdecaError("DropKey needs a ViT encoder; 'resnet50' has no attention blocks")
        encoder = _build_resnet50(n_outputs, source)
    else:
        encoder = _build_vit(name, n_outputs, source, pool, img_size)
    encoder.set_dropkey(dropkey, dropkey_schedule, dropkey_end_factor)
    return encoder


def _build_resnet50(n_outputs: int, source: PretrainedSource) -> Encoder:
    import torchvision

    backbone = torchvision.models.resnet50(weights=None)
    backbone.fc = nn.Identity()
    if source.kind == "default":
        tv_weights = torchvision.models.ResNet50_Weights.DEFAULT
        try:
            state = tv_weights.get_state_dict(progress=True, check_hash=True)
        except Exception as exc:  # network / cache failures of torch.hub
            raise VitdecaError(
                f"cannot download torchvision resnet50 weights ({exc}); are you offline? use {alternatives()}"
            ) from exc
        _load_backbone_state(backbone, state, "torchvision ResNet50_Weights.DEFAULT", classifier="fc")
    elif source.kind == "hub":  # timm's ResNet-50 uses torchvision's key names
        _load_backbone_state(backbone, hub_state_dict(source.hub), source.label, classifier="fc")
    elif source.kind == "file":
        _load_backbone_state(backbone, _read_state_dict(source.path), source.path, classifier="fc")
    return Encoder("resnet50", backbone, 2048, n_outputs, IMAGENET_MEAN, IMAGENET_STD)


def _build_vit(name: str, n_outputs: int, source: PretrainedSource, pool: str, img_size: int) -> Encoder:
    import timm
    from timm.models import VisionTransformer

    if not timm.is_model(name) or not timm.models.is_model_in_modules(name, ["vision_transformer"]):
        known = ", ".join(ENCODERS)
        raise VitdecaError(f"unknown encoder {name!r}; expected one of {known} or a timm ViT name")
    kwargs = dict(num_classes=0, img_size=img_size, attn_layer=DropKeyAttention, use_naflex=False)
    arch = source.hub if source.kind == "hub" else name  # a hub tag brings its own pretrained_cfg (mean/std)
    try:
        backbone = timm.create_model(arch, pretrained=source.kind == "default", **kwargs)
    except Exception as exc:
        if source.kind == "default":  # download through the Hugging Face hub / torch.hub failed
            raise VitdecaError(
                f"cannot download timm weights for {name} ({type(exc).__name__}: {exc}); are you offline? "
                f"use {alternatives()}"
            ) from exc
        where = (
            f"model.pretrained={source.label}"
            if source.kind == "hub"
            else f"cannot build timm model {arch!r}"
        )
        raise VitdecaError(f"{where}: {exc}") from exc
    if not isinstance(backbone, VisionTransformer):
        raise VitdecaError(f"{name!r} is not a timm VisionTransformer")
    if pool == "token" and not backbone.has_class_token:
        raise VitdecaError(f"{name} has no class token; use pool='mean'")
    if source.kind == "hub":
        load_vit_state(backbone, hub_state_dict(source.hub), source.label)
    elif source.kind == "file":
        load_vit_state(backbone, _read_state_dict(source.path), source.path)
    cfg = backbone.pretrained_cfg
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    return Encoder(name, backbone, backbone.num_features, n_outputs, mean, std, pool=pool)


def load_vit_state(backbone: nn.Module, state: dict[str, torch.Tensor], source: object) -> None:
    """Load a ViT state dict (timm, torchvision or Hugging Face names) into a timm ``VisionTransformer``.

    Foreign names are converted (:func:`vitdeca.nn.pretrained.to_timm_names`), then timm's
    ``checkpoint_filter_fn`` resamples the position embedding to the backbone's grid (bicubic, without
    antialiasing: :data:`POS_EMBED_ANTIALIAS`) and adapts other timm layouts. Mismatches: VitdecaError.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    try:
        state = checkpoint_filter_fn(to_timm_names(state), backbone, antialias=POS_EMBED_ANTIALIAS)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise VitdecaError(f"{source}: weights do not fit this encoder ({exc})") from exc
    _load_backbone_state(backbone, state, source, classifier=backbone.pretrained_cfg.get("classifier"))


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a torch or safetensors state dict (nested ``state_dict``/``model`` keys unwrapped) with
    :func:`vitdeca.weights.read_state_dict` (nothing in the file is executed)."""
    from vitdeca.weights import read_state_dict

    return read_state_dict(path, "encoder weights")


def _load_backbone_state(
    backbone: nn.Module, state: dict[str, torch.Tensor], source: object, classifier: str | tuple | None
) -> None:
    """Load ``state`` into ``backbone`` ignoring classifier keys; any other mismatch is a VitdecaError."""
    prefixes = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    state = {k: v for k, v in state.items() if not any(k.startswith(p + ".") for p in prefixes)}
    own = backbone.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise VitdecaError(f"{source}: weights do not fit this encoder ({detail})")
    backbone.load_state_dict(state, strict=False)
