"""vitdeca.config: typed configs from YAML plus --set overrides."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from vitdeca.config import load_config, save_config
from vitdeca.errors import VitdecaError


@dataclass
class Optim:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Root:
    name: str = "run"
    optim: Optim = field(default_factory=Optim)
    tags: list[str] = field(default_factory=list)
    weights: str | None = None


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: a\noptim:\n  steps: 5\n")
    config = load_config(Root, path, ["optim.lr=1e-4", "tags=[x, y]", "weights=w.pt"])
    assert config == Root(name="a", optim=Optim(lr=1e-4, steps=5), tags=["x", "y"], weights="w.pt")
    assert isinstance(config.optim.lr, float)  # YAML reads 1e-4 as a string; the float field converts it
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(Root, tmp_path / "saved.yaml") == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.momentum=0.9", "unknown config key 'optim.momentum'"),
        ("optim.steps=many", "must be int"),
        ("optim.lr=fast", "must be a number"),
        ("nokey", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(tmp_path, override, message):
    with pytest.raises(VitdecaError, match=message):
        load_config(Root, None, [override])


def test_bad_yaml_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(VitdecaError, match="broken.yaml: not valid YAML"):
        load_config(Root, path)
    with pytest.raises(VitdecaError, match="missing.yaml: no such config file"):
        load_config(Root, tmp_path / "missing.yaml")
