"""The annotated dataset on disk: ``manifest.jsonl`` (one JSON object per face or rejected file) and
``dataset.json`` (how it was made, and where the images are).

Record keys: ``image`` (path relative to the image root, POSIX), ``identity`` (first-level folder name,
or null for files directly in the root), ``face_index``, ``box`` [x0,y0,x1,y1], ``landmarks`` 68×[x,y]
(original-image pixels, pixel-centre frame, EXIF orientation applied), ``score``, ``mask``/``crop`` (paths
relative to the dataset folder, or null), ``crop_matrix`` (2×3 original → crop, or null), ``width``,
``height``, ``faces_found``, ``image_records`` (lines written for this image), ``status`` (``ok``,
``no_face``, ``too_small``, ``unreadable``, ``too_large``, ``error``, ``crashed``) and ``message``; with
``annotate --fit`` also ``fit`` (the face's fitted codes, :mod:`vitdeca.data.pseudo`).

Lines are appended, flushed and fsynced one image at a time, so a kill loses at most the image being
written; :func:`repair_manifest` drops a torn last line and the lines of an image whose group is incomplete.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.jsonl"
META_NAME = "dataset.json"
REJECTED_NAME = "rejected.txt"
REPORT_NAME = "report.json"
STATUS_OK = "ok"


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a manifest. A torn (unterminated, unparsable) last line is ignored with a warning;
    a bad line anywhere else raises :class:`VitdecaError` naming the file and line."""
    records, _ = _parse(Path(path))
    return records


def _parse(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(records, byte length of the intact prefix)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    except OSError as exc:
        raise VitdecaError(f"{path}: cannot read ({exc.strerror})") from exc
    records, offset = [], 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        last = number == len(lines)
        if line.strip():
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                if last:  # no newline after it: a write cut short by a kill
                    log.warning("%s: ignoring a torn last line (%d bytes)", path, len(line))
                    break
                raise VitdecaError(f"{path}:{number}: not a JSON record ({exc})") from exc
            if last:  # complete JSON but no newline: keep it, and let the next append add the newline
                records.append(record)
                offset += len(line)
                break
            records.append(record)
        offset += len(line) + (0 if last else 1)
    return records, offset


def repair_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Make ``path`` safe to append to and return its complete records.

    Removes a torn last line, terminates an unterminated one, and drops the lines of any image whose
    ``image_records`` count is not all there (rewritten atomically; such images are redone).
    """
    path = Path(path)
    records, intact = _parse(path)
    complete = _complete_groups(records)
    if len(complete) != len(records):
        log.warning(
            "%s: dropping %d lines of incompletely written images", path, len(records) - len(complete)
        )
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in complete))
        return complete
    if path.exists():
        with open(path, "r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            if intact < size:
                handle.truncate(intact)
            if intact:
                handle.seek(intact - 1)
                if handle.read(1) != b"\n":
                    handle.seek(intact)
                    handle.write(b"\n")
            handle.flush()
            os.fsync(handle.fileno())
    return records


def _complete_groups(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.get("image")] = counts.get(record.get("image"), 0) + 1
    return [r for r in records if counts[r.get("image")] >= int(r.get("image_records") or 1)]


class ManifestWriter:
    """Appends the records of one image at a time: one write, then flush and fsync."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        data = "".join(json.dumps(record) + "\n" for record in records).encode()
        self._handle.write(data)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> ManifestWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_meta(dataset_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``dataset.json`` of a dataset folder, or None when there is none."""
    path = Path(dataset_dir) / META_NAME
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VitdecaError(f"{path}: unreadable dataset description ({exc})") from exc


def write_meta(dataset_dir: str | os.PathLike, meta: dict[str, Any]) -> None:
    """Write ``dataset.json`` atomically."""
    with atomic_path(Path(dataset_dir) / META_NAME) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
