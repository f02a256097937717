"""ICT-FaceKit assets: read the official archive (zip or extracted folder), convert it once into a
compact float32 cache under ``$VITDECA_HOME``, and verify that cache on every load.

How the ICT model combines its files (ICT-FaceKit ``Scripts/face_model_io.py`` and
``ict_face_model.py``): every ``identityNNN.obj`` and expression OBJ is a *full* mesh with the neutral
topology; its shape mode is ``obj - generic_neutral_mesh``, and a face is
``neutral + Σ w_id · (identity - neutral) + Σ w_ex · (expression - neutral)``.

Cache layout (``<home>/head/ict/``): ``ict_facekit_v1.npz`` (arrays, see :func:`convert_ict`) and
``ict_facekit_v1.json`` (manifest: the npz's SHA-256, source, regions, counts), written last, so a
cache without a manifest is simply "not installed".
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError
from vitdeca.head.objparse import read_obj_polygons, read_obj_uvs, read_obj_vertices, triangulate
from vitdeca.storage import atomic_path, download, is_url, sha256_file, vitdeca_home

log = logging.getLogger(__name__)

ENV_ICT = "VITDECA_ICT_FACEKIT"
DEFAULT_ICT_URL = "https://github.com/ICT-VGL/ICT-FaceKit/archive/refs/heads/master.zip"
CACHE_FORMAT = 1
CACHE_STEM = f"ict_facekit_v{CACHE_FORMAT}"

N_VERTICES_ALL = 26719  # the full ICT topology (README "All")
N_POLYGONS_ALL = 26384
N_IDENTITY = 100

# Regions kept for reconstruction (README "Face Model Topology"), as [first, last] vertex indices.
# They form the prefix [0, 14062) of the vertex array; teeth, gums, eyeballs, eyelashes etc. are dropped
# (the eyeballs are converted into a file of their own: vitdeca.head.eye_assets).
REGIONS: tuple[tuple[str, int, int], ...] = (
    ("face", 0, 9408),
    ("head_and_neck", 9409, 11247),
    ("mouth_socket", 11248, 13293),
    ("eye_socket_left", 13294, 13677),
    ("eye_socket_right", 13678, 14061),
)
N_KEPT = REGIONS[-1][2] + 1
N_POLYGONS_KEPT = 14034  # README polygon indices [0:14033]
NARROW_FACE_LAST = 6705  # README "Face Area Details": narrow face area = vertices [0:6705]

# README "Facial Landmarks": Multi-PIE 68 vertex indices, 0-based, in iBUG-68 order.
LANDMARK_VERTICES: tuple[int, ...] = (
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443,
    268, 493, 1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147,
    4269, 3360, 1507, 1542, 1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081,
    0, 4275, 6200, 6213, 6346, 6461, 5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966,
)  # fmt: skip

# The 53 ARKit-style shapes of vertex_indices.json plus cheekRaiser_L/R (alphabetical). The two
# PupilDilate shapes only move the eyeballs, which are not kept.
EXPRESSION_NAMES: tuple[str, ...] = (
    "browDown_L", "browDown_R", "browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R",
    "cheekPuff_L", "cheekPuff_R", "cheekRaiser_L", "cheekRaiser_R", "cheekSquint_L", "cheekSquint_R",
    "eyeBlink_L", "eyeBlink_R", "eyeLookDown_L", "eyeLookDown_R", "eyeLookIn_L", "eyeLookIn_R",
    "eyeLookOut_L", "eyeLookOut_R", "eyeLookUp_L", "eyeLookUp_R", "eyeSquint_L", "eyeSquint_R",
    "eyeWide_L", "eyeWide_R", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimple_L", "mouthDimple_R", "mouthFrown_L", "mouthFrown_R", "mouthFunnel", "mouthLeft",
    "mouthLowerDown_L", "mouthLowerDown_R", "mouthPress_L", "mouthPress_R", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmile_L",
    "mouthSmile_R", "mouthStretch_L", "mouthStretch_R", "mouthUpperUp_L", "mouthUpperUp_R",
    "noseSneer_L", "noseSneer_R",
)  # fmt: skip

_MAX_OFFSET_CM = 100.0  # a shape mode moving a vertex by more than 1 m means a broken file
_NOT_ICT = "is not an ICT-FaceKit archive or folder"


@dataclass(frozen=True)
class CachePaths:
    """Where the converted ICT model lives."""

    folder: Path

    @property
    def arrays(self) -> Path:
        return self.folder / f"{CACHE_STEM}.npz"

    @property
    def manifest(self) -> Path:
        return self.folder / f"{CACHE_STEM}.json"


def cache_paths(home: str | os.PathLike | None = None) -> CachePaths:
    """Cache location under ``home`` (default :func:`vitdeca_home`)."""
    return CachePaths((Path(home).expanduser() if home is not None else vitdeca_home()) / "head" / "ict")


def default_source() -> str:
    """``$VITDECA_ICT_FACEKIT`` or the official GitHub archive URL."""
    return os.environ.get(ENV_ICT) or DEFAULT_ICT_URL


class _Source:
    """Read access to the ``FaceXModel`` files of a zip archive or an extracted folder."""

    def __init__(self, path: Path):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._prefix = ""
        if path.is_dir():
            self._folder = self._find_folder(path)
        else:
            self._open_zip(path)

    def _find_folder(self, root: Path) -> Path:
        for cand in (root, root / "FaceXModel", *sorted(root.glob("*/FaceXModel"))):
            if (cand / "generic_neutral_mesh.obj").is_file():
                return cand
        raise VitdecaError(f"{root}: {_NOT_ICT} (no FaceXModel/generic_neutral_mesh.obj inside)")

    def _open_zip(self, path: Path) -> None:
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise VitdecaError(f"{path}: not a readable zip archive ({exc}); truncated download?") from exc
        for name in self._zip.namelist():
            if name.endswith("FaceXModel/generic_neutral_mesh.obj"):
                self._prefix = name[: -len("generic_neutral_mesh.obj")]
                return
        raise VitdecaError(f"{path}: {_NOT_ICT} (no FaceXModel/generic_neutral_mesh.obj inside)")

    def label(self, name: str) -> str:
        return f"{self.path}:{self._prefix}{name}" if self._zip else str(self._folder / name)

    def read(self, name: str) -> bytes:
        """Bytes of one FaceXModel file; a missing or corrupt member raises VitdecaError."""
        try:
            if self._zip is not None:
                return self._zip.read(self._prefix + name)
            return (self._folder / name).read_bytes()
        except (KeyError, FileNotFoundError) as exc:
            raise VitdecaError(f"{self.label(name)}: missing; {self.path} {_NOT_ICT} (incomplete)") from exc
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise VitdecaError(
                f"{self.label(name)}: cannot read ({exc}); corrupt or truncated archive?"
            ) from exc

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def read_neutral_obj(src: _Source) -> tuple[str, np.ndarray, np.ndarray, list, list]:
    """ICT's ``generic_neutral_mesh.obj``: (its label for messages, every vertex (N_VERTICES_ALL,3), the
    UV coordinates, the polygons, the UV polygons)."""
    name = "generic_neutral_mesh.obj"
    data, label = src.read(name), src.label(name)
    polygons, uv_polygons = read_obj_polygons(data, label)
    return (
        label,
        read_obj_vertices(data, label, N_VERTICES_ALL),
        read_obj_uvs(data, label),
        polygons,
        uv_polygons,
    )


def _read_topology(src: _Source) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Neutral vertices (N_VERTICES_ALL,3) float64 and the kept topology (triangles, uvs)."""
    label, neutral, uvs, polygons, uv_polygons = read_neutral_obj(src)
    if len(polygons) != N_POLYGONS_ALL or len(uv_polygons) != len(polygons):
        raise VitdecaError(
            f"{label}: {len(polygons)} faces with UVs, expected {N_POLYGONS_ALL} (not ICT topology)"
        )
    keep = [i for i, p in enumerate(polygons) if max(p) < N_KEPT]
    if len(keep) != N_POLYGONS_KEPT or any(len(uv_polygons[i]) != len(polygons[i]) for i in keep):
        raise VitdecaError(f"{label}: unexpected face layout (not the ICT-FaceKit topology)")
    faces = triangulate([polygons[i] for i in keep])
    uv_faces = triangulate([uv_polygons[i] for i in keep])
    if uv_faces.min() < 0 or uv_faces.max() >= len(uvs) or faces.min() < 0:
        raise VitdecaError(f"{label}: face indices out of range (corrupt file)")
    n_uv = int(uv_faces.max()) + 1
    tiles = np.floor(uvs[:n_uv, 0])
    if tiles.min() < 0 or tiles.max() > 1:
        raise VitdecaError(f"{label}: UVs outside the two expected tiles (not ICT-FaceKit)")
    # ICT puts the face in UV tile u∈[0,1] and head/neck/sockets in tile u∈[1,2]; pack both into [0,1]².
    uv_coords = np.stack([uvs[:n_uv, 0] / 2.0, uvs[:n_uv, 1]], axis=1)
    topo = {"faces": faces.astype(np.int32), "uv_faces": uv_faces.astype(np.int32), "uv_coords": uv_coords}
    return neutral, topo


