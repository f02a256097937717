"""MeshLab .pp picked-points files."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeca.errors import VitdecaError
from vitdeca.evaluation.pp import read_pp, write_pp

MESHLAB_FILE = """<!DOCTYPE PickedPoints>
<PickedPoints>
 <DocumentData>
  <DateTime time="16:11:02" date="2019-03-14"/>
  <User name="annotator"/>
  <DataFileName name="natural_head_rotation.000001.obj"/>
  <templateName name=""/>
 </DocumentData>
 <point x="-41.5" y="31.25" z="-5.125" active="1" name="0"/>
 <point x="-13.0" y="30.0" z="2e1" active="1" name="1"/>
 <point name="2" active="0" z="-0.5" y="29.75" x="13.5"/>
 <point x="44.0" y="32.0" z="-4.0" active="1" name="3"/>
 <point x="0.0" y="-21.5" z="15.0" active="1" name="4"/>
 <point x="-24.0" y="-47.0" z="3.0" active="1" name="5"/>
 <point x="24.0" y="-46.0" z="3.0" active="1" name="6"/>
</PickedPoints>
"""


def test_reads_a_meshlab_file_in_file_order(tmp_path):
    path = tmp_path / "lmk.pp"
    path.write_text(MESHLAB_FILE)
    picked = read_pp(path)
    assert picked.points.shape == (7, 3)
    np.testing.assert_array_equal(picked.points[0], [-41.5, 31.25, -5.125])
    np.testing.assert_array_equal(picked.points[1], [-13.0, 30.0, 20.0])
    np.testing.assert_array_equal(picked.points[2], [13.5, 29.75, -0.5])  # attribute order is free
    assert picked.names == [str(i) for i in range(7)]
    assert picked.active == [True, True, False, True, True, True, True]


def test_round_trip_and_official_line_layout(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.normal(size=(7, 3)) * 50
    path = tmp_path / "out.pp"
    write_pp(path, points, mesh_name="scan.obj")
    picked = read_pp(path)
    np.testing.assert_array_equal(picked.points, points)  # repr round-trips float64 exactly
    # the official NoW reader takes the points from lines 9..15 (0-based 8..14)
    lines = path.read_text().splitlines()
    for k in range(7):
        assert lines[8 + k].strip().startswith("<point ") and f'name="{k}"' in lines[8 + k]


@pytest.mark.parametrize(
    "text, message",
    [
        ("not xml at all <", "not a MeshLab"),
        ("<Other/>", "root element"),
        ("<PickedPoints></PickedPoints>", "no <point>"),
        ('<PickedPoints><point x="1" y="2"/></PickedPoints>', "numeric x, y or z"),
        ('<PickedPoints><point x="1" y="2" z="nan"/></PickedPoints>', "NaN"),
    ],
)
def test_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.pp"
    path.write_text(text)
    with pytest.raises(VitdecaError, match=message) as info:
        read_pp(path)
    assert str(path) in str(info.value)
