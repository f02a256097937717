"""Parallel numba kernels: the serial kernels' bits, the thread policy, threads and forked children."""

from __future__ import annotations

import multiprocessing
import threading

import numba
import numpy as np
import pytest
import torch

from vitdeca.render import MeshRenderer, kernels, rasterize
from vitdeca.render.kernels import kernel_threads, unit_bounds

PARALLEL = min(2, numba.config.NUMBA_NUM_THREADS)


def _render_and_grads(mesh, threads: int, batch: int = 3):
    """One render of ``batch`` posed copies of a UV sphere and the gradients of a fixed random loss,
    with ``threads`` torch threads: every CPU kernel, forward and backward."""
    vertices, faces, uv = mesh
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    renderer = MeshRenderer(faces, uv, faces, image_size=(45, 53), uv_size=24)
    verts = (vertices[None] * (1 + 0.1 * torch.arange(batch))[:, None, None]).double().requires_grad_(True)
    camera = torch.tensor([[0.7, 0.1, -0.05]], dtype=torch.float64).repeat(batch, 1).requires_grad_(True)
    albedo = torch.rand(batch, 3, 24, 24, generator=gen, dtype=torch.float64, requires_grad=True)
    light = torch.rand(batch, 9, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    out = renderer(verts, camera, albedo, light)
    weights = torch.rand(out.image.shape, generator=gen, dtype=torch.float64)
    loss = (out.image * weights).sum() + (out.shape_image * weights).sum() + out.depth.sum()
    grads = torch.autograd.grad(loss, (verts, camera, albedo, light))
    return [out.fragments.face_index, out.image, out.shape_image, out.depth, *grads]


@pytest.mark.skipif(PARALLEL < 2, reason="numba has one thread here")
def test_parallel_kernels_give_the_serial_bits(uv_sphere):
    mesh = uv_sphere(10, 14, dtype=torch.float64)
    serial = _render_and_grads(mesh, 1)
    parallel = _render_and_grads(mesh, PARALLEL)
    assert kernels._PARALLEL, "no parallel kernel ran"
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a, b)
    assert serial[4].abs().sum() > 0 and serial[6].abs().sum() > 0


@pytest.mark.skipif(PARALLEL < 2, reason="numba has one thread here")
def test_zbuffer_bands_do_not_change_the_result():
    gen = torch.Generator().manual_seed(4)
    xy = torch.rand(2, 90, 2, generator=gen, dtype=torch.float64) * 40 - 3
    vertices = torch.cat([xy, torch.rand(2, 90, 1, generator=gen, dtype=torch.float64)], -1)
    faces = torch.randperm(90, generator=gen).view(30, 3)
    torch.set_num_threads(1)
    serial = rasterize(vertices, faces, 37, 35).face_index
    torch.set_num_threads(PARALLEL)
    assert kernels.zbuffer_bands(2, 37) > 1
    assert torch.equal(rasterize(vertices, faces, 37, 35).face_index, serial)


def test_thread_policy_follows_torch():
    torch.set_num_threads(1)
    assert kernel_threads() == 1
    assert unit_bounds(10, np.arange(10), 3).tolist() == [0, 10]  # serial: one unit
    torch.set_num_threads(PARALLEL)
    assert kernel_threads() == PARALLEL
    seen = {}
    worker = threading.Thread(target=lambda: seen.setdefault("threads", kernel_threads()))
    worker.start()
    worker.join()
    assert seen["threads"] == 1  # off the main thread: serial kernels


@pytest.mark.skipif(PARALLEL < 2, reason="numba has one thread here")
def test_unit_bounds():
    torch.set_num_threads(PARALLEL)
    pixels = np.array([0, 3, 5, 9, 10, 11, 25, 26])  # images of 9 pixels: 0,0,0,1,1,1,2,2
    assert unit_bounds(8, pixels, 9).tolist() == [0, 3, 6, 8]
    assert unit_bounds(8, pixels[::-1].copy(), 9).tolist() == [0, 8]  # unsorted: one unit
    assert unit_bounds(8).tolist() == [0, 8]
    free = unit_bounds(100, free=True)
    assert free[0] == 0 and free[-1] == 100 and len(free) > 2 and (np.diff(free) > 0).all()


def _child_render(queue):
    vertices = torch.tensor([[[0.0, 0.0, 1.0], [6.0, 0.0, 1.0], [0.0, 6.0, 1.0]]])
    torch.set_num_threads(2)  # a child may ask for threads: the kernels must still run serial
    queue.put((kernel_threads(), int(rasterize(vertices, torch.tensor([[0, 1, 2]]), 6, 6).mask.sum())))


@pytest.mark.skipif(PARALLEL < 2, reason="numba has one thread here")
@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
def test_forked_child_after_parallel_kernels_runs_serial(uv_sphere):
    _render_and_grads(uv_sphere(6, 8), PARALLEL, batch=2)  # the parent ran parallel kernels
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_render, args=(queue,))
    child.start()
    result = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert result == (1, 21)
