"""A small synthetic annotated dataset (no detector needed): textured images, known landmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def grid_landmarks(x0: float, y0: float, step: float) -> np.ndarray:
    """68 points on a 9×8 grid (row-major, first 68 of 72): well separated, easy to find again."""
    rows, cols = np.divmod(np.arange(68), 9)
    return np.stack([x0 + cols * step, y0 + rows * step], axis=1).astype(np.float64)


def blob_image(landmarks: np.ndarray, height: int, width: int, sigma: float = 2.5) -> np.ndarray:
    """Black RGB uint8 image with a Gaussian blob centred on every landmark (pixel-centre frame)."""
    image = np.zeros((height, width))
    reach = int(4 * sigma) + 1
    for px, py in landmarks:
        i0, j0 = max(int(py) - reach, 0), max(int(px) - reach, 0)
        y, x = np.mgrid[i0 : min(int(py) + reach, height), j0 : min(int(px) + reach, width)] + 0.5
        image[y.astype(int), x.astype(int)] += np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * sigma**2))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None].repeat(3, axis=2)


def _record(image: str, identity: str | None, landmarks: np.ndarray, status: str = "ok") -> dict:
    ok = status == "ok"
    return {
        "image": image, "identity": identity, "face_index": 0 if ok else None,
        "box": [0, 0, 10, 10] if ok else None, "landmarks": landmarks.tolist() if ok else None,
        "score": 1.0 if ok else None, "mask": None, "crop": None, "crop_matrix": None,
        "faces_found": int(ok), "image_records": 1, "status": status, "message": "",
    }  # fmt: skip


@pytest.fixture()
def dataset_dir(tmp_path: Path) -> Path:
    """3 identities (3, 2, 1 images) + 1 root-level image + 1 rejected file; images 300×360."""
    root, out = tmp_path / "images", tmp_path / "dataset"
    rng = np.random.default_rng(0)
    records = []
    names = [("ann", 3), ("ben", 2), ("cat", 1), (None, 1)]
    for identity, count in names:
        for k in range(count):
            landmarks = grid_landmarks(60 + rng.uniform(-10, 10), 50 + rng.uniform(-10, 10), 22.0)
            rel = f"{identity}/{k}.png" if identity else f"loose{k}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(blob_image(landmarks, 300, 360)).save(root / rel)
            records.append(_record(rel, identity, landmarks))
    records.append(_record("ann/broken.jpg", "ann", np.zeros((68, 2)), status="unreadable"))
    out.mkdir()
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (out / "dataset.json").write_text(json.dumps({"image_root": str(root)}))
    return out
