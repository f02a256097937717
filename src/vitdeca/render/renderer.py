"""The mesh renderer: rasterise once, then derive every output from the fragments with small functions."""

from __future__ import annotations

import functools
from functools import cached_property

import torch
from torch import nn

from vitdeca.render.camera import PinholeCamera, weak_perspective_to_screen
from vitdeca.render.rasterize import Fragments, interpolate_packed, rasterize, scatter_packed
from vitdeca.render.shading import sh_shading_packed, shape_shading_packed, vertex_normals
from vitdeca.render.shading_kernels import UnitFunction
from vitdeca.render.uv import UVSpace, sample_uv_packed, uv_to_grid


def _as_created(method):
    """A lazily made image is made under the grad mode the render was made under, autocast off (the
    renderer runs in float32), whatever the context that first reads it."""

    @functools.wraps(method)
    def made(self):
        with torch.set_grad_enabled(self._grad), torch.autocast(self.alpha.device.type, enabled=False):
            return method(self)

    return made


class RenderOutput:
    """Everything one render produces; images are (B,C,H,W), computed from the packed per-pixel values
    on first access and kept (a training step that reads ``image`` pays for no other image).

    image (B,3): albedo · SH shading over the background with ``alpha`` (B,1) (hard coverage mask).
    depth (B,1): screen depth (weak perspective: -s·Z; pinhole: view distance), 0 at background.
    normal_image (B,3): unit model-space normals used for shading (the detail normals when given), 0 at
    background. shading (B,3): SH irradiance. albedo_image (B,3): the UV albedo sampled at each pixel.
    shape_image (B,3): DECA's grey shape render (fixed lights) over the background.
    uv_grid (B,H,W,2): ``grid_sample`` coordinates of each pixel in UV maps (sample any UV map with
    :func:`vitdeca.render.uv.sample_uv_map`). screen_vertices (B,V,3): (x_pix, y_pix, depth).
    """

    def __init__(self, fragments: Fragments, screen_vertices: torch.Tensor, packed: _Packed, background):
        self.fragments, self.screen_vertices = fragments, screen_vertices
        self.alpha = fragments.alpha.to(packed.dtype)
        self.depth = fragments.depth[:, None].to(packed.dtype)
        self._packed, self._background = packed, background
        self._grad = torch.is_grad_enabled()

    def _image(self, values: torch.Tensor) -> torch.Tensor:
        return scatter_packed(values, self.fragments, channels_last=False)

    @cached_property
    @_as_created
    def image(self) -> torch.Tensor:
        packed = self._packed
        return _over(self._image(packed.albedo_values * packed.shading), self.alpha, self._background)

    @cached_property
    @_as_created
    def normal_image(self) -> torch.Tensor:
        return self._image(self._packed.normals)

    @cached_property
    @_as_created
    def shading(self) -> torch.Tensor:
        return self._image(self._packed.shading)

    @cached_property
    @_as_created
    def albedo_image(self) -> torch.Tensor:
        return self._image(self._packed.albedo_values)

    @cached_property
    @_as_created
    def shape_image(self) -> torch.Tensor:
        grey = self._image(shape_shading_packed(self._packed.normals)).expand(-1, 3, -1, -1)
        return _over(grey, self.alpha, self._background)

    @cached_property
    @_as_created
    def uv_grid(self) -> torch.Tensor:
        return scatter_packed(self._packed.grid, self.fragments, channels_last=True)


