import torch

from vitdeca.batching import each_row
from vitdeca.head.base import HeadOutput


def test_each_row_gives_every_row_what_a_batch_of_one_gives():
    torch.manual_seed(0)
    weight = torch.randn(64, 300)
    x = torch.randn(9, 64, requires_grad=True)
    rows = each_row(lambda row: row @ weight, x)
    singles = [x[b : b + 1].detach().clone().requires_grad_(True) for b in range(9)]  # batches of one
    alone = [single @ weight for single in singles]
    assert torch.equal(rows, torch.cat(alone))
    (grad,) = torch.autograd.grad(rows.square().sum(), x)
    for b in range(9):
        (grad_b,) = torch.autograd.grad(alone[b].square().sum(), singles[b])
        assert torch.equal(grad[b], grad_b[0])


def test_each_row_concatenates_dataclass_fields_and_keeps_none():
    def head(shape, pose):
        return HeadOutput(vertices=shape[:, None].expand(-1, 5, 3) + pose[:, None], landmarks3d=pose[:, None])

    out = each_row(head, torch.arange(4.0)[:, None].expand(4, 3), torch.ones(4, 3))
    assert out.vertices.shape == (4, 5, 3) and out.landmarks3d.shape == (4, 1, 3) and out.joints is None
    assert torch.equal(out.vertices[:, 0, 0], torch.arange(4.0) + 1)


def test_each_row_computes_every_row_in_memory_of_its_own():
    """BLAS kernels round differently with their operands' alignment, and a batch's row b starts b rows
    into its storage: ``fn`` gets each row, and the gradient of its result, at a new aligned address."""
    x = torch.randn(5, 7, requires_grad=True)
    seen, grads = [], []

    def fn(row):
        seen.append((row.storage_offset(), row.data_ptr() % 64))
        out = row * 2.0
        out.register_hook(lambda g: grads.append((g.storage_offset(), g.data_ptr() % 64)))
        return out

    each_row(fn, x).sum().backward()
    assert seen == [(0, 0)] * 5 and grads == [(0, 0)] * 5
    assert torch.equal(x.grad, torch.full((5, 7), 2.0))
