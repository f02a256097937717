"""Batch output that loses nothing: unique names, one transaction per input, resume that trusts only
completed folders, summary.json on every exit path, inputs under --out left out."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from vitdeca.pipeline.batch import BatchRunner, RunOptions
from vitdeca.pipeline.outdir import DONE_MARKER, OutputFolder, output_names, safe_name


def _files(root: Path, *names: str | bytes, data: bytes = b"good") -> list[Path]:
    paths = []
    for name in names:
        path = Path(os.fsdecode(os.path.join(os.fsencode(root), os.fsencode(name))))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def _run(rec, writer, out: Path, paths, **options):
    runner = BatchRunner(rec, out, RunOptions(progress=False, **options), writer=writer)
    summary = runner.run(paths)
    return summary, json.loads((out / "summary.json").read_text())


def _check_unique(names: list[str]) -> None:
    assert len({n.casefold() for n in names}) == len(names), names
    for name in names:
        name.encode("utf-8")  # always writable (no surrogates)
        assert name and not name.startswith(".") and "/" not in name and len(name.encode()) <= 120


def test_names_of_the_issue_case_are_distinct_and_stable(tmp_path):
    paths = _files(tmp_path, "a/x.jpg", "b/x.png", "c/x-2.jpg")
    names = output_names(paths)
    assert names == ["x_jpg", "x_png", "x-2"]
    assert output_names(paths[::-1]) == names[::-1]  # a name depends on the set, not the order
    trap = _files(tmp_path, "a/x.jpg", "b/x.jpg", "c/x_jpg.png", "d/a_x_jpg.gif", "X.JPG")
    _check_unique(output_names(trap))


def test_names_are_unique_for_random_path_sets(tmp_path):
    rng = random.Random(0)
    parts = ["a", "b", "A", "x", "x_jpg", "a_x", "x-2", "é", "e\u0301"]  # é composed and decomposed
    for _ in range(300):
        paths = {
            tmp_path.joinpath(
                *rng.choices(parts, k=rng.randint(0, 2)),
                rng.choice(parts) + rng.choice(["", ".jpg", ".JPG", ".png", ".jpg.png"]),
            )
            for _ in range(rng.randint(1, 8))
        }
        paths = sorted(p for p in paths if p.name)
        names = output_names(paths)
        _check_unique(names)
        assert output_names(paths) == names


def test_unsafe_characters_and_undecodable_bytes():
    assert safe_name(os.fsdecode(b"caf\xe9")) == "caf%E9"
    assert safe_name("a\nb:c*?") == "a_b_c__"
    assert safe_name("..hidden ") == "hidden" and safe_name("...") == "input"
    long = Path("/" + "é" * 200 + ".jpg")
    _check_unique(output_names([long, long.with_suffix(".png")]))


def test_issue_case_writes_every_input_and_credits_it_on_reruns(fake_rec, writer, tmp_path):
    paths = _files(tmp_path / "in", "a/x.jpg", "b/x.png", "c/x-2.jpg")
    out = tmp_path / "out"
    summary, _ = _run(fake_rec, writer, out, paths)
    outputs = [r.outputs for r in summary.records]
    assert [r.status for r in summary.records] == ["ok"] * 3 and len({o[0] for o in outputs}) == 3
    for record in summary.records:
        folder = out / Path(record.outputs[0]).parent
        assert json.loads((folder / DONE_MARKER).read_text())["source"] == record.path
    again, saved = _run(fake_rec, writer, out, paths)
    assert fake_rec.batches == [1, 1, 1]  # the second run reconstructed nothing
    assert [(r.path, r.outputs) for r in again.records] == [(r.path, r.outputs) for r in summary.records]
    assert all("skipped" in r["message"] for r in saved["records"]) and saved["complete"] is True


def test_a_folder_of_another_input_is_not_taken_as_done(fake_rec, writer, tmp_path):
    (a,) = _files(tmp_path / "one", "x.jpg")
    (b,) = _files(tmp_path / "two", "x.jpg")
    out = tmp_path / "out"
    _run(fake_rec, writer, out, [a])
    summary, _ = _run(fake_rec, writer, out, [b])  # same name "x", other input
    assert summary.records[0].status == "failed" and "outputs of another input" in summary.records[0].message
    assert json.loads((out / "x" / DONE_MARKER).read_text())["source"] == str(a)  # not overwritten


def test_partial_folders_are_redone_and_reported(fake_rec, writer, tmp_path):
    (a, b) = _files(tmp_path / "in", "a.jpg", "b.jpg")
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / ".a.txt.x1.txt.tmp").write_text("half")  # what a killed run left (no marker)
    (out / ".b.partial").mkdir()  # a killed transaction
    (out / ".b.partial" / "b.txt").write_text("half")
    summary, _ = _run(fake_rec, writer, out, [a, b])
    assert [r.status for r in summary.records] == ["ok", "ok"]
    assert "redone" in summary.records[0].message and "incomplete" in summary.records[0].message
    assert sorted(p.name for p in (out / "a").iterdir()) == [DONE_MARKER, "a.txt"]
    assert not (out / ".b.partial").exists() and (out / "b" / "b.txt").read_text().startswith("0")


def test_ctrl_c_keeps_finished_records_and_no_half_folder(fake_rec, writer, tmp_path):
    paths = _files(tmp_path / "in", "a.jpg", "b.jpg", "c.jpg")
    out = tmp_path / "out"

    def interrupted(result, folder, stem, save):
        if stem == "b":
            (folder / "b.txt").write_text("half")
            raise KeyboardInterrupt
        return writer(result, folder, stem, save)

    with pytest.raises(KeyboardInterrupt):
        _run(fake_rec, interrupted, out, paths, batch_size=4)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["complete"] is False and [Path(r["path"]).name for r in saved["records"]] == ["a.jpg"]
    assert (out / "a" / DONE_MARKER).exists() and not (out / "b").exists()
    assert not (out / ".b.partial").exists()
    summary, saved = _run(fake_rec, writer, out, paths, batch_size=4)
    assert [r.status for r in summary.records] == ["ok"] * 3 and "skipped" in summary.records[0].message
    assert saved["complete"] is True and (out / "b" / "b.txt").exists()


def test_a_failed_face_is_redone_on_the_next_run(fake_rec, writer, tmp_path):
    (a,) = _files(tmp_path / "in", "a.jpg", data=b"two")
    out = tmp_path / "out"

    def disk_full_on_second_face(result, folder, stem, save):
        if stem.endswith("_1"):
            raise OSError(28, "No space left on device")
        return writer(result, folder, stem, save)

    summary, _ = _run(fake_rec, disk_full_on_second_face, out, [a], all_faces=True)
    assert [r.status for r in summary.records] == ["ok", "failed"]
    assert OutputFolder(out, "a", str(a)).state()[0] == "failed"
    summary, _ = _run(fake_rec, writer, out, [a], all_faces=True)
    assert [r.status for r in summary.records] == ["ok", "ok"] and "redone" in summary.records[0].message


def test_non_utf8_and_unicode_file_names_with_the_real_writer(fake_rec, tmp_path):
    paths = _files(tmp_path / "in", b"caf\xe9.jpg", "José.png", "日本.jpg")
    out = tmp_path / "out"
    runner = BatchRunner(fake_rec, out, RunOptions(progress=False, save=frozenset({"obj", "texture"})))
    summary = runner.run(paths)
    assert [r.status for r in summary.records] == ["ok"] * 3, [r.message for r in summary.records]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(["caf%E9", "José", "日本"])
    mtl = (out / "caf%E9" / "caf%E9.mtl").read_text(encoding="utf-8")
    assert "map_Kd caf%E9_texture.png" in mtl and (out / "caf%E9" / "caf%E9_texture.png").exists()
    json.loads((out / "summary.json").read_text())  # valid JSON with the undecodable path escaped


def test_inputs_inside_the_output_folder_are_left_out(fake_rec, writer, tmp_path):
    photos = _files(tmp_path / "in", "a.jpg", "b.png")
    out = tmp_path / "in" / "results"
    _run(fake_rec, writer, out, photos)
    from vitdeca.media import expand_inputs

    (out / "a" / "a_vis.png").write_bytes(b"good")  # as the real writer would leave
    everything = expand_inputs([tmp_path / "in"])
    assert any(out in p.parents for p in everything)
    summary, _ = _run(fake_rec, writer, out, everything)
    assert sorted(r.path for r in summary.records) == sorted(str(p) for p in photos)


KILLED_RUN = """
import os, signal, sys, types
from pathlib import Path
import numpy as np
from vitdeca.pipeline.batch import BatchRunner, RunOptions
from vitdeca.pipeline.reconstructor import Prepared

