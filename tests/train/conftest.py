"""Fixtures for the training tests: the tiny real model and synthetic data (tiny.py), quick configs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TINY_PATH = HERE / "tiny.py"


def _load_tiny():
    name = "vitdeca_train_tiny"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TINY_PATH)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny():
    """The tiny-setup module (tiny_model, SyntheticFaces, BASE_OVERRIDES, RANDOM)."""
    return _load_tiny()


def write_dlib_dataset(faces_dir: Path, out: Path, n_faces: int) -> Path:
    """A `vitdeca annotate`-style dataset folder of the first ``n_faces`` faces of dlib's example photos,
    with dlib's own 68 landmarks (shifted +0.5 px to vitdeca's pixel-centre frame); one identity each."""
    import json
    import xml.etree.ElementTree as ET

    images = faces_dir / "dlib_examples"
    records = []
    for xml_name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for image in ET.parse(images / xml_name).getroot().iter("image"):
            for k, box in enumerate(image.iter("box")):
                parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
                landmarks = [[float(p.get("x")) + 0.5, float(p.get("y")) + 0.5] for p in parts]
                records.append({
                    "image": image.get("file"), "identity": f"face{len(records):02d}", "face_index": k,
                    "landmarks": landmarks, "mask": None, "crop_matrix": None, "status": "ok",
                })  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:n_faces]))
    (out / "dataset.json").write_text(json.dumps({"image_root": str(images)}))
    return out


@pytest.fixture(scope="session")
def dlib_faces(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real faces (dlib's example photos, one identity each) as a training dataset folder."""
    return write_dlib_dataset(faces_dir, tmp_path_factory.mktemp("dlib_faces"), 4)
