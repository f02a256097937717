"""Rendering for :mod:`vitdeca.data.synth`: camera placement, convex eyeballs, the neck's fade, the batch
renderer and the camera effects (blur, exposure, gamma, white balance, noise)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from vitdeca.data.synth_appearance import (
    PhotoBackgrounds,
    TexelGeometry,
    procedural_albedo,
    procedural_background,
    read_texture,
    smoothstep,
    socket_weights,
)
from vitdeca.data.synth_occluders import covered_landmarks, draw_occluder
from vitdeca.data.synth_spec import Blur, ImageSpec, Subject, SynthOptions
from vitdeca.media import float_to_uint8


@dataclass
class Rendered:
    """A batch's outputs: images (B,S,S,3) uint8, landmarks (B,68,2) pixels, masks (B,S,S) bool (the
    visible face-mask pixels, without occluders), cameras (B,3) weak perspective in the image frame,
    visible (B,68) bool: landmarks neither hidden by the head itself
    (:func:`vitdeca.render.visibility.render_visibility`) nor under an occluder, occluded (B,) bool:
    images with an occluder drawn."""

    images: np.ndarray
    landmarks: np.ndarray
    masks: np.ndarray
    cameras: np.ndarray
    visible: np.ndarray
    occluded: np.ndarray


def fit_camera(landmarks3d: torch.Tensor, fraction: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Weak-perspective cameras (B,3) = (s, tx, ty) placing the posed landmarks (B,68,3) so that their
    box (mean of width and height) spans ``fraction`` (B,) of the image, its centre offset by ``shift``
    (B,2) image fractions (x right, y down)."""
    xy = landmarks3d[..., :2]
    low, high = xy.amin(dim=1), xy.amax(dim=1)
    scale = 2.0 * fraction / ((high - low).sum(dim=1) / 2.0)
    offset = torch.stack([shift[:, 0], -shift[:, 1]], dim=1) * 2.0  # image fraction → NDC (y up)
    translation = -(low + high) / 2.0 + offset / scale[:, None]
    return torch.cat([scale[:, None], translation], dim=1)


def eyeballs(vertices: torch.Tensor, landmarks3d: torch.Tensor, eye_ids: torch.Tensor, forward: torch.Tensor,
             radius: float) -> torch.Tensor:  # fmt: skip
    """Turn the eye sockets (concave cups) into convex eyeballs: vertices (B,V,3), landmarks (B,68,3),
    eye_ids (V,) long (0 right eye, 1 left eye, -1 not an eye), forward (B,3) unit face direction.

    Each socket vertex keeps its offset across the face direction and moves along it onto the front of
    a ball of ``radius`` (vertices farther than ``radius`` from the axis go to the ball's equator). The
    ball's front lies ``radius``/12 behind the midpoint of the eye corners (iBUG 36/39, 42/45), i.e.
    1 mm for a 12 mm ball, so it stays behind the lids. Returns new vertices."""
    out = vertices.clone()
    f = forward[:, None]  # (B,1,3)
    for eye, (a, b) in enumerate(((36, 39), (42, 45))):
        idx = torch.nonzero(eye_ids == eye).squeeze(1)
        if idx.numel() == 0:
            continue
        centre = ((landmarks3d[:, a] + landmarks3d[:, b]) / 2 - forward * radius * (13.0 / 12.0))[:, None]
        rel = vertices[:, idx] - centre
        across = rel - f * (rel * f).sum(dim=-1, keepdim=True)
        height = (radius**2 - (across * across).sum(dim=-1, keepdim=True)).clamp_min(0.0).sqrt()
        out[:, idx] = centre + across + f * height
    return out


