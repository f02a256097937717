"""The training loop with a tiny real model (tiny.py): resume, stage freezing, non-finite steps, records."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from vitdeca.errors import VitdecaError
from vitdeca.train import checkpoint as ckpt
from vitdeca.train.config import load_train_config
from vitdeca.train.run import run_training, seed_everything

COARSE_KEY = "encoder.backbone.patch_embed.proj.weight"  # a parameter of the coarse stage
DETAIL_KEY = "detail_decoder.l1.0.weight"  # and one of the detail stage


def _train(tiny, head, out, overrides, resume=False, nan_calls=()):
    torch.set_num_threads(1)
    try:
        return run_training(
            None,
            out,
            tiny.BASE_OVERRIDES + list(overrides),
            resume=resume,
            model_factory=lambda cfg: tiny.tiny_model(cfg, head, nan_calls),
            data_factory=lambda cfg: (lambda ds: (ds, ds.identities))(tiny.SyntheticFaces()),
            identity_factory=lambda cfg, device: None,
        )
    finally:
        tiny.remove_poison()


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
def full_run(tiny, ict_head, tmp_path_factory):
    """An uninterrupted run: 6 coarse + 4 detail steps, with DropKey and data augmentation randomness."""
    out = tmp_path_factory.mktemp("full")
    status = _train(tiny, ict_head, out, ["run.coarse_steps=6", "run.detail_steps=4", *tiny.RANDOM])
    assert status == "done"
    return out


def test_run_folder_holds_config_csv_checkpoints_and_events(full_run):
    assert (full_run / "config.yaml").read_text().startswith("data:")
    for name in ("last.pt", "coarse.pt", "detail.pt"):
        assert (full_run / "checkpoints" / name).is_file()
    # a stage's checkpoint is last.pt at its end, one file on disk; later saves leave it as it was
    assert (full_run / "checkpoints" / "detail.pt").samefile(full_run / "checkpoints" / "last.pt")
    assert not (full_run / "checkpoints" / "coarse.pt").samefile(full_run / "checkpoints" / "last.pt")
    assert ckpt.load_checkpoint(full_run / "checkpoints" / "coarse.pt")["step"] == 6
    assert ckpt.load_checkpoint(full_run / "checkpoints" / "last.pt")["step"] == 10
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


def test_resumed_run_matches_uninterrupted_run(tiny, ict_head, full_run, tmp_path):
    first = _train(tiny, ict_head, tmp_path, ["run.coarse_steps=3", "run.detail_steps=0", *tiny.RANDOM])
    assert first == "done" and ckpt.load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 3
    # add junk rows as a crash between checkpoint and exit would: they must be dropped on resume
    with open(tmp_path / "losses.csv", "a") as handle:
        handle.write("4,99,,,,,,,,,,,,,\n")
    budget = ["run.coarse_steps=6", "run.detail_steps=4", *tiny.RANDOM]
    resumed = _train(tiny, ict_head, tmp_path, budget, resume=True)
    assert resumed == "done"
    _assert_same_state(
        _model_state(tmp_path / "checkpoints" / "last.pt"), _model_state(full_run / "checkpoints/last.pt")
    )
    assert _rows(tmp_path / "losses.csv") == _rows(full_run / "losses.csv")


def test_each_stage_trains_only_its_parameters(tiny, ict_head, full_run):
    seed_everything(0)
    config = load_train_config(None, tiny.BASE_OVERRIDES + tiny.RANDOM)
    initial = tiny.tiny_model(config, ict_head).state_dict()
    coarse = _model_state(full_run / "checkpoints" / "coarse.pt")
    detail = _model_state(full_run / "checkpoints" / "detail.pt")
    for key in initial:
        if key.startswith("detail_"):
            assert torch.equal(coarse[key], initial[key]), key  # untouched by the coarse stage
        elif key.startswith(("encoder.", "albedo.")) and key.endswith(("weight", "basis")):
            assert not torch.equal(coarse[key], initial[key]), key
            assert torch.equal(detail[key], coarse[key]), key  # frozen in the detail stage
    assert not torch.equal(detail[DETAIL_KEY], coarse[DETAIL_KEY])


def test_nan_vertices_skip_the_step_and_are_counted(tiny, ict_head, tmp_path, caplog):
    """NaN vertices make the rasteriser raise NonFiniteError: the step is skipped and counted, the run
    goes on (not a user error, not a crash)."""
    _train(tiny, ict_head, tmp_path / "one", ["run.coarse_steps=1", "stages=[coarse]"])
    with caplog.at_level("WARNING", logger="vitdeca.train.trainer"):
        _train(tiny, ict_head, tmp_path / "nan", ["run.coarse_steps=3", "stages=[coarse]"], nan_calls=(2, 3))
    rows = _rows(tmp_path / "nan" / "losses.csv")
    assert math.isfinite(float(rows[1][1])) and rows[2][1] == "nan" and rows[3][1] == "nan"
    messages = [r.getMessage() for r in caplog.records]
    assert "step 2: rasterize: vertices contain NaN or Inf" in messages
    assert any("step 3: non-finite loss, update skipped (2 in a row)" in m for m in messages)
    # the two non-finite steps changed nothing
    _assert_same_state(
        _model_state(tmp_path / "nan/checkpoints/last.pt"), _model_state(tmp_path / "one/checkpoints/last.pt")
    )


def test_too_many_nonfinite_steps_stop_with_a_clear_message(tiny, ict_head, tmp_path):
    with pytest.raises(VitdecaError, match="3 non-finite steps in a row"):
        overrides = ["run.coarse_steps=10", "run.max_nonfinite=3"]
        _train(tiny, ict_head, tmp_path, overrides, nan_calls=tuple(range(1, 20)))


def test_checkpoints_are_the_model_payload_plus_the_training_state(full_run, ict_head):
    """``DecaModel.load`` reads a training checkpoint; it records the head model and vitdeca's version."""
    from vitdeca import __version__
    from vitdeca.model import DecaModel

    state = ckpt.load_checkpoint(full_run / "checkpoints" / "last.pt")
    assert state["vitdeca_version"] == __version__
    assert state["head_model"] == {"name": "ict", "checksum": ict_head.checksum()}
    model = DecaModel.load(full_run / "checkpoints" / "last.pt", head=ict_head)
    _assert_same_state(model.state_dict(), state["model"])


