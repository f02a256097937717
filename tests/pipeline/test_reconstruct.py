"""The Reconstructor and the batch runner on real photos, with an untrained model fitted per image."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from vitdeca import media
from vitdeca.cli import main
from vitdeca.errors import VitdecaError
from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68
from vitdeca.faces import read_image
from vitdeca.fit import FitConfig, landmark_nme
from vitdeca.pipeline import BatchRunner, Reconstructor, RunOptions, parse_save

PHOTO = "deca_testsamples/examples/IMG_0392_inputs.jpg"  # 224 x 224: detection is quick
GROUP = "dlib_examples/2008_002470.jpg"  # six small faces
QUICK = FitConfig(landmark_iterations=60, photometric_iterations=2)


@pytest.fixture(scope="module")
def rec(fit_model):
    return Reconstructor(fit_model, device="cpu", detail=False, fit=QUICK)


@pytest.fixture(scope="module")
def face(rec, faces_dir):
    (result,) = rec(faces_dir / PHOTO)
    return result


def _nme(a, b) -> float:
    return float(landmark_nme(torch.as_tensor(a)[None], torch.as_tensor(b)[None]))


def test_face_result_is_consistent(face, fit_model):
    assert _nme(face.landmarks2d, face.detected_landmarks) < 0.05
    assert face.fit_nme is not None and face.fit_nme == pytest.approx(
        _nme(face.landmarks2d, face.detected_landmarks), rel=0.02
    )
    # the 2D landmarks are the 3D ones projected into the crop, then mapped back to the photo: written
    # out by hand from DESIGN.md (weak perspective x_ndc = s·(X_xy + t), NDC → pixels with the y flip,
    # crop = A·photo + b), not with the package's own functions
    s, tx, ty = face.codes.camera[0].double().numpy()
    xyz = face.landmarks3d.astype(np.float64)
    ndc = s * (xyz[:, :2] + [tx, ty])
    crop_xy = np.stack([(ndc[:, 0] + 1.0) * 224 / 2, (1.0 - ndc[:, 1]) * 224 / 2], axis=1)
    a, b = face.crop_matrix[:, :2], face.crop_matrix[:, 2]
    photo_xy = np.linalg.solve(a, (crop_xy - b).T).T
    np.testing.assert_allclose(face.landmarks2d, photo_xy, atol=1e-3)
    head = fit_model.head
    assert face.vertices.shape == (head.n_vertices, 3) and face.mesh.faces.shape == tuple(head.faces.shape)
    with torch.no_grad():
        zeros = torch.zeros(1, head.n_expression), torch.zeros(1, head.n_pose)
        neutral = head(face.codes.shape, *zeros)
    assert np.allclose(face.neutral_vertices, neutral.vertices[0].numpy(), atol=1e-5)
    assert np.array_equal(face.now_landmarks, face.neutral_landmarks3d[list(NOW_LANDMARKS_IBUG68)])
    assert face.texture.shape == (256, 256, 3) and face.texture.dtype == np.uint8
    inside = face.alpha > 0.5
    assert face.depth_png[inside].min() >= 55 and face.depth_png[~inside].max() == 0
    assert face.render.shape == face.shape_render.shape == (224, 224, 3)
    assert face.vis().shape == (224, 4 * 224, 3)
    assert face.landmarks_visible.shape == (68,) and face.landmarks_visible.all()  # a frontal face


def test_profile_gets_a_mesh_and_honest_visibility(rec, faces_dir):
    """AFLW2000-3D image00181 (turned ~60°: the HOG detector misses it, the cascade finds it); then the
    same face with its chin cut off by the image border: landmarks outside the image are flagged."""
    pytest.importorskip(
        "facenet_pytorch", reason="the cascade's MTCNN stage needs facenet-pytorch", exc_type=ImportError
    )
    image = read_image(faces_dir / "deca_testsamples/AFLW2000/image00181.jpg")
    (face,) = rec(image)
    assert face.vertices.shape[0] == rec.model.head.n_vertices and np.isfinite(face.vertices).all()
    hidden = ~face.landmarks_visible
    assert 0 < hidden.sum() < 34  # the far side hides some points, not half the face
    low, high = face.landmarks2d[:, 1].min(), face.landmarks2d[:, 1].max()
    bottom = int(low + 0.85 * (high - low))  # cut the chin off
    (cut,) = rec(np.ascontiguousarray(image[:bottom]))
    outside = cut.landmarks2d[:, 1] > bottom
    assert outside.any() and not cut.landmarks_visible[outside].any()


def test_path_pil_and_array_inputs_agree(rec, faces_dir, face):
    from PIL import Image

    pil = Image.open(faces_dir / PHOTO)
    for image in (pil, np.asarray(pil.convert("RGB"))):
        (other,) = rec(image)
        assert torch.allclose(other.codes.shape, face.codes.shape, atol=1e-5)
    with pytest.raises(VitdecaError, match="dict"):
        rec({})


def test_all_faces_largest_first(rec, faces_dir):
    assert len(rec(faces_dir / GROUP)) == 1
    faces = rec(faces_dir / GROUP, all_faces=True)
    assert [f.face_index for f in faces] == list(range(6))
    areas = [(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert all(_nme(f.landmarks2d, f.detected_landmarks) < 0.08 for f in faces)


def test_crops_of_given_faces_match_prepare(rec, faces_dir):
    """``crop_faces`` (faces found elsewhere, e.g. annotated points) makes the crops ``prepare`` makes."""
    from vitdeca.faces import detect_faces

    prepared = rec.prepare(faces_dir / GROUP, all_faces=True)
    faces = detect_faces(prepared.image, rec.detector)[::-1]  # any order: numbered as given
    crops = rec.crop_faces(prepared.image, faces)
    assert [c.face_index for c in crops] == list(range(len(faces)))
    for crop, expected in zip(crops, prepared.crops[::-1], strict=True):
        np.testing.assert_allclose(crop.crop.matrix, expected.crop.matrix)
        np.testing.assert_array_equal(crop.crop.image, expected.crop.image)
        assert crop.image_shape == prepared.image.shape[:2]


def _mixed_folder(faces_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(faces_dir / PHOTO, folder / "person.jpg")
    shutil.copy(faces_dir / "dlib_examples" / "dogs.jpg", folder / "dogs.jpg")
    (folder / "truncated.jpg").write_bytes((faces_dir / PHOTO).read_bytes()[:600])
    (folder / "notes.png").write_text("not an image")
    return folder


def test_mixed_folder_writes_every_good_input(rec, faces_dir, tmp_path):
    import trimesh

    paths = media.expand_inputs([_mixed_folder(faces_dir, tmp_path)])
    options = RunOptions(save=parse_save("all"), progress=False, batch_size=4)
    summary = BatchRunner(rec, tmp_path / "out", options).run(paths)
    status = {r.path.rsplit("/", 1)[1]: (r.status, r.message) for r in summary.records}
    assert status["person.jpg"] == ("ok", "")
    assert status["dogs.jpg"][0] == "no_face"
    assert re.fullmatch(r"no face found \(faces smaller than about \d+ px across are missed in this image\)",
                        status["dogs.jpg"][1])  # fmt: skip
    assert status["truncated.jpg"][0] == "failed" and "truncated.jpg" in status["truncated.jpg"][1]
    assert status["notes.png"][0] == "failed" and "notes.png" in status["notes.png"][1]
    folder = tmp_path / "out" / "person"
    expected = {
        "person.obj",
        "person.mtl",
        "person_texture.png",
        "person_eyes.png",  # the eyeballs' texture: the OBJ's eye_left / eye_right objects use it
        "person.ply",
        "person.glb",
        "person_landmarks2d.npy",
        "person_landmarks2d_visible.npy",
        "person_landmarks3d.npy",
        "person_depth.png",
        "person_vis.png",
        "person_codes.npz",
        "person_neutral.obj",
        "person_now_landmarks.npy",
        "person_arkit.json",
        "person_avatar.glb",
    }
    assert {p.name for p in folder.iterdir()} == expected | {".vitdeca-done.json"}  # + completion marker
    record = json.loads((tmp_path / "out" / "summary.json").read_text())["records"]
    assert sorted(next(r for r in record if r["status"] == "ok")["outputs"]) == sorted(
        f"person/{name}" for name in expected
    )
    assert "map_Kd person_texture.png" in (folder / "person.mtl").read_text()
    codes = np.load(folder / "person_codes.npz")
    assert str(codes["head_model"]) == "ict" and codes["light"].shape == (27,)
    visible = np.load(folder / "person_landmarks2d_visible.npy")
    assert visible.dtype == bool and visible.shape == (68,)
    assert np.load(folder / "person_landmarks2d.npy").dtype == np.float32
    # the OBJ holds the head model's mesh of the saved codes, vertex for vertex
    lines = (folder / "person.obj").read_text().splitlines()
    obj_vertices = np.array([line.split()[1:] for line in lines if line.startswith("v ")], dtype=np.float64)
    head = rec.model.head
    with torch.no_grad():
        expected = head(*(torch.from_numpy(codes[k])[None] for k in ("shape", "expression", "pose")))
    assert obj_vertices.shape[0] > head.n_vertices  # the head's vertices first, then the eyeballs'
    np.testing.assert_allclose(
        obj_vertices[: head.n_vertices], expected.vertices[0].double().numpy(), atol=1e-4
    )
    now = np.load(folder / "person_now_landmarks.npy")
    neutral = trimesh.load(folder / "person_neutral.obj", process=False)
    assert (
        now.shape == (7, 3)
        and np.min(np.linalg.norm(neutral.vertices[:, None] - now[None], axis=2), 0).max() < 1e-4
    )
    lmk = np.load(folder / "person_landmarks2d.npy")
    assert lmk.shape == (68, 2) and lmk.max() < 224


def test_video_with_a_broken_frame(rec, faces_dir, tmp_path):
    photo = media.fit_height(
        np.asarray(__import__("PIL.Image").Image.open(faces_dir / PHOTO).convert("RGB")), 224
    )
    with media.video_writer(tmp_path / "clip.mp4", fps=10) as write:
        for i in range(8):
            frame = np.zeros((224, 288, 3), np.uint8)
            frame[:, 4 * i : 4 * i + 224] = photo
            write(frame)
    data = bytearray((tmp_path / "clip.mp4").read_bytes())
    at = len(data) * 9 // 10  # the first (key) frame holds most bytes: break a later one
    data[at : at + 100] = bytes(b ^ 0x5A for b in data[at : at + 100])
    (tmp_path / "broken.mp4").write_bytes(bytes(data))
    options = RunOptions(save=parse_save("vis,codes,landmarks"), progress=False)
    summary = BatchRunner(rec, tmp_path / "out", options).run([tmp_path / "broken.mp4"])
    (record,) = summary.records
    n = int(record.message.split()[0])
    assert record.status == "ok" and 0 < n <= 8
    assert len(list(media.iter_video(tmp_path / "out" / "broken" / "broken_vis.mp4"))) == n
    codes = np.load(tmp_path / "out" / "broken" / "broken_codes.npz")
    assert codes["shape"].shape[0] == len(codes["frame_index"]) >= 1


def test_fitting_is_repeatable_and_independent_of_the_batch(rec, faces_dir):
    """The same photo with the same settings (thread count included: thread policy is the caller's, and
    a different count changes float rounding) gives the same codes: again, and inside a batch with another
    photo (bit-identical; see :func:`vitdeca.fit.fit_codes`)."""
    a, b = rec.prepare(faces_dir / PHOTO), rec.prepare(faces_dir / "deca_testsamples" / "exp" / "7.jpg")
    alone = rec.reconstruct_crops([a])[0][0].codes
    again = rec.reconstruct_crops([a])[0][0].codes
    batched = rec.reconstruct_crops([b, a])[1][0].codes
    for name, value in alone.as_dict().items():
        if value is not None:
            assert torch.equal(value, again.as_dict()[name]), name
            assert torch.equal(value, batched.as_dict()[name]), name


def test_transfer_keeps_identity_and_takes_expression(rec, faces_dir, tmp_path):
    from vitdeca.pipeline.transfer import transfer

    a, b = faces_dir / PHOTO, faces_dir / "deca_testsamples" / "exp" / "7.jpg"
    written = transfer(rec, a, b, tmp_path, parse_save("codes,vis,obj"))
    stem = "IMG_0392_inputs_as_7"
    assert tmp_path / stem / f"{stem}_vis.png" in written
    got = np.load(tmp_path / stem / f"{stem}_codes.npz")
    (fa,), (fb,) = rec(a), rec(b)
    assert (fa.codes.expression - fb.codes.expression).abs().max() > 0.2  # the test can tell them apart
    # A and B were fitted together, fa and fb alone: fitting does not depend on the batch (exact)
    assert np.array_equal(got["shape"], fa.codes.shape.numpy().ravel())
    assert np.array_equal(got["expression"], fb.codes.expression.numpy().ravel())
    with pytest.raises(VitdecaError, match="dogs.jpg: no face"):
        transfer(rec, a, faces_dir / "dlib_examples" / "dogs.jpg", tmp_path, parse_save("obj"))


def test_cli_reconstruct_demo(rec, tmp_path, monkeypatch, capsys):
    calls = []

    def fake_from_pretrained(path, **kwargs):
        calls.append((path, kwargs))
        return rec

    monkeypatch.setattr(Reconstructor, "from_pretrained", staticmethod(fake_from_pretrained))
    status = main(["reconstruct", "--demo", "--out", str(tmp_path), "--save", "obj,vis", "--no-progress"])
    assert status == 0
    from vitdeca.zoo import DEFAULT_MODEL, installed

    expected = (DEFAULT_MODEL, "refine") if installed() else (None, "fit")  # the default model when shipped
    assert [(path, kwargs["method"]) for path, kwargs in calls] == [expected]
    assert calls[0][1]["device"] == "auto" and calls[0][1]["detail"] is True
    assert (tmp_path / "astronaut" / "astronaut.obj").exists() and (
        tmp_path / "astronaut" / "astronaut_vis.png"
    ).exists()
    assert (
        capsys.readouterr()
        .out.strip()
        .endswith(f"1 input: 1 ok, 0 no face, 0 failed (1 face) -> {tmp_path / 'summary.json'}")
    )


def test_checkpoint_regresses_codes(ict_archive, faces_dir, tmp_path):
    from vitdeca.model import DecaModel, ModelConfig

    path = tmp_path / "model.pt"
    DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=True)).save(path)
    rec = Reconstructor.from_pretrained(path, device="cpu")
    assert rec.fit_config is None
    (face,) = rec(faces_dir / PHOTO)
    assert face.fit_nme is None and face.detail is not None and face.detail.uv_coords.shape[1] == 2
    written = BatchRunner(rec, tmp_path / "out", RunOptions(save=parse_save("obj"), progress=False)).run(
        [faces_dir / PHOTO]
    )
    assert "IMG_0392_inputs/IMG_0392_inputs_detail.obj" in written.records[0].outputs


def test_fitting_without_weights_builds_no_encoder(ict_archive):
    rec = Reconstructor.from_pretrained(None, device="cpu")
    assert rec.fit_config is not None and not rec.refine
    assert rec.model.encoder is None and rec.model.detail_encoder is None  # no ViT that would never run


def test_reconstruction_includes_the_eyes(face, fit_model):
    """The photo's eyes are open and look roughly at the camera; the eyeballs are drawn and posed."""
    from vitdeca.faces import transform_points
    from vitdeca.render.camera import project_points

    eyes = face.eyes
    assert eyes is not None and eyes.open.all() and (eyes.blink < 0.5).all()
    assert np.all(np.abs(eyes.gaze) < 35.0)
    assert eyes.vertices.shape == (fit_model.head.eyeballs().n_vertices, 3)
    # the drawn eyeballs: their projected pivots lie between the detected eye corners, on the render
    crop = transform_points(face.detected_landmarks, face.crop_matrix)
    pivots = project_points(torch.as_tensor(eyes.vertices)[None].float(), face.codes.camera, 224, 224)[0]
    for corners, index in (((42, 45), eyes.vertices[:, 0] > 0), ((36, 39), eyes.vertices[:, 0] < 0)):
        centre = pivots[torch.from_numpy(index)].mean(0).numpy()
        low, high = crop[list(corners)].min(0) - 3, crop[list(corners)].max(0) + 3
        assert np.all(centre[0] >= low[0]) and np.all(centre[0] <= high[0])
    weights = face.arkit_weights
    from vitdeca.arkit import eye_angles

    angles = eye_angles(weights)
    assert abs(angles["left"]["yaw"] - np.clip(eyes.gaze[0, 0], -30, 30)) < 1e-3


