"""Set up and run one training job: the run folder, the config, the process group, the parts, the trainer.

``run_training`` is what ``vitdeca train`` calls (once per process under ``torchrun``). The model, the
dataset and the identity network are built by factories that default to vitdeca's own and can be swapped
(tests use small stand-ins).
"""

from __future__ import annotations

import copy
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vitdeca.config import from_dict, save_config, to_dict
from vitdeca.errors import VitdecaError
from vitdeca.train import checkpoint as ckpt
from vitdeca.train.checkpoint import checkpoint_path
from vitdeca.train.config import TrainConfig, load_train_config, validate
from vitdeca.train.data import mix_seed
from vitdeca.train.distributed import cleanup, init_distributed
from vitdeca.train.objective import load_idmrf
from vitdeca.train.trainer import Trainer
from vitdeca.train.validation import build_validator

log = logging.getLogger(__name__)

ModelFactory = Callable[[TrainConfig], nn.Module]
DataFactory = Callable[[TrainConfig], tuple[Any, list[Any]]]
# Keys that may change when resuming (budget, cadence, numerics, loader); anything else must match.
RESUMABLE_CHANGES = ("run.", "data.num_workers", "losses.vgg19_weights")


def resolve_config(
    run_dir: str | Path, config_path: str | None, overrides: list[str], resume: bool
) -> tuple[TrainConfig, bool]:
    """The run's config and whether to resume from its checkpoint.

    Fresh run: ``config_path`` (None: the defaults) + overrides, refusing a folder that already holds a
    checkpoint. Resume:
    the checkpoint's config, with ``config_path``/overrides allowed to change only the run budget and
    cadence (:data:`RESUMABLE_CHANGES`); without a checkpoint it starts fresh.
    """
    last = checkpoint_path(run_dir)
    if not resume:
        if last.exists():
            raise VitdecaError(f"{run_dir}: already holds a training run; pass --resume or pick a new --out")
        return load_train_config(config_path, overrides), False
    if not last.exists():
        log.info("%s: no checkpoint yet, starting a new run", run_dir)
        return load_train_config(config_path, overrides), False
    saved = ckpt.load_checkpoint(last)["config"]
    if config_path is None:
        from vitdeca.config import apply_overrides

        config = validate(from_dict(TrainConfig, apply_overrides(copy.deepcopy(saved), overrides)), str(last))
    else:
        config = load_train_config(config_path, overrides)
    changed = _changed_keys(saved, to_dict(config))
    frozen = [k for k in changed if not k.startswith(RESUMABLE_CHANGES)]
    if frozen:
        allowed = ", ".join(k + "*" if k.endswith(".") else k for k in RESUMABLE_CHANGES)
        raise VitdecaError(
            f"{last}: the config differs from the checkpoint's in {', '.join(frozen)}; only {allowed} may "
            "change on --resume"
        )
    return config, True


def _changed_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys += _changed_keys(va, vb, f"{prefix}{key}.")
        elif (list(va) if isinstance(va, (list, tuple)) else va) != (
            list(vb) if isinstance(vb, (list, tuple)) else vb
        ):
            keys.append(f"{prefix}{key}")
    return keys


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (third-party code may draw from the global state)
    torch.manual_seed(seed)


def default_model(config: TrainConfig) -> nn.Module:
    """vitdeca's reconstructor for ``config.model``."""
    from vitdeca.model import DecaModel

    return DecaModel(config.model)


def default_data(config: TrainConfig) -> tuple[Any, list[int]]:
    """The training faces and their identity labels: the FaceDataset of ``config.data.manifest`` (a
    `vitdeca annotate` or `vitdeca synth` folder), mixed with ``data.extra_manifests`` (each listed
    ``data.extra_repeats`` times, default once; identities stay apart between datasets)."""
    from vitdeca.train.data import MixedDatasets

    data = config.data
    if not data.manifest:
        raise VitdecaError("data.manifest is empty; set it in the config or with --set data.manifest=FOLDER")
    repeats = list(data.extra_repeats) or [1] * len(data.extra_manifests)
    if len(repeats) != len(data.extra_manifests) or min(repeats, default=1) < 1:
        raise VitdecaError("data.extra_repeats must give a count >= 1 for each of data.extra_manifests")
    parts, labels, offset = [], [], 0
    for k, folder in enumerate([data.manifest, *data.extra_manifests]):
        dataset = _face_dataset(config, folder, data.image_root if k == 0 else "")
        for _ in range(1 if k == 0 else repeats[k - 1]):
            parts.append(dataset)
            labels.extend((dataset.identity_index + offset).tolist())
        offset += len(dataset.identities)
    return (parts[0] if len(parts) == 1 else MixedDatasets(parts)), labels


