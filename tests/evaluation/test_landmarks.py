"""Landmark NME: the normalisers, the readers (dlib XML pixel convention), matching, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitdeca.cli import main
from vitdeca.evaluation.landmarks import (
    box_size,
    match_faces,
    nme,
    outer_eye_distance,
    read_annotations,
    read_dlib_xml,
)


def face(x0: float = 0.0, y0: float = 0.0, scale: float = 1.0) -> np.ndarray:
    """A (68,2) landmark set on a 10x20 grid-ish layout, outer eye corners 10*scale apart."""
    rng = np.random.default_rng(int(x0) + 1)
    pts = rng.uniform([0, 0], [10, 20], size=(68, 2))
    pts[36], pts[45] = [0.0, 5.0], [10.0, 5.0]
    pts[0], pts[16] = [0.0, 0.0], [10.0, 20.0]  # the box is exactly 10 x 20
    return pts * scale + [x0, y0]


def test_nme_hand_computed():
    gt = face()
    assert outer_eye_distance(gt) == pytest.approx(10.0)
    assert box_size(gt) == pytest.approx(np.sqrt(200.0))
    pred = gt + [3.0, 4.0]  # every point 5 px off
    assert nme(pred, gt, "outer_eye") == pytest.approx(0.5)
    assert nme(pred, gt, "box") == pytest.approx(5.0 / np.sqrt(200.0))
    batch = nme(np.stack([pred, gt]), np.stack([gt, gt]))
    np.testing.assert_allclose(batch, [0.5, 0.0])
    with pytest.raises(ValueError):
        nme(pred, gt, "pupils")


def write_xml(path, faces_by_image):
    rows = ["<?xml version='1.0' encoding='ISO-8859-1'?>", "<dataset><images>"]
    for name, boxes in faces_by_image.items():
        rows.append(f"<image file='{name}'>")
        for pts, extra in boxes:
            rows.append(f"<box top='1' left='2' width='30' height='40' {extra}>")
            if pts is not None:
                rows += [f"<part name='{k:02d}' x='{int(x)}' y='{int(y)}'/>" for k, (x, y) in enumerate(pts)]
            rows.append("</box>")
        rows.append("</image>")
    rows.append("</images></dataset>")
    path.write_text("\n".join(rows))


def test_dlib_xml_points_become_pixel_centres(tmp_path):
    pts = np.round(face(5, 7, scale=3.0))
    write_xml(
        tmp_path / "a.xml",
        {
            "x.jpg": [(pts, ""), (None, ""), (pts + 100, "ignore='1'")],  # no parts / ignored: skipped
            "sub/y.png": [(pts + 50, "")],
            "z.jpg": [(None, "")],
        },
    )
    anns = read_dlib_xml(tmp_path / "a.xml")
    assert [(a.image, a.stem, a.landmarks.shape) for a in anns] == [
        ("x.jpg", "x", (1, 68, 2)),
        ("sub/y.png", "y", (1, 68, 2)),
    ]
    np.testing.assert_array_equal(anns[0].landmarks[0], pts + 0.5)


def test_npy_annotations_find_their_images(tmp_path):
    (tmp_path / "ann").mkdir()
    (tmp_path / "img").mkdir()
    np.save(tmp_path / "ann" / "a.b.npy", face())
    np.save(tmp_path / "ann" / "c.npy", np.stack([face(), face(50)]))
    (tmp_path / "img" / "a.b.PNG").write_bytes(b"")
    anns = read_annotations(tmp_path / "ann", tmp_path / "img")
    assert [(a.image, a.stem, len(a.landmarks)) for a in anns] == [("a.b.PNG", "a.b", 1), ("c", "c", 2)]


def test_matching_is_one_to_one_and_rejects_other_faces():
    gt = np.stack([face(0), face(100)])
    pred = np.stack([face(100) + 1, face(300)])  # one good match (swapped order) and a far face
    assert match_faces(pred, gt) == [None, 0]
    assert match_faces(np.zeros((0, 68, 2)), gt) == [None, None]


def test_cli_with_prediction_folder(tmp_path, capsys):
    ann, pred = tmp_path / "ann", tmp_path / "pred"
    ann.mkdir()
    pred.mkdir()
    np.save(ann / "one.npy", face())
    np.save(ann / "two.npy", np.stack([face(0), face(100)]))
    np.save(ann / "three.npy", face())
    np.save(pred / "one_landmarks2d.npy", face() + [3.0, 4.0])
    np.save(pred / "two_landmarks2d.npy", np.stack([face(100), face(0) + [0.0, 1.0]]))
    # three: no prediction
    out = tmp_path / "out"
    status = main(
        ["-q", "eval", "landmarks", "--annotations", str(ann), "--predictions", str(pred), "--out", str(out)]
    )
    assert status == 1
    report = json.loads((out / "landmarks_nme.json").read_text())
    faces = {(f["image"], f["face"]): f for f in report["faces"]}
    assert faces[("one", 0)]["nme_outer_eye"] == pytest.approx(0.5)
    assert faces[("two", 0)]["nme_outer_eye"] == pytest.approx(0.1)
    assert faces[("two", 1)]["nme_outer_eye"] == pytest.approx(0.0)
    assert faces[("three", 0)]["status"] == "missing"
    summary = report["summary"]
    assert summary["count"] == 3 and summary["expected"] == 4
    assert summary["nme_outer_eye"]["median"] == pytest.approx(0.1)
    assert (out / "landmarks_nme.csv").read_text().count("\n") == 5
    assert "3/4 faces" in capsys.readouterr().out


def test_live_dlib_detector_reproduces_dlib_annotations(faces_dir, tmp_path):
    """The XML landmarks were made by dlib's 68-point model: the dlib backend must find every face and
    agree closely (this also checks that both sides use the same pixel-centre convention)."""
    xml = faces_dir / "dlib_examples" / "testing_with_face_landmarks.xml"
    out = tmp_path / "out"
    status = main(
        [
            "-q",
            "eval",
            "landmarks",
            "--annotations",
            str(xml),
            "--predictions",
            "detector:dlib",
            "--out",
            str(out),
        ]
    )
    summary = json.loads((out / "landmarks_nme.json").read_text())["summary"]
    assert status == 0 and summary["count"] == summary["expected"] > 20
    assert summary["nme_outer_eye"]["median"] < 0.03
    assert summary["mean_error_px"]["median"] < 0.5
