"""Video tracking in two passes: one identity per track, expressions and pose per frame, no lag.

Pass 1 reads the video and, per frame, detects the largest face, places the crop around One-Euro
smoothed landmarks (a steady crop) and estimates the codes against the frame's own detected landmarks
(fitting warm-starts from the previous frame; ``refine`` only runs the encoder here and sets the fit's
targets, the detector's points mixed with the encoder's as for photos
(:meth:`~vitdeca.pipeline.Reconstructor.refine_targets`): the track's joint fit below is its
refinement). A face lost for more than
:data:`TRACK_RESET_S` starts a new track. Only codes and landmarks are
kept, never the frames.

At the end of each track: one shape and albedo for the whole track
(:func:`vitdeca.pipeline.identity.shared_identity`: a joint landmark refit with a shared shape, with
``refine``'s settings (:meth:`vitdeca.fit.FitConfig.refining`) from the encoder's codes under ``refine``,
or the median of the regressed codes), then, with ``smooth``, zero-phase smoothing of the other codes
(:func:`smooth_track`: the One-Euro filter run forwards and backwards and averaged, so a blink is
neither delayed nor advanced).

Pass 2 reads the video again, rebuilds each crop from the stored landmarks and decodes the final codes.
An eye closed or half closed in a frame (a blink: no iris to locate, or noise) holds the gaze of the
previous frame with a face (:class:`GazeHold`), not the neutral one; a new track starts from neutral.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from vitdeca import media
from vitdeca.codes import Codes
from vitdeca.pipeline.identity import IDENTITY_CODES, cat_codes, shared_identity
from vitdeca.pipeline.results import VideoFrame

log = logging.getLogger(__name__)

# Per code: (min_cutoff Hz, beta) of its One-Euro filter. Identity and appearance barely change within
# a shot, so their cutoffs are low; expression, pose and camera follow motion.
SMOOTHING: dict[str, tuple[float, float]] = {
    "shape": (0.05, 0.0),
    "albedo": (0.2, 0.0),
    "light": (0.3, 0.0),
    "detail": (0.5, 0.5),
    "expression": (1.5, 1.0),
    "pose": (1.5, 2.0),
    "camera": (1.5, 2.0),
}
LANDMARK_SMOOTHING = (1.0, 0.05)  # detector landmarks in pixels: (min_cutoff Hz, beta s/px)
TRACK_RESET_S = 0.5  # a face lost for longer than this starts a new track (filters forget the past)


@dataclass
class Observation:
    """Pass 1's record of one frame with a face: ``crop`` (a FaceCrop whose ``landmarks`` are the
    detected ones, without its crop), ``steady`` (68,2) the smoothed landmarks the crop was
    placed from (original pixels), ``crop_landmarks`` (68,2) the detected ones in crop pixels (what the
    NME is measured against), ``targets`` (68,2) crop pixels what the track's fit fits (under
    ``refine`` the detector's points mixed with the encoder's, :meth:`Reconstructor.refine_targets`;
    else the detected ones), codes."""

    index: int
    time: float
    crop: object
    steady: np.ndarray
    crop_landmarks: np.ndarray
    targets: np.ndarray
    codes: Codes
    nme: float | None


def smooth_track(values: np.ndarray, times: np.ndarray, settings: tuple[float, float]) -> np.ndarray:
    """Zero-phase One-Euro smoothing of a track: ``values`` (T,...) sampled at ``times`` (T,) seconds,
    ``settings`` (min_cutoff Hz, beta). The causal filter lags by about its time constant; run backwards
    it leads by as much, and their mean is centred on the signal (a blink peaks on its own frame)."""
    if len(values) < 3:
        return np.asarray(values, np.float64).copy()
    forward, backward = media.OneEuroFilter(*settings), media.OneEuroFilter(*settings)
    fwd = np.stack([forward(v, t) for v, t in zip(values, times, strict=True)])
    bwd = np.stack([backward(v, -t) for v, t in zip(values[::-1], times[::-1], strict=True)])[::-1]
    return 0.5 * (fwd + bwd)


def smooth_codes(codes: Codes, times: np.ndarray) -> Codes:
    """Every code of a track (batch T) but the identity, :func:`smooth_track`-ed with the settings of
    :data:`SMOOTHING`."""
    changes = {}
    for name, value in codes.as_dict().items():
        if value is None or name in IDENTITY_CODES or name not in SMOOTHING:
            continue
        smooth = smooth_track(value.detach().cpu().numpy(), times, SMOOTHING[name])
        changes[name] = torch.as_tensor(smooth, dtype=value.dtype, device=value.device)
    return codes.replace(**changes)


def finish_track(rec, track: list[Observation], smooth: bool) -> list[Observation]:
    """One identity for ``track``, then (``smooth``) zero-phase smoothing; new observations."""
    codes = cat_codes([o.codes for o in track])
    device = codes.shape.device
    targets = torch.from_numpy(np.stack([o.targets for o in track])).float().to(device)
    codes, nme = _track_identity(rec, codes, targets)
    if nme is not None and rec.fuses_landmarks:  # the NME stays against the detector's points
        nme = rec.landmark_error(codes, torch.from_numpy(np.stack([o.crop_landmarks for o in track])))
    if smooth:
        codes = smooth_codes(codes, np.array([o.time for o in track]))
    out = []
    for k, o in enumerate(track):
        fit_nme = float(nme[k]) if nme is not None else o.nme
        out.append(dataclasses.replace(o, codes=codes.index(k), nme=fit_nme))
    return out


def _track_identity(rec, codes: Codes, marks: torch.Tensor):
    """(codes, NME per frame or None) of a track with one identity. Under ``refine`` the codes are the
    encoder's and this joint fit is the refinement, run on every frame at once: one batched fit instead
    of a fit per frame and a joint refit after it (benchmarks/results/video.md)."""
    if not rec.refine:
        return shared_identity(rec, codes, marks)
    if codes.batch_size < 2:  # nothing to share: the one frame is refined alone
        return rec.refine_codes(None, marks, codes)
    return shared_identity(rec, codes, marks, config=rec.fit_config.refining())


def iter_video(
    rec, video: media.Video | str | os.PathLike, smooth: bool = True, max_frames: int | None = None
) -> Iterator[VideoFrame]:
    """The frames of ``video`` (an open :class:`~vitdeca.media.Video`, or a path: opened and closed
    here) with their tracked face (module docstring); ``rec`` a Reconstructor. A frame that fails is
    reported in ``VideoFrame.error``, never raised."""
    if not isinstance(video, media.Video):
        with media.Video(video) as opened:
            yield from _track_video(rec, opened, smooth, max_frames)
        return
    yield from _track_video(rec, video, smooth, max_frames)


def _track_video(rec, video: media.Video, smooth: bool, max_frames: int | None) -> Iterator[VideoFrame]:
    """Both passes over one open ``video`` (:func:`iter_video`)."""
    path = video.path
    done: dict[int, Observation] = {}
    errors: dict[int, str] = {}
    for track in _pass_one(rec, video, smooth, max_frames, errors):
        done.update((o.index, o) for o in finish_track(rec, track, smooth))
    gaze = GazeHold()
    for index, frame in video.frames(max_frames):
        t = index / video.fps
        if index in errors or index not in done:
            yield VideoFrame(index, t, frame, None, error=errors.get(index, ""))
            continue
        o = done[index]
        try:
            crop = rec.recrop(frame, o.crop, o.steady)
            crop.landmarks = np.asarray(o.crop.landmarks)
            face = rec.decode(o.codes, [crop], _nme(o), held_gaze=gaze.held(t))[0]
            gaze.update(face.eyes, t)
            yield VideoFrame(index, t, frame, face)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the video
            log.warning("%s: frame %d failed (%s)", path, index, exc)
            yield VideoFrame(index, t, frame, None, error=str(exc) or type(exc).__name__)


class GazeHold:
    """The gaze a video's closed eyes keep: the last decoded frame's (measured, or itself held), for
    :data:`TRACK_RESET_S` after it (a longer gap starts a new track: neutral gaze)."""

    def __init__(self) -> None:
        self._gaze, self._time = np.zeros((2, 2)), -np.inf

    def held(self, t: float) -> np.ndarray:
        """(1,2,2) yaw/pitch degrees for a frame at ``t`` seconds: ``measure_eyes``'s ``held``."""
        return (self._gaze if t - self._time <= TRACK_RESET_S else np.zeros((2, 2)))[None]

    def update(self, eyes, t: float) -> None:
        """Remember the gaze of a decoded frame's ``eyes`` (an EyeMeasure, None: no eyeballs)."""
        if eyes is not None:
            self._gaze, self._time = np.asarray(eyes.gaze, np.float64).copy(), t


