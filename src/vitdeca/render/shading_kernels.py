"""numba CPU kernels for shading, with analytic backward passes: vertex normals, unit vectors, SH and
directional lighting, bilinear UV-map sampling. Same conventions as :mod:`vitdeca.render.kernels` (written
once with ``prange``, run serial or parallel by :func:`~vitdeca.render.kernels.launch` with the same
result); the torch twins used on other devices live beside their callers and are tested against these.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

from vitdeca.render.kernels import launch, numpy_zeros, to_numpy, unit_bounds


@numba.njit(cache=True, inline="always")
def _edges(verts, b, i0, i1, i2):  # pragma: no cover
    """Edge vectors v1-v0 and v2-v0 of one face of batch item b."""
    a = (
        verts[b, i1, 0] - verts[b, i0, 0],
        verts[b, i1, 1] - verts[b, i0, 1],
        verts[b, i1, 2] - verts[b, i0, 2],
    )
    c = (
        verts[b, i2, 0] - verts[b, i0, 0],
        verts[b, i2, 1] - verts[b, i0, 1],
        verts[b, i2, 2] - verts[b, i0, 2],
    )
    return a, c


@numba.njit(cache=True, inline="always")
def _cross(a, c):  # pragma: no cover
    return (a[1] * c[2] - a[2] * c[1], a[2] * c[0] - a[0] * c[2], a[0] * c[1] - a[1] * c[0])


@numba.njit(cache=True, nogil=True)
def vertex_normals_forward(verts, faces, raw, out):  # pragma: no cover
    """verts (B,V,3), faces (F,3) → raw (B,V,3) = Σ cross(v1-v0, v2-v0) over incident faces (zeroed by the
    caller); out = raw normalised (length clamped at 1e-12). Units: images."""
    for b in numba.prange(verts.shape[0]):
        _vertex_normals_image(verts, faces, raw, out, b)


@numba.njit(cache=True, nogil=True)
def _vertex_normals_image(verts, faces, raw, out, b):  # pragma: no cover
    """Image b of :func:`vertex_normals_forward` (a call, not inlined: parfors cannot analyse its tuples)."""
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        a, c = _edges(verts, b, i0, i1, i2)
        n = _cross(a, c)
        for i in (i0, i1, i2):
            for k in range(3):
                raw[b, i, k] += n[k]
    for v in range(verts.shape[1]):
        length = max(math.sqrt(raw[b, v, 0] ** 2 + raw[b, v, 1] ** 2 + raw[b, v, 2] ** 2), 1e-12)
        for k in range(3):
            out[b, v, k] = raw[b, v, k] / length


@numba.njit(cache=True, nogil=True)
def vertex_normals_backward(verts, faces, raw, grad_out, grad_verts):  # pragma: no cover
    """Accumulate grad_verts (B,V,3) from grad_out (B,V,3) through the normalisation and cross products.
    Units: images."""
    for b in numba.prange(verts.shape[0]):
        _vertex_normals_backward_image(verts, faces, raw, grad_out, grad_verts, b)


@numba.njit(cache=True, nogil=True)
def _vertex_normals_backward_image(verts, faces, raw, grad_out, grad_verts, b):  # pragma: no cover
    """Image b of :func:`vertex_normals_backward` (a call, not inlined, as :func:`_vertex_normals_image`)."""
    grad_raw = np.empty((verts.shape[1], 3))
    # 1. through the normalisation: d unit(r)/dr = (I - u uᵀ) / |r| (1/1e-12 where clamped)
    for v in range(verts.shape[1]):
        length = math.sqrt(raw[b, v, 0] ** 2 + raw[b, v, 1] ** 2 + raw[b, v, 2] ** 2)
        dot = 0.0
        if length >= 1e-12:
            dot = (
                raw[b, v, 0] * grad_out[b, v, 0]
                + raw[b, v, 1] * grad_out[b, v, 1]
                + raw[b, v, 2] * grad_out[b, v, 2]
            ) / (length * length)
        for k in range(3):
            grad_raw[v, k] = (grad_out[b, v, k] - raw[b, v, k] * dot) / max(length, 1e-12)
    # 2. through n = a × c per face: dL/da = c × g, dL/dc = g × a, with g summed over its corners
    for f in range(faces.shape[0]):
        i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
        g = (
            grad_raw[i0, 0] + grad_raw[i1, 0] + grad_raw[i2, 0],
            grad_raw[i0, 1] + grad_raw[i1, 1] + grad_raw[i2, 1],
            grad_raw[i0, 2] + grad_raw[i1, 2] + grad_raw[i2, 2],
        )
        a, c = _edges(verts, b, i0, i1, i2)
        da, dc = _cross(c, g), _cross(g, a)
        for k in range(3):
            grad_verts[b, i1, k] += da[k]
            grad_verts[b, i2, k] += dc[k]
            grad_verts[b, i0, k] -= da[k] + dc[k]


@numba.njit(cache=True, inline="always")
def _basis(x, y, z):  # pragma: no cover
    """DECA's SH basis without constants: (1, x, y, z, xy, xz, yz, x²-y², 3z²-1)."""
    return 1.0, x, y, z, x * y, x * z, y * z, x * x - y * y, 3.0 * z * z - 1.0


