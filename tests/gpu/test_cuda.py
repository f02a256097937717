"""CUDA paths against their CPU twins: the rasteriser, shading, the model, a bf16 training step and a
2-process NCCL DDP step. Marked ``cuda`` (``pytest -m cuda``; ``benchmarks/gpu/check.sh`` runs them) and
skipped without a GPU. Self-contained: synthetic meshes and a FLAME-format head with random content."""

from __future__ import annotations

import os
import socket

import pytest
import torch

from vitdeca.render import MeshRenderer, interpolate, kernels, rasterize

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
SMALL = [
    "data.image_size=64", "model.image_size=64", "model.encoder=vit_tiny_patch16_224", "model.pool=mean",
    "model.uv_size=32", "model.n_albedo=8", "data.identities_per_batch=2", "data.images_per_identity=2",
    "run.progress=false", "run.image_every=0", "losses.mrf=0", "losses.identity=0", "model.dropkey=0.05",
]  # fmt: skip


def _soup(seed: int, batch: int = 2, n_faces: int = 300, size: int = 96):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(batch, 3 * n_faces, 2, generator=gen, dtype=torch.float64) * (size + 8) - 4
    z = torch.rand(batch, 3 * n_faces, 1, generator=gen, dtype=torch.float64) * 2 + 0.5
    return torch.cat([xy, z], -1), torch.randperm(3 * n_faces, generator=gen).view(n_faces, 3)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    from vitdeca.train.probe import synthetic_head

    return synthetic_head(tmp_path_factory.mktemp("flame"))


def _raster_grads(vertices, faces, colours, perspective, **options):
    v = vertices.requires_grad_(True)
    frags = rasterize(v, faces, 96, 96, perspective_correct=perspective, **options)
    loss = (interpolate(frags, faces, colours) ** 2).sum() + frags.depth.sum()
    return frags, torch.autograd.grad(loss, v)[0]


@pytest.mark.parametrize("perspective", [False, True])
def test_rasteriser_stays_on_the_device_and_matches_numba(monkeypatch, perspective):
    vertices, faces = _soup(1)
    colours = torch.rand(2, vertices.shape[1], 3, dtype=torch.float64)
    ref, ref_grad = _raster_grads(vertices.clone(), faces, colours, perspective, backend="numba")

    def no_host_zbuffer(*args):
        raise AssertionError("the numba z-buffer ran for CUDA vertices")

    monkeypatch.setattr(kernels, "zbuffer", no_host_zbuffer)
    out, grad = _raster_grads(vertices.cuda(), faces.cuda(), colours.cuda(), perspective)  # auto: torch
    assert ref.mask.float().mean() > 0.5
    assert torch.equal(out.face_index.cpu(), ref.face_index)
    torch.testing.assert_close(out.depth.detach().cpu(), ref.depth.detach())
    torch.testing.assert_close(out.pixel_bary.detach().cpu(), ref.pixel_bary.detach())
    torch.testing.assert_close(grad.cpu(), ref_grad)


def test_renderer_and_shading_match_the_cpu_kernels(head):
    gen = torch.Generator().manual_seed(0)
    renderer = MeshRenderer(head.faces, head.uv_coords, head.uv_faces, image_size=128, uv_size=64)
    vertices = head.template_vertices.detach().double()[None].repeat(2, 1, 1)
    camera = torch.tensor([[7.0, 0.0, 0.0], [6.0, 0.01, -0.01]], dtype=torch.float64)
    albedo = torch.rand(2, 3, 64, 64, generator=gen, dtype=torch.float64)
    light = torch.rand(2, 9, 3, generator=gen, dtype=torch.float64) * 0.3
    light[:, 0] += 1.5
    results = []
    for device in ("cpu", "cuda"):
        inputs = [t.to(device).requires_grad_(True) for t in (vertices, camera, albedo, light)]
        out = renderer.to(device)(*inputs)
        loss = (out.image.square().sum() + out.shape_image.sum() + out.normal_image.sum()) / 1000
        grads = torch.autograd.grad(loss, inputs)
        results.append([out.fragments.face_index, out.image, out.shape_image, *grads])
    (cpu_index, *cpu), (cuda_index, *cuda) = results
    assert cpu_index.ge(0).float().mean() > 0.2
    assert torch.equal(cpu_index, cuda_index.cpu())  # float64 screen vertices: the same visibility
    for a, b in zip(cpu, cuda, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-6, atol=1e-8)


