"""Benchmark: one CPU training step (coarse stage, DECA's losses) and where its time goes.

Claim (issue 7): with ViT-S/16 + DropKey at batch 8 (224×224), everything but the encoder (head model,
renderer, identity network, losses, their backward passes, the optimiser) takes ≤ 30 % of a step.
Baseline measured in the same run: the encoder alone (forward + backward of the same batch).

Each head model runs in its own process (clean peak memory): ICT-FaceKit, and a FLAME-format model with
random content (FLAME's vertex and face counts on a head-sized ellipsoid; the licensed file cannot be
shipped). The step is the trainer's own ``training_step`` + update with shape consistency on (P=4
identities × K=2 images, so the decoder, renderer and identity network see 16 rows). Forward times come
from module hooks; the backward is split where its gradient reaches the encoder's output (before: the
rest; after, until the encoder's first layer has its gradient: the encoder).

Run: ``python benchmarks/bench_train.py [--repeats 5] [--threads 1]``; writes benchmarks/results/train.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch

from timing import median_seconds

RESULTS = Path(__file__).parent / "results" / "train.md"
ORDER = [
    "step", "encoder fwd+bwd alone (baseline)", "encoder fwd", "encoder bwd", "detail encoder fwd (unused)",
    "head fwd", "render fwd", "identity fwd", "losses fwd (excl. identity)", "rest bwd", "optimiser",
    "peak RSS MiB",
]  # fmt: skip
OVERRIDES = [
    "model.encoder=vit_small_patch16_224", "model.dropkey=0.05", "model.detail=true", "losses.mrf=0",
    "data.identities_per_batch=4", "data.images_per_identity=2", "run.device=cpu", "run.progress=false",
    "stages=[coarse]",
]  # fmt: skip


class Timers:
    """Forward wall time of modules, accumulated per label through forward pre/post hooks; plus the moments
    the backward pass reaches the encoder's output and finishes its first layer (``marks``)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self._start: dict[int, float] = {}

    def mark(self, name: str):
        def hook(*_):
            self.marks[name] = time.perf_counter()

        return hook

    def watch_backward(self, encoder: torch.nn.Module) -> None:
        """Mark ``encoder_grad_in`` when the gradient reaches the encoder's output and ``encoder_done`` when
        its first parameter's gradient is accumulated (the end of its backward pass)."""

        def post(mod, args, out):
            if out.requires_grad:
                out.register_hook(self.mark("encoder_grad_in"))

        encoder.register_forward_hook(post)
        named = dict(encoder.named_parameters())
        first = named.get("backbone.patch_embed.proj.weight", next(iter(named.values())))  # the input layer
        first.register_post_accumulate_grad_hook(self.mark("encoder_done"))

    def watch(self, module: torch.nn.Module, label: str) -> None:
        def pre(mod, args):
            self._start[id(mod)] = time.perf_counter()

        def post(mod, args, out):
            self.total[label] += time.perf_counter() - self._start.pop(id(mod))

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)


