"""The demo's handler logic on real photos: the files are those of ``vitdeca reconstruct``; bad files,
oversized uploads and photos without a face get one-line answers; videos report progress per frame."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from vitdeca import media
from vitdeca.cli import main
from vitdeca.demo import engine as engine_module
from vitdeca.demo.engine import DemoEngine, demo_save, safe_name
from vitdeca.errors import VitdecaError
from vitdeca.faces.image_io import read_image

PHOTO = "deca_testsamples/examples/IMG_0392_inputs.jpg"  # 224 x 224: detection is quick


def _zip_names(path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        return set(zf.namelist())


def test_photo_gives_the_files_of_reconstruct(engine, faces_dir, tmp_path):
    photo = faces_dir / PHOTO
    seen: list[tuple[float, str]] = []
    result = engine.run(photo, progress=lambda f, text: seen.append((f, text)))
    assert result.message == "IMG_0392_inputs.jpg: 1 face reconstructed" and result.kind == "image"
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(seen) >= 4
    # the same photo through the command line, with the same outputs asked for
    out = tmp_path / "cli"
    save = ",".join(sorted(demo_save()))
    argv = ["reconstruct", str(photo), "--out", str(out), "--save", save, "--method", "fit", "--no-progress"]
    assert main(argv) == 0  # the engine fixture fits (no checkpoint)
    cli_files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert _zip_names(result.zip) == cli_files
    with zipfile.ZipFile(result.zip) as zf:
        stem = "IMG_0392_inputs/IMG_0392_inputs"
        for name in (f"{stem}_landmarks2d.npy", f"{stem}_landmarks3d.npy"):
            demo = np.load(zf.open(name))
            assert np.allclose(demo, np.load(out / name), atol=1e-3), name
        summary = json.loads(zf.read("summary.json"))
    assert summary["counts"] == {"ok": 1, "no_face": 0, "failed": 0}
    # what the page shows are those files
    assert result.vis.name.endswith("_vis.png") and result.model.suffix == ".glb"
    assert np.array_equal(read_image(result.depth), read_image(out / f"{stem}_depth.png"))
    vis = read_image(result.vis)
    assert vis.shape == read_image(out / f"{stem}_vis.png").shape and vis.shape[1] == 4 * vis.shape[0]


def test_glb_is_the_reconstructed_mesh(engine, faces_dir):
    import trimesh

    result = engine.run(faces_dir / PHOTO)
    assert result.model.is_file() and result.model.suffix == ".glb"  # the avatar when the pipeline writes it
    plain = result.model.with_name(result.model.name.replace("_avatar.glb", ".glb"))  # reconstruct's GLB
    from ..test_io import obj_objects

    scene = trimesh.load(plain, force="scene")
    (mesh,) = scene.geometry.values()
    vertices, _, objects = obj_objects(plain.with_suffix(".obj"))
    head = objects["head"] if "head" in objects else objects[""]  # the OBJ adds the eyeballs as objects
    head_vertices = np.asarray(vertices)[head["v"]]
    assert len(mesh.faces) == len(head["f"]) > 10_000
    bounds = np.stack([head_vertices.min(0), head_vertices.max(0)])
    assert np.allclose(mesh.bounds, bounds, atol=1e-4)  # same surface (the GLB splits UV seams)
    assert mesh.visual.material.baseColorTexture is not None


def test_bad_file_is_one_line_naming_it(engine, tmp_path):
    bad = tmp_path / "holiday photo.jpg"
    bad.write_bytes(b"\x89 not a jpeg at all")
    with pytest.raises(VitdecaError) as info:
        engine.run(bad)
    text = str(info.value)
    assert text.startswith("holiday_photo.jpg: not a readable image") and "\n" not in text
    assert str(engine.workdir) not in text and str(tmp_path) not in text


def test_no_face(engine, faces_dir):
    result = engine.run(faces_dir / "dlib_examples" / "dogs.jpg")
    assert result.message.startswith("dogs.jpg: no face found")
    assert result.zip is None and result.model is None and result.vis is None


def test_upload_limits(tmp_path, faces_dir):
    small = DemoEngine(workdir=tmp_path / "jobs", max_upload_mb=0.01, factory=_never_built)
    photo = faces_dir / PHOTO
    with pytest.raises(VitdecaError, match=r"IMG_0392_inputs.jpg: 0.0\d+ MB is over the demo's upload limit"):
        small.run(photo)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(VitdecaError, match="empty.png: the file is empty"):
        small.run(empty)
    with pytest.raises(VitdecaError, match="no input"):
        small.run(None)


def test_methods_without_a_checkpoint(tmp_path):
    demo = DemoEngine(workdir=tmp_path, factory=_never_built)
    assert demo.methods == ("fit",) and demo.default_method == "fit"
    with pytest.raises(VitdecaError, match="'regress' is not available .it needs --checkpoint."):
        demo.reconstructor("regress")
    with pytest.raises(VitdecaError, match="'magic' is not available; choose from fit"):
        demo.reconstructor("magic")


def test_least_recently_used_reconstructors_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "KEEP_RECONSTRUCTORS", 2)
    built = []
    demo = DemoEngine("model.pt", workdir=tmp_path, factory=lambda m, d: built.append((m, d)) or (m, d))
    for method in ("regress", "refine", "regress", "fit", "refine"):
        demo.reconstructor(method)
    # regress was used again before fit came, so refine was the one dropped and is built again
    assert built == [("regress", True), ("refine", True), ("fit", True), ("refine", True)]


def test_old_jobs_are_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_module, "KEEP_JOBS", 2)
    demo = DemoEngine(workdir=tmp_path, factory=_never_built)
    jobs = [demo._new_job() for _ in range(4)]
    assert [j.exists() for j in jobs] == [False, False, True, True]  # the newest 2, the new one included


def test_safe_name():
    assert safe_name("/tmp/x/../My Photo (1).JPG") == "My_Photo_1_.JPG"
    assert safe_name(".hidden.png") == "hidden.png" and safe_name("...") == "upload"


@pytest.mark.slow
def test_video_reports_frames(engine, astronaut_png, tmp_path):
    from vitdeca.demo.examples import clip_frames

    clip = tmp_path / "clip.mp4"
    with media.video_writer(clip, 8.0) as write:
        for frame in clip_frames(read_image(astronaut_png), n_frames=3):
            write(frame)
    small = DemoEngine(workdir=tmp_path / "jobs", max_frames=2, factory=engine.reconstructor)
    texts: list[str] = []
    result = small.run(clip, progress=lambda f, text: texts.append(text))
    assert result.kind == "video" and result.message.startswith("clip.mp4: 2 frames: 2 with a face")
    assert [t for t in texts if t.startswith("frame")] == ["frame 1/2", "frame 2/2"]
    assert result.vis_video.name == "clip_vis.mp4"
    assert result.model is None or result.model.name == "clip_avatar.glb"  # the animated avatar
    with media.Video(result.vis_video) as video:
        assert video.n_frames in (2, None)
    with zipfile.ZipFile(result.zip) as zf:
        codes = np.load(zf.open("clip/clip_codes.npz"))
        assert codes["frame_index"].tolist() == [0, 1]


def _never_built(method, detail):
    raise AssertionError("no reconstructor should be needed here")


def test_checkpoint_methods_match_reconstruct(ict_archive, ict_home, faces_dir, tmp_path, monkeypatch):
    """With a checkpoint (an untrained one: only the code path matters), all three methods are offered
    and regress gives the files of ``reconstruct --checkpoint --method regress``."""
    monkeypatch.setenv("VITDECA_ICT_FACEKIT", str(ict_archive))
    monkeypatch.setenv("VITDECA_HOME", str(ict_home))
    from vitdeca.model import DecaModel, ModelConfig

    checkpoint = tmp_path / "tiny.pt"
    DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=False)).save(checkpoint)
    demo = DemoEngine(checkpoint, device="cpu", workdir=tmp_path / "jobs")
    assert demo.methods == ("regress", "refine", "fit") and demo.default_method == "refine"
    regress, refine = demo.reconstructor("regress"), demo.reconstructor("refine")
    assert regress.fit_config is None and refine.refine and refine.fit_config is not None
    assert demo.reconstructor("regress") is regress  # kept, not rebuilt
    photo = faces_dir / PHOTO
    result = demo.run(photo, method="regress")
    assert result.method == "regress" and result.message.endswith("1 face reconstructed")
    out = tmp_path / "cli"
    save = ",".join(sorted(demo_save()))
    argv = ["reconstruct", str(photo), "--out", str(out), "--save", save, "--checkpoint", str(checkpoint)]
    assert main([*argv, "--method", "regress", "--device", "cpu", "--no-progress"]) == 0
    name = "IMG_0392_inputs/IMG_0392_inputs_landmarks2d.npy"
    with zipfile.ZipFile(result.zip) as zf:
        assert set(zf.namelist()) == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
        assert np.allclose(np.load(zf.open(name)), np.load(out / name), atol=1e-4)


def test_engine_builds_its_reconstructors_at_its_precision(tmp_path, monkeypatch):
    """``vitdeca demo --precision bf16`` → every reconstructor the engine builds runs at bf16."""
    from vitdeca.pipeline import Reconstructor

    seen = []
    monkeypatch.setattr(Reconstructor, "from_pretrained", lambda *a, **k: seen.append(k["precision"]))
    DemoEngine(workdir=tmp_path, precision="bf16").reconstructor("fit")
    assert seen == ["bf16"]
