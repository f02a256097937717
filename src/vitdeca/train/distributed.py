"""Data-parallel training: process-group set-up from ``torchrun``'s environment, rank-0 helpers, DDP.

One CPU process, one GPU, or many GPUs/nodes run the same code: without ``torchrun`` (no ``WORLD_SIZE``
in the environment) everything here degrades to single-process no-ops.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from vitdeca.errors import VitdecaError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """``auto`` → ``cuda:<local_rank>`` when CUDA is present, else ``cpu``; ``cuda`` → this rank's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VitdecaError(f"run.device={name!r}, but CUDA is not available here; use run.device=cpu")
        if name == "cuda":
            name = f"cuda:{info.local_rank % torch.cuda.device_count()}"
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise VitdecaError(f"run.device={name!r} is not a device name (auto, cpu, cuda, cuda:N)") from exc


def init_distributed(device_name: str = "auto", timeout_s: float = 1800.0) -> tuple[DistInfo, torch.device]:
    """Join the process group described by torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
    ``MASTER_ADDR``/``MASTER_PORT``: NCCL on GPUs, gloo on CPU. Returns (info, this process's device)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world_size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    device = resolve_device(device_name, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s), **kwargs)
        log.info("rank %d/%d joined the %s process group on %s", info.rank, world_size, backend, device)
    return info, device


def cleanup() -> None:
    """Leave the process group (if joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``values`` over all processes (a copy; unchanged when single-process)."""
    values = values.detach().clone()
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world_size
    return values


def any_process(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True when ``flag`` is true on any process (every process gets the same answer)."""
    if not info.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device, find_unused: bool = False) -> nn.Module:
    """``DistributedDataParallel(module)`` when running distributed, else ``module`` itself.

    Wrap again whenever the set of trainable parameters changes (e.g. at the start of the detail stage).
    """
    if not info.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module