def _nme(o: Observation) -> np.ndarray | None:
    return None if o.nme is None else np.array([o.nme])


def _pass_one(rec, video: media.Video, smooth: bool, max_frames, errors: dict[int, str]):
    """Pass 1: yields each finished track (a list of :class:`Observation`); failures go to ``errors``.

    A face that the encoder turned ``rec.reframe_min_yaw`` or more in the previous frame is placed from
    the encoder's own landmarks instead of the detector's (read in the crop of the previous frame's
    steady points), through the same One-Euro filter: the crop follows a profile as
    :meth:`Reconstructor.reframe_turned` does for photos, without jumping when the face turns back."""
    marks = media.OneEuroFilter(*LANDMARK_SMOOTHING)
    track: list[Observation] = []
    previous, last_seen, turned = None, -np.inf, False
    for index, frame in video.frames(max_frames):
        t = index / video.fps
        if t - last_seen > TRACK_RESET_S:
            if track:
                yield track
            track, previous, turned = [], None, False
            marks.reset()
        try:
            prepared = rec.prepare(frame)
            if not prepared.crops:
                continue
            detected = np.asarray(prepared.crops[0].landmarks, np.float64)
            source = _encoder_source(rec, frame, prepared.crops[0], track[-1].steady) if turned else detected
            steady = marks(source, t) if smooth else source
            crop = rec.recrop(frame, prepared.crops[0], steady)
            crop.landmarks = detected  # targets: this frame's
            targets = crop.crop_landmarks
            if rec.refine:  # refined with the whole track in finish_track
                nme = None
                if rec.fuses_landmarks:  # the frame and its mirror image in one encoder batch
                    codes, mirrored = rec.encode_readings([crop])
                    fused, codes = rec.refine_targets([frame], [crop], codes, mirrored)
                    targets = fused[0].cpu().numpy().astype(np.float64)
                else:
                    codes = rec.encode_crops([crop])
            else:
                codes, nme = rec.estimate_codes([crop], init=previous)
            previous = codes.detach() if rec.fit_config is not None and not rec.refine else None
            turned = rec.uses_encoder and bool(rec.turned(codes)[0])
            stored = dataclasses.replace(crop, crop=None)  # pass 2 rebuilds the crop from ``steady``
            track.append(Observation(index, t, stored, steady, crop.crop_landmarks, targets, codes.detach(),
                                     None if nme is None else float(nme[0])))  # fmt: skip
            last_seen = t
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the video
            log.warning("%s: frame %d failed (%s)", video.path, index, exc)
            errors[index] = str(exc) or type(exc).__name__
    if track:
        yield track


def _encoder_source(rec, frame: np.ndarray, face, steady: np.ndarray) -> np.ndarray:
    """(68,2) original pixels: the encoder's landmarks of ``face`` (a FaceCrop) read in the crop around
    the previous frame's ``steady`` points."""
    probe = rec.recrop(frame, face, steady)
    return rec.encoder_points([probe], rec.encode_crops([probe]))[0]
