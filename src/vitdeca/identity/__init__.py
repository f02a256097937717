"""Face-identity networks for the identity loss L_id: dlib's ResNet (ported) and DECA's VGGFace2 ResNet-50.

``load_identity_net("dlib")`` needs nothing but the installed ``face_recognition_models`` package;
``load_identity_net("vggface2", path)`` needs DECA's ``resnet50_ft_weight.pkl``. Both return an
:class:`IdentityNet`: frozen (eval mode, no parameter gradients) but differentiable in its inputs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vitdeca.errors import VitdecaError
from vitdeca.identity.chip import extract_chips
from vitdeca.identity.dlib_format import DlibFormatError
from vitdeca.identity.dlib_resnet import load_dlib_resnet
from vitdeca.identity.vggface2 import load_vggface2
from vitdeca.storage import vitdeca_home

__all__ = ["DlibFormatError", "IdentityNet", "dlib_model_path", "load_identity_net"]

DLIB_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
VGGFACE2_FILE = "resnet50_ft_weight.pkl"
# VGGFace2 chips: a looser crop than dlib's, approximating DECA's 224 crop (landmark box x1.25).
VGGFACE2_PADDING = 0.2


class IdentityNet(nn.Module):
    """A face-recognition backbone plus the landmark alignment that produces its input chips.

    ``backbone`` maps (B,3,S,S) RGB chips in [0,1] to (B,D) descriptors; ``chip_size`` is S and
    ``padding`` the dlib-style chip padding used by :meth:`embed`.
    """

    def __init__(self, backbone: nn.Module, name: str, dim: int, chip_size: int, padding: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.name, self.dim, self.chip_size, self.padding = name, dim, chip_size, padding

    def forward_chips(self, chips: torch.Tensor) -> torch.Tensor:
        """(B,3,S,S) aligned RGB chips in [0,1] → (B,D) raw descriptors (for dlib: exactly dlib's)."""
        if chips.dim() != 4 or tuple(chips.shape[1:]) != (3, self.chip_size, self.chip_size):
            want = f"(B,3,{self.chip_size},{self.chip_size})"
            raise ValueError(f"{self.name} identity net wants {want} chips, got {tuple(chips.shape)}")
        return self.backbone(chips)

    def align(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) images in [0,1], (B,68|5,2) landmarks in pixels (centres at +0.5) → (B,3,S,S) chips."""
        return extract_chips(images, landmarks, self.chip_size, self.padding)

    def embed(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) images in [0,1], (B,68|5,2) landmarks in pixels → (B,D) unit-length embeddings."""
        return F.normalize(self.forward_chips(self.align(images, landmarks)), dim=-1)

    def forward(self, images: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
        return self.embed(images, landmarks)


def dlib_model_path(filename: str = DLIB_MODEL) -> Path:
    """Path of a model file inside the installed ``face_recognition_models`` package (never imported)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise VitdecaError("face_recognition_models is not installed (pip install face_recognition_models)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise VitdecaError(f"{path}: missing from the face_recognition_models package")
    return path


def _frozen(net: IdentityNet) -> IdentityNet:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_identity_net(
    name: str = "dlib", path: str | os.PathLike | None = None, deca_compat: bool = False
) -> IdentityNet:
    """A frozen identity network: ``"dlib"`` (128-d, 150x150 chips) or ``"vggface2"`` (2048-d, 224x224).

    ``path`` overrides the weight file (dlib: the packaged model; vggface2: required unless
    ``$VITDECA_HOME/resnet50_ft_weight.pkl`` exists). ``deca_compat`` applies DECA's VGGFace2 preprocessing.
    """
    if name == "dlib":
        backbone = load_dlib_resnet(path if path is not None else dlib_model_path())
        return _frozen(IdentityNet(backbone, "dlib", 128, 150, 0.25))
    if name == "vggface2":
        if path is None:
            path = vitdeca_home() / VGGFACE2_FILE
        backbone = load_vggface2(path, deca_compat=deca_compat)
        return _frozen(IdentityNet(backbone, "vggface2", backbone.dim, 224, VGGFACE2_PADDING))
    raise VitdecaError(f"unknown identity network '{name}' (choose 'dlib' or 'vggface2')")
