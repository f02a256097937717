"""Animation outputs of ``vitdeca reconstruct``: ARKit weights per face (``<stem>_arkit.json``) and per
video (``<stem>_arkit.csv`` in Live Link Face's CSV layout), and the drivable avatar
(``<stem>_avatar.glb``: the person's head with 51 ARKit morph targets; a video adds the performance as a
glTF animation). The weights themselves come from :mod:`vitdeca.arkit`.

Live Link Face CSV (what Epic's iOS app exports and the Blender/Maya/Unreal importers read): a header
``Timecode,BlendShapeCount,<52 blendshapes in PascalCase>,HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,
LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll``, then one row per frame. The 52
columns follow the app's order (Apple's with ``JawRight``/``JawLeft`` and ``MouthRight``/``MouthLeft``
swapped); ``BlendShapeCount`` is 61 (52 + 9 rotations); ``Timecode`` is ``HH:MM:SS:FF.mmm`` (frame
``FF`` at the video's rate, ``mmm`` its fraction). Rotations are written in radians (signs as in
:mod:`vitdeca.arkit`; eye roll 0). vitdeca appends one column, ``FaceFound`` (1, or 0 where no face
was found: that row repeats the last weights), after the app's columns; importers that read columns
by name or position ignore it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from vitdeca.arkit import ARKIT_NAMES, eye_angles, head_angles
from vitdeca.gltf import GltfAnimation, GltfMesh, write_glb
from vitdeca.storage import atomic_write_bytes

_SWAPS = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
LIVE_LINK_ORDER: tuple[str, ...] = tuple(_SWAPS.get(n, n) for n in ARKIT_NAMES)
ROTATION_COLUMNS = (
    "HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
LIVE_LINK_HEADER: tuple[str, ...] = (
    "Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in LIVE_LINK_ORDER), *ROTATION_COLUMNS,
)  # fmt: skip
FACE_FOUND_COLUMN = "FaceFound"


def arkit_record(result) -> dict:
    """The JSON record of one face: ``names`` (52, Apple's order), ``weights`` (52, in [0,1]),
    ``unavailable`` (names the head model cannot produce, weight 0), ``head_rotation`` {yaw, pitch, roll}
    degrees, ``eyes`` {left, right: {yaw, pitch}} degrees, ``head_model``. Needs ARKit semantics."""
    weights = result.arkit_weights
    if weights is None:
        raise ValueError(f"head model {result.mesh.head_model!r} has no ARKit semantics")
    return {
        "names": list(ARKIT_NAMES),
        "weights": [_round(w, 6) for w in weights],
        "unavailable": result.mesh.arkit.unavailable,
        "head_rotation": _rounded(head_angles(result.codes.pose[0, :3])),
        "eyes": {eye: _rounded(angles) for eye, angles in eye_angles(weights).items()},
        "head_model": result.mesh.head_model,
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: _round(v, 4) for k, v in values.items()}


def _round(value, digits: int) -> float:
    """``value`` rounded to ``digits``, a value that rounds to zero written ``0.0``, never ``-0.0``."""
    return round(float(value), digits) + 0.0


def write_arkit_json(path: Path, result) -> Path:
    """``<stem>_arkit.json`` of one face (:func:`arkit_record`), atomically."""
    atomic_write_bytes(path, (json.dumps(arkit_record(result), indent=2) + "\n").encode())
    return path


def timecode(seconds: float, fps: float) -> str:
    """Live Link Face's ``HH:MM:SS:FF.mmm``: whole seconds, the frame within the second at ``fps`` and
    the frame's fraction in thousandths."""
    whole = math.floor(seconds + 1e-9)
    frames = (seconds - whole) * fps
    ff = math.floor(frames + 1e-6)
    sub = min(999, round((frames - ff) * 1000))
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{ff:02d}.{sub:03d}"


def live_link_row(weights: np.ndarray, pose) -> list[float]:
    """The 52 blendshapes (Live Link order) and 9 rotations (radians) of one frame."""
    by_name = dict(zip(ARKIT_NAMES, np.asarray(weights, np.float64).tolist(), strict=True))
    head, eyes = head_angles(pose), eye_angles(weights)
    angles = [head["yaw"], head["pitch"], head["roll"]]
    for eye in ("left", "right"):
        angles += [eyes[eye]["yaw"], eyes[eye]["pitch"], 0.0]
    return [by_name[n] for n in LIVE_LINK_ORDER] + [math.radians(a) for a in angles]


def write_live_link_csv(path: Path, frames: list[tuple[float, object]], fps: float) -> tuple[Path, int]:
    """Write ``frames`` [(time s, FaceResult or None)] (every frame of the video, in order) as a Live
    Link Face CSV. A frame without a face repeats the last row's values (zeros before the first face)
    with ``FaceFound`` 0. Returns (path, number of frames without a face)."""
    lines = [",".join((*LIVE_LINK_HEADER, FACE_FOUND_COLUMN))]
    last = [0.0] * (len(LIVE_LINK_HEADER) - 2)
    missing = 0
    for seconds, face in frames:
        weights = None if face is None else face.arkit_weights
        if weights is not None:
            last = live_link_row(weights, face.codes.pose[0, :3])
        else:
            missing += 1
        values = ",".join(f"{v:.6f}" for v in last)
        lines.append(f"{timecode(seconds, fps)},{len(last)},{values},{int(weights is not None)}")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path, missing


# ------------------------------------------------------------------------------------- avatar (GLB)
def avatar_mesh(face) -> GltfMesh:
    """The drivable head of ``face`` (a FaceResult with ARKit semantics): its neutral head (shape only)
    in metres with the photo texture, one morph target per available ARKit shape (51 for ICT-FaceKit,
    :attr:`vitdeca.arkit.ArkitMapping.targets`), named in Apple's spelling, default weights = the fitted
    ones. Vertices are split where UV seams need it (glTF keeps one UV per vertex)."""
    import torch

    from vitdeca.io import texture_uint8
    from vitdeca.render.shading import vertex_normals

    topology, mapping = face.mesh, face.mesh.arkit
    if mapping is None or mapping.targets is None:
        raise ValueError(f"head model {topology.head_model!r} has no ARKit blend-shape targets")
    keep = np.flatnonzero(mapping.available)
    metres = 1.0 / (topology.units_per_mm * 1000.0)
    faces = np.asarray(topology.faces, np.int64)
    corners = np.stack([faces.reshape(-1), np.asarray(topology.uv_faces, np.int64).reshape(-1)], 1)
    pairs, corner_ids = np.unique(corners, axis=0, return_inverse=True)
    neutral = np.asarray(face.neutral_vertices, np.float32)
    normals = vertex_normals(torch.from_numpy(neutral)[None], torch.from_numpy(faces))[0].numpy()
    uv = np.asarray(topology.uv_coords, np.float32)[pairs[:, 1]]
    return GltfMesh(
        name="head",
        positions=neutral[pairs[:, 0]] * metres,
        indices=corner_ids.reshape(-1, 3),
        uvs=np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1),  # glTF's v runs down
        normals=normals[pairs[:, 0]],
        targets=mapping.targets[keep][:, pairs[:, 0]] * metres,
        target_names=[ARKIT_NAMES[k] for k in keep],
        weights=np.asarray(face.arkit_weights)[keep],
        texture_png=None if face.texture is None else _png(texture_uint8(face.texture)),
    )


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def head_quaternions(poses: np.ndarray) -> np.ndarray:
    """(T,3+) axis-angle head poses (model frame = glTF's) → (T,4) quaternions x,y,z,w, signs made
    continuous (each within 90° of the previous) so that interpolation takes the short way."""
    from scipy.spatial.transform import Rotation

    quats = Rotation.from_rotvec(np.asarray(poses, np.float64)[:, :3]).as_quat()
    for k in range(1, len(quats)):
        if np.dot(quats[k], quats[k - 1]) < 0:
            quats[k] = -quats[k]
    return quats.astype(np.float32)


