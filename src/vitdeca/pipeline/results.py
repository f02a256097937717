"""What a reconstruction returns: :class:`FaceResult` per face (arrays in numpy, 2D points in the
pixel-centre frame of the original image), the shared :class:`MeshTopology`, and the vis panels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vitdeca import media

VIDEO_VIS_HEIGHT = 360  # pixels: the height of a video's vis panels


@dataclass
class MeshTopology:
    """What every mesh of one head model shares: triangles (F,3), UV coordinates (T,2) (v up) and UV
    triangles (F,3), the head model's name and its units per millimetre; ``arkit``: the model's
    :class:`~vitdeca.arkit.ArkitMapping`, None without ARKit semantics (FLAME); ``eyes``: the
    eyeballs' :class:`~vitdeca.pipeline.eyes.EyeTopology`, None for a head without eyeballs."""

    faces: np.ndarray
    uv_coords: np.ndarray
    uv_faces: np.ndarray
    head_model: str
    units_per_mm: float
    arkit: Any = None
    eyes: Any = None


@dataclass
class DetailMesh:
    """The dense mesh with the detail displacements applied: vertices (N,3), faces (M,3), and UV
    coordinates per vertex (N,2) or None."""

    vertices: np.ndarray
    faces: np.ndarray
    uv_coords: np.ndarray | None = None


@dataclass
class FaceResult:
    """One reconstructed face of one image. Arrays are numpy; 2D points use the pixel-centre frame.

    codes: the face's :class:`~vitdeca.codes.Codes` (batch 1, CPU). vertices (V,3) and landmarks3d (68,3)
    in head-model units; neutral_vertices (V,3) with expression and pose zeroed (the NoW export);
    landmarks2d (68,2) fitted landmarks in ORIGINAL image pixels; detected_landmarks (68,2) the
    detector's, same frame; crop (S,S,3) uint8 with crop_matrix (2,3) original→crop pixels; render,
    shape_render (S,S,3) uint8 crop-space renders (textured; grey shaded geometry), alpha (S,S) float in
    [0,1]; depth_png (S,S) uint8 (nearer brighter, 0 off the face); texture (T,T,3) uint8 photo texture
    in UV space or None; :attr:`detail` the displaced dense mesh or None; mesh the shared topology;
    fit_nme the landmark NME the fit reached (None without fitting); landmarks_visible (68,) bool: the
    fitted landmark is neither hidden by the head itself (depth test of the fitted mesh,
    :mod:`vitdeca.render.visibility`) nor outside the original image (None: not computed); eyes: the
    measured gaze, blink and posed eyeballs (:class:`~vitdeca.pipeline.eyes.EyeMeasure`), None for a
    head without eyeballs. ``render``/``shape_render``/``alpha``/``depth_png`` include the eyeballs.
    """

    face_index: int
    box: np.ndarray
    score: float
    codes: Any
    vertices: np.ndarray
    neutral_vertices: np.ndarray
    landmarks3d: np.ndarray
    neutral_landmarks3d: np.ndarray
    landmarks2d: np.ndarray
    detected_landmarks: np.ndarray
    crop: np.ndarray
    crop_matrix: np.ndarray
    render: np.ndarray
    shape_render: np.ndarray
    alpha: np.ndarray
    depth_png: np.ndarray
    mesh: MeshTopology
    texture: np.ndarray | None = None
    detail_loader: Callable[[], DetailMesh] | None = field(default=None, repr=False)
    fit_nme: float | None = None
    landmarks_visible: np.ndarray | None = None
    eyes: Any = None
    _detail: DetailMesh | None = field(default=None, init=False, repr=False)

    @property
    def detail(self) -> DetailMesh | None:
        """The displaced dense mesh (built on first access: ~50k vertices), None without the detail branch."""
        if self._detail is None and self.detail_loader is not None:
            self._detail = self.detail_loader()
        return self._detail

    @property
    def now_landmarks(self) -> np.ndarray:
        """(7,3) NoW landmarks of the neutral mesh (:data:`~vitdeca.evaluation.now.NOW_LANDMARKS_IBUG68`)."""
        from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68  # here: scipy stays out of batch's imports

        return self.neutral_landmarks3d[list(NOW_LANDMARKS_IBUG68)]

    def vis(self) -> np.ndarray:
        """The crop-space vis grid: input | landmarks | shape overlay | textured render (uint8)."""
        from vitdeca.faces import transform_points

        detected = transform_points(self.detected_landmarks, self.crop_matrix)
        fitted = transform_points(self.landmarks2d, self.crop_matrix)
        return media.vis_grid(
            face_panels(self.crop, detected, fitted, self.shape_render, self.render, self.alpha)
        )

    def vis_in_image(self, image: np.ndarray, max_height: int = VIDEO_VIS_HEIGHT, renders=None) -> np.ndarray:
        """The vis grid in the original image's frame, for videos. ``renders``: (render, shape render,
        alpha) in the image's pixels (:meth:`Reconstructor.render_in_image`: the whole head); None: the
        crop-space renders warped back (cut at the crop's edge)."""
        if renders is None:
            size = (image.shape[1], image.shape[0])
            renders = [media.warp_to_image(a, self.crop_matrix, size) for a in
                       (self.render, self.shape_render, self.alpha.astype(np.float32))]  # fmt: skip
        render, shape, alpha = renders
        panels = face_panels(image, self.detected_landmarks, self.landmarks2d, shape, render, alpha)
        return media.vis_grid([media.fit_height(p, max_height) for p in panels])

    @property
    def arkit_weights(self) -> np.ndarray | None:
        """(52,) ARKit weights in Apple's order (:data:`vitdeca.arkit.ARKIT_NAMES`), None when the head
        model has no ARKit semantics. With measured eyes, the eyeLook* weights come from the gaze
        (:func:`vitdeca.arkit.eye_look_weights`) instead of the expression code."""
        if self.mesh.arkit is None:
            return None
        weights = self.mesh.arkit.weights(self.codes.expression.reshape(-1))
        if self.eyes is not None:
            from vitdeca.arkit import ARKIT_NAMES, eye_look_weights

            for (yaw, pitch), side in zip(self.eyes.gaze, ("Left", "Right"), strict=True):
                for name, value in eye_look_weights(float(yaw), float(pitch), side).items():
                    weights[ARKIT_NAMES.index(name)] = value
        return weights

    def codes_arrays(self) -> dict[str, np.ndarray]:
        """Every code as a (n,) float32 array (light flattened to 27), keyed by name."""
        out = {}
        for name, value in self.codes.as_dict().items():
            if value is not None:
                out[name] = value.detach().cpu().numpy().reshape(-1).astype(np.float32)
        return out


def face_panels(image, detected, fitted, shape, render, alpha) -> list[np.ndarray]:
    """The four vis panels: the image; detected (green) and fitted (red) landmarks; the grey shape
    blended over the image; the textured render over the image. Arrays uint8 (H,W,3), alpha (H,W)."""
    marks = media.draw_landmarks(image, detected, color=(0, 255, 0))
    marks = media.draw_landmarks(marks, fitted, color=(255, 40, 40))
    return [image, marks, media.blend(image, shape, alpha, opacity=0.8), media.blend(image, render, alpha)]


@dataclass
class VideoFrame:
    """One frame of a video: its index, time (s), the frame uint8 (H,W,3), the tracked face (or None)
    and, when the frame failed, why."""

    index: int
    time: float
    image: np.ndarray
    face: FaceResult | None
    error: str = ""