@numba.njit(cache=True, nogil=True)
def sh_forward(normals, light, batch, out):  # pragma: no cover
    """out (3,N) = basis(normals (3,N)) · light[batch] for light (B,9,3) with the SH constants folded in."""
    for n in numba.prange(normals.shape[1]):
        basis = _basis(np.float64(normals[0, n]), np.float64(normals[1, n]), np.float64(normals[2, n]))
        b = batch[n]
        for c in range(3):
            total = 0.0
            for k in range(9):
                total += basis[k] * light[b, k, c]
            out[c, n] = total


@numba.njit(cache=True, nogil=True)
def sh_backward(normals, light, batch, grad_out, bounds, grad_normals, grad_light):  # pragma: no cover
    """Fill grad_normals (3,N) and accumulate grad_light (B,9,3) from grad_out (3,N); ``bounds``: units
    of the points of one image each. A unit sums its light gradient in float64 locals and adds it once
    (the same sums in the same order whatever the units)."""
    for unit in numba.prange(bounds.shape[0] - 1):
        acc = np.zeros((grad_light.shape[0], 9, 3))
        for n in range(bounds[unit], bounds[unit + 1]):
            x, y, z = np.float64(normals[0, n]), np.float64(normals[1, n]), np.float64(normals[2, n])
            basis = _basis(x, y, z)
            b = batch[n]
            g0, g1, g2 = np.float64(grad_out[0, n]), np.float64(grad_out[1, n]), np.float64(grad_out[2, n])
            for k in range(9):
                acc[b, k, 0] += basis[k] * g0
                acc[b, k, 1] += basis[k] * g1
                acc[b, k, 2] += basis[k] * g2
            s1, s2 = _light_dot(light, b, 1, g0, g1, g2), _light_dot(light, b, 2, g0, g1, g2)
            s3, s4 = _light_dot(light, b, 3, g0, g1, g2), _light_dot(light, b, 4, g0, g1, g2)
            s5, s6 = _light_dot(light, b, 5, g0, g1, g2), _light_dot(light, b, 6, g0, g1, g2)
            s7, s8 = _light_dot(light, b, 7, g0, g1, g2), _light_dot(light, b, 8, g0, g1, g2)
            grad_normals[0, n] = s1 + s4 * y + s5 * z + 2.0 * s7 * x
            grad_normals[1, n] = s2 + s4 * x + s6 * z - 2.0 * s7 * y
            grad_normals[2, n] = s3 + s5 * x + s6 * y + 6.0 * s8 * z
        for b in range(grad_light.shape[0]):  # only the images this unit saw hold non-zero sums
            for k in range(9):
                for c in range(3):
                    if acc[b, k, c] != 0.0:
                        grad_light[b, k, c] += acc[b, k, c]


@numba.njit(cache=True, inline="always")
def _light_dot(light, b, k, g0, g1, g2):  # pragma: no cover
    """dL/d basis_k of one point: light (B,9,3) row k of image b · the point's grad_out (g0, g1, g2)."""
    return light[b, k, 0] * g0 + light[b, k, 1] * g1 + light[b, k, 2] * g2


