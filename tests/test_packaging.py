"""The package metadata: an SPDX licence that setuptools reads without deprecation warnings."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_expression_with_its_file(monkeypatch):
    pytest.importorskip("setuptools", minversion="77", reason="license expressions need setuptools >= 77")
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    monkeypatch.chdir(REPO)  # license-files are relative to the project root
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), os.fspath(REPO / "pyproject.toml"))
    messages = [str(w.message).splitlines()[0] for w in caught]
    assert not [m for m in messages if "license" in m.lower() or "deprecat" in m.lower()], messages
    assert dist.metadata.license_expression == "MIT"
    assert dist.metadata.license_files == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "the vitdeca authors" in text
    assert '"setuptools>=77"' in (REPO / "pyproject.toml").read_text()  # older ones reject the string form
