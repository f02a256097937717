"""``vitdeca eval now`` end to end on a tiny NoW-layout dataset written by the test."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from vitdeca.cli import main
from vitdeca.errors import VitdecaError
from vitdeca.evaluation.meshfile import read_landmarks, read_mesh, read_obj
from vitdeca.evaluation.now_dataset import evaluate_now, read_image_list
from vitdeca.evaluation.pp import write_pp


def write_obj(path: Path, verts: np.ndarray, faces: np.ndarray, textured: bool = False) -> None:
    """OBJ with 'v' lines and 'f' lines; textured files use 'f v/vt/vn' corners (as 3dMD scans)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"v {x:.17g} {y:.17g} {z:.17g}" for x, y, z in verts]
    if textured:
        lines += ["vt 0.5 0.5", "vn 0 0 1"]
        lines += [f"f {a + 1}/1/1 {b + 1}/1/1 {c + 1}/1/1" for a, b, c in faces]
    else:
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def now_dataset(tmp_path, synth):
    """Two subjects; predictions: 3 ok (exact, moved+PLY+TXT, smaller head), 1 missing, 1 malformed."""
    import trimesh

    root, pred = tmp_path / "NoW", tmp_path / "pred"
    scans = {"FaMoS_1": synth.head(1200), "FaMoS_2": synth.head(1200, size=1.1)}
    for subject, (v, f, lmk) in scans.items():
        write_obj(root / "scans" / subject / "natural_head_rotation.000001.obj", v, f, textured=True)
        write_pp(root / "scans_lmks_onlypp" / subject / "natural_head_rotation.000001_picked_points.pp", lmk)
    images = [
        "FaMoS_1/multiview_neutral/IMG_0041.jpg",
        "FaMoS_1/selfie/IMG_0050.jpg",
        "FaMoS_2/multiview_neutral/IMG_0101.jpg",
        "FaMoS_2/multiview_expressions/IMG_0102.jpg",
        "FaMoS_2/selfie/IMG_0103.jpg",
    ]
    (root / "imagepathsvalidation.txt").write_text("\n".join(images) + "\n")
    v, f, lmk = scans["FaMoS_1"]
    write_obj(pred / "FaMoS_1/multiview_neutral/IMG_0041.obj", v, f)
    np.save(pred / "FaMoS_1/multiview_neutral/IMG_0041.npy", lmk)
    _, rot, _, _ = synth.similarity(3)

    def apply(x):  # metres, rotated and moved: only the alignment differs (PLY stores float32)
        return 0.001 * x @ rot.T + np.array([0.01, -0.02, 0.3])

    (pred / "FaMoS_1/selfie").mkdir(parents=True)
    trimesh.Trimesh(apply(v), f, process=False).export(pred / "FaMoS_1/selfie/IMG_0050.ply")
    np.savetxt(pred / "FaMoS_1/selfie/IMG_0050.txt", apply(lmk))
    small_v, small_f, small_l = synth.head(600, size=1.0)  # a different shape: a real, positive error
    folder = pred / "FaMoS_2/multiview_neutral/IMG_0101"  # as `vitdeca reconstruct --save now` writes
    write_obj(folder / "IMG_0101_neutral.obj", small_v, small_f)
    np.save(folder / "IMG_0101_now_landmarks.npy", small_l.astype(np.float32))
    # IMG_0102: missing entirely; IMG_0103: landmarks of the wrong shape
    write_obj(pred / "FaMoS_2/selfie/IMG_0103.obj", small_v, small_f)
    np.save(pred / "FaMoS_2/selfie/IMG_0103.npy", small_l[:5])
    return root, pred


@pytest.fixture()
def home(ict_head, ict_home, monkeypatch):
    """`vitdeca eval now` loads the ICT head for its mean-face row: from the session's cache."""
    monkeypatch.setenv("VITDECA_HOME", str(ict_home))
    return ict_home