def eye_assignment(head) -> np.ndarray:
    """(V,) 0/1 for eye-socket vertices nearest the right/left eye corners of the template, else -1."""
    sockets = socket_weights(head)[:, 0] > 0.5
    with torch.no_grad():
        zeros = [torch.zeros(1, n) for n in (head.n_shape, head.n_expression, head.n_pose)]
        lmk = head(*zeros).landmarks3d[0].numpy()
    centres = np.stack([(lmk[36] + lmk[39]) / 2, (lmk[42] + lmk[45]) / 2])
    nearest = np.linalg.norm(head.template_vertices.numpy()[:, None] - centres[None], axis=2).argmin(axis=1)
    return np.where(sockets, nearest, -1)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """The vertices of each open boundary (edges used by one triangle only) of a triangle list (F,3),
    one array per connected boundary, the longest first."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    border = unique[counts == 1]
    vertices = np.unique(border)
    ends = np.searchsorted(vertices, border)
    graph = coo_matrix((np.ones(len(ends)), (ends[:, 0], ends[:, 1])), shape=(len(vertices),) * 2)
    count, labels = connected_components(graph, directed=False)
    return sorted((vertices[labels == k] for k in range(count)), key=len, reverse=True)


def neck_fade(head, fade_mm: float) -> np.ndarray | None:
    """(V,) float32 per-vertex opacity: 0 on the mesh's longest open boundary (the cut at the neck; the
    mouth and eye openings, if open, are shorter), rising smoothly to 1 at ``fade_mm`` from it (distance
    to its nearest vertex on the template). None when ``fade_mm`` is 0 or the mesh has no boundary."""
    from scipy.spatial import cKDTree

    loops = boundary_loops(head.faces.numpy()) if fade_mm > 0 else []
    if not loops:
        return None
    vertices = head.template_vertices.double().numpy() / head.units_per_mm
    distance, _ = cKDTree(vertices[loops[0]]).query(vertices)
    return smoothstep(0.0, fade_mm, distance).astype(np.float32)


class SynthRenderer:
    """Renders batches of :class:`ImageSpec`: holds the head model, a renderer at ``size · supersample``,
    the texel geometry for procedural albedos, the backgrounds and the current subjects' albedos."""

    def __init__(self, head, options: SynthOptions) -> None:
        from vitdeca.render import MeshRenderer

        self.head, self.options = head, options
        self.render_size = options.size * options.supersample
        self.renderer = MeshRenderer(
            head.faces, head.uv_coords, head.uv_faces, self.render_size, options.uv_size
        )
        self.geometry = TexelGeometry.from_head(head, options.uv_size)
        convex = options.eyeball_mm > 0 and options.eyes == "convex"
        self.eye_ids = torch.from_numpy(eye_assignment(head)) if convex else None
        self.eyes = head.eyeballs() if options.eyes == "ict" else None
        if options.eyes == "ict" and self.eyes is None:
            from vitdeca.errors import VitdecaError

            raise VitdecaError(f"synth --eyes ict: head model {head.name!r} has no eyeballs")
        self.face_triangles = head.face_mask[head.faces].all(dim=1)  # (F,) bool
        fade = neck_fade(head, options.neck_fade_mm)
        self.fade = None if fade is None else torch.from_numpy(fade)[None, :, None]  # (1,V,1)
        self.backgrounds = (
            PhotoBackgrounds(options.backgrounds, options.background_detector)
            if options.backgrounds
            else None
        )
        self._albedos: dict[str, torch.Tensor] = {}

    def albedo(self, subject: Subject) -> torch.Tensor:
        """The subject's UV albedo (3,S,S) (cached while its images are rendered)."""
        if subject.name not in self._albedos:
            if len(self._albedos) > 2 * self.options.batch_size:
                self._albedos.clear()
            if subject.texture is not None:
                uv = read_texture(subject.texture, self.options.uv_size)
            else:
                uv = procedural_albedo(self.geometry, subject.skin)
            self._albedos[subject.name] = torch.from_numpy(np.ascontiguousarray(uv.transpose(2, 0, 1)))
        return self._albedos[subject.name]

    def background(self, rng: np.random.Generator) -> torch.Tensor:
        """(3,H,W) at the render size: a photo crop or a procedural background."""
        size = self.render_size
        if self.backgrounds is not None and rng.uniform() < self.options.photo_fraction:
            image = self.backgrounds.sample(rng, size)
        else:
            image = procedural_background(rng, size)
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    @torch.no_grad()
    def render(self, specs: list[ImageSpec]) -> Rendered:
        """Render a batch of images (see :class:`Rendered`): the head over its background (the neck
        fading out), eyes, occluders, then the camera effects."""
        from vitdeca.render import project_points
        from vitdeca.render.visibility import render_visibility

        pose = _stack([s.pose for s in specs])
        out, vertices = self._posed(specs, pose)
        camera = fit_camera(
            out.landmarks3d, _stack([s.fraction for s in specs]), _stack([s.shift for s in specs])
        )
        rngs = [np.random.default_rng(s.rng_seed) for s in specs]
        background = torch.stack([self.background(rng) for rng in rngs])
        albedo = torch.stack([self.albedo(s.subject) for s in specs])
        result = self.renderer(
            vertices, camera, albedo, _stack([s.light for s in specs]), background=background
        )
        image = self._fade_neck(result, background)
        face_index = result.fragments.face_index
        on_face = (face_index >= 0) & self.face_triangles[face_index.clamp_min(0)]
        if self.eyes is not None:
            image, on_face = self._draw_eyes(specs, pose, camera, image, result, on_face)
        ss, size = self.options.supersample, self.options.size
        images = torch.nn.functional.avg_pool2d(image.clamp(0, 1), ss).permute(0, 2, 3, 1).numpy()
        masks = torch.nn.functional.avg_pool2d(on_face[:, None].float(), ss)[:, 0].numpy() >= 0.5
        landmarks = project_points(out.landmarks3d, camera, size, size).numpy().astype(np.float32)
        visible = render_visibility(out.landmarks3d, camera, result.depth, result.alpha).numpy()
        occluded = np.zeros(len(specs), bool)
        for k, spec in enumerate(specs):
            if spec.occluder is not None:
                images[k], masks[k], visible[k], occluded[k] = self._occlude(
                    spec, images[k], masks[k], landmarks[k], visible[k]
                )
        return Rendered(
            images=np.stack([_finish(*args) for args in zip(images, masks, specs, rngs, strict=True)]),
            landmarks=landmarks,
            masks=masks,
            cameras=camera.numpy(),
            visible=visible,
            occluded=occluded,
        )

    def _posed(self, specs: list[ImageSpec], pose: torch.Tensor):
        """The head model's output for the specs and its vertices (with the convex eyeballs)."""
        from vitdeca.head.lbs import batch_rodrigues

        out = self.head(_stack([s.subject.shape for s in specs]), _stack([s.expression for s in specs]), pose)
        vertices = out.vertices
        if self.eye_ids is not None:
            forward = batch_rodrigues(pose[:, :3])[:, :, 2]
            radius = self.options.eyeball_mm * self.head.units_per_mm
            vertices = eyeballs(vertices, out.landmarks3d, self.eye_ids, forward, radius)
        return out, vertices

    def _fade_neck(self, result, background: torch.Tensor) -> torch.Tensor:
        """The render with the neck blended into the background by the per-vertex fade weight:
        alpha·fade·render + (1 − alpha·fade)·background."""
        if self.fade is None:
            return result.image
        from vitdeca.render.rasterize import interpolate

        clear = result.alpha * (1.0 - interpolate(result.fragments, self.renderer.faces, self.fade))
        return result.image + clear * (background - result.image)

    def _occlude(self, spec: ImageSpec, image, mask, landmarks, visible):
        """One image's occluder: (image, mask and visibility without the occluded pixels, drawn?)."""
        tone = spec.subject.skin.tone if spec.subject.skin is not None else None
        image, hidden = draw_occluder(
            spec.occluder, image, mask, landmarks, self.options.occluder_max_area, self.backgrounds, tone
        )
        return image, mask & ~hidden, visible & ~covered_landmarks(hidden, landmarks), bool(hidden.any())

    def _draw_eyes(self, specs, pose, camera, image, result, on_face):
        """``image`` with the eyeballs (turned by each spec's gaze) where they are in front of the head
        render ``result``, and the face mask without them."""
        from vitdeca.pipeline.eyes import in_front, render_eyes

        vertices = self.eyes(
            _stack([s.subject.shape for s in specs]), pose, _stack([s.gaze for s in specs])
        ).vertices
        texture = float_to_uint8(self.eyes.texture())
        eyes = render_eyes(
            self.eyes, vertices, camera, _stack([s.light for s in specs]), self.render_size, texture
        )
        nearer = in_front(eyes, result.alpha[:, 0], result.depth[:, 0])
        return torch.where(nearer[:, None], eyes.image, image), on_face & ~nearer


