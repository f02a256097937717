"""Training steps on synthetic data, without a dataset or downloads: for device checks and benchmarks.

:func:`synthetic_head` builds a FLAME-format head model with random content (FLAME's vertex and face
counts on a head-sized ellipsoid, triangulated like a real mesh), :func:`synthetic_batch` random crops with
plausible landmarks, and :func:`probe_trainer` a :class:`~vitdeca.train.trainer.Trainer` that has entered a
stage, so that ``trainer.training_step(batch, stage)`` + ``trainer._apply(total)`` is one real step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vitdeca.train.config import TrainConfig
from vitdeca.train.distributed import DistInfo


def synthetic_head(folder: str | Path):
    """A FLAME-format head model with random content written to (and loaded from) ``folder``."""
    from scipy.spatial import ConvexHull

    from vitdeca.head import load_head_model
    from vitdeca.head.synthetic import (
        random_flame_arrays,
        random_landmark_embedding,
        write_flame_pickle,
        write_ringnet_embedding,
    )

    folder = Path(folder)
    arrays = random_flame_arrays(seed=0)
    # random vertex triples would make screen-sized triangles: triangulate the ellipsoid instead
    hull = ConvexHull(arrays["v_template"] / np.array([0.08, 0.11, 0.1]))
    arrays["f"] = hull.simplices[: len(arrays["f"])].astype(np.uint32)
    write_flame_pickle(folder / "generic_model.pkl", arrays)
    write_ringnet_embedding(folder, random_landmark_embedding(n_faces=len(arrays["f"]), seed=1))
    return load_head_model("flame", path=folder / "generic_model.pkl")


def synthetic_batch(batch: int, size: int, device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """``image`` (B,3,S,S) in [0,1], ``landmarks`` (B,68,2) crop pixels around the centre, ``mask``
    (B,1,S,S) ones: the keys a training batch has."""
    gen = torch.Generator().manual_seed(seed)
    landmarks = size / 2 + size / 4 * (torch.rand(batch, 68, 2, generator=gen) - 0.5)
    out = {
        "image": torch.rand(batch, 3, size, size, generator=gen),
        "landmarks": landmarks,
        "mask": torch.ones(batch, 1, size, size),
    }
    return {key: value.to(device) for key, value in out.items()}


def probe_trainer(
    config: TrainConfig,
    run_dir: str | Path,
    model: torch.nn.Module,
    device: torch.device | str,
    stage: str = "coarse",
    info: DistInfo | None = None,
    identity_net=None,
):
    """A Trainer of ``model`` on ``device`` that has entered ``stage`` (no data: batches come from the
    caller). ``identity_net`` None skips the identity loss."""
    from vitdeca.train.trainer import Trainer

    n = config.data.batch_size
    dataset, identities = [None] * n, list(range(n))
    trainer = Trainer(
        config, run_dir, model, dataset, identities, info=info, device=device, identity_net=identity_net
    )
    trainer._enter_stage(stage, 0, 10**6)
    return trainer


def train_step(trainer, batch: dict, stage: str = "coarse") -> float:
    """One forward, backward and update; returns the total loss."""
    result = trainer.training_step(batch, stage)
    trainer._apply(result.total)
    return float(result.total.detach())