@numba.njit(cache=True, inline="always")
def _texel_position(g, size):  # pragma: no cover
    """grid_sample's unnormalisation (align_corners=False) with border clipping → (position, d pos/d g)."""
    position = ((g + 1.0) * size - 1.0) / 2.0
    if position <= 0.0:
        return 0.0, 0.0
    if position >= size - 1:
        return float(size - 1), 0.0
    return position, size / 2.0


@numba.njit(cache=True, inline="always")
def _bilinear_cell(grid, n, height, width):  # pragma: no cover
    """Point n's bilinear cell in an (height,width) texture: corners x0, x1, y0, y1, weights fx, fy and the
    derivatives d px/d gx, d py/d gy (0 where the border clips)."""
    px, dpx = _texel_position(grid[0, n], width)
    py, dpy = _texel_position(grid[1, n], height)
    x0, y0 = min(int(px), width - 1), min(int(py), height - 1)
    x1, y1 = min(x0 + 1, width - 1), min(y0 + 1, height - 1)
    return x0, x1, y0, y1, px - x0, py - y0, dpx, dpy


@numba.njit(cache=True, nogil=True)
def uv_sample_forward(texture, grid, batch, out):  # pragma: no cover
    """Bilinear ``grid_sample`` (border padding, align_corners=False) at packed points.

    texture (T,H,W,C) channels last (T = 1: shared), grid (2,N) = (x, y) in [-1,1], batch (N,) → out (C,N).
    """
    height, width = texture.shape[1], texture.shape[2]
    for n in numba.prange(grid.shape[1]):
        t = batch[n] if texture.shape[0] > 1 else 0
        x0, x1, y0, y1, fx, fy, _, _ = _bilinear_cell(grid, n, height, width)
        for c in range(texture.shape[3]):
            top = texture[t, y0, x0, c] * (1.0 - fx) + texture[t, y0, x1, c] * fx
            bottom = texture[t, y1, x0, c] * (1.0 - fx) + texture[t, y1, x1, c] * fx
            out[c, n] = top * (1.0 - fy) + bottom * fy


@numba.njit(cache=True, nogil=True)
def uv_sample_backward(texture, grid, batch, grad_out, bounds, grad_texture, grad_grid):  # pragma: no cover
    """Accumulate grad_texture (T,H,W,C) and fill grad_grid (2,N) from grad_out (C,N); either may be empty
    (size 0) when not needed. ``bounds``: units of points whose texels do not overlap."""
    for unit in numba.prange(bounds.shape[0] - 1):
        for n in range(bounds[unit], bounds[unit + 1]):
            _uv_sample_backward_one(texture, grid, batch, grad_out, grad_texture, grad_grid, n)


@numba.njit(cache=True, inline="always")
def _uv_sample_backward_one(texture, grid, batch, grad_out, grad_texture, grad_grid, n):  # pragma: no cover
    """Point n of :func:`uv_sample_backward`."""
    height, width = texture.shape[1], texture.shape[2]
    want_texture, want_grid = grad_texture.size > 0, grad_grid.size > 0
    t = batch[n] if texture.shape[0] > 1 else 0
    x0, x1, y0, y1, fx, fy, dpx, dpy = _bilinear_cell(grid, n, height, width)
    gx, gy = 0.0, 0.0
    for c in range(texture.shape[3]):
        g = grad_out[c, n]
        if want_texture:
            grad_texture[t, y0, x0, c] += g * (1.0 - fx) * (1.0 - fy)
            grad_texture[t, y0, x1, c] += g * fx * (1.0 - fy)
            grad_texture[t, y1, x0, c] += g * (1.0 - fx) * fy
            grad_texture[t, y1, x1, c] += g * fx * fy
        v00, v01 = texture[t, y0, x0, c], texture[t, y0, x1, c]
        v10, v11 = texture[t, y1, x0, c], texture[t, y1, x1, c]
        gx += g * ((v01 - v00) * (1.0 - fy) + (v11 - v10) * fy)
        gy += g * ((v10 - v00) * (1.0 - fx) + (v11 - v01) * fx)
    if want_grid:
        grad_grid[0, n], grad_grid[1, n] = gx * dpx, gy * dpy


