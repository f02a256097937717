"""Video tracking's eyes: a blink holds the previous frame's gaze (a photo, lids closed on known frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitdeca import media
from vitdeca.fit import FitConfig
from vitdeca.pipeline import Reconstructor
from vitdeca.pipeline.animation import live_link_row
from vitdeca.pipeline.video import TRACK_RESET_S, GazeHold

PHOTO = "deca_testsamples/examples/IMG_0392_inputs.jpg"
QUICK = FitConfig(landmark_iterations=60, photometric_iterations=2)
LANDMARKS = ("landmarks2d", "detected_landmarks")  # a face's own and the detector's, image pixels
UPPER_LOWER = ((37, 38, 41, 40), (43, 44, 47, 46))  # per eye: upper lid pair, then the lower one below it


def closed_lids(landmarks: np.ndarray) -> np.ndarray:
    """(68,2) landmarks with both eyes' upper and lower lids on their midline (eye aspect ratio 0)."""
    out = np.array(landmarks, np.float64)
    for a, b, c, d in UPPER_LOWER:
        for upper, lower in ((a, c), (b, d)):
            out[[upper, lower]] = 0.5 * (out[upper] + out[lower])
    return out


class Blinking:
    """``rec.prepare`` whose detected eyelids are closed on the frames in ``blinks`` (pass 1 prepares
    every frame once, in order)."""

    def __init__(self, prepare, blinks: set[int]) -> None:
        self.prepare, self.blinks, self.count = prepare, blinks, 0

    def __call__(self, image, *args, **kwargs):
        prepared = self.prepare(image, *args, **kwargs)
        if self.count in self.blinks:
            for crop in prepared.crops:
                crop.landmarks = closed_lids(crop.landmarks)
        self.count += 1
        return prepared


def test_gaze_hold_keeps_the_last_frame_within_a_track():
    hold = GazeHold()
    assert np.array_equal(hold.held(0.0), np.zeros((1, 2, 2)))

    class Eyes:
        gaze = np.array([[10.0, -3.0], [8.0, -2.0]])

    hold.update(Eyes(), 1.0)
    assert np.array_equal(hold.held(1.0 + TRACK_RESET_S), Eyes.gaze[None])
    assert np.array_equal(hold.held(1.01 + TRACK_RESET_S), np.zeros((1, 2, 2)))  # a new track
    hold.update(None, 2.0)  # a head without eyeballs changes nothing
    assert np.array_equal(hold.held(1.2), Eyes.gaze[None])


def test_a_blink_holds_the_previous_gaze(fit_model, faces_dir, tmp_path, monkeypatch):
    from PIL import Image

    photo = media.fit_height(np.asarray(Image.open(faces_dir / PHOTO).convert("RGB")), 224)
    with media.video_writer(tmp_path / "blink.mp4", fps=10) as write:
        for _ in range(6):
            write(photo)
    rec = Reconstructor(fit_model, device="cpu", detail=False, fit=QUICK)
    blinks = {0, 3, 4}
    monkeypatch.setattr(rec, "prepare", Blinking(rec.prepare, blinks))
    faces = [frame.face for frame in rec.iter_video(tmp_path / "blink.mp4")]
    assert all(face is not None for face in faces)
    for k, face in enumerate(faces):
        assert face.eyes.open.all() != (k in blinks)  # no iris between closed lids
        assert (face.eyes.blink == 1.0).all() == (k in blinks)
    assert np.array_equal(faces[0].eyes.gaze, np.zeros((2, 2)))  # nothing before: looking ahead
    measured = faces[2].eyes.gaze
    assert np.abs(measured).max() > 0.5  # the photo's gaze is not the neutral one
    for k in (3, 4):
        assert np.array_equal(faces[k].eyes.gaze, measured)
        row, expected = (
            live_link_row(faces[k].arkit_weights, faces[k].codes.pose[0, :3]),
            [*live_link_row(faces[2].arkit_weights, faces[2].codes.pose[0, :3])],
        )
        assert row[-6:] == pytest.approx(expected[-6:], abs=1e-9)  # the CSV's eye rotations
    # the eyeballs are posed with the held gaze (rendered and exported like the measured one)
    assert not np.allclose(faces[3].eyes.vertices, faces[0].eyes.vertices, atol=1e-4)


def test_a_turned_face_is_placed_from_the_encoders_points_from_the_next_frame_on(faces_dir, tmp_path):
    """Once the encoder reads a face as turned (Reconstructor.turned), the next frames' crops come from
    the encoder's own landmarks (read in the previous frame's crop), as reframe_turned does for photos."""
    from PIL import Image

    from vitdeca.faces import crop_face
    from vitdeca.model import DecaModel, ModelConfig

    photo = media.fit_height(np.asarray(Image.open(faces_dir / PHOTO).convert("RGB")), 224)
    with media.video_writer(tmp_path / "clip.mp4", fps=10) as write:
        for _ in range(4):
            write(photo)
    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=False, image_size=64, uv_size=32))
    rec = Reconstructor(model, device="cpu", detail=False, reframe_min_yaw=0.0)  # every face is turned
    read = []
    points = rec.encoder_points

    def spy(crops, encoded):
        read.append(points(crops, encoded))
        return read[-1]

    rec.encoder_points = spy
    frames = list(rec.iter_video(tmp_path / "clip.mp4", smooth=False))
    assert [f.face is not None for f in frames] == [True] * 4
    assert len(read) == 3  # frames 1-3: the encoder's points of the previous frame's turn decided
    for frame, own in zip(frames[1:], read, strict=True):
        expected = crop_face(frame.image, own[0], size=64).matrix
        assert np.allclose(frame.face.crop_matrix, expected)
    detector = crop_face(frames[0].image, frames[0].face.detected_landmarks, size=64).matrix
    assert np.allclose(frames[0].face.crop_matrix, detector)  # the first frame: the detector's points