def test_model_on_cuda_matches_cpu(head):
    from vitdeca.model import DecaModel, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(encoder="vit_tiny_patch16_224", image_size=64, uv_size=32, n_albedo=8, pool="mean")
    model = DecaModel(config, head=head).eval()
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        cpu = model.decode(model.encode(images))
        gpu = model.cuda().decode(model.encode(images.cuda()))
    torch.testing.assert_close(gpu.vertices.cpu(), cpu.vertices, rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(gpu.landmarks2d.cpu(), cpu.landmarks2d, rtol=1e-3, atol=1e-2)
    assert (gpu.image.cpu() - cpu.image).abs().mean() < 1e-3


def test_bf16_autocast_training_step(head, tmp_path):
    from vitdeca.model import DecaModel
    from vitdeca.train.config import load_train_config
    from vitdeca.train.probe import probe_trainer, synthetic_batch, train_step

    torch.manual_seed(0)
    config = load_train_config(None, [*SMALL, "run.device=cuda", "run.amp=bf16", "optim.lr=1e-3"])
    model = DecaModel(config.model, head=head)
    trainer = probe_trainer(config, tmp_path, model, "cuda")
    assert trainer.amp == torch.bfloat16
    before = {k: v.detach().clone() for k, v in model.encoder.named_parameters()}
    batch = synthetic_batch(config.data.batch_size, 64, "cuda")
    losses = [train_step(trainer, batch) for _ in range(4)]
    assert all(torch.isfinite(torch.tensor(losses))) and trainer.nonfinite == 0
    assert losses[-1] < losses[0]
    changed = [not torch.equal(before[k], v) for k, v in model.encoder.named_parameters()]
    assert all(changed)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_rank(rank: int, port: int, folder: str, results) -> None:
    import torch.distributed as dist

    from vitdeca.model import DecaModel
    from vitdeca.train.config import load_train_config
    from vitdeca.train.distributed import DistInfo
    from vitdeca.train.probe import probe_trainer, synthetic_batch, synthetic_head, train_step

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=2, device_id=torch.device("cuda", rank))
    try:
        torch.manual_seed(0)  # the same initial weights on both ranks
        config = load_train_config(None, [*SMALL, "run.device=cuda", "run.amp=bf16"])
        model = DecaModel(config.model, head=synthetic_head(f"{folder}/rank{rank}"))
        info = DistInfo(rank=rank, world_size=2, local_rank=rank)
        trainer = probe_trainer(config, folder, model, f"cuda:{rank}", info=info)
        batch = synthetic_batch(config.data.batch_size // 2, 64, f"cuda:{rank}", seed=rank)
        loss = train_step(trainer, batch)
        flat = torch.cat([p.detach().float().reshape(-1) for p in model.encoder.parameters()])
        results.put((rank, loss, flat.sum().item(), flat.square().sum().item()))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_nccl_ddp_step_keeps_the_ranks_in_step(tmp_path):
    import torch.multiprocessing as mp

    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(_ddp_rank, args=(_free_port(), str(tmp_path), results), nprocs=2, start_method="spawn")
    (_, loss0, sum0, sq0), (_, loss1, sum1, sq1) = sorted(results.get() for _ in range(2))
    assert loss0 != loss1  # different data per rank ...
    assert (sum0, sq0) == (sum1, sq1)  # ... and the same weights after the all-reduced update
