"""A small glTF 2.0 binary (GLB) writer for what trimesh's exporter cannot write: morph targets with
names and default weights, and animations of the weights and of a node's rotation.

Layout written (glTF 2.0 spec, section 4): one buffer (the GLB's BIN chunk), one mesh with one triangle
primitive (``POSITION``, ``NORMAL``, ``TEXCOORD_0``, ``indices``, one ``targets`` entry of ``POSITION``
deltas per morph target), ``mesh.weights`` (the default weights), ``mesh.extras.targetNames`` (the
names Blender turns into shape keys and three.js into ``morphTargetDictionary``), a base-colour PNG
texture, one node per mesh (optionally several meshes: e.g. eyeballs, as children of the head's node),
and optionally one animation
whose samplers drive ``weights`` and ``rotation`` (LINEAR interpolation). Units are metres; y up; the
face looks along +z (glTF's front).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitdeca.storage import atomic_write_bytes

_FLOAT, _UINT32 = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}


@dataclass
class GltfMesh:
    """One mesh node: ``positions`` (N,3) metres, ``indices`` (F,3), ``uvs`` (N,2) glTF convention (v
    down) or None, ``normals`` (N,3) or None, ``targets`` (K,N,3) position deltas with ``target_names``
    (K) and default ``weights`` (K,), ``texture_png`` (PNG bytes) or None, ``rotation`` (4,) quaternion
    x,y,z,w of the node, ``translation`` (3,) metres, ``parent``: index of the mesh whose node this one
    is a child of (it then moves with it, e.g. eyeballs with the head), None for a scene root."""

    name: str
    positions: np.ndarray
    indices: np.ndarray
    uvs: np.ndarray | None = None
    normals: np.ndarray | None = None
    targets: np.ndarray | None = None
    target_names: list[str] = field(default_factory=list)
    weights: np.ndarray | None = None
    texture_png: bytes | None = None
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    rotation: np.ndarray | None = None
    translation: np.ndarray | None = None
    parent: int | None = None


@dataclass
class GltfAnimation:
    """Keyframes at ``times`` (T,) seconds: ``weights`` {node index: (T,K)} and ``rotations`` {node
    index: (T,4) quaternions x,y,z,w}."""

    name: str
    times: np.ndarray
    weights: dict[int, np.ndarray] = field(default_factory=dict)
    rotations: dict[int, np.ndarray] = field(default_factory=dict)


class _Builder:
    """Accumulates the BIN chunk and the JSON's bufferViews/accessors."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []
        self.textures: dict[bytes, int] = {}  # PNG bytes → texture index (meshes share equal images)

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob += b"\0" * (-len(self.blob) % 4)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.blob += data
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, target: int | None = None, bounds: bool = False) -> int:
        """An accessor of float32 (…,C) or uint32 indices; ``bounds`` adds min/max (POSITION, times)."""
        indices = target == _ELEMENT_ARRAY_BUFFER
        data = np.ascontiguousarray(array, np.uint32 if indices else np.float32)
        width = 1 if indices or data.ndim == 1 else data.shape[-1]
        entry = {
            "bufferView": self.view(data.tobytes(), target),
            "componentType": _UINT32 if indices else _FLOAT,
            "count": int(data.size // width),
            "type": _TYPES[width],
        }
        if bounds:
            flat = data.reshape(-1, width)
            entry["min"], entry["max"] = flat.min(0).tolist(), flat.max(0).tolist()
        self.accessors.append(entry)
        return len(self.accessors) - 1


def write_glb(path: str | Path, meshes: list[GltfMesh], animation: GltfAnimation | None = None) -> Path:
    """Write ``meshes`` (one node each, in order) and ``animation`` as a GLB file, atomically."""
    b = _Builder()
    doc: dict = {"asset": {"version": "2.0", "generator": "vitdeca"}, "scene": 0, "scenes": [{"nodes": []}]}
    for key in ("nodes", "meshes", "materials", "textures", "images", "samplers"):
        doc[key] = []
    for k, mesh in enumerate(meshes):
        doc["meshes"].append(_mesh(b, doc, mesh))
        node = {"name": mesh.name, "mesh": k}
        if mesh.rotation is not None:
            node["rotation"] = [float(v) for v in mesh.rotation]
        if mesh.translation is not None:
            node["translation"] = [float(v) for v in mesh.translation]
        doc["nodes"].append(node)
        if mesh.parent is None:
            doc["scenes"][0]["nodes"].append(k)
        else:
            doc["nodes"][mesh.parent].setdefault("children", []).append(k)
    if animation is not None:
        doc["animations"] = [_animation(b, animation)]
    doc = {k: v for k, v in doc.items() if v != []}
    doc["bufferViews"], doc["accessors"] = b.views, b.accessors
    doc["buffers"] = [{"byteLength": len(b.blob) + (-len(b.blob) % 4)}]
    atomic_write_bytes(Path(path), glb_bytes(doc, bytes(b.blob)))
    return Path(path)


def glb_bytes(doc: dict, blob: bytes) -> bytes:
    """The GLB container: 12-byte header, JSON chunk (space-padded), BIN chunk (zero-padded)."""
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    blob += b"\0" * (-len(blob) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    header = struct.pack("<4sII", b"glTF", 2, total)
    json_chunk = struct.pack("<I4s", len(text), b"JSON") + text
    return header + json_chunk + struct.pack("<I4s", len(blob), b"BIN\0") + blob


def _mesh(b: _Builder, doc: dict, mesh: GltfMesh) -> dict:
    attributes = {"POSITION": b.accessor(mesh.positions, _ARRAY_BUFFER, bounds=True)}
    if mesh.normals is not None:
        attributes["NORMAL"] = b.accessor(mesh.normals, _ARRAY_BUFFER)
    if mesh.uvs is not None:
        attributes["TEXCOORD_0"] = b.accessor(mesh.uvs, _ARRAY_BUFFER)
    primitive = {
        "attributes": attributes,
        "indices": b.accessor(np.asarray(mesh.indices).reshape(-1), _ELEMENT_ARRAY_BUFFER),
        "material": _material(b, doc, mesh),
        "mode": 4,
    }
    out: dict = {"name": mesh.name, "primitives": [primitive]}
    if mesh.targets is not None and len(mesh.targets):
        primitive["targets"] = [{"POSITION": b.accessor(t, _ARRAY_BUFFER, bounds=True)} for t in mesh.targets]
        weights = np.zeros(len(mesh.targets)) if mesh.weights is None else np.asarray(mesh.weights)
        out["weights"] = [round(float(w), 6) for w in weights]
        out["extras"] = {"targetNames": list(mesh.target_names)}
    return out


def _material(b: _Builder, doc: dict, mesh: GltfMesh) -> int:
    pbr: dict = {"baseColorFactor": list(mesh.color), "metallicFactor": 0.0, "roughnessFactor": 0.9}
    if mesh.texture_png is not None and mesh.uvs is not None:
        if mesh.texture_png not in b.textures:
            doc["images"].append({"bufferView": b.view(mesh.texture_png), "mimeType": "image/png"})
            if not doc["samplers"]:
                doc["samplers"].append({"magFilter": 9729, "minFilter": 9987, "wrapS": 33071, "wrapT": 33071})
            doc["textures"].append({"source": len(doc["images"]) - 1, "sampler": 0})
            b.textures[mesh.texture_png] = len(doc["textures"]) - 1
        pbr["baseColorTexture"] = {"index": b.textures[mesh.texture_png]}
    doc["materials"].append({"name": f"{mesh.name}_material", "pbrMetallicRoughness": pbr})
    return len(doc["materials"]) - 1


def _animation(b: _Builder, animation: GltfAnimation) -> dict:
    times = b.accessor(np.asarray(animation.times, np.float32), bounds=True)
    samplers, channels = [], []
    for path, tracks in (("weights", animation.weights), ("rotation", animation.rotations)):
        for node, values in tracks.items():
            samplers.append({"input": times, "output": b.accessor(np.asarray(values).reshape(-1)
                             if path == "weights" else values), "interpolation": "LINEAR"})  # fmt: skip
            channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path}})
    return {"name": animation.name, "samplers": samplers, "channels": channels}
