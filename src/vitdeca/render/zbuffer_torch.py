"""The visibility pass (z-buffer) as torch operations, so that it runs on the device of the vertices.

Same rule as the numba kernel :func:`vitdeca.render.kernels.zbuffer`, evaluated with the same float64
expressions in the same order (so the face index is identical, bit for bit, on any IEEE device):

1. per face and batch item: signed area, the culling / near / zero-area tests and the bounding box of
   pixel centres (rows and columns whose centre ``k + 0.5`` lies inside the triangle's extent);
2. every (face, pixel) pair of those boxes is a candidate; a candidate is covered when its three edge
   functions are >= 0, and its depth is interpolated from the screen barycentrics;
3. per pixel the smallest depth wins (``scatter_reduce`` "amin"), and among the candidates at exactly that
   depth the lowest face index (a second "amin"): the numba kernel's strict ``<`` over faces in index order.

Candidates are enumerated in chunks of at most ``chunk`` pairs (a candidate's pair is found by a binary
search over the cumulative box sizes), so memory stays bounded however large the triangles are; with
more than one chunk the depths are recomputed for the tie pass instead of kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vitdeca.render.kernels import MIN_AREA

# candidate (pixel, face) pairs per chunk: about 250 bytes each while a chunk is processed
CHUNK_CUDA = 1 << 22
CHUNK_OTHER = 1 << 18


@dataclass(frozen=True)
class ZBufferSettings:
    """What a visibility pass needs besides the geometry (both backends): the image size, whether depth
    is interpolated perspectively (1/z), whether back faces are culled, and ``near``: faces with a vertex
    depth below it are dropped (None: no limit)."""

    height: int
    width: int
    perspective: bool = False
    cull: bool = False
    near: float | None = None


def zbuffer_torch(
    vertices: torch.Tensor, faces: torch.Tensor, settings: ZBufferSettings, chunk: int | None = None
) -> torch.Tensor:
    """(B,H,W) long face index of the nearest face per pixel centre (-1: none).

    vertices (B,V,3) screen (x_pix, y_pix, depth), faces (F,3) long, both on the same device; ``chunk``:
    candidate pairs per chunk (default :data:`CHUNK_CUDA` on CUDA, :data:`CHUNK_OTHER` elsewhere).
    """
    height, width, perspective = settings.height, settings.width, settings.perspective
    batch, device = vertices.shape[0], vertices.device
    face_index = torch.full((batch * height * width,), -1, dtype=torch.long, device=device)
    if not faces.shape[0] or not batch:
        return face_index.view(batch, height, width)
    chunk = chunk or (CHUNK_CUDA if device.type == "cuda" else CHUNK_OTHER)
    boxes = _face_boxes(vertices, faces.to(device, torch.long), settings)
    if boxes is None:
        return face_index.view(batch, height, width)
    total = int(boxes["end"][-1])
    ranges = [(s, min(s + chunk, total)) for s in range(0, total, chunk)]
    zbuf = torch.full((batch * height * width,), float("inf"), dtype=torch.float64, device=device)
    kept = []
    for start, stop in ranges:
        pixel, depth, face = _covered(boxes, start, stop, width, perspective)
        zbuf.scatter_reduce_(0, pixel, depth, "amin")
        if len(ranges) == 1:
            kept.append((pixel, depth, face))
    n_faces = faces.shape[0]
    best = torch.full_like(face_index, n_faces)
    for start, stop in ranges:
        pixel, depth, face = kept.pop() if kept else _covered(boxes, start, stop, width, perspective)
        winner = depth == zbuf.index_select(0, pixel)
        best.scatter_reduce_(0, pixel[winner], face[winner], "amin")
    face_index = torch.where(best < n_faces, best, face_index)
    return face_index.view(batch, height, width)


def _pixel_range(lo: torch.Tensor, hi: torch.Tensor, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index k in [0, stop) whose centre k + 0.5 lies in [lo, hi] (last < first: none);
    the clamping of :func:`vitdeca.render.kernels._pixel_range` keeps huge coordinates finite."""
    first = (lo - 0.5).clamp(-1.0, stop + 1.0).ceil().long().clamp_min(0)
    last = (hi - 0.5).clamp(-1.0, stop + 1.0).floor().long().clamp_max(stop - 1)
    return first, last


