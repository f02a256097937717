"""Fixtures for the demo tests: an engine fitting per image (as ``vitdeca demo`` without a checkpoint),
shared by a test module, and the astronaut photo as a file."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def engine(ict_archive, ict_home, tmp_path_factory):
    """A :class:`DemoEngine` without a checkpoint (fitting), its head model from the shared archive."""
    os.environ.setdefault("VITDECA_ICT_FACEKIT", str(ict_archive))
    os.environ.setdefault("VITDECA_HOME", str(ict_home))
    from vitdeca.demo.engine import DemoEngine

    return DemoEngine(device="cpu", workdir=tmp_path_factory.mktemp("demo_jobs"))


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory):
    """scikit-image's astronaut (public domain) as a PNG file."""
    from skimage import data

    from vitdeca import media

    return media.save_png(tmp_path_factory.mktemp("astronaut") / "astronaut.png", data.astronaut())
