"""Small meshes for the renderer tests (fixtures return builder functions)."""

from __future__ import annotations

import math

import pytest
import torch


def _grid_mesh(rows: int, cols: int, x0: float, y0: float, x1: float, y1: float, dtype=torch.float64):
    """A (rows+1)x(cols+1) vertex grid over [x0,x1]x[y0,y1] (model space, y up, z = 0) with uv = the
    normalised position; faces counter-clockwise seen from +z.

    Returns vertices (V,3), faces (F,3), uv (V,2)."""
    ys, xs = torch.meshgrid(
        torch.linspace(y0, y1, rows + 1, dtype=dtype),
        torch.linspace(x0, x1, cols + 1, dtype=dtype),
        indexing="ij",
    )
    vertices = torch.stack([xs, ys, torch.zeros_like(xs)], dim=-1).reshape(-1, 3)
    uv = torch.stack([(xs - x0) / (x1 - x0), (ys - y0) / (y1 - y0)], dim=-1).reshape(-1, 2)
    n = cols + 1
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    q = (r * n + c).reshape(-1)
    faces = torch.cat([torch.stack([q, q + 1, q + n + 1], 1), torch.stack([q, q + n + 1, q + n], 1)])
    return vertices, faces, uv


def _uv_sphere(rings: int, segments: int, dtype=torch.float32):
    """Unit UV sphere (outward, counter-clockwise faces); uv = (longitude, latitude) in [0,1] (v up)."""
    theta = torch.linspace(0, math.pi, rings + 1, dtype=dtype)
    phi = torch.linspace(0, 2 * math.pi, segments + 1, dtype=dtype)
    t, p = torch.meshgrid(theta, phi, indexing="ij")
    vertices = torch.stack([torch.sin(t) * torch.sin(p), torch.cos(t), torch.sin(t) * torch.cos(p)], -1)
    uv = torch.stack([p / (2 * math.pi), 1 - t / math.pi], -1).reshape(-1, 2)
    n = segments + 1
    r, s = torch.meshgrid(torch.arange(rings), torch.arange(segments), indexing="ij")
    q = (r * n + s).reshape(-1)
    faces = torch.cat([torch.stack([q, q + n, q + 1], 1), torch.stack([q + 1, q + n, q + n + 1], 1)])
    return vertices.reshape(-1, 3), faces, uv


@pytest.fixture
def grid_mesh():
    return _grid_mesh


@pytest.fixture
def uv_sphere():
    return _uv_sphere


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny renders gain nothing from threads, and OpenMP barriers stall on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
