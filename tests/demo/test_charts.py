"""ARKit charts of the demo: reading the files ``reconstruct --save arkit`` writes, and drawing them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vitdeca.demo import charts
from vitdeca.errors import VitdecaError
from vitdeca.faces.image_io import read_image

NAMES = ["eyeBlinkLeft", "jawOpen", "mouthSmileLeft", "browInnerUp", "tongueOut"]


def test_json_weights_and_unavailable(tmp_path):
    path = tmp_path / "a_arkit.json"
    record = {"names": NAMES, "weights": [0.9, 0.25, 0.5, 0.0, 0.0], "unavailable": ["tongueOut"]}
    path.write_text(json.dumps(record))
    got = charts.read_arkit_json(path)
    assert got.names == NAMES
    assert np.allclose(got.weights[:4], [0.9, 0.25, 0.5, 0.0]) and np.isnan(got.weights[4])


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "not an ARKit weights file"), ('{"names": ["a", "b"], "weights": [1]}', "2 names but 1 weights")],
)
def test_json_malformed_is_a_user_error(tmp_path, text, message):
    path = tmp_path / "bad_arkit.json"
    path.write_text(text)
    with pytest.raises(VitdecaError, match=message):
        charts.read_arkit_json(path)


def _live_link_csv(path, weights: np.ndarray) -> None:
    """A Live Link Face CSV as the app lays it out (count 52+9 = blendshapes + rotations), plus a
    trailing ``FaceFound`` column."""
    rotations = ["HeadYaw", "HeadPitch", "HeadRoll"]
    header = ["Timecode", "BlendShapeCount", *(n[0].upper() + n[1:] for n in NAMES), *rotations, "FaceFound"]
    lines = [",".join(header)]
    for t, row in enumerate(weights):
        values = [*map(str, row), "0.3", "-0.2", "0.1", "1"]
        lines.append(",".join([f"00:00:00:{t:02d}.000", str(len(NAMES) + 3), *values]))
    path.write_text("\n".join(lines) + "\n")


def test_csv_curves_keep_only_the_blendshapes(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.uniform(0, 0.2, size=(6, len(NAMES)))
    weights[:, 1] += np.linspace(0, 0.7, 6)  # jawOpen moves most, then mouthSmileLeft
    weights[:, 2] += np.linspace(0, 0.4, 6)
    path = tmp_path / "clip_arkit.csv"
    _live_link_csv(path, weights)
    curves = charts.read_arkit_csv(path)
    assert curves.names == ["EyeBlinkLeft", "JawOpen", "MouthSmileLeft", "BrowInnerUp", "TongueOut"]
    assert np.allclose(curves.weights, weights) and list(curves.frames) == list(range(6))
    spread = weights.max(0) - weights.min(0)
    assert charts.most_moving(curves, 2) == list(np.argsort(-spread)[:2]) == [1, 2]


def test_csv_without_rotation_columns_is_a_user_error(tmp_path):
    path = tmp_path / "x_arkit.csv"
    path.write_text("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,1,0.5\n")
    with pytest.raises(VitdecaError, match="not a Live Link Face CSV"):
        charts.read_arkit_csv(path)


def test_charts_are_drawn(tmp_path):
    a = charts.ArkitWeights(NAMES, np.array([0.9, 0.25, 0.5, 0.0, np.nan]))
    b = charts.ArkitWeights(NAMES, np.array([0.1, 0.75, 0.0, 0.3, np.nan]))
    bars = read_image(charts.bar_chart([("face 0", a), ("face 1", b)], tmp_path / "bars.png"))
    one = read_image(charts.bar_chart([("face 0", a)], tmp_path / "one.png"))
    assert bars.shape[1] > one.shape[1] and bars.shape[0] == one.shape[0]  # one panel per face
    colours = {tuple(c) for c in bars.reshape(-1, 3)[::7]}
    assert len(colours) > 10  # bars in region colours, not a blank canvas
    curves = charts.ArkitCurves(NAMES, np.linspace(0, 1, 20)[:, None] * np.ones(5), np.arange(20))
    line = read_image(charts.curve_chart(curves, tmp_path / "curves.png"))
    assert line.ndim == 3 and line.std() > 10


def test_region_colours():
    assert charts.region_colour("eyeBlinkLeft") == charts.region_colour("EyeLookUpRight")
    assert charts.region_colour("jawOpen") != charts.region_colour("mouthClose")
    assert charts.region_colour("somethingElse") == "#8c8c8c"
