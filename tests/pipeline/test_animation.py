"""ARKit outputs of the batch runner: per-face JSON, the Live Link Face CSV of videos, FLAME refused."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import torch

from vitdeca import media
from vitdeca.arkit import ARKIT_NAMES, arkit_mapping
from vitdeca.head.base import HeadModel
from vitdeca.pipeline.animation import timecode
from vitdeca.pipeline.batch import BatchRunner, RunOptions, drop_unsupported, write_face_outputs

# Live Link Face's CSV header as its importers spell it (written out here, not derived from the code).
LIVE_LINK = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll"
).split(",")


class ToyHead(HeadModel):
    """Three ARKit-named blend shapes, no linear basis (nothing to fold)."""

    name = "toy"
    blendshape_names = ("eyeBlink_L", "jawLeft", "browInnerUp_L")


class PcaHead(HeadModel):
    name = "flame"
    blendshape_names = None


def arkit_face(face_factory, index=0, size=32, expression=(0.8, 0.3, 0.6), yaw_deg=0.0):
    face = face_factory(index, size=size)
    face.mesh.arkit = arkit_mapping(ToyHead())
    face.codes.expression[0] = torch.tensor(expression)
    face.codes.pose[0, 1] = np.radians(yaw_deg)
    return face


def test_face_json(face_factory, tmp_path):
    face = arkit_face(face_factory, yaw_deg=20.0)
    files = write_face_outputs(face, tmp_path, "img", frozenset({"arkit"}))
    assert files == [tmp_path / "img_arkit.json"]
    data = json.loads(files[0].read_text())
    weights = dict(zip(data["names"], data["weights"], strict=True))
    assert data["names"] == list(ARKIT_NAMES)
    assert weights["eyeBlinkLeft"] == pytest.approx(0.8) and weights["jawLeft"] == pytest.approx(0.3)
    assert weights["browInnerUp"] == pytest.approx(0.3)  # the mean of the two halves (one is 0)
    assert weights["jawRight"] == 0.0 and "tongueOut" in data["unavailable"]
    assert data["head_rotation"]["yaw"] == pytest.approx(20.0, abs=1e-3)
    assert set(data["eyes"]) == {"left", "right"}


def test_face_json_writes_no_negative_zero(face_factory, tmp_path):
    """A head turned a hair's breadth the other way (−1e-7°) and weights just below zero round to 0.0."""
    face = arkit_face(face_factory, expression=(-1e-9, 0.3, 0.6), yaw_deg=-1e-7)
    text = write_face_outputs(face, tmp_path, "img", frozenset({"arkit"}))[0].read_text()
    assert "-0.0" not in text and json.loads(text)["head_rotation"]["yaw"] == 0.0


def test_face_without_arkit_semantics_writes_no_json(face_factory, tmp_path):
    files = write_face_outputs(face_factory(0), tmp_path, "img", frozenset({"arkit", "landmarks"}))
    assert [f.name for f in files] == ["img_landmarks2d.npy", "img_landmarks3d.npy"]


def test_flame_drops_arkit_in_one_line(caplog):
    options = RunOptions(save=frozenset({"obj", "arkit"}))
    with caplog.at_level(logging.WARNING):
        kept = drop_unsupported(options, PcaHead())
    assert kept.save == {"obj"}
    (record,) = caplog.records
    assert "arkit" in record.getMessage() and "'flame'" in record.getMessage()
    assert "\n" not in record.getMessage()
    assert drop_unsupported(options, ToyHead()).save == options.save


def test_timecode():
    assert timecode(0.0, 30) == "00:00:00:00.000"
    assert timecode(3723.5, 30) == "01:02:03:15.000"
    assert timecode(1.0 + 2.5 / 30, 30) == "00:00:01:02.500"


class ArkitVideoRec:
    """Frames 2, 5, 8 have no face; the others a face whose jawLeft weight is index / 10."""

    def __init__(self, face_factory) -> None:
        self.face_factory = face_factory

    def iter_video(self, video, smooth=True, max_frames=None):
        from vitdeca.pipeline.results import VideoFrame

        for index, frame in video.frames(max_frames):
            face = None
            if index % 3 != 2:
                face = arkit_face(self.face_factory, size=frame.shape[0], expression=(0.0, index / 10, 0.0))
            yield VideoFrame(index, index / 10, frame, face)


def test_video_live_link_csv(face_factory, writer, tmp_path):
    clip = tmp_path / "clip.mp4"
    with media.video_writer(clip, fps=10) as write:
        for i in range(9):
            write(np.full((32, 32, 3), 20 * i, np.uint8))
    options = RunOptions(save=frozenset({"arkit"}), progress=False)
    summary = BatchRunner(ArkitVideoRec(face_factory), tmp_path / "out", options, writer=writer).run([clip])
    (record,) = summary.records
    assert "clip/clip_arkit.csv" in record.outputs
    assert "3 rows without a face repeat the last weights" in record.message
    with open(tmp_path / "out" / "clip" / "clip_arkit.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][: len(LIVE_LINK)] == LIVE_LINK and rows[0][len(LIVE_LINK) :] == ["FaceFound"]
    body = rows[1:]
    assert len(body) == 9 and all(r[1] == "61" and len(r) == len(rows[0]) for r in body)
    jaw_left = [float(r[LIVE_LINK.index("JawLeft")]) for r in body]
    assert jaw_left == pytest.approx([0.0, 0.1, 0.1, 0.3, 0.4, 0.4, 0.6, 0.7, 0.7])
    assert [r[-1] for r in body] == ["1", "1", "0", "1", "1", "0", "1", "1", "0"]
    assert [r[0] for r in body[:2]] == ["00:00:00:00.000", "00:00:00:01.000"]