def _shape_modes(src: _Source, names: list[str], neutral: np.ndarray) -> np.ndarray:
    """(K, N_KEPT*3) float32 deltas ``obj - neutral`` of the kept vertices for each named OBJ."""
    basis = np.empty((len(names), N_KEPT * 3), dtype=np.float32)
    for k, stem in enumerate(names):
        name = f"{stem}.obj"
        verts = read_obj_vertices(src.read(name), src.label(name), N_VERTICES_ALL)
        delta = verts[:N_KEPT] - neutral[:N_KEPT]
        if np.abs(delta).max() > _MAX_OFFSET_CM:
            raise VitdecaError(
                f"{src.label(name)}: implausible shape (moves a vertex by > 1 m); corrupt file?"
            )
        basis[k] = delta.reshape(-1)
    return basis


def _check_landmarks(src: _Source) -> None:
    """Cross-check the README landmark list with vertex_indices.json when the archive has it."""
    try:
        config = json.loads(src.read("vertex_indices.json"))
    except VitdecaError:
        return
    except ValueError as exc:
        raise VitdecaError(f"{src.label('vertex_indices.json')}: not valid JSON ({exc})") from exc
    found = config.get("idx_to_landmark_verts") if isinstance(config, dict) else None
    if found is not None and tuple(found) != LANDMARK_VERTICES:
        raise VitdecaError(f"{src.label('vertex_indices.json')}: landmark indices differ from ICT-FaceKit's")


