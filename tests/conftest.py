"""Shared fixtures: where ../shared is, and the ICT-FaceKit archive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    return Path(os.environ.get("VITDECA_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="module")
def module_single_thread():
    """One torch intra-op thread for a module of tiny-tensor tests: on a busy 2-core machine a second
    OpenMP thread mostly waits, and spinning barriers make such tests up to ~10x slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where a test leaves screenshots and timings: ``$VITDECA_ARTIFACTS``, else a temporary folder."""
    folder = os.environ.get("VITDECA_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium (:mod:`tests.browser`) through Playwright; skips without either."""
    from .browser import CHROMIUM_ARGS, chromium_path

    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip)")
    path = chromium_path()
    if not path:
        pytest.skip("no Chromium here (apt-get install chromium, or set VITDECA_CHROMIUM)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
