"""The VGGFace2 ResNet-50 that DECA uses for its identity loss, loaded from ``resnet50_ft_weight.pkl``.

The file (converted from the VGGFace2 authors' Caffe model) is a pickle of a dict: parameter name →
numpy array, with torchvision-style names (``conv1.weight``, ``bn1.running_mean``,
``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``, ``fc.weight``, ...). The network is a
Caffe-style ResNet-50 (``decalib/models/frnet.py``): each bottleneck downsamples in its first 1x1
convolution (torchvision's puts the stride on the 3x3), the stem's max-pool has no padding and
rounds up (``ceil_mode``), and no convolution has a bias. Input: 224x224 BGR in 0..255 minus the
mean ``(B, G, R) = (91.4953, 103.8827, 131.0912)``. Output here: the 2048-d pooled features (DECA
builds it with ``include_top=False``); the 8631-way classifier in the file is ignored.

The file is read with a restricted unpickler that only builds numpy arrays and dicts.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitdeca.errors import VitdecaError
from vitdeca.safe_pickle import to_plain
from vitdeca.weights import read_weights

MEAN_BGR = (91.4953, 103.8827, 131.0912)
CHIP_SIZE = 224
LAYERS = (3, 4, 6, 3)


class Bottleneck(nn.Module):
    """1x1 (stride) → 3x3 → 1x1 (x4 channels), batch norm after each, shortcut added before the last relu."""

    def __init__(self, c_in: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample: nn.Module | None = None
        if stride != 1 or c_in != planes * 4:
            conv = nn.Conv2d(c_in, planes * 4, 1, stride=stride, bias=False)
            self.downsample = nn.Sequential(conv, nn.BatchNorm2d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class VGGFace2ResNet50(nn.Module):
    """(B,3,224,224) RGB chips in [0,1] → (B,2048) VGGFace2 features (average-pooled, not normalised).

    ``deca_compat`` reproduces DECA's ``VGGFace2Loss.reg_features`` preprocessing exactly: after the
    mean subtraction it crops a 10-pixel margin, computes ``2x - 1`` and resizes back to 224.
    """

    def __init__(self, layers: tuple[int, ...] = LAYERS, deca_compat: bool = False) -> None:
        super().__init__()
        self.deca_compat = deca_compat
        self.register_buffer("mean_bgr", torch.tensor(MEAN_BGR))
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
        c_in, stages = 64, []
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            blocks = [Bottleneck(c_in, planes, stride=1 if i == 0 else 2)]
            blocks += [Bottleneck(planes * 4, planes) for _ in range(count - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = planes * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.dim = c_in

    def preprocess(self, chips: torch.Tensor) -> torch.Tensor:
        """RGB [0,1] → mean-subtracted BGR 0..255 (plus DECA's margin crop and rescale if ``deca_compat``)."""
        x = chips.flip(1) * 255.0 - self.mean_bgr[:, None, None]
        if self.deca_compat:
            x = F.interpolate(
                x[:, :, 10:-10, 10:-10] * 2.0 - 1.0, size=list(chips.shape[-2:]), mode="bilinear"
            )
        return x

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(self.preprocess(chips)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


def read_weight_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The name → array dict in ``resnet50_ft_weight.pkl``; a clear :class:`VitdecaError` for a bad file."""
    path = Path(path)
    if not path.is_file():
        raise VitdecaError(
            f"{path}: VGGFace2 weights not found (DECA's resnet50_ft_weight.pkl; pass its path)"
        )
    weights = to_plain(read_weights(path, "VGGFace2 weights file"), str(path))
    if not isinstance(weights, dict) or not all(isinstance(v, np.ndarray) for v in weights.values()):
        raise VitdecaError(f"{path}: expected a dict of numpy arrays, found {type(weights).__name__}")
    return weights


def load_vggface2(path: str | os.PathLike, deca_compat: bool = False) -> VGGFace2ResNet50:
    """The VGGFace2 ResNet-50 from DECA's ``resnet50_ft_weight.pkl`` (its ``fc.*`` entries are ignored)."""
    weights = read_weight_pickle(path)
    net = VGGFace2ResNet50(deca_compat=deca_compat)
    expected = net.state_dict()
    unknown = sorted(k for k in weights if k not in expected and not k.startswith("fc."))
    if unknown:
        raise VitdecaError(
            f"{path}: unexpected parameters {unknown[:3]} (not DECA's resnet50_ft_weight.pkl?)"
        )
    state = OrderedDict()
    for key, target in expected.items():
        if key == "mean_bgr" or key.endswith("num_batches_tracked"):
            state[key] = target
            continue
        if key not in weights:
            raise VitdecaError(f"{path}: missing parameter '{key}' (not DECA's resnet50_ft_weight.pkl?)")
        value = np.asarray(weights[key], dtype=np.float32)
        if tuple(value.shape) != tuple(target.shape):
            raise VitdecaError(f"{path}: '{key}' has shape {value.shape}, expected {tuple(target.shape)}")
        state[key] = torch.from_numpy(value.copy())
    net.load_state_dict(state)
    return net.eval()
