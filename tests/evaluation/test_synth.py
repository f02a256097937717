"""Synthetic ground truth: the generator's files, determinism, units, and `vitdeca eval synth` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitdeca.cli import main
from vitdeca.data.synth import SynthOptions, scan_topology, write_synthetic_dataset
from vitdeca.data.synth_appearance import PhotoBackgrounds, TexelGeometry, procedural_albedo, sample_skin
from vitdeca.data.synth_render import eyeballs, fit_camera
from vitdeca.evaluation.meshfile import read_mesh
from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68
from vitdeca.evaluation.now_dataset import read_image_list
from vitdeca.evaluation.pp import read_pp

TINY = dict(n_images=4, images_per_subject=2, seed=3, size=64, supersample=1, uv_size=128, batch_size=4)


@pytest.fixture(scope="module")
def home(ict_head, ict_home):
    """load_head_model("ict") inside the code under test finds the session's ICT cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VITDECA_HOME", str(ict_home))
        yield ict_home


pytestmark = pytest.mark.usefixtures("module_single_thread")


@pytest.fixture(scope="module")
def dataset(home, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    write_synthetic_dataset(out, SynthOptions(**TINY), progress=False)
    return out


def _files(root: Path, patterns: tuple[str, ...]) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for pat in patterns for p in sorted(root.glob(pat))}


SAVED = ("iphone_pictures/*/*/*.jpg", "scans/*/*.obj", "scans_lmks_onlypp/*/*.pp", "landmarks2d/*/*/*.npy",
         "masks/*/*/*.png", "albedo/*.png", "manifest.jsonl", "imagepathsvalidation.txt")  # fmt: skip


def test_layout_lists_every_image_with_its_files(dataset):
    items = read_image_list(dataset, "val")
    assert len(items) == 4
    assert sorted({i.subject for i in items}) == ["SUBJ_00000", "SUBJ_00001"]  # 2 + 2 images
    assert {i.category for i in items} <= {"neutral", "expression"}
    for item in items:
        for folder, suffix in (("iphone_pictures", ".jpg"), ("landmarks2d", ".npy"), ("masks", ".png")):
            assert (dataset / folder / item.subject / item.category / f"{item.stem}{suffix}").is_file()
    for subject in ("SUBJ_00000", "SUBJ_00001"):
        assert len(list((dataset / "scans" / subject).glob("*.obj"))) == 1
        assert len(list((dataset / "scans_lmks_onlypp" / subject).glob("*.pp"))) == 1
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["synth"]["seed"] == 3 and meta["images"] == 4


def test_manifest_trains_through_face_dataset(dataset):
    from vitdeca.data import FaceDataset
    from vitdeca.faces.geometry import crop_square, square_matrix, transform_points

    data = FaceDataset(dataset, size=32)
    assert len(data) == 4
    assert data.identities == ["SUBJ_00000", "SUBJ_00001"]
    assert data.identity_index.tolist() == [0, 0, 1, 1]
    record = data.records[3]
    item = data[3]
    expected = transform_points(
        np.array(record["landmarks"]), square_matrix(*crop_square(record["landmarks"]), 32)
    )
    np.testing.assert_allclose(item.landmarks.numpy(), expected, atol=1e-4)
    assert item.image.shape == (3, 32, 32) and item.mask.sum() > 0.2 * 32 * 32  # the saved face mask


def test_same_seed_same_bytes_other_seed_other_images(dataset, home, tmp_path):
    again = tmp_path / "again"
    write_synthetic_dataset(again, SynthOptions(**TINY), progress=False)
    first, second = _files(dataset, SAVED), _files(again, SAVED)
    assert len(first) == 4 * 3 + 2 * 2 + 2 + 2 and first == second
    codes_a, codes_b = np.load(dataset / "codes.npz"), np.load(again / "codes.npz")
    for key in codes_a.files:
        np.testing.assert_array_equal(codes_a[key], codes_b[key])
    other = tmp_path / "other"
    write_synthetic_dataset(other, SynthOptions(**{**TINY, "seed": 4, "n_images": 1}), progress=False)
    image = "iphone_pictures/SUBJ_00000/neutral/IMG_000000.jpg"
    assert (other / image).read_bytes() != (dataset / image).read_bytes()


