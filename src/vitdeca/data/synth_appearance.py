"""Appearance of synthetic faces: procedural UV albedo from a skin-tone model, photo textures, backgrounds.

The albedo of a subject is painted in the head model's UV map from the *template geometry of each texel*
(:class:`TexelGeometry`: where on the neutral head a texel lies, in mm, and in which region), so the
painted features (lips, brows, eyes, hair) stay attached to the mesh whatever the identity, expression
or pose:

    skin   = tone · (1 + 0.06 · smooth noise + 0.03 · chroma noise + 0.03 · fine noise), cheek blush
    albedo = skin, then mixed with: lips (inside the outer-lip landmark polygon), brows (a band under
             the brow landmarks), hair (above a random hairline; none when bald), eye sockets (sclera,
             iris, pupil around the eye-landmark centres) and the mouth socket (dark red)

``tone`` interpolates between two neighbouring swatches of the 10-step Monk Skin Tone scale
(:data:`SKIN_TONES`, sRGB) and is darkened by up to 20 %. Eyes and mouth need the head model's regions
(ICT's ``eye_socket_*`` and ``mouth_socket``); models without regions get skin there.

Backgrounds are procedural (gradient + smooth colour noise + blurred shapes + grain) or random crops
of real photos that avoid the photos' own faces (:class:`PhotoBackgrounds`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from vitdeca.errors import VitdecaError


def _hex(code: str) -> tuple[float, float, float]:
    return tuple(int(code[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


# The Monk Skin Tone scale's 10 swatches (sRGB), lightest first.
SKIN_TONES = tuple(
    _hex(c)
    for c in (
        "f6ede4",
        "f3e7db",
        "f7ead0",
        "eadaba",
        "d7bd96",
        "a07e56",
        "825c43",
        "604134",
        "3a312a",
        "292420",
    )
)
HAIR_COLOURS = (
    (0.05, 0.04, 0.035),  # black
    (0.13, 0.08, 0.05),  # dark brown
    (0.28, 0.17, 0.10),  # brown
    (0.58, 0.45, 0.28),  # blond
    (0.45, 0.18, 0.08),  # red
    (0.55, 0.54, 0.52),  # grey
)
IRIS_COLOURS = (
    (0.22, 0.12, 0.06),
    (0.10, 0.06, 0.03),
    (0.25, 0.38, 0.52),
    (0.28, 0.36, 0.22),
    (0.38, 0.27, 0.13),
)
SCLERA = (0.78, 0.75, 0.71)
MOUTH = (0.32, 0.10, 0.10)
BLUSH = (0.6, -0.3, -0.35)  # relative change of RGB at full blush weight


def smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    """0 below edge0, 1 above edge1, a cubic ramp between (elementwise)."""
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def smooth_noise(
    rng: np.random.Generator, height: int, width: int, cells: int, channels: int = 1
) -> np.ndarray:
    """Low-frequency noise (channels,H,W) float32 with unit std: a cells×cells Gaussian grid, bicubic."""
    grid = rng.standard_normal((cells, cells, channels)).astype(np.float32)
    up = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).reshape(height, width, channels)
    up = up.transpose(2, 0, 1)
    return up / (up.std(axis=(1, 2), keepdims=True) + 1e-6)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances (N,) from points (N,2) to the segment a-b (2,)."""
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def polyline_distance(points: np.ndarray, line: np.ndarray, closed: bool = False) -> np.ndarray:
    """Distances (N,) from points (N,2) to a polyline (K,2) (closed: back to the first vertex)."""
    ends = np.roll(line, -1, axis=0) if closed else line[1:]
    starts = line if closed else line[:-1]
    return np.min([_segment_distance(points, a, b) for a, b in zip(starts, ends, strict=True)], axis=0)


@dataclass
class TexelGeometry:
    """Per-texel facts of a head model's S×S UV map (computed once per head model and size).

    maps: name → (S,S) float32: ``lips``, ``brows``, ``iris``, ``pupil``, ``eye`` (eye-socket weight),
    ``mouth`` (mouth-socket weight), ``blush``, ``height`` (mm above the brows' top landmark),
    ``depth`` (mm in front of the outer eye corners; negative behind). ``covered`` (S,S) bool.
    """

    size: int
    maps: dict[str, np.ndarray]
    covered: np.ndarray

    @classmethod
    def from_head(cls, head, size: int) -> TexelGeometry:
        """Paint the feature weights of ``head`` (a :class:`~vitdeca.head.HeadModel`) into an S×S UV map."""
        from vitdeca.render.uv import UVSpace

        uv = UVSpace(head.faces, head.uv_coords, head.uv_faces, size)
        with torch.no_grad():
            zeros = [torch.zeros(1, n) for n in (head.n_shape, head.n_expression, head.n_pose)]
            lmk = (head(*zeros).landmarks3d[0] / head.units_per_mm).double().numpy()
            vertices = head.template_vertices.float() / head.units_per_mm
            regions = socket_weights(head)
            attributes = torch.cat([vertices, torch.from_numpy(regions).float()], dim=1)
            texels = uv.world_to_uv(attributes[None])[0].double().numpy()  # (3+2,S,S)
        covered = uv.mask[0, 0].numpy() > 0
        position = texels[:3].reshape(3, -1).T  # (S*S,3) mm
        maps = _feature_maps(position, lmk, texels[3].reshape(-1), texels[4].reshape(-1))
        return cls(size, {k: v.reshape(size, size).astype(np.float32) for k, v in maps.items()}, covered)


