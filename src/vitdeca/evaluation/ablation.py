"""The paper's encoder ablation (Table 2, figure 4): train several configs alike, evaluate, tabulate.

:func:`run_ablation` trains every ``CONFIGS/*.yaml`` (sorted by name; the name is the table's model
column) into ``OUT/runs/NAME`` with the same overrides for all of them::

    data.manifest=DATA  run.coarse_steps=N  run.detail_steps=N  run.seed=SEED  (then the user's --set)

evaluates each final checkpoint with :func:`vitdeca.evaluation.synthetic.evaluate_model` into
``OUT/eval/NAME`` (NoW protocol on a NoW-layout folder: a ``vitdeca synth`` dataset, cropped from its true
landmarks, or the real NoW validation set, cropped from detections), and writes ``OUT/table.md``,
``OUT/results.json`` and ``OUT/curves.png`` (:func:`vitdeca.train.plots.plot_curves` over the runs).

Every training is started with ``resume``: a finished run is only re-evaluated, an interrupted one
continues, and a larger ``--steps`` extends them. Launchers: ``inline`` (this process, through
:func:`vitdeca.train.run.run_training`), ``subprocess`` (``python -m vitdeca train``), ``torchrun``
(``python -m torch.distributed.run --standalone --nproc_per_node K -m vitdeca train``, for GPUs; the
evaluation then runs in this process on ``device``).
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_write_bytes

log = logging.getLogger(__name__)

LAUNCHERS = ("inline", "subprocess", "torchrun")
CURVE_TERMS = ("total", "landmark")


@dataclass
class AblationOptions:
    """Inputs of :func:`run_ablation` (paths as given on the command line)."""

    data: str
    eval_dir: str
    steps: int
    out: str
    configs: str = "configs/ablation"
    overrides: list[str] = field(default_factory=list)
    seed: int = 0
    launcher: str = "inline"
    nproc_per_node: int = 1
    landmarks: str = "auto"
    device: str = "cpu"
    workers: int = 1
    batch_size: int = 8
    progress: bool = True


@dataclass
class AblationRow:
    """One model's result: NoW statistics in mm over all evaluated images (None when none was)."""

    name: str
    config: str
    run_dir: str
    median: float | None
    mean: float | None
    std: float | None
    count: int
    expected: int


def ablation_configs(folder: str | Path) -> list[Path]:
    """The ``*.yaml`` configs of the ablation, sorted by name."""
    folder = Path(folder)
    configs = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not configs:
        raise VitdecaError(f"{folder}: no ablation configs (*.yaml)")
    return configs


def run_overrides(options: AblationOptions) -> list[str]:
    """The ``--set`` list every run gets: data, budget and seed first, then the user's."""
    return [
        f"data.manifest={Path(options.data).resolve()}",
        f"run.coarse_steps={options.steps}",
        f"run.detail_steps={options.steps}",
        f"run.seed={options.seed}",
        *options.overrides,
    ]


def train_command(options: AblationOptions, config: Path, run_dir: Path) -> list[str]:
    """The command line of one training (``subprocess`` and ``torchrun`` launchers)."""
    train = ["-m", "vitdeca", "train", "--config", str(config), "--out", str(run_dir), "--resume"]
    for item in run_overrides(options):
        train += ["--set", item]
    if options.launcher == "torchrun":
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={options.nproc_per_node}"]
        return [sys.executable, *launch, *train]
    return [sys.executable, *train]


def train_one(options: AblationOptions, config: Path, run_dir: Path) -> None:
    """Train (or resume, or just confirm) one run with the chosen launcher."""
    if options.launcher not in LAUNCHERS:
        raise VitdecaError(f"unknown launcher {options.launcher!r}; use one of {', '.join(LAUNCHERS)}")
    log.info("training %s into %s (%s)", config.name, run_dir, options.launcher)
    if options.launcher == "inline":
        from vitdeca.train.run import run_training

        status = run_training(str(config), run_dir, run_overrides(options), resume=True)
        if status != "done":
            raise VitdecaError(f"{run_dir}: training was interrupted; rerun the ablation to continue")
        return
    command = train_command(options, config, run_dir)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise VitdecaError(f"{run_dir}: training exited with status {result.returncode}: {' '.join(command)}")


def evaluate_run(options: AblationOptions, name: str, config: Path, run_dir: Path) -> AblationRow:
    """Evaluate a run's ``checkpoints/last.pt`` into ``OUT/eval/NAME``."""
    from vitdeca.evaluation.synthetic import evaluate_model
    from vitdeca.train.run import checkpoint_path

    checkpoint = checkpoint_path(run_dir)
    if not checkpoint.is_file():
        raise VitdecaError(f"{run_dir}: no checkpoint after training ({checkpoint})")
    summary = evaluate_model(
        options.eval_dir, Path(options.out) / "eval" / name, checkpoint, landmarks=options.landmarks,
        device=options.device, batch_size=options.batch_size, workers=options.workers,
        progress=options.progress,
    )  # fmt: skip
    return AblationRow(
        name, str(config), str(run_dir), summary["median"], summary["mean"], summary["std"],
        summary["count"], summary["expected"],
    )  # fmt: skip


def format_table(rows: list[AblationRow], options: AblationOptions) -> str:
    """``table.md``: model | median | mean | std (mm), with the setup in a sentence above it."""

    def number(value: float | None) -> str:
        return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"

    lines = [
        "# Encoder ablation: NoW scan-to-mesh error (mm)",
        "",
        f"Trained on `{options.data}` for {options.steps} steps per stage (seed {options.seed}"
        + (f"; overrides: {', '.join(options.overrides)}" if options.overrides else "")
        + f"); evaluated on `{options.eval_dir}` (crops from landmarks: {options.landmarks}).",
        "",
        "| model | median | mean | std | images |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {number(row.median)} | {number(row.mean)} | {number(row.std)} "
            f"| {row.count}/{row.expected} |"
        )
    return "\n".join(lines) + "\n"


def run_ablation(options: AblationOptions) -> list[AblationRow]:
    """Train, evaluate and report every ablation config (see the module docstring); returns the rows."""
    from vitdeca.evaluation.now_dataset import read_image_list
    from vitdeca.train.plots import plot_curves

    if options.steps < 1:
        raise VitdecaError(f"--steps must be at least 1, got {options.steps}")
    for label, path in (("--data", options.data), ("--eval", options.eval_dir)):
        if not Path(path).exists():
            raise VitdecaError(f"{label} {path}: no such file or folder")
    read_image_list(options.eval_dir, "val")  # a bad evaluation folder fails now, not after training
    configs = ablation_configs(options.configs)
    out = Path(options.out)
    rows, run_dirs = [], []
    for config in configs:
        name = config.stem
        run_dir = out / "runs" / name
        train_one(options, config, run_dir)
        rows.append(evaluate_run(options, name, config, run_dir))
        run_dirs.append(run_dir)
        _write_results(out, rows, options)  # partial results survive a later failure
    plot_curves(run_dirs, out / "curves.png", terms=list(CURVE_TERMS))
    return rows


def _write_results(out: Path, rows: list[AblationRow], options: AblationOptions) -> None:
    atomic_write_bytes(out / "table.md", format_table(rows, options).encode())
    payload: dict[str, Any] = {"options": asdict(options), "rows": [asdict(r) for r in rows]}
    atomic_write_bytes(out / "results.json", (json.dumps(payload, indent=2) + "\n").encode())
