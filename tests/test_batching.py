import torch

from vitdeca.batching import each_row
from vitdeca.head.base import HeadOutput


def test_each_row_gives_every_row_what_a_batch_of_one_gives():
    torch.manual_seed(0)
    weight = torch.randn(64, 300)
    x = torch.randn(9, 64, requires_grad=True)
    rows = each_row(lambda row: row @ weight, x)
    alone = [x[b : b + 1] @ weight for b in range(9)]
    assert torch.equal(rows, torch.cat(alone))
    (grad,) = torch.autograd.grad(rows.square().sum(), x)
    for b in range(9):
        (grad_b,) = torch.autograd.grad(alone[b].square().sum(), x)
        assert torch.equal(grad[b], grad_b[b])


def test_each_row_concatenates_dataclass_fields_and_keeps_none():
    def head(shape, pose):
        return HeadOutput(vertices=shape[:, None].expand(-1, 5, 3) + pose[:, None], landmarks3d=pose[:, None])

    out = each_row(head, torch.arange(4.0)[:, None].expand(4, 3), torch.ones(4, 3))
    assert out.vertices.shape == (4, 5, 3) and out.landmarks3d.shape == (4, 1, 3) and out.joints is None
    assert torch.equal(out.vertices[:, 0, 0], torch.arange(4.0) + 1)


def test_each_row_passes_a_batch_of_one_through_without_a_copy():
    x = torch.randn(1, 3)
    result = torch.randn(1, 2)
    assert each_row(lambda row: result, x) is result
