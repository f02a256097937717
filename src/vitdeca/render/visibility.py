"""Which points of a posed mesh the camera sees: a depth test against the z-buffer.

A point (a landmark) is *self-occluded* when the rendered surface at its pixel lies in front of it by
more than a tolerance. The test looks at a small pixel window around the point and calls it visible
if any pixel there is background or no nearer than the point minus the tolerance, so points on the
silhouette (the marched jaw contour) and points under the render's aliasing stay visible; points
behind the nose or the far cheek do not. The tolerance is :data:`TOLERANCE` of the points' own box
size (the mean of their x and y extents), so it does not depend on the head model's units.

Camera: orthographic along the model's z axis (the view of DECA's weak-perspective camera, which
only scales and shifts x and y); screen depth is smaller = nearer, as in :mod:`vitdeca.render.camera`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitdeca.render.camera import weak_perspective_to_screen
from vitdeca.render.rasterize import rasterize

TOLERANCE = 0.1  # depth slack, fraction of the points' box size (≈ 15 mm for a face: lips and lids that
# overlap in depth at a closed mouth or eye are not occlusion; a nose or cheek in front of a point is)
WINDOW = 1  # half-size of the pixel window tested around each point (3×3)


def box_size(points: torch.Tensor) -> torch.Tensor:
    """Mean of the x and y extents of points (B,N,2+) → (B,)."""
    extent = points[..., :2].amax(dim=1) - points[..., :2].amin(dim=1)
    return extent.mean(dim=-1)


def depth_visibility(
    screen_points: torch.Tensor, depth: torch.Tensor, covered: torch.Tensor, tolerance: torch.Tensor
) -> torch.Tensor:
    """(B,N) bool: points (B,N,3) = (x_pix, y_pix, depth) seen in a render with ``depth`` (B,1,H,W)
    (smaller = nearer) where ``covered`` (B,1,H,W) > 0.5, within ``tolerance`` (B,) depth units.

    Points outside the image count as visible (nothing there occludes them)."""
    batch, _, height, width = depth.shape
    pad = WINDOW
    # uncovered pixels and the padding are +inf deep: they never occlude
    far = torch.where(covered > 0.5, depth, torch.full_like(depth, float("inf")))
    deepest = F.max_pool2d(F.pad(far, (pad,) * 4, value=float("inf")), 2 * pad + 1, stride=1)
    col = screen_points[..., 0].detach().floor().long()
    row = screen_points[..., 1].detach().floor().long()
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    flat = (row.clamp(0, height - 1) * width + col.clamp(0, width - 1)).view(batch, -1)
    surface = deepest.view(batch, -1).gather(1, flat)  # the deepest surface in each point's window
    point_depth = screen_points[..., 2].detach()
    return ~inside | (point_depth <= surface + tolerance.view(-1, 1))


def mesh_visibility(
    vertices: torch.Tensor, faces: torch.Tensor, points: torch.Tensor, resolution: int = 128
) -> torch.Tensor:
    """(B,N) bool: which ``points`` (B,N,3) of the posed meshes ``vertices`` (B,V,3) (model space, the
    camera looking down −z) are not hidden by the mesh ``faces`` (F,3).

    Renders the meshes orthographically at ``resolution``² pixels framing the points (with a margin of
    half their box), without gradients."""
    with torch.no_grad():
        vertices, points = vertices.detach().double(), points.detach().double()
        size = box_size(points)  # (B,)
        centre = (points[..., :2].amax(dim=1) + points[..., :2].amin(dim=1)) / 2
        scale = (resolution / (2.0 * size))[:, None]  # pixels per model unit: box + margin fit

        def screen(p: torch.Tensor) -> torch.Tensor:
            x = (p[..., 0] - centre[:, None, 0]) * scale + resolution / 2
            y = (centre[:, None, 1] - p[..., 1]) * scale + resolution / 2
            return torch.stack([x, y, -p[..., 2] * scale], dim=-1)

        fragments = rasterize(screen(vertices), faces, resolution, resolution)
        depth = fragments.depth[:, None]
        covered = fragments.mask[:, None].to(depth.dtype)
        return depth_visibility(screen(points), depth, covered, TOLERANCE * size * scale[:, 0])


def render_visibility(
    points: torch.Tensor, camera: torch.Tensor, depth: torch.Tensor, alpha: torch.Tensor
) -> torch.Tensor:
    """(B,N) bool: model-space ``points`` (B,N,3) seen in an existing weak-perspective render (camera
    (B,3) = (s, tx, ty); ``depth`` and ``alpha`` (B,1,H,W) of :class:`~vitdeca.render.RenderOutput`)."""
    height, width = depth.shape[-2:]
    screen = weak_perspective_to_screen(points.detach(), camera.detach(), height, width)
    tolerance = TOLERANCE * box_size(points.detach()) * camera[:, 0].detach()
    return depth_visibility(screen, depth.detach(), alpha.detach(), tolerance)
