"""Fakes for the batch-runner tests: a reconstructor that needs no model, and a synthetic FaceResult."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vitdeca.codes import CodeLayout, Codes
from vitdeca.errors import VitdecaError
from vitdeca.pipeline.reconstructor import Prepared
from vitdeca.pipeline.results import FaceResult, MeshTopology, VideoFrame


def make_face(index: int = 0, size: int = 32, offset: float = 0.0) -> FaceResult:
    """A FaceResult of a unit square mesh, crop = original pixels shifted by ``offset``."""
    layout = CodeLayout(n_shape=4, n_expression=3, n_pose=6, n_albedo=2, n_detail=5)
    codes = Codes.zeros(layout)
    codes.shape[0, 0] = 1.5 + index
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    mesh = MeshTopology(
        faces=np.array([[0, 1, 2], [0, 2, 3]]),
        uv_coords=vertices[:, :2].copy(),
        uv_faces=np.array([[0, 1, 2], [0, 2, 3]]),
        head_model="toy",
        units_per_mm=0.1,
    )
    rng = np.random.default_rng(index)
    lmk3d = rng.normal(size=(68, 3)).astype(np.float32)
    lmk2d = rng.uniform(4, size - 4, size=(68, 2))
    alpha = np.zeros((size, size), np.float32)
    alpha[8:24, 8:24] = 1.0
    return FaceResult(
        face_index=index,
        box=np.array([0.0, 0.0, size, size]),
        score=1.0,
        codes=codes,
        vertices=vertices,
        neutral_vertices=vertices * 2,
        landmarks3d=lmk3d,
        neutral_landmarks3d=lmk3d * 2,
        landmarks2d=lmk2d + offset,
        detected_landmarks=lmk2d + offset + 0.5,
        crop=np.full((size, size, 3), 90, np.uint8),
        crop_matrix=np.array([[1.0, 0.0, -offset], [0.0, 1.0, -offset]]),
        render=np.full((size, size, 3), 200, np.uint8),
        shape_render=np.full((size, size, 3), 150, np.uint8),
        alpha=alpha,
        depth_png=(alpha * 255).astype(np.uint8),
        mesh=mesh,
        texture=np.full((16, 16, 3), 30, np.uint8),
    )


class FakeReconstructor:
    """Behaviour from the file's bytes: ``bad`` unreadable, ``none`` no face, ``two`` two faces,
    ``boom`` a bug while preparing, ``crash`` a bug while reconstructing; anything else one face."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def prepare(self, path, all_faces=False) -> Prepared:
        data = Path(path).read_bytes()
        if data.startswith(b"bad"):
            raise VitdecaError(f"{path}: not a readable image (cannot identify image file)")
        if data.startswith(b"boom"):
            raise RuntimeError("prepare exploded")
        n = 0 if data.startswith(b"none") else (2 if data.startswith(b"two") else 1)
        n = n if all_faces else min(n, 1)
        return Prepared(str(path), np.zeros((32, 32, 3), np.uint8), [data] * n)

    def reconstruct_crops(self, prepared):
        self.batches.append(len(prepared))
        if any(c.startswith(b"crash") for p in prepared for c in p.crops):
            raise RuntimeError("decode exploded")
        return [[make_face(k) for k in range(len(p.crops))] for p in prepared]

    def render_in_image(self, face, image_shape, scale=1.0):
        return None  # the crop-space renders warped back (FaceResult.vis_in_image)

    def iter_video(self, video, smooth=True, max_frames=None):
        for index, frame in video.frames(max_frames):
            if index % 3 == 2:
                yield VideoFrame(index, index / 10, frame, None)
            else:
                yield VideoFrame(index, index / 10, frame, make_face(0, size=frame.shape[0]))


def text_writer(result, folder: Path, stem: str, save) -> list[Path]:
    """A writer that needs no mesh library: one text file per face."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}.txt"
    path.write_text(f"{result.face_index} {sorted(save)}")
    return [path]


@pytest.fixture
def fake_rec() -> FakeReconstructor:
    return FakeReconstructor()


@pytest.fixture
def face_factory():
    """``make_face(index=0, size=32, offset=0.0)`` → a synthetic FaceResult."""
    return make_face


@pytest.fixture
def writer():
    """A writer for the batch runner that writes one text file per face."""
    return text_writer


@pytest.fixture(scope="session")
def fit_model(ict_archive, tmp_path_factory):
    """An untrained ICT model without the detail branch (fitting needs no weights)."""
    import os

    os.environ.setdefault("VITDECA_ICT_FACEKIT", str(ict_archive))
    from vitdeca.model import DecaModel, ModelConfig

    return DecaModel(ModelConfig(encoder=None, detail=False)).eval()


@pytest.fixture(scope="session")
def topology(fit_model):
    """The ICT model's :class:`MeshTopology` (ARKit mapping, eyeballs): ``mesh_topology(fit_model)``."""
    from vitdeca.pipeline.decode import mesh_topology

    return mesh_topology(fit_model)