def eye_meshes(face) -> list[GltfMesh]:
    """The eyeballs of ``face`` as two nodes ("eye_left", "eye_right") that are children of the head's
    node (index 0): each mesh is centred on its pivot (node ``translation``) and turned by the
    measured gaze (node ``rotation``), so a rotation of the node turns the eye about its centre.
    [] for a head without eyeballs."""
    from vitdeca.pipeline.eyes import eye_faces

    eyes, topology = face.eyes, face.mesh.eyes
    if eyes is None or topology is None:
        return []
    metres = 1.0 / (face.mesh.units_per_mm * 1000.0)
    png = _png(topology.texture)
    uv = np.asarray(topology.uv_coords, np.float32)
    meshes = []
    for e, (name, _, _, own, uv_faces) in enumerate(eye_faces(topology)):
        corners = np.stack([own.reshape(-1), uv_faces.reshape(-1)], 1)
        pairs, corner_ids = np.unique(corners, axis=0, return_inverse=True)
        positions = (eyes.neutral_vertices[pairs[:, 0]] - eyes.neutral_pivots[e]) * metres
        meshes.append(GltfMesh(
            name=name, positions=positions, indices=corner_ids.reshape(-1, 3),
            uvs=np.stack([uv[pairs[:, 1], 0], 1.0 - uv[pairs[:, 1], 1]], 1),
            normals=positions / np.linalg.norm(positions, axis=1, keepdims=True).clip(1e-9),
            texture_png=png, rotation=gaze_quaternions(eyes.gaze[e][None], eyes.rest[e])[0],
            translation=eyes.neutral_pivots[e] * metres, parent=0,
        ))  # fmt: skip
    return meshes


