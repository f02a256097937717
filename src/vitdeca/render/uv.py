"""UV space: rasterise a mesh in its UV layout and move attributes between the mesh, UV maps and images.

Convention: uv in [0,1] with v up. A UV map is an image (C,S,S) whose texel (row i, column j) has its
centre at u = (j+0.5)/S, v = 1 - (i+0.5)/S, i.e. row 0 is v = 1 (the top of the texture, as in OBJ/PNG).
For ``grid_sample`` (align_corners=False) the grid coordinate of uv is (2u-1, 1-2v).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vitdeca.render import shading_kernels
from vitdeca.render.kernels import tensor_max
from vitdeca.render.rasterize import Fragments, interpolate, rasterize
from vitdeca.render.shading import unit_vectors, vertex_normals


def uv_to_grid(uv: torch.Tensor) -> torch.Tensor:
    """(...,2) uv in [0,1] (v up) → (...,2) ``grid_sample`` coordinates (x right, y down, [-1,1])."""
    return torch.stack([2.0 * uv[..., 0] - 1.0, 1.0 - 2.0 * uv[..., 1]], dim=-1)


def uv_to_pixels(uv: torch.Tensor, size: int) -> torch.Tensor:
    """(...,2) uv → (...,2) pixel positions (x = u·S, y = (1-v)·S) in an S×S UV map."""
    return torch.stack([uv[..., 0] * size, (1.0 - uv[..., 1]) * size], dim=-1)


def sample_uv_map(uv_map: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Sample a UV map (B,C,Hu,Wu) at ``grid`` (B,H,W,2) (see :func:`uv_to_grid`) → (B,C,H,W).

    Border padding, align_corners=False. A UV map of batch 1 is shared by the whole batch.
    """
    if uv_map.shape[0] == 1 and grid.shape[0] > 1:
        uv_map = uv_map.expand(grid.shape[0], -1, -1, -1)
    return F.grid_sample(uv_map, grid.to(uv_map.dtype), mode=mode, padding_mode="border", align_corners=False)


