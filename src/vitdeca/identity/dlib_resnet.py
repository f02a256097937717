"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a torch module.

The network, as defined by ``anet_type`` in dlib's ``examples/dnn_face_recognition_ex.cpp``
(forward order; ``affine`` is a frozen per-channel scale and shift that replaced batch norm):

- input: 150x150 RGB chip, ``x = (pixel_0_255 - mean_rgb) / 256`` with the mean stored in the file;
- stem: ``con 32 7x7 /2`` (no padding) → affine → relu → ``max_pool 3x3 /2`` (no padding);
- residual blocks ``con 3x3 /s → affine → relu → con 3x3 → affine``, added to the block input, then
  relu; 3x32, 4x64, 3x128, 3x256 and 1x256 channels, the first block of each stage after the first
  downsamples: its convolution has stride 2 and no padding, and its shortcut is ``avg_pool 2x2 /2``;
- dlib adds tensors of different sizes by zero-padding both to the larger size at the bottom/right
  and in the channel dimension (``tt::add``), which the shortcuts here rely on;
- head: global average pool → ``fc_no_bias 128``. The output is dlib's face descriptor (not normalised).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitdeca.identity.dlib_format import DlibFormatError, DlibLayer, Node, read_network_file

# (channels, number of blocks, first block downsamples) per stage, in forward order.
STAGES: tuple[tuple[int, int, bool], ...] = (
    (32, 3, False),
    (64, 4, True),
    (128, 3, True),
    (256, 3, True),
    (256, 1, True),
)
CHIP_SIZE = 150
CHIP_PADDING = 0.25


def _block_nodes(down: bool) -> list[Node]:
    """Forward-order nodes of one residual block (dlib's ``ares`` or ``ares_down``)."""
    body = [Node("tag", tag=1), Node("layer", "con"), Node("layer", "affine"), Node("layer", "relu")]
    body += [Node("layer", "con"), Node("layer", "affine")]
    if down:
        body += [Node("tag", tag=2), Node("skip", tag=1), Node("layer", "avg_pool")]
    return body + [Node("layer", "add_prev", tag=2 if down else 1), Node("layer", "relu")]


def network_nodes(stages: tuple[tuple[int, int, bool], ...] = STAGES) -> list[Node]:
    """dlib's nesting of the network, outermost (loss) first, as :func:`parse_network` wants it."""
    forward = [Node("input", "rgb_image_sized")]
    forward += [Node("layer", n) for n in ("con", "affine", "relu", "max_pool")]
    for _, blocks, down in stages:
        for i in range(blocks):
            forward += _block_nodes(down and i == 0)
    forward += [Node("layer", "avg_pool"), Node("layer", "fc"), Node("loss", "metric")]
    return forward[::-1]


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``tt::add`` of (B,C,H,W) tensors: both zero-padded (channels, bottom, right) to the larger."""
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))

    return pad(a) + pad(b)


class Affine(nn.Module):
    """Per-channel ``x * scale + shift`` (dlib's ``affine_`` layer in conv mode)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("scale", torch.ones(channels))
        self.register_buffer("shift", torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale[:, None, None] + self.shift[:, None, None]


class ResidualBlock(nn.Module):
    """``relu(add_zero_padded(affine(con(relu(affine(con(x))))), shortcut(x)))``."""

    def __init__(self, c_in: int, c_out: int, down: bool) -> None:
        super().__init__()
        stride, pad = (2, 0) if down else (1, 1)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=pad)
        self.affine1 = Affine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.affine2 = Affine(c_out)
        self.shortcut = nn.AvgPool2d(2, 2) if down else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(add_zero_padded(y, self.shortcut(x)))


class DlibResNet(nn.Module):
    """The face-recognition ResNet: (B,3,150,150) RGB chips in [0,1] → (B,128) dlib descriptors."""

    def __init__(self, stages: tuple[tuple[int, int, bool], ...] = STAGES, dim: int = 128) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor([122.782, 117.001, 104.298]))
        self.conv = nn.Conv2d(3, stages[0][0], 7, stride=2)
        self.affine = Affine(stages[0][0])
        self.pool = nn.MaxPool2d(3, 2)
        blocks, c_in = [], stages[0][0]
        for channels, count, down in stages:
            for i in range(count):
                blocks.append(ResidualBlock(c_in, channels, down and i == 0))
                c_in = channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, dim, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips * 255.0 - self.mean_rgb[:, None, None]) / 256.0
        x = self.pool(F.relu(self.affine(self.conv(x))))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def _take(layers: Iterator[DlibLayer], name: str) -> dict:
    """The next parsed layer's fields; the parser already checked the order, this guards the builder."""
    layer = next(layers)
    if (layer.node.name or layer.node.kind) != name:
        raise AssertionError(f"builder expected '{name}', got {layer.node}")
    return layer.fields


