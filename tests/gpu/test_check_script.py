"""CI keeps ``benchmarks/gpu/check.sh`` working: its dry run (tiny sizes on the CPU) must succeed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu.md"
    command = ["bash", str(REPO / "benchmarks" / "gpu" / "check.sh"), "--dry-run", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    report = out.read_text()
    assert "dry run" in report and "GPU: none" in report
    assert "## 1. Tests marked `cuda`" in report and "passed (or skipped)" in report
    for row in ("| ResNet50 |", "| ViT-B/16 |", "| ViT-B/16 + DropKey 0.05 |", "| encode + decode"):
        assert report.count(row) == 1, row
    assert "nan" not in report.lower()
