"""The paper's encoder ablation (Table 2, figure 4): train several configs alike, evaluate, tabulate.

:func:`run_ablation` trains every ``CONFIGS/*.yaml`` (sorted by name; the name is the table's model
column), then the optional ``--pretrained-config`` row, for each seed into ``OUT/runs/NAME/seedS`` with
the same overrides for all of them::

    data.manifest=DATA  run.coarse_steps=N  run.detail_steps=N  run.seed=S
    [data.val_manifest=VAL  run.val_every=E]  (then the user's --set)  [model.encoder=VIT]

(``--vit`` swaps the encoder of the random-init ViT rows only, so ResNet50 and the pretrained row keep
theirs). ``seeds[0]`` trains every row; the further seeds train the rows of ``extra_seed_rows`` (all when
empty). Each final checkpoint is evaluated with :func:`vitdeca.evaluation.synthetic.evaluate_model` into
``OUT/eval/NAME/seedS`` (NoW protocol on a NoW-layout folder: a ``vitdeca synth`` dataset, cropped from
its true landmarks, or the real NoW validation set, cropped from detections) against the **mean face**,
measured once in the same run (``OUT/eval/mean_face``); with ``nme_data`` (real photos with landmarks)
each row also gets the landmark NME. Writes ``OUT/table.md`` (one row per model: seed mean and spread,
bootstrap interval, relative median, per category, NME, validation shape error; then the mean face),
``OUT/results.json`` (every run) and ``OUT/curves.png`` (train and validation curves of every run).

Every training is started with ``resume``: a finished run is only re-evaluated, an interrupted one
continues, and a larger ``--steps`` extends them. Launchers: ``inline`` (this process, through
:func:`vitdeca.train.run.run_training`), ``subprocess`` (``python -m vitdeca train``; ``jobs`` > 1 runs
that many trainings at once, e.g. several small runs sharing one large GPU, each logging to
``RUN/train.log``), ``torchrun`` (``python -m torch.distributed.run --standalone --nproc_per_node K -m
vitdeca train``, for GPUs; the evaluation then runs in this process on ``device``).
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_write_bytes

log = logging.getLogger(__name__)

LAUNCHERS = ("inline", "subprocess", "torchrun")
CURVE_TERMS = ("total", "landmark")
MEAN_FACE = "mean face"


@dataclass
class AblationOptions:
    """Inputs of :func:`run_ablation` (paths as given on the command line; see the module docstring)."""

    data: str
    eval_dir: str
    steps: int
    out: str
    configs: str = "configs/ablation"
    overrides: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    extra_seed_rows: list[str] = field(default_factory=list)
    pretrained_config: str = ""
    vit: str = ""
    val_data: str = ""
    val_every: int = 0
    nme_data: str = ""
    launcher: str = "inline"
    nproc_per_node: int = 1
    jobs: int = 1
    landmarks: str = "auto"
    device: str = "cpu"
    workers: int = 1
    batch_size: int = 8
    bootstrap: int = 2000
    progress: bool = True


@dataclass(frozen=True)
class Run:
    """One training of the ablation: a row's config with one seed."""

    name: str
    config: Path
    seed: int
    run_dir: Path
    eval_dir: Path


@dataclass
class AblationRow:
    """One run's result: NoW statistics in mm over all evaluated images (None when none was), the
    subject-bootstrap intervals, the relative median (÷ mean face), per-category {median,
    relative_median}, landmark NME (fraction) on the photos, and the last validation shape error (mm)."""

    name: str
    config: str
    run_dir: str
    seed: int
    median: float | None
    mean: float | None
    std: float | None
    count: int
    expected: int
    relative_median: float | None = None
    ci95_median: list[float] | None = None
    relative_median_ci95: list[float] | None = None
    per_category: dict[str, dict[str, float | None]] = field(default_factory=dict)
    nme: float | None = None
    val_shape_mm: float | None = None


def ablation_configs(folder: str | Path) -> list[Path]:
    """The ``*.yaml`` configs of the ablation, sorted by name."""
    folder = Path(folder)
    configs = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])
    if not configs:
        raise VitdecaError(f"{folder}: no ablation configs (*.yaml)")
    return configs


