"""Validation during training: val_* columns, eval mode, no effect on training, true-shape error in mm."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from vitdeca.model import DecaModel
from vitdeca.train import checkpoint as ckpt
from vitdeca.train.run import run_training
from vitdeca.train.validation import Validator


def _train(tiny, head, out, overrides=(), validator=None):
    torch.set_num_threads(1)
    budget = ["run.coarse_steps=6", "run.detail_steps=4", *tiny.RANDOM, *overrides]
    budget.append("losses.landmark_visibility=false")  # val_landmark is recomputed below without it
    return run_training(
        None, out, tiny.BASE_OVERRIDES + budget,
        model_factory=lambda cfg: tiny.tiny_model(cfg, head),
        data_factory=lambda cfg: (lambda ds: (ds, ds.identities))(tiny.SyntheticFaces()),
        identity_factory=lambda cfg, device: None,
        validator_factory=lambda cfg: validator,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny, ict_head, tmp_path_factory):
    plain, checked = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("validated")
    assert _train(tiny, ict_head, plain) == "done"
    held_out = tiny.SyntheticFaces(n_identities=3, per_identity=2, augment=False)
    validator = Validator(held_out, every=4, batch_size=4)
    assert _train(tiny, ict_head, checked, validator=validator) == "done"
    return plain, checked, held_out


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_validation_leaves_training_unchanged(runs):
    plain, checked, _ = runs
    a, b = (ckpt.load_checkpoint(run / "checkpoints" / "last.pt")["model"] for run in (plain, checked))
    for key in a:
        assert torch.equal(a[key], b[key]), key  # dropout + augmentation: any RNG draw would show


def test_val_columns_at_val_every_and_stage_ends(runs):
    _, checked, _ = runs
    rows = _rows(checked / "losses.csv")
    filled = [int(r["step"]) for r in rows if r["val_total"]]
    assert filled == [4, 6, 8, 10]  # every 4 steps, plus the coarse stage's end (6) and the detail's (10)
    assert all(r["val_landmark"] for r in rows if int(r["step"]) in (4, 6))
    detail = [r for r in rows if int(r["step"]) in (8, 10)]
    assert all(r["val_detail_photometric"] and not r["val_landmark"] for r in detail)
    assert "val_shape_mm" not in rows[0]  # no ground truth in these data


def test_val_landmark_equals_the_model_in_eval_mode(runs, ict_head):
    """Step 6 (end of the coarse stage): the coarse checkpoint's model, in eval mode, on the held-out set."""
    from vitdeca.losses import deca_landmark_weights, landmark_loss

    _, checked, held_out = runs
    model = DecaModel.load(checked / "checkpoints" / "coarse.pt", head=ict_head).eval()
    items = [held_out[i] for i in range(len(held_out))]
    images = torch.stack([it["image"] for it in items])
    target = torch.stack([it["landmarks"] for it in items])
    with torch.no_grad():
        recon = model.decode(model.encode(images, detail=False))
        weights = deca_landmark_weights()
        per_image = [
            float(landmark_loss(recon.landmarks2d[k : k + 1], target[k : k + 1], (32, 32), weights))
            for k in range(len(items))
        ]
    row = next(r for r in _rows(checked / "losses.csv") if r["step"] == "6")
    assert float(row["val_landmark"]) == pytest.approx(np.mean(per_image), rel=1e-4)
    with torch.no_grad():
        model.train()
        noisy = model.decode(model.encode(images, detail=False))  # DropKey in train mode
    assert not torch.allclose(noisy.landmarks2d, recon.landmarks2d)


