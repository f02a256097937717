"""The DECA-style reconstructor: ``encode`` images → :class:`Codes`; ``decode`` → :class:`Reconstruction`.

Stages stay apart: the head model (:mod:`vitdeca.head`) turns codes into vertices, the renderer
(:mod:`vitdeca.render`) turns vertices into images, the networks (:mod:`vitdeca.nn`) turn images into codes.
This module only wires them and owns the checkpoint format.

Code priors (so that zero network outputs give a sensible face in the middle of the crop):
camera scale ``s = s0 · exp(raw_s)`` with ``s0`` chosen so the template's 68 landmarks span 1/1.25 of the
crop (DECA's crop scale); translation ``t = raw_t / s0 − c`` with ``c`` the template landmarks' centre, so a
raw translation is an NDC offset; light ``= raw + ambient`` where ``ambient`` makes band 0 give unit shading.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vitdeca import __version__
from vitdeca.codes import N_DETAIL, CodeLayout, Codes
from vitdeca.config import PRECISIONS, from_dict, to_dict
from vitdeca.errors import VitdecaError, first_line
from vitdeca.head.base import HeadModel
from vitdeca.render import MeshRenderer, RenderOutput, project_points, shade
from vitdeca.render.rasterize import faces_point_outward
from vitdeca.render.shading import SH_CONSTANTS
from vitdeca.storage import atomic_path

DECA_CROP_SCALE = 1.25
DETAIL_MAX_MM = 10.0  # DECA's displacement bound (tanh · 0.01 m)


@dataclass
class ModelConfig:
    """Everything that defines a model's architecture (saved inside every checkpoint)."""

    encoder: str | None = "vit_small_patch16_224"  # None: no encoders (a model for per-image fitting)
    dropkey: float = 0.0
    dropkey_schedule: str = "linear"
    dropkey_end_factor: float = 0.0
    pool: str = "token"
    pretrained: bool | str | None = None  # file, "timm:<hub name>", "dinov2-small" or True (docs/encoders.md)
    detail_encoder: str | None = None  # None: the same architecture (and pretrained start) as ``encoder``
    head_model: str = "ict"
    head_path: str | None = None  # FLAME: the user's generic_model.pkl (else $VITDECA_FLAME)
    n_shape: int | None = None  # None: the head model's default
    n_expression: int | None = None
    n_albedo: int = 50
    albedo_path: str | None = None  # a FLAME albedo .npz; None: learnable uniform-skin albedo
    detail: bool = True
    uv_size: int = 256
    image_size: int = 224


