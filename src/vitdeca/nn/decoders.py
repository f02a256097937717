"""Decoders from codes to UV maps: DECA's detail generator and the linear albedo model D_A.

UV maps are (B,C,S,S) tensors; row 0 is the top row of the texture image as stored (DECA's layout, sampled
with the head model's UV coordinates by ``vitdeca.render``).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vitdeca.batching import each_row
from vitdeca.errors import VitdecaError

SKIN_TONE = (0.70, 0.53, 0.45)
"""Default uniform albedo (linear RGB in [0,1]) of the learnable albedo model."""

_N_UPSAMPLE = 5  # DECA's generator doubles the resolution five times (8 -> 256)
_CHANNELS = (128, 128, 64, 64, 32, 16)  # channels before / after each upsampling stage


class DetailDecoder(nn.Module):
    """DECA's detail generator: (detail code ⊕ expression ⊕ pose conditioning) -> UV displacement (B,1,S,S).

    Architecture (as DECA's ``Generator``; submodule names ``l1`` / ``conv_blocks`` and indices match DECA,
    so its ``D_detail`` weights load for the same sizes): ``Linear(latent, 128·(S/32)²)`` -> reshape
    (B,128,S/32,S/32) -> BatchNorm -> 5 × [2× upsample (bilinear), 3×3 conv, BatchNorm(eps=0.8, DECA's quirk),
    LeakyReLU(0.2)] with output channels 128,64,64,32,16 -> 3×3 conv to 1 channel -> tanh -> × ``out_scale``.
    DECA uses ``out_scale = 0.01`` for FLAME in metres (|displacement| ≤ 1 cm); use 1.0 for centimetres (ICT).

    ``forward(detail (B,n_detail), expression (B,n_expression), pose (B,n_pose)) -> (B,1,S,S)``; ``pose`` is
    the conditioning pose (DECA: the 3 jaw axis-angle values); ``n_pose = 0`` leaves it out (pass ``None``).
    """

    def __init__(
        self,
        n_detail: int = 128,
        n_expression: int = 50,
        n_pose: int = 3,
        uv_size: int = 256,
        out_scale: float = 0.01,
        sample_mode: str = "bilinear",
    ) -> None:
        super().__init__()
        if uv_size < 32 or uv_size % 32:
            raise VitdecaError(f"detail uv_size must be a multiple of 32 (>= 32), got {uv_size}")
        self.n_detail, self.n_expression, self.n_pose = n_detail, n_expression, n_pose
        self.uv_size, self.out_scale = uv_size, out_scale
        self.init_size = uv_size // 2**_N_UPSAMPLE
        self.l1 = nn.Sequential(nn.Linear(n_detail + n_expression + n_pose, _CHANNELS[0] * self.init_size**2))
        layers: list[nn.Module] = [nn.BatchNorm2d(_CHANNELS[0])]
        for c_in, c_out in zip(_CHANNELS[:-1], _CHANNELS[1:], strict=True):
            layers += [
                nn.Upsample(scale_factor=2, mode=sample_mode),
                nn.Conv2d(c_in, c_out, 3, stride=1, padding=1),
                nn.BatchNorm2d(c_out, eps=0.8),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Conv2d(_CHANNELS[-1], 1, 3, stride=1, padding=1), nn.Tanh()]
        # channels-last convolutions and upsampling: half the time of NCHW on CPU, forward and backward
        # (75 -> 38 ms for a batch of 4 at 256², 2 threads; benchmarks/results/reconstruct.md)
        self.conv_blocks = nn.Sequential(*layers).to(memory_format=torch.channels_last)

    def forward(
        self, detail: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor | None = None
    ) -> torch.Tensor:
        parts = [detail, expression] + ([pose] if self.n_pose else [])
        sizes = [None if p is None else p.shape[-1] for p in parts]
        if sizes != [self.n_detail, self.n_expression, self.n_pose][: len(parts)]:
            expected = (self.n_detail, self.n_expression, self.n_pose)
            raise ValueError(f"expected codes of sizes {expected}, got {sizes}")
        latent = torch.cat(parts, dim=1)
        x = self.l1(latent).view(latent.shape[0], _CHANNELS[0], self.init_size, self.init_size)
        x = self.conv_blocks(x.contiguous(memory_format=torch.channels_last))
        return x.contiguous() * self.out_scale

    def extra_repr(self) -> str:
        return f"uv_size={self.uv_size}, out_scale={self.out_scale:g}"


class AlbedoDecoder(nn.Module):
    """Linear albedo model D_A: ``albedo = clamp(mean + Σ_k code_k · basis_k, 0, 1)`` as a UV map (B,3,S,S).

    Default: learnable ``mean`` (3,S,S) initialised to the uniform ``skin_tone`` and learnable ``basis``
    (n_albedo,3,S,S) initialised to zero, so every code gives the same uniform albedo until trained. With
    ``learnable=False`` both are buffers (e.g. a FLAME albedo file, see :meth:`from_flame_file`). The state
    dict holds ``mean`` and ``basis`` either way.
    """

    def __init__(
        self,
        n_albedo: int = 50,
        uv_size: int = 256,
        skin_tone: tuple[float, float, float] = SKIN_TONE,
        learnable: bool = True,
        mean: torch.Tensor | None = None,
        basis: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.n_albedo, self.uv_size = n_albedo, uv_size
        if mean is None:
            mean = torch.tensor(skin_tone, dtype=torch.float32).view(3, 1, 1).expand(3, uv_size, uv_size)
        if basis is None:
            basis = torch.zeros(n_albedo, 3, uv_size, uv_size)
        shape = (3, uv_size, uv_size)
        if tuple(mean.shape) != shape or tuple(basis.shape) != (n_albedo, *shape):
            raise ValueError(f"mean/basis shapes {tuple(mean.shape)}/{tuple(basis.shape)} do not fit")
        mean, basis = mean.float().contiguous().clone(), basis.float().contiguous().clone()
        if learnable:
            self.mean, self.basis = nn.Parameter(mean), nn.Parameter(basis)
        else:
            self.register_buffer("mean", mean)
            self.register_buffer("basis", basis)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """UV albedo (B,3,S,S) in [0,1] of albedo codes (B, n_albedo)."""
        if code.ndim != 2 or code.shape[1] != self.n_albedo:
            raise ValueError(f"expected albedo codes (B,{self.n_albedo}), got {tuple(code.shape)}")
        offset = (code @ self.basis.flatten(1)).view(-1, 3, self.uv_size, self.uv_size)
        return (self.mean + offset).clamp(0.0, 1.0)

    def forward_rows(self, code: torch.Tensor) -> torch.Tensor:
        """``forward`` with each row's albedo, and its gradient, the bits that row gets in a batch of one
        (a batched product rounds differently from a single row's), as
        :meth:`vitdeca.head.HeadModel.forward_rows` does for the geometry: per-image fitting's promise."""
        return each_row(self, code)

    @classmethod
    def from_flame_file(
        cls, path: str | os.PathLike, n_albedo: int = 50, uv_size: int = 256, learnable: bool = False
    ) -> AlbedoDecoder:
        """Load a FLAME albedo space (DECA's two formats), resampled to ``uv_size``.

        ``FLAME_albedo_from_BFM.npz``: ``MU`` (S·S·3) and ``PC`` (S·S·3, K) in [0,1] (``specMU``/``specPC``,
        the specular part, is ignored). ``FLAME_texture.npz``: ``mean`` and ``tex_dir`` in [0,255] (divided by
        255). In both the pixels are row-major (S,S,3) in BGR order (converted to RGB, as DECA does); the
        first ``n_albedo`` of the K components are kept. Downsampling averages (area), upsampling is
        bilinear. Raises :class:`VitdecaError` for unreadable files, missing keys, non-square maps or too few
        components.
        """
        mean, basis = _read_flame_albedo(Path(path), n_albedo)
        if mean.shape[-1] != uv_size:
            mean, basis = (_resize(t, uv_size) for t in (mean[None], basis))
            mean = mean[0]
        return cls(n_albedo, uv_size, learnable=learnable, mean=mean, basis=basis)

    def extra_repr(self) -> str:
        return f"n_albedo={self.n_albedo}, uv_size={self.uv_size}"


def _resize(maps: torch.Tensor, size: int) -> torch.Tensor:
    """Resample (N,C,H,W) maps to (N,C,size,size): area average down, bilinear up (both linear maps)."""
    mode = "area" if size < maps.shape[-1] else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(maps, size=(size, size), mode=mode, **kwargs)


_FORMATS = {("MU", "PC"): 1.0, ("mean", "tex_dir"): 1.0 / 255.0}


def _read_flame_albedo(path: Path, n_albedo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (3,S,S) and basis (n_albedo,3,S,S), RGB in [0,1] units, from a FLAME albedo .npz file."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise VitdecaError(f"{path}: no such albedo file") from exc
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise VitdecaError(f"{path}: not a readable .npz albedo file ({exc})") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise VitdecaError(f"{path}: not an .npz archive (FLAME_albedo_from_BFM.npz or FLAME_texture.npz)")
    with data:
        keys = next((k for k in _FORMATS if all(name in data.files for name in k)), None)
        if keys is None:
            found = ", ".join(data.files) or "none"
            raise VitdecaError(f"{path}: no MU/PC or mean/tex_dir arrays (found {found})")
        scale = _FORMATS[keys]
        try:
            mu, pc = data[keys[0]], data[keys[1]]
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise VitdecaError(f"{path}: corrupt array in albedo file ({exc})") from exc
    n_values = mu.size
    side = math.isqrt(n_values // 3)
    if n_values == 0 or side * side * 3 != n_values:
        raise VitdecaError(f"{path}: {keys[0]} has {n_values} values, not a square RGB map (S*S*3)")
    if pc.ndim < 2 or pc.size // pc.shape[-1] != n_values:
        raise VitdecaError(
            f"{path}: {keys[1]} of shape {pc.shape} does not fit {keys[0]} ({n_values} values)"
        )
    if pc.shape[-1] < n_albedo:
        raise VitdecaError(f"{path}: has {pc.shape[-1]} albedo components, fewer than n_albedo={n_albedo}")
    mean = torch.from_numpy(np.asarray(mu, dtype=np.float32).reshape(side, side, 3) * scale)
    basis = np.asarray(pc.reshape(n_values, -1)[:, :n_albedo], dtype=np.float32) * scale
    basis = torch.from_numpy(basis).T.reshape(n_albedo, side, side, 3)
    # (H,W,BGR) -> (C=RGB,H,W)
    return mean.permute(2, 0, 1).flip(0).contiguous(), basis.permute(0, 3, 1, 2).flip(1).contiguous()