def test_existing_run_needs_resume_and_resume_keeps_the_config(tiny, ict_head, full_run):
    with pytest.raises(VitdecaError, match="already holds a training run"):
        _train(tiny, ict_head, full_run, [])
    with pytest.raises(VitdecaError, match="losses.landmark"):
        _train(tiny, ict_head, full_run, ["losses.landmark=2", *tiny.RANDOM], resume=True)
    # a finished run resumed with the same budget has nothing left to do
    budget = ["run.coarse_steps=6", "run.detail_steps=4", *tiny.RANDOM]
    assert _train(tiny, ict_head, full_run, budget, resume=True) == "done"


def test_detail_stage_alone_starts_from_a_coarse_checkpoint(tiny, ict_head, full_run, tmp_path):
    coarse = full_run / "checkpoints" / "coarse.pt"
    overrides = ["stages=[detail]", "run.detail_steps=2", f"run.init={coarse}", *tiny.RANDOM]
    assert _train(tiny, ict_head, tmp_path, overrides) == "done"
    before, after = _model_state(coarse), _model_state(tmp_path / "checkpoints" / "last.pt")
    assert torch.equal(after[COARSE_KEY], before[COARSE_KEY])
    assert not torch.equal(after[DETAIL_KEY], before[DETAIL_KEY])
    with pytest.raises(VitdecaError, match="no such checkpoint"):
        _train(tiny, ict_head, tmp_path / "x", ["stages=[detail]", f"run.init={tmp_path / 'none.pt'}"])
