"""numba CPU kernels: the z-buffer, and barycentrics / interpolation with analytic backward passes.

All kernels are serial (``nogil``): a second OpenMP pool beside torch's spins on shared cores, and numba's
parallel layers are unsafe in forked DataLoader workers. The torch code in :mod:`vitdeca.render.rasterize`
computes the same values (and is used on CUDA); the tests compare both.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

MIN_AREA = 1e-12  # pixels² (twice the signed area); smaller faces cover nothing


@numba.njit(cache=True, inline="always")
def _pixel_range(lo: float, hi: float, first: int, stop: int) -> tuple[int, int]:  # pragma: no cover
    """Indices k in [first, stop) whose centre k+0.5 lies in [lo, hi] (empty when start > end)."""
    start = math.ceil(min(max(lo - 0.5, first - 1.0), stop + 1.0))
    end = math.floor(min(max(hi - 0.5, first - 1.0), stop + 1.0))
    return max(start, first), min(end, stop - 1)


@numba.njit(cache=True, nogil=True)
def zbuffer(verts, faces, perspective, cull, near, face_index, zbuf):  # pragma: no cover
    """Fill face_index/zbuf (B,H,W) for verts (B,V,3) float64, faces (F,3) int64, faces in index order.

    A pixel centre is covered when its three barycentrics are >= 0; the smallest depth wins (strict <,
    so ties keep the lower face index).
    """
    batch, height, width = face_index.shape
    for b in range(batch):
        for f in range(faces.shape[0]):
            a, c, d = faces[f, 0], faces[f, 1], faces[f, 2]
            y0, y1, y2 = verts[b, a, 1], verts[b, c, 1], verts[b, d, 1]
            i_lo, i_hi = _pixel_range(min(y0, y1, y2), max(y0, y1, y2), 0, height)
            if i_lo > i_hi:
                continue
            x0, x1, x2 = verts[b, a, 0], verts[b, c, 0], verts[b, d, 0]
            z0, z1, z2 = verts[b, a, 2], verts[b, c, 2], verts[b, d, 2]
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if abs(area) < MIN_AREA or (cull and area > 0.0) or min(z0, z1, z2) < near:
                continue
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
def _screen_weights(rows, corner, n, px, py):  # pragma: no cover
    """Screen barycentrics (w0,w1,w2), the area and the edge vectors of pixel n's triangle."""
    r0, r1, r2 = corner[0, n], corner[1, n], corner[2, n]
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
def barycentric_forward(rows, corner, centre, perspective, bary, depth):  # pragma: no cover
    """rows (R,3) screen vertices, corner (3,N) row ids, centre (2,N) pixel centres → bary (3,N), depth (N,).

    perspective: b_i ∝ w_i / z_i and depth = 1 / Σ w_i / z_i; else b_i = w_i and depth = Σ w_i z_i.
    """
    for n in range(corner.shape[1]):
        w0, w1, w2, _, _, _, _, _ = _screen_weights(rows, corner, n, centre[0, n], centre[1, n])
        z0, z1, z2 = rows[corner[0, n], 2], rows[corner[1, n], 2], rows[corner[2, n], 2]
        if perspective:
            t0, t1, t2 = w0 / z0, w1 / z1, w2 / z2
            total = t0 + t1 + t2
            w0, w1, w2 = t0 / total, t1 / total, t2 / total
        bary[0, n], bary[1, n], bary[2, n] = w0, w1, w2
        depth[n] = w0 * z0 + w1 * z1 + w2 * z2