class _Packed:
    """The per-pixel values of the covered pixels (packed, :class:`Fragments` order) that the images of
    :class:`RenderOutput` are made of, each computed on first use: UV grid (N,2), unit normals (N,3),
    albedo samples and SH shading (3,N)-like per :mod:`vitdeca.render.shading`."""

    def __init__(self, fragments, vertices, faces, face_uvs, albedo, light, detail_normal_image, uv_detail):
        self.fragments, self.vertices, self.faces, self.face_uvs = fragments, vertices, faces, face_uvs
        self.albedo, self.light, self.dtype = albedo, light, vertices.dtype
        self.detail_normal_image, self.uv_detail_normals = detail_normal_image, uv_detail

    @cached_property
    def grid(self) -> torch.Tensor:
        face_grid = uv_to_grid(self.face_uvs.to(self.dtype))[None]  # (1,F,3,2): interpolation is linear
        return interpolate_packed(self.fragments, None, face_grid)

    @cached_property
    def batch(self) -> torch.Tensor:
        plane = self.fragments.face_index.shape[1] * self.fragments.face_index.shape[2]
        return torch.div(self.fragments.pixel_index, plane, rounding_mode="floor")

    @cached_property
    def normals(self) -> torch.Tensor:
        return _packed_normals(
            self.fragments, self.vertices, self.faces, self.grid, self.detail_normal_image,
            self.uv_detail_normals,
        )  # fmt: skip

    @cached_property
    def albedo_values(self) -> torch.Tensor:
        return sample_uv_packed(self.albedo, self.grid, self.batch)

    @cached_property
    def shading(self) -> torch.Tensor:
        return sh_shading_packed(self.normals, self.light, self.batch)


def render_mesh(
    vertices: torch.Tensor,
    screen_vertices: torch.Tensor,
    faces: torch.Tensor,
    face_uvs: torch.Tensor,
    albedo: torch.Tensor,
    light: torch.Tensor,
    height: int,
    width: int,
    *,
    perspective_correct: bool = False,
    cull_backfaces: bool = False,
    detail_normal_image: torch.Tensor | None = None,
    uv_detail_normals: torch.Tensor | None = None,
    background: torch.Tensor | None = None,
) -> RenderOutput:
    """Render model-space ``vertices`` (B,V,3) placed on screen at ``screen_vertices`` (B,V,3).

    faces (F,3); face_uvs (F,3,2) uv of each face corner (v up); albedo (B or 1,3,Hu,Wu) UV map;
    light (B,9,3) SH coefficients; detail normals either per pixel (B,3,H,W) or as a UV map (B,3,Hu,Wu)
    in model space; background (B,3,H,W) or None (black); ``cull_backfaces``: see :func:`rasterize`.
    """
    fragments = rasterize(
        screen_vertices,
        faces,
        height,
        width,
        perspective_correct=perspective_correct,
        cull_backfaces=cull_backfaces,
    )
    return shade(
        fragments,
        vertices,
        screen_vertices,
        faces,
        face_uvs,
        albedo,
        light,
        detail_normal_image=detail_normal_image,
        uv_detail_normals=uv_detail_normals,
        background=background,
    )


def shade(
    fragments: Fragments,
    vertices: torch.Tensor,
    screen_vertices: torch.Tensor,
    faces: torch.Tensor,
    face_uvs: torch.Tensor,
    albedo: torch.Tensor,
    light: torch.Tensor,
    *,
    detail_normal_image: torch.Tensor | None = None,
    uv_detail_normals: torch.Tensor | None = None,
    background: torch.Tensor | None = None,
) -> RenderOutput:
    """The :class:`RenderOutput` of ``fragments`` (arguments as :func:`render_mesh`); its images are made
    when first read."""
    packed = _Packed(
        fragments, vertices, faces, face_uvs, albedo, light, detail_normal_image, uv_detail_normals
    )
    return RenderOutput(fragments, screen_vertices, packed, background)


def _over(premultiplied: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor | None) -> torch.Tensor:
    """Composite an image that is already zero outside ``alpha`` over ``background`` (None: black)."""
    return premultiplied if background is None else premultiplied + background * (1.0 - alpha)


def _packed_normals(
    fragments: Fragments,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    grid: torch.Tensor,
    detail_normal_image: torch.Tensor | None,
    uv_detail_normals: torch.Tensor | None,
) -> torch.Tensor:
    """(N,3) unit normals of the covered pixels: the detail normals if given (per pixel, or a UV map
    sampled at the packed UV ``grid`` (N,2)), else the interpolated area-weighted vertex normals."""
    if uv_detail_normals is not None and detail_normal_image is None:
        plane = fragments.face_index.shape[1] * fragments.face_index.shape[2]
        batch = torch.div(fragments.pixel_index, plane, rounding_mode="floor")
        normals = sample_uv_packed(uv_detail_normals, grid, batch)
    elif detail_normal_image is not None:
        planes = detail_normal_image.transpose(0, 1).reshape(3, -1)  # (3, B·H·W)
        normals = planes.index_select(1, fragments.pixel_index).t()
    else:
        normals = interpolate_packed(fragments, faces, vertex_normals(vertices, faces))
    if normals.device.type == "cpu":
        return UnitFunction.apply(normals.t()).t()
    return normals / (normals * normals).sum(-1, keepdim=True).sqrt().clamp_min(1e-12)


