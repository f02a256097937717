"""``vitdeca annotate`` on a folder mixing good photos with every kind of bad file; resume; kills."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitdeca.cli import main
from vitdeca.data.manifest import read_manifest
from vitdeca.faces import detect_faces, landmark_mask, read_image, transform_points, warp_image
from vitdeca.faces.annotate import AnnotateOptions, annotate_folder, list_images

EXPECTED = {
    "alice/good1.jpg": "ok",
    "alice/good2.jpg": "ok",
    "alice/cmyk.jpg": "ok",
    "alice/rotated.jpg": "ok",
    "bob/good3.png": "ok",
    "bob/sixteen.png": "ok",
    "bob/dogs.jpg": "no_face",
    "bob/truncated.jpg": "unreadable",
    "bob/empty.jpg": "unreadable",
    "bob/text.jpg": "unreadable",
    "bob/tiny.png": "too_small",
    "bob/huge.png": "too_large",
    "loose.jpg": "ok",
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, faces_dir: Path, write_huge_png) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    exp, aflw = faces_dir / "deca_testsamples" / "exp", faces_dir / "deca_testsamples" / "AFLW2000"
    (root / "alice").mkdir()
    (root / "bob").mkdir()
    shutil.copy(exp / "3.jpg", root / "alice" / "good1.jpg")
    shutil.copy(exp / "5.jpg", root / "alice" / "good2.jpg")
    Image.open(exp / "2.jpg").convert("CMYK").save(root / "alice" / "cmyk.jpg", quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise: the pixels are stored turned counter-clockwise
    Image.open(exp / "6.jpg").transpose(Image.Transpose.ROTATE_90).save(
        root / "alice" / "rotated.jpg", exif=exif
    )
    Image.open(aflw / "image00202.jpg").save(root / "bob" / "good3.png")
    grey = np.asarray(Image.open(aflw / "image00302.jpg").convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey).save(root / "bob" / "sixteen.png")
    assert Image.open(root / "bob" / "sixteen.png").mode.startswith("I")
    shutil.copy(faces_dir / "dlib_examples" / "dogs.jpg", root / "bob" / "dogs.jpg")
    data = (exp / "4.jpg").read_bytes()
    (root / "bob" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "bob" / "empty.jpg").write_bytes(b"")
    (root / "bob" / "text.jpg").write_text("not an image, just text\n")
    Image.new("RGB", (1, 1), (128, 64, 32)).save(root / "bob" / "tiny.png")
    write_huge_png(root / "bob" / "huge.png")
    shutil.copy(exp / "7.jpg", root / "loose.jpg")
    (root / ".hidden.jpg").write_text("skipped")
    (root / "notes.txt").write_text("skipped")
    return root


@pytest.fixture(scope="module")
def annotated(corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dataset")
    argv = ["annotate", str(corpus), "--out", str(out), "--workers", "2", "--no-progress"]
    assert main(argv + ["--save-crops", "--save-masks"]) == 1  # 1: some files could not be read
    return out


def _by_image(out: Path) -> dict[str, list[dict]]:
    records: dict[str, list[dict]] = {}
    for record in read_manifest(out / "manifest.jsonl"):
        records.setdefault(record["image"], []).append(record)
    return records


def test_every_file_gets_its_status(annotated: Path) -> None:
    records = _by_image(annotated)
    assert {image: r[0]["status"] for image, r in records.items()} == EXPECTED
    assert all(len(r) == 1 for r in records.values())  # largest face only by default
    assert records["alice/good1.jpg"][0]["identity"] == "alice"
    assert records["loose.jpg"][0]["identity"] is None
    for (record,) in records.values():
        assert record["message"] or record["status"] == "ok"
        if record["status"] == "ok":
            assert len(record["landmarks"]) == 68 and len(record["box"]) == 4 and record["face_index"] == 0
        else:
            assert record["landmarks"] is None and record["box"] is None
    assert "1x1" in records["bob/tiny.png"][0]["message"]


def test_rejected_list_and_report(annotated: Path) -> None:
    lines = (annotated / "rejected.txt").read_text().splitlines()
    rejected = {line.split("\t")[0]: line.split("\t")[1] for line in lines}
    assert rejected == {image: status for image, status in EXPECTED.items() if status != "ok"}
    report = json.loads((annotated / "report.json").read_text())
    assert report["files"] == {"ok": 7, "no_face": 1, "unreadable": 3, "too_small": 1, "too_large": 1}
    assert report["faces"] == 7


def test_rotated_exif_landmarks_are_in_the_upright_frame(
    annotated: Path, corpus: Path, faces_dir, nme
) -> None:
    (record,) = _by_image(annotated)["alice/rotated.jpg"]
    upright = read_image(faces_dir / "deca_testsamples" / "exp" / "6.jpg")
    assert (record["height"], record["width"]) == upright.shape[:2]
    (reference,) = detect_faces(upright, "dlib")[:1]
    assert nme(np.array(record["landmarks"]), reference.landmarks) < 0.05  # JPEG re-encoding only


def test_saved_crops_and_masks_follow_the_crop_matrix(annotated: Path, corpus: Path) -> None:
    (record,) = _by_image(annotated)["alice/good1.jpg"]
    matrix = np.array(record["crop_matrix"])
    crop = read_image(annotated / record["crop"])
    expected = warp_image(read_image(corpus / record["image"]), matrix, 224)
    assert crop.shape == (224, 224, 3) and np.abs(crop.astype(int) - expected).max() <= 1
    in_crop = transform_points(np.array(record["landmarks"]), matrix)
    assert in_crop.min() > 0 and in_crop.max() < 224
    mask = np.asarray(Image.open(annotated / record["mask"])) > 127
    np.testing.assert_array_equal(mask, landmark_mask(in_crop, 224, 224))


def test_resume_skips_done_and_repairs_a_torn_line(annotated: Path, corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(annotated, out)
    manifest = out / "manifest.jsonl"
    before = manifest.read_bytes()
    argv = ["annotate", str(corpus), "--out", str(out), "--no-progress", "--save-crops", "--save-masks"]
    assert main(argv) == 1
    assert manifest.read_bytes() == before  # nothing redone
    lines = before.splitlines(keepends=True)
    manifest.write_bytes(b"".join(lines[:4]) + lines[4][:37])  # a kill mid-line
    assert main(argv) == 1
    after = manifest.read_text().splitlines()
    assert all(json.loads(line) for line in after)
    assert sorted(json.loads(line)["image"] for line in after) == sorted(EXPECTED)


def test_incomplete_multi_face_group_is_redone(tmp_path: Path, faces_dir: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(faces_dir / "dlib_examples" / "2008_001322.jpg", root / "three.jpg")
    out = tmp_path / "out"
    options = AnnotateOptions(all_faces=True)
    annotate_folder(root, out, options, progress=False)
    lines = (out / "manifest.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 3 and all(json.loads(line)["image_records"] == 3 for line in lines)
    (out / "manifest.jsonl").write_text("".join(lines[:2]))  # the kill hit between two faces
    report = annotate_folder(root, out, options, progress=False)
    assert report.processed == 1 and report.faces == 3
    assert [json.loads(line)["face_index"] for line in (out / "manifest.jsonl").read_text().splitlines()] == [
        0,
        1,
        2,
    ]


def test_changed_options_are_refused(annotated: Path, corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "copy"
    shutil.copytree(annotated, out)
    assert main(["annotate", str(corpus), "--out", str(out), "--no-progress", "--all-faces"]) == 2
    assert "all_faces=False" in capsys.readouterr().err


def test_unexpected_errors_are_recorded_not_raised(tmp_path: Path, faces_dir: Path, monkeypatch) -> None:
    root = tmp_path / "images"
    root.mkdir()
    shutil.copy(faces_dir / "deca_testsamples" / "exp" / "3.jpg", root / "a.jpg")

    def broken(*args, **kwargs):
        raise RuntimeError("detector exploded")

    monkeypatch.setattr("vitdeca.faces.annotate.detect_faces", broken)
    report = annotate_folder(root, tmp_path / "out", progress=False)
    assert report.files == {"error": 1} and report.failed == 1
    (record,) = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert "RuntimeError: detector exploded" in record["message"]


def test_list_images_skips_hidden_other_files_and_the_output(corpus: Path, tmp_path: Path) -> None:
    images = [str(p) for p in list_images(corpus, exclude=corpus / "bob")]
    assert ".hidden.jpg" not in images and "notes.txt" not in images
    assert not any(image.startswith("bob/") for image in images) and "alice/good1.jpg" in images


def test_a_killed_run_resumes_without_loss_or_duplicates(tmp_path: Path, faces_dir: Path) -> None:
    root = tmp_path / "images"
    for folder in ("AFLW2000", "exp"):
        shutil.copytree(faces_dir / "deca_testsamples" / folder, root / folder)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, "-m", "vitdeca", "annotate", str(root), "--out", str(out), "--no-progress"]
    process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(read_manifest(manifest))
    assert main(["annotate", str(root), "--out", str(out), "--no-progress"]) == 0
    images = [r["image"] for r in read_manifest(manifest)]
    assert len(images) == len(set(images)) == 18 and written <= 18


@pytest.mark.skipif(importlib.util.find_spec("face_alignment") is not None, reason="face-alignment installed")
def test_workers_report_a_backend_that_cannot_load(corpus: Path, tmp_path: Path, capsys) -> None:
    argv = ["annotate", str(corpus), "--out", str(tmp_path / "out"), "--workers", "2", "--backend", "fan"]
    assert main(argv + ["--no-progress"]) == 2
    assert "pip install face-alignment" in capsys.readouterr().err
    assert not (tmp_path / "out" / "manifest.jsonl").exists() or not read_manifest(
        tmp_path / "out" / "manifest.jsonl"
    )