def test_landmarks_are_the_weak_perspective_projection_of_the_true_codes(dataset, ict_head):
    codes = np.load(dataset / "codes.npz")
    with torch.no_grad():
        out = ict_head(*(torch.from_numpy(codes[k]) for k in ("shape", "expression", "pose")))
    points = out.landmarks3d.double().numpy()
    s, tx, ty = (codes["camera"][:, k, None].astype(np.float64) for k in range(3))
    size = 64
    x = (s * (points[..., 0] + tx) + 1.0) * size / 2  # by hand: NDC -> pixels with the y flip
    y = (1.0 - s * (points[..., 1] + ty)) * size / 2
    np.testing.assert_allclose(codes["landmarks2d"], np.stack([x, y], -1), atol=1e-3)
    for k, image in enumerate(codes["image"]):
        saved = np.load(dataset / "landmarks2d" / image.replace(".jpg", ".npy"))
        np.testing.assert_array_equal(saved, codes["landmarks2d"][k])
    box = codes["landmarks2d"].max(axis=1) - codes["landmarks2d"].min(axis=1)
    fraction = box.mean(axis=1) / size
    assert np.all((fraction > 0.62 - 1e-4) & (fraction < 0.72 + 1e-4))


def test_scans_are_the_neutral_outer_surface_in_millimetres(dataset, ict_head):
    codes = np.load(dataset / "codes.npz")
    shape = torch.from_numpy(codes["shape"][codes["subject"] == "SUBJ_00001"][:1])
    with torch.no_grad():
        neutral = ict_head(shape, torch.zeros(1, ict_head.n_expression), torch.zeros(1, 3))
    keep, faces = scan_topology(ict_head)
    vertices, scan_faces = read_mesh(dataset / "scans/SUBJ_00001/SUBJ_00001.obj")
    assert len(vertices) == 11248  # ICT's face + head-and-neck regions, no sockets
    np.testing.assert_allclose(vertices, neutral.vertices[0].numpy()[keep] * 10.0, atol=1e-3)
    np.testing.assert_array_equal(scan_faces, faces)
    picked = read_pp(dataset / "scans_lmks_onlypp/SUBJ_00001/SUBJ_00001_picked_points.pp").points
    expected = neutral.landmarks3d[0, list(NOW_LANDMARKS_IBUG68)].numpy() * 10.0
    np.testing.assert_allclose(picked, expected, atol=1e-3)
    outer_eyes = np.linalg.norm(picked[0] - picked[3])
    assert 80.0 < outer_eyes < 110.0  # an adult's outer eye-corner distance, in mm