def test_cli_reports_missing_and_malformed(now_dataset, tmp_path, capsys, home, ict_head):
    root, pred = now_dataset
    out = tmp_path / "report"
    status = main(
        [
            "-q",
            "eval",
            "now",
            "--predictions",
            str(pred),
            "--dataset",
            str(root),
            "--out",
            str(out),
            "--workers",
            "2",
            "--save-distances",
        ]
    )
    assert status == 1  # some predictions missing or malformed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == 3 and summary["expected"] == 5 and not summary["complete"]
    assert [m["image"] for m in summary["missing"]] == ["FaMoS_2/multiview_expressions/IMG_0102.jpg"]
    assert [m["image"] for m in summary["malformed"]] == ["FaMoS_2/selfie/IMG_0103.jpg"]
    assert "7x3" in summary["malformed"][0]["reason"]
    rows = list(csv.DictReader((out / "per_image.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "missing", "malformed"]
    assert float(rows[0]["mean"]) < 1e-6  # the scan itself
    assert float(rows[1]["mean"]) < 1e-3  # the scan moved and stored as float32 in metres
    assert float(rows[2]["median"]) > 0.1  # a 10% smaller head stays measurably wrong
    # statistics are over all distances of the evaluated images, concatenated
    saved = np.load(out / "distances.npz")
    values = saved["values"].astype(np.float64)
    assert summary["median"] == pytest.approx(np.median(values))
    assert summary["mean"] == pytest.approx(values.mean())
    assert summary["std"] == pytest.approx(values.std())
    assert summary["n_distances"] == len(values) == saved["offsets"][-1]
    assert list(saved["images"]) == [r["image"] for r in rows[:3]]
    assert set(summary["per_category"]) == {"multiview_neutral", "multiview_expressions", "selfie"}
    assert summary["per_category"]["multiview_expressions"]["count"] == 0
    assert (out / "cumulative_error.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "NoW val: 3/5 images" in printed and "mean face median" in printed
    _check_mean_face_row(summary, out, root, tmp_path / "template", ict_head)


def _check_mean_face_row(summary, out, root, template_dir, head):
    """The baseline equals the ICT template written as ordinary predictions and measured by evaluate_now
    (files, per image), over the 3 images the method evaluated."""
    import torch

    from vitdeca.evaluation.baseline import write_prediction
    from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68

    with torch.no_grad():
        zero = head(torch.zeros(1, head.n_shape), torch.zeros(1, head.n_expression), torch.zeros(1, 3))
    items = read_image_list(root, "val")
    for item in items:
        write_prediction(template_dir, item, zero.vertices[0].numpy(), head.faces.numpy(),
                         zero.landmarks3d[0, list(NOW_LANDMARKS_IBUG68)].numpy())  # fmt: skip
    measured = evaluate_now(template_dir, root, workers=1, progress=False)
    evaluated = [m.distances for m in measured if m.item.image not in _not_ok(summary)]
    expected = np.concatenate(evaluated).astype(np.float64)
    base = summary["baseline"]["mean_face"]
    assert base["count"] == 3
    assert base["median"] == pytest.approx(np.median(expected), rel=1e-4)
    assert base["mean"] == pytest.approx(expected.mean(), rel=1e-4)
    assert base["median"] > 1.0  # an ellipsoid is far from ICT's template
    assert summary["relative_median"] == pytest.approx(summary["median"] / base["median"])
    low, high = summary["ci95_median"]
    assert low <= high and summary["bootstrap"]["unit"] == "subject"
    selfie = summary["per_category"]["selfie"]
    assert selfie["baseline"]["mean_face"]["count"] == 1 and selfie["relative_median"] is not None
    report = (out / "report.md").read_text()
    assert f"| mean face | {base['median']:.3f} |" in report and "## selfie" in report


def _not_ok(summary):
    return {m["image"] for m in summary["missing"] + summary["malformed"]}


def test_serial_and_parallel_runs_agree(now_dataset):
    root, pred = now_dataset
    serial = evaluate_now(pred, root, workers=1, progress=False)
    parallel = evaluate_now(pred, root, workers=2, progress=False)
    assert [r.status for r in serial] == [r.status for r in parallel]
    for a, b in zip(serial, parallel, strict=True):
        if a.status == "ok":
            np.testing.assert_allclose(a.distances, b.distances, atol=1e-6)


def test_missing_ground_truth_is_a_user_error(now_dataset, tmp_path):
    root, pred = now_dataset
    (root / "imagepathstest.txt").write_text("FaMoS_9/selfie/IMG_1.jpg\n")
    with pytest.raises(VitdecaError, match="FaMoS_9"):
        evaluate_now(pred, root, split="test", progress=False)
    status = main(
        [
            "-q",
            "eval",
            "now",
            "--predictions",
            str(pred),
            "--dataset",
            str(root),
            "--split",
            "test",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert status == 2


def test_image_list_parsing(tmp_path):
    (tmp_path / "imagepathsvalidation.txt").write_text("a/b/c.jpg\n\n/abs/prefix/S/C/I.png\n")
    items = read_image_list(tmp_path, "val")
    assert [(i.subject, i.category, i.stem) for i in items] == [("a", "b", "c"), ("S", "C", "I")]
    (tmp_path / "imagepathstest.txt").write_text("only/two\n")
    with pytest.raises(VitdecaError, match="SUBJECT/CATEGORY/IMAGE"):
        read_image_list(tmp_path, "test")


def test_obj_reader_quads_negative_indices_and_errors(tmp_path):
    path = tmp_path / "quad.obj"
    path.write_text(
        "# comment\nv 0 0 0\nv 1 0 0\nv 1 1 0 1.0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1 4/1\nf -4 -3 -1\n"
    )
    verts, faces = read_obj(path)
    assert verts.shape == (4, 3)
    np.testing.assert_array_equal(faces, [[0, 1, 2], [0, 2, 3], [0, 1, 3]])
    (tmp_path / "bad.obj").write_text("v 0 0 0\nf 1 2 3\n")
    with pytest.raises(VitdecaError, match="does not exist"):
        read_mesh(tmp_path / "bad.obj")
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(VitdecaError, match="no triangles"):
        read_mesh(tmp_path / "points.obj")
    np.save(tmp_path / "l.npy", np.zeros((7, 2)))
    with pytest.raises(VitdecaError, match="7x3"):
        read_landmarks(tmp_path / "l.npy")