@numba.njit(cache=True, nogil=True)
def directional_forward(normals, directions, scale, out):  # pragma: no cover
    """out (N,) = scale · mean_l clamp(n · d_l, 0, 1) for normals (3,N), unit directions (L,3)."""
    for n in numba.prange(normals.shape[1]):
        total = 0.0
        for light in range(directions.shape[0]):
            cosine = (
                normals[0, n] * directions[light, 0]
                + normals[1, n] * directions[light, 1]
                + normals[2, n] * directions[light, 2]
            )
            total += min(max(cosine, 0.0), 1.0)
        out[n] = scale * total / directions.shape[0]


@numba.njit(cache=True, nogil=True)
def directional_backward(normals, directions, scale, grad_out, grad_normals):  # pragma: no cover
    """grad_normals (3,N) from grad_out (N,): Σ_l d_l over the lights with 0 < n · d_l < 1."""
    for n in numba.prange(normals.shape[1]):
        g = scale * grad_out[n] / directions.shape[0]
        gx, gy, gz = 0.0, 0.0, 0.0
        for light in range(directions.shape[0]):
            cosine = (
                normals[0, n] * directions[light, 0]
                + normals[1, n] * directions[light, 1]
                + normals[2, n] * directions[light, 2]
            )
            if 0.0 < cosine < 1.0:
                gx += directions[light, 0]
                gy += directions[light, 1]
                gz += directions[light, 2]
        grad_normals[0, n], grad_normals[1, n], grad_normals[2, n] = g * gx, g * gy, g * gz


@numba.njit(cache=True, nogil=True)
def unit_forward(vectors, out):  # pragma: no cover
    """out (3,N) = vectors (3,N) / max(|vectors|, 1e-12) per column."""
    for n in numba.prange(vectors.shape[1]):
        length = max(math.sqrt(vectors[0, n] ** 2 + vectors[1, n] ** 2 + vectors[2, n] ** 2), 1e-12)
        for c in range(3):
            out[c, n] = vectors[c, n] / length


@numba.njit(cache=True, nogil=True)
def unit_backward(vectors, grad_out, grad_vectors):  # pragma: no cover
    """grad_vectors (3,N) = (I - u uᵀ) grad_out / |v| (grad_out / 1e-12 where the length is clamped)."""
    for n in numba.prange(vectors.shape[1]):
        length = math.sqrt(vectors[0, n] ** 2 + vectors[1, n] ** 2 + vectors[2, n] ** 2)
        dot = 0.0
        if length >= 1e-12:
            dot = (
                vectors[0, n] * grad_out[0, n]
                + vectors[1, n] * grad_out[1, n]
                + vectors[2, n] * grad_out[2, n]
            ) / (length * length)
        for c in range(3):
            grad_vectors[c, n] = (grad_out[c, n] - vectors[c, n] * dot) / max(length, 1e-12)


class VertexNormalsFunction(torch.autograd.Function):
    """vertices (B,V,3), faces (F,3) long → area-weighted unit vertex normals (B,V,3) (CPU)."""

    @staticmethod
    def forward(ctx, vertices, faces):
        raw = numpy_zeros(vertices)
        out = torch.empty_like(vertices)
        launch(vertex_normals_forward, to_numpy(vertices), to_numpy(faces), raw.numpy(), out.numpy())
        ctx.save_for_backward(vertices, faces, raw)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        vertices, faces, raw = ctx.saved_tensors
        grad_vertices = numpy_zeros(vertices)
        launch(
            vertex_normals_backward,
            to_numpy(vertices),
            to_numpy(faces),
            to_numpy(raw),
            to_numpy(grad_out.to(vertices.dtype)),
            grad_vertices.numpy(),
        )
        return grad_vertices, None


