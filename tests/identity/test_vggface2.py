"""VGGFace2 ResNet-50 loader, on a generated weight pickle with the keys and shapes of DECA's file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from vitdeca.errors import VitdecaError
from vitdeca.identity import load_identity_net
from vitdeca.identity.vggface2 import MEAN_BGR, VGGFace2ResNet50, load_vggface2, read_weight_pickle


def _caffe_style_torchvision() -> torch.nn.Module:
    """torchvision's ResNet-50 made Caffe-style: stride on each first 1x1, max-pool without padding."""
    net = torchvision.models.resnet50()
    for stage in (net.layer2, net.layer3, net.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    net.maxpool = torch.nn.MaxPool2d(3, stride=2, padding=0, ceil_mode=True)
    return net


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    torch.manual_seed(0)
    net = _caffe_style_torchvision()
    for module in net.modules():  # non-trivial batch-norm statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture(scope="module")
def weight_file(reference: torch.nn.Module, tmp_path_factory) -> Path:
    """A pickle laid out like ``resnet50_ft_weight.pkl``: name → float32 array, plus a classifier."""
    weights = {k: v.numpy().copy() for k, v in reference.state_dict().items() if "num_batches" not in k}
    weights["fc.weight"], weights["fc.bias"] = np.zeros((10, 2048), np.float32), np.zeros(10, np.float32)
    path = tmp_path_factory.mktemp("vgg") / "resnet50_ft_weight.pkl"
    path.write_bytes(pickle.dumps(weights, protocol=2))
    return path


@pytest.fixture(scope="module")
def vgg_net(weight_file: Path):
    return load_identity_net("vggface2", weight_file)


def test_matches_torchvision_reference(reference: torch.nn.Module, vgg_net) -> None:
    torch.manual_seed(1)
    chips = torch.rand(2, 3, 64, 64)  # any size runs (global pooling); 224 in use, smaller here for speed
    bgr = chips[:, [2, 1, 0]] * 255.0 - torch.tensor(MEAN_BGR)[:, None, None]
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected, ours = reference(bgr), vgg_net.backbone(chips)
    assert ours.shape == (2, 2048)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_identity_net_interface(vgg_net) -> None:
    assert (vgg_net.dim, vgg_net.chip_size) == (2048, 224)
    assert not any(p.requires_grad for p in vgg_net.parameters())
    landmarks = torch.tensor(
        [[[120.0 + 40 * np.cos(a), 130.0 + 50 * np.sin(a)] for a in np.linspace(0, 6, 68)]]
    )
    with torch.no_grad():
        emb = vgg_net.embed(torch.rand(1, 3, 256, 256), landmarks)
    assert emb.shape == (1, 2048)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(1))


def test_preprocessing_by_hand() -> None:
    chips = torch.tensor([1.0, 0.5, 0.0])[None, :, None, None].expand(1, 3, 224, 224)  # RGB
    plain = VGGFace2ResNet50().preprocess(chips)
    torch.testing.assert_close(plain[0, :, 5, 7], torch.tensor([-91.4953, 23.6173, 123.9088]))  # BGR - mean
    deca = VGGFace2ResNet50(deca_compat=True).preprocess(chips)
    torch.testing.assert_close(deca[0, :, 5, 7], torch.tensor([-183.9906, 46.2346, 246.8176]))  # 2x - 1


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_protocols(tmp_path: Path, protocol: int) -> None:
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps({"a": np.arange(3, dtype=np.float32)}, protocol=protocol))
    np.testing.assert_array_equal(read_weight_pickle(path)["a"], [0, 1, 2])


BROKEN_FILES = [
    (b"", "not a readable VGGFace2 weights file"),
    (os.urandom(512), "not a readable VGGFace2 weights file"),
    (pickle.dumps([1, 2, 3]), "expected a dict of numpy arrays"),
    (pickle.dumps(os.system), "refusing to load"),
    (pickle.dumps({"fc.weight": np.zeros(3)}), "missing parameter 'conv1.weight'"),
    (pickle.dumps({"conv1.weight": np.zeros((64, 3, 3, 3))}), r"'conv1.weight' has shape \(64, 3, 3, 3\)"),
    (pickle.dumps({"layer5.0.conv1.weight": np.zeros(1)}), "unexpected parameters"),
]


def test_bad_weight_files(tmp_path: Path) -> None:
    for i, (data, message) in enumerate(BROKEN_FILES):
        path = tmp_path / f"broken{i}.pkl"
        path.write_bytes(data)
        with pytest.raises(VitdecaError, match=message) as info:
            load_vggface2(path)
        assert str(path) in str(info.value)
    with pytest.raises(VitdecaError, match="VGGFace2 weights not found"):
        load_identity_net("vggface2", tmp_path / "absent.pkl")
