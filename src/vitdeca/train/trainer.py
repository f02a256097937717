"""The training loop: coarse stage, then detail stage (coarse frozen), as DECA; resumable, data-parallel.

One step: encode the batch, decode it (twice as many rows when shape/detail consistency swaps codes
within an identity), evaluate the registered losses, take a weighted sum, back-propagate, update.
Non-finite steps (a NaN/Inf loss or gradient, or a :class:`~vitdeca.errors.NonFiniteError` from the forward
pass) are skipped (and stop the run after ``run.max_nonfinite`` in a row); checkpoints are
written every ``run.checkpoint_every`` steps, at the end of each stage and when SIGTERM/SIGINT arrives
(after finishing the step in flight). Everything a step depends on (weights, optimiser, scheduler, RNG
states, data position) is in the checkpoint, so a resumed run continues as if uninterrupted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vitdeca.codes import Codes
from vitdeca.config import to_dict
from vitdeca.errors import NonFiniteError, VitdecaError
from vitdeca.losses import shape_swap_index, swap_code
from vitdeca.train import checkpoint as ckpt
from vitdeca.train.config import OptimConfig, TrainConfig
from vitdeca.train.data import BatchStream, mix_seed
from vitdeca.train.distributed import DistInfo, all_reduce_mean, any_process, unwrap, wrap_ddp
from vitdeca.train.logging import CsvLog, Progress, TensorBoardLog, image_grid
from vitdeca.train.objective import (
    REGISTRY,
    LossInputs,
    all_term_names,
    compute_losses,
    uv_mirror_axis,
    weighted_total,
    weights_for,
)

if TYPE_CHECKING:
    from vitdeca.model import DecaModel

log = logging.getLogger(__name__)


class TrainingModule(nn.Module):
    """What DistributedDataParallel wraps: encode, swap codes within identities, decode.

    ``forward(images (B,3,H,W), swap_index (B,) long or None, stage) -> (codes of the B images,
    reconstruction of B or 2B rows)``: with a swap index the decoded batch is the B images followed by
    the B images decoded with the shape (coarse) or detail (detail stage) code of ``swap_index``.
    """

    def __init__(self, model: DecaModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, swap_index: torch.Tensor | None, stage: str) -> tuple[Codes, Any]:
        # the coarse stage skips the (frozen, unused) detail encoder
        codes = self.model.encode(images, detail=stage == "detail")
        decoded = codes
        if swap_index is not None:
            name = "shape" if stage == "coarse" else "detail"
            swapped = codes.replace(**{name: swap_code(getattr(codes, name), swap_index)})
            decoded = Codes.concat([codes, swapped])
        return codes, self.model.decode(decoded, detail=stage == "detail")


def stage_parameters(model: nn.Module, stage: str) -> list[nn.Parameter]:
    """The parameters a stage trains: those whose name contains ``detail`` (the detail stage: the detail
    encoder and decoder of :class:`~vitdeca.model.DecaModel`) or not (the coarse stage)."""
    return [p for n, p in model.named_parameters() if ("detail" in n) == (stage == "detail")]


def prepare_stage(model: nn.Module, stage: str) -> list[nn.Parameter]:
    """Freeze everything but ``stage``'s parameters; modules left with only frozen parameters go to eval
    mode (no DropKey, fixed BatchNorm statistics), as DECA freezes its coarse encoder. Returns the
    trainable parameters."""
    trainable = stage_parameters(model, stage)
    if not trainable:
        raise VitdecaError(f"the model has no parameters to train in the {stage!r} stage")
    ids = {id(p) for p in trainable}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    model.train()
    for module in model.modules():
        params = list(module.parameters())
        if params and not any(id(p) in ids for p in params):
            module.eval()
    return trainable


def lr_factor(step: int, cfg: OptimConfig, total: int) -> float:
    """Learning-rate multiplier after ``step`` updates of a stage of ``total``: linear warm-up, then
    constant or cosine down to ``min_lr_ratio``."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, params: list[nn.Parameter], cfg: OptimConfig) -> list[dict[str, Any]]:
    """``params`` split into backbone parameters (name contains ``.backbone.``: the pretrained feature
    extractors), trained at ``lr · backbone_lr_scale``, and the rest (heads, decoders) at ``lr``."""
    backbone = {id(p) for n, p in model.named_parameters() if ".backbone." in f".{n}"}
    groups = [
        {"params": [p for p in params if id(p) not in backbone], "lr": cfg.lr},
        {"params": [p for p in params if id(p) in backbone], "lr": cfg.lr * cfg.backbone_lr_scale},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    params: list[nn.Parameter] | list[dict[str, Any]], cfg: OptimConfig, total: int
) -> tuple[Any, Any]:
    """The stage's optimiser (over parameters or :func:`param_groups`) and its LambdaLR scheduler."""
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    else:
        kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        optimizer = kind(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg, total))
    return optimizer, scheduler