class SHShadingFunction(torch.autograd.Function):
    """normals (3,N), light (B,9,3) (constants folded in), batch (N,) long → shading (3,N) (CPU)."""

    @staticmethod
    def forward(ctx, normals, light, batch):
        out = torch.empty_like(normals)
        launch(sh_forward, to_numpy(normals), to_numpy(light.to(normals.dtype)), to_numpy(batch), out.numpy())
        ctx.save_for_backward(normals, light, batch)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        normals, light, batch = ctx.saved_tensors
        grad_normals = torch.empty_like(normals)
        grad_light = numpy_zeros(normals, tuple(light.shape))
        batch = to_numpy(batch)
        launch(
            sh_backward,
            to_numpy(normals),
            to_numpy(light.to(normals.dtype)),
            batch,
            to_numpy(grad_out.to(normals.dtype)),
            unit_bounds(batch.shape[0], batch),
            grad_normals.numpy(),
            grad_light.numpy(),
        )
        return grad_normals, grad_light.to(light.dtype), None


class UVSampleFunction(torch.autograd.Function):
    """texture (T,C,H,W), grid (2,N), batch (N,) long → (C,N) bilinear samples (CPU)."""

    @staticmethod
    def forward(ctx, texture, grid, batch):
        channels_last = texture.permute(0, 2, 3, 1).contiguous()  # 4 texel reads per point, not 4·C
        out = texture.new_empty(texture.shape[1], grid.shape[1])
        launch(uv_sample_forward, to_numpy(channels_last), to_numpy(grid), to_numpy(batch), out.numpy())
        ctx.save_for_backward(channels_last, grid, batch)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        channels_last, grid, batch = ctx.saved_tensors
        want_texture, want_grid = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_texture = numpy_zeros(channels_last) if want_texture else channels_last.new_empty(0, 0, 0, 0)
        grad_grid = torch.empty_like(grid) if want_grid else grid.new_empty(2, 0)
        grad_out = to_numpy(grad_out.to(channels_last.dtype))
        batch = to_numpy(batch)
        if not want_texture:
            bounds = unit_bounds(batch.shape[0], free=True)
        else:  # one texture per image: one unit per image; a shared texture: one unit
            bounds = unit_bounds(batch.shape[0], batch if channels_last.shape[0] > 1 else None)
        launch(
            uv_sample_backward,
            to_numpy(channels_last),
            to_numpy(grid),
            batch,
            grad_out,
            bounds,
            grad_texture.numpy(),
            grad_grid.numpy(),
        )
        return (
            (grad_texture.permute(0, 3, 1, 2) if want_texture else None),
            (grad_grid if want_grid else None),
            None,
        )


class DirectionalShadingFunction(torch.autograd.Function):
    """normals (3,N), unit directions (L,3), scale → (N,) mean clamped cosine × scale (CPU; white lights)."""

    @staticmethod
    def forward(ctx, normals, directions, scale):
        out = normals.new_empty(normals.shape[1])
        launch(
            directional_forward, to_numpy(normals), to_numpy(directions.to(normals.dtype)), scale, out.numpy()
        )
        ctx.save_for_backward(normals, directions)
        ctx.scale = scale
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        normals, directions = ctx.saved_tensors
        grad_normals = torch.empty_like(normals)
        launch(
            directional_backward,
            to_numpy(normals),
            to_numpy(directions.to(normals.dtype)),
            ctx.scale,
            to_numpy(grad_out.to(normals.dtype)),
            grad_normals.numpy(),
        )
        return grad_normals, None, None


class UnitFunction(torch.autograd.Function):
    """vectors (3,N) → unit vectors (3,N) (length clamped at 1e-12) (CPU)."""

    @staticmethod
    def forward(ctx, vectors):
        out = torch.empty_like(vectors, memory_format=torch.contiguous_format)
        launch(unit_forward, to_numpy(vectors), out.numpy())
        ctx.save_for_backward(vectors)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        (vectors,) = ctx.saved_tensors
        grad_vectors = torch.empty_like(vectors, memory_format=torch.contiguous_format)
        launch(unit_backward, to_numpy(vectors), to_numpy(grad_out.to(vectors.dtype)), grad_vectors.numpy())
        return grad_vectors