class Rec:
    def prepare(self, path, all_faces=False):
        return Prepared(str(path), np.zeros((4, 4, 3), np.uint8), [b"face"])
    def reconstruct_crops(self, prepared):
        return [[types.SimpleNamespace(face_index=0)] for _ in prepared]

def writer(result, folder, stem, save):
    (folder / f"{stem}.txt").write_text("half")
    if stem == "b":
        os.kill(os.getpid(), signal.SIGKILL)  # killed while writing b's folder
    return [folder / f"{stem}.txt"]

BatchRunner(Rec(), sys.argv[1], RunOptions(progress=False, batch_size=4), writer=writer).run(
    [Path(p) for p in sys.argv[2:]]
)
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_a_run_killed_mid_write_is_resumed_without_trusting_the_half_folder(fake_rec, writer, tmp_path):
    import subprocess
    import sys

    paths = _files(tmp_path / "in", "a.jpg", "b.jpg", "c.jpg")
    out = tmp_path / "out"
    command = [sys.executable, "-c", KILLED_RUN, str(out), *map(str, paths)]
    assert subprocess.run(command, check=False).returncode == -9
    assert (out / "a" / DONE_MARKER).exists() and not (out / "b").exists() and (out / ".b.partial").exists()
    summary, saved = _run(fake_rec, writer, out, paths)
    assert [r.status for r in summary.records] == ["ok"] * 3 and saved["complete"] is True
    assert "skipped" in summary.records[0].message and "skipped" not in summary.records[1].message
    assert (out / "b" / "b.txt").read_text().startswith("0") and not (out / ".b.partial").exists()
