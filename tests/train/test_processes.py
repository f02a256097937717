"""Training across processes: SIGTERM then --resume, and 2-process DDP (gloo) against 1 process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch

from vitdeca.train import checkpoint as ckpt

DDP_ATOL = 1e-5  # parameters after 4 Adam steps; gradient all-reduce changes only the summation order


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _standin(script, out, *args: str) -> list[str]:
    return [sys.executable, str(script), "--out", str(out), *args]


def _csv_rows(path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _state(path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(path)["model"]


def test_sigterm_saves_a_checkpoint_and_resume_matches_uninterrupted(standin, standin_script, tmp_path):
    budget = ["--set", "run.coarse_steps=12", "--set", "run.detail_steps=4", "--dropout", "0.2"]
    assert standin.main(["--out", str(tmp_path / "ref"), *budget]) == 0  # the uninterrupted reference

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _standin(standin_script, out, *budget, "--delay", "0.3"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _csv_rows(out / "losses.csv") < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "status: interrupted" in stdout and "SIGTERM received" in stderr
    stopped_at = ckpt.load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    assert 3 <= stopped_at < 16
    assert _csv_rows(out / "losses.csv") == stopped_at  # the step in flight finished and was logged

    resumed = subprocess.run(
        _standin(standin_script, out, *budget, "--resume"), env=_env(), capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    final, ref = _state(out / "checkpoints" / "last.pt"), _state(tmp_path / "ref" / "checkpoints" / "last.pt")
    for key in ref:
        assert torch.equal(final[key], ref[key]), key
    assert (out / "losses.csv").read_text() == (tmp_path / "ref" / "losses.csv").read_text()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(standin, standin_script, tmp_path):
    budget = ["--set", "run.coarse_steps=3", "--set", "run.detail_steps=1", "--set", "optim.lr=0.001"]
    assert standin.main(["--out", str(tmp_path / "one"), *budget]) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    double = subprocess.run(
        [*torchrun, *_standin(standin_script, tmp_path / "two", *budget)[1:]],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = _state(tmp_path / "one/checkpoints/last.pt"), _state(tmp_path / "two/checkpoints/last.pt")
    init = _state(tmp_path / "one/checkpoints/coarse.pt")
    moved = 0
    for key in one:
        assert torch.allclose(one[key], two[key], atol=DDP_ATOL, rtol=0), key
        moved += not torch.equal(one[key], init[key])
    assert moved > 0
    # the logged losses are the global-batch means on both sides
    rows_one = (tmp_path / "one/losses.csv").read_text().splitlines()
    rows_two = (tmp_path / "two/losses.csv").read_text().splitlines()
    first_one, first_two = rows_one[1].split(","), rows_two[1].split(",")
    assert abs(float(first_one[1]) - float(first_two[1])) < 1e-5
