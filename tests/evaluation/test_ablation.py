"""`vitdeca experiment ablation` end to end, tiny budget: 4 configs × 2 steps on a tiny synthetic set."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from vitdeca.cli import main
from vitdeca.data.synth import SynthOptions, write_synthetic_dataset
from vitdeca.evaluation.ablation import AblationOptions, format_table, run_overrides, train_command

REPO = Path(__file__).resolve().parents[2]
TINY_RUN = [
    "data.image_size=32", "model.image_size=32", "model.uv_size=32", "model.n_albedo=4", "model.detail=false",
    "stages=[coarse]", "data.identities_per_batch=2", "data.images_per_identity=2", "data.num_workers=0",
    "losses.identity=0", "losses.mrf=0", "run.device=cpu", "run.amp=none", "run.progress=false",
    "run.image_every=0", "run.log_every=1",
]  # fmt: skip


@pytest.fixture()
def home(ict_head, ict_home, monkeypatch):
    monkeypatch.setenv("VITDECA_HOME", str(ict_home))
    return ict_home


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one intra-op thread (a second one mostly waits, very slowly on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_configs(folder: Path) -> Path:
    """The repository's ablation configs with ViT-B/16 swapped for ViT-Ti/16 (CI time); all else kept."""
    folder.mkdir()
    for config in sorted((REPO / "configs" / "ablation").glob("*.yaml")):
        text = config.read_text()
        (folder / config.name).write_text(text.replace("vit_base_patch16_224", "vit_tiny_patch16_224"))
    return folder


def test_ablation_trains_evaluates_and_reports_four_models(home, tmp_path, capsys):
    small = dict(size=48, supersample=1, uv_size=64)
    train, evaluation = tmp_path / "train", tmp_path / "eval"
    write_synthetic_dataset(train, SynthOptions(n_images=4, images_per_subject=2, seed=1, **small), False)
    write_synthetic_dataset(
        evaluation, SynthOptions(n_images=2, images_per_subject=1, seed=2, **small), False
    )
    out = tmp_path / "ablation"
    args = ["-q", "experiment", "ablation", "--data", str(train), "--eval", str(evaluation), "--steps", "2",
            "--out", str(out), "--configs", str(tiny_configs(tmp_path / "configs"))]  # fmt: skip
    for item in TINY_RUN:
        args += ["--set", item]
    assert main(args) == 0
    names = ["resnet50", "vit", "vit_dropkey001", "vit_dropkey005"]
    rows = [
        line for line in (out / "table.md").read_text().splitlines() if re.match(r"\| (resnet|vit)", line)
    ]
    assert [row.split("|")[1].strip() for row in rows] == names
    for row in rows:
        cells = [c.strip() for c in row.split("|")[2:6]]
        numbers = [float(c) for c in cells[:3]]
        assert all(math.isfinite(v) and 0 < v < 50 for v in numbers)  # mm
        assert cells[3] == "2/2"
    results = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == names
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in names:
        losses = (out / "runs" / name / "losses.csv").read_text().splitlines()
        assert losses[0].startswith("step,total") and len(losses) == 3  # header + 2 steps
        assert (out / "eval" / name / "summary.json").is_file()
    assert "vit_dropkey005: median" in capsys.readouterr().out


def test_overrides_and_launch_commands(tmp_path):
    options = AblationOptions(data="d", eval_dir="e", steps=7, out="o", overrides=["a.b=1"], seed=3)
    overrides = run_overrides(options)
    assert overrides[0] == f"data.manifest={Path('d').resolve()}"
    assert overrides[1:] == ["run.coarse_steps=7", "run.detail_steps=7", "run.seed=3", "a.b=1"]  # user's last
    options.launcher, options.nproc_per_node = "torchrun", 4
    command = train_command(options, Path("c.yaml"), tmp_path / "run")
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert command[6:10] == ["vitdeca", "train", "--config", "c.yaml"] and "--resume" in command
    assert command[-2:] == ["--set", "a.b=1"]


def test_table_formats_missing_numbers():
    from vitdeca.evaluation.ablation import AblationRow

    options = AblationOptions(data="d", eval_dir="e", steps=1, out="o")
    table = format_table([AblationRow("vit", "c", "r", 1.23456, 1.5, 0.25, 3, 4),
                          AblationRow("cnn", "c", "r", None, None, None, 0, 4)], options)  # fmt: skip
    assert "| vit | 1.235 | 1.500 | 0.250 | 3/4 |" in table
    assert "| cnn | n/a | n/a | n/a | 0/4 |" in table


def test_a_bad_evaluation_folder_fails_before_any_training(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "now").mkdir()
    configs = str(REPO / "configs" / "ablation")
    args = ["experiment", "ablation", "--data", str(tmp_path / "data"), "--eval", str(tmp_path / "now"),
            "--steps", "1", "--out", str(tmp_path / "out"), "--configs", configs]  # fmt: skip
    assert main(args) == 2
    assert "imagepathsvalidation.txt" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()
