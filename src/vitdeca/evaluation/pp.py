"""MeshLab picked-points files (``.pp``): the format of NoW's scan landmarks.

A ``.pp`` file is XML::

    <!DOCTYPE PickedPoints>
    <PickedPoints>
     <DocumentData> ... </DocumentData>
     <point x="..." y="..." z="..." active="1" name="0"/>
     ...
    </PickedPoints>

Points are returned in file order (the order the official NoW code uses); ``active`` is kept for
information only. :func:`write_pp` lays files out as MeshLab does (first point on line 9), so that the
official line-based reader accepts them too.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_write_bytes


@dataclass(frozen=True)
class PickedPoints:
    """points (N,3) float64 in file order; names and active flags (N,) as written."""

    points: np.ndarray
    names: list[str]
    active: list[bool]


def read_pp(path: str | os.PathLike) -> PickedPoints:
    """Read a MeshLab ``.pp`` file; raises VitdecaError naming the file when it is not one."""
    path = Path(path)
    try:
        root = ET.fromstring(path.read_bytes())
    except OSError as exc:
        raise VitdecaError(f"{path}: cannot read ({exc.strerror})") from exc
    except ET.ParseError as exc:
        raise VitdecaError(f"{path}: not a MeshLab .pp file ({exc})") from exc
    if root.tag != "PickedPoints":
        raise VitdecaError(f"{path}: not a MeshLab .pp file (root element <{root.tag}>)")
    points, names, active = [], [], []
    for i, node in enumerate(root.iter("point")):
        try:
            points.append([float(node.attrib[c]) for c in ("x", "y", "z")])
        except (KeyError, ValueError) as exc:
            raise VitdecaError(f"{path}: point {i} lacks a numeric x, y or z") from exc
        names.append(node.attrib.get("name", str(i)))
        active.append(node.attrib.get("active", "1") != "0")
    if not points:
        raise VitdecaError(f"{path}: no <point> elements")
    arr = np.asarray(points, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise VitdecaError(f"{path}: a point has a NaN or infinite coordinate")
    return PickedPoints(arr, names, active)


def write_pp(
    path: str | os.PathLike, points: np.ndarray, names: list[str] | None = None, mesh_name: str = ""
) -> None:
    """Write points (N,3) as a MeshLab ``.pp`` file (atomically); names default to "0", "1", ..."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N,3), got {pts.shape}")
    names = names if names is not None else [str(i) for i in range(len(pts))]
    if len(names) != len(pts):
        raise ValueError(f"{len(names)} names for {len(pts)} points")
    root = ET.Element("PickedPoints")
    doc = ET.SubElement(root, "DocumentData")  # MeshLab's four entries: the points start on line 9,
    ET.SubElement(doc, "DateTime", time="", date="")  # where line-based readers (the official NoW
    ET.SubElement(doc, "User", name="")  # code) expect them
    ET.SubElement(doc, "DataFileName", name=mesh_name)
    ET.SubElement(doc, "templateName", name="")
    for (x, y, z), name in zip(pts, names, strict=True):
        ET.SubElement(
            root, "point", x=repr(float(x)), y=repr(float(y)), z=repr(float(z)), active="1", name=name
        )
    ET.indent(root, space=" ")
    text = "<!DOCTYPE PickedPoints>\n" + ET.tostring(root, encoding="unicode") + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