def convert_ict(source: Path) -> dict[str, np.ndarray]:
    """Read an ICT-FaceKit zip or folder into the cache arrays (all float32 / int32 / str).

    Keys: ``template`` (V,3) cm; ``shapedirs`` (100,V*3) identity modes; ``exprdirs`` (55,V*3);
    ``faces``/``uv_faces`` (F,3); ``uv_coords`` (T,2) in [0,1], v up; ``landmarks`` (68,) vertex ids;
    ``face_mask`` (V,) bool; ``expression_names`` (55,); ``region_names`` (R,), ``region_ranges`` (R,2).
    """
    src = _Source(source)
    try:
        neutral, topo = _read_topology(src)
        _check_landmarks(src)
        identities = _shape_modes(src, [f"identity{k:03d}" for k in range(N_IDENTITY)], neutral)
        expressions = _shape_modes(src, list(EXPRESSION_NAMES), neutral)
    finally:
        src.close()
    face_mask = np.zeros(N_KEPT, dtype=bool)
    face_mask[: NARROW_FACE_LAST + 1] = True
    return {
        "template": neutral[:N_KEPT].astype(np.float32),
        "shapedirs": identities,
        "exprdirs": expressions,
        **topo,
        "uv_coords": topo["uv_coords"].astype(np.float32),
        "landmarks": np.asarray(LANDMARK_VERTICES, dtype=np.int32),
        "face_mask": face_mask,
        "expression_names": np.asarray(EXPRESSION_NAMES),
        "region_names": np.asarray([r[0] for r in REGIONS]),
        "region_ranges": np.asarray([[r[1], r[2] + 1] for r in REGIONS], dtype=np.int32),
    }