def test_bf16_precision_runs_the_networks_in_bf16_and_the_geometry_in_float32(ict_archive, faces_dir):
    """``precision="bf16"``: the encoders and the detail decoder compute in bfloat16, the codes, mesh and
    landmarks stay float32 and within a pixel of float32 inference; an unknown precision is one clear line."""
    from vitdeca.model import DecaModel, ModelConfig

    torch.manual_seed(0)
    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=True))
    seen: dict[str, list[torch.dtype]] = {"encoder": [], "detail_encoder": [], "detail_decoder": []}
    for name, values in seen.items():
        getattr(model, name).register_forward_hook(lambda m, i, out, values=values: values.append(out.dtype))
    (full,) = Reconstructor(model, device="cpu", precision="fp32")(faces_dir / PHOTO)
    assert {d for values in seen.values() for d in values} == {torch.float32}
    for values in seen.values():
        values.clear()
    (half,) = Reconstructor(model, device="cpu", precision="bf16")(faces_dir / PHOTO)
    assert all(values == [torch.bfloat16] for values in seen.values()), seen
    assert half.codes.shape.dtype == half.codes.camera.dtype == torch.float32
    assert half.vertices.dtype == np.float32 and half.detail is not None
    assert np.abs(half.landmarks2d - full.landmarks2d).max() < 1.0  # original-image pixels
    with pytest.raises(VitdecaError, match="unknown precision 'fp16'"):
        Reconstructor(model, device="cpu", precision="fp16")