def test_eval_synth_oracle_is_zero_and_scale_is_cm_to_mm(dataset, tmp_path, capsys):
    from vitdeca.evaluation.meshfile import read_landmarks
    from vitdeca.evaluation.now import align_and_measure

    out = tmp_path / "oracle"
    assert (
        main(
            [
                "-q",
                "eval",
                "synth",
                "--dataset",
                str(dataset),
                "--oracle",
                "--out",
                str(out),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["count"] == summary["expected"] == 4
    assert summary["median"] < 1e-6 and summary["mean"] < 1e-6
    prediction = out / "predictions/SUBJ_00000/neutral/IMG_000000"
    pred_v, pred_f = read_mesh(prediction.with_suffix(".obj"))
    scan_v, scan_f = read_mesh(dataset / "scans/SUBJ_00000/SUBJ_00000.obj")
    scan_l = read_pp(dataset / "scans_lmks_onlypp/SUBJ_00000/SUBJ_00000_picked_points.pp").points
    result = align_and_measure(
        scan_v, scan_f, scan_l, pred_v, pred_f, read_landmarks(prediction.with_suffix(".npy"))
    )
    assert result.transform.scale == pytest.approx(10.0, rel=1e-6)  # ICT centimetres -> scan millimetres


def test_eval_synth_with_a_checkpoint_and_with_fitting(dataset, home, tmp_path):
    from vitdeca.evaluation.baseline import write_prediction
    from vitdeca.evaluation.now_dataset import evaluate_now
    from vitdeca.evaluation.synthetic import evaluate_model
    from vitdeca.model import DecaModel, ModelConfig

    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=False, image_size=32, uv_size=32))
    model.save(tmp_path / "model.pt")
    trained = evaluate_model(dataset, tmp_path / "ckpt", tmp_path / "model.pt", workers=1, progress=False)
    # baseline: the template (mean face) for every image
    head = model.head
    zero = head(torch.zeros(1, head.n_shape), torch.zeros(1, head.n_expression), torch.zeros(1, 3))
    for item in read_image_list(dataset, "val"):
        write_prediction(tmp_path / "mean", item, zero.vertices[0].detach().numpy(), head.faces.numpy(),
                         zero.landmarks3d[0, list(NOW_LANDMARKS_IBUG68)].detach().numpy())  # fmt: skip
    mean_face = np.concatenate(
        [r.distances for r in evaluate_now(tmp_path / "mean", dataset, progress=False)]
    )
    assert trained["count"] == 4 and abs(trained["mean"] - mean_face.mean()) < 0.2  # untrained ≈ mean face
    base = trained["baseline"]["mean_face"]  # measured in the same run, once per subject
    assert base["mean"] == pytest.approx(mean_face.mean(), rel=1e-4) and base["count"] == 4
    assert trained["relative_median"] == pytest.approx(trained["median"] / np.median(mean_face), rel=1e-4)
    assert set(trained["per_category"]["neutral"]) >= {"relative_median", "ci95_median", "baseline"}
    fitted = evaluate_model(dataset, tmp_path / "fit", None, fit_iterations="60,0", workers=1, progress=False)
    assert fitted["count"] == 4
    assert fitted["mean"] < mean_face.mean()  # true landmarks -> fitted shapes beat the mean face


def test_synth_cli_writes_and_refuses_to_overwrite(home, tmp_path, capsys):
    args = ["-q", "synth", "--n", "1", "--seed", "1", "--out", str(tmp_path / "d"), "--size", "48",
            "--supersample", "1", "--uv-size", "64"]  # fmt: skip
    assert main(args) == 0
    assert "1 images of 1 subjects" in capsys.readouterr().out
    assert main(args) == 2
    assert "already holds a dataset" in capsys.readouterr().err


def test_textures_replace_the_procedural_albedo(home, tmp_path):
    from vitdeca.media import save_png

    save_png(tmp_path / "tex" / "face_texture.png", np.full((32, 32, 3), (230, 20, 20), np.uint8))
    options = SynthOptions(**{**TINY, "n_images": 2, "textures": str(tmp_path / "tex")})
    write_synthetic_dataset(tmp_path / "d", options, progress=False)
    codes = np.load(tmp_path / "d/codes.npz")
    assert (
        all(t.endswith("face_texture.png") for t in codes["texture"]) and np.isnan(codes["skin_tone"]).all()
    )
    from vitdeca.faces import read_image

    image = read_image(tmp_path / "d/iphone_pictures" / codes["image"][0]).astype(float)
    mask = read_image(tmp_path / "d/masks" / codes["image"][0].replace(".jpg", ".png"))[..., 0] > 0
    red, green = image[mask, 0].mean(), image[mask, 1].mean()
    assert red > 2 * green  # the face is painted with the (red) texture


def test_procedural_albedo_paints_lips_brows_and_eyes(ict_head):
    geometry = TexelGeometry.from_head(ict_head, 128)
    skin = sample_skin(np.random.default_rng(5))
    albedo = procedural_albedo(geometry, skin)
    maps = geometry.maps
    skin_px = albedo[(maps["lips"] == 0) & (maps["brows"] == 0) & (maps["eye"] == 0) & (maps["mouth"] == 0)
                     & (maps["height"] < 0) & geometry.covered]  # fmt: skip
    lips = albedo[maps["lips"] > 0.99]
    assert len(lips) > 20 and lips[:, 1].mean() < 0.8 * skin_px[:, 1].mean()  # lips: less green than skin
    assert (maps["eye"] > 0.99).sum() > 20 and (maps["iris"] * maps["eye"]).max() == pytest.approx(1.0)
    assert albedo.shape == (128, 128, 3) and albedo.min() >= 0 and albedo.max() <= 1


def test_eyeballs_turn_a_cup_into_a_ball_front():
    rng = np.random.default_rng(0)
    landmarks = torch.zeros(1, 68, 3)
    landmarks[0, 36], landmarks[0, 39] = torch.tensor([-3.0, 0, 0]), torch.tensor([-1.0, 0, 0])
    centre_xy = torch.tensor([-2.0, 0.0])
    cup = torch.from_numpy(rng.uniform(-0.8, 0.8, (50, 3))).float()
    cup[:, :2] += centre_xy
    cup[:, 2] = -1.0 + 0.5 * (cup[:, 0] + 2.0) ** 2  # a concave socket
    ids = torch.zeros(50, dtype=torch.long)
    out = eyeballs(cup[None], landmarks, ids, torch.tensor([[0.0, 0.0, 1.0]]), radius=1.2)[0]
    centre = torch.tensor([-2.0, 0.0, -1.2 * 13 / 12])
    np.testing.assert_allclose((out - centre).norm(dim=1).numpy(), 1.2, atol=1e-5)  # on the ball
    np.testing.assert_allclose(out[:, :2].numpy(), cup[:, :2].numpy(), atol=1e-6)  # moved along the axis only
    assert (out[:, 2] >= centre[2] - 1e-6).all() and out[:, 2].max() <= -0.1 + 1e-6  # front, behind the lids


def test_fit_camera_places_the_landmark_box():
    landmarks = torch.tensor([[[-2.0, -1.0, 0.0], [4.0, 3.0, 1.0]]]).expand(1, 2, 3)
    camera = fit_camera(landmarks, torch.tensor([0.5]), torch.tensor([[0.1, -0.2]]))
    s, tx, ty = camera[0].tolist()
    ndc = [(s * (x + tx), s * (y + ty)) for x, y in ((-2.0, -1.0), (4.0, 3.0))]
    width, height = ndc[1][0] - ndc[0][0], ndc[1][1] - ndc[0][1]
    assert (width + height) / 2 / 2 == pytest.approx(0.5)  # NDC spans 2: fraction of the image
    centre = ((ndc[0][0] + ndc[1][0]) / 2, (ndc[0][1] + ndc[1][1]) / 2)
    assert centre == pytest.approx((0.2, 0.4))  # x right by 0.1 image, y up by 0.2 (shift y is down)


def test_photo_backgrounds_avoid_the_faces(faces_dir, tmp_path):
    import shutil

    for name in ("2008_001009.jpg", "dogs.jpg"):  # two faces; no face
        shutil.copy(faces_dir / "dlib_examples" / name, tmp_path / name)
    backgrounds = PhotoBackgrounds(tmp_path)
    _, boxes = backgrounds.photo(0)
    assert len(boxes) == 2 and len(backgrounds.photo(1)[1]) == 0
    rng = np.random.default_rng(0)
    found = [0, 0]
    for _ in range(100):
        k, box = backgrounds.sample_box(rng)
        if box is None:
            continue
        found[k] += 1
        for face in backgrounds.photo(k)[1]:
            assert box[2] <= face[0] or face[2] <= box[0] or box[3] <= face[1] or face[3] <= box[1]
    assert min(found) > 0
    assert backgrounds.sample(np.random.default_rng(1), 32).shape == (32, 32, 3)


def test_predictions_folder_is_replaced_only_when_ours(tmp_path):
    from vitdeca.errors import VitdecaError
    from vitdeca.evaluation.synthetic import fresh_predictions_folder

    folder = fresh_predictions_folder(tmp_path / "predictions")
    (folder / "stale.obj").write_text("v 0 0 0\n")
    assert list(fresh_predictions_folder(folder).glob("*.obj")) == []  # ours: emptied
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.obj").write_text("v 0 0 0\n")
    with pytest.raises(VitdecaError, match="not written by"):
        fresh_predictions_folder(tmp_path / "mine")
    assert (tmp_path / "mine" / "keep.obj").is_file()


def test_yaw_max_draws_profiles_and_keeps_the_default_stream(home):
    from scipy.spatial.transform import Rotation

    from vitdeca.data.synth import sample_pose

    def yaws(options: SynthOptions) -> np.ndarray:
        poses = [sample_pose(np.random.default_rng([1, k]), options, 3) for k in range(400)]
        return np.array([Rotation.from_rotvec(p).as_euler("xyz", degrees=True)[1] for p in poses])

    wide = yaws(SynthOptions(yaw_max=90.0))
    assert np.abs(wide).max() <= 90.0 + 1e-3 and np.mean(np.abs(wide) > 60) > 0.25  # uniform in ±90
    normal = yaws(SynthOptions())
    reference = [
        np.clip(np.random.default_rng([1, k]).standard_normal(3), -2.5, 2.5)[1] * 20 for k in range(400)
    ]
    np.testing.assert_allclose(normal, reference, atol=1e-3)  # the default draws are unchanged
    from vitdeca.errors import VitdecaError

    with pytest.raises(VitdecaError, match="yaw_max"):
        SynthOptions(yaw_max=120.0).validated()


def test_visibility_truth_hides_the_far_eye_of_a_profile(home, tmp_path):
    options = SynthOptions(**{**TINY, "n_images": 2, "yaw_max": 90.0, "seed": 4, "size": 96})  # -79°, 18°
    write_synthetic_dataset(tmp_path / "p", options, progress=False)
    codes = np.load(tmp_path / "p" / "codes.npz")
    assert codes["visible"].shape == (2, 68) and codes["visible"].dtype == bool
    from scipy.spatial.transform import Rotation

    yaws = [Rotation.from_rotvec(p[:3]).as_euler("xyz", degrees=True)[1] for p in codes["pose"]]
    assert yaws[0] < -75 and abs(yaws[1]) < 30
    assert (
        not codes["visible"][0, 36:42].all() and codes["visible"][0, 42:48].all()
    )  # the right eye turns away
    assert codes["visible"][1].all()


def test_ict_eyes_record_the_gaze_and_change_only_the_eye_pixels(dataset, home, ict_head, tmp_path):
    """--eyes ict: the same draws as the default (convex) set, plus a recorded gaze, eyeballs that
    differ from the convex ones only around the eyes, and eyelids that follow them (the expression's
    eyeLook* weights are the gaze's); the gaze is deterministic in the seed."""
    from vitdeca.arkit import EYE_LOOK_DEGREES, arkit_mapping, eye_angles

    out = tmp_path / "eyes"
    write_synthetic_dataset(out, SynthOptions(**{**TINY, "eyes": "ict", "gaze": 20.0}), progress=False)
    codes, base = np.load(out / "codes.npz"), np.load(dataset / "codes.npz")
    assert "gaze" not in base.files and codes["gaze"].shape == (4, 2, 2)
    assert np.all(codes["gaze"][:, 0] == codes["gaze"][:, 1]) and np.abs(codes["gaze"]).max() > 1.0
    assert np.array_equal(codes["pose"], base["pose"])
    assert np.allclose(codes["camera"], base["camera"], atol=1e-2)  # framed on the lids' landmarks too
    names = list(ict_head.blendshape_names)
    look = np.array([n.startswith("eyeLook") for n in names])
    assert np.array_equal(codes["expression"][:, ~look], base["expression"][:, ~look])
    mapping = arkit_mapping(ict_head)
    for expression, gaze in zip(codes["expression"], codes["gaze"], strict=True):
        angles = eye_angles(mapping.weights(expression))
        degrees = EYE_LOOK_DEGREES  # the eyeLook* weights' range
        within = np.clip(
            gaze[0], [-degrees["horizontal"], -degrees["up"]], [degrees["horizontal"], degrees["down"]]
        )
        assert [angles["left"]["yaw"], angles["left"]["pitch"]] == pytest.approx(within, abs=1e-3)
    not_eyes = np.r_[0:36, 48:68]
    assert np.abs(codes["landmarks2d"][:, not_eyes] - base["landmarks2d"][:, not_eyes]).max() < 0.05
    k = int(np.flatnonzero((base["blur"] == 0) & ~base["occluded"])[0])  # sharp, nothing over the eyes
    first = str(codes["image"][k])
    a = np.asarray(Image.open(out / "iphone_pictures" / first).convert("L"), np.float32)
    b = np.asarray(Image.open(dataset / "iphone_pictures" / first).convert("L"), np.float32)
    changed = np.argwhere(np.abs(a - b) > 40)
    eyes = base["landmarks2d"][k, 36:48]
    assert len(changed) > 0
    near = np.linalg.norm(changed[:, None, ::-1] + 0.5 - eyes[None], axis=2).min(axis=1) < 8
    assert near.mean() > 0.9


def test_blinks_close_both_eyes_on_their_own_stream(ict_head):
    from vitdeca.data.synth import sample_image, sample_subject, with_blink
    from vitdeca.errors import VitdecaError

    names = list(ict_head.blendshape_names)
    blinks = [names.index("eyeBlink_L"), names.index("eyeBlink_R")]
    expression = np.full(len(names), 0.1, np.float32)
    blinked = with_blink(expression, ict_head, np.random.default_rng(0))
    assert np.all((blinked[blinks] >= 0.6) & (blinked[blinks] <= 1.0))
    assert abs(blinked[blinks[0]] - blinked[blinks[1]]) <= 0.1
    others = np.ones(len(names), bool)
    others[blinks] = False
    assert np.array_equal(blinked[others], expression[others]) and np.all(expression == np.float32(0.1))
    assert with_blink(expression, ict_head, None) is expression

    options = SynthOptions(n_images=40, images_per_subject=4, seed=3, blink_fraction=0.5)
    plain = SynthOptions(n_images=40, images_per_subject=4, seed=3)
    specs = []
    for index in range(40):
        subject = sample_subject(options, ict_head, index // 4, [])
        specs.append((sample_image(options, ict_head, subject, index, index % 4),
                      sample_image(plain, ict_head, subject, index, index % 4)))  # fmt: skip
    blinking = [a.expression[blinks].min() >= 0.6 > b.expression[blinks].min() for a, b in specs]
    assert 8 <= sum(blinking) <= 28  # about half of the expressive images
    others[[names.index("eyeWide_L"), names.index("eyeWide_R")]] = False  # a blink's contradiction
    for a, b in specs:  # everything else drawn as without blinks
        assert np.array_equal(a.pose, b.pose) and np.array_equal(a.expression[others], b.expression[others])
    with pytest.raises(VitdecaError, match="blink_fraction"):
        SynthOptions(blink_fraction=1.5).validated()


def test_drawn_expressions_have_no_contradicting_pairs(ict_head):
    """By default no image holds both shapes of a :data:`vitdeca.arkit.EXCLUSIVE` pair (imposed blinks
    win over eyeWide); ``consistent_expressions=False`` draws them independently, as before, and then
    such pairs occur; every other weight is the same."""
    from vitdeca.arkit import EXCLUSIVE, arkit_name
    from vitdeca.data.synth import sample_image, sample_subject

    names = [arkit_name(n) for n in ict_head.blendshape_names]
    pairs = [(i, j) for a, b in EXCLUSIVE for i, n in enumerate(names) if n == a
             for j, m in enumerate(names) if m == b]  # fmt: skip

    def draws(**changes):
        options = SynthOptions(n_images=120, images_per_subject=4, seed=4, blink_fraction=0.3, **changes)
        return [sample_image(options, ict_head, sample_subject(options, ict_head, i // 4, []), i, i % 4)
                for i in range(120)]  # fmt: skip

    clashes = lambda e: sum(e[i] > 0 and e[j] > 0 for i, j in pairs)  # noqa: E731
    consistent, independent = draws(), draws(consistent_expressions=False)
    assert sum(clashes(s.expression) for s in consistent) == 0
    assert sum(clashes(s.expression) for s in independent) >= 5
    for a, b in zip(consistent, independent, strict=True):
        kept = a.expression > 0
        assert np.array_equal(a.expression[kept], b.expression[kept])  # only zeros were written


def test_predictions_re_frame_turned_faces_as_the_pipeline_does(dataset, home, tmp_path):
    """predict_dataset hands every image and crop to Reconstructor.reframe_turned and encodes nothing
    twice: estimate_codes gets the re-framed crops with their codes."""
    from vitdeca.evaluation.synthetic import predict_dataset
    from vitdeca.model import DecaModel, ModelConfig
    from vitdeca.pipeline import Reconstructor

    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=False, image_size=32, uv_size=32))
    rec = Reconstructor(model, detector="dlib", reframe_min_yaw=0.0)  # every face counts as turned
    seen: dict = {}
    reframe, estimate = rec.reframe_turned, rec.estimate_codes

    def spy_reframe(images, crops):
        seen["images"], seen["before"] = [im.shape for im in images], [c.crop.matrix for c in crops]
        seen["crops"], seen["encoded"] = reframe(images, crops)
        return seen["crops"], seen["encoded"]

    def spy_estimate(crops, init=None, encoded=None):
        seen["estimated"] = (crops, encoded)
        return estimate(crops, init=init, encoded=encoded)

    rec.reframe_turned, rec.estimate_codes = spy_reframe, spy_estimate
    assert predict_dataset(rec, dataset, tmp_path / "pred", progress=False) == {}
    assert seen["images"] == [(64, 64, 3)] * 4
    assert seen["estimated"][0] is seen["crops"] and seen["estimated"][1] is seen["encoded"]
    moved = [not np.allclose(a, c.crop.matrix) for a, c in zip(seen["before"], seen["crops"], strict=True)]
    assert all(moved)  # re-made around the (untrained) encoder's own landmarks
