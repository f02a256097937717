"""The :class:`Reconstructor`: an image (path, PIL image or array) in, one :class:`FaceResult` per face out.

Steps: read → detect faces (68 landmarks) → DECA crop → codes (the trained encoder, or per-image fitting
when there are no weights) → decode (mesh, renders, texture) → 2D landmarks back to original pixels
through the inverse crop matrix. Videos: :mod:`vitdeca.pipeline.video` (steady crops, one identity per
track, smoothed codes).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vitdeca import media
from vitdeca.errors import VitdecaError
from vitdeca.faces import crop_face
from vitdeca.faces.backends import DEFAULT_BACKEND
from vitdeca.pipeline.results import FaceResult, VideoFrame
from vitdeca.pipeline.video import SMOOTHING, iter_video

log = logging.getLogger(__name__)

METHODS = ("regress", "refine", "fit")
REFRAME_MIN_YAW = 45.0  # degrees: a face the encoder turns this far is re-cropped around its own landmarks
REFRAME_PASSES = 3  # at most this many re-crops per face


class CodeSmoother:
    """One-Euro filters over every code of a tracked face (settings :data:`SMOOTHING`)."""

    def __init__(self, settings: dict[str, tuple[float, float]] | None = None) -> None:
        self.settings = dict(SMOOTHING if settings is None else settings)
        self.filters: dict[str, media.OneEuroFilter] = {}

    def reset(self) -> None:
        self.filters.clear()

    def __call__(self, codes, t: float):
        """Smooth ``codes`` (batch 1) observed at time ``t`` seconds; returns new Codes."""
        out = {}
        for name, value in codes.as_dict().items():
            if value is None or name not in self.settings:
                out[name] = value
                continue
            if name not in self.filters:
                self.filters[name] = media.OneEuroFilter(*self.settings[name])
            smooth = self.filters[name](value.detach().cpu().numpy(), t)
            out[name] = torch.as_tensor(smooth, dtype=value.dtype, device=value.device)
        return type(codes)(**out)


@dataclass
class FaceCrop:
    """One detected face ready for the model: detector ``box`` (4,), ``score``, ``landmarks`` (68,2)
    original pixels, ``crop`` (a :class:`vitdeca.faces.Crop`: image (S,S,3) uint8 + matrix (2,3)),
    ``image_shape`` (H, W) of the original image (None: unknown), ``spread`` (68,) original pixels: the
    detector's uncertainty of each landmark (:meth:`~vitdeca.faces.FaceBackend.landmark_spread`; None:
    not measured, the points are taken as sure)."""

    face_index: int
    box: np.ndarray
    score: float
    landmarks: np.ndarray
    crop: Any
    image_shape: tuple[int, int] | None = None
    spread: np.ndarray | None = None

    @property
    def crop_spread(self) -> np.ndarray | None:
        """(68,) :attr:`spread` in crop pixels (None when not measured)."""
        if self.spread is None:
            return None
        return self.spread * float(np.sqrt(abs(np.linalg.det(self.crop.matrix[:, :2]))))

    @property
    def crop_landmarks(self) -> np.ndarray:
        """(68,2) detector landmarks in crop pixels."""
        from vitdeca.faces import transform_points

        return transform_points(self.landmarks, self.crop.matrix)


@dataclass
class Prepared:
    """An image read, its faces detected and cropped (largest first): what the model step needs;
    ``message``: why there is no crop (one line naming the smallest face the detector finds), else ""."""

    source: str
    image: np.ndarray
    crops: list[FaceCrop]
    message: str = ""


def encoder_yaws(codes) -> np.ndarray:
    """(B,) |yaw| in degrees of the codes' head rotations (:func:`vitdeca.arkit.head_yaws`)."""
    from vitdeca.arkit import head_yaws

    return head_yaws(codes.pose.detach().cpu())


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; an unavailable CUDA is a :class:`VitdecaError`."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise VitdecaError(f"--device {device!r}: not a device (use cpu, cuda or auto)") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VitdecaError("--device cuda: no CUDA GPU is available here (use --device cpu)")
    return device


def to_rgb_array(image: Any) -> tuple[str, np.ndarray]:
    """A path, PIL image, uint8/float array (H,W[,C]) or float tensor (3,H,W) → (name, uint8 (H,W,3))."""
    from vitdeca.faces.image_io import as_rgb_uint8, read_image

    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image), read_image(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        return "<PIL image>", np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3, 4):
            image = image.transpose(1, 2, 0)
    if isinstance(image, np.ndarray):
        return "<array>", as_rgb_uint8(image)
    raise VitdecaError(f"cannot reconstruct from a {type(image).__name__}: give a path, PIL image or array")