def _face_boxes(
    vertices: torch.Tensor, faces: torch.Tensor, settings: ZBufferSettings
) -> dict[str, torch.Tensor] | None:
    """Per (batch item, face) pair with a non-empty box: corner data and box geometry (None: no pairs).

    ``data`` (P,11) float64: x0,x1,x2, y0,y1,y2, z0,z1,z2, the area's sign and |area|; ``face``, ``base``
    (flat index of the item's first pixel), ``row``, ``col`` (first pixel of the box), ``cols`` (box width),
    ``begin``/``end`` (the pair's candidates in the cumulative enumeration), all (P,) long.
    """
    height, width, near = settings.height, settings.width, settings.near
    n_faces = faces.shape[0]
    tri = vertices.detach().to(torch.float64)[:, faces]  # (B,F,corner,coordinate)
    (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = (tri[:, :, k].unbind(-1) for k in range(3))
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    valid = area.abs() >= MIN_AREA
    if settings.cull:
        valid &= area <= 0.0
    if near is not None:
        valid &= torch.minimum(torch.minimum(z0, z1), z2) >= near
    row, row_last = _pixel_range(
        torch.minimum(torch.minimum(y0, y1), y2), torch.maximum(torch.maximum(y0, y1), y2), height
    )
    col, col_last = _pixel_range(
        torch.minimum(torch.minimum(x0, x1), x2), torch.maximum(torch.maximum(x0, x1), x2), width
    )
    rows, cols = (row_last - row + 1).clamp_min(0), (col_last - col + 1).clamp_min(0)
    count = torch.where(valid, rows * cols, 0).reshape(-1)
    pair = torch.nonzero(count).squeeze(1)
    if not pair.numel():
        return None
    count = count[pair]
    end = torch.cumsum(count, 0)
    sign = torch.where(area > 0.0, 1.0, -1.0)
    data = torch.stack([x0, x1, x2, y0, y1, y2, z0, z1, z2, sign, area.abs()], -1).reshape(-1, 11)[pair]
    return {
        "data": data,
        "face": pair % n_faces,
        "base": torch.div(pair, n_faces, rounding_mode="floor") * (height * width),
        "row": row.reshape(-1)[pair],
        "col": col.reshape(-1)[pair],
        "cols": cols.reshape(-1)[pair],
        "begin": end - count,
        "end": end,
    }


def _covered(
    boxes: dict[str, torch.Tensor], start: int, stop: int, width: int, perspective: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates ``start``..``stop-1`` → the covered ones' flat pixel index, float64 depth and face (M,)."""
    device = boxes["end"].device
    k = torch.arange(start, stop, device=device)
    p = torch.searchsorted(boxes["end"], k, right=True)  # the pair of each candidate
    local, cols = k - boxes["begin"][p], boxes["cols"][p]
    i = boxes["row"][p] + torch.div(local, cols, rounding_mode="floor")
    j = boxes["col"][p] + local % cols
    x0, x1, x2, y0, y1, y2, z0, z1, z2, sign, abs_area = boxes["data"][p].unbind(1)
    px, py = j.to(torch.float64) + 0.5, i.to(torch.float64) + 0.5
    # the numba kernel's expressions, in its order: identical rounding
    e0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * sign
    e1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * sign
    e2 = ((x0 - px) * (y1 - py) - (x1 - px) * (y0 - py)) * sign
    w0, w1, w2 = e0 / abs_area, e1 / abs_area, e2 / abs_area
    if perspective:
        depth = 1.0 / (w0 / z0 + w1 / z1 + w2 / z2)
    else:
        depth = w0 * z0 + w1 * z1 + w2 * z2
    # covered, and nearer than the empty buffer's +inf (NaN and +inf depths never win in the kernel)
    keep = (e0 >= 0.0) & (e1 >= 0.0) & (e2 >= 0.0) & (depth < float("inf"))
    pixel = boxes["base"][p] + i * width + j
    return pixel[keep], depth[keep], boxes["face"][p][keep]
