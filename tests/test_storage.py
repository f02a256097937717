"""vitdeca.storage: atomic writes, checksums, local 'downloads'."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import time

import pytest

from vitdeca.errors import VitdecaError
from vitdeca.storage import _HOST, atomic_path, atomic_write_bytes, download, fetch, sha256_file


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


def _killed_mid_write(target) -> None:
    """Run a process that is SIGKILLed while it writes ``target`` through atomic_path."""
    code = (
        "import os, signal, sys\n"
        "from vitdeca.storage import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half a checkpoint')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(target)], check=False)
    assert result.returncode == -9


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "last.pt"
    _killed_mid_write(target)
    _killed_mid_write(target)  # its atomic_path removes the first one's leftover
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 1 and all(n.startswith(".last.pt.") and n.endswith(".tmp") for n in left)
    other = tmp_path / "other.pt"
    _killed_mid_write(other)  # another target's leftover is not this write's business
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    live = tmp_path / f".last.pt.{sleeper.pid}@{_HOST}.abc.pt.tmp"  # a writer that still runs
    live.write_bytes(b"")
    elsewhere = tmp_path / f".last.pt.{sleeper.pid + 1}@{_HOST}x.abc.pt.tmp"  # another host's writer
    elsewhere.write_bytes(b"")
    old_style = tmp_path / ".last.pt.k2j4h5g6.pt.tmp"  # no pid in the name: removed once a day old
    old_style.write_bytes(b"")
    atomic_write_bytes(target, b"full checkpoint")
    assert target.read_bytes() == b"full checkpoint"
    names = {p.name for p in tmp_path.iterdir()}
    assert not any(n.startswith(".last.pt.") and "@" in n for n in names - {live.name, elsewhere.name})
    assert {live.name, elsewhere.name, old_style.name} <= names
    assert sum(n.startswith(".other.pt.") for n in names) == 1
    os.utime(old_style, (time.time() - 2 * 86400,) * 2)
    atomic_write_bytes(target, b"again")
    assert not old_style.exists() and live.exists()
    sleeper.kill()
    sleeper.wait()
    atomic_write_bytes(target, b"once more")
    assert not live.exists() and elsewhere.exists()


def test_a_writer_that_recreates_the_temporary_still_gets_the_umask(tmp_path):
    import torch
    from safetensors.torch import save_file  # it writes a new file over the temporary

    old = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "w.safetensors") as tmp:
            tmp.unlink()
            save_file({"x": torch.zeros(2)}, str(tmp))
            os.chmod(tmp, 0o600)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644
