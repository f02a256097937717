"""``IdentityBatchSampler``: batches of K images of each of P different identities (the shape-consistency
loss needs several images of one person), reproducible from (seed, epoch), sharded over ranks like
``torch.utils.data.DistributedSampler``.

Per epoch: each identity's images are shuffled and cut into chunks of K (an identity with fewer than K,
but at least ``min_images``, images is topped up by drawing from its own images again); then, round after
round, the identities that still have chunks are shuffled and taken P at a time, each giving one chunk,
until fewer than P identities are left; last, the order of the batches is shuffled (otherwise the late
rounds, made only of identities with many images — e.g. a small dataset listed several times in
``data.extra_repeats`` — would crowd the end of every epoch). Every rank builds the same list and keeps every
``world_size``-th batch from ``rank`` (the list is cut to a multiple of ``world_size``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from vitdeca.errors import VitdecaError


def _dist_defaults(rank: int | None, world_size: int | None) -> tuple[int, int]:
    import torch.distributed as dist

    initialised = dist.is_available() and dist.is_initialized()
    world = world_size if world_size is not None else (dist.get_world_size() if initialised else 1)
    me = rank if rank is not None else (dist.get_rank() if initialised else 0)
    if not 0 <= me < world:
        raise VitdecaError(f"rank must be in [0, {world}), got {me}")
    return me, world


class IdentityBatchSampler(Sampler[list[int]]):
    """Yields lists of P·K dataset indices: K images of each of P distinct identities, identity-grouped.

    ``identities``: identity label per dataset item (e.g. ``FaceDataset.identity_index``). ``rank`` and
    ``world_size`` default to torch.distributed's when it is initialised, else 0 and 1.
    """

    def __init__(
        self, identities: Sequence[int] | np.ndarray, identities_per_batch: int, images_per_identity: int,
        seed: int = 0, rank: int | None = None, world_size: int | None = None, min_images: int | None = None,
    ) -> None:  # fmt: skip
        if identities_per_batch < 1 or images_per_identity < 1:
            raise VitdecaError("identities_per_batch and images_per_identity must be at least 1")
        self.p, self.k, self.seed, self.epoch = identities_per_batch, images_per_identity, seed, 0
        self.rank, self.world_size = _dist_defaults(rank, world_size)
        self.min_images = min_images if min_images is not None else min(images_per_identity, 2)
        labels = np.asarray(identities)
        order = np.argsort(labels, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if len(labels) else []
        self.groups = [g for g in groups if len(g) >= self.min_images]
        if len(self.groups) < self.p:
            raise VitdecaError(
                f"{len(self.groups)} identities have at least {self.min_images} images; "
                f"a batch needs {self.p} of them"
            )
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffling of ``epoch`` (same on every rank)."""
        self.epoch = int(epoch)

    def _chunks(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        chunks = []
        for group in self.groups:
            images = rng.permutation(group)
            if len(images) < self.k:
                images = np.concatenate([images, rng.choice(group, self.k - len(images))])
            chunks.append([images[j * self.k : (j + 1) * self.k] for j in range(len(images) // self.k)])
        return chunks

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """All batches of ``epoch`` (default: the current one) before sharding."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        chunks = self._chunks(rng)
        active = np.arange(len(chunks))
        batches: list[list[int]] = []
        while len(active) >= self.p:
            order = rng.permutation(active)
            for start in range(0, len(order) - self.p + 1, self.p):
                batch = [chunks[g].pop() for g in order[start : start + self.p]]
                batches.append(np.concatenate(batch).tolist())
            active = np.array([g for g in active if chunks[g]], dtype=np.int64)
        batches = [batches[i] for i in rng.permutation(len(batches))]
        self._cache = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self.batches()
        usable = len(batches) - len(batches) % self.world_size
        yield from batches[self.rank : usable : self.world_size]

    def __len__(self) -> int:
        return len(self.batches()) // self.world_size