def test_tensorboard_has_val_scalars(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, checked, _ = runs
    events = EventAccumulator(str(checked), size_guidance={"scalars": 0}).Reload()
    assert [e.step for e in events.Scalars("val/total")] == [4, 6, 8, 10]
    assert math.isfinite(events.Scalars("val/landmark")[0].value)


def test_plot_curves_draws_train_and_val(runs, tmp_path):
    from vitdeca.train.plots import curve_series

    _, checked, _ = runs
    series = curve_series(checked, "total")
    assert [label for label, *_ in series] == ["train", "val"]
    steps = series[1][1]
    assert steps == [4, 6, 8, 10]
    from vitdeca.cli import main

    assert main(["plot-curves", str(checked), "--out", str(tmp_path / "c.png"), "--smooth", "0"]) == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_true_shape_error_on_a_synthetic_validation_set(ict_head, ict_home, tmp_path, monkeypatch):
    """Real model on a `vitdeca synth` set: val_shape_mm (model) and val_shape_mm_mean_face (template),
    recomputed here from codes.npz, the checkpoint and the head model."""
    from vitdeca.data import FaceDataset
    from vitdeca.data.synth import SynthOptions, write_synthetic_dataset

    monkeypatch.setenv("VITDECA_HOME", str(ict_home))
    torch.set_num_threads(1)
    data = tmp_path / "synth"
    write_synthetic_dataset(data, SynthOptions(n_images=4, images_per_subject=2, seed=5, size=48,
                                               supersample=1, uv_size=64), progress=False)  # fmt: skip
    overrides = [
        f"data.manifest={data}", f"data.val_manifest={data}", "run.val_every=1", "data.image_size=32",
        "model.image_size=32", "model.encoder=vit_tiny_patch16_224", "model.uv_size=32", "model.n_albedo=4",
        "model.detail=false", "stages=[coarse]", "run.coarse_steps=2", "data.identities_per_batch=2",
        "data.images_per_identity=2", "data.augment.enabled=false", "losses.identity=0", "losses.mrf=0",
        "run.device=cpu", "run.amp=none", "run.progress=false", "run.image_every=0",
    ]  # fmt: skip
    run = tmp_path / "run"
    status = run_training(None, run, overrides, model_factory=lambda c: DecaModel(c.model, head=ict_head))
    assert status == "done"
    rows = _rows(run / "losses.csv")
    assert [r["val_shape_mm"] != "" for r in rows] == [True, True]
    codes = np.load(data / "codes.npz")
    true_shapes = torch.from_numpy(codes["shape"])
    model = DecaModel.load(run / "checkpoints" / "last.pt", head=ict_head).eval()
    crops = FaceDataset(data, size=32)
    index = {r["image"]: k for k, r in enumerate(crops.records)}
    images = torch.stack([crops[index[str(name)]].image for name in codes["image"]])
    with torch.no_grad():
        predicted = model.encode(images).shape
        zeros = [torch.zeros(4, n) for n in (ict_head.n_expression, ict_head.n_pose)]
        meshes = [ict_head(s, *zeros).vertices[:, ict_head.face_mask] for s in (predicted, true_shapes)]
        template = ict_head.template_vertices[ict_head.face_mask]
    mm = 1.0 / ict_head.units_per_mm

    def aligned_mm(pred: np.ndarray, target: np.ndarray) -> float:
        """Mean distance after the least-squares scale and shift of pred onto target (numpy, per image)."""
        pc = pred - pred.mean(axis=0)
        scale = (pc * (target - target.mean(axis=0))).sum() / (pc * pc).sum()
        return float(np.linalg.norm(scale * pc + target.mean(axis=0) - target, axis=1).mean() * mm)

    true_np = meshes[1].double().numpy()
    model_mm = np.mean([aligned_mm(p, t) for p, t in zip(meshes[0].double().numpy(), true_np, strict=True)])
    mean_face_mm = np.mean([aligned_mm(template.double().numpy(), t) for t in true_np])
    assert float(rows[-1]["val_shape_mm"]) == pytest.approx(float(model_mm), rel=1e-3)
    assert float(rows[-1]["val_shape_mm_mean_face"]) == pytest.approx(float(mean_face_mm), rel=1e-4)
    assert 0.5 < float(mean_face_mm) < 20.0  # random identities differ from the template by millimetres


def test_pseudo_labels_are_no_ground_truth_for_val_shape_mm(tmp_path):
    from types import SimpleNamespace

    from vitdeca.data.faces import _read_truth
    from vitdeca.train.validation import read_shape_truth

    records = [{"image": "a.jpg"}, {"image": "b.jpg"}]
    head = {"head_model": np.array("ict"), "head_checksum": np.array("abc")}
    images, shapes = np.array(["a.jpg", "b.jpg"]), np.arange(8.0).reshape(2, 4)
    others = {"expression": np.zeros((2, 3)), "pose": np.zeros((2, 6))}

    def truth_with(**marker):
        np.savez(tmp_path / "codes.npz", image=images, shape=shapes, **others, **marker, **head)
        return read_shape_truth(SimpleNamespace(truth=_read_truth(tmp_path, records)))

    truth = truth_with(pseudo=np.array([True, False]))
    assert list(truth.shapes) == [1] and truth.shapes[1].tolist() == [4.0, 5.0, 6.0, 7.0]
    assert (truth.head_name, truth.head_checksum) == ("ict", "abc")
    assert truth_with(pseudo=np.ones(2, bool)) is None
    assert sorted(truth_with().shapes) == [0, 1]  # synthetic: no marker, all exact
    assert read_shape_truth(SimpleNamespace(truth=None)) is None  # photos
