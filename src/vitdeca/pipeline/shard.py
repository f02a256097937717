"""``torchrun --nproc_per_node N -m vitdeca reconstruct ...``: the inputs sharded over ranks.

Every rank expands the same inputs in the same order and gives them the same output names (computed on
the whole list, so names stay unique), then takes every ``world_size``-th input from its ``rank``: the
split depends only on the input list and the world size, so a re-run with the same ranks resumes every
shard (finished inputs are skipped as in a single-process run). Each rank writes its inputs' folders and
its own ``summary.rank<R>.json``; after a barrier (gloo, so it works on CPU and on GPUs alike) rank 0
merges them, in input order, into ``summary.json`` (:func:`vitdeca.pipeline.batch.merge_rank_summaries`),
the same file a single process would have written.
On CUDA each rank uses the GPU of its ``LOCAL_RANK``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from vitdeca.errors import VitdecaError

T = TypeVar("T")
BARRIER_TIMEOUT = timedelta(days=1)  # ranks wait for the slowest shard; a stuck rank fails after a day


@dataclass(frozen=True)
class Shard:
    """This process's place among the ranks: ``rank`` in [0, ``world_size``), ``local_rank`` on its
    machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Shard:
        """The shard torchrun describes in ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (one shard without them);
        :class:`VitdecaError` when they are not integers with 0 <= rank < world size."""
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        if "WORLD_SIZE" not in os.environ:
            return cls()
        try:
            rank, world, local = (int(os.environ.get(name, "0")) for name in names)
        except ValueError as exc:
            values = ", ".join(f"{n}={os.environ.get(n)!r}" for n in names)
            raise VitdecaError(f"torchrun environment: {values} must be integers") from exc
        if world < 1 or not 0 <= rank < world or local < 0:
            raise VitdecaError(f"torchrun environment: RANK={rank} must lie in [0, WORLD_SIZE={world})")
        return cls(rank, world, local)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def summary_name(self) -> str:
        """The summary file this rank writes (``summary.json`` for a single process)."""
        return rank_summary_name(self.rank) if self.active else "summary.json"

    def select(self, jobs: Sequence[T]) -> list[T]:
        """This rank's share of ``jobs``: every ``world_size``-th item from index ``rank``."""
        return list(jobs[self.rank :: self.world_size])


def rank_summary_name(rank: int) -> str:
    """The summary file of one rank of a sharded run."""
    return f"summary.rank{rank}.json"


def use_local_device(shard: Shard) -> None:
    """On a machine with CUDA, make ``cuda`` mean this rank's GPU (``LOCAL_RANK``)."""
    import torch

    if shard.active and torch.cuda.is_available():
        torch.cuda.set_device(shard.local_rank % torch.cuda.device_count())


def barrier(shard: Shard) -> None:
    """Wait until every rank gets here (a gloo process group, created once from torchrun's variables)."""
    import torch.distributed as dist

    if not shard.active:
        return
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=shard.rank, world_size=shard.world_size, timeout=BARRIER_TIMEOUT)
    dist.barrier()


def finish(shard: Shard, merge: Callable[[], T]) -> T | None:
    """After this rank's batch: wait for all ranks, let rank 0 run ``merge`` (e.g. the summaries), wait
    again (so no rank exits before it is done), close the process group. ``merge``'s result on rank 0,
    None elsewhere."""
    import torch.distributed as dist

    barrier(shard)
    merged = merge() if shard.rank == 0 else None
    barrier(shard)
    if dist.is_initialized():
        dist.destroy_process_group()
    return merged