@numba.njit(cache=True, nogil=True)
def barycentric_backward(
    rows, corner, centre, perspective, grad_bary, grad_depth, grad_rows
):  # pragma: no cover
    """Accumulate dL/d rows (R,3) from dL/d bary (3,N) and dL/d depth (N,).

    The screen weights of a fixed point move with vertex j as dw_i/dp_j = -w_j ∇w_i (∇: w.r.t. the point),
    so dL/dp_j = -w_j Σ_i (dL/dw_i) ∇w_i.
    """
    for n in range(corner.shape[1]):
        w0, w1, w2, area, ex, ey, fx, fy = _screen_weights(rows, corner, n, centre[0, n], centre[1, n])
        r0, r1, r2 = corner[0, n], corner[1, n], corner[2, n]
        z0, z1, z2 = rows[r0, 2], rows[r1, 2], rows[r2, 2]
        g0, g1, g2, gd = grad_bary[0, n], grad_bary[1, n], grad_bary[2, n], grad_depth[n]
        if perspective:  # b_i = t_i / S, depth = 1 / S with t_i = w_i / z_i, S = Σ t_i
            t0, t1, t2 = w0 / z0, w1 / z1, w2 / z2
            total = t0 + t1 + t2
            mean = (g0 * t0 + g1 * t1 + g2 * t2) / total
            gt0 = (g0 - mean) / total - gd / (total * total)
            gt1 = (g1 - mean) / total - gd / (total * total)
            gt2 = (g2 - mean) / total - gd / (total * total)
            gw0, gw1, gw2 = gt0 / z0, gt1 / z1, gt2 / z2
            gz0, gz1, gz2 = -gt0 * t0 / z0, -gt1 * t1 / z1, -gt2 * t2 / z2
        else:
            gw0, gw1, gw2 = g0 + gd * z0, g1 + gd * z1, g2 + gd * z2
            gz0, gz1, gz2 = gd * w0, gd * w1, gd * w2
        # G = Σ_i gw_i ∇w_i with ∇w1 = (fy, -fx)/area, ∇w2 = (-ey, ex)/area, ∇w0 = -(∇w1 + ∇w2)
        a1, a2 = (gw1 - gw0) / area, (gw2 - gw0) / area
        gx = a1 * fy - a2 * ey
        gy = -a1 * fx + a2 * ex
        grad_rows[r0, 0] -= w0 * gx
        grad_rows[r0, 1] -= w0 * gy
        grad_rows[r1, 0] -= w1 * gx
        grad_rows[r1, 1] -= w1 * gy
        grad_rows[r2, 0] -= w2 * gx
        grad_rows[r2, 1] -= w2 * gy
        grad_rows[r0, 2] += gz0
        grad_rows[r1, 2] += gz1
        grad_rows[r2, 2] += gz2


@numba.njit(cache=True, nogil=True)
def interpolate_forward(rows, corner, bary, out):  # pragma: no cover
    """out (C,N) = Σ_k bary[k] · rows[corner[k]] for rows (R,C), corner (3,N), bary (3,N)."""
    for n in range(corner.shape[1]):
        r0, r1, r2 = corner[0, n], corner[1, n], corner[2, n]
        b0, b1, b2 = bary[0, n], bary[1, n], bary[2, n]
        for c in range(rows.shape[1]):
            out[c, n] = b0 * rows[r0, c] + b1 * rows[r1, c] + b2 * rows[r2, c]


@numba.njit(cache=True, nogil=True)
def interpolate_backward(rows, corner, bary, grad_out, grad_rows, grad_bary):  # pragma: no cover
    """From grad_out (C,N): accumulate grad_rows (R,C) and fill grad_bary (3,N)."""
    for n in range(corner.shape[1]):
        for k in range(3):
            r, b = corner[k, n], bary[k, n]
            total = 0.0
            for c in range(rows.shape[1]):
                g = grad_out[c, n]
                grad_rows[r, c] += b * g
                total += rows[r, c] * g
            grad_bary[k, n] = total


def _np(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().contiguous().numpy()


class BarycentricFunction(torch.autograd.Function):
    """rows (R,3) screen vertices, corner (3,N) long, centre (2,N) → bary (3,N), depth (N,) (CPU)."""

    @staticmethod
    def forward(ctx, rows, corner, centre, perspective):
        bary = rows.new_empty(3, corner.shape[1])
        depth = rows.new_empty(corner.shape[1])
        barycentric_forward(_np(rows), _np(corner), _np(centre), perspective, bary.numpy(), depth.numpy())
        ctx.save_for_backward(rows, corner, centre)
        ctx.perspective = perspective
        return bary, depth

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_bary, grad_depth):
        rows, corner, centre = ctx.saved_tensors
        grad_rows = torch.zeros_like(rows)
        grad_bary = torch.zeros(3, corner.shape[1], dtype=rows.dtype) if grad_bary is None else grad_bary
        grad_depth = torch.zeros(corner.shape[1], dtype=rows.dtype) if grad_depth is None else grad_depth
        barycentric_backward(
            _np(rows), _np(corner), _np(centre), ctx.perspective,
            _np(grad_bary.to(rows.dtype)), _np(grad_depth.to(rows.dtype)), grad_rows.numpy(),
        )  # fmt: skip
        return grad_rows, None, None, None


class InterpolateFunction(torch.autograd.Function):
    """rows (R,C), corner (3,N) long, bary (3,N) → (C,N) interpolated values (CPU)."""

    @staticmethod
    def forward(ctx, rows, corner, bary):
        bary = bary.to(rows.dtype)
        out = rows.new_empty(rows.shape[1], corner.shape[1])
        interpolate_forward(_np(rows), _np(corner), _np(bary), out.numpy())
        ctx.save_for_backward(rows, corner, bary)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        rows, corner, bary = ctx.saved_tensors
        grad_rows = torch.zeros_like(rows)
        grad_bary = torch.empty_like(bary)
        interpolate_backward(_np(rows), _np(corner), _np(bary), _np(grad_out.to(rows.dtype)),
                             grad_rows.numpy(), grad_bary.numpy())  # fmt: skip
        return grad_rows, None, grad_bary
