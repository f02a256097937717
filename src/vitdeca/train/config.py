"""The training config: one dataclass per section, every key declared, defaults as DECA's release.

Load with :func:`load_train_config` (defaults → YAML → ``--set a.b=value``); the resolved config is written
beside every run (``RUN_DIR/config.yaml``) and inside every checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from vitdeca.config import load_config
from vitdeca.errors import VitdecaError
from vitdeca.model import ModelConfig

STAGES = ("coarse", "detail")
LOSS_FACTORS = ("pseudo_weight",)
"""The float ``LossConfig`` keys that scale terms instead of weighing one (every other float is a term's
weight, named as the term)."""


@dataclass
class AugmentConfig:
    """DECA-style crop jitter and colour jitter (``vitdeca.data.Augmentation``), drawn from
    (seed, epoch, item). Scale: crop side / (1.1 · landmark-box size); DECA's 1.4–1.8 box sizes."""

    enabled: bool = True
    scale_min: float = 1.4 / 1.1
    scale_max: float = 1.8 / 1.1
    translation: float = 0.05  # max crop-centre shift, as a fraction of the landmark-box size
    colour: float = 0.0  # brightness/contrast/saturation jitter (0: off)


@dataclass
class DataConfig:
    """What a batch holds: P identities × K images each (the global batch, whatever the process count)."""

    manifest: str = ""  # a dataset folder written by `vitdeca annotate` (or its manifest.jsonl)
    extra_manifests: list[str] = field(default_factory=list)  # more dataset folders, mixed in
    extra_repeats: list[int] = field(default_factory=list)  # times each extra dataset's faces are listed
    image_root: str = ""  # overrides the image folder recorded in the dataset's dataset.json
    identities_per_batch: int = 4  # P (DECA: 8 identities × K 2 in its coarse stage)
    images_per_identity: int = 2  # K
    min_images: int = 1  # identities with fewer images are skipped; fewer than K are topped up by repeats
    image_size: int = 224  # must equal model.image_size
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_manifest: str = ""  # held-out dataset scored every run.val_every steps (vitdeca.train.validation)
    val_max_images: int = 0  # an evenly spaced subset of at most this many validation images (0: all)

    @property
    def batch_size(self) -> int:
        return self.identities_per_batch * self.images_per_identity


@dataclass
class LossConfig:
    """Loss weights (0 switches a term off) and switches. Defaults: DECA's released configuration.

    Weight names are the loss-term names (columns of ``losses.csv``); see ``vitdeca.losses``.
    """

    # coarse stage
    landmark: float = 1.0
    eye: float = 1.0
    lip: float = 0.5
    photometric: float = 2.0
    identity: float = 0.2
    reg_shape: float = 1e-4
    reg_expression: float = 1e-4
    reg_albedo: float = 1e-4
    reg_light: float = 1.0
    # coarse stage, samples with ground truth only (synthetic datasets with codes.npz; 0 for photos)
    sup_shape: float = 0.0  # neutral-shape vertex distance, mm
    sup_expression: float = 0.0  # expression-offset vertex distance, mm
    sup_pose: float = 0.0  # |pose − true pose|, radians
    # the sup_* weight of a pseudo-labelled sample (codes fitted by `vitdeca annotate --fit`) relative to
    # an exact synthetic one (1); a factor on the terms above, not a term (0: pseudo-labels unused)
    pseudo_weight: float = 0.3
    # detail stage
    detail_photometric: float = 2.0
    mrf: float = 0.1  # DECA: photo_D (2) × mrf (5e-2)
    symmetry: float = 5e-3
    reg_displacement: float = 5e-3
    # switches
    weighted_landmarks: bool = True  # DECA's per-landmark weights (vitdeca.losses.deca_landmark_weights)
    landmark_visibility: bool = True  # self-occluded landmarks weigh losses.OCCLUDED_LANDMARK_WEIGHT (0.1)
    shape_consistency: bool = True  # coarse: also decode each image with the shape code of another image
    detail_consistency: bool = True  # detail: the same with the detail code
    use_skin_mask: bool = True  # photometric mask: the data's skin mask (else the render's coverage)
    identity_net: str = "dlib"  # "dlib" or "vggface2" (vitdeca.identity.load_identity_net)
    identity_net_path: str = ""  # its weights file ("": the default location)
    vgg19_weights: str = ""  # local VGG19 weights for ID-MRF (else torchvision's cache / download)


