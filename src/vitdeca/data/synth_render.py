"""Rendering for :mod:`vitdeca.data.synth`: camera placement, convex eyeballs, the batch renderer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vitdeca.data.synth_appearance import (
    PhotoBackgrounds,
    TexelGeometry,
    procedural_albedo,
    procedural_background,
    read_texture,
    socket_weights,
)
from vitdeca.data.synth_spec import ImageSpec, Subject, SynthOptions
from vitdeca.media import float_to_uint8


@dataclass
class Rendered:
    """A batch's outputs: images (B,S,S,3) uint8, landmarks (B,68,2) pixels, masks (B,S,S) bool,
    cameras (B,3) weak perspective in the image frame, visible (B,68) bool: landmarks not hidden by the
    head itself (:func:`vitdeca.render.visibility.render_visibility`)."""

    images: np.ndarray
    landmarks: np.ndarray
    masks: np.ndarray
    cameras: np.ndarray
    visible: np.ndarray


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
        """Render a batch of images (see :class:`Rendered`)."""
        from vitdeca.head.lbs import batch_rodrigues
        from vitdeca.render import project_points
        from vitdeca.render.visibility import render_visibility

        def stack(values: list) -> torch.Tensor:
            return torch.from_numpy(np.stack(values).astype(np.float32))

        pose = stack([s.pose for s in specs])
        out = self.head(stack([s.subject.shape for s in specs]), stack([s.expression for s in specs]), pose)
        vertices = out.vertices
        if self.eye_ids is not None:
            forward = batch_rodrigues(pose[:, :3])[:, :, 2]
            radius = self.options.eyeball_mm * self.head.units_per_mm
            vertices = eyeballs(vertices, out.landmarks3d, self.eye_ids, forward, radius)
        camera = fit_camera(
            out.landmarks3d, stack([s.fraction for s in specs]), stack([s.shift for s in specs])
        )
        rngs = [np.random.default_rng(s.rng_seed) for s in specs]
        result = self.renderer(
            vertices,
            camera,
            torch.stack([self.albedo(s.subject) for s in specs]),
            stack([s.light for s in specs]),
            background=torch.stack([self.background(rng) for rng in rngs]),
        )
        image = result.image
        face_index = result.fragments.face_index
        on_face = (face_index >= 0) & self.face_triangles[face_index.clamp_min(0)]
        if self.eyes is not None:
            image, on_face = self._draw_eyes(specs, pose, camera, result, on_face)
        ss = self.options.supersample
        images = torch.nn.functional.avg_pool2d(image.clamp(0, 1), ss).permute(0, 2, 3, 1).numpy()
        masks = torch.nn.functional.avg_pool2d(on_face[:, None].float(), ss)[:, 0].numpy() >= 0.5
        size = self.options.size
        return Rendered(
            images=np.stack([_finish(*args) for args in zip(images, masks, specs, rngs, strict=True)]),
            landmarks=project_points(out.landmarks3d, camera, size, size).numpy().astype(np.float32),
            masks=masks,
            cameras=camera.numpy(),
            visible=render_visibility(out.landmarks3d, camera, result.depth, result.alpha).numpy(),
        )

    def _draw_eyes(self, specs, pose, camera, result, on_face):
        """The render with the eyeballs (turned by each spec's gaze) where they are in front, and the
        face mask without them."""
        from vitdeca.pipeline.eyes import in_front, render_eyes

        shape = torch.from_numpy(np.stack([s.subject.shape for s in specs]).astype(np.float32))
        gaze = torch.from_numpy(np.stack([s.gaze for s in specs]).astype(np.float32))
        vertices = self.eyes(shape, pose, gaze).vertices
        texture = float_to_uint8(self.eyes.texture())
        light = torch.from_numpy(np.stack([s.light for s in specs]).astype(np.float32))
        eyes = render_eyes(self.eyes, vertices, camera, light, self.render_size, texture)
        nearer = in_front(eyes, result.alpha[:, 0], result.depth[:, 0])
        return torch.where(nearer[:, None], eyes.image, result.image), on_face & ~nearer


def _finish(image: np.ndarray, mask: np.ndarray, spec: ImageSpec, rng: np.random.Generator) -> np.ndarray:
    """Camera effects on a float (H,W,3) image: auto exposure (the face's mean luma (face ``mask`` (H,W))
    pulled part-way towards 0.42), gamma, white balance, sensor noise → uint8."""
    luma = float((image[mask] @ np.array([0.299, 0.587, 0.114])).mean()) if mask.any() else 0.42
    exposure = float(np.clip((0.42 / max(luma, 1e-3)) ** 0.6, 0.8, 2.5))
    image = np.power(np.clip(image * exposure, 0.0, 1.0), spec.gamma) * spec.gain
    image = image + rng.normal(0.0, spec.noise, image.shape)
    return float_to_uint8(image)