def plan_runs(options: AblationOptions) -> list[Run]:
    """Every (row, seed) to train, rows in table order, the first seed of every row first."""
    configs = ablation_configs(options.configs)
    if options.pretrained_config:
        extra = Path(options.pretrained_config)
        if not extra.is_file():
            raise VitdecaError(f"--pretrained-config {extra}: no such file")
        configs.append(extra)
    names = [c.stem for c in configs]
    if len(set(names)) != len(names):
        raise VitdecaError(f"ablation rows need distinct config names, got {names}")
    unknown = sorted(set(options.extra_seed_rows) - set(names))
    if unknown:
        raise VitdecaError(f"--extra-seed-rows: no row named {', '.join(unknown)} (rows: {', '.join(names)})")
    if not options.seeds or len(set(options.seeds)) != len(options.seeds):
        raise VitdecaError(f"--seeds must list distinct seeds, got {options.seeds}")
    out = Path(options.out)
    runs = []
    for k, seed in enumerate(options.seeds):
        for config in configs:
            if k == 0 or not options.extra_seed_rows or config.stem in options.extra_seed_rows:
                tail = Path(config.stem) / f"seed{seed}"
                runs.append(Run(config.stem, config, seed, out / "runs" / tail, out / "eval" / tail))
    order = {name: i for i, name in enumerate(names)}
    return sorted(runs, key=lambda r: (order[r.name], options.seeds.index(r.seed)))


def _encoder_override(options: AblationOptions, config: Path) -> list[str]:
    """``model.encoder=VIT`` for a random-init ViT row when ``--vit`` is given, else nothing."""
    if not options.vit:
        return []
    import yaml

    model = (yaml.safe_load(config.read_text()) or {}).get("model") or {}
    encoder, pretrained = str(model.get("encoder", "")), model.get("pretrained")
    return [f"model.encoder={options.vit}"] if encoder.startswith("vit") and not pretrained else []


def run_overrides(options: AblationOptions, seed: int | None = None, config: Path | None = None) -> list[str]:
    """The ``--set`` list of one run: data, budget, seed and validation first, then the user's, then the
    ``--vit`` encoder of a random-init ViT row."""
    items = [
        f"data.manifest={Path(options.data).resolve()}",
        f"run.coarse_steps={options.steps}",
        f"run.detail_steps={options.steps}",
        f"run.seed={options.seeds[0] if seed is None else seed}",
    ]
    if options.val_data:
        items.append(f"data.val_manifest={Path(options.val_data).resolve()}")
        items.append(f"run.val_every={options.val_every}")
    return [*items, *options.overrides, *(_encoder_override(options, config) if config else [])]


def train_command(options: AblationOptions, run: Run) -> list[str]:
    """The command line of one training (``subprocess`` and ``torchrun`` launchers)."""
    train = ["-m", "vitdeca", "train", "--config", str(run.config), "--out", str(run.run_dir), "--resume"]
    for item in run_overrides(options, run.seed, run.config):
        train += ["--set", item]
    if options.launcher == "torchrun":
        launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={options.nproc_per_node}"]
        return [sys.executable, *launch, *train]
    return [sys.executable, *train]


def train_runs(options: AblationOptions, runs: list[Run]) -> None:
    """Train (or resume, or just confirm) every run with the chosen launcher; ``jobs`` at a time."""
    if options.launcher not in LAUNCHERS:
        raise VitdecaError(f"unknown launcher {options.launcher!r}; use one of {', '.join(LAUNCHERS)}")
    if options.jobs > 1 and options.launcher == "inline":
        raise VitdecaError("--jobs > 1 needs --launcher subprocess (or torchrun)")
    if options.launcher == "inline":
        from vitdeca.train.run import run_training

        for run in runs:
            log.info("training %s seed %d into %s (inline)", run.name, run.seed, run.run_dir)
            overrides = run_overrides(options, run.seed, run.config)
            if run_training(str(run.config), run.run_dir, overrides, resume=True) != "done":
                raise VitdecaError(f"{run.run_dir}: training was interrupted; rerun the ablation to continue")
        return
    failed = _train_processes(options, runs)
    if failed:
        raise VitdecaError(f"training failed: {'; '.join(failed)}")


def _train_processes(options: AblationOptions, runs: list[Run]) -> list[str]:
    """Child processes, at most ``jobs`` at once (each logging to RUN/train.log when more than one);
    returns the failures as 'RUN_DIR (status N)'."""
    pending, active, failed = list(runs), [], []
    while pending or active:
        while pending and len(active) < options.jobs:
            run = pending.pop(0)
            run.run_dir.mkdir(parents=True, exist_ok=True)
            sink = open(run.run_dir / "train.log", "ab") if options.jobs > 1 else None  # noqa: SIM115
            log.info("training %s seed %d into %s (%s)", run.name, run.seed, run.run_dir, options.launcher)
            errors = subprocess.STDOUT if sink else None
            process = subprocess.Popen(train_command(options, run), stdout=sink, stderr=errors)
            active.append((run, process, sink))
        time.sleep(0.2)
        for entry in [e for e in active if e[1].poll() is not None]:
            run, process, sink = entry
            active.remove(entry)
            if sink is not None:
                sink.close()
            if process.returncode != 0:
                failed.append(f"{run.run_dir} (status {process.returncode})")
    return failed


