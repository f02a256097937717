"""One identity per person: joint fits with a shared shape, video tracks, --same-person, blink timing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitdeca import media
from vitdeca.codes import CodeLayout, Codes
from vitdeca.fit import FitConfig, fit_codes, initial_codes, landmarks2d
from vitdeca.pipeline import BatchRunner, Reconstructor, RunOptions, parse_save
from vitdeca.pipeline.identity import median_identity
from vitdeca.pipeline.video import SMOOTHING, smooth_track

PHOTO = "deca_testsamples/examples/IMG_0392_inputs.jpg"
QUICK = FitConfig(landmark_iterations=60, photometric_iterations=2)


def test_median_identity_hand_computed():
    codes = Codes.zeros(CodeLayout(n_shape=2, n_expression=1, n_pose=3, n_albedo=1, n_detail=0), batch_size=4)
    codes.shape[:] = torch.tensor([[1.0, 5.0], [3.0, -1.0], [100.0, 0.0], [2.0, 2.0]])
    codes.albedo[:] = torch.tensor([[0.0], [1.0], [2.0], [9.0]])
    codes.expression[:] = torch.tensor([[0.1], [0.2], [0.3], [0.4]])
    out = median_identity(codes)
    assert torch.equal(out.shape, torch.tensor([[2.5, 1.0]] * 4))  # the outlier 100 does not pull it
    assert torch.equal(out.albedo, torch.full((4, 1), 1.5))
    assert torch.equal(out.expression, codes.expression)


def _blink(fps=30.0, n=60, noise=0.03):
    t = np.arange(n) / fps
    truth = np.zeros(n)
    truth[30:37] = [0.5, 1.0, 1.0, 1.0, 0.6, 0.3, 0.1]  # a 230 ms blink
    return t, truth, truth + np.random.default_rng(0).normal(0.0, noise, n)


def test_track_smoothing_does_not_delay_a_blink():
    t, truth, observed = _blink()
    settings = SMOOTHING["expression"]
    smooth = smooth_track(observed[:, None], t, settings)[:, 0]
    causal = media.OneEuroFilter(*settings)
    online = np.array([causal(np.array([v]), s)[0] for v, s in zip(observed, t, strict=True)])

    def centre(w):  # time centroid of the blink (frames)
        window = slice(25, 45)
        return float((np.arange(60)[window] * w[window]).sum() / w[window].sum())

    assert np.array_equal(smooth > 0.5, truth > 0.5)  # closed on exactly the true frames
    assert abs(centre(smooth) - centre(observed)) < 0.1  # no shift in time
    assert centre(online) - centre(observed) > 0.5  # the causal filter alone lags (why tracks use both ways)
    assert smooth.max() > 0.85
    assert smooth[5:25].std() < 0.6 * observed[5:25].std()  # and jitter is still reduced


def test_smooth_track_constant_and_short_tracks():
    t = np.arange(10) / 30
    assert np.allclose(smooth_track(np.full((10, 3), 0.7), t, (1.5, 1.0)), 0.7)
    short = np.array([[0.0], [1.0]])
    assert np.array_equal(smooth_track(short, t[:2], (1.5, 1.0)), short)


def _person(model, n=4, seed=3):
    """n landmark sets of one random person with different expressions and head poses."""
    g = torch.Generator().manual_seed(seed)
    codes = model.neutral_codes(n)
    shape = (torch.randn(1, model.head.n_shape, generator=g) * 1.0).expand(n, -1).clone()
    expression = torch.zeros(n, model.head.n_expression)
    for i in range(1, n):
        expression[i, torch.randint(0, model.head.n_expression, (3,), generator=g)] = 0.6
    yaws = torch.tensor([0.0, 25.0, -25.0, 10.0][:n])
    pose = torch.stack([torch.tensor([0.05 * (-1) ** i, math.radians(y), 0.0]) for i, y in enumerate(yaws)])
    truth = codes.replace(shape=shape, expression=expression, pose=pose)
    return truth, landmarks2d(model, truth, 224)


def _neutral_error(model, shape, truth_shape) -> np.ndarray:
    """Mean per-vertex distance (mm) of neutral heads of ``shape`` (B,n) to the true neutral head."""
    zeros = [torch.zeros(shape.shape[0], n) for n in (model.head.n_expression, model.head.n_pose)]
    pred = model.head(shape, *zeros).vertices
    true = model.head(truth_shape[:1], *[z[:1] for z in zeros]).vertices
    return ((pred - true).norm(dim=-1).mean(dim=1) / model.head.units_per_mm).detach().numpy()


def test_joint_fit_shares_one_shape_and_beats_single_images(fit_model):
    truth, target = _person(fit_model)
    config = FitConfig(stages=["landmarks"], landmark_iterations=150)
    alone = fit_codes(fit_model, None, target, config, init=initial_codes(fit_model, target, 224))
    joint = fit_codes(fit_model, None, target, config.warm(), init=alone.codes, shared=("shape", "albedo"))
    assert torch.equal(joint.codes.shape, joint.codes.shape[:1].expand_as(joint.codes.shape))
    assert joint.codes.shape.is_contiguous()
    error_alone = _neutral_error(fit_model, alone.codes.shape, truth.shape)
    error_joint = _neutral_error(fit_model, joint.codes.shape[:1], truth.shape)[0]
    assert error_joint < 0.95 * float(np.median(error_alone)), (error_joint, error_alone)
    assert float(joint.nme.max()) < 0.05  # every image still fits its own landmarks


def test_shared_codes_are_checked(fit_model):
    _, target = _person(fit_model, n=2)
    with pytest.raises(ValueError, match="cannot share"):
        fit_codes(fit_model, None, target, FitConfig(stages=["landmarks"]), shared=("expression",))
    with pytest.raises(ValueError, match="needs the images"):
        fit_codes(fit_model, None, target, FitConfig())


def _panning_video(path, photo, n=8, fps=10):
    with media.video_writer(path, fps=fps) as write:
        for i in range(n):
            frame = np.zeros((224, 288, 3), np.uint8)
            frame[:, 4 * i : 4 * i + 224] = photo
            write(frame)


@pytest.fixture(scope="module")
def photo(faces_dir):
    from PIL import Image

    return media.fit_height(np.asarray(Image.open(faces_dir / PHOTO).convert("RGB")), 224)


def test_video_track_has_one_identity(fit_model, photo, tmp_path):
    _panning_video(tmp_path / "clip.mp4", photo)
    rec = Reconstructor(fit_model, device="cpu", detail=False, fit=QUICK)
    frames = list(rec.iter_video(tmp_path / "clip.mp4"))
    faces = [f.face for f in frames if f.face is not None]
    assert len(frames) == 8 and len(faces) >= 6
    shapes = torch.cat([f.codes.shape for f in faces])
    assert torch.equal(shapes, shapes[:1].expand_as(shapes))
    assert all(f.fit_nme is not None and f.fit_nme < 0.08 for f in faces)
    # the decoded mesh is the final codes' (pass 2), in the frame's own place
    for frame in frames:
        if frame.face is not None:
            shift = frame.face.landmarks2d[:, 0].mean() - frames[0].face.landmarks2d[:, 0].mean()
            assert shift == pytest.approx(4 * frame.index, abs=3.0)


def test_same_person_images_share_the_shape(fit_model, photo, tmp_path):
    from PIL import Image

    for k in range(3):  # one person, three framings
        image = np.zeros((260, 260, 3), np.uint8)
        image[10 * k : 10 * k + 224, 30 - 10 * k : 254 - 10 * k] = photo
        Image.fromarray(image).save(tmp_path / f"p{k}.png")
    rec = Reconstructor(fit_model, device="cpu", detail=False, fit=QUICK)
    options = RunOptions(save=parse_save("codes"), progress=False, same_person=True, batch_size=1)
    summary = BatchRunner(rec, tmp_path / "out", options).run(sorted(tmp_path.glob("p*.png")))
    assert [r.status for r in summary.records] == ["ok"] * 3
    codes = [np.load(tmp_path / "out" / f"p{k}" / f"p{k}_codes.npz") for k in range(3)]
    assert all(np.array_equal(c["shape"], codes[0]["shape"]) for c in codes)
    assert all(np.array_equal(c["albedo"], codes[0]["albedo"]) for c in codes)
    assert not np.array_equal(codes[0]["camera"], codes[1]["camera"])  # pose and camera stay per image


def test_refine_shares_the_identity_but_leaves_a_far_turned_face_to_the_encoder(fit_model):
    """refine's rule for profiles (refine_max_yaw) holds in the joint refit of a video or --same-person:
    a face the encoder turns far keeps its own codes and only takes the shared shape and albedo."""
    from vitdeca.pipeline.identity import shared_identity

    truth, target = _person(fit_model, n=3)
    turned = truth.pose.clone()
    turned[2, 1] = math.radians(70.0)  # the encoder reads face 2 as a near-profile
    codes = truth.replace(pose=turned, shape=torch.zeros_like(truth.shape))
    rec = Reconstructor(fit_model, device="cpu", detail=False, fit=QUICK, refine=True)
    assert rec.fits(codes).tolist() == [True, True, False]
    joint, nme = shared_identity(rec, codes, target)
    assert torch.equal(joint.pose[2], codes.pose[2]) and torch.equal(joint.expression[2], codes.expression[2])
    assert torch.equal(joint.shape, joint.shape[:1].expand_as(joint.shape))  # one identity for all three
    assert float(joint.shape.abs().max()) > 0.1  # fitted from faces 0 and 1
    assert not torch.equal(joint.pose[:2], codes.pose[:2])  # those two were refitted
    assert nme.shape == (3,) and float(nme[:2].max()) < 0.05 and float(nme[2]) > float(nme[:2].max())
    fitting = Reconstructor(fit_model, device="cpu", detail=False, fit=QUICK)
    assert fitting.fits(codes).all()  # plain fitting refits every face, as before
