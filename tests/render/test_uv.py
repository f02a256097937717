"""UV space: layout rasterisation, texture orientation, displacement → normals, dense mesh, extraction."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vitdeca.render import MeshRenderer, UVSpace, face_normals, sample_uv_map, sample_uv_packed, uv_to_grid
from vitdeca.render.shading import SH_CONSTANTS

S = 16


def _texel_centres(size=S):
    j = (torch.arange(size) + 0.5) / size
    u = j.expand(size, size)
    v = 1 - j[:, None].expand(size, size)  # row 0 is v = 1
    return u, v


def test_world_to_uv_position_map(grid_mesh):
    vertices, faces, uv = grid_mesh(3, 4, -1.0, -2.0, 1.0, 2.0)
    space = UVSpace(faces, uv, faces, S)
    assert space.mask.all()
    positions = space.world_to_uv(vertices[None].float())
    u, v = _texel_centres()
    torch.testing.assert_close(positions[0, 0], -1 + 2 * u)
    torch.testing.assert_close(positions[0, 1], -2 + 4 * v)
    assert not positions[0, 2].any()


def test_sample_uv_map_hits_texel_centres():
    texture = torch.rand(2, 3, S, S)
    u, v = _texel_centres()
    grid = uv_to_grid(torch.stack([u, v], -1))[None].expand(2, -1, -1, -1)
    torch.testing.assert_close(sample_uv_map(texture, grid), texture)


def test_albedo_top_of_texture_is_top_of_image(grid_mesh):
    vertices, faces, uv = grid_mesh(2, 2, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    renderer = MeshRenderer(faces, uv, faces, image_size=20, uv_size=S)
    albedo = torch.zeros(1, 3, S, S)
    albedo[0, 0, : S // 2] = 1.0  # top rows (v > 0.5) red
    albedo[0, 2, S // 2 :] = 1.0  # bottom rows blue
    light = torch.zeros(1, 9, 3)
    light[0, 0] = 1 / SH_CONSTANTS[0]  # shading = 1
    out = renderer(vertices[None], torch.tensor([[0.8, 0.0, 0.0]]), albedo, light)
    torch.testing.assert_close(out.image[0, :, 4, 10], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out.image[0, :, 15, 10], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(out.albedo_image, out.image)


@pytest.mark.parametrize("mirrored", [False, True])
def test_displacement_to_normals_on_a_ramp(grid_mesh, mirrored):
    vertices, faces, uv = grid_mesh(4, 4, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    if mirrored:
        uv = torch.stack([1 - uv[:, 0], uv[:, 1]], -1)  # the layout is flipped: the grid winding must follow
    space = UVSpace(faces, uv, faces, S)
    flat = space.displacement_to_normals(vertices[None], torch.zeros(1, 1, S, S))
    torch.testing.assert_close(flat[0], torch.tensor([0.0, 0.0, 1.0]).view(3, 1, 1).expand(3, S, S))
    # displacement along +z equal to a·x tilts the surface: normal ∝ (-a, 0, 1)
    slope = 0.7
    x_map = space.world_to_uv(vertices[None])[:, :1]
    ramp = space.displacement_to_normals(vertices[None], slope * x_map)
    expected = F.normalize(torch.tensor([-slope, 0.0, 1.0]), dim=0).view(3, 1, 1).expand(3, S, S)
    torch.testing.assert_close(ramp[0], expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="displacement"):
        space.displacement_to_normals(vertices[None], torch.zeros(1, 1, S, S + 1))


def test_dense_mesh(grid_mesh):
    vertices, faces, uv = grid_mesh(2, 3, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    uv = uv * 0.5 + 0.25  # the layout covers only the middle of the map
    space = UVSpace(faces, uv, faces, S)
    texture = torch.rand(1, 3, S, S)
    dense = space.dense_mesh(vertices[None], torch.full((1, 1, S, S), 0.1), texture=texture)
    n_texels = int(space.mask.sum())
    assert n_texels == (S // 2) ** 2
    assert dense.vertices.shape == (1, n_texels, 3) and dense.colors.shape == (1, n_texels, 3)
    assert dense.faces.min() >= 0 and dense.faces.max() < n_texels
    assert dense.faces.shape[0] == 2 * (S // 2 - 1) ** 2
    torch.testing.assert_close(dense.vertices[0, :, 2], torch.full((n_texels,), 0.1))  # displaced along +z
    assert (face_normals(dense.vertices, dense.faces)[0, :, 2] > 0.99).all()  # wound like the mesh
    torch.testing.assert_close(dense.colors[0], texture.reshape(3, -1)[:, dense.texel_index].t())


def test_extract_texture_recovers_the_albedo(grid_mesh):
    vertices, faces, uv = grid_mesh(2, 2, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    renderer = MeshRenderer(faces, uv, faces, image_size=64, uv_size=S)
    u, v = _texel_centres()
    albedo = torch.stack([u, v, 0.5 + 0.5 * torch.sin(3 * u)])[None]  # smooth, so resampling is near exact
    light = torch.zeros(1, 9, 3)
    light[0, 0] = 1 / SH_CONSTANTS[0]
    out = renderer(vertices[None], torch.tensor([[0.9, 0.0, 0.0]]), albedo, light)
    texture, visible = renderer.uv.extract_texture(out.image, out.screen_vertices, out.fragments)
    assert visible.all()
    inner = (slice(None), slice(None), slice(2, S - 2), slice(2, S - 2))
    torch.testing.assert_close(texture[inner], albedo[inner], atol=0.02, rtol=0)


def test_extract_texture_marks_occluded_texels_invisible(grid_mesh):
    # two parallel quads, the front one (z = +0.5) on the left half of the map, the back one on the right
    quad, faces, uv = grid_mesh(1, 1, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    front, back = quad + torch.tensor([0, 0, 0.5]), quad + torch.tensor([0, 0, -0.5])
    vertices = torch.cat([front, back])[None]
    all_faces = torch.cat([faces, faces + 4])
    all_uv = torch.cat(
        [uv * torch.tensor([0.5, 1.0]), uv * torch.tensor([0.5, 1.0]) + torch.tensor([0.5, 0.0])]
    )
    renderer = MeshRenderer(all_faces, all_uv, all_faces, image_size=32, uv_size=S)
    light = torch.zeros(1, 9, 3)
    light[0, 0] = 1 / SH_CONSTANTS[0]
    out = renderer(vertices, torch.tensor([[0.8, 0.0, 0.0]]), torch.ones(1, 3, S, S), light)
    _, visible = renderer.uv.extract_texture(out.image, out.screen_vertices)
    assert visible[0, 0, :, : S // 2].all()
    assert not visible[0, 0, :, S // 2 :].any()


def test_uv_detail_normals_drive_the_shading(grid_mesh):
    vertices, faces, uv = grid_mesh(1, 1, -1.0, -1.0, 1.0, 1.0, dtype=torch.float32)
    renderer = MeshRenderer(faces, uv, faces, image_size=12, uv_size=S)
    tilted = F.normalize(torch.tensor([0.3, -0.2, 1.0]), dim=0)
    uv_normals = tilted.view(1, 3, 1, 1).expand(1, 3, S, S)
    light = torch.zeros(1, 9, 3)
    light[0, 1] = 1.0  # x band
    out = renderer(
        vertices[None],
        torch.tensor([[0.9, 0.0, 0.0]]),
        torch.ones(1, 3, S, S),
        light,
        uv_detail_normals=uv_normals,
    )
    torch.testing.assert_close(out.normal_image[0, :, 6, 6], tilted)
    torch.testing.assert_close(
        out.shading[0, :, 6, 6], torch.full((3,), SH_CONSTANTS[1] * 0.3 / math.sqrt(1.13))
    )
    per_pixel = renderer(
        vertices[None],
        torch.tensor([[0.9, 0.0, 0.0]]),
        torch.ones(1, 3, S, S),
        light,
        detail_normal_image=out.normal_image,
    )
    torch.testing.assert_close(per_pixel.image, out.image)


def test_bad_uv_map_batch_raises():
    grid = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="batch"):
        sample_uv_packed(torch.rand(2, 3, 4, 4), grid, torch.tensor([0, 1, 2, 2]))
