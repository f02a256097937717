"""Batches for training: P identities × K images, in an order fixed by (seed, epoch) alone.

The global batches of an epoch come from :class:`vitdeca.data.IdentityBatchSampler` (a pure function of
the seed and the epoch), and every image's randomness is seeded from (seed, epoch, batch, slot) (plus the
dataset's own ``set_epoch``); so a run resumed at (epoch, index) sees exactly the batches an uninterrupted
run would, whatever the number of loader workers. With W processes, rank r takes identity groups
r·P/W … (r+1)·P/W − 1 of every global batch: the global batch does not depend on W.

A training dataset is any map-style dataset whose items are dicts (or named tuples such as
``vitdeca.data.FaceSample``) with ``image`` (3,H,W) float [0,1], ``landmarks`` (68,2) crop pixels and
optionally ``mask`` (1,H,W); its identity labels (one int per item) are passed alongside.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, get_worker_info

from vitdeca.errors import VitdecaError
from vitdeca.train.distributed import DistInfo


def mix_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across runs and platforms)."""
    return int(
        np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1)
    )


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader worker start-up: ignore SIGTERM and SIGINT. A scheduler (Slurm, ``kill`` of the process
    group) or Ctrl-C signals every process of the job; the main process then finishes its step and saves a
    checkpoint (:class:`vitdeca.train.trainer.StopRequest`), which needs its workers alive until it exits."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_IGN)


class SeededItems(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is produced with python/numpy/torch seeded by ``seed``.

    In loader workers the worker's generators are simply reseeded; in the main process the global random
    states are saved and restored around the item, so training randomness is unaffected.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, seed = key
        if get_worker_info() is not None:
            _seed_all(seed)
            return self.dataset[index]
        py_state, np_state = random.getstate(), np.random.get_state()  # noqa: NPY002
        try:
            with torch.random.fork_rng(devices=[]):
                _seed_all(seed)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (augmentations may use the global state)
    torch.manual_seed(seed)


class MixedDatasets(ConcatDataset):
    """Several training datasets as one (items numbered in order); ``set_epoch`` reaches each part."""

    def set_epoch(self, epoch: int) -> None:
        for part in self.datasets:
            if hasattr(part, "set_epoch"):
                part.set_epoch(epoch)


def collate(items: list[Any]) -> dict[str, torch.Tensor]:
    """Stack items into a batch: ``image`` (B,3,H,W), ``landmarks`` (B,68,2), ``mask`` (B,1,H,W) when every
    item has one."""
    items = [it._asdict() if hasattr(it, "_asdict") else it for it in items]
    batch = {
        "image": torch.stack([torch.as_tensor(it["image"], dtype=torch.float32) for it in items]),
        "landmarks": torch.stack([torch.as_tensor(it["landmarks"], dtype=torch.float32) for it in items]),
    }
    if all(it.get("mask") is not None for it in items):
        masks = torch.stack([torch.as_tensor(it["mask"], dtype=torch.float32) for it in items])
        batch["mask"] = masks if masks.ndim == 4 else masks[:, None]
    batch.update(collate_truth([it.get("truth") for it in items]))
    return batch


def collate_truth(truths: list[dict[str, torch.Tensor] | None]) -> dict[str, torch.Tensor]:
    """``truth_<code>`` (B,n) stacks of the items' true codes plus ``has_truth`` (B,) float {0,1}; items
    without truth (None or empty: photos in a mixed batch) get zero rows. Empty when no item has truth."""
    truths = [t or None for t in truths]
    known = next((t for t in truths if t is not None), None)
    if known is None:
        return {}
    out = {
        f"truth_{key}": torch.stack(
            [torch.as_tensor(t[key]) if t is not None else torch.zeros_like(value) for t in truths]
        ).float()
        for key, value in known.items()
    }
    out["has_truth"] = torch.tensor([t is not None for t in truths], dtype=torch.float32)
    return out


class BatchStream:
    """An endless stream of this process's share of the global batches, resumable at (epoch, index).

    ``position`` is the (epoch, index) of the next batch to be taken; it advances as batches are taken,
    so saving it after a training step and restoring it continues the same sequence.
    """

    def __init__(
        self,
        dataset: Dataset,
        identities: Sequence[int],
        p: int,
        k: int,
        seed: int,
        info: DistInfo | None = None,
        num_workers: int = 0,
        min_images: int = 1,
    ) -> None:
        from vitdeca.data import IdentityBatchSampler

        info = info or DistInfo()
        if p % info.world_size:
            raise VitdecaError(
                f"data.identities_per_batch={p} must be divisible by the number of processes "
                f"({info.world_size})"
            )
        self.dataset, self.items = dataset, SeededItems(dataset)
        # the global plan: every rank builds all batches and takes its identity groups from each
        self.sampler = IdentityBatchSampler(
            identities, p, k, seed, rank=0, world_size=1, min_images=min_images
        )
        self.p, self.k, self.seed, self.info, self.num_workers = p, k, seed, info, num_workers
        self.epoch, self.index = 0, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])

    def _local(self, batch: list[int], number: int) -> list[tuple[int, int]]:
        per_rank = (self.p // self.info.world_size) * self.k
        start = self.info.rank * per_rank
        return [
            (batch[slot], mix_seed(self.seed, self.epoch, number, slot, 1))
            for slot in range(start, start + per_rank)
        ]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            plan = self.sampler.batches(self.epoch)
            if not plan:
                raise VitdecaError(
                    "the training data yield no batch; add identities or lower data.identities_per_batch"
                )
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            first = self.index
            sampler = [self._local(plan[i], i) for i in range(first, len(plan))]
            loader = DataLoader(
                self.items,
                batch_sampler=sampler,
                num_workers=self.num_workers,
                collate_fn=collate,
                persistent_workers=False,
                worker_init_fn=ignore_stop_signals,
                generator=torch.Generator().manual_seed(
                    mix_seed(self.seed, self.epoch, 3)
                ),  # not the global RNG
            )
            for offset, batch in enumerate(loader):
                self.index = first + offset + 1
                yield batch
            self.epoch, self.index = self.epoch + 1, 0
