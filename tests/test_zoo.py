"""The model zoo: names resolve to local files or checked downloads; inference files load and agree with
the checkpoint they came from; `reconstruct` chooses its model and method."""

from __future__ import annotations

import hashlib

import pytest
import torch

from vitdeca import zoo
from vitdeca.errors import VitdecaError
from vitdeca.model import DecaModel, ModelConfig

TINY = dict(encoder="vit_tiny_patch16_224", image_size=32, uv_size=32, n_albedo=4, detail=False)


@pytest.fixture
def entry(tmp_path, monkeypatch):
    """A registered zoo model served from a local folder through the mirror variable."""
    served = tmp_path / "mirror"
    served.mkdir()
    data = b"not really a model"
    (served / "fake.pt").write_bytes(data)
    monkeypatch.setenv(zoo.ENV_ZOO_URL, served.as_uri())
    monkeypatch.setenv("VITDECA_HOME", str(tmp_path / "home"))
    item = zoo.ZooEntry("fake-model", "fake.pt", hashlib.sha256(data).hexdigest(), len(data), "MIT", "x")
    monkeypatch.setitem(zoo.ZOO, item.name, item)
    return item


def test_a_name_downloads_once_with_its_checksum(entry, tmp_path):
    path = zoo.resolve_model("fake-model")
    assert path == tmp_path / "home" / "models" / "fake.pt" and path.read_bytes() == b"not really a model"
    assert zoo.installed("fake-model") == path


def test_a_checksum_mismatch_is_one_clear_error(entry, monkeypatch):
    monkeypatch.setitem(zoo.ZOO, entry.name, zoo.ZooEntry(entry.name, "fake.pt", "0" * 64, 1, "MIT", "x"))
    with pytest.raises(VitdecaError, match="checksum mismatch"):
        zoo.resolve_model("fake-model")
    assert zoo.installed("fake-model") is None  # nothing half-written is left as the model


def test_unknown_names_and_missing_files_are_user_errors(tmp_path):
    with pytest.raises(VitdecaError, match="not a zoo model"):
        zoo.resolve_model(tmp_path / "nothing.pt")
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"x")
    assert zoo.resolve_model(existing) == existing


def test_a_registered_name_is_registered_once(entry):
    with pytest.raises(ValueError, match="twice"):
        zoo.register(entry)


def test_inference_file_is_half_precision_and_regresses_like_the_checkpoint(ict_head, tmp_path):
    torch.manual_seed(0)
    model = DecaModel(ModelConfig(**TINY), head=ict_head).eval()
    checkpoint, exported = tmp_path / "full.pt", tmp_path / "small.pt"
    model.save(checkpoint)
    result = zoo.export_inference(checkpoint, exported)
    payload = torch.load(exported, weights_only=True)
    assert payload["format"] == zoo.INFERENCE_FORMAT
    assert {v.dtype for v in payload["model"].values() if v.is_floating_point()} == {torch.float16}
    assert result["size"] == exported.stat().st_size < checkpoint.stat().st_size
    loaded = DecaModel.load(exported, head=ict_head).eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        want, got = model.encode(images), loaded.encode(images)
    for name in ("shape", "expression", "pose", "camera"):
        assert torch.allclose(getattr(want, name), getattr(got, name), atol=2e-3, rtol=1e-2), name


def test_reconstruct_chooses_fit_without_a_model_and_refine_with_one(monkeypatch, tmp_path):
    from vitdeca.cli.reconstruct import choose_model

    monkeypatch.setenv("VITDECA_HOME", str(tmp_path))
    monkeypatch.setattr(zoo, "installed", lambda name=zoo.DEFAULT_MODEL: None)
    assert choose_model(None, None) == (None, "fit")
    assert choose_model("x.pt", None) == ("x.pt", "refine")
    assert choose_model("x.pt", "regress") == ("x.pt", "regress")
    with pytest.raises(VitdecaError, match="needs a model"):
        choose_model(None, "regress")
    monkeypatch.setattr(zoo, "installed", lambda name=zoo.DEFAULT_MODEL: tmp_path / "m.pt")
    assert choose_model(None, None) == (zoo.DEFAULT_MODEL, "refine")
    assert choose_model(None, "fit") == (None, "fit")