@dataclass
class Reconstruction:
    """What :meth:`DecaModel.decode` returns. Images are (B,C,H,W) in the crop's frame.

    vertices (B,V,3) model units; landmarks3d (B,68,3); landmarks2d (B,68,2) crop pixels; image (B,3,H,W)
    textured render; alpha (B,1,H,W); albedo_uv (B,3,S,S); shading (B,3,H,W); normal_image (B,3,H,W);
    shape_image (B,3,H,W) grey shape render; depth (B,1,H,W); render: the coarse :class:`RenderOutput`
    (fragments, screen vertices, uv grid). Detail branch (else None): displacement_uv (B,1,S,S) in model
    units, uv_detail_normals (B,3,S,S), detail_normal_image (B,3,H,W), detail_image (B,3,H,W),
    detail_shape_image (B,3,H,W), from ``detail_render``. The images are read from the renders, which make
    each on first access: what nobody reads (the coarse images when the detail branch runs, the shape
    render in a training step) is never computed.
    """

    codes: Codes
    vertices: torch.Tensor
    landmarks3d: torch.Tensor
    landmarks2d: torch.Tensor
    albedo_uv: torch.Tensor
    render: RenderOutput = field(repr=False)
    displacement_uv: torch.Tensor | None = None
    uv_detail_normals: torch.Tensor | None = None
    detail_render: RenderOutput | None = field(default=None, repr=False)

    # the images are the renders', made when first read (:class:`RenderOutput`)
    image = property(lambda self: self.render.image)
    alpha = property(lambda self: self.render.alpha)
    shading = property(lambda self: self.render.shading)
    normal_image = property(lambda self: self.render.normal_image)
    shape_image = property(lambda self: self.render.shape_image)
    depth = property(lambda self: self.render.depth)
    detail_normal_image = property(lambda self: _read(self.detail_render, "normal_image"))
    detail_image = property(lambda self: _read(self.detail_render, "image"))
    detail_shape_image = property(lambda self: _read(self.detail_render, "shape_image"))

    def renders(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(textured render, grey shape render), (B,3,H,W) each: the detail pass's when it ran, else the
        coarse pass's (what reconstruct's results keep)."""
        final = self.detail_render if self.detail_render is not None else self.render
        return final.image, final.shape_image


def _read(render: RenderOutput | None, name: str) -> torch.Tensor | None:
    return None if render is None else getattr(render, name)


@dataclass
class _AutocastState:
    """Whether autocast was on for a device type, and its dtype (to turn it back on inside a region)."""

    device: str
    enabled: bool
    dtype: torch.dtype

    @classmethod
    def capture(cls, device: str) -> _AutocastState:
        return cls(device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))

    def restored(self):
        return torch.autocast(self.device, dtype=self.dtype, enabled=self.enabled)


def inference_autocast(device: torch.device | str, precision: str = "fp32"):
    """The context in which inference runs the networks at ``precision`` (:data:`PRECISIONS`): "bf16" is
    bfloat16 autocast on ``device``'s type (CPU or CUDA), "fp32" leaves autocast off. Only the encoders
    and the albedo / detail decoders follow it: :meth:`DecaModel.decode` keeps the head model, the
    camera and the renderer in float32, and :meth:`DecaModel.encode` returns float32 codes."""
    if precision not in PRECISIONS:
        raise VitdecaError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def build_head(config: ModelConfig) -> HeadModel:
    """The head model a config names (with its code sizes)."""
    from vitdeca.head import load_head_model

    kwargs: dict[str, Any] = {}
    if config.head_path is not None:
        kwargs["path"] = config.head_path
    if config.n_shape is not None:
        kwargs["n_shape"] = config.n_shape
    if config.n_expression is not None:
        kwargs["n_expression"] = config.n_expression
    return load_head_model(config.head_model, **kwargs)


class DecaModel(nn.Module):
    """Coarse encoder E_c, detail encoder E_d, head model, albedo decoder D_A, detail decoder, renderer.

    With ``config.encoder=None`` there are no encoders (``encoder`` and ``detail_encoder`` are None): the
    head model, decoders and renderer that per-image fitting needs, without networks it would never run.
    """

    def __init__(self, config: ModelConfig | None = None, head: HeadModel | None = None):
        from vitdeca.nn import AlbedoDecoder, DetailDecoder, build_encoder

        super().__init__()
        self.config = config = config or ModelConfig()
        self.head = head if head is not None else build_head(config)
        self.layout = CodeLayout(self.head.n_shape, self.head.n_expression, self.head.n_pose, config.n_albedo)
        self._mirror_texels: torch.Tensor | None = None  # photo_texture's mirror map, made on first use
        self._code_mirror = None  # encode(flip=True)'s CodeMirror, made on first use
        enc = dict(
            dropkey=config.dropkey,
            dropkey_schedule=config.dropkey_schedule,
            dropkey_end_factor=config.dropkey_end_factor,
            pretrained=config.pretrained,
            pool=config.pool,
            img_size=config.image_size,
        )
        self.encoder = None
        if config.encoder is not None:
            self.encoder = build_encoder(config.encoder, self.layout.n_coarse, **enc)
        if config.albedo_path:
            self.albedo = AlbedoDecoder.from_flame_file(
                config.albedo_path, n_albedo=config.n_albedo, uv_size=config.uv_size
            )
        else:
            self.albedo = AlbedoDecoder(n_albedo=config.n_albedo, uv_size=config.uv_size)
        self.renderer = MeshRenderer(
            self.head.faces,
            self.head.uv_coords,
            self.head.uv_faces,
            image_size=config.image_size,
            uv_size=config.uv_size,
            cull_backfaces=faces_point_outward(self.head.template_vertices, self.head.faces),
        )
        self.detail_encoder = self.detail_decoder = None
        if config.detail:
            detail_name = config.detail_encoder or config.encoder
            if detail_name != config.encoder:  # the pretrained weights belong to the coarse architecture
                enc["pretrained"] = None
            if detail_name is not None:
                self.detail_encoder = build_encoder(detail_name, N_DETAIL, **enc)
            self.detail_decoder = DetailDecoder(
                n_detail=N_DETAIL,
                n_expression=self.head.n_expression,
                n_pose=max(self.head.n_pose - 3, 0),
                uv_size=config.uv_size,
                out_scale=DETAIL_MAX_MM * self.head.units_per_mm,
            )
        self._register_priors()

    def _register_priors(self) -> None:
        with torch.no_grad():
            zeros = [torch.zeros(1, n) for n in (self.head.n_shape, self.head.n_expression, self.head.n_pose)]
            lmk = self.head(*zeros).landmarks3d[0, :, :2]
        extent = (lmk.amax(0) - lmk.amin(0)).max()
        self.register_buffer("camera_scale0", 2.0 / DECA_CROP_SCALE / extent, persistent=False)
        self.register_buffer("camera_centre", (lmk.amax(0) + lmk.amin(0)) / 2, persistent=False)
        ambient = torch.zeros(9, 3)
        ambient[0] = 1.0 / SH_CONSTANTS[0]
        self.register_buffer("ambient_light", ambient, persistent=False)

    # ---- codes ------------------------------------------------------------------------------------------
    def codes_from_vector(self, flat: torch.Tensor, detail: torch.Tensor | None = None) -> Codes:
        """Raw encoder output (B, layout.n_coarse) → :class:`Codes` with the camera and light priors."""
        codes = Codes.split(flat, self.layout, detail=detail)
        raw = codes.camera
        scale = self.camera_scale0 * torch.exp(raw[:, :1])
        translation = raw[:, 1:] / self.camera_scale0 - self.camera_centre
        return codes.replace(
            camera=torch.cat([scale, translation], dim=1), light=codes.light + self.ambient_light
        )

    def neutral_codes(self, batch_size: int = 1) -> Codes:
        """Codes of zero network output: the template, centred in the crop, under ambient light."""
        device = self.camera_scale0.device
        detail = torch.zeros(batch_size, N_DETAIL, device=device) if self.config.detail else None
        return self.codes_from_vector(torch.zeros(batch_size, self.layout.n_coarse, device=device), detail)

    def encode(self, images: torch.Tensor, detail: bool | None = None, flip: bool = False) -> Codes:
        """images (B,3,H,W) float RGB in [0,1] (H = W = config.image_size) → :class:`Codes`.

        ``detail``: run the detail encoder (default: when the model has one); ``False`` skips it (e.g. in the
        coarse training stage), leaving ``Codes.detail`` None. ``flip``: test-time augmentation, the coarse
        encoder also reads the mirrored images and the geometry codes are the mean of both estimates
        (:func:`vitdeca.head.mirror.flip_averaged`; needs :attr:`supports_flip`). The codes are float32,
        also under autocast (:func:`inference_autocast`)."""
        detail_code = self._detail_code(images, detail)
        if not flip:
            return self.codes_from_vector(self.encoder(images).float(), detail_code)
        from vitdeca.head.mirror import flip_averaged

        codes, flipped = self._coarse_readings(images, detail_code)
        return flip_averaged(codes, flipped, self.code_mirror)

    def encode_mirrored(self, images: torch.Tensor, detail: bool | None = None) -> tuple[Codes, Codes]:
        """(codes of ``images`` as :meth:`encode` without ``flip``, codes of the mirrored images as read,
        not mapped back: :attr:`code_mirror` does that), from one batch of 2B through the coarse encoder
        (cheaper than two on a CPU). The mirrored codes have no detail code. Arguments as :meth:`encode`."""
        return self._coarse_readings(images, self._detail_code(images, detail))

    def _detail_code(self, images: torch.Tensor, detail: bool | None) -> torch.Tensor | None:
        """The checks of :meth:`encode`'s arguments, then the detail code of ``images`` (B,128) float32,
        or None where ``detail`` (default: the model has the branch) does not ask for it."""
        if self.encoder is None:
            raise ValueError("encode: this model has no encoder (ModelConfig.encoder=None, for fitting)")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"encode: images must be (B,3,H,W), got {tuple(images.shape)}")
        run_detail = self.detail_encoder is not None if detail is None else detail
        if run_detail and self.detail_encoder is None:
            raise ValueError("encode(detail=True) needs a model with the detail branch (config.detail)")
        # float32 codes under autocast too: a bf16 camera would move the face by a fraction of a pixel
        return self.detail_encoder(images).float() if run_detail else None

    def _coarse_readings(self, images: torch.Tensor, detail: torch.Tensor | None) -> tuple[Codes, Codes]:
        """(codes of ``images`` with ``detail``, codes of the mirrored images without): one encoder batch."""
        both = self.encoder(torch.cat([images, images.flip(-1)])).float()  # one batch: (2B, n_coarse)
        direct, mirrored = both.chunk(2)
        return self.codes_from_vector(direct, detail), self.codes_from_vector(mirrored, None)

    @property
    def supports_flip(self) -> bool:
        """True when the head model's codes have a mirror map (a rigid linear basis, e.g. ICT-FaceKit)."""
        return self.head.linear_basis() is not None

    @property
    def code_mirror(self):
        """The head model's :class:`~vitdeca.head.mirror.CodeMirror`, built on first use (~0.5 s)."""
        from vitdeca.head.mirror import CodeMirror

        if self._code_mirror is None:
            self._code_mirror = CodeMirror.of_head(self.head)
        return self._code_mirror

    # ---- geometry and appearance ---------------------------------------------------------------------
    def decode(
        self,
        codes: Codes,
        detail: bool | None = None,
        background: torch.Tensor | None = None,
        image_size: int | None = None,
        by_row: bool = False,
    ) -> Reconstruction:
        """:class:`Codes` → :class:`Reconstruction`; ``detail`` defaults to "detail branch on and a code
        given". ``background`` (B,3,H,W) is composited behind the renders (default black). ``image_size``:
        render at this size instead of ``config.image_size`` (the camera's NDC span the image either way).
        ``by_row``: the head model and the albedo row by row (:meth:`HeadModel.forward_rows`,
        :meth:`AlbedoDecoder.forward_rows`), so that each image's coarse render and its gradients are the
        bits it gets in a batch of one on CPU, where the renderer's numba kernels already work image by
        image (the torch renderer used on CUDA makes no such promise): what per-image fitting runs on a
        batch (:func:`vitdeca.fit.fit_codes`).

        Under autocast (bf16 training) the geometry and the renderer still run in float32 (bf16 cannot
        hold pixel coordinates or barycentrics); the albedo and detail decoders keep autocast."""
        amp = _AutocastState.capture(self.camera_scale0.device.type)
        with torch.autocast(amp.device, enabled=False):
            codes = codes._map(lambda t: t.float() if t.is_floating_point() else t)
            return self._decode(codes, detail, background, amp, image_size, by_row)

    def _decode(
        self,
        codes: Codes,
        detail: bool | None,
        background: torch.Tensor | None,
        amp: _AutocastState,
        image_size: int | None = None,
        by_row: bool = False,
    ) -> Reconstruction:
        head = (self.head.forward_rows if by_row else self.head)(codes.shape, codes.expression, codes.pose)
        size = self.renderer.image_size if image_size is None else (image_size, image_size)
        with amp.restored():
            albedo = (self.albedo.forward_rows if by_row else self.albedo)(codes.albedo).float()
        out = self.renderer(
            head.vertices, codes.camera, albedo, codes.light, background=background, image_size=size
        )
        recon = Reconstruction(
            codes=codes,
            vertices=head.vertices,
            landmarks3d=head.landmarks3d,
            landmarks2d=project_points(head.landmarks3d, codes.camera, *size),
            albedo_uv=albedo,
            render=out,
        )
        use_detail = (
            self.detail_decoder is not None and codes.detail is not None if detail is None else detail
        )
        if use_detail:
            self._decode_detail(recon, albedo, background, amp)
        return recon

    def _decode_detail(
        self,
        recon: Reconstruction,
        albedo: torch.Tensor,
        background: torch.Tensor | None,
        amp: _AutocastState | None = None,
    ) -> None:
        if self.detail_decoder is None or recon.codes.detail is None:
            raise ValueError("decode(detail=True) needs a model with the detail branch and a detail code")
        codes, out = recon.codes, recon.render
        with amp.restored() if amp is not None else contextlib.nullcontext():
            displacement = self.detail_decoder(codes.detail, codes.expression, codes.pose[:, 3:])
        recon.displacement_uv = displacement.float()
        recon.uv_detail_normals = self.renderer.uv.displacement_to_normals(
            recon.vertices, recon.displacement_uv
        )
        detail = shade(
            out.fragments,
            recon.vertices,
            out.screen_vertices,
            self.renderer.faces,
            self.renderer.face_uvs,
            albedo,
            codes.light,
            uv_detail_normals=recon.uv_detail_normals,
            background=background,
        )
        recon.detail_render = detail

    def extract_texture(
        self, images: torch.Tensor, recon: Reconstruction
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The photo's texture in UV (DECA's ``--extractTex``): images (B,3,H,W) → (texture (B,3,S,S),
        visibility (B,1,S,S))."""
        return self.renderer.uv.extract_texture(images, recon.render.screen_vertices, recon.render.fragments)

    def photo_texture(self, images: torch.Tensor, recon: Reconstruction) -> torch.Tensor:
        """A full UV texture (B,3,S,S) in [0,1] from the photos (B,3,H,W) the reconstruction was made from:
        the photo where it sees the surface squarely, its mirror image where only the other side was seen,
        the albedo shifted to the photo's colour elsewhere, seams feathered
        (:mod:`vitdeca.render.texture`)."""
        from vitdeca.render import texture as tex

        uv = self.renderer.uv
        if self._mirror_texels is None:
            self._mirror_texels = tex.mirror_texels(uv, self.head.template_vertices)
        colours, visible = self.extract_texture(images, recon)
        confidence = visible * tex.facing(uv, recon.vertices)
        return tex.complete_texture(colours, confidence, recon.albedo_uv, self._mirror_texels, uv.mask)

    def detail_mesh(
        self, recon: Reconstruction, texture: torch.Tensor | None = None, index: int | None = None
    ):
        """The dense detail mesh (DECA's ``_detail.obj``) as a :class:`vitdeca.render.DenseMesh`: of every
        face of ``recon``, or of face ``index`` only (batch 1). ``texture``: (B,3,S,S) colours or None."""
        if recon.displacement_uv is None:
            raise ValueError("detail_mesh needs a reconstruction decoded with detail=True")
        rows = slice(None) if index is None else slice(index, index + 1)
        texture = texture[rows] if texture is not None else None
        return self.renderer.uv.dense_mesh(recon.vertices[rows], recon.displacement_uv[rows], texture=texture)

    # ---- checkpoints ----------------------------------------------------------------------------------
    def head_identity(self) -> dict[str, str]:
        return {"name": self.head.name, "checksum": self.head.checksum()}

    def checkpoint_payload(self) -> dict[str, Any]:
        """The model part of every checkpoint (training checkpoints add optimizer, step, ... to it)."""
        return {
            "model": self.state_dict(),
            "model_config": to_dict(self.config),
            "head_model": self.head_identity(),
            "vitdeca_version": __version__,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (temporary file, then rename)."""
        with atomic_path(path) as tmp:
            torch.save(self.checkpoint_payload(), tmp)

    @classmethod
    def load(
        cls, path: str | os.PathLike, map_location: str | torch.device = "cpu", head: HeadModel | None = None
    ) -> DecaModel:
        """A model from a checkpoint written by :meth:`save` or by ``vitdeca train``; the head model must be
        the one it was trained with (same name and checksum)."""
        payload = read_checkpoint(path, map_location)
        config = from_dict(ModelConfig, payload["model_config"])
        config.pretrained = None  # the weights come from the checkpoint
        model = cls(config, head=head)
        expected, got = payload["head_model"], model.head_identity()
        if expected != got:
            raise VitdecaError(
                f"{path}: trained with head model {expected['name']} ({expected['checksum'][:12]}), "
                f"but the loaded one is {got['name']} ({got['checksum'][:12]})"
            )
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise VitdecaError(f"{path}: weights do not fit the model config ({first_line(exc)})") from exc
        return model


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict (:func:`vitdeca.weights.read_weights`: nothing in it is executed), with clear
    errors for missing, corrupt, foreign or hostile files."""
    from vitdeca.weights import read_weights

    payload = read_weights(path, "checkpoint", map_location)
    missing = [
        k
        for k in ("model", "model_config", "head_model")
        if not isinstance(payload, dict) or k not in payload
    ]
    if missing:
        raise VitdecaError(f"{path}: not a vitdeca checkpoint (missing {', '.join(missing)})")
    return payload
