"""vitdeca.storage: atomic writes, checksums, local 'downloads'."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path, atomic_write_bytes, download, fetch, sha256_file


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_atomic_write_uses_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "f.txt", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def test_download_from_file_url_checks_the_checksum(tmp_path):
    source = tmp_path / "asset.zip"
    source.write_bytes(b"payload" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    got = download(source.as_uri(), tmp_path / "copy.zip", sha256=digest, progress=False)
    assert sha256_file(got) == digest
    with pytest.raises(VitdecaError, match="checksum mismatch"):
        download(source.as_uri(), tmp_path / "bad.zip", sha256="0" * 64, progress=False)
    assert not (tmp_path / "bad.zip").exists()


def test_unreachable_sources_name_themselves(tmp_path):
    with pytest.raises(VitdecaError, match="cannot download"):
        download((tmp_path / "missing.zip").as_uri(), tmp_path / "x.zip", progress=False)
    with pytest.raises(VitdecaError, match="nope.zip: no such file"):
        fetch(tmp_path / "nope.zip", tmp_path / "y.zip")
