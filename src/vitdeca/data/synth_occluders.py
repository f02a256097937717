"""Occluders for synthetic faces: a hand, glasses or an object drawn over part of the face after the render.

Each is drawn from its :class:`~vitdeca.data.synth_spec.Occluder`'s seed in a frame fixed to the face's
2D landmarks (:class:`FaceFrame`: the centre and mean side of their box, the roll of the eye line), so it
lands on the face whatever the pose, identity or placement:

- ``hand``: a palm ellipse just outside a random jaw or lip landmark, four finger capsules and a thumb
  reaching over the face, in the subject's skin tone (a random Monk tone with a photo texture), darker
  towards its outline and along a random gradient;
- ``glasses``: two elliptical rims around the eye centres, a bridge and the temples, thin and dark; a
  third are sunglasses (dark lenses, 75–95 % opaque);
- ``object``: a rotated rectangle or ellipse (a microphone, a cup, a phone) over a random landmark,
  textured with a background photo crop (with ``--backgrounds``) or a procedural background, shaded like
  a cylinder across its short axis.

Coverage is anti-aliased (OpenCV, 1/16 px precision); a pixel whose coverage exceeds 0.5 is *occluded*.
An occluder covering more than ``max_area`` of the face mask is shrunk about its anchor (×0.8 per step,
up to 8 steps) and dropped if it still does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from vitdeca.data.synth_appearance import draw_tone, procedural_background, smoothstep
from vitdeca.data.synth_spec import Occluder

SHIFT = 4  # OpenCV's fractional bits for the drawing coordinates
SHRINK, SHRINK_STEPS = 0.8, 8
JAW_AND_LIPS = tuple(range(0, 17)) + tuple(range(48, 60))
GLASSES_COLOURS = ((0.03, 0.03, 0.03), (0.15, 0.09, 0.05), (0.35, 0.35, 0.37), (0.25, 0.05, 0.05))


@dataclass
class FaceFrame:
    """The face's 2D frame: ``centre`` (2,) and ``size`` (mean side of the landmark box) in pixels,
    ``right``/``down`` unit axes (the eye line and its normal), the ``landmarks`` (68,2)."""

    centre: np.ndarray
    size: float
    right: np.ndarray
    down: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> FaceFrame:
        low, high = landmarks.min(axis=0), landmarks.max(axis=0)
        eye_line = landmarks[42:48].mean(axis=0) - landmarks[36:42].mean(axis=0)
        right = eye_line / max(float(np.linalg.norm(eye_line)), 1e-6)
        return cls(
            (low + high) / 2, float((high - low).mean()), right, np.array([-right[1], right[0]]), landmarks
        )

    @property
    def roll(self) -> float:
        """Angle of the eye line in degrees (image x right, y down)."""
        return float(np.degrees(np.arctan2(self.right[1], self.right[0])))


@dataclass
class Shape:
    """An occluder's outline as OpenCV primitives in pixels, the ``anchor`` it shrinks towards, and
    ``paint(alpha (H,W) float) -> colour (H,W,3) or (3,)``. Primitives: ``("ellipse", centre, axes,
    angle, thickness, value)`` (thickness -1: filled), ``("line", start, end, thickness, value)`` and
    ``("poly", points, value)``; value is the coverage in [0,1] (drawn in order, later ones on top)."""

    primitives: list[tuple]
    anchor: np.ndarray
    paint: Callable[[np.ndarray], np.ndarray]


def _fixed(points: np.ndarray) -> np.ndarray:
    """Pixel-centre-frame points (pixel j spans [j, j+1)) → OpenCV fixed point (centres at integers)."""
    return np.round((np.asarray(points, np.float64) - 0.5) * (1 << SHIFT)).astype(np.int32)


def rasterise(shape: Shape, size: int, scale: float = 1.0) -> np.ndarray:
    """(size,size) float32 anti-aliased coverage of ``shape`` shrunk by ``scale`` about its anchor."""
    canvas = np.zeros((size, size), np.uint8)

    def place(point: np.ndarray) -> tuple[int, int]:
        return tuple(int(v) for v in _fixed(shape.anchor + scale * (np.asarray(point) - shape.anchor)))

    for kind, *args in shape.primitives:
        value = int(round(255 * args[-1]))
        if kind == "ellipse":
            centre, axes, angle, thickness = args[:4]
            axes = tuple(int(v) for v in np.round(np.asarray(axes) * scale * (1 << SHIFT)))
            width = -1 if thickness < 0 else max(1, round(thickness * scale))
            cv2.ellipse(canvas, place(centre), axes, angle, 0, 360, value, width, cv2.LINE_AA, SHIFT)
        elif kind == "line":
            start, end, thickness = args[:3]
            width = max(1, round(thickness * scale))
            cv2.line(canvas, place(start), place(end), value, width, cv2.LINE_AA, SHIFT)
        else:
            points = np.array([place(p) for p in args[0]], np.int32)
            cv2.fillPoly(canvas, [points], value, cv2.LINE_AA, SHIFT)
    return canvas.astype(np.float32) / 255.0


def _turn(vector: np.ndarray, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def hand_shape(
    rng: np.random.Generator, frame: FaceFrame, size: int, tone: np.ndarray | None = None
) -> Shape:
    """A palm just outside a jaw or lip landmark, fingers and thumb reaching towards the face centre, in
    the skin ``tone`` (3,) (the subject's; None: a random Monk tone)."""
    d = frame.size
    anchor = frame.landmarks[JAW_AND_LIPS[int(rng.integers(0, len(JAW_AND_LIPS)))]]
    toward = frame.centre - anchor
    up = _turn(toward / max(float(np.linalg.norm(toward)), 1e-6), rng.normal(0.0, 25.0))
    across = np.array([-up[1], up[0]]) * (1 if rng.uniform() < 0.5 else -1)  # the thumb's side
    palm = anchor - up * d * rng.uniform(0.1, 0.35)
    half = np.array([0.26, 0.32]) * d * rng.uniform(0.85, 1.1)
    angle = float(np.degrees(np.arctan2(up[1], up[0])))
    primitives: list[tuple] = [("ellipse", palm, (half[1], half[0]), angle, -1, 1.0)]
    finger_width = 0.1 * d * rng.uniform(0.9, 1.1)
    for offset, length in zip((-0.19, -0.065, 0.065, 0.19), (0.38, 0.46, 0.44, 0.34), strict=True):
        base = palm + up * half[1] * 0.8 + across * offset * d
        tip = base + _turn(up, rng.normal(0.0, 6.0)) * length * d * rng.uniform(0.85, 1.1)
        primitives.append(("line", base, tip, finger_width, 1.0))
    thumb = palm + across * half[0] * 0.8
    reach = (up + across) / np.sqrt(2.0)  # the thumb points up and out, 45° from the fingers
    primitives.append(("line", thumb, thumb + reach * 0.3 * d, finger_width * 1.2, 1.0))
    drawn = draw_tone(rng)  # drawn either way: the stream stays the same
    tone = (drawn if tone is None else np.asarray(tone)) * rng.uniform(0.7, 1.0)
    ramp = _ramp(size, rng.uniform(0.0, 2 * np.pi))

    def paint(alpha: np.ndarray) -> np.ndarray:
        inside = cv2.distanceTransform((alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        shade = (0.72 + 0.28 * smoothstep(0.0, 0.05 * d, inside)) * (1.0 + 0.12 * ramp)
        return tone.astype(np.float32) * shade[..., None]

    return Shape(primitives, anchor, paint)


def glasses_shape(rng: np.random.Generator, frame: FaceFrame, size: int) -> Shape:
    """Rims around the eye centres, a bridge and temples; a third are sunglasses (dark lenses)."""
    left, right = frame.landmarks[36:42].mean(axis=0), frame.landmarks[42:48].mean(axis=0)
    d, u = frame.size, frame.right
    a = max(0.4 * float(np.linalg.norm(right - left)), 0.1 * d) * rng.uniform(0.9, 1.1)
    b = 0.15 * d * rng.uniform(0.8, 1.1)
    rim = max(1.0, rng.uniform(0.015, 0.03) * d)
    primitives: list[tuple] = []
    if rng.uniform() < 1 / 3:
        opacity = rng.uniform(0.75, 0.95)
        primitives += [("ellipse", c, (a, b), frame.roll, -1, opacity) for c in (left, right)]
    primitives += [("ellipse", c, (a, b), frame.roll, rim, 1.0) for c in (left, right)]
    lift = -frame.down * 0.3 * b
    primitives.append(("line", left + u * a + lift, right - u * a + lift, rim, 1.0))
    temple = 0.2 * d * rng.uniform(0.8, 1.2)
    primitives += [("line", left - u * a, left - u * (a + temple), rim, 1.0),
                   ("line", right + u * a, right + u * (a + temple), rim, 1.0)]  # fmt: skip
    colour = np.asarray(GLASSES_COLOURS[int(rng.integers(0, len(GLASSES_COLOURS)))]) * rng.uniform(0.8, 1.2)
    return Shape(primitives, (left + right) / 2, lambda alpha: colour.astype(np.float32))


def object_shape(rng: np.random.Generator, frame: FaceFrame, size: int, backgrounds=None) -> Shape:
    """A rotated rectangle or ellipse over a random landmark, photo- or procedurally textured, shaded
    like a cylinder across its short axis."""
    d = frame.size
    anchor = frame.landmarks[int(rng.integers(0, 68))]
    half = np.array([rng.uniform(0.12, 0.25), rng.uniform(0.3, 0.6)]) * d  # across, along
    angle = rng.uniform(0.0, 180.0)
    along = _turn(np.array([1.0, 0.0]), angle)
    centre = anchor + along * half[1] * rng.uniform(-0.8, 0.8)
    if rng.uniform() < 0.5:
        primitives = [("ellipse", centre, (half[1], half[0]), angle, -1, 1.0)]
    else:
        normal = np.array([-along[1], along[0]])
        corners = [
            centre + along * half[1] * i + normal * half[0] * j
            for i, j in ((-1, -1), (1, -1), (1, 1), (-1, 1))
        ]
        primitives = [("poly", corners, 1.0)]
    use_photo = backgrounds is not None and rng.uniform() < 0.5
    texture = backgrounds.sample(rng, size) if use_photo else procedural_background(rng, size)
    across = np.abs(_ramp(size, np.radians(angle + 90.0), centre) * size / half[0])
    shade = 0.6 + 0.4 * np.sqrt(np.clip(1.0 - across**2, 0.0, 1.0))
    colour = (texture * shade[..., None]).astype(np.float32)
    return Shape(primitives, anchor, lambda alpha: colour)


def _ramp(size: int, angle: float, origin: np.ndarray | None = None) -> np.ndarray:
    """(size,size) signed distance along direction ``angle`` (radians) from ``origin`` (pixels; default the
    image centre), in image sides."""
    origin = np.full(2, size / 2) if origin is None else origin
    coords = np.arange(size) + 0.5
    x, y = (coords - origin[0]) / size, (coords - origin[1]) / size
    return (np.cos(angle) * x[None, :] + np.sin(angle) * y[:, None]).astype(np.float32)


def draw_occluder(occluder: Occluder, image: np.ndarray, mask: np.ndarray, landmarks: np.ndarray,
                  max_area: float, backgrounds=None, tone=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Draw ``occluder`` over a float (S,S,3) ``image`` whose face mask is ``mask`` (S,S) bool and 68
    ``landmarks`` (pixels); a hand takes the skin ``tone`` (3,) (None: random), an object may take a
    crop of ``backgrounds`` (:class:`~vitdeca.data.synth_appearance.PhotoBackgrounds`). Returns (the
    new image, its occluded pixels (S,S) bool; all False, and the image unchanged, when even the
    smallest shrink covers more than ``max_area`` of the face mask)."""
    rng = np.random.default_rng(occluder.seed)
    frame, size = FaceFrame.from_landmarks(landmarks), image.shape[0]
    if occluder.kind == "hand":
        shape = hand_shape(rng, frame, size, tone)
    elif occluder.kind == "glasses":
        shape = glasses_shape(rng, frame, size)
    else:
        shape = object_shape(rng, frame, size, backgrounds)
    face = int(mask.sum())
    for step in range(SHRINK_STEPS + 1):
        alpha = rasterise(shape, size, SHRINK**step)
        if ((alpha > 0.5) & mask).sum() <= max_area * face:
            colour = shape.paint(alpha)
            return image + (colour - image) * alpha[..., None], alpha > 0.5
    return image, np.zeros(mask.shape, bool)


def covered_landmarks(occluded: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(68,) bool: landmarks (68,2) (pixel-centre frame) whose pixel is ``occluded`` (S,S)."""
    height, width = occluded.shape
    col, row = np.floor(landmarks[:, 0]).astype(int), np.floor(landmarks[:, 1]).astype(int)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    hit = np.zeros(len(landmarks), bool)
    hit[inside] = occluded[row[inside], col[inside]]
    return hit