def socket_weights(head) -> np.ndarray:
    """(V,2) float: 1 for vertices of the eye sockets (column 0) and the mouth socket (column 1)."""
    weights = np.zeros((head.n_vertices, 2))
    for name, (start, end) in head.regions.items():
        if "socket" in name:
            weights[start:end, 0 if "eye" in name else 1] = 1.0
    return weights


def _feature_maps(
    p: np.ndarray, lmk: np.ndarray, eye: np.ndarray, mouth: np.ndarray
) -> dict[str, np.ndarray]:
    """Feature weights (N,) of texels at template positions p (N,3) mm, given the 68 landmarks (68,3) mm."""
    from matplotlib.path import Path as PolygonPath

    xy, outside_sockets = p[:, :2], (eye < 0.5) & (mouth < 0.5)
    lips = lmk[48:60]
    inside = PolygonPath(lips[:, :2]).contains_points(xy)
    signed = polyline_distance(xy, lips[:, :2], closed=True) * np.where(inside, 1.0, -1.0)
    lip_w = smoothstep(-1.0, 1.0, signed) * (p[:, 2] > lips[:, 2].min() - 8.0) * outside_sockets
    brow_d = np.minimum(*(polyline_distance(xy, lmk[a:b, :2] - [0.0, 2.5]) for a, b in ((17, 22), (22, 27))))
    brow_w = (1.0 - smoothstep(2.0, 3.5, brow_d)) * (p[:, 2] > lmk[17:27, 2].min() - 15.0) * outside_sockets
    eye_d = _iris_distance(p, lmk)
    cheeks = np.stack([(lmk[2] + lmk[31]) / 2, (lmk[14] + lmk[35]) / 2])[:, :2]
    cheek_d = np.linalg.norm(xy[:, None] - cheeks[None], axis=2).min(axis=1)
    front = p[:, 2] > lmk[36:48, 2].min() - 20.0
    return {
        "lips": lip_w,
        "brows": brow_w,
        "iris": 1.0 - smoothstep(5.0, 6.0, eye_d),
        "pupil": 1.0 - smoothstep(1.8, 2.4, eye_d),
        "eye": np.clip(eye, 0.0, 1.0),
        "mouth": np.clip(mouth, 0.0, 1.0),
        "blush": np.exp(-(cheek_d**2) / (2 * 15.0**2)) * front * outside_sockets,
        "height": p[:, 1] - lmk[17:27, 1].max(),
        "depth": p[:, 2] - lmk[[36, 45], 2].mean(),
    }


def _iris_distance(p: np.ndarray, lmk: np.ndarray) -> np.ndarray:
    """(N,) distance in mm of each point from the axis (along z) through the nearer eye's corner midpoint."""
    centres = np.stack([(lmk[36] + lmk[39]) / 2, (lmk[42] + lmk[45]) / 2])[:, :2]
    return np.linalg.norm(p[:, None, :2] - centres[None], axis=2).min(axis=1)


@dataclass
class SkinParams:
    """One subject's procedural appearance. Colours are RGB in [0,1]; lengths in mm."""

    tone: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    lip_factor: tuple[float, float, float]
    hairline: float  # front hairline height above the brows
    bald: bool
    brow_density: float
    blush: float
    noise_seed: int


def draw_tone(rng: np.random.Generator) -> np.ndarray:
    """A skin tone (3,) RGB: two neighbouring Monk swatches mixed, darkened by 8–28 %."""
    return _draw_tone(rng)[0]