def _stack(values: list) -> torch.Tensor:
    return torch.from_numpy(np.stack(values).astype(np.float32))


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """(K,K) float32 kernel summing to 1: an anti-aliased line of ``length`` pixels through the centre at
    ``angle`` degrees (x right, y down), made point-symmetric."""
    half = int(np.ceil(length / 2)) + 1
    reach = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))]) * length / 2
    ends = [tuple(int(v) for v in np.round((half + sign * reach) * 16)) for sign in (-1, 1)]
    canvas = np.zeros((2 * half + 1, 2 * half + 1), np.uint8)
    cv2.line(canvas, ends[0], ends[1], 255, 1, cv2.LINE_AA, 4)
    kernel = canvas.astype(np.float32)
    kernel = kernel + kernel[::-1, ::-1]  # exactly centred: the blur does not move the landmarks
    return kernel / kernel.sum()


def blur_image(image: np.ndarray, blur: Blur) -> np.ndarray:
    """A float (H,W,3) image blurred by ``blur`` (Gaussian defocus or linear motion; edges replicated)."""
    if blur.kind == "gaussian":
        return cv2.GaussianBlur(image, (0, 0), blur.sigma, borderType=cv2.BORDER_REPLICATE)
    kernel = motion_kernel(blur.sigma * np.sqrt(12.0), blur.angle)
    return cv2.filter2D(image, -1, kernel, borderType=cv2.BORDER_REPLICATE)


def _finish(image: np.ndarray, mask: np.ndarray, spec: ImageSpec, rng: np.random.Generator) -> np.ndarray:
    """Camera effects on a float (H,W,3) image: the spec's blur, auto exposure (the face's mean luma (face
    ``mask`` (H,W)) pulled part-way towards 0.42), gamma, white balance, sensor noise → uint8."""
    if spec.blur is not None:
        image = blur_image(image, spec.blur)
    luma = float((image[mask] @ np.array([0.299, 0.587, 0.114])).mean()) if mask.any() else 0.42
    exposure = float(np.clip((0.42 / max(luma, 1e-3)) ** 0.6, 0.8, 2.5))
    image = np.power(np.clip(image * exposure, 0.0, 1.0), spec.gamma) * spec.gain
    image = image + rng.normal(0.0, spec.noise, image.shape)
    return float_to_uint8(image)