def _local_source(source: str, paths: CachePaths, sha256: str | None) -> tuple[Path, Path | None]:
    """A local path for ``source`` (downloading a URL); the second item is a file to delete afterwards."""
    if is_url(source):
        target = paths.folder / "download" / "ICT-FaceKit.zip"
        log.info("downloading ICT-FaceKit from %s", source)
        try:
            return download(source, target, sha256=sha256), target
        except BaseException:
            shutil.rmtree(target.parent, ignore_errors=True)
            raise
    path = Path(source).expanduser()
    if not path.exists():
        raise VitdecaError(
            f"{path}: no such file or folder (ICT-FaceKit archive; set {ENV_ICT} or use --from)"
        )
    if sha256 is not None and path.is_file() and (got := sha256_file(path)) != sha256:
        raise VitdecaError(f"{path}: checksum mismatch (expected sha256 {sha256}, got {got})")
    return path, None


def install_ict(
    source: str | os.PathLike | None = None,
    home: str | os.PathLike | None = None,
    sha256: str | None = None,
    force: bool = False,
) -> Path:
    """Convert ICT-FaceKit from ``source`` (zip, folder or URL; default :func:`default_source`) into the
    cache under ``home`` and return the manifest path. Does nothing if a valid cache exists, unless
    ``force``, or ``sha256`` (the archive's expected checksum) differs from the one the cache was converted
    from: then the source is checked against it and converted again."""
    paths = cache_paths(home)
    if not force and paths.manifest.exists():
        manifest = read_manifest(paths)
        if sha256 is None or manifest.get("source_sha256") == sha256.strip().lower():
            return paths.manifest
    source_text = os.fspath(source) if source is not None else default_source()
    local, temporary = _local_source(source_text, paths, sha256)
    try:
        _write_cache(paths, local, source_text)
    finally:
        if temporary is not None:
            shutil.rmtree(temporary.parent, ignore_errors=True)
    return paths.manifest


def _write_cache(paths: CachePaths, local: Path, source_text: str) -> None:
    """Convert ``local`` and write arrays, then the manifest (each atomically)."""
    started = time.perf_counter()
    log.info("converting ICT-FaceKit from %s (once)", local)
    arrays = convert_ict(local)
    with atomic_path(paths.arrays) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        digest = sha256_file(tmp)
    manifest = {
        "format": CACHE_FORMAT,
        "sha256": digest,
        "source": source_text,
        "source_sha256": sha256_file(local) if local.is_file() else None,
        "regions": {r[0]: [r[1], r[2] + 1] for r in REGIONS},
        "n_vertices": N_KEPT,
        "n_faces": int(arrays["faces"].shape[0]),
        "units": "cm",
    }
    with atomic_path(paths.manifest) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("ICT-FaceKit cached in %s (%.1f s)", paths.folder, time.perf_counter() - started)


def read_manifest(paths: CachePaths) -> dict:
    """The cache manifest after checking it and the arrays' checksum."""
    try:
        manifest = json.loads(paths.manifest.read_text())
        expected = manifest["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VitdecaError(
            f"{paths.manifest}: unreadable cache manifest ({exc}); run "
            "'vitdeca assets install ict-facekit --force'"
        ) from exc
    if not paths.arrays.is_file() or sha256_file(paths.arrays) != expected:
        raise VitdecaError(
            f"{paths.arrays}: missing or corrupt cache (checksum mismatch); run "
            "'vitdeca assets install ict-facekit --force'"
        )
    return manifest


def load_cache(paths: CachePaths) -> tuple[dict[str, np.ndarray], dict]:
    """Verified cache arrays and manifest."""
    manifest = read_manifest(paths)
    try:
        with np.load(paths.arrays, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise VitdecaError(f"{paths.arrays}: unreadable cache ({exc})") from exc
    return arrays, manifest
