"""numba CPU kernels for the geometry: the z-buffer, barycentrics, interpolation and scattering into images,
with analytic backward passes (shading kernels: :mod:`vitdeca.render.shading_kernels`).

Every kernel is written once with ``prange`` over independent work units and compiled twice: serial
(``nogil``, ``prange`` runs as ``range``) and parallel (:func:`launch` picks one). A unit writes only its
own outputs (a pixel, a band of image rows, or the pixels of one image when gradients are accumulated
into per-image rows), and within a unit the order is the serial one, so both variants give the same
bits whatever the thread count. Units whose outputs would overlap (gradients of rows shared by all
images) run as one unit. The torch code in :mod:`vitdeca.render.rasterize` computes the same values
(and is used on CUDA); the tests compare both.

Thread policy: the parallel variants use ``torch.get_num_threads()`` threads (capped at numba's pool),
and run serial off the main thread (numba's workqueue layer is not thread-safe) and in a process forked
after a parallel kernel ran (GNU OpenMP is not fork-safe); DataLoader workers get one torch thread,
hence the serial kernels. Set the thread count with ``torch.set_num_threads`` (``--threads`` in the CLI).
"""

from __future__ import annotations

import math
import os
import threading
import types

import numba
import numpy as np
import torch

MIN_AREA = 1e-12  # pixels² (twice the signed area); smaller faces cover nothing
UNITS_PER_THREAD = 4  # work units per thread where units can be cut freely (load balance)

_PARALLEL: dict[object, object] = {}  # serial dispatcher → its parallel twin, compiled on first use
_PARALLEL_PID: list[int] = []  # the process that first ran a parallel kernel


def kernel_threads() -> int:
    """Threads the kernels may use now: ``torch.get_num_threads()`` capped at numba's pool; 1 off the
    main thread and in a child forked after a parallel kernel ran."""
    if threading.current_thread() is not threading.main_thread():
        return 1
    if _PARALLEL_PID and _PARALLEL_PID[0] != os.getpid():
        return 1
    return max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


def _parallel_twin(kernel):
    """The same Python function compiled with ``parallel=True`` under its own name (its own cache file)."""
    py = kernel.py_func
    clone = types.FunctionType(py.__code__, py.__globals__, py.__name__ + "_parallel", py.__defaults__)
    clone.__qualname__, clone.__module__, clone.__doc__ = (
        py.__qualname__ + "_parallel",
        py.__module__,
        py.__doc__,
    )
    return numba.njit(cache=True, nogil=True, parallel=True)(clone)


def launch(kernel, *args):
    """Run a kernel's parallel twin with :func:`kernel_threads` threads, or the serial kernel on one."""
    threads = kernel_threads()
    if threads <= 1:
        return kernel(*args)
    twin = _PARALLEL.get(kernel)
    if twin is None:
        twin = _PARALLEL.setdefault(kernel, _parallel_twin(kernel))
    if not _PARALLEL_PID:
        _PARALLEL_PID.append(os.getpid())
    numba.set_num_threads(threads)
    return twin(*args)


