"""`vitdeca experiment ablation` end to end, tiny budget: 4 configs × 2 steps on a tiny synthetic set."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
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


pytestmark = pytest.mark.usefixtures("module_single_thread")


def test_ablation_trains_evaluates_and_reports_every_row(home, tmp_path, capsys):
    small = dict(size=48, supersample=1, uv_size=64)
    train, evaluation = tmp_path / "train", tmp_path / "eval"
    write_synthetic_dataset(train, SynthOptions(n_images=4, images_per_subject=2, seed=1, **small), False)
    write_synthetic_dataset(
        evaluation, SynthOptions(n_images=2, images_per_subject=1, seed=2, **small), False
    )
    out = tmp_path / "ablation"
    args = ["-q", "experiment", "ablation", "--data", str(train), "--eval", str(evaluation), "--steps", "2",
            "--out", str(out), "--vit", "vit_tiny_patch16_224", "--seeds", "0,1", "--extra-seed-rows", "vit",
            "--val", str(evaluation), "--val-every", "1", "--nme-data", str(evaluation),
            "--bootstrap", "50"]  # fmt: skip
    for item in TINY_RUN:
        args += ["--set", item]
    assert main(args) == 0
    names = ["resnet50", "vit", "vit_dropkey001", "vit_dropkey005", "mean face"]
    rows = [
        line
        for line in (out / "table.md").read_text().splitlines()
        if re.match(r"\| (resnet|vit|mean)", line)
    ]
    assert [row.split("|")[1].strip() for row in rows] == names
    results = json.loads((out / "results.json").read_text())
    runs = [(r["name"], r["seed"]) for r in results["rows"]]
    assert runs == [("resnet50", 0), ("vit", 0), ("vit", 1), ("vit_dropkey001", 0), ("vit_dropkey005", 0)]
    base = results["mean_face"]
    assert 0 < base["median"] < 50 and base["relative_median"] == 1.0 and base["val_shape_mm"] > 0
    for row in results["rows"]:
        assert all(math.isfinite(row[k]) and 0 < row[k] < 50 for k in ("median", "mean", "std"))  # mm
        assert row["relative_median"] == pytest.approx(row["median"] / base["median"])
        assert row["count"] == 2 and row["val_shape_mm"] > 0 and 0 < row["nme"] < 5
        summary = json.loads((out / "eval" / row["name"] / f"seed{row['seed']}" / "summary.json").read_text())
        assert summary["baseline"]["mean_face"]["median"] == pytest.approx(base["median"])
        losses = (out / "runs" / row["name"] / f"seed{row['seed']}" / "losses.csv").read_text().splitlines()
        assert losses[0].startswith("step,total") and "val_shape_mm" in losses[0] and len(losses) == 3
    vit = [r for r in results["rows"] if r["name"] == "vit"]
    cells = [c.strip() for c in rows[1].split("|")[1:-1]]
    assert cells[1] == "0, 1" and float(cells[2]) == pytest.approx(
        np.mean([r["median"] for r in vit]), abs=1e-3
    )
    assert float(cells[5]) == pytest.approx(abs(vit[0]["median"] - vit[1]["median"]), abs=1e-3)  # spread
    mean_cells = [c.strip() for c in rows[-1].split("|")[1:-1]]
    assert mean_cells[7] == "1.000" and mean_cells[-1] == "2/2"
    config = (out / "runs" / "vit" / "seed1" / "config.yaml").read_text()
    assert "vit_tiny_patch16_224" in config and "seed: 1" in config
    assert "resnet50" in (out / "runs" / "resnet50" / "seed0" / "config.yaml").read_text()
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "vit_dropkey005 seed 0: median" in capsys.readouterr().out


def test_overrides_and_launch_commands(tmp_path):
    from vitdeca.evaluation.ablation import Run, plan_runs

    configs = REPO / "configs" / "ablation"
    options = AblationOptions(data="d", eval_dir="e", steps=7, out=str(tmp_path), overrides=["a.b=1"],
                              seeds=[3, 4], extra_seed_rows=["vit"], vit="vit_small_patch16_224",
                              val_data="v", val_every=5)  # fmt: skip
    vit = run_overrides(options, 4, configs / "vit.yaml")
    assert vit[0] == f"data.manifest={Path('d').resolve()}"
    assert vit[1:6] == ["run.coarse_steps=7", "run.detail_steps=7", "run.seed=4",
                        f"data.val_manifest={Path('v').resolve()}", "run.val_every=5"]  # fmt: skip
    assert vit[6:] == ["a.b=1", "model.encoder=vit_small_patch16_224"]  # the user's, then the row's
    assert run_overrides(options, 3, configs / "resnet50.yaml")[-1] == "a.b=1"  # ResNet keeps its encoder
    pretrained = REPO / "configs" / "ablation_pretrained" / "vit_dinov2_small.yaml"
    assert run_overrides(options, 3, pretrained)[-1] == "a.b=1"  # and so does the pretrained ViT
    options.configs, options.pretrained_config = str(configs), str(pretrained)
    planned = [(r.name, r.seed) for r in plan_runs(options)]
    assert planned == [("resnet50", 3), ("vit", 3), ("vit", 4), ("vit_dropkey001", 3), ("vit_dropkey005", 3),
                       ("vit_dinov2_small", 3)]  # fmt: skip
    options.launcher, options.nproc_per_node = "torchrun", 4
    (tmp_path / "c.yaml").write_text("model: {encoder: resnet50}\n")
    run = Run("vit", tmp_path / "c.yaml", 3, tmp_path / "run", tmp_path / "eval")
    command = train_command(options, run)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m"]
    assert (
        command[6:10] == ["vitdeca", "train", "--config", str(tmp_path / "c.yaml")] and "--resume" in command
    )
    assert command[-2:] == ["--set", "a.b=1"]


def test_table_averages_seeds_and_formats_missing_numbers():
    from vitdeca.evaluation.ablation import AblationRow

    options = AblationOptions(data="d", eval_dir="e", steps=1, out="o", seeds=[0, 1])
    rows = [AblationRow("vit", "c", "r", 0, 1.2, 1.5, 0.25, 3, 4, 0.8, [1.1, 1.3], [0.7, 0.9],
                        {"neutral": {"relative_median": 0.7}}, 0.031, 2.0),
            AblationRow("vit", "c", "r", 1, 1.4, 1.7, 0.35, 3, 4, 0.9, None, None,
                        {"neutral": {"relative_median": 0.8}}, 0.033, 3.0),
            AblationRow("cnn", "c", "r", 0, None, None, None, 0, 4)]  # fmt: skip
    table = format_table(rows, options)
    assert (
        "| vit | 0, 1 | 1.300 | 1.600 | 0.300 | 0.200 | 1.100–1.300 | 0.850 | 0.700–0.900 | 0.750 | 3.20 "
        in table
    )
    assert "| 2.500 | 6/8 |" in table
    assert "| cnn | 0 | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | n/a | 0/4 |" in table


def test_a_bad_evaluation_folder_fails_before_any_training(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "now").mkdir()
    configs = str(REPO / "configs" / "ablation")
    args = ["experiment", "ablation", "--data", str(tmp_path / "data"), "--eval", str(tmp_path / "now"),
            "--steps", "1", "--out", str(tmp_path / "out"), "--configs", configs]  # fmt: skip
    assert main(args) == 2
    assert "imagepathsvalidation.txt" in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()


def test_gpu_script_dry_run(home, tmp_path):
    """benchmarks/gpu/ablation.sh --dry-run (benchmarks/ablation.sh --profile dry): the scripts' whole path
    (synthetic sets, parallel subprocess trainings, evaluation, results file) for 2 steps on the CPU;
    results stay under --out."""
    import os
    import subprocess

    out = tmp_path / "dry"
    script = REPO / "benchmarks" / "gpu" / "ablation.sh"
    env = {**os.environ, "VITDECA_HOME": str(home), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(script), "--dry-run", "--out", str(out)], env=env, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    text = (out / "ablation_dry.md").read_text()
    names = [
        line.split("|")[1].strip() for line in text.splitlines() if re.match(r"\| (resnet|vit|mean)", line)
    ]
    assert names == ["resnet50", "vit", "vit_dropkey001", "vit_dropkey005", "mean face"]
    assert "wall time" in text and "| 0, 1 |" in text  # the ViT row's second seed
    assert (out / "ablation_dry_curves.png").read_bytes()[:4] == b"\x89PNG"
