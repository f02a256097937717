"""Animation outputs of ``vitdeca reconstruct``: ARKit weights per face (``<stem>_arkit.json``) and per
video (``<stem>_arkit.csv`` in Live Link Face's CSV layout). The weights themselves come from
:mod:`vitdeca.arkit`.

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
        "weights": [round(float(w), 6) for w in weights],
        "unavailable": result.mesh.arkit.unavailable,
        "head_rotation": _rounded(head_angles(result.codes.pose[0, :3])),
        "eyes": {eye: _rounded(angles) for eye, angles in eye_angles(weights).items()},
        "head_model": result.mesh.head_model,
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in values.items()}


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