def test_render_in_image_draws_the_whole_head_beyond_the_crop(rec, faces_dir):
    """A video's vis renders (``Reconstructor.render_in_image``) agree with the crop renders warped back
    inside the crop and go on beyond its edge, where the warped crop renders stop (the head is larger than
    the crop: skull and neck)."""
    image = read_image(faces_dir / "deca_testsamples" / "exp" / "7.jpg")
    (face,) = rec(image)
    size = (image.shape[1], image.shape[0])
    render, shape, alpha = rec.render_in_image(face, image.shape[:2])
    assert render.shape == shape.shape == image.shape and alpha.shape == image.shape[:2]
    in_crop = media.warp_to_image(np.ones(face.alpha.shape, np.float32), face.crop_matrix, size) > 0.5
    warped = media.warp_to_image(face.alpha.astype(np.float32), face.crop_matrix, size) > 0.5
    whole = alpha > 0.5
    agree = (whole & warped & in_crop).sum() / max((whole | warped)[in_crop].sum(), 1)
    assert agree > 0.97, agree
    assert not (warped & ~in_crop).any() and (whole & ~in_crop).sum() > 0.1 * whole.sum()
    grey = np.abs(shape.astype(float) - media.warp_to_image(face.shape_render, face.crop_matrix, size))
    assert np.median(grey[whole & warped & in_crop]) < 12  # the same shading, rendered at another size