def _synthetic_batch(batch: int, size: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    landmarks = size / 2 + size / 4 * (torch.rand(batch, 68, 2, generator=gen) - 0.5)
    return {"image": torch.rand(batch, 3, size, size, generator=gen), "landmarks": landmarks,
            "mask": torch.ones(batch, 1, size, size)}  # fmt: skip


def _head(name: str, folder: Path):
    """The ICT head model, or a random FLAME-format one written to ``folder`` (the trainer probe's)."""
    from vitdeca.head import load_head_model
    from vitdeca.train.probe import synthetic_head

    return load_head_model("ict") if name == "ict" else synthetic_head(folder)


def _instrument(
    trainer, model, identity, trainer_module
) -> tuple[Timers, dict[str, list[float]], Callable[[], None]]:
    """Hook the step's parts; returns the timers, the per-step lists and a function that undoes the patch."""
    timers = Timers()
    watched = [(model.encoder, "encoder fwd"), (model.head, "head fwd"), (model.renderer, "render fwd")]
    for module, label in [*watched, (identity.backbone, "identity fwd")]:
        timers.watch(module, label)
    if model.detail_encoder is not None:  # runs in the coarse stage only if encode() cannot skip it
        timers.watch(model.detail_encoder, "detail encoder fwd (unused)")
    timers.watch_backward(model.encoder)
    parts: dict[str, list[float]] = defaultdict(list)
    compute, optimiser_step = trainer_module.compute_losses, trainer.optimizer.step

    def timed(fn, add):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            add(time.perf_counter() - start)
            return out

        return wrapper

    trainer_module.compute_losses = timed(
        compute, lambda t: timers.total.__setitem__("losses fwd", timers.total["losses fwd"] + t)
    )
    trainer.optimizer.step = timed(optimiser_step, lambda t: parts["optimiser"].append(t))

    def undo() -> None:
        trainer_module.compute_losses = compute

    return timers, parts, undo


def measure(head_name: str, repeats: int, threads: int) -> dict[str, float]:
    """One head model's step split (seconds, medians) and peak RSS (MiB)."""
    from vitdeca.model import DecaModel
    from vitdeca.train import trainer as trainer_module
    from vitdeca.train.config import load_train_config
    from vitdeca.train.run import load_identity

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        config = load_train_config(None, [*OVERRIDES, f"model.head_model={head_name}"])
        model = DecaModel(config.model, head=_head(head_name, Path(tmp)))
        identity = load_identity(config, torch.device("cpu"))
        trainer = trainer_module.Trainer(
            config, tmp, model, [None] * 8, list(range(8)), identity_net=identity
        )
        trainer._enter_stage("coarse", 0, 10**6)
        timers, parts, undo = _instrument(trainer, model, identity, trainer_module)
        batch = _synthetic_batch(config.data.batch_size, config.data.image_size)

        def step():
            result = trainer.training_step(batch, "coarse")
            start = time.perf_counter()
            trainer._apply(result.total)
            parts["rest bwd"].append(timers.marks["encoder_grad_in"] - start)
            parts["encoder bwd"].append(timers.marks["encoder_done"] - timers.marks["encoder_grad_in"])

        step()  # warm-up
        timers.total.clear()
        parts.clear()
        total = median_seconds(step, repeats)
        undo()
        split = {k: v / (repeats + 1) for k, v in timers.total.items()}  # _median runs fn repeats+1 times
        split.update({k: statistics.median(v) for k, v in parts.items()})

        def encoder_only():
            model.zero_grad(set_to_none=True)
            model.encoder(batch["image"]).square().mean().backward()

        split["encoder fwd+bwd alone (baseline)"] = median_seconds(encoder_only, repeats)
    split["losses fwd (excl. identity)"] = split.pop("losses fwd") - split["identity fwd"]
    split["step"] = total
    split["peak RSS MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {key: split[key] for key in ORDER if key in split}


def table(results: dict[str, dict[str, float]], threads: int, repeats: int) -> str:
    heads = list(results)
    rows = ["| | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    keys = [k for k in ORDER if k != "peak RSS MiB" and all(k in results[h] for h in heads)]
    for key in keys:
        rows.append(f"| {key} (s) | " + " | ".join(f"{results[h][key]:.3f}" for h in heads) + " |")
    for h in heads:
        r = results[h]
        r["non-encoder share"] = 1.0 - (r["encoder fwd"] + r["encoder bwd"]) / r["step"]
        r["step / baseline"] = r["step"] / r["encoder fwd+bwd alone (baseline)"]
    rows.append(
        "| step / encoder baseline | "
        + " | ".join(f"{results[h]['step / baseline']:.2f}×" for h in heads)
        + " |"
    )
    share = " | ".join(f"**{100 * results[h]['non-encoder share']:.0f} %**" for h in heads)
    rows.append(f"| **non-encoder share** (target ≤ 30 %) | {share} |")
    unused = "detail encoder fwd (unused)"
    if all(unused in results[h] for h in heads):
        without = [
            (results[h]["step"] - results[h][unused] - results[h]["encoder fwd"] - results[h]["encoder bwd"])
            / (results[h]["step"] - results[h][unused])
            for h in heads
        ]
        rows.append("| non-encoder share without the unused detail-encoder pass | "
                    + " | ".join(f"{100 * w:.0f} %" for w in without) + " |")  # fmt: skip
    rows.append("| peak RSS (MiB) | " + " | ".join(f"{results[h]['peak RSS MiB']:.0f}" for h in heads) + " |")
    notes = [
        "",
        f"CPU, {threads} thread(s), batch 8 (P=4 × K=2, shape consistency doubles the decoded rows to 16), "
        f"224×224, ViT-S/16 + DropKey 0.05, DECA's coarse losses incl. the dlib identity network; medians of "
        f"{repeats} steps after a warm-up. Other jobs on the machine make "
        "absolute times noisy, the shares less so.",
    ]
    return "\n".join(["# Training step (CPU)", "", *rows, *notes]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--heads", nargs="+", default=["ict", "flame"])
    parser.add_argument("--one", help=argparse.SUPPRESS)  # worker mode: print one head's JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.repeats, args.threads)))
        return
    results = {}
    for head in args.heads:
        command = [
            sys.executable,
            __file__,
            "--one",
            head,
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        results[head] = json.loads(done.stdout.strip().splitlines()[-1])
        print(head, results[head], flush=True)
    text = table(results, args.threads, args.repeats)
    print(text)
    from vitdeca.storage import atomic_write_bytes

    atomic_write_bytes(RESULTS, text.encode())


if __name__ == "__main__":
    main()