# ------------------------------------------------------------------------------------------- evaluation
def evaluate_run(options: AblationOptions, run: Run, mean_face: list) -> AblationRow:
    """Evaluate a run's ``checkpoints/last.pt`` into its eval folder, against the mean face's results."""
    from vitdeca.evaluation.baseline import BootstrapOptions
    from vitdeca.evaluation.synthetic import evaluate_model
    from vitdeca.train.checkpoint import checkpoint_path

    checkpoint = checkpoint_path(run.run_dir)
    if not checkpoint.is_file():
        raise VitdecaError(f"{run.run_dir}: no checkpoint after training ({checkpoint})")
    summary = evaluate_model(
        options.eval_dir, run.eval_dir, checkpoint, landmarks=options.landmarks, device=options.device,
        batch_size=options.batch_size, workers=options.workers, progress=options.progress,
        mean_face=mean_face, bootstrap=BootstrapOptions(options.bootstrap),
    )  # fmt: skip
    nme = None
    if options.nme_data:
        from vitdeca.evaluation.photo_nme import checkpoint_nme

        nme = checkpoint_nme(checkpoint, options.nme_data, options.device, options.batch_size)["median"]
    return AblationRow(
        run.name, str(run.config), str(run.run_dir), run.seed, summary["median"], summary["mean"],
        summary["std"], summary["count"], summary["expected"], summary.get("relative_median"),
        summary.get("ci95_median"), summary.get("relative_median_ci95"), _categories(summary), nme,
        _last_value(run.run_dir, "val_shape_mm"),
    )  # fmt: skip


def _categories(summary: dict) -> dict[str, dict[str, float | None]]:
    return {
        c: {"median": s.get("median"), "relative_median": s.get("relative_median")}
        for c, s in summary.get("per_category", {}).items()
    }


def _last_value(run_dir: Path, column: str) -> float | None:
    from vitdeca.train.logging import read_losses_csv

    path = Path(run_dir) / "losses.csv"
    values = [v for v in read_losses_csv(path).get(column, []) if math.isfinite(v)] if path.is_file() else []
    return values[-1] if values else None


def evaluate_mean_face_row(options: AblationOptions, runs: list[Run]) -> tuple[list, AblationRow]:
    """The mean face on the evaluation set (its results, for every run's relative column) and its row."""
    from vitdeca.evaluation.baseline import BootstrapOptions, evaluate_mean_face
    from vitdeca.evaluation.now_report import write_report
    from vitdeca.evaluation.synthetic import synthetic_meta
    from vitdeca.head import load_head_model

    meta = synthetic_meta(options.eval_dir) or {}
    head_path = {"path": meta["head_path"]} if meta.get("head_path") else {}
    head = load_head_model(meta.get("head_model", "ict"), **head_path)
    results = evaluate_mean_face(head, options.eval_dir, "val", options.workers)
    summary = write_report(
        results, Path(options.out) / "eval" / "mean_face", baseline=results,
        bootstrap=BootstrapOptions(options.bootstrap), split="val", dataset=str(options.eval_dir),
        method="mean face (the head model's template)",
    )  # fmt: skip
    nme = None
    if options.nme_data:
        from vitdeca.evaluation.photo_nme import mean_face_nme

        nme = mean_face_nme(head, options.nme_data)["median"]
    values = [v for v in (_last_value(r.run_dir, "val_shape_mm_mean_face") for r in runs) if v is not None]
    row = AblationRow(
        MEAN_FACE, "", "", -1, summary["median"], summary["mean"], summary["std"], summary["count"],
        summary["expected"], 1.0, summary.get("ci95_median"), None, _categories(summary), nme,
        values[0] if values else None,
    )  # fmt: skip
    return results, row


# ------------------------------------------------------------------------------------------- table
def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(ci: list[float] | None) -> str:
    return "n/a" if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None


def model_rows(rows: list[AblationRow]) -> list[dict[str, Any]]:
    """One entry per model (in order): the mean over its seeds of every number, the seed spread of the
    median (max − min, None with one seed), and the first seed's intervals."""
    grouped: dict[str, list[AblationRow]] = {}
    for row in rows:
        grouped.setdefault(row.name, []).append(row)
    out = []
    for name, runs in grouped.items():
        medians = [r.median for r in runs if r.median is not None]
        categories = sorted({c for r in runs for c in r.per_category})
        out.append({
            "name": name, "seeds": [r.seed for r in runs],
            **{k: _mean([getattr(r, k) for r in runs]) for k in ("median", "mean", "std", "relative_median",
                                                                  "nme", "val_shape_mm")},
            "seed_spread": max(medians) - min(medians) if len(medians) > 1 else None,
            "ci95_median": runs[0].ci95_median, "relative_median_ci95": runs[0].relative_median_ci95,
            "per_category": {c: _mean([r.per_category.get(c, {}).get("relative_median") for r in runs])
                             for c in categories},
            "count": sum(r.count for r in runs), "expected": sum(r.expected for r in runs),
        })  # fmt: skip
    return out


