"""The batch runner: per-input isolation, summary.json, output naming, overwrite, videos, bad folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitdeca import media
from vitdeca.errors import VitdecaError
from vitdeca.pipeline.batch import BatchRunner, Record, RunOptions, Summary, parse_save, prepare_output_dir


def _files(folder, **contents):
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in contents.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in contents]


def _run(rec, writer, tmp_path, paths, **options):
    out = tmp_path / "out"
    summary = BatchRunner(rec, out, RunOptions(progress=False, **options), writer=writer).run(paths)
    saved = json.loads((out / "summary.json").read_text())
    assert saved["records"] == [r.as_dict() for r in summary.records]
    assert saved["counts"] == summary.counts
    return summary, out


def test_mixed_folder_each_input_gets_a_status(fake_rec, writer, tmp_path):
    names = {"a.jpg": b"good", "b.jpg": b"bad", "c.jpg": b"none", "d.jpg": b"boom", "e.png": b"good"}
    _files(tmp_path / "in", **names)
    paths = media.expand_inputs([tmp_path / "in"])
    summary, out = _run(fake_rec, writer, tmp_path, paths, batch_size=2)
    status = {r.path.rsplit("/", 1)[1]: r.status for r in summary.records}
    assert status == {"a.jpg": "ok", "b.jpg": "failed", "c.jpg": "no_face", "d.jpg": "failed", "e.png": "ok"}
    messages = {r.path.rsplit("/", 1)[1]: r.message for r in summary.records}
    assert "b.jpg: not a readable image" in messages["b.jpg"]
    assert messages["d.jpg"] == "RuntimeError: prepare exploded"
    assert messages["c.jpg"] == "no face found"
    assert (out / "a" / "a.txt").exists() and (out / "e" / "e.txt").exists()
    assert not (out / "b").exists() and not (out / "c").exists()
    ok = [r for r in summary.records if r.status == "ok"]
    assert [r.outputs for r in ok] == [["a/a.txt"], ["e/e.txt"]]
    assert all(r.seconds >= 0 for r in summary.records)
    assert summary.counts == {"ok": 2, "no_face": 1, "failed": 2}
    assert summary.line().startswith("5 inputs: 2 ok, 1 no face, 2 failed (2 faces)")


def test_user_errors_log_one_warning_line_and_bugs_log_their_traceback(fake_rec, writer, tmp_path, caplog):
    paths = _files(tmp_path / "in", **{"b.jpg": b"bad", "d.jpg": b"boom", "a.jpg": b"good"})
    with caplog.at_level("INFO", logger="vitdeca.pipeline.batch"):
        summary, _ = _run(fake_rec, writer, tmp_path, paths)
    assert [r.status for r in summary.records] == ["failed", "failed", "ok"]  # the batch goes on
    logged = {r.getMessage().split(":")[0].rsplit("/", 1)[1]: r for r in caplog.records if r.exc_info or
              r.levelname in ("WARNING", "ERROR")}  # fmt: skip
    user, bug = logged["b.jpg"], logged["d.jpg"]
    assert user.levelname == "WARNING" and not user.exc_info
    assert bug.levelname == "ERROR" and "RuntimeError: prepare exploded" in bug.getMessage()
    assert bug.exc_info[0] is RuntimeError  # the traceback is kept


def test_a_crash_in_a_batch_fails_only_its_input(fake_rec, writer, tmp_path):
    paths = _files(tmp_path / "in", **{"a.jpg": b"good", "b.jpg": b"crash", "c.jpg": b"good"})
    summary, out = _run(fake_rec, writer, tmp_path, paths, batch_size=3)
    got = [(r.path.rsplit("/", 1)[1], r.status) for r in summary.records]
    assert got == [("a.jpg", "ok"), ("b.jpg", "failed"), ("c.jpg", "ok")]
    assert fake_rec.batches == [3, 1, 1, 1]  # the whole batch, then one by one
    assert (out / "c" / "c.txt").exists()


def test_all_faces_and_stems(fake_rec, writer, tmp_path):
    a = _files(tmp_path / "x", **{"img.jpg": b"two"})
    b = _files(tmp_path / "y", **{"img.png": b"two"})
    summary, out = _run(fake_rec, writer, tmp_path, a + b, all_faces=True)
    assert [(r.face_index, r.outputs) for r in summary.records] == [
        (0, ["img_jpg/img_jpg.txt"]),
        (1, ["img_jpg/img_jpg_1.txt"]),
        (0, ["img_png/img_png.txt"]),
        (1, ["img_png/img_png_1.txt"]),
    ]
    summary, _ = _run(fake_rec, writer, tmp_path, a, all_faces=False, overwrite=True)
    assert len(summary.records) == 1


def test_existing_outputs_are_skipped_unless_overwrite(fake_rec, writer, tmp_path):
    paths = _files(tmp_path / "in", **{"a.jpg": b"good"})
    _run(fake_rec, writer, tmp_path, paths)
    summary, _ = _run(fake_rec, writer, tmp_path, paths)
    assert summary.records[0].status == "ok" and "skipped" in summary.records[0].message
    assert fake_rec.batches == [1]
    summary, _ = _run(fake_rec, writer, tmp_path, paths, overwrite=True)
    assert summary.records[0].message == "" and fake_rec.batches == [1, 1]


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VitdecaError, match="file"):
        prepare_output_dir(blocker)
    with pytest.raises(VitdecaError, match="cannot write"):
        prepare_output_dir(blocker / "sub")


def test_parse_save():
    assert parse_save("obj,ply") == {"obj", "ply"}
    every = "obj,ply,glb,texture,depth,landmarks,vis,codes,now,arkit,avatar"
    assert parse_save("all") == set(parse_save(every))
    assert parse_save("+now") == parse_save("default") | {"now"}
    assert parse_save("+arkit,avatar") == parse_save("default") | {"arkit", "avatar"}  # the README
    with pytest.raises(VitdecaError, match="'objj'"):
        parse_save("objj")


def test_counts_take_the_worst_face(tmp_path):
    records = [
        Record("a", 0, "ok"),
        Record("a", 1, "failed"),
        Record("b", None, "no_face"),
        Record("c", 0, "ok"),
    ]
    assert Summary(tmp_path, records).counts == {"ok": 1, "no_face": 1, "failed": 1}


def _video(path, n=9, size=32):
    with media.video_writer(path, fps=10) as write:
        for i in range(n):
            write(np.full((size, size, 3), 20 * i, np.uint8))
    return path


def test_video_outputs(fake_rec, writer, tmp_path):
    clip = _video(tmp_path / "in" / "clip.mp4")
    summary, out = _run(fake_rec, writer, tmp_path, [clip], video_frames=True)
    (record,) = summary.records
    assert record.status == "ok" and record.message == "9 frames: 6 with a face, 3 without"
    assert record.outputs[0] == "clip/clip_vis.mp4"
    assert (
        "clip/frames/clip_000001.txt" in record.outputs
        and "clip/frames/clip_000002.txt" not in record.outputs
    )
    frames = list(media.iter_video(out / "clip" / "clip_vis.mp4"))
    assert len(frames) == 9 and frames[0][1].shape == (32, 4 * 32, 3)
    codes = np.load(out / "clip" / "clip_codes.npz")
    assert codes["frame_index"].tolist() == [0, 1, 3, 4, 6, 7]
    assert codes["shape"].shape == (6, 4) and codes["light"].shape == (6, 27)
    lmk = np.load(out / "clip" / "clip_landmarks2d.npy")
    assert lmk.shape == (9, 68, 2) and np.isnan(lmk[2]).all() and np.isfinite(lmk[1]).all()


def test_a_video_is_opened_once_and_closed(fake_rec, writer, tmp_path, monkeypatch):
    opened, closed = [], []

    class CountingVideo(media.Video):
        def __init__(self, path):
            super().__init__(path)
            opened.append(path)

        def close(self):
            closed.append(self.path)
            super().close()

    monkeypatch.setattr(media, "Video", CountingVideo)
    clip = _video(tmp_path / "in" / "clip.mp4")
    summary, _ = _run(fake_rec, writer, tmp_path, [clip], save=parse_save("vis,codes,arkit"))
    assert summary.records[0].status == "ok"
    assert opened == closed == [clip]


def test_unreadable_video_fails_alone(fake_rec, writer, tmp_path):
    junk = tmp_path / "in" / "junk.mp4"
    junk.parent.mkdir(parents=True)
    junk.write_bytes(b"no video here" * 20)
    good = _files(tmp_path / "in", **{"a.jpg": b"good"})
    summary, out = _run(fake_rec, writer, tmp_path, [junk, *good])
    assert [r.status for r in summary.records] == ["failed", "ok"]
    assert "junk.mp4: cannot read as a video" in summary.records[0].message
