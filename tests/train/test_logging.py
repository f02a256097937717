"""Training records: the CSV log, landmark drawing and grids, plot-curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitdeca.cli import main
from vitdeca.errors import VitdecaError
from vitdeca.train.logging import CsvLog, draw_points, image_grid, read_losses_csv
from vitdeca.train.plots import ema


def test_csv_log_appends_and_a_resume_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "losses.csv"
    log = CsvLog(path, ["a", "b"])
    for step in (1, 2, 3):
        log.write(step, float(step), {"a": 0.5 * step})
    log.write(4, math.nan, {"a": math.nan})
    log.close()
    table = read_losses_csv(path)
    assert table["step"] == [1, 2, 3, 4] and table["a"][:3] == [0.5, 1.0, 1.5]
    assert math.isnan(table["b"][0]) and math.isnan(table["total"][3])
    resumed = CsvLog(path, ["a", "b"], resume_step=2)
    resumed.write(3, 30.0, {"b": 3.0})
    resumed.close()
    assert read_losses_csv(path)["total"] == [1.0, 2.0, 30.0]
    with pytest.raises(VitdecaError, match="columns differ"):
        CsvLog(path, ["a", "c"], resume_step=2)


def test_draw_points_colours_the_pixel_under_each_point():
    images = torch.zeros(1, 3, 5, 5)
    out = draw_points(images, torch.tensor([[[2.5, 1.5], [9.0, 9.0]]]), (1.0, 0.0, 0.0), radius=0)
    expected = torch.zeros(5, 5)
    expected[1, 2] = 1.0  # x 2.5 → column 2, y 1.5 → row 1; the point outside is skipped
    assert torch.equal(out[0, 0], expected) and out[0, 1:].abs().sum() == 0
    assert images.abs().sum() == 0  # the input is not modified


def test_image_grid_lays_out_input_landmarks_render_shape():
    images = torch.full((3, 3, 4, 4), 0.2)
    grid = image_grid(images, torch.full((3, 68, 2), 1.5), torch.full((3, 68, 2), 2.5),
                      torch.full((3, 3, 4, 4), 0.6), torch.full((3, 3, 4, 4), 0.8), max_rows=2)  # fmt: skip
    assert grid.shape == (3, 8, 16)
    assert grid[0, 0, 0] == pytest.approx(0.2) and grid[0, 0, 8] == pytest.approx(0.6)
    assert grid[0, 0, 12] == pytest.approx(0.8)
    assert torch.allclose(grid[:, 0, 4], torch.tensor([0.1, 0.9, 0.1]))  # target (3×3 square at 1,1): green
    assert torch.allclose(grid[:, 3, 7], torch.tensor([0.95, 0.1, 0.1]))  # prediction (at 2,2): red


def test_ema_restarts_after_gaps():
    assert ema([1.0, 3.0], 0.5) == [1.0, 2.0]
    out = ema([1.0, math.nan, 5.0], 0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == 5.0


def test_plot_curves_cli_writes_an_image_and_names_bad_runs(tmp_path, capsys):
    for name, scale in (("vit", 1.0), ("resnet50", 2.0)):
        log = CsvLog(tmp_path / name / "losses.csv", ["landmark"])
        for step in range(1, 20):
            log.write(step, scale / step, {"landmark": scale / step / 2})
        log.close()
    out = tmp_path / "curves.png"
    assert main(["plot-curves", str(tmp_path / "vit"), str(tmp_path / "resnet50"), "--out", str(out)]) == 0
    import imageio.v3 as iio

    image = iio.imread(out)
    assert image.ndim == 3 and image.shape[1] > image.shape[0] and np.ptp(image) > 0
    assert main(["plot-curves", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope/losses.csv: no such file" in capsys.readouterr().err
    assert main(["plot-curves", str(tmp_path / "vit"), "--terms", "mrf", "--out", str(out)]) == 2


def test_train_cli_needs_a_config_for_a_new_run(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert "--config FILE is required" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert "no such config file" in capsys.readouterr().err
