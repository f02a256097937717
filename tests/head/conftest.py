"""Synthetic FLAME-format files (random content, official layout), written once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from vitdeca.head.synthetic import (
    random_flame_arrays,
    random_landmark_embedding,
    write_deca_embedding,
    write_flame_pickle,
    write_ringnet_embedding,
)


@dataclass
class FlameFiles:
    arrays: dict  # the random model content
    embedding: dict  # static/dynamic landmark faces and barycentrics
    ours: Path  # generic_model.pkl (chumpy-style) + RingNet embedding pair
    deca: Path  # generic_model.pkl (chumpy-style) + DECA landmark_embedding.npy
    smplx: Path  # FLAME_NEUTRAL.pkl (plain numpy) + RingNet pair, for smplx


@pytest.fixture(scope="session")
def flame_files(tmp_path_factory: pytest.TempPathFactory) -> FlameFiles:
    root = tmp_path_factory.mktemp("flame")
    arrays = random_flame_arrays(seed=0)
    embedding = random_landmark_embedding(seed=1)
    ours, deca, smplx_dir = root / "ours", root / "deca", root / "smplx"
    for folder in (ours, deca, smplx_dir):
        folder.mkdir()
    write_flame_pickle(ours / "generic_model.pkl", arrays, chumpy=True)
    write_ringnet_embedding(ours, embedding)
    (deca / "generic_model.pkl").symlink_to(ours / "generic_model.pkl")
    write_deca_embedding(deca / "landmark_embedding.npy", embedding)
    write_flame_pickle(smplx_dir / "FLAME_NEUTRAL.pkl", arrays, chumpy=False)
    write_ringnet_embedding(smplx_dir, embedding)
    return FlameFiles(arrays, embedding, ours, deca, smplx_dir)


@pytest.fixture(scope="session")
def flame_codes() -> dict[str, np.ndarray]:
    """Random codes for batch 5, including a large negative and a large positive yaw."""
    rng = np.random.default_rng(7)
    pose = rng.normal(scale=0.3, size=(5, 6))
    pose[0, :3] = [0.0, 0.9, 0.0]
    pose[1, :3] = [0.1, -0.9, 0.0]
    return {
        "shape": rng.normal(size=(5, 100)),
        "expression": rng.normal(size=(5, 50)),
        "pose": pose,
        "neck": rng.normal(scale=0.2, size=(5, 3)),
        "eyes": rng.normal(scale=0.2, size=(5, 6)),
    }
