"""Shared fixtures: where ../shared is, and the ICT-FaceKit archive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("VITDECA_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder (real photos, ICT-FaceKit archive). Required in CI."""
    path = _shared_dir()
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing; CI needs ../shared")
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def faces_dir(shared_dir: Path) -> Path:
    return shared_dir / "faces"


@pytest.fixture(scope="session")
def ict_archive(shared_dir: Path) -> Path:
    """The ICT-FaceKit archive given by $VITDECA_ICT_FACEKIT (set by .ci/run) or ../shared/assets."""
    path = Path(os.environ.get("VITDECA_ICT_FACEKIT") or shared_dir / "assets" / "ICT-FaceKit-master.zip")
    if not path.exists():
        pytest.fail(f"ICT-FaceKit archive not found at {path}")
    return path


@pytest.fixture(scope="session")
def ict_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$VITDECA_HOME if set (CI shares its cache), else a fresh folder for this test session."""
    home = os.environ.get("VITDECA_HOME")
    return Path(home) if home else tmp_path_factory.mktemp("vitdeca_home")


@pytest.fixture(scope="session")
def ict_head(ict_archive: Path, ict_home: Path):
    """The ICT-FaceKit head model (``load_head_model("ict")``), converted once per session from the
    ``ict_archive`` fixture into ``ict_home``. Treat it as read-only (it is shared)."""
    from vitdeca.head import load_head_model

    return load_head_model("ict", source=ict_archive, home=ict_home)
