"""The output folder of a batch run: a unique, safe name per input, each input's folder written as a
transaction, and the folder's own files kept out of the inputs.

- Names (:func:`output_names`): the input's file stem; where stems clash (case-insensitively, as on
  macOS and Windows), the clashing inputs add their suffix (``x_jpg``), then as many parent folders as
  needed (``a_x_jpg``), and finally a hash of the full path. Every name is compared with every other
  after each step, so names are distinct by construction, and they depend only on the set of inputs
  (the same inputs get the same names on every run). Characters that cannot be written everywhere
  (undecodable bytes of a file name, control characters, ``/\\:*?"<>|``) are replaced, so every name is
  valid UTF-8 and a valid file name.
- Transactions (:class:`OutputFolder`): an input's files are written into the hidden sibling
  ``OUT/.<name>.partial``; a completion marker (:data:`DONE_MARKER`, holding the input's path and its
  records) is written last, then the folder is renamed to ``OUT/<name>``. A run killed at any moment
  leaves either the complete folder or a partial one that the next run removes and redoes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitdeca.storage import atomic_write_bytes

DONE_MARKER = ".vitdeca-done.json"
PARTIAL_SUFFIX = ".partial"
MAX_NAME_BYTES = 120  # leaves room for "_landmarks2d.npy" and the like within the usual 255-byte limit
_UNSAFE = frozenset('/\\:*?"<>|')


# ---------------------------------------------------------------------------------------------- names
def safe_name(text: str) -> str:
    """``text`` as a portable file name: undecodable bytes (surrogate escapes) become ``%XX``, control
    and reserved characters ``_``; NFC-normalised; no leading or trailing dots and spaces."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not valid in the file system's encoding
            out.append(f"%{code - 0xDC00:02X}")
        elif code < 32 or code == 127 or ch in _UNSAFE or 0xD800 <= code <= 0xDFFF:
            out.append("_")
        else:
            out.append(ch)
    return unicodedata.normalize("NFC", "".join(out)).strip(" .") or "input"


def _candidate(path: Path, level: int) -> str:
    """The name of ``path`` at disambiguation ``level`` (0: stem, 1: + suffix, 2..: + parent folders,
    last: + a hash of the whole path)."""
    stem = safe_name(path.stem if path.suffix else path.name)
    with_suffix = f"{stem}_{safe_name(path.suffix[1:])}" if path.suffix else stem
    parents = [safe_name(p) for p in path.parent.parts[1:]]  # without the root
    if level == 0:
        name = stem
    elif level - 1 <= len(parents):
        name = "_".join([*parents[len(parents) - (level - 1) :], with_suffix])
    else:
        digest = hashlib.sha1(os.fsencode(path)).hexdigest()[:10]
        name = f"{with_suffix}-{digest}"
    return _shorten(name, path)


def _shorten(name: str, path: Path) -> str:
    """``name`` cut to :data:`MAX_NAME_BYTES` UTF-8 bytes (plus a hash of ``path`` when cut)."""
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha1(os.fsencode(path)).hexdigest()[:10]
    cut = name.encode()[: MAX_NAME_BYTES - 11].decode(errors="ignore")
    return f"{cut}-{digest}"


def _max_level(path: Path) -> int:
    return len(path.parent.parts)  # stem, suffix, one level per parent folder, then the hash


def output_names(paths: Sequence[Path]) -> list[str]:
    """A distinct folder name per input path (see the module docstring); ``paths`` must be distinct."""
    paths = [Path(os.path.abspath(p)) for p in paths]
    levels = [0] * len(paths)
    while True:
        names = [_candidate(p, level) for p, level in zip(paths, levels, strict=True)]
        groups: dict[str, list[int]] = defaultdict(list)
        for i, name in enumerate(names):
            groups[name.casefold()].append(i)
        clashing = [i for group in groups.values() if len(group) > 1 for i in group]
        if not clashing:
            return names
        raised = False
        for i in clashing:
            if levels[i] < _max_level(paths[i]) + 1:
                levels[i] += 1
                raised = True
        if not raised:
            raise ValueError(f"inputs with the same path: {sorted({names[i] for i in clashing})}")


# --------------------------------------------------------------------------------------------- inputs
def exclude_output_folder(paths: Sequence[Path], out_dir: Path) -> tuple[list[Path], list[Path]]:
    """(inputs outside ``out_dir``, inputs inside it): a run never reads its own outputs."""
    out = Path(out_dir).resolve()
    kept, dropped = [], []
    for path in paths:
        (dropped if Path(path).resolve().is_relative_to(out) else kept).append(path)
    return kept, dropped


# ------------------------------------------------------------------------------------- transactions
class OutputFolder:
    """The folder ``out_dir/name`` of one input, written as a transaction (see the module docstring)."""

    def __init__(self, out_dir: Path, name: str, source: str) -> None:
        self.final = out_dir / name
        self.partial = out_dir / f".{name}{PARTIAL_SUFFIX}"
        self.source = source

    def state(self) -> tuple[str, list[dict[str, Any]]]:
        """``("missing", [])``, ``("done", records)`` (complete, every face ok or no face),
        ``("failed", records)`` (complete, but some face failed), ``("partial", [])`` (no valid
        marker: an interrupted run or an older vitdeca) or ``("foreign", [])`` (the completed outputs
        of another input)."""
        if not self.final.is_dir():
            return "missing", []
        try:
            marker = json.loads((self.final / DONE_MARKER).read_text(encoding="utf-8"))
            source, records = marker["source"], list(marker["records"])
        except (OSError, ValueError, KeyError, TypeError):
            return "partial", []
        if source != self.source:
            return "foreign", []
        done = all(r.get("status") in ("ok", "no_face") for r in records)
        return ("done" if done else "failed"), records

    def begin(self) -> Path:
        """A fresh, empty ``.<name>.partial`` folder (a leftover of a killed run is removed first)."""
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)
        return self.partial

    def commit(self, records: list[dict[str, Any]]) -> None:
        """Write the marker, then move the folder into place (replacing an older folder of that name)."""
        data = {"source": self.source, "records": records}
        atomic_write_bytes(self.partial / DONE_MARKER, (json.dumps(data, indent=1) + "\n").encode())
        old = self.final.with_name(f".{self.final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.partial, self.final)
        shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        """Remove the partial folder (nothing of this attempt stays)."""
        with contextlib.suppress(OSError):
            shutil.rmtree(self.partial)
