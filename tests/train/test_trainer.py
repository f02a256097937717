"""The training loop with a stand-in model: resume, stage freezing, non-finite steps, records."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from vitdeca.errors import VitdecaError
from vitdeca.train import checkpoint as ckpt
from vitdeca.train.run import run_training, seed_everything


def _train(standin, out, overrides, resume=False, **model_kwargs):
    torch.set_num_threads(1)
    return run_training(
        None,
        out,
        standin.BASE_OVERRIDES + list(overrides),
        resume=resume,
        model_factory=lambda cfg: standin.StandInModel(**model_kwargs),
        data_factory=lambda cfg: (lambda ds: (ds, ds.identities))(standin.SyntheticFaces()),
        identity_factory=lambda cfg, device: None,
    )


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def _model_state(path):
    return ckpt.load_checkpoint(path)["model"]


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def full_run(standin, tmp_path_factory):
    """An uninterrupted run: 6 coarse + 4 detail steps, with dropout and data augmentation randomness."""
    out = tmp_path_factory.mktemp("full")
    status = _train(standin, out, ["run.coarse_steps=6", "run.detail_steps=4"], dropout=0.3)
    assert status == "done"
    return out


def test_run_folder_holds_config_csv_checkpoints_and_events(full_run):
    assert (full_run / "config.yaml").read_text().startswith("data:")
    for name in ("last.pt", "coarse.pt", "detail.pt"):
        assert (full_run / "checkpoints" / name).is_file()
    rows = _rows(full_run / "losses.csv")
    assert rows[0][:4] == ["step", "total", "landmark", "eye"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 11))
    header = rows[0]
    coarse, detail = dict(zip(header, rows[1], strict=True)), dict(zip(header, rows[-1], strict=True))
    assert coarse["landmark"] and not coarse["detail_photometric"]
    assert detail["detail_photometric"] and not detail["landmark"]
    assert coarse["identity"] == "" and detail["mrf"] == ""  # switched off in these tests
    # the total is the weighted sum of the logged terms (DECA weights)
    w = {"landmark": 1, "eye": 1, "lip": 0.5, "photometric": 2, "reg_shape": 1e-4, "reg_expression": 1e-4}
    w.update({"reg_albedo": 1e-4, "reg_light": 1})
    expected = sum(w[k] * float(coarse[k]) for k in w)
    assert float(coarse["total"]) == pytest.approx(expected, rel=1e-4)


def test_tensorboard_has_scalars_and_image_grids(full_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(full_run), size_guidance={"images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert {"loss/total", "loss/landmark", "loss/detail_photometric", "train/lr"} <= set(tags["scalars"])
    assert [e.step for e in events.Scalars("loss/total")] == list(range(1, 11))
    image = events.Images("images/train")[0]
    assert (image.width, image.height) == (4 * 32, 8 * 32)  # input | landmarks | render | shape, 8 rows


def test_resumed_run_matches_uninterrupted_run(standin, full_run, tmp_path):
    first = _train(standin, tmp_path, ["run.coarse_steps=3", "run.detail_steps=0"], dropout=0.3)
    assert first == "done" and ckpt.load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    # add junk rows as a crash between checkpoint and exit would: they must be dropped on resume
    with open(tmp_path / "losses.csv", "a") as handle:
        handle.write("4,99,,,,,,,,,,,,,\n")
    resumed = _train(
        standin, tmp_path, ["run.coarse_steps=6", "run.detail_steps=4"], resume=True, dropout=0.3
    )
    assert resumed == "done"
    _assert_same_state(
        _model_state(tmp_path / "checkpoints" / "last.pt"), _model_state(full_run / "checkpoints/last.pt")
    )
    assert _rows(tmp_path / "losses.csv") == _rows(full_run / "losses.csv")


def test_each_stage_trains_only_its_parameters(standin, full_run):
    seed_everything(0)
    initial = standin.StandInModel(dropout=0.3).state_dict()
    coarse = _model_state(full_run / "checkpoints" / "coarse.pt")
    detail = _model_state(full_run / "checkpoints" / "detail.pt")
    for key in initial:
        if key.startswith("detail_"):
            assert torch.equal(coarse[key], initial[key]), key  # untouched by the coarse stage
        elif key.startswith("coarse_encoder") and key.endswith("weight"):
            assert not torch.equal(coarse[key], initial[key]), key
            assert torch.equal(detail[key], coarse[key]), key  # frozen in the detail stage
    assert not torch.equal(detail["detail_decoder.weight"], coarse["detail_decoder.weight"])


def test_nonfinite_steps_are_skipped(standin, tmp_path):
    _train(standin, tmp_path / "one", ["run.coarse_steps=1", "stages=[coarse]"])
    _train(standin, tmp_path / "nan", ["run.coarse_steps=3", "stages=[coarse]"], nan_steps=(2, 3))
    rows = _rows(tmp_path / "nan" / "losses.csv")
    assert math.isfinite(float(rows[1][1])) and rows[2][1] == "nan" and rows[3][1] == "nan"
    # the two non-finite steps changed nothing
    _assert_same_state(
        _model_state(tmp_path / "nan/checkpoints/last.pt"), _model_state(tmp_path / "one/checkpoints/last.pt")
    )


def test_too_many_nonfinite_steps_stop_with_a_clear_message(standin, tmp_path):
    with pytest.raises(VitdecaError, match="3 non-finite steps in a row"):
        _train(
            standin, tmp_path, ["run.coarse_steps=10", "run.max_nonfinite=3"], nan_steps=tuple(range(1, 20))
        )


def test_existing_run_needs_resume_and_resume_keeps_the_config(standin, full_run):
    with pytest.raises(VitdecaError, match="already holds a training run"):
        _train(standin, full_run, [])
    with pytest.raises(VitdecaError, match="losses.landmark"):
        _train(standin, full_run, ["losses.landmark=2"], resume=True)
    # a finished run resumed with the same budget has nothing left to do
    assert _train(standin, full_run, ["run.coarse_steps=6", "run.detail_steps=4"], resume=True) == "done"


def test_detail_stage_alone_starts_from_a_coarse_checkpoint(standin, full_run, tmp_path):
    coarse = full_run / "checkpoints" / "coarse.pt"
    overrides = ["stages=[detail]", "run.detail_steps=2", f"run.init={coarse}"]
    assert _train(standin, tmp_path, overrides) == "done"
    before, after = _model_state(coarse), _model_state(tmp_path / "checkpoints" / "last.pt")
    assert torch.equal(after["coarse_encoder.0.weight"], before["coarse_encoder.0.weight"])
    assert not torch.equal(after["detail_decoder.weight"], before["detail_decoder.weight"])
    with pytest.raises(VitdecaError, match="no such checkpoint"):
        _train(standin, tmp_path / "x", ["stages=[detail]", f"run.init={tmp_path / 'none.pt'}"])