def _load_conv(conv: nn.Conv2d, fields: dict, where: str) -> None:
    if tuple(fields["weight"].shape) != tuple(conv.weight.shape):
        raise DlibFormatError(
            f"{where}: convolution weights {fields['weight'].shape}, expected {tuple(conv.weight.shape)}"
        )
    if fields["stride"] != conv.stride or fields["padding"] != conv.padding:
        raise DlibFormatError(
            f"{where}: convolution stride/padding {fields['stride']}/{fields['padding']} unexpected"
        )
    conv.weight.data.copy_(torch.from_numpy(fields["weight"]))
    conv.bias.data.copy_(torch.from_numpy(fields["bias"]))


def _load_affine(affine: Affine, fields: dict, where: str) -> None:
    if fields["scale"].shape != affine.scale.shape:
        raise DlibFormatError(
            f"{where}: affine layer has {fields['scale'].shape[0]} channels, expected {affine.scale.shape[0]}"
        )
    affine.scale.copy_(torch.from_numpy(fields["scale"]))
    affine.shift.copy_(torch.from_numpy(fields["shift"]))


def _load_pool(fields: dict, size: tuple[int, int], stride: tuple[int, int], where: str) -> None:
    if fields["size"] != size or fields["stride"] != stride or fields["padding"] != (0, 0):
        raise DlibFormatError(f"{where}: pooling {fields} differs from the expected {size} /{stride}")


def build_dlib_resnet(layers: list[DlibLayer], where: str = "<dlib network>") -> DlibResNet:
    """Fill a :class:`DlibResNet` from parsed layers in forward order (see :func:`network_nodes`)."""
    net = DlibResNet()
    it = iter(layers)
    inp = _take(it, "rgb_image_sized")
    if inp.get("size") != (CHIP_SIZE, CHIP_SIZE):
        raise DlibFormatError(f"{where}: input size {inp.get('size')}, expected {CHIP_SIZE}x{CHIP_SIZE}")
    net.mean_rgb.copy_(torch.from_numpy(inp["mean"]))
    _load_conv(net.conv, _take(it, "con"), where)
    _load_affine(net.affine, _take(it, "affine"), where)
    _take(it, "relu")
    _load_pool(_take(it, "max_pool"), (3, 3), (2, 2), where)
    for block in net.blocks:
        _load_block(block, it, where)
    _load_pool(_take(it, "avg_pool"), (0, 0), (1, 1), where)
    fc = _take(it, "fc")
    if fc["bias"] is not None or tuple(fc["weight"].shape) != tuple(net.fc.weight.shape):
        raise DlibFormatError(f"{where}: final fc layer {fc['weight'].shape} differs from fc_no_bias 128")
    net.fc.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(fc["weight"])))
    _take(it, "metric")
    return net


def _load_block(block: ResidualBlock, it: Iterator[DlibLayer], where: str) -> None:
    _take(it, "tag")
    _load_conv(block.conv1, _take(it, "con"), where)
    _load_affine(block.affine1, _take(it, "affine"), where)
    _take(it, "relu")
    _load_conv(block.conv2, _take(it, "con"), where)
    _load_affine(block.affine2, _take(it, "affine"), where)
    if isinstance(block.shortcut, nn.AvgPool2d):
        _take(it, "tag")
        _take(it, "skip")
        _load_pool(_take(it, "avg_pool"), (2, 2), (2, 2), where)
    _take(it, "add_prev")
    _take(it, "relu")


def load_dlib_resnet(path: str | os.PathLike) -> DlibResNet:
    """Read ``dlib_face_recognition_resnet_model_v1.dat`` (or a file of the same network) into a module."""
    layers = read_network_file(path, network_nodes())
    return build_dlib_resnet(layers, where=str(path)).eval()
