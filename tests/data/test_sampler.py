"""IdentityBatchSampler: P identities × K images per batch, reproducible, sharded like DistributedSampler."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vitdeca.data import IdentityBatchSampler
from vitdeca.errors import VitdecaError

# identity label per dataset item: identity 2 has a single image; the labels are interleaved on purpose
COUNTS = {0: 5, 1: 3, 2: 1, 3: 8, 4: 2, 5: 4, 6: 6}
LABELS = np.random.default_rng(0).permutation(np.repeat(list(COUNTS), list(COUNTS.values())))


def _check_batch(batch: list[int], p: int, k: int) -> None:
    assert len(batch) == p * k
    groups = [LABELS[batch[i * k : (i + 1) * k]] for i in range(p)]
    assert all(len(set(g)) == 1 for g in groups)  # K consecutive items share an identity
    assert len({g[0] for g in groups}) == p  # P different identities


def test_batches_are_p_identities_of_k_images() -> None:
    sampler = IdentityBatchSampler(LABELS, identities_per_batch=3, images_per_identity=2, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        _check_batch(batch, 3, 2)
    used = [i for batch in batches for i in batch]
    assert len(used) == len(set(used))  # no image twice in an epoch when every identity has ≥ K
    assert 2 not in {LABELS[i] for i in used}  # a lone image cannot make a pair
    # every usable chunk of K is drawn, except what P-at-a-time leaves at the end
    chunks = sum(n // 2 for n in COUNTS.values() if n >= 2)
    assert chunks - 3 < len(batches) * 3 <= chunks


def test_topping_up_small_identities() -> None:
    sampler = IdentityBatchSampler(
        LABELS, identities_per_batch=2, images_per_identity=3, seed=0, min_images=2
    )
    for batch in sampler:
        _check_batch(batch, 2, 3)
    drawn = Counter(LABELS[i] for batch in sampler for i in batch)
    assert drawn[4] in (0, 3)  # identity 4 (2 images) is topped up to one chunk of 3
    assert 2 not in drawn


def test_reproducible_and_epoch_dependent() -> None:
    a = IdentityBatchSampler(LABELS, 2, 2, seed=3)
    b = IdentityBatchSampler(LABELS, 2, 2, seed=3)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)
    assert list(IdentityBatchSampler(LABELS, 2, 2, seed=4)) != list(
        IdentityBatchSampler(LABELS, 2, 2, seed=3)
    )


@pytest.mark.parametrize("world_size", [2, 3])
def test_sharding_like_distributed_sampler(world_size: int) -> None:
    full = IdentityBatchSampler(LABELS, 2, 2, seed=7).batches()
    shards = [
        list(IdentityBatchSampler(LABELS, 2, 2, seed=7, rank=r, world_size=world_size))
        for r in range(world_size)
    ]
    usable = len(full) - len(full) % world_size
    assert all(len(shard) == usable // world_size for shard in shards)  # equal length on every rank
    for rank, shard in enumerate(shards):
        assert shard == full[rank:usable:world_size]
    flat = [tuple(b) for shard in shards for b in shard]
    assert len(flat) == len(set(flat)) == usable


def test_bad_arguments() -> None:
    with pytest.raises(VitdecaError, match="a batch needs 9"):
        IdentityBatchSampler(LABELS, identities_per_batch=9, images_per_identity=2)
    with pytest.raises(VitdecaError, match="rank"):
        IdentityBatchSampler(LABELS, 2, 2, rank=2, world_size=2)
    with pytest.raises(VitdecaError, match="at least 1"):
        IdentityBatchSampler(LABELS, 0, 2)


def test_identities_with_many_images_do_not_crowd_the_end_of_the_epoch() -> None:
    # 40 identities with one chunk each, 4 with eight (a small dataset repeated 8x): the late rounds hold
    # only the big identities; they must be spread over the epoch, not left at its end
    labels = np.concatenate([np.repeat(np.arange(40), 2), np.repeat(np.arange(40, 44), 16)])
    for seed in range(5):
        batches = IdentityBatchSampler(labels, 4, 2, seed=seed).batches()
        only_big = [i for i, b in enumerate(batches) if all(labels[j] >= 40 for j in b)]
        assert len(only_big) >= 7 and min(only_big) < len(batches) // 2, (seed, only_big, len(batches))
