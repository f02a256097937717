"""Differentiable mesh rendering with no compiler and no GPU: numba z-buffer + torch shading.

Conventions live in :mod:`vitdeca.render.camera` (pixels, NDC, depth) and :mod:`vitdeca.render.uv`
(uv with v up). See docs/render.md.
"""

from vitdeca.render.camera import (
    PinholeCamera,
    ndc_to_pixels,
    perspective_to_screen,
    pixels_to_ndc,
    project_points,
    weak_perspective,
    weak_perspective_to_screen,
)
from vitdeca.render.rasterize import (
    Fragments,
    interpolate,
    interpolate_packed,
    rasterize,
    scatter_packed,
)
from vitdeca.render.renderer import MeshRenderer, RenderOutput, render, render_mesh, shade
from vitdeca.render.shading import (
    directional_shading_image,
    face_normals,
    sh_basis,
    sh_shading,
    sh_shading_image,
    sh_shading_packed,
    shape_shading_image,
    shape_shading_packed,
    vertex_normals,
)
from vitdeca.render.uv import (
    DenseMesh,
    UVSpace,
    grid_faces,
    rasterize_uv,
    sample_uv_map,
    sample_uv_packed,
    uv_to_grid,
    uv_to_pixels,
)

__all__ = [
    "DenseMesh",
    "Fragments",
    "MeshRenderer",
    "PinholeCamera",
    "RenderOutput",
    "UVSpace",
    "directional_shading_image",
    "face_normals",
    "grid_faces",
    "interpolate",
    "interpolate_packed",
    "ndc_to_pixels",
    "perspective_to_screen",
    "pixels_to_ndc",
    "project_points",
    "rasterize",
    "rasterize_uv",
    "render",
    "render_mesh",
    "sample_uv_map",
    "sample_uv_packed",
    "scatter_packed",
    "sh_basis",
    "sh_shading",
    "sh_shading_image",
    "sh_shading_packed",
    "shade",
    "shape_shading_image",
    "shape_shading_packed",
    "uv_to_grid",
    "uv_to_pixels",
    "vertex_normals",
    "weak_perspective",
    "weak_perspective_to_screen",
]