@pytest.mark.parametrize("frames", [4, 1])
def test_refine_fits_a_track_once_with_every_frame(faces_dir, tmp_path, monkeypatch, frames):
    """Under refine, pass one only runs the encoder and the track's joint fit, with refine's settings,
    is the one refinement of every frame (no fit per frame before it); a one-frame track is refined
    alone. Fitted to the detector's points (``refine_fusion`` off: an untrained encoder's spread is
    arbitrary; the mix has its own test below), the landmarks end nearer the detector's than the
    encoder's."""
    from PIL import Image

    import vitdeca.fit
    from vitdeca.model import DecaModel, ModelConfig
    from vitdeca.pipeline.identity import IDENTITY_CODES

    photo = media.fit_height(np.asarray(Image.open(faces_dir / PHOTO).convert("RGB")), 224)
    with media.video_writer(tmp_path / "clip.mp4", fps=10) as write:
        for _ in range(frames):
            write(photo)
    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=False, image_size=64, uv_size=32))
    config = FitConfig(refine_landmark_iterations=40, refine_fusion=False)
    rec = Reconstructor(model, device="cpu", detail=False, fit=config, refine=True)
    calls, fit_codes = [], vitdeca.fit.fit_codes

    def spy(model, images, landmarks, config, init=None, masks=None, shared=()):
        calls.append((landmarks.shape[0], config.landmark_iterations, config.stages, tuple(shared)))
        return fit_codes(model, images, landmarks, config, init=init, masks=masks, shared=shared)

    monkeypatch.setattr(vitdeca.fit, "fit_codes", spy)
    faces = [frame.face for frame in rec.iter_video(tmp_path / "clip.mp4", smooth=False)]
    assert all(face is not None for face in faces) and len(faces) == frames
    shared = IDENTITY_CODES if frames > 1 else ()
    assert calls == [(frames, 40, ["landmarks"], shared)]
    encoder = Reconstructor(model, device="cpu", detail=False)
    regressed = [frame.face for frame in encoder.iter_video(tmp_path / "clip.mp4", smooth=False)]
    for face, alone in zip(faces, regressed, strict=True):
        error = np.abs(face.landmarks2d - face.detected_landmarks).mean()
        assert error < 0.5 * np.abs(alone.landmarks2d - alone.detected_landmarks).mean()


@pytest.mark.parametrize("fusion", [True, False])
def test_video_refine_fits_each_frame_to_its_mixed_targets(faces_dir, tmp_path, fusion):
    """Under refine a video's joint fit fits each frame to ``Reconstructor.refine_targets`` (the
    detector's spread measured on the frame, mixed with the encoder's points), as a photo's refine does;
    with ``refine_fusion`` off to the detector's points. Each frame's NME stays against the detector's."""
    from PIL import Image

    import vitdeca.fit
    from vitdeca.faces import transform_points
    from vitdeca.model import DecaModel, ModelConfig

    photo = media.fit_height(np.asarray(Image.open(faces_dir / PHOTO).convert("RGB")), 224)
    with media.video_writer(tmp_path / "clip.mp4", fps=10) as write:
        for _ in range(3):
            write(photo)
    torch.manual_seed(0)  # the untrained encoder's readings, whatever ran before
    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", detail=False, image_size=64, uv_size=32))
    config = FitConfig(refine_landmark_iterations=5, refine_fusion=fusion)
    rec = Reconstructor(model, device="cpu", detail=False, fit=config, refine=True)
    made, fitted = [], []
    refine_targets, fit_codes = rec.refine_targets, vitdeca.fit.fit_codes

    def targets_spy(images, crops, encoded, mirrored=None):
        made.append(refine_targets(images, crops, encoded, mirrored))
        return made[-1]

    def fit_spy(model, images, landmarks, config, init=None, masks=None, shared=()):
        fitted.append(landmarks.clone())
        return fit_codes(model, images, landmarks, config, init=init, masks=masks, shared=shared)

    rec.refine_targets = targets_spy
    batches, forward = [], model.encoder.forward
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vitdeca.fit, "fit_codes", fit_spy)
        patch.setattr(model.encoder, "forward", lambda x: batches.append(len(x)) or forward(x))
        faces = [frame.face for frame in rec.iter_video(tmp_path / "clip.mp4", smooth=False)]
    assert len(made) == (3 if fusion else 0) and len(fitted) == 1  # without the mix no targets to make
    assert batches == ([2] if fusion else [1]) * 3  # with the mix, each frame and its mirror in one batch
    detected = torch.from_numpy(
        np.stack([transform_points(f.detected_landmarks, f.crop_matrix) for f in faces])
    ).float()
    targets = torch.cat([t for t, _ in made]) if fusion else fitted[0]
    torch.testing.assert_close(fitted[0], targets)
    moved = (fitted[0] - detected).norm(dim=-1).amax()
    assert (moved > 0.05) if fusion else (moved < 1e-3)  # untrained encoder: far, but not infinitely unsure
    from vitdeca.fit import landmark_nme

    points, detector = (torch.from_numpy(np.stack([getattr(f, k) for f in faces])) for k in LANDMARKS)
    to_detector = landmark_nme(points, detector).numpy()
    np.testing.assert_allclose([f.fit_nme for f in faces], to_detector, rtol=0.05)