class Reconstructor:
    """Reconstruct every (or the largest) face of an image.

    ``model``: a :class:`vitdeca.model.DecaModel`; ``fit``: a :class:`vitdeca.fit.FitConfig` to fit the
    codes per image (starting from the encoder's codes when ``refine``, from neutral codes otherwise), or
    None to use the encoder's codes as they are. ``flip``: the encoder also reads each crop mirrored and
    averages the two estimates (``DecaModel.encode(flip=True)``; twice the encoder's work); None: for
    ``regress`` (``fit`` None) when the model's head supports it (ICT-FaceKit does, FLAME does not). It
    lowers regress's landmark error; refine's fit ends at the same error with or without it
    (benchmarks/results/default_model.md), so there it is off unless asked for. ``precision``
    (:data:`vitdeca.config.PRECISIONS`): "bf16" runs the encoders and decoders under bfloat16 autocast
    (:func:`vitdeca.model.inference_autocast`; fitting, the head model and the renderer stay float32):
    about 2.7× faster encoders on a CPU with native bf16 (AVX512-BF16 / AMX), within noise of "fp32"
    on landmarks and shape (docs/reconstruct.md).
    """

    def __init__(
        self,
        model,
        *,
        device: str | torch.device = "cpu",
        detector: str = DEFAULT_BACKEND,
        detail: bool = True,
        fit=None,
        refine: bool = False,
        reframe_min_yaw: float = REFRAME_MIN_YAW,
        reframe_passes: int = REFRAME_PASSES,
        flip: bool | None = None,
        precision: str = "fp32",
    ) -> None:
        from vitdeca.faces.backends import check_backend
        from vitdeca.model import inference_autocast

        check_backend(detector)
        inference_autocast("cpu", precision)  # an unknown precision fails here, before any work
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.detector = detector
        self.detail = detail
        self.fit_config = fit
        self.refine = refine
        self.reframe_min_yaw = reframe_min_yaw
        self.reframe_passes = reframe_passes
        self.crop_size = int(model.config.image_size)
        self.flip = (self.model.supports_flip and fit is None) if flip is None else flip
        if self.flip and not self.model.supports_flip:
            raise VitdecaError(f"--flip: the {self.model.head.name} head has no mirror map (use --no-flip)")
        self.precision = precision
        self._topology = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike | None = None,
        *,
        device: str | torch.device = "auto",
        detector: str = DEFAULT_BACKEND,
        detail: bool = True,
        fit=None,
        refine: bool = False,
        method: str | None = None,
        head: str = "ict",
        flip: bool | None = None,
        precision: str = "fp32",
    ) -> Reconstructor:
        """A trained model — a zoo name (:mod:`vitdeca.zoo`, e.g. ``"vitdeca-vits14"``) or a checkpoint
        path — or, with ``path=None``, per-image fitting (``fit``: a FitConfig, default settings when None).

        ``method`` (:data:`METHODS`): ``"regress"`` one forward pass; ``"refine"`` regression, then a short
        fit (:meth:`FitConfig.refining`) from those codes; ``"fit"`` fitting from the template. When
        ``method`` is None: ``fit`` without a model, else ``refine`` if ``refine`` is set, else
        ``regress``. ``flip``: test-time flip averaging of the encoder; ``precision``: the networks'
        inference precision (both: see the class)."""
        from vitdeca.fit import FitConfig
        from vitdeca.model import DecaModel, ModelConfig

        method = method or ("fit" if path is None else "refine" if refine else "regress")
        if method not in METHODS:
            raise VitdecaError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
        dev = resolve_device(device)
        if path is None:
            if method != "fit":
                raise VitdecaError(f"method {method!r} needs a trained model (--checkpoint NAME|PATH)")
            model = DecaModel(
                ModelConfig(head_model=head, encoder=None, detail=False)
            )  # fitting: no networks
            return cls(model, device=dev, detector=detector, detail=False, fit=fit or FitConfig())
        from vitdeca.zoo import resolve_model

        model = DecaModel.load(resolve_model(path), map_location=dev)
        fit = None if method == "regress" else (fit or FitConfig())
        refine = method == "refine"
        return cls(
            model,
            device=dev,
            detector=detector,
            detail=detail,
            fit=fit,
            refine=refine,
            flip=flip,
            precision=precision,
        )

    # ------------------------------------------------------------------------------------- images
    def __call__(self, image: Any, all_faces: bool = False) -> list[FaceResult]:
        """Reconstruct ``image`` (path, PIL image, array); [] when it has no face."""
        return self.reconstruct_crops([self.prepare(image, all_faces=all_faces)])[0]

    def prepare(self, image: Any, all_faces: bool = False) -> Prepared:
        """Read ``image``, detect its faces (largest first; only the largest unless ``all_faces``), crop."""
        from vitdeca.faces import detect_faces
        from vitdeca.faces.detect import no_face_message

        name, rgb = to_rgb_array(image)
        faces = detect_faces(rgb, backend=self.detector)
        crops = self.crop_faces(rgb, faces if all_faces else faces[:1])
        return Prepared(name, rgb, crops, "" if crops else no_face_message(rgb.shape, self.detector))

    def crop_faces(self, rgb: np.ndarray, faces: list) -> list[FaceCrop]:
        """The model's crops of detected ``faces`` (:class:`~vitdeca.faces.Face`, numbered in order) of
        ``rgb`` (H,W,3) uint8."""
        crops = []
        for k, face in enumerate(faces):
            crop = crop_face(rgb, face.landmarks, size=self.crop_size)
            box, landmarks = np.asarray(face.box), np.asarray(face.landmarks)
            crops.append(FaceCrop(k, box, float(face.score), landmarks, crop, rgb.shape[:2]))
        return crops

    def with_spreads(self, images: list[np.ndarray], crops: list[FaceCrop], encoded) -> list[FaceCrop]:
        """``crops`` with the detector's :attr:`FaceCrop.spread` measured on their ``images`` (H,W,3)
        uint8 where refine will mix the detector's points with the encoder's (:attr:`fuses_landmarks`;
        the faces it fits, :meth:`fits`); the others unchanged."""
        from vitdeca.faces import Face, get_backend

        if not self.fuses_landmarks:
            return crops
        backend, fitted = get_backend(self.detector), self.fits(encoded)
        return [
            dataclasses.replace(c, spread=backend.landmark_spread(image, Face(c.box, c.score, c.landmarks)))
            if fit
            else c
            for image, c, fit in zip(images, crops, fitted, strict=True)
        ]

    @property
    def fuses_landmarks(self) -> bool:
        """True when refine fits a mix of the detector's and the encoder's landmarks
        (``FitConfig.refine_fusion``, :func:`vitdeca.fit.fuse_landmarks`) where the crops carry the
        detector's spread (:meth:`with_spreads`; photos and video frames). It needs the encoder's reading
        of the mirrored crop, so a model whose head has no mirror map (FLAME) refines to the detector's."""
        readable = self.model.encoder is not None and self.model.supports_flip
        return self.refine and self.fit_config.refine_fusion and readable

    def reconstruct_crops(self, prepared: list[Prepared]) -> list[list[FaceResult]]:
        """Codes and outputs for every crop of ``prepared`` at once; results grouped per image."""
        crops, codes, nme = self.estimate_prepared(prepared)
        results = self.decode(codes, crops, nme) if crops else []
        grouped, i = [], 0
        for p in prepared:
            grouped.append(results[i : i + len(p.crops)])
            i += len(p.crops)
        return grouped

    def estimate_prepared(self, prepared: list[Prepared]):
        """(crops, codes, fit NME per crop or None) of every crop of ``prepared``, in order: the faces the
        encoder turns far re-framed first (:meth:`reframe_turned`), then :meth:`estimate_codes`."""
        pairs = [(p.image, c) for p in prepared for c in p.crops]
        if not pairs:
            return [], None, None
        images = [im for im, _ in pairs]
        crops, encoded = self.reframe_turned(images, [c for _, c in pairs])
        crops = self.with_spreads(images, crops, encoded)
        codes, nme = self.estimate_codes(crops, encoded=encoded)
        return crops, codes, nme

    def reframe_turned(self, images: list[np.ndarray], crops: list[FaceCrop]):
        """(crops, the encoder's codes of them): each face the encoder turns ``reframe_min_yaw``° or more
        re-cropped around the encoder's own 68 landmarks, up to ``reframe_passes`` times. On a profile
        the detector's 68 points, and so the crop made from them, are far off (docs/pose.md); each pass
        brings the crop closer to the one the encoder was trained on. ``images``: each crop's original
        image (H,W,3) uint8. Fitting without an encoder: the crops unchanged and None."""
        crops = list(crops)
        if not self.uses_encoder:
            return crops, None
        encoded = self.encode_crops(crops)
        for _ in range(self.reframe_passes):
            turned = np.flatnonzero(self.turned(encoded)).tolist()
            if not turned:
                break
            points = self.encoder_points([crops[i] for i in turned], encoded.index(turned))
            for i, own in zip(turned, points, strict=True):
                crops[i] = dataclasses.replace(crops[i], crop=crop_face(images[i], own, size=self.crop_size))
            encoded = encoded.with_rows(turned, self.encode_crops([crops[i] for i in turned]))
        return crops, encoded

    def turned(self, codes) -> np.ndarray:
        """(B,) bool: the faces whose head rotation in ``codes`` turns ``reframe_min_yaw``° or more."""
        return encoder_yaws(codes) >= self.reframe_min_yaw

    def encoder_points(self, crops: list[FaceCrop], encoded) -> np.ndarray:
        """(B,68,2) float64: the landmarks of the encoder's codes ``encoded`` of ``crops``, in the original
        images' pixels (where :meth:`reframe_turned` and a video's turned faces re-crop)."""
        from vitdeca.faces import invert_similarity, transform_points
        from vitdeca.fit import landmarks2d

        with torch.no_grad():
            points = landmarks2d(self.model, encoded, self.crop_size).double().cpu().numpy()
        pairs = zip(points, crops, strict=True)
        return np.stack([transform_points(p, invert_similarity(c.crop.matrix)) for p, c in pairs])

    @property
    def uses_encoder(self) -> bool:
        """True for ``regress`` and ``refine`` (the trained encoder runs), False for fitting alone."""
        return self.fit_config is None or self.refine

    def encode_crops(self, crops: list[FaceCrop]):
        """The encoder's :class:`~vitdeca.codes.Codes` of ``crops`` (no gradients; :meth:`encode`)."""
        from vitdeca.pipeline.decode import crop_batch

        with torch.no_grad():
            return self.encode(crop_batch(crops, self.device))

    def estimate_codes(self, crops: list[FaceCrop], init=None, encoded=None):
        """Codes of ``crops`` and the fit's landmark NME per crop (None without fitting): regressed,
        fitted, or regressed then refined (``init``: where a fit starts, e.g. the previous video frame;
        ``encoded``: the encoder's codes of ``crops`` when already computed).
        ``refine`` leaves a face the encoder turns ``FitConfig.refine_max_yaw`` or more as regressed."""
        from vitdeca.fit import fit_codes

        if self.uses_encoder:
            encoded = self.encode_crops(crops) if encoded is None else encoded
            if self.fit_config is None:
                return encoded, None
            init = encoded
        images, landmarks, spread = self.fit_inputs(crops)
        if not self.refine:
            config = self.fit_config.warm() if init is not None else self.fit_config
            result = fit_codes(self.model, images, landmarks, config, init=init)
            return result.codes, result.nme
        return self.refine_codes(images, landmarks, encoded, spread)

    def fit_inputs(self, crops: list[FaceCrop]):
        """(images (B,3,S,S), the detector's landmarks (B,68,2) crop pixels, their spread (B,68) crop
        pixels or None) of ``crops`` on the model's device. A crop without a spread counts as sure
        (zeros; the faces refine leaves alone have none); None when no crop has one."""
        from vitdeca.pipeline.decode import crop_batch

        images = crop_batch(crops, self.device)
        landmarks = torch.from_numpy(np.stack([c.crop_landmarks for c in crops])).float().to(self.device)
        spreads = [c.crop_spread for c in crops]
        spread = None
        if any(s is not None for s in spreads):
            spread = torch.from_numpy(np.stack([np.zeros(68) if s is None else s for s in spreads])).float()
        return images, landmarks, spread

    def refine_targets(self, images: list[np.ndarray], crops: list[FaceCrop], encoded, mirrored=None):
        """(targets (B,68,2) crop pixels, codes): the landmarks refine fits ``crops`` to, without the fit
        (a video's frames, refined together at the end of their track). Where :attr:`fuses_landmarks`,
        the detector's spread is measured on ``images`` (each crop's original image (H,W,3) uint8;
        :meth:`with_spreads`) and the targets are :meth:`fused_targets`, which also flip-averages the
        faces refine leaves alone in ``encoded`` (the encoder's codes of ``crops``; ``mirrored``: its
        codes of the mirrored crops when already read, :meth:`encode_readings`)."""
        crops = self.with_spreads(images, crops, encoded)
        batch, landmarks, spread = self.fit_inputs(crops)
        return self.fused_targets(batch, landmarks, encoded, spread, mirrored)

    def landmark_error(self, codes, landmarks: torch.Tensor) -> np.ndarray:
        """(B,) NME of the 68 landmarks of ``codes`` to ``landmarks`` (B,68,2) crop pixels
        (:func:`vitdeca.fit.landmark_nme`, the fit's own measure)."""
        from vitdeca.fit import landmark_nme, landmarks2d

        with torch.no_grad():
            points = landmarks2d(self.model, codes, self.crop_size)
            return landmark_nme(points, landmarks.to(points)).cpu().numpy()

    def refine_codes(self, images: torch.Tensor | None, landmarks: torch.Tensor, encoded, spread=None):
        """``refine``'s codes and NME to ``landmarks`` (B,68,2) crop pixels: the fit of
        :meth:`FitConfig.refining` from ``encoded``, except for faces the encoder turns
        ``refine_max_yaw`` or more (45° by default; docs/pose.md), which keep the encoder's codes
        (flip-averaged when the crop's mirror image is read). With ``spread`` (B,68) crop pixels (the
        detector's, :attr:`FaceCrop.crop_spread`) and the crops, the fit's targets are
        :meth:`fused_targets`. ``images`` (B,3,S,S) None: the landmark stage only."""
        from vitdeca.fit import fit_codes

        config = self.fit_config.refining()
        if images is None:
            config = config.landmarks_only()
        targets, encoded = self.fused_targets(images, landmarks, encoded, spread)
        fitted = np.flatnonzero(self.fits(encoded)).tolist()
        nme = self.landmark_error(encoded, landmarks)
        if not fitted:
            return encoded, nme
        chosen = images[fitted] if images is not None else None
        result = fit_codes(self.model, chosen, targets[fitted], config, init=encoded.index(fitted))
        nme[fitted] = result.nme
        if targets is not landmarks:  # the NME stays against the detector's points
            nme[fitted] = self.landmark_error(result.codes, landmarks[fitted])
        return encoded.with_rows(fitted, result.codes), nme

    def fused_targets(
        self, images: torch.Tensor | None, landmarks: torch.Tensor, encoded, spread, mirrored=None
    ):
        """(targets (B,68,2) crop pixels, codes). With ``images`` and :attr:`fuses_landmarks` the encoder
        also reads the mirrored crops (``mirrored``: those codes when already read): the codes of the
        faces refine leaves alone become flip-averaged (unless ``encoded`` already is), and with
        ``spread`` the targets are :func:`vitdeca.fit.fuse_landmarks` of the detector's ``landmarks`` and
        the encoder's, the encoder's spread read from the two readings. Else (``landmarks``, ``encoded``)."""
        from vitdeca.fit import fuse_landmarks, landmarks2d
        from vitdeca.head.mirror import flip_averaged
        from vitdeca.model import inference_autocast

        if images is None or not self.fuses_landmarks:
            return landmarks, encoded
        with torch.no_grad():
            flipped = mirrored
            if flipped is None:
                with inference_autocast(self.device, self.precision):
                    flipped = self.model.encode(images.flip(-1), detail=False)  # the mirrored crops' codes
            points = landmarks2d(self.model, encoded, self.crop_size)
            mirrored_points = landmarks2d(self.model, self.model.code_mirror(flipped), self.crop_size)
        targets = landmarks
        if spread is not None:  # half the readings' distance (a flip-averaged ``encoded`` is half-way)
            spread_encoded = (points - mirrored_points).norm(dim=-1) / (1.0 if self.flip else 2.0)
            targets = fuse_landmarks(landmarks, spread.to(landmarks), points.to(landmarks), spread_encoded)
        left = np.flatnonzero(~self.fits(encoded)).tolist()
        if left and not self.flip:
            averaged = flip_averaged(encoded.index(left), flipped.index(left), self.model.code_mirror)
            encoded = encoded.with_rows(left, averaged)
        return targets, encoded

    def fits(self, codes) -> np.ndarray:
        """(B,) bool: the faces of ``codes`` that fitting refines to the detector's landmarks: all of them
        for ``fit``, none for ``regress``, and for ``refine`` those the encoder turns less than
        ``FitConfig.refine_max_yaw`` (on a profile the detector's points are worse than the encoder)."""
        if self.fit_config is None:
            return np.zeros(codes.batch_size, dtype=bool)
        if not self.refine:
            return np.ones(codes.batch_size, dtype=bool)
        return encoder_yaws(codes) < self.fit_config.refine_max_yaw

    def encode(self, images: torch.Tensor):
        """The encoder's codes of crops (B,3,S,S); without ``detail`` the detail encoder does not run."""
        from vitdeca.model import inference_autocast

        with inference_autocast(self.device, self.precision):
            return self.model.encode(images, detail=None if self.detail else False, flip=self.flip)

    def encode_readings(self, crops: list[FaceCrop]):
        """(codes of ``crops`` as :meth:`encode_crops` gives them, the codes of the mirrored crops as read)
        from one encoder batch (no gradients): what :meth:`fused_targets` needs, for the price of
        :meth:`encode_crops` under ``flip``."""
        from vitdeca.head.mirror import flip_averaged
        from vitdeca.model import inference_autocast
        from vitdeca.pipeline.decode import crop_batch

        with torch.no_grad(), inference_autocast(self.device, self.precision):
            images = crop_batch(crops, self.device)
            codes, mirrored = self.model.encode_mirrored(images, detail=None if self.detail else False)
        if self.flip:
            codes = flip_averaged(codes, mirrored, self.model.code_mirror)
        return codes, mirrored

    def decode(
        self,
        codes,
        crops: list[FaceCrop],
        fit_nme: np.ndarray | None = None,
        held_gaze: np.ndarray | None = None,
        settle_eyes: bool = True,
    ) -> list[FaceResult]:
        """Decode ``codes`` of ``crops`` into results (meshes, renders, texture) in original pixels;
        ``held_gaze`` (B,2,2): the gaze of eyes closed or half closed (a video's previous frame's);
        ``settle_eyes``: the eyes' expression weights from the crops' gaze and lids
        (:func:`~vitdeca.pipeline.eyes.settle_eyelids`; False keeps the codes', e.g. another photo's)."""
        from vitdeca.pipeline.decode import decode_results, mesh_topology

        if self._topology is None:
            self._topology = mesh_topology(self.model)
        args = (self.detail, self._topology, fit_nme, held_gaze, settle_eyes, self.precision)
        return decode_results(self.model, codes, crops, *args)

    def render_in_image(self, face: FaceResult, image_shape: tuple[int, int], scale: float = 1.0):
        """``face``'s (textured render, grey shape render, alpha) over a whole image of ``image_shape``
        (H,W), not cut at the crop's edge (:func:`vitdeca.pipeline.decode.render_in_image`; a video's vis
        panels). ``scale``: output pixels per image pixel."""
        from vitdeca.pipeline.decode import render_in_image

        return render_in_image(self.model, face, image_shape, scale, self.precision)

    # ------------------------------------------------------------------------------------- videos
    def iter_video(
        self, video: media.Video | str | os.PathLike, smooth: bool = True, max_frames: int | None = None
    ) -> Iterator[VideoFrame]:
        """Track the largest face of a video (an open :class:`~vitdeca.media.Video` or a path); yields a
        :class:`VideoFrame` per frame, in order.

        Two passes (:mod:`vitdeca.pipeline.video`): per-frame codes, then one shape and albedo per track
        (a face lost for more than :data:`~vitdeca.pipeline.video.TRACK_RESET_S` starts a new track)
        and, with ``smooth``, zero-phase smoothing of the other codes; the crops follow One-Euro
        smoothed landmarks. A frame that fails is reported in ``VideoFrame.error``, never raised.
        """
        return iter_video(self, video, smooth=smooth, max_frames=max_frames)

    def recrop(self, frame: np.ndarray, crop: FaceCrop, landmarks: np.ndarray) -> FaceCrop:
        """``crop`` redone around ``landmarks`` (68,2) (original pixels of ``frame`` (H,W,3) uint8), e.g. a
        video's smoothed landmarks."""
        landmarks = np.asarray(landmarks, dtype=np.float64)
        new = crop_face(frame, landmarks, size=self.crop_size)
        return FaceCrop(crop.face_index, crop.box, crop.score, landmarks, new, frame.shape[:2])
