"""What :mod:`vitdeca.data.synth` draws, as plain records: the options of a synthetic dataset
(:class:`SynthOptions`), a sampled identity (:class:`Subject`) and one image's draws (:class:`ImageSpec`);
shared by the sampler (:mod:`vitdeca.data.synth`) and the renderer (:mod:`vitdeca.data.synth_render`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitdeca.data.synth_appearance import SkinParams
from vitdeca.errors import VitdecaError

BLUR_KINDS = ("gaussian", "motion")
OCCLUDER_KINDS = ("hand", "glasses", "object")


@dataclass
class SynthOptions:
    """What :func:`write_synthetic_dataset` draws. Angles in degrees (std of a normal, clipped at 2.5 std)."""

    n_images: int = 100
    images_per_subject: int = 4
    seed: int = 0
    size: int = 224
    supersample: int = 2
    uv_size: int = 512
    head_model: str = "ict"
    head_path: str | None = None
    shape_std: float = 1.0
    neutral_fraction: float = 0.3  # share of images with zero expression (category "neutral")
    yaw: float = 20.0
    yaw_max: float = 0.0  # > 0: yaw uniform in [-yaw_max, yaw_max] degrees instead of N(0, yaw²)
    pitch: float = 10.0
    roll: float = 5.0
    face_fraction: tuple[float, float] = (0.62, 0.72)  # landmark box / image side (1/1.375: DECA crop)
    shift: float = 0.03  # max landmark-box centre offset, fraction of the image
    eyeball_mm: float = 12.0  # radius of the convex eyeballs that replace ICT's eye sockets (0: keep)
    eyes: str = "convex"  # "convex" (bulged sockets, above) or "ict": ICT's eyeballs turned by a gaze
    gaze: float = 15.0  # with eyes="ict": std (degrees) of the eyes' yaw and pitch (both eyes alike)
    noise: float = 0.015  # max std of the added pixel noise
    blur_fraction: float = 0.3  # share of blurred images (defocus or motion, half each)
    blur_max_px: float = 2.0  # largest blur std in output pixels (drawn uniformly from 0.5)
    occluder_fraction: float = 0.2  # share of images with a hand, glasses or an object over the face
    occluder_max_area: float = 0.4  # an occluder covers at most this share of the face mask
    neck_fade_mm: float = 25.0  # the neck fades into the background over this length (0: hard cut)
    blink_fraction: float = 0.0  # share of expressive images whose eyes blink (eyeBlink 0.6-1)
    consistent_expressions: bool = True  # no two shapes of a vitdeca.arkit.EXCLUSIVE pair in one face
    jpeg_quality: tuple[int, int] = (75, 95)
    backgrounds: str | None = None  # folder of photos (crops avoid their faces); None: procedural only
    photo_fraction: float = 0.8  # share of photo backgrounds when ``backgrounds`` is given
    background_detector: str | None = "dlib"
    textures: str | None = None  # folder of *_texture.png UV maps (vitdeca reconstruct)
    texture_fraction: float = 1.0  # share of subjects with a photo texture when ``textures`` is given
    batch_size: int = 8

    def validated(self) -> SynthOptions:
        """Self, after checking the numbers (:class:`VitdecaError` naming the first broken rule)."""
        (low, high), (q_low, q_high) = self.face_fraction, self.jpeg_quality
        checks = {
            "n_images >= 1": self.n_images >= 1,
            "images_per_subject >= 1": self.images_per_subject >= 1,
            "size >= 16": self.size >= 16,
            "supersample >= 1": self.supersample >= 1,
            "uv_size >= 32": self.uv_size >= 32,
            "batch_size >= 1": self.batch_size >= 1,
            "0 <= yaw_max <= 90": 0 <= self.yaw_max <= 90,
            "eyes in ('convex', 'ict')": self.eyes in ("convex", "ict"),
            "0 < face_fraction[0] <= face_fraction[1] <= 1": 0 < low <= high <= 1,
            "10 <= jpeg_quality[0] <= jpeg_quality[1] <= 100": 10 <= q_low <= q_high <= 100,
            "0 <= blur_fraction <= 1": 0 <= self.blur_fraction <= 1,
            "0.5 <= blur_max_px <= 20": 0.5 <= self.blur_max_px <= 20,
            "0 <= occluder_fraction <= 1": 0 <= self.occluder_fraction <= 1,
            "0.05 <= occluder_max_area <= 1": 0.05 <= self.occluder_max_area <= 1,
            "0 <= neck_fade_mm <= 100": 0 <= self.neck_fade_mm <= 100,
            "0 <= blink_fraction <= 1": 0 <= self.blink_fraction <= 1,
        }
        failed = [k for k, ok in checks.items() if not ok]
        if failed:
            raise VitdecaError(f"synth options: need {failed[0]}")
        return self

    @property
    def n_subjects(self) -> int:
        return math.ceil(self.n_images / self.images_per_subject)


@dataclass
class Subject:
    """A sampled identity: ``shape`` (n_shape,), procedural ``skin`` or a photo ``texture``."""

    name: str
    shape: np.ndarray
    skin: SkinParams | None
    texture: Path | None


@dataclass
class Blur:
    """A camera blur: ``kind`` in :data:`BLUR_KINDS`; ``sigma`` its std in output pixels (Gaussian
    defocus, or a motion streak of length √12·sigma, which has that std along it) at ``angle`` degrees
    (x right, y down; motion only)."""

    kind: str
    sigma: float
    angle: float


@dataclass
class Occluder:
    """Something in front of the face: ``kind`` in :data:`OCCLUDER_KINDS`; its shape, place and colours
    are drawn from ``seed`` when it is drawn (:mod:`vitdeca.data.synth_occluders`)."""

    kind: str
    seed: int


@dataclass
class ImageSpec:
    """One image's draws: codes (expression, pose (n_pose,), light (9,3)), placement and image effects."""

    index: int
    subject: Subject
    name: str
    category: str
    expression: np.ndarray
    pose: np.ndarray
    light: np.ndarray
    fraction: float
    shift: np.ndarray
    gain: np.ndarray
    gamma: float
    noise: float
    jpeg_quality: int
    rng_seed: int
    gaze: np.ndarray | None = None  # (2,2) yaw/pitch degrees per eye (left first) with eyes="ict"
    blur: Blur | None = None
    occluder: Occluder | None = None

    @property
    def relative_path(self) -> str:
        return f"{self.subject.name}/{self.category}/{self.name}.jpg"
