"""Files on disk: the vitdeca home folder, atomic writes, checksums and downloads.

Every write that matters (caches, checkpoints, manifests) goes through :func:`atomic_path`, so an
interrupted process never leaves a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from vitdeca.errors import VitdecaError

ENV_HOME = "VITDECA_HOME"


def vitdeca_home() -> Path:
    """The cache/data folder: ``$VITDECA_HOME`` or ``~/.cache/vitdeca`` (created on demand)."""
    home = Path(os.environ.get(ENV_HOME) or Path.home() / ".cache" / "vitdeca").expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VitdecaError(f"{home}: cannot create the vitdeca home folder ({exc.strerror})") from exc
    return home


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` only if the block succeeds.

    The temporary file lives in the same folder, so the rename is atomic on POSIX and Windows.
    ``suffix`` defaults to the final file's suffix (some writers pick the format from it).
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VitdecaError(f"{final.parent}: cannot create folder ({exc.strerror})") from exc
    remove_stale_temporaries(final)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.{os.getpid()}@{_HOST}.",
        suffix=(final.suffix if suffix is None else suffix) + ".tmp",
        dir=final.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    mode = 0o666 & ~_umask()  # mkstemp makes 0600; the final file gets the usual permissions
    os.chmod(tmp, mode)
    try:
        yield tmp
        os.chmod(tmp, mode)  # again: some writers (safetensors' save_file) create the file anew
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


_HOST = re.sub(r"\W", "_", socket.gethostname()) or "host"
OLD_TEMPORARY_AGE_S = 24 * 3600  # temporaries named without their writer's pid (vitdeca <= 0.1.0)


def remove_stale_temporaries(final: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of ``final`` that :func:`atomic_path` left when its process was killed
    (SIGKILL, power loss): those of a process of this host that no longer runs, and unnamed ones older
    than a day. Temporaries of live writers (another process writing the same file) are kept.
    Returns the removed paths."""
    final = Path(final)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(?:(\d+)@(\w+)\.)?[^/]*\.tmp$")
    removed = []
    try:
        candidates = [p for p in final.parent.iterdir() if p.name.startswith(f".{final.name}.")]
    except OSError:
        return removed
    for path in candidates:
        match = pattern.match(path.name)
        if match is None or not _is_stale(path, match.group(1), match.group(2)):
            continue
        with contextlib.suppress(OSError):  # another process may remove it at the same time
            path.unlink()
            removed.append(path)
    return removed


def _is_stale(path: Path, pid: str | None, host: str | None) -> bool:
    if pid is None:
        try:
            return time.time() - path.stat().st_mtime > OLD_TEMPORARY_AGE_S
        except OSError:
            return False
    return host == _HOST and not _process_alive(int(pid))


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs (True when that cannot be told, e.g. on Windows)."""
    if pid == os.getpid() or os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs under another user
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(final: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's contents."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def is_url(text: str) -> bool:
    """True for http(s)/ftp/file URLs."""
    return text.split("://", 1)[0] in {"http", "https", "ftp", "file"} and "://" in text


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` atomically, with a progress bar and an optional checksum.

    Raises :class:`VitdecaError` naming the URL when it cannot be reached or the checksum differs.
    """
    from tqdm import tqdm

    dest = Path(dest)
    try:
        response = urllib.request.urlopen(url, timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise VitdecaError(f"{url}: cannot download ({reason}); are you offline?") from exc
    total = int(response.headers.get("Content-Length") or 0) or None
    with response, atomic_path(dest) as tmp, open(tmp, "wb") as out:
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
            while block := response.read(1 << 20):
                out.write(block)
                bar.update(len(block))
        out.flush()
        out.close()
        if sha256 is not None and (got := sha256_file(tmp)) != sha256:
            raise VitdecaError(f"{url}: checksum mismatch (expected sha256 {sha256}, got {got})")
    return dest


def fetch(source: str | os.PathLike, dest: str | os.PathLike, sha256: str | None = None) -> Path:
    """Return a local path for ``source``: a URL is downloaded to ``dest``, a path is checked and copied."""
    source_text = os.fspath(source)
    if is_url(source_text):
        return download(source_text, dest, sha256=sha256)
    path = Path(source_text).expanduser()
    if not path.exists():
        raise VitdecaError(f"{path}: no such file or folder")
    if Path(dest) != path and path.is_file():
        with atomic_path(dest) as tmp:
            shutil.copyfile(path, tmp)
        return Path(dest)
    return path
