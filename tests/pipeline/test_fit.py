"""Per-image fitting: closed-form start, landmark fit, light solve, configs."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pytest
import torch

from vitdeca import losses as L
from vitdeca.cli import build_parser
from vitdeca.codes import Codes
from vitdeca.errors import VitdecaError
from vitdeca.fit import (
    FitConfig,
    fit_codes,
    initial_codes,
    landmark_nme,
    landmarks2d,
    solve_light,
)
from vitdeca.render import sh_shading_image


def _target_codes(model, seed=0):
    """Codes of a plausible face: random shape, a few expressions, yaw 25 deg, off-centre camera."""
    g = torch.Generator().manual_seed(seed)
    codes = model.neutral_codes(1)
    shape = torch.randn(1, model.head.n_shape, generator=g) * 0.8
    expression = torch.zeros(1, model.head.n_expression)
    expression[0, ::11] = torch.rand(expression[0, ::11].shape, generator=g) * 0.6
    pose = torch.tensor([[0.1, math.radians(25), -0.05]])
    camera = codes.camera * torch.tensor([[1.1, 1.0, 1.0]]) + torch.tensor([[0.0, 0.4, -0.3]])
    return codes.replace(shape=shape, expression=expression, pose=pose, camera=camera)


def test_landmark_nme_hand_computed():
    target = torch.zeros(1, 68, 2)
    target[0, 45, 0] = 10.0  # outer eye corners 10 px apart
    pred = target.clone()
    pred[0, :, 1] += 0.5
    assert landmark_nme(pred, target).item() == pytest.approx(0.05)


def test_initial_codes_recover_a_rigid_pose(fit_model):
    truth = _target_codes(fit_model).replace(
        shape=torch.zeros(1, fit_model.head.n_shape), expression=torch.zeros(1, fit_model.head.n_expression)
    )
    target = landmarks2d(fit_model, truth, 224)
    start = initial_codes(fit_model, target, 224)
    assert torch.allclose(start.pose, truth.pose, atol=1e-3)
    assert torch.allclose(start.camera, truth.camera, rtol=1e-3, atol=1e-3)
    assert landmark_nme(landmarks2d(fit_model, start, 224), target).item() < 1e-3


def test_landmark_fit_reaches_a_synthetic_target(fit_model):
    truth = _target_codes(fit_model, seed=1)
    target = landmarks2d(fit_model, truth, 224)
    images = torch.zeros(1, 3, 224, 224)
    config = FitConfig(stages=["landmarks"], landmark_iterations=150)
    start = landmark_nme(landmarks2d(fit_model, initial_codes(fit_model, target, 224), 224), target).item()
    result = fit_codes(fit_model, images, target, config)
    assert result.nme[0] < 0.01 < start
    assert result.codes.expression.min() >= 0 and result.codes.expression.max() <= 1  # ICT blend shapes
    priors = {"reg_sparsity", "reg_pair_symmetry", "reg_pair_exclusion"}  # ICT has ARKit semantics
    assert set(result.losses) == {"landmark", "eye", "lip", "reg_shape", "reg_expression", *priors}


def test_arkit_priors_keep_the_fitted_expression_sparse(fit_model):
    """A neutral face: without the priors the landmark fit spreads weight over many shapes; with them
    far fewer are active and their total is smaller (the issue's eyeLook* ≈ 0.4 symptom)."""
    import dataclasses

    truth = _target_codes(fit_model, seed=3)
    truth = truth.replace(expression=torch.zeros_like(truth.expression))
    target = landmarks2d(fit_model, truth, 224)
    images = torch.zeros(1, 3, 224, 224)
    config = FitConfig(stages=["landmarks"], landmark_iterations=150)
    off = dataclasses.replace(
        config,
        weights=dataclasses.replace(
            config.weights, reg_sparsity=0.0, reg_pair_symmetry=0.0, reg_pair_exclusion=0.0
        ),
    )
    with_priors = fit_codes(fit_model, images, target, config).codes.expression
    without = fit_codes(fit_model, images, target, off).codes.expression
    assert with_priors.sum() < 0.5 * without.sum()
    assert (with_priors > 0.05).sum() < (without > 0.05).sum()


def test_solve_light_recovers_the_light():
    g = torch.Generator().manual_seed(0)
    normals = torch.nn.functional.normalize(torch.randn(2, 3, 16, 16, generator=g), dim=1)
    normals[:, 2] = normals[:, 2].abs()
    albedo = torch.rand(2, 3, 16, 16, generator=g) * 0.5 + 0.3
    light = torch.randn(2, 9, 3, generator=g) * 0.3
    light[:, 0] += 2.0
    images = albedo * sh_shading_image(normals, light)
    mask = torch.ones(2, 1, 16, 16)
    got = solve_light(images, albedo, normals, mask)
    assert torch.allclose(got, light, atol=0.05)


def test_photometric_stage_fits_the_light(fit_model):
    truth = _target_codes(fit_model, seed=2)
    light = fit_model.neutral_codes(1).light * torch.tensor([1.1, 0.8, 0.6])
    light[0, 1:4] += torch.tensor([[0.3, 0.3, 0.3], [0.2, 0.2, 0.2], [0.1, 0.1, 0.1]])
    truth = truth.replace(light=light)
    with torch.no_grad():
        recon = fit_model.decode(truth, detail=False)
    target = recon.landmarks2d
    only_landmarks = fit_codes(fit_model, recon.image, target, FitConfig(stages=["landmarks"]))
    config = FitConfig(photometric_iterations=4)
    result = fit_codes(fit_model, recon.image, target, config, masks=recon.alpha)
    assert result.nme[0] < 0.02

    def photometric(codes):
        with torch.no_grad():
            return float(L.photometric_loss(recon.image, fit_model.decode(codes).image, recon.alpha))

    assert photometric(result.codes) < 0.5 * photometric(only_landmarks.codes)
    assert torch.allclose(result.codes.light[0, 0], light[0, 0], rtol=0.1)


def test_fit_config_from_the_command_line(tmp_path):
    from vitdeca.cli.fit import fit_config

    yaml = tmp_path / "fit.yaml"
    yaml.write_text("lr: 0.02\nweights:\n  eye: 0.5\n")
    args = build_parser().parse_args(
        [
            "fit",
            "x.jpg",
            "--config",
            str(yaml),
            "--set",
            "weights.photometric=0",
            "--iterations",
            "40,5",
            "--losses",
            "landmark,reg",
        ]
    )
    config = fit_config(args)
    assert (config.lr, config.weights.eye, config.weights.photometric) == (0.02, 0.5, 0.0)
    assert (config.landmark_iterations, config.photometric_iterations) == (40, 5)
    assert config.weight("eye") == 0.0 and config.weight("reg_shape") == config.weights.reg_shape


@pytest.mark.parametrize(
    ("changes", "match"),
    [({"stages": ["landmark"]}, "'landmark'"), ({"losses": ["pho"]}, "'pho'"), ({"lr": 0.0}, "lr")],
)
def test_fit_config_rejects_bad_values(changes, match):
    with pytest.raises(VitdecaError, match=match):
        FitConfig(**changes).validated()
    with pytest.raises(VitdecaError, match="iterations"):
        FitConfig().with_iterations("1,2,3")


def test_warm_start_uses_fewer_iterations():
    warm = FitConfig(landmark_iterations=100, photometric_iterations=20, warm_iterations=0.3).warm()
    assert (warm.landmark_iterations, warm.photometric_iterations) == (30, 6)


def _crop_of(model):
    """A :class:`FaceCrop` of a black image whose landmarks are the head's (for the pipeline's plumbing)."""
    from vitdeca.faces import crop_face
    from vitdeca.pipeline.reconstructor import FaceCrop

    size = int(model.config.image_size)
    points = landmarks2d(model, _target_codes(model), size)[0].detach().numpy().astype(np.float64)
    rgb = np.zeros((size, size, 3), np.uint8)
    return FaceCrop(
        0, np.array([0, 0, size, size]), 1.0, points, crop_face(rgb, points, size=size), (size, size)
    )


def test_refining_config_moves_shape_and_expression_faster():
    base = FitConfig(refine_landmark_iterations=70, refine_photometric_iterations=3)
    refine = base.refining()
    assert (refine.landmark_iterations, refine.photometric_iterations) == (70, 3)
    assert refine.lr_scale["shape"] == 2 * base.lr_scale["shape"]
    assert refine.lr_scale["expression"] == 2 * base.lr_scale["expression"]
    assert refine.lr_scale["camera"] == base.lr_scale["camera"]
    chosen = FitConfig().with_iterations("40,5")
    assert (chosen.refining().landmark_iterations, chosen.refining().photometric_iterations) == (40, 5)
    with pytest.raises(VitdecaError, match="refine_lr_boost"):
        FitConfig(refine_lr_boost={"shape": 0.0}).validated()


def _refining_reconstructor(monkeypatch, fit_model, encoded, max_yaw=90.0):
    """A refine :class:`Reconstructor` whose encoder returns ``encoded`` and whose fit is recorded."""
    import vitdeca.fit as fit_module
    from vitdeca.pipeline.reconstructor import Reconstructor

    seen = []

    def fake_fit(model, images, lmk, config, init=None):
        seen.append((config, init))
        return fit_module.FitResult(init.replace(shape=init.shape + 1.0), np.zeros(len(lmk)), {}, 0.0)

    monkeypatch.setattr(fit_module, "fit_codes", fake_fit)
    config = FitConfig(refine_landmark_iterations=7, refine_photometric_iterations=0, refine_max_yaw=max_yaw)
    rec = Reconstructor(fit_model, fit=config, refine=True, detail=False)
    monkeypatch.setattr(rec, "encode", lambda images: encoded)
    return rec, seen


def test_refine_uses_the_refining_config(monkeypatch, fit_model):
    """``refine`` fits from the encoder's codes with :meth:`FitConfig.refining`, not the video warm start."""
    encoded = fit_model.neutral_codes(1)
    rec, seen = _refining_reconstructor(monkeypatch, fit_model, encoded)
    codes, _ = rec.estimate_codes([_crop_of(fit_model)])
    assert seen[0][1] is not None and seen[0][0].landmark_iterations == 7
    assert torch.equal(codes.shape, encoded.shape + 1.0)  # the fitted codes are returned


def test_refine_can_leave_profiles_as_regressed(monkeypatch, fit_model):
    """With ``refine_max_yaw`` 60 (default 45) a face the encoder turns 75° keeps its codes, the frontal
    one is fitted; at 90 (off) both are fitted."""
    encoded = fit_model.neutral_codes(2)
    encoded.pose[0, 1] = math.radians(75.0)  # yaw about the vertical axis
    assert FitConfig().refine_max_yaw == 45.0
    rec, seen = _refining_reconstructor(monkeypatch, fit_model, encoded)
    rec.estimate_codes([_crop_of(fit_model), _crop_of(fit_model)])
    assert seen[0][1].batch_size == 2
    rec, seen = _refining_reconstructor(monkeypatch, fit_model, encoded, max_yaw=60.0)
    codes, nme = rec.estimate_codes([_crop_of(fit_model), _crop_of(fit_model)])
    assert len(seen) == 1 and seen[0][1].batch_size == 1
    assert torch.equal(codes.shape[0], encoded.shape[0]) and torch.equal(codes.shape[1], encoded.shape[1] + 1)
    assert nme.shape == (2,) and nme[0] > 0 and nme[1] == 0


def test_turned_faces_are_reframed_around_the_encoders_landmarks(fit_model):
    """A face the encoder turns 75° is re-cropped around the encoder's own landmarks (mapped back to the
    original image) once per pass; the frontal face keeps the detector's crop; the codes returned are the
    encoder's of the final crops, so :meth:`estimate_codes` does not encode again."""
    from vitdeca.faces import crop_face, invert_similarity, transform_points
    from vitdeca.pipeline.reconstructor import Reconstructor

    size = int(fit_model.config.image_size)
    turned = fit_model.neutral_codes(1)
    turned.pose[0, 1] = math.radians(75.0)
    turned.camera[0] += torch.tensor([0.0, 0.2, -0.1])  # off-centre: the crop must move
    calls = []

    def fake_encode(images):
        calls.append(len(images))
        return Codes.concat([turned.index(0), fit_model.neutral_codes(1)][: len(images)])

    rec = Reconstructor(fit_model, detail=False)
    rec.encode = fake_encode
    image = np.random.default_rng(0).integers(0, 255, (3 * size, 2 * size, 3), dtype=np.uint8)
    crops = [_crop_of(fit_model), _crop_of(fit_model)]
    own = landmarks2d(fit_model, turned, size)[0].double().numpy()
    reframed, encoded = rec.reframe_turned([image, image], crops)
    assert calls == [2, 1, 1, 1] and encoded.pose[0, 1] == turned.pose[0, 1]
    expected = crops[0].crop.matrix
    for _ in range(3):  # each pass: the encoder's points in the current crop, back in the image
        expected = crop_face(image, transform_points(own, invert_similarity(expected)), size=size).matrix
    assert not np.allclose(expected, crops[0].crop.matrix)
    assert np.allclose(reframed[0].crop.matrix, expected) and reframed[1] is crops[1]
    assert np.array_equal(reframed[0].landmarks, crops[0].landmarks)  # targets: still the detector's
    rec.reframe_min_yaw, calls[:] = 90.0, []
    assert rec.reframe_turned([image, image], crops)[0] == crops and calls == [2]


def test_fit_is_deterministic(fit_model):
    truth = _target_codes(fit_model, seed=3)
    target = landmarks2d(fit_model, truth, 224)
    config = FitConfig(stages=["landmarks"], landmark_iterations=10)
    a = fit_codes(fit_model, torch.zeros(1, 3, 224, 224), target, config)
    b = fit_codes(fit_model, torch.zeros(1, 3, 224, 224), target, config)
    assert np.array_equal(a.nme, b.nme) and torch.equal(a.codes.shape, b.codes.shape)


def test_hidden_landmarks_barely_pull_the_fit(fit_model):
    """A profile (yaw 75°) whose hidden points (far eye, brow, ...) a detector placed 25 px off: with
    visibility weights the fit lands closer to the truth on the visible points than without."""
    from vitdeca.fit import landmark_visibility

    truth = _target_codes(fit_model, seed=2).replace(pose=torch.tensor([[0.05, math.radians(75), 0.0]]))
    target = landmarks2d(fit_model, truth, 224)
    visible = landmark_visibility(fit_model, truth)[0]
    assert 4 <= int((~visible).sum()) <= 30
    corrupted = target.clone()
    corrupted[0, ~visible] += torch.tensor([25.0, -10.0])
    images = torch.zeros(1, 3, 224, 224)
    errors = {}
    for weight in (1.0, 0.1):
        config = FitConfig(stages=["landmarks"], landmark_iterations=150, occluded_weight=weight)
        fitted = landmarks2d(fit_model, fit_codes(fit_model, images, corrupted, config).codes, 224)
        errors[weight] = (fitted - target)[0, visible].norm(dim=-1).mean().item()
    assert errors[0.1] < 0.8 * errors[1.0], errors


def test_robust_weights_drop_outliers():
    from vitdeca.fit import robust_weights

    target = torch.zeros(1, 68, 2)
    pred = torch.zeros(1, 68, 2)
    pred[0, :, 0] = 1.0  # every point 1 px off ...
    pred[0, 3, 0] = 40.0  # ... but one, far off (a detector failure)
    w = robust_weights(pred, target, scale=2.5)
    assert w[0, 3] < 0.01 and torch.allclose(w[0, :3], torch.full((3,), 1 / (1 + (1 / 2.5) ** 2)))


def test_fit_leaves_the_thread_policy_to_the_caller(fit_model, monkeypatch):
    truth = _target_codes(fit_model, seed=2)
    target = landmarks2d(fit_model, truth, 224)
    changes, seen = [], []
    monkeypatch.setattr(torch, "set_num_threads", changes.append)
    decode = fit_model.decode

    def watched(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return decode(*args, **kwargs)

    monkeypatch.setattr(fit_model, "decode", watched)
    config = FitConfig(stages=["landmarks", "photometric"], landmark_iterations=2, photometric_iterations=1)
    fit_codes(fit_model, torch.rand(1, 3, 224, 224), target, config, masks=torch.ones(1, 1, 224, 224))
    assert changes == [] and seen and set(seen) == {torch.get_num_threads()}


def test_fuse_landmarks_trusts_the_surer_point():
    """Inverse-variance mix per landmark: a detector point with no spread is kept, one with a spread far
    above the encoder's moves to the encoder's point, equal spreads meet halfway; the encoder is never
    trusted beyond ``ENCODER_SPREAD_FLOOR`` of the face's size."""
    from vitdeca.fit import ENCODER_SPREAD_FLOOR, fuse_landmarks

    detected = torch.rand(2, 68, 2, generator=torch.Generator().manual_seed(0)) * 100.0
    encoded = detected + 10.0
    zero = torch.zeros(2, 68)
    assert torch.equal(fuse_landmarks(detected, zero, encoded, torch.full((2, 68), 3.0)), detected)
    far = fuse_landmarks(detected, torch.full((2, 68), 1e4), encoded, torch.full((2, 68), 1.0))
    torch.testing.assert_close(far, encoded, atol=1e-3, rtol=0)
    half = fuse_landmarks(detected, torch.full((2, 68), 5.0), encoded, torch.full((2, 68), 5.0))
    floor = ENCODER_SPREAD_FLOOR * (detected.amax(1) - detected.amin(1)).prod(-1).sqrt()  # (2,) pixels
    expected_weight = (25.0 + floor**2) / (50.0 + floor**2)
    torch.testing.assert_close(half, encoded - 10.0 * expected_weight[:, None, None])
    # the floor: with no encoder spread, a detector spread of exactly the floor meets halfway
    mixed = fuse_landmarks(detected, floor[:, None].expand(2, 68), encoded, zero)
    torch.testing.assert_close(mixed, detected + 5.0)


def test_refine_fits_fused_targets_and_averages_the_faces_it_leaves(monkeypatch, fit_model):
    """With the detector's spread on the crops, refine fits each landmark to the mix of the detector's
    point and the encoder's (:func:`fuse_landmarks`, the encoder's spread read from its codes of the
    mirrored crop); without it, to the detector's points. A face refine leaves alone (turned ≥
    ``refine_max_yaw``, no spread measured) gets the flip-averaged codes either way."""
    import dataclasses

    import vitdeca.fit as fit_module
    from vitdeca.fit import fuse_landmarks
    from vitdeca.head.mirror import flip_averaged
    from vitdeca.pipeline.reconstructor import Reconstructor

    size = int(fit_model.config.image_size)
    encoded = _target_codes(fit_model).index([0, 0])
    encoded.pose[1, 1] = math.radians(75.0)  # the second face is left as regressed
    flipped = encoded.replace(shape=encoded.shape + 0.5, camera=encoded.camera + 0.01)
    seen = []

    def fake_fit(model, images, lmk, config, init=None):
        seen.append(lmk.clone())
        return fit_module.FitResult(init, np.zeros(len(lmk)), {}, 0.0)

    monkeypatch.setattr(fit_module, "fit_codes", fake_fit)
    monkeypatch.setattr(fit_model, "encode", lambda images, detail=None, flip=False: flipped)
    monkeypatch.setattr(fit_model, "encoder", torch.nn.Identity())  # fit_model has none: only encode runs
    rec = Reconstructor(fit_model, fit=FitConfig(refine_landmark_iterations=3), refine=True, detail=False)
    monkeypatch.setattr(rec, "encode", lambda images: encoded)
    assert rec.fuses_landmarks
    crop = _crop_of(fit_model)
    crop = dataclasses.replace(crop, landmarks=crop.landmarks + 4.0)  # the detector's points, off the head's
    detected = torch.from_numpy(crop.crop_landmarks).float()
    own = landmarks2d(fit_model, encoded.index([0]), size)[0]
    averaged = flip_averaged(encoded.index([1]), flipped.index([1]), fit_model.code_mirror)
    codes, _ = rec.estimate_codes([crop, crop])  # no spread measured: the detector's points
    torch.testing.assert_close(seen[-1][0], detected)
    torch.testing.assert_close(codes.shape[1:], averaged.shape)
    sure = dataclasses.replace(crop, spread=np.zeros(68))
    rec.estimate_codes([sure, crop])  # the face left alone has no spread: it changes nothing
    torch.testing.assert_close(seen[-1][0], detected)
    unsure = dataclasses.replace(crop, spread=np.full(68, 1e4))
    codes, _ = rec.estimate_codes([unsure, crop])
    torch.testing.assert_close(seen[-1][0], own, atol=1e-2, rtol=0)  # the encoder's own points
    torch.testing.assert_close(codes.shape[1:], averaged.shape)
    mirrored = landmarks2d(fit_model, fit_model.code_mirror(flipped.index([0])), size)[0]
    some = dataclasses.replace(crop, spread=np.full(68, 3.0))
    for flip, half in ((False, 2.0), (True, 1.0)):  # flip: ``encoded`` is already the readings' mean
        rec.flip = flip
        rec.estimate_codes([some, crop])
        spread, apart = torch.from_numpy(some.crop_spread[None]).float(), (own - mirrored).norm(dim=-1)
        expected = fuse_landmarks(detected[None], spread, own[None], apart[None] / half)
        torch.testing.assert_close(seen[-1][0], expected[0])
    images = torch.zeros(1, 3, size, size)
    assert rec.fused_targets(None, detected[None], encoded, None)[1] is encoded  # no crops: as given
    assert rec.fused_targets(images, detected[None], encoded.index([0]), None)[0] is not None
    assert not rec.__class__(fit_model, fit=FitConfig(refine_fusion=False), refine=True).fuses_landmarks


@pytest.mark.slow
def test_refine_on_real_photos_measures_spreads_only_where_it_fits(
    faces_dir, ict_archive, ict_home, monkeypatch
):
    """The default model on a frontal portrait and AFLW2000 image00181 (a near-profile, left as
    regressed): only the portrait's crop gets the detector's spread (small on a real face); the profile
    keeps the flip-averaged codes of its crop, as regress reads it; the portrait's refined points stay
    near the detector's (what the mix keeps where the detector is sure)."""
    from vitdeca.pipeline import Reconstructor
    from vitdeca.pipeline.decode import crop_batch

    monkeypatch.setenv("VITDECA_HOME", str(ict_home))
    monkeypatch.setenv("VITDECA_ICT_FACEKIT", str(ict_archive))
    refine = Reconstructor.from_pretrained("vitdeca-vits14", device="cpu", detail=False, method="refine")
    photos = [faces_dir / "deca_testsamples" / "examples" / "IMG_0392_inputs.jpg"]
    photos.append(faces_dir / "deca_testsamples" / "AFLW2000" / "image00181.jpg")
    prepared = [refine.prepare(p) for p in photos]
    crops, codes, nme = refine.estimate_prepared(prepared)
    assert crops[1].spread is None and crops[0].spread is not None
    box = crops[0].box
    assert np.median(crops[0].spread) < 0.02 * (box[2] - box[0])
    with torch.no_grad():  # the profile's own (re-framed) crop, read as regress reads it
        averaged = refine.model.encode(crop_batch(crops[1:], refine.device), detail=False, flip=True)
    torch.testing.assert_close(codes.pose[1], averaged.pose[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(codes.shape[1], averaged.shape[0], atol=1e-3, rtol=0)
    assert nme[0] < 0.04


def test_a_face_fits_to_the_same_bits_alone_and_in_any_batch(fit_model):
    """The batch is fitted together for speed, but each face's codes are the bits it gets alone: every
    loss is the image's own (visibility and robust weights too), and the head's landmarks, and in the
    photometric stage its mesh and albedo, go row by row."""
    pose = torch.tensor([[0.05, math.radians(70), 0.0]])  # a profile: the visibility weights matter
    truths = [_target_codes(fit_model, seed=s) for s in (3, 4)]
    truths.append(_target_codes(fit_model, seed=5).replace(pose=pose))
    targets = torch.cat([landmarks2d(fit_model, t, 224) for t in truths])
    targets[1, 30:36] += 6.0  # an outlier for the robust weights
    images = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    config = FitConfig(landmark_iterations=30, photometric_iterations=2, robust=1.0, visibility_every=10)
    batch = fit_codes(fit_model, images, targets, config)
    alone = [fit_codes(fit_model, images[b : b + 1], targets[b : b + 1], config) for b in range(3)]
    other = fit_codes(fit_model, images[[2, 0]], targets[[2, 0]], config)  # another size and order
    for name, value in batch.codes.as_dict().items():
        if value is None:
            continue
        assert torch.equal(value, torch.cat([getattr(a.codes, name) for a in alone])), name
        assert torch.equal(value[[2, 0]], getattr(other.codes, name)), name
    assert np.array_equal(batch.nme, np.concatenate([a.nme for a in alone]))
    assert batch.losses.keys() == alone[0].losses.keys() and "photometric" in batch.losses


def _landmark_fit(model, config):
    truths = [_target_codes(model, seed=s) for s in (6, 7, 8)]  # 3: padded to 4 when compiled
    targets = torch.cat([landmarks2d(model, t, 224) for t in truths])
    return fit_codes(model, None, targets, config.landmarks_only()), targets


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("cc") is None, reason="no C++ compiler")
def test_a_compiled_landmark_stage_fits_as_the_eager_one(fit_model, monkeypatch):
    """``torch_compile`` runs the head and the loss terms through inductor: the same fit to rounding."""
    import vitdeca.fit as fit_module

    compiled_terms, calls = torch.compile(fit_module.landmark_terms, dynamic=False), []

    def counted(*args):
        calls.append(1)
        return compiled_terms(*args)

    monkeypatch.setattr(fit_module, "_compiled_landmark_terms", counted)
    monkeypatch.setattr(fit_module, "_compile_failed", False)
    config = FitConfig(landmark_iterations=40, robust=1.0, visibility_every=10)
    eager, targets = _landmark_fit(fit_model, config)
    compiled, _ = _landmark_fit(fit_model, dataclasses.replace(config, torch_compile=True))
    assert len(calls) == 40 and not fit_module._compile_failed, "the compiled terms did not run"
    assert np.abs(compiled.nme - eager.nme).max() < 1e-3
    start = landmark_nme(landmarks2d(fit_model, initial_codes(fit_model, targets, 224), 224), targets)
    assert (compiled.nme < 0.6 * start.numpy()).all()  # eager: 0.52 of the start on an AMD EPYC


def test_a_batch_above_the_compiled_size_fits_eagerly(fit_model, monkeypatch, caplog):
    import vitdeca.fit as fit_module

    def never(*args):
        raise AssertionError("compiled terms called for a batch above COMPILED_MAX_BATCH")

    monkeypatch.setattr(fit_module, "_compiled_landmark_terms", never)
    monkeypatch.setattr(fit_module, "_compile_failed", False)
    monkeypatch.setattr(fit_module, "COMPILED_MAX_BATCH", 2)
    config = FitConfig(landmark_iterations=5)
    with caplog.at_level("WARNING", logger="vitdeca.fit"):
        compiled, _ = _landmark_fit(fit_model, dataclasses.replace(config, torch_compile=True))  # 3 faces
    assert torch.equal(compiled.codes.shape, _landmark_fit(fit_model, config)[0].codes.shape)
    assert not caplog.records and not fit_module._compile_failed


def test_a_landmark_stage_that_cannot_compile_warns_once_and_fits_eagerly(fit_model, monkeypatch, caplog):
    import vitdeca.fit as fit_module

    def broken(*args):
        raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")

    monkeypatch.setattr(fit_module, "_compiled_landmark_terms", broken)
    monkeypatch.setattr(fit_module, "_compile_failed", False)
    config = FitConfig(landmark_iterations=15)
    eager, _ = _landmark_fit(fit_model, config)
    with caplog.at_level("WARNING", logger="vitdeca.fit"):
        fallback, _ = _landmark_fit(fit_model, dataclasses.replace(config, torch_compile=True))
        again, _ = _landmark_fit(fit_model, dataclasses.replace(config, torch_compile=True))
    assert torch.equal(fallback.codes.shape, eager.codes.shape) and torch.equal(
        again.codes.shape, eager.codes.shape
    )
    warnings = [r.getMessage() for r in caplog.records if "torch_compile" in r.getMessage()]
    assert warnings == [
        "fit: torch_compile failed, fitting without it (InductorError: no working C++ compiler found)"
    ]