@dataclass
class OptimConfig:
    """Adam (DECA), AdamW or SGD with momentum 0.9, an optional warm-up and cosine decay; one optimiser
    per stage."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    grad_clip: float = 0.0  # max global gradient norm; 0: no clipping
    backbone_lr_scale: float = 1.0  # the encoders' pretrained backbones train at lr × this


@dataclass
class RunConfig:
    """Budget, cadence, seed, device and numerics."""

    coarse_steps: int = 1000
    detail_steps: int = 1000
    checkpoint_every: int = 1000
    log_every: int = 10
    image_every: int = 500  # TensorBoard image grids; 0: never
    val_every: int = 0  # validation (data.val_manifest) every N steps and at stage ends; 0: stage ends only
    seed: int = 0
    init: str = ""  # start from a checkpoint's weights (training or DecaModel checkpoint), e.g. coarse.pt
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"  # auto: bf16 on a GPU that has it, else none
    max_nonfinite: int = 5  # stop after this many non-finite steps in a row
    find_unused_parameters: bool = False  # DistributedDataParallel option
    sync_batchnorm: bool = (
        True  # BatchNorm statistics over all GPUs (CUDA only; CPU processes keep their own)
    )
    progress: bool = True


@dataclass
class TrainConfig:
    """The root of a training config."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    stages: list[str] = field(default_factory=lambda: list(STAGES))

    def stage_steps(self, stage: str) -> int:
        return {"coarse": self.run.coarse_steps, "detail": self.run.detail_steps}[stage]

    @property
    def total_steps(self) -> int:
        return sum(self.stage_steps(s) for s in self.stages)


def validate(config: TrainConfig, where: str = "config") -> TrainConfig:
    """Cross-field checks with messages that name the key."""
    if config.model.encoder is None:
        raise VitdecaError(f"{where}: model.encoder is null; training needs an encoder")
    unknown = [s for s in config.stages if s not in STAGES]
    if unknown or not config.stages:
        raise VitdecaError(
            f"{where}: stages must be a non-empty list from {list(STAGES)}, got {config.stages}"
        )
    if list(config.stages) != sorted(config.stages, key=STAGES.index) or len(set(config.stages)) != len(
        config.stages
    ):
        raise VitdecaError(f"{where}: stages must run in the order coarse, detail (each once)")
    if "detail" in config.stages and not config.model.detail:
        raise VitdecaError(f"{where}: stage 'detail' needs model.detail: true")
    positive = {
        "data.identities_per_batch": config.data.identities_per_batch,
        "data.images_per_identity": config.data.images_per_identity,
        "data.image_size": config.data.image_size,
        "run.checkpoint_every": config.run.checkpoint_every,
        "run.log_every": config.run.log_every,
        "run.max_nonfinite": config.run.max_nonfinite,
    }
    if config.run.val_every < 0 or config.data.val_max_images < 0:
        raise VitdecaError(f"{where}: run.val_every and data.val_max_images must be >= 0")
    for key, value in positive.items():
        if value <= 0:
            raise VitdecaError(f"{where}: {key} must be > 0, got {value}")
    for stage in config.stages:
        if config.stage_steps(stage) < 0:
            raise VitdecaError(f"{where}: run.{stage}_steps must be >= 0")
    if config.losses.pseudo_weight < 0:
        raise VitdecaError(f"{where}: losses.pseudo_weight must be >= 0, got {config.losses.pseudo_weight}")
    if not 0.0 <= config.model.dropkey < 1.0:
        raise VitdecaError(f"{where}: model.dropkey must be in [0, 1), got {config.model.dropkey}")
    if config.model.image_size != config.data.image_size:
        raise VitdecaError(
            f"{where}: model.image_size ({config.model.image_size}) must equal data.image_size "
            f"({config.data.image_size})"
        )
    if config.optim.lr <= 0:
        raise VitdecaError(f"{where}: optim.lr must be > 0, got {config.optim.lr}")
    return config


def load_train_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Defaults, then the YAML file, then ``--set`` overrides; validated. ``data.manifest`` is resolved
    against the config file's folder when relative (and so are ``data.val_manifest``,
    ``data.extra_manifests`` and ``run.init``)."""
    config = load_config(TrainConfig, path, list(overrides))
    if path is not None:
        base = os.path.dirname(os.path.abspath(path))
        config.data.manifest = _beside(config.data.manifest, base)
        config.data.val_manifest = _beside(config.data.val_manifest, base)
        config.data.extra_manifests = [_beside(m, base) for m in config.data.extra_manifests]
        config.run.init = _beside(config.run.init, base)
    return validate(config, str(path or "config"))


def _beside(folder: str, base: str) -> str:
    """A relative dataset or checkpoint path resolved against the config file's folder ``base`` when it
    exists there (or nowhere else)."""
    if not folder or os.path.isabs(folder):
        return folder
    candidate = os.path.join(base, folder)
    if os.path.exists(candidate) or not os.path.exists(folder):
        return os.path.normpath(candidate)
    return folder
