"""Networks: image encoders (ResNet-50 / timm ViT with DropKey) and the detail and albedo decoders."""

from vitdeca.nn.decoders import AlbedoDecoder, DetailDecoder
from vitdeca.nn.dropkey import DropKey, DropKeyAttention, dropkey_layers, dropkey_schedule
from vitdeca.nn.encoders import ENCODERS, Encoder, build_encoder, list_encoders

__all__ = [
    "ENCODERS",
    "AlbedoDecoder",
    "DetailDecoder",
    "DropKey",
    "DropKeyAttention",
    "Encoder",
    "build_encoder",
    "dropkey_layers",
    "dropkey_schedule",
    "list_encoders",
]
