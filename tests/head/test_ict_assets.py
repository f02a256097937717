"""Installing ICT-FaceKit: zip, folder and URL sources, the verified cache, and every kind of bad input."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from vitdeca.errors import VitdecaError
from vitdeca.head import load_head_model
from vitdeca.head.ict_assets import cache_paths, install_ict, load_cache

PREFIX = "ICT-FaceKit-master/FaceXModel/"


def _member(archive: Path, name: str) -> bytes:
    with zipfile.ZipFile(archive) as zf:
        return zf.read(PREFIX + name)


def _assert_no_cache(home: Path) -> None:
    """Nothing under the cache folder (no half-written or temporary files)."""
    folder = cache_paths(home).folder
    leftovers = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    assert leftovers == []


def test_folder_source_gives_the_same_cache_as_the_zip(ict_head, ict_archive, tmp_path):
    extracted = tmp_path / "extracted"
    with zipfile.ZipFile(ict_archive) as zf:
        zf.extractall(extracted, [m for m in zf.namelist() if m.startswith(PREFIX)])
    try:
        install_ict(extracted, home=tmp_path / "home")  # the root folder; FaceXModel is found inside
        arrays, manifest = load_cache(cache_paths(tmp_path / "home"))
    finally:
        shutil.rmtree(extracted)
    np.testing.assert_array_equal(arrays["template"], ict_head.template_vertices.numpy())
    np.testing.assert_array_equal(arrays["faces"], ict_head.faces.numpy())
    np.testing.assert_array_equal(arrays["shapedirs"], ict_head.basis[:100].numpy())
    assert manifest["sha256"] == ict_head.checksum().removeprefix("ict:")  # conversion is deterministic
    assert manifest["regions"]["face"] == [0, 9409] and manifest["units"] == "cm"


def test_first_use_installs_from_a_file_url(ict_archive, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("VITDECA_ICT_FACEKIT", ict_archive.resolve().as_uri())
    monkeypatch.setenv("VITDECA_HOME", str(home))
    head = load_head_model("ict")
    assert head.n_vertices == 14062
    paths = cache_paths(home)
    manifest = json.loads(paths.manifest.read_text())
    assert manifest["source"].startswith("file://")
    assert not (paths.folder / "download").exists()  # the downloaded archive is removed after conversion
    assert sorted(p.name for p in paths.folder.iterdir()) == sorted([paths.arrays.name, paths.manifest.name])


def test_install_is_a_no_op_when_cached_and_checks_the_checksum(ict_head, ict_home, tmp_path):
    # a valid cache: nothing to convert even from a missing source
    assert install_ict(tmp_path / "missing.zip", home=ict_home).exists()
    wrong = "0" * 64
    with pytest.raises(VitdecaError, match="checksum mismatch"):
        install_ict(_tiny_zip(tmp_path), home=tmp_path / "h", sha256=wrong)
    _assert_no_cache(tmp_path / "h")
    url = _tiny_zip(tmp_path).as_uri()  # the download path checks the checksum too, and cleans up
    with pytest.raises(VitdecaError, match=r"file://.*not_ict\.zip: checksum mismatch"):
        install_ict(url, home=tmp_path / "h", sha256=wrong)
    _assert_no_cache(tmp_path / "h")


def test_corrupt_cache_is_detected(ict_home, tmp_path):
    home = tmp_path / "home"
    paths = cache_paths(home)
    shutil.copytree(cache_paths(ict_home).folder, paths.folder)
    with open(paths.arrays, "r+b") as handle:  # flip one byte in the middle of the arrays
        handle.seek(paths.arrays.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(VitdecaError, match=r"corrupt cache.*--force"):
        load_head_model("ict", home=home)


def _tiny_zip(tmp_path: Path) -> Path:
    path = tmp_path / "not_ict.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    return path


def test_missing_source(tmp_path):
    with pytest.raises(VitdecaError, match=r"nowhere\.zip: no such file"):
        install_ict(tmp_path / "nowhere.zip", home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def test_zip_that_is_not_ict(tmp_path):
    with pytest.raises(VitdecaError, match=r"not_ict\.zip: is not an ICT-FaceKit archive"):
        install_ict(_tiny_zip(tmp_path), home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def test_truncated_zip(ict_archive, tmp_path):
    truncated = tmp_path / "truncated.zip"
    with open(ict_archive, "rb") as handle:
        truncated.write_bytes(handle.read(2_000_000))
    with pytest.raises(VitdecaError, match=r"truncated\.zip: not a readable zip archive"):
        install_ict(truncated, home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def test_corrupt_member_in_zip(ict_archive, tmp_path):
    neutral = _member(ict_archive, "generic_neutral_mesh.obj")
    identity = bytearray(_member(ict_archive, "identity000.obj"))
    path = tmp_path / "corrupt.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(PREFIX + "generic_neutral_mesh.obj", neutral)
        zf.writestr(PREFIX + "identity000.obj", bytes(identity))
    data = bytearray(path.read_bytes())
    at = data.index(identity[5000:5040], data.index(b"identity000.obj"))  # corrupt the stored bytes
    data[at] = ord("9") if data[at] != ord("9") else ord("8")
    path.write_bytes(bytes(data))
    with pytest.raises(VitdecaError, match=r"identity000\.obj: cannot read.*corrupt or truncated"):
        install_ict(path, home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def _folder_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    root = tmp_path / "ict" / "FaceXModel"
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return tmp_path / "ict"


def test_truncated_obj_in_folder(ict_archive, tmp_path):
    neutral = _member(ict_archive, "generic_neutral_mesh.obj")
    identity = _member(ict_archive, "identity000.obj")
    src = _folder_with(tmp_path, {"generic_neutral_mesh.obj": neutral, "identity000.obj": identity[:400_000]})
    with pytest.raises(VitdecaError, match=r"identity000\.obj: .*truncated"):
        install_ict(src, home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def test_incomplete_folder_names_the_missing_file(ict_archive, tmp_path):
    src = _folder_with(
        tmp_path, {"generic_neutral_mesh.obj": _member(ict_archive, "generic_neutral_mesh.obj")}
    )
    with pytest.raises(VitdecaError, match=r"identity000\.obj: missing"):
        install_ict(src, home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def test_wrong_mesh_and_garbage_numbers(ict_archive, tmp_path):
    cube = b"v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1\n"
    src = _folder_with(tmp_path, {"generic_neutral_mesh.obj": cube})
    with pytest.raises(VitdecaError, match=r"generic_neutral_mesh\.obj: has 3 vertices, expected 26719"):
        install_ict(src, home=tmp_path / "home")
    garbage = _member(ict_archive, "generic_neutral_mesh.obj").replace(b"v 0 -2.48251", b"v 0 -2.4x251", 1)
    (src / "FaceXModel" / "generic_neutral_mesh.obj").write_bytes(garbage)
    with pytest.raises(VitdecaError, match=r"generic_neutral_mesh\.obj: is not a valid OBJ file"):
        install_ict(src, home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def test_unreachable_url(tmp_path):
    with pytest.raises(VitdecaError, match=r"http://127\.0\.0\.1:9/ict\.zip: cannot download"):
        install_ict("http://127.0.0.1:9/ict.zip", home=tmp_path / "home")
    _assert_no_cache(tmp_path / "home")


def test_a_pinned_checksum_is_checked_even_over_a_valid_cache(ict_home, ict_archive, tmp_path):
    home = tmp_path / "home"
    paths = cache_paths(home)
    shutil.copytree(cache_paths(ict_home).folder, paths.folder)
    before = paths.arrays.read_bytes()
    recorded = json.loads(paths.manifest.read_text())["source_sha256"]
    assert install_ict(tmp_path / "missing.zip", home=home, sha256=recorded.upper()) == paths.manifest
    with pytest.raises(VitdecaError, match="checksum mismatch"):
        install_ict(ict_archive, home=home, sha256="0" * 64)
    assert paths.arrays.read_bytes() == before  # the cache is left as it was
