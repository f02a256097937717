"""Mesh export (OBJ + MTL + PNG, PLY, GLB): files re-load in trimesh with the same geometry and UVs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from vitdeca.io import ObjPart, save_glb, save_obj, save_ply


@pytest.fixture()
def mesh():
    """A unit cube with a UV seam: 8 vertices, 12 triangles, 14 UVs (a cross-shaped unwrap)."""
    box = trimesh.creation.box()
    rng = np.random.default_rng(0)
    uv = rng.random((14, 2))
    uv_faces = rng.integers(0, 14, size=(12, 3))
    texture = rng.integers(0, 256, size=(16, 24, 3), dtype=np.uint8)
    return np.asarray(box.vertices), np.asarray(box.faces), uv, uv_faces, texture


def _corners(loaded, vertices_or_uv):
    return vertices_or_uv[loaded.faces]


def test_obj_with_texture_round_trips(mesh, tmp_path):
    v, f, uv, uvf, tex = mesh
    v_t, f_t = torch.tensor(v, dtype=torch.float32), torch.tensor(f)
    files = save_obj(tmp_path / "m.obj", v_t, f_t, uv_coords=uv, uv_faces=uvf, texture=tex)
    assert [p.name for p in files] == ["m.obj", "m.mtl", "m.png"]
    loaded = trimesh.load(tmp_path / "m.obj", process=False)
    np.testing.assert_allclose(loaded.vertices[loaded.faces], v[f], atol=1e-6)  # same triangle corners
    np.testing.assert_allclose(loaded.visual.uv[loaded.faces], uv[uvf], atol=1e-7)
    np.testing.assert_array_equal(np.asarray(loaded.visual.material.image.convert("RGB")), tex)
    assert "map_Kd m.png" in (tmp_path / "m.mtl").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mtl", "m.obj", "m.png"]  # no temporary files


def test_obj_texture_name_and_a_shared_texture(mesh, tmp_path):
    """The texture is written under ``texture_name``; a second mesh refers to it without writing it."""
    v, f, uv, uvf, tex = mesh
    uvs = {"uv_coords": uv, "uv_faces": uvf}
    first = save_obj(tmp_path / "a.obj", v, f, **uvs, texture=tex, texture_name="skin.png")
    second = save_obj(tmp_path / "b.obj", v * 2, f, **uvs, texture_name="skin.png")
    assert [p.name for p in first] == ["a.obj", "a.mtl", "skin.png"]
    assert [p.name for p in second] == ["b.obj", "b.mtl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mtl", "a.obj", "b.mtl", "b.obj", "skin.png"]
    for name in ("a", "b"):
        assert "map_Kd skin.png\n" in (tmp_path / f"{name}.mtl").read_text()
        loaded = trimesh.load(tmp_path / f"{name}.obj", process=False)
        np.testing.assert_array_equal(np.asarray(loaded.visual.material.image.convert("RGB")), tex)


def test_obj_float_texture_normals_and_per_vertex_uvs(mesh, tmp_path):
    v, f, _, _, _ = mesh
    uv = v[:, :2] * 0.5 + 0.5
    normals = v / np.linalg.norm(v, axis=1, keepdims=True)
    tex = np.full((4, 4, 3), 0.5)
    save_obj(tmp_path / "n.obj", v, f, uv_coords=uv, texture=tex, normals=normals)  # uv_faces default: faces
    text = (tmp_path / "n.obj").read_text()
    face_lines = [line for line in text.splitlines() if line.startswith("f ")]
    assert text.count("\nvn ") == 8 and len(face_lines) == 12
    assert all(len(set(corner.split("/"))) == 1 for line in face_lines for corner in line.split()[1:])
    loaded = trimesh.load(tmp_path / "n.obj", process=False)
    np.testing.assert_allclose(loaded.visual.uv[loaded.faces], uv[f], atol=1e-7)
    assert np.asarray(Image.open(tmp_path / "n.png"))[0, 0].tolist() == [128, 128, 128]


def test_obj_without_uvs(mesh, tmp_path):
    v, f, *_ = mesh
    files = save_obj(tmp_path / "plain.obj", v, f)
    assert files == [tmp_path / "plain.obj"]
    loaded = trimesh.load(tmp_path / "plain.obj", process=False)
    np.testing.assert_allclose(loaded.vertices, v, atol=1e-7)
    np.testing.assert_array_equal(loaded.faces, f)


def obj_objects(path):
    """{object name: (vertices (n,3), uv (m,2), faces (k,3) and uv faces, 0-based global indices,
    material)} of an OBJ, read line by line ("" names the records before any ``o``)."""
    vertices, uvs, objects, name = [], [], {}, ""
    for line in path.read_text().splitlines():
        tag, *rest = line.split()
        if tag == "o":
            name = rest[0]
        entry = objects.setdefault(name, {"v": [], "vt": [], "f": [], "ft": [], "mtl": None})
        if tag in ("v", "vt"):
            (vertices if tag == "v" else uvs).append([float(x) for x in rest])
            entry[tag].append(len(vertices if tag == "v" else uvs) - 1)
        elif tag == "f":
            entry["f"].append([int(c.split("/")[0]) - 1 for c in rest])
            entry["ft"].append([int(c.split("/")[1]) - 1 for c in rest])
        elif tag == "usemtl":
            entry["mtl"] = rest[0]
    return np.array(vertices), np.array(uvs), objects


def test_obj_parts_follow_the_main_mesh(mesh, tmp_path):
    """Parts are further objects: the main mesh keeps its indices, parts share a material per PNG."""
    v, f, uv, uvf, tex = mesh
    other = np.flip(tex, axis=0).copy()
    parts = (
        ObjPart("a", v + 5, f[:4], uv[:6], uvf[:4] % 6, other, "parts.png"),
        ObjPart("b", v[:4] - 5, [[0, 1, 2], [0, 2, 3]], uv[:4], [[0, 1, 2], [0, 2, 3]], None, "parts.png"),
    )
    files = save_obj(
        tmp_path / "m.obj", v, f, uv_coords=uv, uv_faces=uvf, texture=tex, name="main", parts=parts
    )
    assert [p.name for p in files] == ["m.obj", "m.mtl", "m.png", "parts.png"]
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "parts.png")), other)
    mtl = (tmp_path / "m.mtl").read_text()
    assert mtl.count("newmtl ") == 2 and "newmtl parts\n" in mtl and "map_Kd parts.png\n" in mtl
    vertices, uvs, objects = obj_objects(tmp_path / "m.obj")
    assert list(objects) == ["", "main", "a", "b"]  # the header, then one object per mesh
    main, a, b = objects["main"], objects["a"], objects["b"]
    assert main["v"] == list(range(8)) and main["vt"] == list(range(14)) and main["mtl"] == "material0"
    np.testing.assert_array_equal(main["f"], f)
    np.testing.assert_array_equal(main["ft"], uvf)
    np.testing.assert_allclose(vertices[a["f"]], (v + 5)[f[:4]], atol=1e-6)
    np.testing.assert_allclose(uvs[a["ft"]], uv[:6][uvf[:4] % 6], atol=1e-7)
    np.testing.assert_allclose(vertices[b["f"]], (v[:4] - 5)[[[0, 1, 2], [0, 2, 3]]], atol=1e-6)
    assert a["mtl"] == b["mtl"] == "parts" and len(vertices) == 8 + 8 + 4 and len(uvs) == 14 + 6 + 4
    scene = trimesh.load(tmp_path / "m.obj", process=False, group_material=False)  # one per object
    assert sorted(len(g.faces) for g in scene.geometry.values()) == [2, 4, 12]


def test_obj_without_parts_has_no_object_records(mesh, tmp_path):
    v, f, uv, uvf, tex = mesh
    save_obj(tmp_path / "m.obj", v, f, uv_coords=uv, uv_faces=uvf, texture=tex, name="head")
    text = (tmp_path / "m.obj").read_text()
    assert "\no " not in text and text.startswith("# written by vitdeca\nmtllib m.mtl\nusemtl material0\nv ")
    assert (tmp_path / "m.mtl").read_text().count("newmtl") == 1


def test_ply_round_trips_with_colours(mesh, tmp_path):
    v, f, *_ = mesh
    colours = np.linspace(0, 1, 24).reshape(8, 3)
    assert save_ply(tmp_path / "m.ply", v, f, vertex_colors=colours) == [tmp_path / "m.ply"]
    loaded = trimesh.load(tmp_path / "m.ply", process=False)
    np.testing.assert_allclose(loaded.vertices, v, atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, f)
    np.testing.assert_array_equal(
        loaded.visual.vertex_colors[:, :3], np.round(colours * 255).astype(np.uint8)
    )


def test_glb_round_trips_with_texture(mesh, tmp_path):
    v, f, uv, uvf, tex = mesh
    assert save_glb(tmp_path / "m.glb", v, f, uv_coords=uv, uv_faces=uvf, texture=tex) == [tmp_path / "m.glb"]
    scene = trimesh.load(tmp_path / "m.glb", process=False)
    loaded = next(iter(scene.geometry.values()))
    np.testing.assert_allclose(loaded.vertices[loaded.faces], v[f], atol=1e-6)
    np.testing.assert_allclose(loaded.visual.uv[loaded.faces], uv[uvf], atol=1e-6)
    image = loaded.visual.material.baseColorTexture
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), tex)
    assert save_glb(tmp_path / "plain.glb", v, f) == [tmp_path / "plain.glb"]
    plain = next(iter(trimesh.load(tmp_path / "plain.glb", process=False).geometry.values()))
    np.testing.assert_allclose(plain.vertices[plain.faces], v[f], atol=1e-6)


def test_bad_arguments_raise(mesh, tmp_path):
    v, f, uv, uvf, tex = mesh
    with pytest.raises(ValueError, match="faces index"):
        save_obj(tmp_path / "x.obj", v, f + 100)
    with pytest.raises(ValueError, match="texture needs UVs"):
        save_obj(tmp_path / "x.obj", v, f, texture=tex)
    with pytest.raises(ValueError, match="texture needs UVs"):
        save_obj(tmp_path / "x.obj", v, f, texture_name="skin.png")
    with pytest.raises(ValueError, match="uv_faces"):
        save_obj(tmp_path / "x.obj", v, f, uv_coords=uv)  # 14 UVs for 8 vertices: uv_faces needed
    with pytest.raises(ValueError, match="vertices must have shape"):
        save_ply(tmp_path / "x.ply", v[:, :2], f)
    assert not list(tmp_path.iterdir())