def sample_uv_packed(uv_map: torch.Tensor, grid: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """:func:`sample_uv_map` at packed points: uv_map (B or 1,C,Hu,Wu), grid (N,2), batch (N,) long (the
    image of each point) → (N,C). numba kernel on CPU; ``grid_sample`` on a padded batch elsewhere."""
    if uv_map.ndim != 4:
        raise ValueError(f"sample_uv_packed: UV map must be (B,C,H,W), got {tuple(uv_map.shape)}")
    if uv_map.shape[0] > 1 and batch.numel() and int(tensor_max(batch)) >= uv_map.shape[0]:
        raise ValueError(f"sample_uv_packed: UV map batch {uv_map.shape[0]} is smaller than the image batch")
    grid = grid.to(uv_map.dtype)
    if uv_map.device.type == "cpu":
        return shading_kernels.UVSampleFunction.apply(uv_map, grid.t().contiguous(), batch).t()
    return sample_uv_packed_torch(uv_map, grid, batch)


def sample_uv_packed_torch(uv_map: torch.Tensor, grid: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Torch version of :func:`sample_uv_packed`: ``grid_sample`` on the points padded per image."""
    n_images = uv_map.shape[0] if uv_map.shape[0] > 1 else int(batch.max()) + 1 if batch.numel() else 1
    counts = torch.bincount(batch, minlength=n_images)
    position = torch.arange(batch.numel(), device=batch.device) - (torch.cumsum(counts, 0) - counts)[batch]
    padded = grid.new_zeros(n_images, 1, int(counts.max()) if batch.numel() else 0, 2)
    padded = padded.index_put((batch, torch.zeros_like(batch), position), grid)
    samples = sample_uv_map(uv_map, padded)  # (B,C,1,max count)
    return samples[batch, :, 0, position]


def rasterize_uv(uv_coords: torch.Tensor, uv_faces: torch.Tensor, size: int) -> Fragments:
    """Rasterise the UV layout (uv_coords (T,2), uv_faces (F,3)) into batch-1 fragments of an S×S map.

    Face indices refer to the mesh faces, so per-vertex 3D attributes interpolate with the 3D ``faces``.
    Overlapping UV islands resolve to the lower face index.
    """
    flat = torch.cat([uv_to_pixels(uv_coords, size), torch.zeros_like(uv_coords[:, :1])], dim=-1)
    return rasterize(flat[None].float(), uv_faces, size, size)


def grid_faces(mask: torch.Tensor, flip: bool = False) -> torch.Tensor:
    """Triangles (M,3) of flat texel indices i*S+j over an S×S texel grid, keeping those whose three
    texels are all set in ``mask`` (S,S) bool. Each quad gives two triangles, clockwise on the map (y down)
    i.e. counter-clockwise in uv (v up); ``flip`` reverses the winding."""
    size = mask.shape[-1]
    idx = torch.arange(size * size, device=mask.device).view(size, size)
    top_left, top_right = idx[:-1, :-1].reshape(-1), idx[:-1, 1:].reshape(-1)
    bottom_left, bottom_right = idx[1:, :-1].reshape(-1), idx[1:, 1:].reshape(-1)
    faces = torch.cat(
        [
            torch.stack([top_left, bottom_left, top_right], dim=-1),
            torch.stack([top_right, bottom_left, bottom_right], dim=-1),
        ]
    )
    faces = faces[mask.reshape(-1)[faces].all(dim=-1)]
    return faces.flip(-1) if flip else faces


@dataclass
class DenseMesh:
    """A dense mesh with one vertex per covered texel: vertices (B,N,3), faces (M,3) long, colors (B,N,3)
    or None, texel_index (N,) flat texel indices i*S+j of the vertices."""

    vertices: torch.Tensor
    faces: torch.Tensor
    colors: torch.Tensor | None
    texel_index: torch.Tensor


class UVSpace(nn.Module):
    """A mesh's UV layout rasterised once into an S×S map; holds the fragments as buffers.

    faces (F,3) long, uv_coords (T,2) in [0,1] with v up, uv_faces (F,3) long, uv_size S.
    ``mask`` (1,1,S,S) marks texels covered by the layout.
    """

    def __init__(
        self, faces: torch.Tensor, uv_coords: torch.Tensor, uv_faces: torch.Tensor, uv_size: int = 256
    ):
        super().__init__()
        if uv_faces.shape != faces.shape:
            raise ValueError(
                f"UVSpace: uv_faces {tuple(uv_faces.shape)} must match faces {tuple(faces.shape)}"
            )
        self.uv_size = int(uv_size)
        fragments = rasterize_uv(uv_coords, uv_faces, self.uv_size)
        for name in ("face_index", "pixels", "pixel_bary"):
            self.register_buffer(f"_{name}", getattr(fragments, name), persistent=False)
        self.register_buffer("faces", faces.long(), persistent=False)
        self.register_buffer("mask", fragments.alpha, persistent=False)
        # the texel grid is wound like the mesh: compare with the layout's majority orientation on the map
        corners = uv_to_pixels(uv_coords, self.uv_size)[uv_faces]
        edge1, edge2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        signed = (edge1[:, 0] * edge2[:, 1] - edge1[:, 1] * edge2[:, 0]).sum()
        dense = grid_faces(fragments.mask[0], flip=bool(signed > 0))
        texels = torch.nonzero(fragments.mask[0].reshape(-1)).squeeze(1)
        compact = torch.full((self.uv_size**2,), -1, dtype=torch.long, device=texels.device)
        compact[texels] = torch.arange(texels.numel(), device=texels.device)
        self.register_buffer("texel_index", texels, persistent=False)
        self.register_buffer("grid_faces", dense, persistent=False)
        self.register_buffer("dense_faces", compact[dense], persistent=False)

    @property
    def fragments(self) -> Fragments:
        """Batch-1 fragments of the UV layout (face_index (1,S,S) etc.)."""
        depth = self._pixel_bary.new_zeros(self._face_index.shape)
        return Fragments(self._face_index, depth, self._pixels, self._pixel_bary)

    def world_to_uv(self, attributes: torch.Tensor) -> torch.Tensor:
        """Per-vertex attributes (B,V,C) (positions, normals, screen positions...) → UV maps (B,C,S,S)."""
        return interpolate(self.fragments, self.faces, attributes)

    def detail_positions(
        self, vertices: torch.Tensor, displacement: torch.Tensor, normals: torch.Tensor | None = None
    ) -> torch.Tensor:
        """UV position map displaced along the unit normal: (B,V,3), displacement (B,1,S,S) → (B,3,S,S).

        normals (B,V,3) default to :func:`vertex_normals` of ``vertices``.
        """
        self._check_map(displacement, "displacement")
        return self._displaced(vertices, displacement, self._uv_unit_normals(vertices, normals))

    def _displaced(self, vertices: torch.Tensor, displacement: torch.Tensor, uv_normals: torch.Tensor):
        """:meth:`detail_positions` from the unit normal map ``uv_normals`` (B,3,S,S) already made."""
        return self.world_to_uv(vertices) + displacement * uv_normals

    def _uv_unit_normals(self, vertices: torch.Tensor, normals: torch.Tensor | None) -> torch.Tensor:
        """(B,3,S,S) unit normal map of ``normals`` (B,V,3) (default: :func:`vertex_normals`)."""
        if normals is None:
            normals = vertex_normals(vertices, self.faces)
        return unit_vectors(self.world_to_uv(normals), dim=1)

    def displacement_to_normals(
        self,
        vertices: torch.Tensor,
        displacement: torch.Tensor,
        normals: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """DECA's displacement2normal: detail normal map (B,3,S,S) from a displacement map (B,1,S,S).

        Texel positions = UV position map + displacement · UV normal map; normals are the area-weighted
        vertex normals of the texel grid mesh. Outside ``mask`` (B or 1,1,S,S; default the layout mask)
        and at texels without a grid triangle, the coarse (interpolated) normals are kept.
        """
        self._check_map(displacement, "displacement")
        batch = vertices.shape[0]
        coarse = self._uv_unit_normals(vertices, normals)
        dense = self._displaced(vertices, displacement, coarse)  # detail_positions, normals made once
        dense = dense.permute(0, 2, 3, 1).reshape(batch, -1, 3)
        detail = vertex_normals(dense, self.grid_faces)
        detail = detail.reshape(batch, self.uv_size, self.uv_size, 3).permute(0, 3, 1, 2)
        has_normal = (detail.detach().abs().sum(1, keepdim=True) > 0).to(detail.dtype)
        weight = has_normal * (self.mask if mask is None else mask).to(detail.dtype)
        return detail * weight + coarse * (1.0 - weight)

    def dense_mesh(
        self,
        vertices: torch.Tensor,
        displacement: torch.Tensor,
        normals: torch.Tensor | None = None,
        texture: torch.Tensor | None = None,
    ) -> DenseMesh:
        """The detail mesh (DECA's ``_detail.obj``): one vertex per covered texel, displaced along the
        normal, grid triangles between covered neighbours; colours from ``texture`` (B,3,S,S) if given."""
        batch = vertices.shape[0]
        dense = self.detail_positions(vertices, displacement, normals).reshape(batch, 3, -1)
        colors = None
        if texture is not None:
            self._check_map(texture, "texture")
            colors = texture.reshape(batch, texture.shape[1], -1)[:, :, self.texel_index].transpose(1, 2)
        return DenseMesh(
            dense[:, :, self.texel_index].transpose(1, 2), self.dense_faces, colors, self.texel_index
        )

    def extract_texture(
        self,
        image: torch.Tensor,
        screen_vertices: torch.Tensor,
        image_fragments: Fragments | None = None,
        depth_tolerance: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """DECA's ``--extractTex``: sample ``image`` (B,C,H,W) at each texel's projected position.

        screen_vertices (B,V,3) = (x_pix, y_pix, depth) as given to :func:`rasterize`; image_fragments are
        the image's fragments (computed if None). A texel is visible when it lies in the layout, projects
        inside the image, and its depth is within ``depth_tolerance`` of the z-buffer there (default: 2% of
        the mesh's depth range plus 1e-5·(1 + max |depth|)).
        Returns (texture (B,C,S,S), zero where invisible; visibility (B,1,S,S))."""
        height, width = image.shape[-2:]
        if image_fragments is None:
            image_fragments = rasterize(screen_vertices, self.faces, height, width)
        uv_screen = self.world_to_uv(screen_vertices)  # (B,3,S,S)
        x, y, depth = uv_screen.unbind(1)
        grid = torch.stack([2.0 * x / width - 1.0, 2.0 * y / height - 1.0], dim=-1)
        texture = F.grid_sample(image, grid.to(image.dtype), mode="bilinear", align_corners=False)
        col, row = torch.floor(x).long(), torch.floor(y).long()
        inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
        flat = row.clamp(0, height - 1) * width + col.clamp(0, width - 1)
        zbuf = torch.where(
            image_fragments.mask, image_fragments.depth, torch.full_like(image_fragments.depth, 1e30)
        )
        zbuf = torch.gather(
            zbuf.reshape(zbuf.shape[0], -1).expand(x.shape[0], -1), 1, flat.reshape(x.shape[0], -1)
        )
        if depth_tolerance is None:
            z = screen_vertices[..., 2]
            span = z.amax(1) - z.amin(1)
            tolerance = (0.02 * span + 1e-5 * (1.0 + z.abs().amax(1))).reshape(-1, 1, 1)
        else:
            tolerance = depth_tolerance
        visible = inside & (depth <= zbuf.view_as(depth) + tolerance) & (self.mask[:, 0] > 0)
        visible = visible[:, None].to(image.dtype)
        return texture * visible, visible

    def _check_map(self, uv_map: torch.Tensor, name: str) -> None:
        if uv_map.ndim != 4 or uv_map.shape[-2:] != (self.uv_size, self.uv_size):
            raise ValueError(
                f"UVSpace: {name} must be (B,C,{self.uv_size},{self.uv_size}), got {tuple(uv_map.shape)}"
            )