def gaze_quaternions(gaze: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(T,2) yaw/pitch degrees of one eye with rest axes (3,3) → (T,4) quaternions x,y,z,w of
    ``rest · R_y(yaw) · R_x(pitch) · restᵀ`` (:mod:`vitdeca.head.eyes`), signs made continuous."""
    import torch
    from scipy.spatial.transform import Rotation

    from vitdeca.head.eyes import gaze_rotation

    turn = gaze_rotation(torch.as_tensor(np.asarray(gaze, np.float64))).numpy()
    rest = np.asarray(rest, np.float64)
    return head_quaternions(Rotation.from_matrix(rest @ turn @ rest.T).as_rotvec())


def write_avatar_glb(path: Path, face, frames: list[tuple[float, object]] | None = None) -> Path:
    """``<stem>_avatar.glb``: :func:`avatar_mesh` of ``face`` and its :func:`eye_meshes`; with
    ``frames`` [(time s, FaceResult)] (a video's faces, in order) also an animation "performance": the
    ARKit weights, the head rotation and the eyes' gaze at every frame with a face (times from the
    first such frame, LINEAR interpolation)."""
    meshes = [avatar_mesh(face), *eye_meshes(face)]
    animation = None
    if frames:
        keep = face.mesh.arkit.available
        times = np.array([t for t, _ in frames], np.float64)
        weights = np.stack([np.asarray(f.arkit_weights)[keep] for _, f in frames])
        poses = np.stack([f.codes.pose[0].detach().cpu().numpy() for _, f in frames])
        rotations = {0: head_quaternions(poses)}
        if len(meshes) == 3 and all(f.eyes is not None for _, f in frames):
            for e in range(2):
                gaze = np.stack([f.eyes.gaze[e] for _, f in frames])
                rotations[1 + e] = gaze_quaternions(gaze, face.eyes.rest[e])
        animation = GltfAnimation(
            "performance", (times - times[0]).astype(np.float32), {0: weights}, rotations
        )
    return write_glb(path, meshes, animation)
