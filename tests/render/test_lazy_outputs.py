"""RenderOutput makes each image on first read: what nobody reads is never computed, and an image read
later, in another grad mode or under autocast, is the one the render would have made at once."""

from __future__ import annotations

import torch

from vitdeca.render import MeshRenderer
from vitdeca.render import renderer as renderer_module

IMAGES = ("image", "normal_image", "shading", "albedo_image", "shape_image", "uv_grid")


def _render(uv_sphere, background=None):
    vertices, faces, uv = uv_sphere(8, 12)
    renderer = MeshRenderer(faces, uv, faces, image_size=32, uv_size=16)
    torch.manual_seed(0)
    vertices = vertices[None].repeat(2, 1, 1).requires_grad_(True)
    camera = torch.tensor([[0.8, 0.0, 0.0], [0.6, 0.1, -0.1]])
    albedo = torch.rand(2, 3, 16, 16, requires_grad=True)
    light = torch.zeros(2, 9, 3)
    light[:, 0] = 2.0
    return renderer(vertices, camera, albedo, light, background=background), (vertices, albedo)


def test_reading_the_image_computes_no_other_image(uv_sphere, monkeypatch):
    calls = []
    real = renderer_module.shape_shading_packed
    monkeypatch.setattr(renderer_module, "shape_shading_packed", lambda n: calls.append(1) or real(n))
    out, (vertices, albedo) = _render(uv_sphere)
    out.image.sum().backward()
    assert vertices.grad is not None and albedo.grad is not None
    assert not calls and not {"normal_image", "shading", "albedo_image", "shape_image", "uv_grid"} & set(
        vars(out)
    )
    assert out.shape_image.shape == (2, 3, 32, 32) and calls == [1]


def test_images_read_late_equal_images_read_at_once(uv_sphere):
    background = torch.rand(2, 3, 32, 32)
    early, _ = _render(uv_sphere, background)
    first = {name: getattr(early, name) for name in IMAGES}
    late, _ = _render(uv_sphere, background)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # a context that reads them later
        for name in IMAGES:
            image = getattr(late, name)
            assert image.dtype == torch.float32 and torch.equal(image, first[name]), name
            assert image.requires_grad == first[name].requires_grad, name  # made under the render's grad mode
    assert first["image"].requires_grad


def test_faces_point_outward_tells_the_winding(uv_sphere):
    from vitdeca.render.rasterize import faces_point_outward

    vertices, faces, _ = uv_sphere(8, 12)
    assert faces_point_outward(vertices, faces)
    assert not faces_point_outward(vertices, faces.flip(1))  # reversed winding: culling would hide it


def test_culling_back_faces_keeps_an_outward_mesh_s_image(uv_sphere):
    """On a closed outward mesh the nearest face is never seen from behind: the culled render is the same."""
    vertices, faces, uv = uv_sphere(8, 12)
    camera = torch.tensor([[0.8, 0.1, 0.0]])
    albedo, light = torch.rand(1, 3, 16, 16), torch.zeros(1, 9, 3)
    light[:, 0] = 2.0
    images = [
        MeshRenderer(faces, uv, faces, 32, 16, cull_backfaces=cull)(vertices[None], camera, albedo, light)
        for cull in (False, True)
    ]
    assert torch.equal(images[0].fragments.face_index, images[1].fragments.face_index)
    assert torch.equal(images[0].image, images[1].image)
