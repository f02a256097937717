"""Cameras: the one place where model space, NDC and image pixels are converted into each other.

Conventions (stated once here, relied upon everywhere):

* Model space: right-handed, y up, the face looking along +z (towards the viewer), so a point nearer to
  the viewer has a *larger* model z.
* NDC: x right, y up, the image spanning [-1, 1] along *each* axis (also for non-square images, so one
  NDC unit is W/2 pixels horizontally and H/2 pixels vertically).
* Pixels: x right, y down; pixel (row i, column j) covers [j, j+1) x [i, i+1) and has its centre at
  (j + 0.5, i + 0.5). ``ndc_to_pixels`` is the only function that flips y.
* Screen vertices handed to the rasteriser are (x_pix, y_pix, depth) with depth smaller = nearer.
  Weak perspective: depth = -z_ndc = -s * Z. Pinhole: depth = distance along the viewing axis (> 0 in
  front of the camera).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def ndc_to_pixels(xy_ndc: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(...,2) NDC (x right, y up, [-1,1]) → (...,2) pixels (x right, y down, centres at j+0.5).

    x_pix = (x_ndc + 1) * W / 2,  y_pix = (1 - y_ndc) * H / 2.
    """
    x = (xy_ndc[..., 0] + 1.0) * (width / 2.0)
    y = (1.0 - xy_ndc[..., 1]) * (height / 2.0)
    return torch.stack([x, y], dim=-1)


def pixels_to_ndc(xy_pix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(...,2) pixels → (...,2) NDC; the inverse of :func:`ndc_to_pixels`."""
    x = xy_pix[..., 0] * (2.0 / width) - 1.0
    y = 1.0 - xy_pix[..., 1] * (2.0 / height)
    return torch.stack([x, y], dim=-1)


def weak_perspective(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """DECA's orthographic camera: (B,N,3) model points, camera (B,3) = (s, tx, ty) → (B,N,3) NDC.

    x_ndc = s * (X + tx), y_ndc = s * (Y + ty), z_ndc = s * Z.
    """
    _check_camera(points, camera)
    scale = camera[:, None, 0:1]
    xy = scale * (points[..., :2] + camera[:, None, 1:3])
    return torch.cat([xy, scale * points[..., 2:3]], dim=-1)


def weak_perspective_to_screen(
    points: torch.Tensor, camera: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """(B,N,3) model points, camera (B,3) → (B,N,3) screen vertices (x_pix, y_pix, depth = -z_ndc)."""
    ndc = weak_perspective(points, camera)
    return torch.cat([ndc_to_pixels(ndc[..., :2], height, width), -ndc[..., 2:3]], dim=-1)


def project_points(points: torch.Tensor, camera: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B,N,3) model points (e.g. 3D landmarks), camera (B,3) → (B,N,2) pixel positions."""
    return ndc_to_pixels(weak_perspective(points, camera)[..., :2], height, width)


def perspective_to_screen(
    points: torch.Tensor,
    focal: torch.Tensor | float,
    height: int,
    width: int,
    principal: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pinhole projection of camera-space points (B,N,3) → (B,N,3) screen vertices.

    The camera sits at the origin looking along -z with y up (so a model placed at negative z faces it).
    focal: float or (B,) in pixels; principal: (B,2) pixels, default the image centre (W/2, H/2).
    x_pix = cx + f * X / d, y_pix = cy - f * Y / d, depth d = -Z. Points with d <= 0 are behind the
    camera: their x/y are meaningless and the rasteriser drops their faces (``near`` > 0).
    """
    focal_t = torch.as_tensor(focal, dtype=points.dtype, device=points.device).reshape(-1, 1)
    if principal is None:
        principal = points.new_tensor([width / 2.0, height / 2.0]).expand(points.shape[0], 2)
    depth = -points[..., 2]
    safe = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
    x = principal[:, None, 0] + focal_t * points[..., 0] / safe
    y = principal[:, None, 1] - focal_t * points[..., 1] / safe
    return torch.stack([x, y, depth], dim=-1)


@dataclass
class PinholeCamera:
    """A perspective camera: model → camera space by ``rotation`` (B,3,3) and ``translation`` (B,3).

    X_cam = R X + t, then :func:`perspective_to_screen`. ``focal`` is in pixels (float or (B,)),
    ``principal`` (B,2) in pixels (None = image centre). Default R = identity, t = 0.
    """

    focal: torch.Tensor | float
    translation: torch.Tensor | None = None
    rotation: torch.Tensor | None = None
    principal: torch.Tensor | None = None

    def to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(B,N,3) model points → (B,N,3) camera-space points."""
        if self.rotation is not None:
            points = points @ self.rotation.transpose(1, 2)
        if self.translation is not None:
            points = points + self.translation[:, None, :]
        return points

    def to_screen(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B,N,3) model points → (B,N,3) screen vertices (x_pix, y_pix, depth)."""
        return perspective_to_screen(self.to_camera(points), self.focal, height, width, self.principal)

    def project(self, points: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(B,N,3) model points → (B,N,2) pixel positions."""
        return self.to_screen(points, height, width)[..., :2]


def _check_camera(points: torch.Tensor, camera: torch.Tensor) -> None:
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"camera: points must be (B,N,3), got {tuple(points.shape)}")
    if camera.ndim != 2 or camera.shape[-1] != 3 or camera.shape[0] not in (1, points.shape[0]):
        raise ValueError(
            f"camera: weak-perspective camera must be (B,3) = (s,tx,ty), got {tuple(camera.shape)}"
        )