def format_table(
    rows: list[AblationRow], options: AblationOptions, mean_face: AblationRow | None = None
) -> str:
    """``table.md``: one row per model (numbers averaged over its seeds) and the mean face, with the
    setup in a paragraph above it."""
    models = model_rows(rows + ([mean_face] if mean_face else []))
    categories = sorted({c for m in models for c in m["per_category"]})
    seeds = ", ".join(str(s) for s in options.seeds)
    lines = [
        "# Encoder ablation: NoW scan-to-mesh error (mm)",
        "",
        f"Trained on `{options.data}` for {options.steps} steps per stage (seeds {seeds}; further seeds for "
        f"{', '.join(options.extra_seed_rows) or 'every row'}"
        + (f"; ViT rows: {options.vit}" if options.vit else "")
        + (f"; overrides: {', '.join(options.overrides)}" if options.overrides else "")
        + f"); evaluated on `{options.eval_dir}` (crops from landmarks: {options.landmarks})"
        + (f"; validation on `{options.val_data}`" if options.val_data else "")
        + (f"; NME on `{options.nme_data}`" if options.nme_data else "")
        + ". Numbers: mean over seeds; spread: max − min of the seeds' medians; 95 % intervals: bootstrap "
        "over subjects (first seed); relative: median ÷ the mean face's median on the same images; NME: "
        "median outer-eye NME (%) on the photos (mean face: the template aligned by the best 2D similarity); "
        "val shape: last validation neutral-shape error (mm).",
        "",
        "| model | seeds | median | mean | std | seed spread | 95 % CI median | relative | 95 % CI relative "
        "| " + "".join(f"rel. {c} | " for c in categories) + "NME % | val shape mm | images (all seeds) |",
        "|---|---|" + "---:|" * (10 + len(categories)),
    ]
    for m in models:
        nme = None if m["nme"] is None else 100.0 * m["nme"]
        seeds_cell = "—" if m["name"] == MEAN_FACE else ", ".join(str(s) for s in m["seeds"])
        lines.append(
            f"| {m['name']} | {seeds_cell} | {_number(m['median'])} | {_number(m['mean'])} "
            f"| {_number(m['std'])} | {_number(m['seed_spread'])} | {_interval(m['ci95_median'])} "
            f"| {_number(m['relative_median'])} | {_interval(m['relative_median_ci95'])} | "
            + "".join(f"{_number(m['per_category'].get(c))} | " for c in categories)
            + f"{_number(nme, 2)} | {_number(m['val_shape_mm'])} | {m['count']}/{m['expected']} |"
        )
    return "\n".join(lines) + "\n"


def run_ablation(options: AblationOptions) -> list[AblationRow]:
    """Train, evaluate and report every ablation run (see the module docstring); returns the rows, the
    mean face last."""
    from vitdeca.evaluation.now_dataset import read_image_list

    if options.steps < 1:
        raise VitdecaError(f"--steps must be at least 1, got {options.steps}")
    for label, path in (("--data", options.data), ("--eval", options.eval_dir), ("--val", options.val_data),
                        ("--nme-data", options.nme_data)):  # fmt: skip
        if path and not Path(path).exists():
            raise VitdecaError(f"{label} {path}: no such file or folder")
    read_image_list(Path(options.eval_dir), "val")  # a bad evaluation folder fails now, not after training
    runs = plan_runs(options)
    train_runs(options, runs)
    out = Path(options.out)
    baseline, mean_face = evaluate_mean_face_row(options, runs)
    rows = []
    for run in runs:
        rows.append(evaluate_run(options, run, baseline))
        _write_results(out, rows, options, mean_face)  # partial results survive a later failure
    _plot(runs, out / "curves.png")
    return [*rows, mean_face]


def _plot(runs: list[Run], path: Path) -> None:
    """Train and validation curves of every run, for the terms all of them logged."""
    from vitdeca.train.plots import curve_series, plot_curves

    terms = [t for t in (*CURVE_TERMS, "shape_mm") if all(curve_series(r.run_dir, t) for r in runs)]
    plot_curves([r.run_dir for r in runs], path, terms=terms, labels=[f"{r.name} s{r.seed}" for r in runs])


def _write_results(
    out: Path, rows: list[AblationRow], options: AblationOptions, mean_face: AblationRow
) -> None:
    atomic_write_bytes(out / "table.md", format_table(rows, options, mean_face).encode())
    payload: dict[str, Any] = {
        "options": asdict(options),
        "rows": [asdict(r) for r in rows],
        "mean_face": asdict(mean_face),
        "models": model_rows([*rows, mean_face]),
    }
    atomic_write_bytes(out / "results.json", (json.dumps(payload, indent=2) + "\n").encode())
