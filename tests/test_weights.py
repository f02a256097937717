"""The one weights loader: every format reads, and hostile files run nothing, through every entry point."""

from __future__ import annotations

import argparse
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from vitdeca.cli import main
from vitdeca.errors import VitdecaError
from vitdeca.weights import file_format, read_state_dict, read_weights

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("zip", "legacy", "pickle")


class Evil:
    """Unpickling this object creates ``marker``, through ``exec`` or a shell (``os.system``)."""

    def __init__(self, marker: Path, shell: bool = False) -> None:
        self.marker, self.shell = marker, shell

    def __reduce__(self):
        if self.shell:
            return os.system, (f"echo pwned > '{self.marker}'",)
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def write(path: Path, obj, form: str) -> Path:
    """``obj`` saved as a torch zip file, a legacy torch file or a plain pickle."""
    if form == "pickle":
        path.write_bytes(pickle.dumps(obj, protocol=4))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=form == "zip")
    return path


def evil_checkpoint(tmp_path: Path, form: str, shell: bool = False) -> tuple[Path, Path]:
    """A checkpoint-shaped dict with one extra pickled object; returns (file, marker)."""
    marker = tmp_path / f"marker-{form}-{shell}"
    payload = {
        "model": OrderedDict(w=torch.ones(2)),
        "model_config": {},
        "head_model": {"name": "ict", "checksum": "0"},
        "extra": Evil(marker, shell),
    }
    return write(tmp_path / f"evil-{form}-{shell}.pt", payload, form), marker


def test_the_evil_object_does_run_when_unpickled_plainly(tmp_path):
    """The fixture is armed: a plain ``pickle.load`` creates the marker (so its absence below means)."""
    path, marker = evil_checkpoint(tmp_path, "pickle")
    pickle.loads(path.read_bytes())
    assert marker.read_text() == "pwned"


@pytest.mark.parametrize("shell", [False, True])
@pytest.mark.parametrize("form", FORMATS)
def test_hostile_files_are_refused_without_running(tmp_path, form, shell):
    path, marker = evil_checkpoint(tmp_path, form, shell)
    with pytest.raises(VitdecaError, match="refusing to load") as info:
        read_weights(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert ("system" if shell else "exec") in message and "weights_only" not in message
    assert not marker.exists()


@pytest.mark.parametrize("form", FORMATS)
def test_plain_weights_read_in_every_format(tmp_path, form):
    state = OrderedDict(weight=torch.arange(6.0).reshape(2, 3), bias=torch.tensor([1, 2]))
    path = write(tmp_path / f"w-{form}.bin", {"state_dict": state, "epoch": 3}, form)
    expected = {"torch-zip" if form == "zip" else f"torch-{form}" if form == "legacy" else "pickle"}
    assert {file_format(path)} == expected
    got = read_weights(path)
    assert got["epoch"] == 3 and torch.equal(got["state_dict"]["weight"], state["weight"])
    assert read_state_dict(path).keys() == state.keys()


def test_safetensors_and_allow_listed_types(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(3)}, tmp_path / "w.safetensors")
    assert torch.equal(read_weights(tmp_path / "w.safetensors")["a"], torch.ones(3))
    # timm's training script stores its arguments and numpy values beside the weights
    payload = {"model": {"module.x": torch.zeros(1)}, "args": argparse.Namespace(lr=0.1), "n": np.arange(3)}
    torch.save(payload, tmp_path / "timm.pth")
    got = read_weights(tmp_path / "timm.pth")
    assert got["args"].lr == 0.1 and np.array_equal(got["n"], np.arange(3))
    assert list(read_state_dict(tmp_path / "timm.pth")) == ["x"]  # unwrapped, prefix dropped


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty file"), (b"PK\x03\x04 truncated", "not a readable checkpoint"), (b"\x80\x04junk", "not a")],
)
def test_broken_files_name_the_file(tmp_path, data, message):
    path = tmp_path / "broken.pt"
    path.write_bytes(data)
    with pytest.raises(VitdecaError, match=message) as info:
        read_weights(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
    with pytest.raises(VitdecaError, match="no such checkpoint"):
        read_weights(tmp_path / "absent.pt")


def _photo(tmp_path: Path) -> Path:
    from vitdeca.media import save_png

    return save_png(tmp_path / "photo.png", np.full((32, 32, 3), 128, np.uint8))


def _entry_points(tmp_path: Path, evil: Path) -> dict[str, list[str]]:
    photo, out = str(_photo(tmp_path)), str(tmp_path / "out")
    (tmp_path / "dataset").mkdir(exist_ok=True)
    return {
        "reconstruct": ["reconstruct", photo, "--out", out, "--checkpoint", str(evil), "--no-progress"],
        "fit": ["fit", photo, "--out", out, "--checkpoint", str(evil), "--no-progress"],
        "transfer": [
            "transfer",
            "--identity",
            photo,
            "--expression",
            photo,
            "--out",
            out,
            "--checkpoint",
            str(evil),
        ],  # fmt: skip
        "eval synth": [
            "eval",
            "synth",
            "--dataset",
            str(tmp_path / "dataset"),
            "--out",
            out,
            "--checkpoint",
            str(evil),
        ],  # fmt: skip
        "train": [
            "train",
            "--config",
            str(REPO / "configs" / "cpu_tiny.yaml"),
            "--out",
            str(tmp_path / "run"),
            "--set",
            f"run.init={evil}",
        ],  # fmt: skip
    }


@pytest.mark.parametrize("command", ["reconstruct", "fit", "transfer", "eval synth", "train"])
def test_every_entry_point_refuses_hostile_checkpoints(tmp_path, capsys, command):
    for form in FORMATS:
        evil, marker = evil_checkpoint(tmp_path, form, shell=form == "legacy")
        status = main(_entry_points(tmp_path, evil)[command])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2, (form, err)
        assert len(err) == 1 and err[0].startswith(f"vitdeca: error: {evil}: refusing to load"), (form, err)
        assert not marker.exists(), form
