"""``vitdeca annotate --fit``: fitted codes of real photos as pseudo-labels that FaceDataset reads back."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vitdeca.cli import main
from vitdeca.data import FaceDataset
from vitdeca.data.manifest import read_manifest
from vitdeca.data.pseudo import FIT_FIELD
from vitdeca.errors import VitdecaError
from vitdeca.train.data import collate

PHOTOS = {"anna/3.jpg": "exp/3.jpg", "anna/5.jpg": "exp/5.jpg", "ben/7.jpg": "exp/7.jpg"}
FAST = ["--fit-iterations", "40,0"]  # the landmark stage only, short: the codes are still a real fit


@pytest.fixture(scope="module")
def photos(faces_dir: Path, ict_archive: Path, tmp_path_factory) -> Path:
    os.environ.setdefault("VITDECA_ICT_FACEKIT", str(ict_archive))
    root = tmp_path_factory.mktemp("photos")
    for name, source in PHOTOS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(faces_dir / "deca_testsamples" / source, root / name)
    return root


@pytest.fixture(scope="module")
def fitted(photos: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fitted")
    assert main(["annotate", str(photos), "--out", str(out), "--fit", *FAST, "--no-progress"]) == 0
    return out


@pytest.mark.slow
def test_fitted_codes_are_stored_and_read_back_as_pseudo_labels(fitted: Path):
    codes = np.load(fitted / "codes.npz")
    assert sorted(codes["image"].tolist()) == sorted(PHOTOS) and codes["pseudo"].all()
    assert codes["face_index"].tolist() == [0, 0, 0] and str(codes["head_model"]) == "ict"
    assert (codes["nme"] < 0.08).all()  # a fit to the detected landmarks, not the template
    assert (np.abs(codes["shape"]).max(axis=1) > 0.01).all() and np.isfinite(codes["pose"]).all()
    dataset = FaceDataset(fitted)
    assert dataset.has_truth and dataset.has_pseudo_labels
    records = {r["image"]: r for r in read_manifest(fitted / "manifest.jsonl")}
    for index, record in enumerate(dataset.records):
        sample = dataset[index]
        assert float(sample.truth["pseudo"]) == 1.0
        row = codes["image"].tolist().index(record["image"])
        np.testing.assert_array_equal(sample.truth["shape"].numpy(), codes["shape"][row])
        np.testing.assert_allclose(sample.truth["pose"].numpy(), records[record["image"]][FIT_FIELD]["pose"])
    batch = collate([dataset[0], dataset[1]])
    assert batch["truth_pseudo"].tolist() == [1.0, 1.0] and batch["has_truth"].tolist() == [1.0, 1.0]


@pytest.mark.slow
def test_the_fit_is_the_one_reconstruct_runs(fitted: Path, photos: Path):
    """Same crop, same FitConfig, same codes as the fitting Reconstructor on the same photo."""
    from vitdeca.fit import FitConfig
    from vitdeca.pipeline import Reconstructor

    rec = Reconstructor.from_pretrained(
        None, device="cpu", method="fit", fit=FitConfig().with_iterations("40,0"), detector="dlib"
    )
    codes, _ = rec.estimate_codes(rec.prepare(photos / "anna/5.jpg").crops)
    stored = np.load(fitted / "codes.npz")
    row = stored["image"].tolist().index("anna/5.jpg")
    np.testing.assert_allclose(stored["shape"][row], codes.shape[0].numpy(), atol=2e-6)


@pytest.mark.slow
def test_resume_keeps_the_codes_and_refuses_other_settings(fitted: Path, photos: Path, capsys):
    before = np.load(fitted / "codes.npz")["shape"]
    assert main(["annotate", str(photos), "--out", str(fitted), "--fit", *FAST, "--no-progress"]) == 0
    np.testing.assert_array_equal(np.load(fitted / "codes.npz")["shape"], before)
    meta = json.loads((fitted / "dataset.json").read_text())  # a dataset annotated before a FitConfig key
    del meta["options"]["fit"]["torch_compile"]
    (fitted / "dataset.json").write_text(json.dumps(meta))
    assert main(["annotate", str(photos), "--out", str(fitted), "--fit", *FAST, "--no-progress"]) == 0
    capsys.readouterr()
    assert (
        main(["annotate", str(photos), "--out", str(fitted), "--fit", "--no-progress"]) == 2
    )  # other iterations
    assert "annotated with other fit settings; resume with the same options" in capsys.readouterr().err
    assert main(["annotate", str(photos), "--out", str(fitted), "--no-progress"]) == 2  # no --fit
    assert "annotated with other fit settings" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failed_fit_keeps_the_face_without_pseudo_label(photos: Path, tmp_path: Path, monkeypatch, caplog):
    import vitdeca.data.pseudo as pseudo

    real, calls = pseudo.fit_face, []

    def second_fails(*args):
        calls.append(1)
        if len(calls) == 2:  # images are done in sorted order: anna/5.jpg
            raise RuntimeError("simulated")
        return real(*args)

    monkeypatch.setattr(pseudo, "fit_face", second_fails)
    out = tmp_path / "data"
    assert main(["annotate", str(photos), "--out", str(out), "--fit", *FAST, "--no-progress"]) == 0
    records = {r["image"]: r for r in read_manifest(out / "manifest.jsonl")}
    assert [name for name, r in records.items() if r[FIT_FIELD] is None] == ["anna/5.jpg"]
    assert all(r["status"] == "ok" for r in records.values())
    assert sum("fit failed, kept without pseudo-label" in m for m in caplog.messages) == 1
    assert sorted(np.load(out / "codes.npz")["image"].tolist()) == ["anna/3.jpg", "ben/7.jpg"]
    dataset = FaceDataset(out)
    truths = {r["image"]: dataset[k].truth for k, r in enumerate(dataset.records)}
    assert truths["anna/5.jpg"] == {} and truths["anna/3.jpg"] and truths["ben/7.jpg"]
    batch = collate([dataset[k] for k in range(len(dataset))])
    assert batch["has_truth"].tolist() == [1.0, 0.0, 1.0] and batch["truth_pseudo"].tolist() == [
        1.0,
        0.0,
        1.0,
    ]


def test_a_dataset_without_codes_behaves_as_before(dataset_dir: Path):
    dataset = FaceDataset(dataset_dir)
    assert not dataset.has_truth and not dataset.has_pseudo_labels
    assert dataset[0].truth == {} and "has_truth" not in collate([dataset[0], dataset[1]])


def test_exact_codes_must_cover_every_image_and_are_not_pseudo(dataset_dir: Path):
    images = [r["image"] for r in FaceDataset(dataset_dir).records]
    arrays = {"shape": np.ones((len(images), 4)), "expression": np.zeros((len(images), 2)),
              "pose": np.zeros((len(images), 3))}  # fmt: skip
    np.savez(dataset_dir / "codes.npz", image=np.array(images), **arrays)
    dataset = FaceDataset(dataset_dir)
    assert float(dataset[0].truth["pseudo"]) == 0.0 and not dataset.has_pseudo_labels
    np.savez(dataset_dir / "codes.npz", image=np.array(images[1:]), **{k: v[1:] for k, v in arrays.items()})
    with pytest.raises(VitdecaError, match="no true codes for 1 images"):
        FaceDataset(dataset_dir)


@pytest.mark.slow
def test_manifest_records_hold_the_fit_as_json(fitted: Path):
    line = (fitted / "manifest.jsonl").read_text().splitlines()[0]
    fit = json.loads(line)[FIT_FIELD]
    assert sorted(fit) == ["expression", "nme", "pose", "shape"] and len(fit["pose"]) == 3


def _codes(images: list[str], value: float, **extra) -> dict:
    n = len(images)
    return {"image": np.array(images), "shape": np.zeros((n, 4)), "expression": np.zeros((n, 2)),
            "pose": np.full((n, 3), value), **extra}  # fmt: skip


def test_a_mixed_batch_of_synthetic_pseudo_and_plain_samples(dataset_dir: Path, tmp_path: Path):
    """Three FaceDatasets (exact codes, pseudo-labels, none) in one batch: sup_pose weighs them 1, w, 0."""
    import torch

    from vitdeca.codes import Codes
    from vitdeca.train.config import LossConfig
    from vitdeca.train.data import MixedDatasets
    from vitdeca.train.objective import REGISTRY, LossInputs

    exact, fitted = tmp_path / "exact", tmp_path / "fitted"
    shutil.copytree(dataset_dir, exact)
    shutil.copytree(dataset_dir, fitted)
    images = [r["image"] for r in FaceDataset(dataset_dir).records]
    np.savez(exact / "codes.npz", **_codes(images, 0.3))
    faces = np.zeros(len(images), dtype=np.int64)
    np.savez(fitted / "codes.npz", **_codes(images, 0.6, face_index=faces, pseudo=np.ones(len(images), bool)))
    mixed = MixedDatasets([FaceDataset(exact), FaceDataset(fitted), FaceDataset(dataset_dir)])
    n = len(images)
    batch = collate([mixed[0], mixed[n], mixed[2 * n]])
    assert batch["has_truth"].tolist() == [1.0, 1.0, 0.0] and batch["truth_pseudo"].tolist() == [
        0.0,
        1.0,
        0.0,
    ]
    codes = Codes(shape=torch.zeros(3, 4), expression=torch.zeros(3, 2), pose=torch.zeros(3, 3),
                  camera=torch.zeros(3, 3), light=torch.zeros(3, 9, 3), albedo=torch.zeros(3, 1))  # fmt: skip
    truth = {k: v for k, v in batch.items() if k.startswith("truth_") or k == "has_truth"}
    x = LossInputs(images=batch["image"], landmarks=batch["landmarks"], masks=None, codes=codes, recon=None,
                   config=LossConfig(pseudo_weight=0.3), truth=truth)  # fmt: skip
    assert REGISTRY["sup_pose"].fn(x).item() == pytest.approx((0.3 + 0.3 * 0.6) / 2)