def _draw_tone(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    k = int(rng.integers(0, len(SKIN_TONES) - 1))
    mix = float(rng.uniform())
    tone = (1 - mix) * np.array(SKIN_TONES[k]) + mix * np.array(SKIN_TONES[k + 1])
    return tone * rng.uniform(0.72, 0.92), k


def sample_skin(rng: np.random.Generator) -> SkinParams:
    """Draw a subject's tone (:func:`draw_tone`), hair, eyes, lips and hairline."""
    tone, k = _draw_tone(rng)
    dark = k >= 5
    hair = HAIR_COLOURS[int(rng.choice(len(HAIR_COLOURS), p=_hair_probabilities(dark)))]
    iris = (
        IRIS_COLOURS[int(rng.integers(0, 2))]
        if dark
        else IRIS_COLOURS[int(rng.integers(0, len(IRIS_COLOURS)))]
    )
    lip = (rng.uniform(0.7, 0.85), rng.uniform(0.45, 0.6), rng.uniform(0.45, 0.6))
    return SkinParams(
        tone=tuple(float(v) for v in tone),
        hair=hair,
        iris=iris,
        lip_factor=tuple(float(v) for v in lip),
        hairline=float(rng.uniform(35.0, 60.0)),
        bald=bool(rng.uniform() < 0.12),
        brow_density=float(rng.uniform(0.55, 0.95)),
        blush=float(rng.uniform(0.0, 0.15)),
        noise_seed=int(rng.integers(0, 2**31)),
    )


def _hair_probabilities(dark_skin: bool) -> np.ndarray:
    p = np.array([0.7, 0.25, 0.05, 0.0, 0.0, 0.0] if dark_skin else [0.2, 0.3, 0.2, 0.15, 0.05, 0.1])
    return p / p.sum()


def hair_weight(geometry: TexelGeometry, hairline: float) -> np.ndarray:
    """(S,S) hair coverage: above ``hairline`` (mm over the brows) at the front, above the ears at the
    sides (10 mm under the brows) and down to the nape (80 mm under) at the back."""
    depth, height = geometry.maps["depth"], geometry.maps["height"]
    knots_depth = np.array([-140.0, -110.0, -95.0, -45.0, -20.0])
    knots_line = np.array([-80.0, -80.0, -10.0, -10.0, hairline])
    line = np.interp(depth, knots_depth, knots_line)
    return smoothstep(-2.0, 2.0, height - line)


def procedural_albedo(geometry: TexelGeometry, skin: SkinParams) -> np.ndarray:
    """A subject's UV albedo (S,S,3) float32 in [0,1] (row 0 = v = 1, like every UV map here)."""
    rng = np.random.default_rng(skin.noise_seed)
    s, m = geometry.size, geometry.maps
    tone = np.asarray(skin.tone, dtype=np.float32)
    lum = smooth_noise(rng, s, s, 8)[0]
    chroma = smooth_noise(rng, s, s, 12, 3).transpose(1, 2, 0)
    fine = rng.standard_normal((s, s, 1)).astype(np.float32)
    albedo = tone * (1.0 + 0.06 * lum[..., None] + 0.03 * chroma + 0.03 * fine)
    albedo = albedo * (1.0 + skin.blush * m["blush"][..., None] * np.asarray(BLUSH, np.float32))
    layers = [
        (tone * np.asarray(skin.lip_factor, np.float32), 0.85 * m["lips"]),
        (np.asarray(skin.hair, np.float32) * 1.1, skin.brow_density * m["brows"] * (0.8 + 0.2 * lum)),
    ]
    if not skin.bald:
        streaks = 1.0 + 0.08 * smooth_noise(rng, s, s, 64)[0]
        layers.append(
            (np.asarray(skin.hair, np.float32) * streaks[..., None], hair_weight(geometry, skin.hairline))
        )
    eye = m["eye"]
    layers += [
        (np.asarray(SCLERA, np.float32), eye),
        (np.asarray(skin.iris, np.float32), eye * m["iris"]),
        (np.zeros(3, np.float32), eye * m["pupil"]),
        (np.asarray(MOUTH, np.float32), m["mouth"]),
    ]
    for colour, weight in layers:
        albedo = albedo + (colour - albedo) * weight[..., None]
    return np.clip(albedo, 0.0, 1.0).astype(np.float32)


def list_textures(folder: str | os.PathLike) -> list[Path]:
    """The ``*_texture.png`` UV maps of a folder (recursively, sorted), as ``vitdeca reconstruct`` writes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VitdecaError(f"{folder}: no such textures folder")
    files = sorted(folder.rglob("*_texture.png"))
    if not files:
        raise VitdecaError(
            f"{folder}: no *_texture.png files (write them with 'vitdeca reconstruct --save texture')"
        )
    return files


def read_texture(path: str | os.PathLike, size: int) -> np.ndarray:
    """A UV texture PNG as (size,size,3) float32 in [0,1] (area-resampled when its size differs)."""
    from vitdeca.faces.image_io import read_image

    image = read_image(path).astype(np.float32) / 255.0
    if image.shape[0] != image.shape[1]:
        raise VitdecaError(f"{path}: a UV texture must be square, got {image.shape[1]}x{image.shape[0]}")
    if image.shape[0] != size:
        shrink = image.shape[0] > size
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return image


def procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size,size,3) float32: a two-colour linear gradient, smooth colour noise, blurred shapes, grain."""
    a, b = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    angle = rng.uniform(0, 2 * np.pi)
    coords = (np.arange(size) + 0.5) / size - 0.5
    ramp = np.cos(angle) * coords[None, :] + np.sin(angle) * coords[:, None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    image = (a + (b - a) * ramp[..., None]).astype(np.float32)
    image += 0.08 * smooth_noise(rng, size, size, int(rng.integers(3, 8)), 3).transpose(1, 2, 0)
    shapes = np.zeros_like(image)
    weight = np.zeros(image.shape[:2], np.float32)
    for _ in range(int(rng.integers(0, 6))):
        centre = tuple(int(v) for v in rng.uniform(0, size, 2))
        axes = tuple(int(v) for v in rng.uniform(0.05, 0.4, 2) * size)
        colour = rng.uniform(0, 1, 3).astype(np.float32)
        mask = np.zeros_like(weight)
        if rng.uniform() < 0.5:
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        else:
            cv2.rectangle(
                mask,
                (centre[0] - axes[0], centre[1] - axes[1]),
                (centre[0] + axes[0], centre[1] + axes[1]),
                1.0,
                -1,
            )
        shapes += mask[..., None] * (colour - shapes)
        weight = np.maximum(weight, mask)
    sigma = max(0.5, float(rng.uniform(0.0, 0.02)) * size)
    shapes, weight = cv2.GaussianBlur(shapes, (0, 0), sigma), cv2.GaussianBlur(weight, (0, 0), sigma)
    image += (shapes - image * weight[..., None]) * 0.9
    image += rng.normal(0.0, rng.uniform(0.0, 0.02), image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0)


class PhotoBackgrounds:
    """Random square crops of the photos in a folder that avoid the photos' own faces.

    Faces are found once per photo with :func:`vitdeca.faces.detect_faces` (``detector``; None trusts that
    the photos have no faces). A crop (side 30–100 % of the photo's shorter side) is redrawn up to
    ``tries`` times while it overlaps an enlarged face box; if none is free, a procedural background is
    used instead. Deterministic for a given generator state.
    """

    def __init__(self, folder: str | os.PathLike, detector: str | None = "dlib", tries: int = 20) -> None:
        from vitdeca.faces.image_io import IMAGE_SUFFIXES

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise VitdecaError(f"{self.folder}: no such backgrounds folder")
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise VitdecaError(f"{self.folder}: no images for backgrounds")
        self.detector, self.tries = detector, tries
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def photo(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(image (H,W,3) float32, face boxes (K,4) enlarged ×1.6), cached for the last few photos."""
        if index not in self._cache:
            from vitdeca.faces.image_io import read_image

            image = read_image(self.files[index], max_pixels=40_000_000)
            boxes = np.zeros((0, 4))
            if self.detector is not None:
                from vitdeca.faces import detect_faces

                faces = detect_faces(image, backend=self.detector)
                boxes = np.array([_enlarge(np.asarray(f.box, dtype=np.float64), 1.6) for f in faces]).reshape(
                    -1, 4
                )
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = (image.astype(np.float32) / 255.0, boxes)
        return self._cache[index]

    def sample_box(self, rng: np.random.Generator) -> tuple[int, np.ndarray | None]:
        """(photo index, square crop [x0,y0,x1,y1] clear of its faces, or None when no try was clear)."""
        index = int(rng.integers(0, len(self.files)))
        image, boxes = self.photo(index)
        height, width = image.shape[:2]
        for _ in range(self.tries):
            side = rng.uniform(0.3, 1.0) * min(height, width)
            x0, y0 = rng.uniform(0, width - side), rng.uniform(0, height - side)
            crop = np.array([x0, y0, x0 + side, y0 + side])
            if not any(_overlaps(crop, box) for box in boxes):
                return index, crop
        return index, None

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """A (size,size,3) float32 background: a face-free crop (randomly mirrored) or procedural."""
        index, box = self.sample_box(rng)
        if box is None:
            return procedural_background(rng, size)
        return _resample_square(self.photo(index)[0], box, size, rng.uniform() < 0.5)


def _enlarge(box: np.ndarray, factor: float) -> np.ndarray:
    centre, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) * factor / 2
    return np.concatenate([centre - half, centre + half])


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


def _resample_square(image: np.ndarray, box: np.ndarray, size: int, flip: bool) -> np.ndarray:
    """The square ``box`` [x0,y0,x1,y1] (pixel edges) of ``image`` resized to (size,size,3)."""
    from vitdeca.faces.geometry import square_matrix, warp_image

    matrix = square_matrix((box[:2] + box[2:]) / 2, float(box[2] - box[0]), size)
    out = warp_image(image, matrix, size)
    return np.ascontiguousarray(out[:, ::-1] if flip else out, dtype=np.float32)
