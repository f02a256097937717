"""Batch order: P identities × K images, fixed by (seed, epoch), resumable, split across ranks."""

from __future__ import annotations

import itertools

import pytest
import torch

from vitdeca.errors import VitdecaError
from vitdeca.train.data import BatchStream, SeededItems, collate
from vitdeca.train.distributed import DistInfo


def test_global_batches_are_identity_grouped_and_fixed_by_seed_and_epoch():
    data = _Numbers(24, per_identity=3)
    stream = BatchStream(data, data.identities, p=4, k=2, seed=1)
    first = stream.sampler.batches(0)
    for batch in first:
        labels = [data.identities[i] for i in batch]
        assert labels[0::2] == labels[1::2]  # K=2 images of each identity, identity-major
        assert len(set(labels[0::2])) == 4  # P distinct identities
    again = BatchStream(data, data.identities, p=4, k=2, seed=1)
    assert again.sampler.batches(0) == first and again.sampler.batches(1) != first


def test_too_few_identities_is_a_clear_error():
    data = _Numbers(4, per_identity=2)
    with pytest.raises(VitdecaError, match="2 identities"):
        BatchStream(data, data.identities, p=3, k=1, seed=0)


class _Numbers(torch.utils.data.Dataset):
    """Item i: an image whose value is i plus a random jitter (global torch RNG)."""

    def __init__(self, n: int, per_identity: int) -> None:
        self.n = n
        self.identities = [i // per_identity for i in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = torch.full((3, 2, 2), float(i)) + torch.rand(()) * 0.01
        return {"image": image, "landmarks": torch.zeros(68, 2)}


def _take(stream: BatchStream, n: int) -> list[torch.Tensor]:
    return [b["image"][:, 0, 0, 0] for b in itertools.islice(iter(stream), n)]


def test_stream_resumed_at_its_position_continues_the_same_batches():
    data = _Numbers(8, per_identity=2)
    whole = _take(BatchStream(data, data.identities, p=2, k=2, seed=3), 7)  # crosses epochs (2 per epoch)
    first = BatchStream(data, data.identities, p=2, k=2, seed=3)
    head = _take(first, 3)
    second = BatchStream(data, data.identities, p=2, k=2, seed=3)
    second.load_state_dict(first.state_dict())
    assert first.state_dict() == {"epoch": 1, "index": 1}
    tail = _take(second, 4)
    for a, b in zip(whole, head + tail, strict=True):
        assert torch.equal(a, b)  # augmentation jitter included


def test_ranks_split_the_global_batch_by_identity():
    data = _Numbers(24, per_identity=3)
    whole = _take(BatchStream(data, data.identities, p=4, k=2, seed=0), 3)
    parts = [
        _take(BatchStream(data, data.identities, p=4, k=2, seed=0, info=DistInfo(rank=r, world_size=2)), 3)
        for r in range(2)
    ]
    for step in range(3):
        assert torch.equal(torch.cat([parts[0][step], parts[1][step]]), whole[step])
    with pytest.raises(VitdecaError, match="divisible by the number of processes"):
        BatchStream(data, data.identities, p=3, k=2, seed=0, info=DistInfo(rank=0, world_size=2))


def test_seeded_items_do_not_disturb_the_global_generators():
    items = SeededItems(_Numbers(4, 1))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = items[(2, 11)]["image"]
    got = torch.rand(3)
    assert torch.equal(got, expected)
    assert torch.equal(items[(2, 11)]["image"], a)  # same seed, same augmentation
    assert not torch.equal(items[(2, 12)]["image"], a)


def test_collate_stacks_dicts_and_named_tuples_and_keeps_masks_only_when_all_have_one():
    from vitdeca.data import FaceSample

    item = {"image": torch.zeros(3, 4, 4), "landmarks": torch.zeros(68, 2), "mask": torch.ones(4, 4)}
    batch = collate([item, item])
    assert batch["image"].shape == (2, 3, 4, 4) and batch["mask"].shape == (2, 1, 4, 4)
    assert "mask" not in collate([item, {**item, "mask": None}])
    sample = FaceSample(torch.ones(3, 4, 4), torch.ones(68, 2), torch.ones(1, 4, 4), torch.tensor(0),
                        torch.tensor(0), torch.eye(2, 3))  # fmt: skip
    assert collate([sample, sample])["landmarks"].shape == (2, 68, 2)