class MeshRenderer(nn.Module):
    """Renders one mesh topology: holds faces, face uvs and the :class:`UVSpace` as buffers.

    faces (F,3) long, uv_coords (T,2) in [0,1] (v up), uv_faces (F,3); image_size int or (H,W);
    uv_size for the UV maps (displacement, detail normals, texture extraction); ``cull_backfaces``: skip
    faces seen from behind in the visibility pass (:func:`rasterize`), for a mesh whose faces point
    outward (:func:`~vitdeca.render.rasterize.faces_point_outward`), where a face seen from behind is
    hidden by a nearer one anyway.
    """

    def __init__(
        self,
        faces: torch.Tensor,
        uv_coords: torch.Tensor,
        uv_faces: torch.Tensor,
        image_size: int | tuple[int, int] = 224,
        uv_size: int = 256,
        cull_backfaces: bool = False,
    ):
        super().__init__()
        self.image_size = _size(image_size)
        self.cull_backfaces = cull_backfaces
        self.register_buffer("faces", faces.long(), persistent=False)
        self.register_buffer("face_uvs", uv_coords.float()[uv_faces.long()], persistent=False)
        self.uv = UVSpace(faces, uv_coords.float(), uv_faces, uv_size)

    def forward(
        self,
        vertices: torch.Tensor,
        camera: torch.Tensor | PinholeCamera,
        albedo: torch.Tensor,
        light: torch.Tensor,
        *,
        detail_normal_image: torch.Tensor | None = None,
        uv_detail_normals: torch.Tensor | None = None,
        background: torch.Tensor | None = None,
        image_size: int | tuple[int, int] | None = None,
    ) -> RenderOutput:
        """vertices (B,V,3) model space; camera (B,3) weak perspective (s,tx,ty) or a PinholeCamera;
        albedo (B,3,Hu,Wu); light (B,9,3) → :class:`RenderOutput`."""
        height, width = self.image_size if image_size is None else _size(image_size)
        screen = self.to_screen(vertices, camera, height, width)
        return render_mesh(
            vertices,
            screen,
            self.faces,
            self.face_uvs,
            albedo,
            light,
            height,
            width,
            perspective_correct=isinstance(camera, PinholeCamera),
            cull_backfaces=self.cull_backfaces,
            detail_normal_image=detail_normal_image,
            uv_detail_normals=uv_detail_normals,
            background=background,
        )

    @staticmethod
    def to_screen(
        vertices: torch.Tensor, camera: torch.Tensor | PinholeCamera, height: int, width: int
    ) -> torch.Tensor:
        """(B,V,3) model space → (B,V,3) screen vertices for either camera type."""
        if isinstance(camera, PinholeCamera):
            return camera.to_screen(vertices, height, width)
        return weak_perspective_to_screen(vertices, camera, height, width)


def render(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uv_coords: torch.Tensor,
    uv_faces: torch.Tensor,
    camera: torch.Tensor | PinholeCamera,
    albedo: torch.Tensor,
    light: torch.Tensor,
    image_size: int | tuple[int, int] = 224,
    **options,
) -> RenderOutput:
    """One-shot functional form of :class:`MeshRenderer` (``options``: detail normals, background)."""
    height, width = _size(image_size)
    screen = MeshRenderer.to_screen(vertices, camera, height, width)
    face_uvs = uv_coords.to(vertices.dtype)[uv_faces.long()]
    return render_mesh(
        vertices,
        screen,
        faces.long(),
        face_uvs,
        albedo,
        light,
        height,
        width,
        perspective_correct=isinstance(camera, PinholeCamera),
        **options,
    )


def _size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    if len(image_size) != 2:
        raise ValueError(f"renderer: image_size must be an int or (H,W), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])