def unit_bounds(n: int, keys: np.ndarray | None = None, plane: int = 1, free: bool = False) -> np.ndarray:
    """(U+1,) int64 boundaries of contiguous work units over ``n`` items, for the kernels that take them.

    One unit when the kernels run serial. ``free``: items are independent, cut evenly. ``keys`` (n,)
    non-decreasing (e.g. pixel indices, ``plane`` = H·W; or image indices, ``plane`` = 1): one unit per
    image ``keys // plane`` (a unit accumulates into its own image's rows). Otherwise (or unsorted keys):
    one unit.
    """
    if kernel_threads() <= 1 or n == 0:
        return np.array([0, n], dtype=np.int64)
    if free:
        return np.linspace(0, n, min(n, kernel_threads() * UNITS_PER_THREAD) + 1).astype(np.int64)
    if keys is None or (n > 1 and bool((keys[1:] < keys[:-1]).any())):
        return np.array([0, n], dtype=np.int64)
    cuts = np.searchsorted(keys, np.arange(1, int(keys[-1]) // plane + 1) * plane)
    return np.concatenate([[0], cuts, [n]]).astype(np.int64)


def zbuffer_bands(batch: int, height: int) -> int:
    """Row bands per image for :func:`zbuffer`: enough units for the threads, 1 when serial."""
    threads = kernel_threads()
    if threads <= 1:
        return 1
    return max(1, min(height, -(-threads * UNITS_PER_THREAD // max(batch, 1))))


@numba.njit(cache=True, inline="always")
def _pixel_range(lo: float, hi: float, first: int, stop: int) -> tuple[int, int]:  # pragma: no cover
    """Indices k in [first, stop) whose centre k+0.5 lies in [lo, hi] (empty when start > end)."""
    start = math.ceil(min(max(lo - 0.5, first - 1.0), stop + 1.0))
    end = math.floor(min(max(hi - 0.5, first - 1.0), stop + 1.0))
    return max(start, first), min(end, stop - 1)


@numba.njit(cache=True, nogil=True)
def zbuffer(verts, faces, perspective, cull, near, n_bands, face_index, zbuf):  # pragma: no cover
    """Fill face_index/zbuf (B,H,W) for verts (B,V,3) float64, faces (F,3) int64, faces in index order.

    A pixel centre is covered when its three barycentrics are >= 0; the smallest depth wins (strict <,
    so ties keep the lower face index). Units: ``n_bands`` bands of rows per image (any count gives the
    same result: each band sees every face in index order).
    """
    batch, height, width = face_index.shape
    for unit in numba.prange(batch * n_bands):
        b, band = unit // n_bands, unit % n_bands
        band_lo, band_hi = band * height // n_bands, (band + 1) * height // n_bands - 1
        for f in range(faces.shape[0]):
            a, c, d = faces[f, 0], faces[f, 1], faces[f, 2]
            y0, y1, y2 = verts[b, a, 1], verts[b, c, 1], verts[b, d, 1]
            i_lo, i_hi = _pixel_range(min(y0, y1, y2), max(y0, y1, y2), 0, height)
            i_lo, i_hi = max(i_lo, band_lo), min(i_hi, band_hi)
            if i_lo > i_hi:
                continue
            _zbuffer_face(verts, b, a, c, d, f, perspective, cull, near, i_lo, i_hi, face_index, zbuf)


@numba.njit(cache=True, inline="always")
def _zbuffer_face(
    verts, b, a, c, d, f, perspective, cull, near, i_lo, i_hi, face_index, zbuf
):  # pragma: no cover
    """Depth-test face f (corners a, c, d) of image b over rows i_lo..i_hi."""
    width = face_index.shape[2]
    x0, x1, x2 = verts[b, a, 0], verts[b, c, 0], verts[b, d, 0]
    y0, y1, y2 = verts[b, a, 1], verts[b, c, 1], verts[b, d, 1]
    z0, z1, z2 = verts[b, a, 2], verts[b, c, 2], verts[b, d, 2]
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    if abs(area) < MIN_AREA or (cull and area > 0.0) or min(z0, z1, z2) < near:
        return
    j_lo, j_hi = _pixel_range(min(x0, x1, x2), max(x0, x1, x2), 0, width)
    sign, abs_area = (1.0, area) if area > 0.0 else (-1.0, -area)
    for i in range(i_lo, i_hi + 1):
        py = i + 0.5
        for j in range(j_lo, j_hi + 1):
            px = j + 0.5
            # edge functions; dividing by the area keeps their signs, so test before dividing
            e0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * sign
            e1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * sign
            e2 = ((x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)) * sign
            if e0 < 0.0 or e1 < 0.0 or e2 < 0.0:
                continue
            w0, w1, w2 = e0 / abs_area, e1 / abs_area, e2 / abs_area
            if perspective:
                z = 1.0 / (w0 / z0 + w1 / z1 + w2 / z2)
            else:
                z = w0 * z0 + w1 * z1 + w2 * z2
            if z < zbuf[b, i, j]:
                zbuf[b, i, j] = z
                face_index[b, i, j] = f


@numba.njit(cache=True, inline="always")
def _pixel_corners(faces, pixel_index, pixel_face, n, plane, width, n_rows, per_vertex):  # pragma: no cover
    """Flat row ids of the three corners of covered pixel n, and its centre (x, y).

    plane = H·W; rows are grouped per batch item (n_rows each, 0 for one shared set); per_vertex: rows
    are vertices (faces give the ids), else face corners (id = 3·face + k).
    """
    b, rest = pixel_index[n] // plane, pixel_index[n] % plane
    f, offset = pixel_face[n], b * n_rows
    if per_vertex:
        r0, r1, r2 = faces[f, 0] + offset, faces[f, 1] + offset, faces[f, 2] + offset
    else:
        r0, r1, r2 = 3 * f + offset, 3 * f + 1 + offset, 3 * f + 2 + offset
    return r0, r1, r2, rest % width + 0.5, rest // width + 0.5


@numba.njit(cache=True, inline="always")
def _screen_weights(rows, r0, r1, r2, px, py):  # pragma: no cover
    """Screen barycentrics (w0,w1,w2), the signed area and the edge vectors of a triangle at (px, py)."""
    x0, y0 = rows[r0, 0], rows[r0, 1]
    ex, ey = rows[r1, 0] - x0, rows[r1, 1] - y0
    fx, fy = rows[r2, 0] - x0, rows[r2, 1] - y0
    qx, qy = px - x0, py - y0
    area = ex * fy - fx * ey
    if abs(area) < MIN_AREA:
        area = MIN_AREA
    w1 = (qx * fy - fx * qy) / area
    w2 = (ex * qy - qx * ey) / area
    return 1.0 - w1 - w2, w1, w2, area, ex, ey, fx, fy


@numba.njit(cache=True, nogil=True)
def barycentric_forward(
    rows, n_verts, faces, pixels, plane, width, perspective, bary, depth
):  # pragma: no cover
    """rows (B·V,3) screen vertices; pixels (2,N) = (pixel_index, pixel_face) → bary (3,N), depth (N,).

    perspective: b_i ∝ w_i / z_i and depth = 1 / Σ w_i / z_i; else b_i = w_i and depth = Σ w_i z_i.
    """
    for n in numba.prange(pixels.shape[1]):
        r0, r1, r2, px, py = _pixel_corners(faces, pixels[0], pixels[1], n, plane, width, n_verts, True)
        w0, w1, w2, _, _, _, _, _ = _screen_weights(rows, r0, r1, r2, px, py)
        z0, z1, z2 = rows[r0, 2], rows[r1, 2], rows[r2, 2]
        if perspective:
            t0, t1, t2 = w0 / z0, w1 / z1, w2 / z2
            total = t0 + t1 + t2
            w0, w1, w2 = t0 / total, t1 / total, t2 / total
        bary[0, n], bary[1, n], bary[2, n] = w0, w1, w2
        depth[n] = w0 * z0 + w1 * z1 + w2 * z2


@numba.njit(cache=True, nogil=True)
def barycentric_backward(
    rows, n_verts, faces, pixels, plane, width, perspective, grad_bary, grad_depth, bounds, grad_rows
):  # pragma: no cover
    """Accumulate dL/d rows (B·V,3) from dL/d bary (3,N) and dL/d depth (N,); ``bounds``: units of
    pixels of one image each (:func:`unit_bounds`).

    The screen weights of a fixed point move with vertex j as dw_i/dp_j = -w_j ∇w_i (∇: w.r.t. the point),
    so dL/dp_j = -w_j Σ_i (dL/dw_i) ∇w_i.
    """
    for unit in numba.prange(bounds.shape[0] - 1):
        for n in range(bounds[unit], bounds[unit + 1]):
            _barycentric_backward_one(
                rows, n_verts, faces, pixels, plane, width, perspective, grad_bary, grad_depth, grad_rows, n
            )


@numba.njit(cache=True, inline="always")
def _barycentric_backward_one(
    rows, n_verts, faces, pixels, plane, width, perspective, grad_bary, grad_depth, grad_rows, n
):  # pragma: no cover
    """One pixel n of :func:`barycentric_backward`."""
    r0, r1, r2, px, py = _pixel_corners(faces, pixels[0], pixels[1], n, plane, width, n_verts, True)
    w0, w1, w2, area, ex, ey, fx, fy = _screen_weights(rows, r0, r1, r2, px, py)
    z0, z1, z2 = rows[r0, 2], rows[r1, 2], rows[r2, 2]
    g0, g1, g2, gd = grad_bary[0, n], grad_bary[1, n], grad_bary[2, n], grad_depth[n]
    if perspective:  # b_i = t_i / S, depth = 1 / S with t_i = w_i / z_i, S = Σ t_i
        t0, t1, t2 = w0 / z0, w1 / z1, w2 / z2
        total = t0 + t1 + t2
        shift = (g0 * t0 + g1 * t1 + g2 * t2) / total + gd / total
        gt0, gt1, gt2 = (g0 - shift) / total, (g1 - shift) / total, (g2 - shift) / total
        gw0, gw1, gw2 = gt0 / z0, gt1 / z1, gt2 / z2
        gz0, gz1, gz2 = -gt0 * t0 / z0, -gt1 * t1 / z1, -gt2 * t2 / z2
    else:
        gw0, gw1, gw2 = g0 + gd * z0, g1 + gd * z1, g2 + gd * z2
        gz0, gz1, gz2 = gd * w0, gd * w1, gd * w2
    # G = Σ_i gw_i ∇w_i with ∇w1 = (fy, -fx)/area, ∇w2 = (-ey, ex)/area, ∇w0 = -(∇w1 + ∇w2)
    a1, a2 = (gw1 - gw0) / area, (gw2 - gw0) / area
    gx, gy = a1 * fy - a2 * ey, a2 * ex - a1 * fx
    grad_rows[r0, 0] -= w0 * gx
    grad_rows[r0, 1] -= w0 * gy
    grad_rows[r0, 2] += gz0
    grad_rows[r1, 0] -= w1 * gx
    grad_rows[r1, 1] -= w1 * gy
    grad_rows[r1, 2] += gz1
    grad_rows[r2, 0] -= w2 * gx
    grad_rows[r2, 1] -= w2 * gy
    grad_rows[r2, 2] += gz2


@numba.njit(cache=True, nogil=True)
def interpolate_forward(rows, n_rows, per_vertex, faces, pixels, plane, width, bary, out):  # pragma: no cover
    """out (C,N) = Σ_k bary[k] · rows[corner k] for rows (B·R,C) (see :func:`_pixel_corners`)."""
    for n in numba.prange(pixels.shape[1]):
        r0, r1, r2, _, _ = _pixel_corners(faces, pixels[0], pixels[1], n, plane, width, n_rows, per_vertex)
        b0, b1, b2 = bary[0, n], bary[1, n], bary[2, n]
        for c in range(rows.shape[1]):
            out[c, n] = b0 * rows[r0, c] + b1 * rows[r1, c] + b2 * rows[r2, c]


@numba.njit(cache=True, nogil=True)
def interpolate_backward(
    rows, n_rows, per_vertex, faces, pixels, plane, width, bary, grad_out, bounds, grad_rows, grad_bary
):  # pragma: no cover
    """From grad_out (C,N): accumulate grad_rows (B·R,C) and fill grad_bary (3,N); either may be empty
    (size 0) when not needed. ``bounds``: units of pixels whose rows do not overlap (:func:`unit_bounds`)."""
    want_rows, want_bary = grad_rows.size > 0, grad_bary.size > 0
    for unit in numba.prange(bounds.shape[0] - 1):
        for n in range(bounds[unit], bounds[unit + 1]):
            r0, r1, r2, _, _ = _pixel_corners(
                faces, pixels[0], pixels[1], n, plane, width, n_rows, per_vertex
            )
            for k, r in enumerate((r0, r1, r2)):
                b, total = bary[k, n], 0.0
                for c in range(rows.shape[1]):
                    g = grad_out[c, n]
                    if want_rows:
                        grad_rows[r, c] += b * g
                    total += rows[r, c] * g
                if want_bary:
                    grad_bary[k, n] = total


@numba.njit(cache=True, nogil=True)
def scatter_forward(values, index, channels_last, out):  # pragma: no cover
    """Zero ``out`` and write the packed values at ``index``: values (C,N) → out (C,T), or, channels_last,
    values (N,C) → out (T,C)."""
    out[:] = 0.0
    for n in numba.prange(index.shape[0]):
        if channels_last:
            for c in range(values.shape[1]):
                out[index[n], c] = values[n, c]
        else:
            for c in range(values.shape[0]):
                out[c, index[n]] = values[c, n]


@numba.njit(cache=True, nogil=True)
def scatter_backward(grad_out, index, channels_last, grad_values):  # pragma: no cover
    """grad_values = grad_out at ``index``: (C,T) → (C,N), or, channels_last, (T,C) → (N,C)."""
    for n in numba.prange(index.shape[0]):
        if channels_last:
            for c in range(grad_out.shape[1]):
                grad_values[n, c] = grad_out[index[n], c]
        else:
            for c in range(grad_out.shape[0]):
                grad_values[c, n] = grad_out[c, index[n]]


def tensor_min(tensor: torch.Tensor) -> int | float:
    """Minimum of a non-empty tensor (see :func:`tensor_max`)."""
    if tensor.device.type == "cpu":
        return tensor.detach().numpy().min().item()
    return tensor.min().item()


def tensor_max(tensor: torch.Tensor) -> int | float:
    """Maximum of a non-empty tensor: numpy on CPU (serial, no torch thread-pool round trip), torch
    elsewhere. Used to validate indices before they reach a kernel (numba does not bounds-check)."""
    if tensor.device.type == "cpu":
        return tensor.detach().numpy().max().item()
    return tensor.max().item()


def numpy_zeros(like: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A CPU zero tensor with the dtype of ``like`` (and its shape by default), filled by numpy: a serial
    memset instead of a torch thread-pool round trip."""
    dtype = torch.empty(0, dtype=like.dtype).numpy().dtype
    return torch.from_numpy(np.zeros(tuple(like.shape) if shape is None else shape, dtype=dtype))


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (copied by numpy if it is not contiguous)."""
    return np.ascontiguousarray(tensor.detach().numpy())


class BarycentricFunction(torch.autograd.Function):
    """Screen vertices (B,V,3), faces (F,3), pixels (2,N) = (pixel_index, pixel_face), (H, W),
    perspective → bary (3,N), depth (N,) (CPU)."""

    @staticmethod
    def forward(ctx, vertices, faces, pixels, size, perspective):
        rows = vertices.reshape(-1, 3)
        bary, depth = rows.new_empty(3, pixels.shape[1]), rows.new_empty(pixels.shape[1])
        args = (vertices.shape[1], to_numpy(faces), to_numpy(pixels), size[0] * size[1], size[1], perspective)
        launch(barycentric_forward, to_numpy(rows), *args, bary.numpy(), depth.numpy())
        ctx.save_for_backward(vertices)
        ctx.args = args
        return bary, depth

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_bary, grad_depth):
        (vertices,) = ctx.saved_tensors
        rows = vertices.reshape(-1, 3)
        grad_rows = numpy_zeros(rows)
        n = ctx.args[2].shape[1]
        grad_bary = numpy_zeros(rows, (3, n)) if grad_bary is None else grad_bary.to(rows.dtype)
        grad_depth = numpy_zeros(rows, (n,)) if grad_depth is None else grad_depth.to(rows.dtype)
        pixels, plane = ctx.args[2], ctx.args[3]
        bounds = unit_bounds(n, pixels[0], plane)
        launch(
            barycentric_backward,
            to_numpy(rows),
            *ctx.args,
            to_numpy(grad_bary),
            to_numpy(grad_depth),
            bounds,
            grad_rows.numpy(),
        )
        return grad_rows.view_as(vertices), None, None, None, None


class InterpolateFunction(torch.autograd.Function):
    """Attributes (A,R,C) (A = 1: shared by all pixels, else one set per image; R = V vertices if
    per_vertex else 3F face corners), faces (F,3), pixels (2,N), (H, W), bary (3,N) → (C,N) (CPU)."""

    @staticmethod
    def forward(ctx, attributes, per_vertex, faces, pixels, size, bary):
        n_rows = attributes.shape[1] if attributes.shape[0] > 1 else 0
        rows = attributes.reshape(-1, attributes.shape[-1])
        out = rows.new_empty(rows.shape[1], pixels.shape[1])
        args = (n_rows, per_vertex, to_numpy(faces), to_numpy(pixels), size[0] * size[1], size[1])
        launch(interpolate_forward, to_numpy(rows), *args, to_numpy(bary), out.numpy())
        ctx.save_for_backward(attributes, bary)
        ctx.args = args
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        attributes, bary = ctx.saved_tensors
        rows = attributes.reshape(-1, attributes.shape[-1])
        want_rows, want_bary = ctx.needs_input_grad[0], ctx.needs_input_grad[5]
        grad_rows = numpy_zeros(rows) if want_rows else rows.new_empty(0, rows.shape[1])
        grad_bary = torch.empty_like(bary) if want_bary else bary.new_empty(3, 0)
        n_rows, pixels, plane = ctx.args[0], ctx.args[3], ctx.args[4]
        if not want_rows:
            bounds = unit_bounds(pixels.shape[1], free=True)
        else:  # rows per image: one unit per image; rows shared by all images: one unit
            bounds = unit_bounds(pixels.shape[1], pixels[0] if n_rows else None, plane)
        launch(
            interpolate_backward,
            to_numpy(rows),
            *ctx.args,
            to_numpy(bary),
            to_numpy(grad_out.to(rows.dtype)),
            bounds,
            grad_rows.numpy(),
            grad_bary.numpy(),
        )
        return (
            (grad_rows.view_as(attributes) if want_rows else None),
            None,
            None,
            None,
            None,
            (grad_bary if want_bary else None),
        )


class ScatterFunction(torch.autograd.Function):
    """values (C,N) → (C,T), or with channels_last (N,C) → (T,C): zeros with the values at ``index`` (CPU)."""

    @staticmethod
    def forward(ctx, values, index, size, channels_last):
        shape = (size, values.shape[1]) if channels_last else (values.shape[0], size)
        out = values.new_empty(shape)
        launch(scatter_forward, to_numpy(values), to_numpy(index), channels_last, out.numpy())
        ctx.save_for_backward(index)
        ctx.shape, ctx.channels_last = values.shape, channels_last
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (index,) = ctx.saved_tensors
        grad_values = grad_out.new_empty(ctx.shape)
        launch(scatter_backward, to_numpy(grad_out), to_numpy(index), ctx.channels_last, grad_values.numpy())
        return grad_values, None, None, None
