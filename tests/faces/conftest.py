"""Fixtures of the faces tests: dlib's 68-landmark XML annotations and a real face photo."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass(frozen=True)
class XmlFace:
    """One face of dlib's example XML: file, inclusive dlib box (left, top, width, height), parts (68,2)."""

    file: Path
    left: int
    top: int
    width: int
    height: int
    parts: np.ndarray  # (68,2) integer pixel indices, as dlib writes them


def parse_dlib_xml(path: Path) -> list[XmlFace]:
    faces = []
    for image in ET.parse(path).getroot().iter("image"):
        for box in image.iter("box"):
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            assert [int(p.get("name")) for p in parts] == list(range(68))
            faces.append(
                XmlFace(
                    file=path.parent / image.get("file"),
                    left=int(box.get("left")),
                    top=int(box.get("top")),
                    width=int(box.get("width")),
                    height=int(box.get("height")),
                    parts=np.array([[int(p.get("x")), int(p.get("y"))] for p in parts], dtype=np.float64),
                )
            )
    return faces


@pytest.fixture(scope="session")
def dlib_dir(faces_dir: Path) -> Path:
    return faces_dir / "dlib_examples"


@pytest.fixture(scope="session")
def xml_faces(dlib_dir: Path) -> list[XmlFace]:
    faces = []
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        faces += parse_dlib_xml(dlib_dir / name)
    assert len(faces) == 43
    return faces


@pytest.fixture(scope="session")
def face_photo(faces_dir: Path) -> Path:
    """A 450×450 photo with one frontal face."""
    return faces_dir / "deca_testsamples" / "exp" / "3.jpg"


def _nme(predicted: np.ndarray, reference: np.ndarray) -> float:
    distance = np.linalg.norm(reference[36] - reference[45])
    return float(np.linalg.norm(predicted - reference, axis=1).mean() / distance)


@pytest.fixture(scope="session")
def nme():
    """NME: mean point error over the outer-eye-corner distance (points 36, 45) of the reference."""
    return _nme


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _write_huge_png(path: Path, side: int = 20000) -> Path:
    """A valid all-black 1-bit side×side PNG (~50 KB on disk, 400 MP decoded), written in ~0.5 s."""
    rows = (b"\x00" + bytes((side + 7) // 8)) * 1000
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(rows) for _ in range(side // 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="session")
def write_huge_png():
    """Function (path, side=20000) → path writing a cheap, valid, huge PNG."""
    return _write_huge_png


@pytest.fixture()
def one_torch_thread():
    """MTCNN on a loaded 2-core machine is ~10× faster with one intra-op thread than with two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