def _face_dataset(config: TrainConfig, folder: str, image_root: str) -> Any:
    from vitdeca.data import Augmentation, ColourJitter, FaceDataset

    path = Path(folder)
    path = path.parent if path.is_file() else path
    aug = config.data.augment
    augmentation = None
    if aug.enabled:
        colour = ColourJitter(aug.colour, aug.colour, aug.colour) if aug.colour > 0 else None
        augmentation = Augmentation((aug.scale_min, aug.scale_max), aug.translation, colour)
    return FaceDataset(
        path, image_root=image_root or None, size=config.data.image_size, augmentation=augmentation,
        seed=config.run.seed,
    )  # fmt: skip


def load_identity(config: TrainConfig, device: torch.device) -> Any:
    """The frozen identity network for L_id (None when the term is off)."""
    if config.losses.identity == 0.0 or "coarse" not in config.stages:
        return None
    from vitdeca.identity import load_identity_net

    net = load_identity_net(config.losses.identity_net, config.losses.identity_net_path or None)
    return net.to(device).eval().requires_grad_(False)


def load_mrf(config: TrainConfig, device: torch.device) -> nn.Module | None:
    """ID-MRF for the detail stage, or None (term off, or its VGG19 weights unavailable: warned)."""
    if config.losses.mrf == 0.0 or "detail" not in config.stages:
        return None
    try:
        return load_idmrf(config.losses.vgg19_weights).to(device)
    except VitdecaError as exc:
        log.warning("ID-MRF disabled, the other losses train: %s", exc)
        return None


def init_weights(model: nn.Module, path: str, state: dict[str, Any] | None = None) -> None:
    """Load a checkpoint's weights (``vitdeca train`` or ``DecaModel.save``) into ``model`` (strict);
    ``state``: the checkpoint's ``model`` entry when already read (:func:`read_init`)."""
    ckpt.load_model_state(path, model, read_init(path) if state is None else state)
    log.info("initialised the model from %s", path)


def read_init(path: str) -> dict[str, Any]:
    """The ``model`` state of ``run.init``'s checkpoint, read before any work (a bad file stops the run
    at once, and nothing in it is executed: :func:`vitdeca.weights.read_weights`)."""
    from vitdeca.model import read_checkpoint

    return read_checkpoint(path)["model"]


def run_training(
    config_path: str | None,
    run_dir: str | Path,
    overrides: list[str] = (),
    resume: bool = False,
    model_factory: ModelFactory = default_model,
    data_factory: DataFactory = default_data,
    identity_factory: Callable[[TrainConfig, torch.device], Any] = load_identity,
    validator_factory: Callable[[TrainConfig], Any] = build_validator,
) -> str:
    """Train into ``run_dir`` (one process of a torchrun job, or the only one). Returns ``"done"`` or
    ``"interrupted"``."""
    run_dir = Path(run_dir)
    config, resuming = resolve_config(run_dir, config_path, list(overrides), resume)
    init_state = read_init(config.run.init) if config.run.init and not resuming else None
    info, device = init_distributed(config.run.device)
    try:
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, run_dir / "config.yaml")
        seed_everything(config.run.seed)
        model = model_factory(config)
        dataset, identities = data_factory(config)
        trainer = Trainer(
            config,
            run_dir,
            model,
            dataset,
            identities,
            info=info,
            device=device,
            identity_net=identity_factory(config, device),
            mrf=load_mrf(config, device),
            validator=validator_factory(config) if info.is_main else None,
        )
        seed_everything(mix_seed(config.run.seed, info.rank, 4))
        if resuming:
            trainer.restore(checkpoint_path(run_dir))
        elif config.run.init:
            init_weights(model, config.run.init, init_state)
        return trainer.fit()
    finally:
        cleanup()