def amp_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``run.amp`` on ``device`` (None: full precision)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    if name == "fp16" and device.type != "cuda":
        raise VitdecaError("run.amp=fp16 needs a CUDA device; use run.amp=bf16 or none on CPU")
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _sync_batchnorm(model: nn.Module, config: TrainConfig, info: DistInfo, device: torch.device) -> nn.Module:
    """BatchNorm → SyncBatchNorm for multi-GPU runs (``run.sync_batchnorm``); CPU processes keep
    per-process statistics (PyTorch's SyncBatchNorm needs CUDA)."""
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not (info.enabled and has_bn and config.run.sync_batchnorm):
        return model
    if device.type != "cuda":
        log.warning("BatchNorm statistics stay per process on CPU (SyncBatchNorm needs CUDA)")
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


@dataclass
class StepResult:
    """One step's outcome: the weighted total, the unweighted terms, and what the images show (``recon``
    and ``codes`` None when the forward pass was non-finite)."""

    total: torch.Tensor
    values: dict[str, torch.Tensor]
    images: torch.Tensor
    landmarks: torch.Tensor
    recon: Any
    codes: Codes | None = None


class StopRequest:
    """Context manager turning SIGTERM/SIGINT into a flag checked between steps; a second signal
    interrupts at once. Old handlers are restored on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: finishing this step, then saving a checkpoint", signal.Signals(signum).name)

    def __enter__(self) -> StopRequest:
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)


class Trainer:
    """Trains ``model`` (a :class:`~vitdeca.model.DecaModel`) on ``dataset`` into ``run_dir``.

    ``identities``: one identity label per dataset item. ``identity_net``: frozen network with
    ``embed(images, landmarks)`` for L_id (None: the term is skipped). ``mrf``: an ID-MRF module or None.
    ``validator``: a :class:`vitdeca.train.validation.Validator` (rank 0 runs it) or None.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        model: DecaModel,
        dataset: Any,
        identities: list[Any],
        *,
        info: DistInfo | None = None,
        device: torch.device | str = "cpu",
        identity_net: Any = None,
        mrf: nn.Module | None = None,
        validator: Any = None,
    ) -> None:
        self.config, self.run_dir = config, Path(run_dir)
        self.info, self.device = info or DistInfo(), torch.device(device)
        self.model = _sync_batchnorm(model, config, self.info, self.device).to(self.device)
        self.module = TrainingModule(self.model)
        self.identity_net, self.mrf, self.validator = identity_net, mrf, validator
        data = config.data
        self.stream = BatchStream(
            dataset, identities, data.identities_per_batch, data.images_per_identity, config.run.seed,
            self.info, data.num_workers, data.min_images,
        )  # fmt: skip
        self.amp = amp_dtype(config.run.amp, self.device)
        self.uv_axis = uv_mirror_axis(model.head) if "detail" in config.stages else 0.5
        self.uv_mask = model.renderer.uv.mask  # the UV layout's coverage
        self.step, self.nonfinite = 0, 0
        self.stop = StopRequest()
        self._resume_state: dict[str, Any] | None = None
        # set per run (fit) and per stage (_enter_stage)
        self.csv: CsvLog | None = None
        self.tb: TensorBoardLog | None = None
        self.batches: Any = None
        self.stage = ""
        self.params: list[nn.Parameter] = []
        self.ddp: nn.Module = self.module
        self.optimizer: Any = None
        self.scheduler: Any = None
        self.scaler: torch.amp.GradScaler | None = None
        self.weights: dict[str, float] = {}

    # ---------------------------------------------------------------- public
    def restore(self, path: str | Path) -> None:
        """Load a checkpoint written by this trainer: weights, step, data position, RNG states now;
        optimiser, scheduler and scaler when its stage starts."""
        state = ckpt.load_checkpoint(path, map_location=self.device)
        ckpt.check_head_model(path, state["head_model"], self.model.head_identity())
        ckpt.load_model_state(path, self.model, state["model"])
        self.step = int(state["step"])
        self.stream.load_state_dict(state["data"])
        self._resume_state = state
        log.info("resuming %s at step %d (%s stage)", path, self.step, state["stage"])

    def fit(self) -> str:
        """Run the remaining stages. Returns ``"done"`` or ``"interrupted"`` (a signal arrived; the
        checkpoint is saved). Raises :class:`VitdecaError` after too many non-finite steps."""
        if self._resume_state is not None:
            ckpt.set_rng_state(self._resume_state["rng"])
        main = self.info.is_main
        columns = all_term_names()
        if self.validator is not None:
            columns += self.validator.columns(all_term_names())
        self.csv = CsvLog(self.run_dir / "losses.csv", columns, self._resume_step()) if main else None
        self.tb = TensorBoardLog(self.run_dir, purge_step=self.step or None) if main else None
        progress = Progress(self.config.total_steps, self.step, main and self.config.run.progress)
        self.batches = iter(self.stream)
        status = "done"
        try:
            with self.stop:
                for stage in self.config.stages:
                    if self._run_stage(stage, progress) == "interrupted":
                        status = "interrupted"
                        break
        finally:
            progress.close()
            for sink in (self.csv, self.tb):
                if sink is not None:
                    sink.close()
        return status

    def training_step(
        self, batch: dict[str, torch.Tensor], stage: str, validation: bool = False
    ) -> StepResult:
        """Forward pass and losses for one batch (no update). ``validation``: through the bare module
        (never DDP's collectives) and without the consistency swap. A :class:`NonFiniteError` in the
        forward pass gives a non-finite result (NaN total and terms), which :meth:`_apply` skips."""
        images = batch["image"].to(self.device, non_blocking=True)
        landmarks = batch["landmarks"].to(self.device, non_blocking=True)
        try:
            return self._forward(batch, images, landmarks, stage, validation)
        except NonFiniteError as exc:
            log.warning("step %d: %s", self.step + 1, exc)
            nan = torch.full((), math.nan, device=self.device)
            return StepResult(nan, dict.fromkeys(self.weights, nan), images, landmarks, None)

    def _forward(
        self, batch: dict[str, torch.Tensor], images: torch.Tensor, landmarks: torch.Tensor, stage: str,
        validation: bool,
    ) -> StepResult:  # fmt: skip
        masks = batch["mask"].to(self.device, non_blocking=True) if "mask" in batch else None
        swap = None if validation else self._swap_index(stage)
        module = self.module if validation else self.ddp
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            codes, recon = module(images, swap, stage)
        n = recon.landmarks2d.shape[0] // images.shape[0]
        inputs = LossInputs(
            images=images.repeat(n, 1, 1, 1),
            landmarks=landmarks.repeat(n, 1, 1),
            masks=None if masks is None else masks.repeat(n, 1, 1, 1),
            codes=codes,
            recon=recon,
            config=self.config.losses,
            uv_mask=self.uv_mask,
            uv_axis=self.uv_axis,
            identity=self.identity_net,
            mrf=self.mrf,
            truth=self._truth(batch),
            head=self.model.head,
        )
        values = compute_losses(self.weights, inputs)
        return StepResult(weighted_total(values, self.weights), values, images, landmarks, recon, codes)

    def _truth(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """The batch's true codes (``truth_*``, ``has_truth``) on the device, or None (photos only)."""
        keys = [k for k in batch if k.startswith("truth_") or k == "has_truth"]
        return {k: batch[k].to(self.device, non_blocking=True) for k in keys} if keys else None

    # ---------------------------------------------------------------- stages
    def _stage_bounds(self, stage: str) -> tuple[int, int]:
        start = 0
        for name in self.config.stages:
            if name == stage:
                return start, start + self.config.stage_steps(name)
            start += self.config.stage_steps(name)
        raise KeyError(stage)

    def _enter_stage(self, stage: str, start: int, end: int) -> None:
        trainable = prepare_stage(self.model, stage)
        self.params = trainable
        self.ddp = wrap_ddp(self.module, self.info, self.device, self.config.run.find_unused_parameters)
        groups = param_groups(self.model, trainable, self.config.optim)
        self.optimizer, self.scheduler = build_optimizer(groups, self.config.optim, end - start)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.amp == torch.float16 else None
        self.weights = self._available(weights_for(self.config.losses, stage))
        state = self._resume_state
        if state is not None and state["stage"] == stage and self.step < end:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.scaler is not None and state.get("scaler"):
                self.scaler.load_state_dict(state["scaler"])
        self._resume_state = None
        log.info(
            "%s stage: steps %d-%d, %d trainable tensors, losses %s",
            stage,
            start,
            end,
            len(trainable),
            ", ".join(self.weights),
        )

    def _run_stage(self, stage: str, progress: Progress) -> str:
        start, end = self._stage_bounds(stage)
        if self.step >= end:
            return "done"
        self._enter_stage(stage, start, end)
        self.stage = stage
        while self.step < end:
            result = self.training_step(next(self.batches), stage)
            self._apply(result.total)
            self.step += 1
            validation = self._validate(stage, end)
            self._record(result, stage, progress, validation)
            if any_process(self.stop.signum is not None, self.info, self.device):
                self.save()
                log.warning("stopped at step %d; continue with --resume", self.step)
                return "interrupted"
            if self.step % self.config.run.checkpoint_every == 0 and self.step < end:
                self.save()
        last = self.save()
        if last is not None:  # the stage's checkpoint: the same file as last.pt, one copy on disk
            ckpt.link_checkpoint(last, last.with_name(f"{stage}.pt"))
        return "done"

    def _available(self, weights: dict[str, float]) -> dict[str, float]:
        """Drop (with a warning) the terms whose resource (identity net, ID-MRF) is missing."""
        resources = {"identity": self.identity_net, "mrf": self.mrf}
        kept = {}
        for name, weight in weights.items():
            needs = REGISTRY[name].needs
            if needs is not None and resources[needs] is None:
                log.warning("loss %r is off: no %s network", name, needs)
                continue
            kept[name] = weight
        return kept

    # ---------------------------------------------------------------- update
    def _swap_index(self, stage: str) -> torch.Tensor | None:
        cfg = self.config
        wanted = cfg.losses.shape_consistency if stage == "coarse" else cfg.losses.detail_consistency
        if not wanted or cfg.data.images_per_identity < 2:
            return None
        p, k = cfg.data.identities_per_batch, cfg.data.images_per_identity
        gen = torch.Generator().manual_seed(mix_seed(cfg.run.seed, self.step, 2))
        index = shape_swap_index(p, k, gen)  # global rows; groups never cross ranks
        rows = (p // self.info.world_size) * k
        first = self.info.rank * rows
        return (index[first : first + rows] - first).to(self.device)

    def _apply(self, total: torch.Tensor) -> bool:
        """Back-propagate and update unless the loss or the gradient is non-finite on any process."""
        self.optimizer.zero_grad(set_to_none=True)
        if any_process(not bool(torch.isfinite(total)), self.info, self.device):
            return self._nonfinite("loss")
        (self.scaler.scale(total) if self.scaler else total).backward()
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        clip = self.config.optim.grad_clip or math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.params, clip)
        if not bool(torch.isfinite(norm)):
            if self.scaler:
                self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            return self._nonfinite("gradient")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.nonfinite = 0
        return True

    def _nonfinite(self, what: str) -> bool:
        self.nonfinite += 1
        limit = self.config.run.max_nonfinite
        log.warning(
            "step %d: non-finite %s, update skipped (%d in a row)", self.step + 1, what, self.nonfinite
        )
        if self.nonfinite >= limit:
            raise VitdecaError(
                f"{self.nonfinite} non-finite steps in a row (last: {what} at step {self.step + 1}); "
                f"stopping. Lower optim.lr, set optim.grad_clip, or use run.amp=none; the last checkpoint "
                f"is {self.run_dir / 'checkpoints' / 'last.pt'}"
            )
        return False

    # ---------------------------------------------------------------- records
    def _validate(self, stage: str, end: int) -> dict[str, float]:
        """The validator's columns when a validation is due at this step (rank 0), else {}."""
        if self.validator is None or not self.info.is_main or not self.validator.due(self.step, end):
            return {}
        values = self.validator.run(self, stage)
        log.info("step %d validation: %s", self.step, ", ".join(f"{k} {v:.4g}" for k, v in values.items()))
        return values

    def _record(
        self, result: StepResult, stage: str, progress: Progress, validation: dict | None = None
    ) -> None:
        """Log the step (losses averaged over processes, and the validation's values when it ran): CSV,
        TensorBoard scalars and grids, progress."""
        names = list(result.values)
        stacked = torch.stack(
            [result.total.detach().float(), *[v.detach().float() for v in result.values.values()]]
        )
        stacked = all_reduce_mean(stacked, self.info).tolist()
        total, values = stacked[0], dict(zip(names, stacked[1:], strict=True))
        if not self.info.is_main:
            return
        self.csv.write(self.step, total, {**values, **(validation or {})})
        if validation:
            self.tb.scalars(
                self.step, {k.removeprefix("val_"): v for k, v in validation.items()}, prefix="val"
            )
        run = self.config.run
        if self.step % run.log_every == 0 or self.step == 1:
            self.tb.scalars(self.step, {"total": total, **values})
            self.tb.scalars(self.step, {"lr": self.optimizer.param_groups[0]["lr"]}, prefix="train")
        due = run.image_every and (self.step % run.image_every == 0 or self.step == 1)
        if due and result.recon is not None:  # None: the forward pass failed (non-finite)
            recon, b = result.recon, result.images.shape[0]
            detail = recon.detail_image if stage == "detail" else None
            render = (detail if detail is not None else recon.image)[:b]
            grid = image_grid(
                result.images, result.landmarks, recon.landmarks2d[:b], render, recon.shape_image[:b]
            )
            self.tb.image(self.step, grid)
        progress.update(stage, total)

    def _resume_step(self) -> int | None:
        return self.step if self.step > 0 else None

    def save(self, path: str | Path | None = None) -> Path | None:
        """Write the checkpoint (rank 0 only; every process waits for nothing): its path, None on the
        other ranks."""
        if not self.info.is_main:
            return None
        path = Path(path or ckpt.checkpoint_path(self.run_dir))
        state = {
            **unwrap(self.model).checkpoint_payload(),  # model, model_config, head_model, vitdeca_version
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "step": self.step,
            "stage": self.stage,
            "data": self.stream.state_dict(),
            "config": to_dict(self.config),
        }
        ckpt.save_checkpoint(path, state)
        log.debug("saved %s at step %d", path, self.step)
        return path
