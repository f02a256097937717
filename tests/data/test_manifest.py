"""manifest.jsonl: torn lines from a kill are tolerated and repaired; real corruption is an error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitdeca.data.manifest import ManifestWriter, read_manifest, repair_manifest
from vitdeca.errors import VitdecaError


def _lines(*records: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_writer_appends_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with ManifestWriter(path) as writer:
        writer.append([{"image": "a", "image_records": 2}, {"image": "a", "image_records": 2}])
        writer.append([{"image": "b"}])
    assert [r["image"] for r in read_manifest(path)] == ["a", "a", "b"]
    assert path.read_text().endswith("\n")


def test_torn_last_line_is_ignored_and_cut(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(_lines({"image": "a"}, {"image": "b"}) + '{"image": "c", "lan')
    assert [r["image"] for r in read_manifest(path)] == ["a", "b"]
    assert [r["image"] for r in repair_manifest(path)] == ["a", "b"]
    assert path.read_text() == _lines({"image": "a"}, {"image": "b"})


def test_unterminated_complete_line_is_kept_and_terminated(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(_lines({"image": "a"}) + json.dumps({"image": "b"}))
    assert [r["image"] for r in repair_manifest(path)] == ["a", "b"]
    assert path.read_text() == _lines({"image": "a"}, {"image": "b"})


def test_incomplete_groups_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    whole = [{"image": "a", "image_records": 2, "face_index": k} for k in range(2)]
    path.write_text(_lines(*whole, {"image": "b", "image_records": 3}, {"image": "c"}))
    assert [r["image"] for r in repair_manifest(path)] == ["a", "a", "c"]
    assert [r["image"] for r in read_manifest(path)] == ["a", "a", "c"]


def test_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(_lines({"image": "a"}) + "garbage\n" + _lines({"image": "b"}))
    with pytest.raises(VitdecaError, match="m.jsonl:2"):
        read_manifest(path)


def test_missing_manifest_is_empty(tmp_path: Path) -> None:
    assert read_manifest(tmp_path / "none.jsonl") == []
    assert repair_manifest(tmp_path / "none.jsonl") == []
