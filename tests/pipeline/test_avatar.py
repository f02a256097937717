"""``--save avatar``: the GLB read back with an independent parser (and trimesh): morph-target names,
counts, default weights, the geometry they produce, the texture and the video animation."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from vitdeca.arkit import ARKIT_NAMES
from vitdeca.pipeline.animation import write_avatar_glb
from vitdeca.pipeline.batch import parse_save, write_face_outputs

COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def read_glb(path):
    """(JSON, accessor reader) of a GLB, straight from the glTF 2.0 spec's container layout."""
    data = path.read_bytes()
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    n_json, kind = struct.unpack_from("<I4s", data, 12)
    assert kind == b"JSON" and n_json % 4 == 0
    doc = json.loads(data[20 : 20 + n_json])
    n_bin, kind = struct.unpack_from("<I4s", data, 20 + n_json)
    assert kind == b"BIN\0" and 28 + n_json + n_bin == len(data)
    blob = data[28 + n_json :]

    def accessor(index):
        acc = doc["accessors"][index]
        view = doc["bufferViews"][acc["bufferView"]]
        dtype = {5126: np.float32, 5125: np.uint32}[acc["componentType"]]
        width = COMPONENTS[acc["type"]]
        assert view["byteOffset"] % 4 == 0 and view["byteOffset"] + view["byteLength"] <= len(blob)
        values = np.frombuffer(blob, dtype, acc["count"] * width, view["byteOffset"])
        return values.reshape(acc["count"], width)

    return doc, accessor, blob


def ict_face(face_factory, fit_model, topology, arkit_weights, yaw_deg=0.0, seed=0):
    """A FaceResult on the ICT topology: a random shape, the expression of ``arkit_weights`` (52)."""
    g = torch.Generator().manual_seed(seed)
    face = face_factory(0)
    codes = fit_model.neutral_codes(1)
    shape = torch.randn(1, fit_model.head.n_shape, generator=g)
    expression = torch.from_numpy(topology.arkit.expression(arkit_weights))[None]
    pose = torch.tensor([[0.0, np.radians(yaw_deg), 0.0]])
    face.codes = codes.replace(shape=shape, expression=expression, pose=pose)
    zeros = [torch.zeros(1, n) for n in (fit_model.head.n_expression, fit_model.head.n_pose)]
    face.neutral_vertices = fit_model.head(shape, *zeros).vertices[0].numpy()
    face.mesh = topology
    face.texture = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return face


def random_weights(seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0, 1, 52) * (rng.uniform(size=52) < 0.3)
    w[ARKIT_NAMES.index("tongueOut")] = 0.0
    return w.astype(np.float32)


def test_avatar_targets_names_weights_and_geometry(face_factory, fit_model, topology, tmp_path):
    weights = random_weights(0)
    face = ict_face(face_factory, fit_model, topology, weights)
    path = write_avatar_glb(tmp_path / "a_avatar.glb", face)
    doc, accessor, _ = read_glb(path)
    (mesh,) = doc["meshes"]
    (prim,) = mesh["primitives"]
    names = mesh["extras"]["targetNames"]
    assert names == [n for n in ARKIT_NAMES if n != "tongueOut"] and len(prim["targets"]) == 51
    keep = [ARKIT_NAMES.index(n) for n in names]
    assert np.allclose(mesh["weights"], weights[keep], atol=1e-5)
    # the mesh at the default weights is the head model's mesh of the fitted codes (metres = cm / 100)
    base = accessor(prim["attributes"]["POSITION"])
    pairs = zip(mesh["weights"], prim["targets"], strict=True)
    morphed = base + sum(w * accessor(t["POSITION"]) for w, t in pairs)
    expected = fit_model.head(face.codes.shape, face.codes.expression, torch.zeros(1, 3)).vertices[0].numpy()
    uv_split = np.unique(np.stack([topology.faces.reshape(-1), topology.uv_faces.reshape(-1)], 1), axis=0)
    assert np.abs(morphed - expected[uv_split[:, 0]] / 100.0).max() < 1e-5
    assert base.shape[0] == len(uv_split) and np.allclose(base, face.neutral_vertices[uv_split[:, 0]] / 100)
    acc = doc["accessors"][prim["attributes"]["POSITION"]]
    assert np.allclose(acc["min"], base.min(0)) and np.allclose(acc["max"], base.max(0))
    indices = accessor(prim["indices"]).reshape(-1, 3)
    assert len(indices) == len(topology.faces) and indices.max() < len(base)
    assert "animations" not in doc


def test_avatar_reads_in_trimesh_with_texture(face_factory, fit_model, topology, tmp_path):
    import trimesh

    face = ict_face(face_factory, fit_model, topology, random_weights(1))
    path = write_avatar_glb(tmp_path / "b_avatar.glb", face)
    scene = trimesh.load(path, process=False)
    (geometry,) = scene.geometry.values()
    assert len(geometry.faces) == len(topology.faces)
    image = np.asarray(geometry.visual.material.baseColorTexture.convert("RGB"))
    assert np.array_equal(image, face.texture)
    # glTF's v runs down: the texel under a vertex's glTF UV is the texel under its OBJ UV
    doc, accessor, _ = read_glb(path)
    uv = accessor(doc["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"])
    split = np.unique(np.stack([topology.faces.reshape(-1), topology.uv_faces.reshape(-1)], 1), axis=0)
    assert np.allclose(uv[:, 1], 1.0 - topology.uv_coords[split[:, 1], 1])


def test_video_avatar_animation(face_factory, fit_model, topology, tmp_path):
    frames = []
    for k in range(6):
        w = random_weights(10 + k)
        frames.append((1.0 + k / 25.0, ict_face(face_factory, fit_model, topology, w, yaw_deg=5.0 * k)))
    path = write_avatar_glb(tmp_path / "v_avatar.glb", frames[0][1], frames)
    doc, accessor, _ = read_glb(path)
    (anim,) = doc["animations"]
    paths = {c["target"]["path"]: anim["samplers"][c["sampler"]] for c in anim["channels"]}
    assert set(paths) == {"weights", "rotation"}
    times = accessor(paths["weights"]["input"])[:, 0]
    assert np.allclose(times, np.arange(6) / 25.0)
    assert doc["accessors"][paths["weights"]["input"]]["max"][0] == pytest.approx(0.2)
    weights = accessor(paths["weights"]["output"]).reshape(6, 51)
    keep = [i for i, n in enumerate(ARKIT_NAMES) if n != "tongueOut"]
    assert np.allclose(weights, np.stack([f.arkit_weights[keep] for _, f in frames]), atol=1e-6)
    quats = accessor(paths["rotation"]["output"])
    yaws = Rotation.from_quat(quats).as_euler("YXZ", degrees=True)[:, 0]
    assert np.allclose(yaws, 5.0 * np.arange(6), atol=1e-3)


def test_avatar_output_of_the_batch_writer(face_factory, fit_model, topology, tmp_path):
    face = ict_face(face_factory, fit_model, topology, random_weights(2))
    assert "avatar" in parse_save("all") and "avatar" in parse_save("+avatar")
    files = write_face_outputs(face, tmp_path, "img", frozenset({"avatar"}))
    assert files == [tmp_path / "img_avatar.glb"]
    toy = face_factory(0)  # no ARKit semantics: nothing written, nothing raised
    assert write_face_outputs(toy, tmp_path / "toy", "img", frozenset({"avatar"})) == []
