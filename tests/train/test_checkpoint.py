"""Checkpoints: atomic round trip, RNG states, clear errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from vitdeca.errors import VitdecaError
from vitdeca.train import checkpoint as ckpt


def _state(model: torch.nn.Module, optimizer) -> dict:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": {"last_epoch": 3},
        "step": 7,
        "stage": "coarse",
        "data": {"epoch": 2, "index": 1},
        "config": {"run": {"seed": 0}, "stages": ["coarse"]},
        "head_model": {"name": "ict", "checksum": "abc123"},
    }


def test_round_trip_restores_everything(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = ckpt.save_checkpoint(tmp_path / "ck" / "last.pt", _state(model, optimizer))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary left behind
    loaded = ckpt.load_checkpoint(path)  # weights_only=True inside
    clone = torch.nn.Linear(3, 2)
    ckpt.load_model_state(path, clone, loaded["model"])
    assert torch.equal(clone.weight, model.weight)
    opt2 = torch.optim.Adam(clone.parameters(), lr=0.1)
    opt2.load_state_dict(loaded["optimizer"])
    assert torch.equal(
        opt2.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert (loaded["step"], loaded["stage"], loaded["data"]) == (7, "coarse", {"epoch": 2, "index": 1})
    assert loaded["vitdeca_version"] and loaded["format"] == ckpt.FORMAT


def test_rng_state_reproduces_python_numpy_and_torch_draws():
    random.seed(1)
    np.random.seed(1)  # noqa: NPY002
    torch.manual_seed(1)
    np.random.normal()  # noqa: NPY002 — leaves a cached gaussian in the state
    state = ckpt.rng_state()
    expected = (random.random(), np.random.normal(), torch.rand(2))  # noqa: NPY002
    random.seed(99)
    np.random.seed(99)  # noqa: NPY002
    torch.manual_seed(99)
    ckpt.set_rng_state(state)
    got = (random.random(), np.random.normal(), torch.rand(2))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def test_missing_truncated_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(VitdecaError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "none.pt")
    model = torch.nn.Linear(2, 2)
    path = ckpt.save_checkpoint(tmp_path / "a.pt", _state(model, torch.optim.SGD(model.parameters(), lr=1)))
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:100])
    with pytest.raises(VitdecaError, match="truncated.pt: not a readable checkpoint"):
        ckpt.load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(1)}, foreign)
    with pytest.raises(VitdecaError, match="missing model, optimizer"):
        ckpt.load_checkpoint(foreign)


def test_model_and_head_mismatches_are_clear_errors(tmp_path):
    with pytest.raises(VitdecaError, match="does not match the config"):
        ckpt.load_model_state("x.pt", torch.nn.Linear(2, 3), torch.nn.Linear(2, 2).state_dict())
    saved = {"name": "ict", "checksum": "aaaa"}
    ckpt.check_head_model("x.pt", saved, {"name": "ict", "checksum": "aaaa"})
    with pytest.raises(VitdecaError, match="trained with head model 'ict'"):
        ckpt.check_head_model("x.pt", saved, {"name": "flame", "checksum": "aaaa"})
    with pytest.raises(VitdecaError, match="data differ"):
        ckpt.check_head_model("x.pt", saved, {"name": "ict", "checksum": "bbbb"})


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_linked_checkpoint_keeps_its_state_when_the_other_name_is_saved_again(
    tmp_path, monkeypatch, hard_links
):
    """link_checkpoint: one file on disk for two names (or a copy without hard links); saving last.pt
    again replaces that name only, so the stage's checkpoint keeps the state it had."""
    import os

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    last = ckpt.save_checkpoint(tmp_path / "last.pt", _state(model, optimizer))
    if not hard_links:
        monkeypatch.setattr(os, "link", lambda *_: (_ for _ in ()).throw(OSError("no hard links")))
    stage = ckpt.link_checkpoint(last, tmp_path / "coarse.pt")
    assert stage.samefile(last) == hard_links
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coarse.pt", "last.pt"]  # no temporary left
    later = dict(_state(model, optimizer), step=99)
    ckpt.save_checkpoint(last, later)
    assert ckpt.load_checkpoint(stage)["step"] == 7 and ckpt.load_checkpoint(last)["step"] == 99
