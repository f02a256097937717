"""Eyes in reconstructions: gaze and blink measured in the crop, eyeballs posed and drawn into the renders.

Per face (:func:`measure_eyes`): each eye's aspect ratio from the detector's eyelid landmarks gives
its blink weight and whether it is open (:mod:`vitdeca.faces.iris`); for an open eye the iris is
located between the lids and turned into yaw/pitch with the fitted head's eyeball
(:func:`vitdeca.head.eyes.gaze_from_image`: the eyeball's projected pivot, shifted by the mean offset
between the detected and the fitted eye corners, and its projected axes scaled by the iris distance).
Both eyes then get the mean of the located eyes' directions (:func:`conjugate_gaze`: eyes move
together; one eye's iris is seen through ±3–4° of noise, mostly from where the fitted head puts the
eyeball, and the mean halves that, at the cost of vergence: half of 2–4° for a subject a metre or less
from the camera). Without a located eye (both closed) the gaze is neutral (0, 0); in a video the
previous frame's instead (``held``; an eye the lids half close, blink ≥ 0.5, does not count as
located there, its iris would be noise). An eye the fitted head hides is not read
(:func:`hidden_eyes`), and on a head turned :data:`GAZE_YAW_READ_WITHIN_DEGREES` or more in yaw the
gaze's yaw is not read either (the pitch is). The eyeballs are then posed with that gaze and
rendered with the head's camera and light; where they are nearer than the head they replace its pixels
in the textured and shape renders (:func:`draw_eyes`).
Mesh exports add them as objects after the head (:func:`eye_obj_parts`, :func:`with_eyeballs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from vitdeca.head.eye_assets import EYES, SCLERA_VERTICES
from vitdeca.media import float_to_uint8

MAX_GAZE_DEGREES = 50.0
"""A located iris that would turn the eye further than this (yaw or pitch, degrees; the human eye's range is
about ±45–50°) is a lid shadow or an eye corner, not the iris: the eye counts as not located."""
CORNERS = {"left": (42, 45), "right": (36, 39)}  # iBUG-68 corners of the subject's left / right eye
GAZE_YAW_READ_WITHIN_DEGREES = 45.0
"""On a head turned this far or more in yaw (|yaw| of the fitted pose, :func:`vitdeca.arkit.head_yaws`)
the gaze's yaw is not read from the iris: the eyes look ahead sideways (or keep a video's previous yaw);
the pitch is still read. A sideways turn of the eye moves a turned head's iris along the line of sight,
so the image shows it foreshortened (by cos yaw) and the iris's narrow ellipse is hard to place across;
an up-down turn stays across the line of sight. Measured on synthetic heads turned up to 90°
(``benchmarks/bench_arkit.py --yaw-max 90``, results/arkit_yaw90_pooled.md): from 45° on, the reading is no
better than looking ahead, and on a profile it turned the eyes fully sideways (eyeLookIn/Out 1.0 on
AFLW2000 image00181, a man looking ahead). Dropping the whole reading instead cost blink agreement on
those sets (94.5 → 92.7 %): the lids follow the eye's pitch, and with the pitch gone a lid lowered by a
downward look was read as a blink."""


@dataclass
class EyeTopology:
    """The eyeballs' triangles (F,3), UVs (T,2) (v up) and UV triangles (F,3), their albedo (S,S,3) uint8."""

    faces: np.ndarray
    uv_coords: np.ndarray
    uv_faces: np.ndarray
    texture: np.ndarray


@dataclass
class EyeMeasure:
    """One face's eyes: ``gaze`` (2,2) yaw/pitch degrees (left eye first), ``blink`` (2,) eyeBlink
    weights from the lids, ``open`` (2,) bool (the iris was located), ``vertices`` (E,3) the eyeballs
    posed by the head pose and gaze, ``neutral_vertices`` (E,3) and ``neutral_pivots`` (2,3) with zero
    pose and gaze (the avatar's rest), ``rest`` (2,3,3) each eye's rest axes; model units. ``hidden``
    (2,) bool: the fitted head hides that eye from the camera (:func:`hidden_eyes`), so it was not read
    from the image."""

    gaze: np.ndarray
    blink: np.ndarray
    open: np.ndarray
    vertices: np.ndarray
    neutral_vertices: np.ndarray
    neutral_pivots: np.ndarray
    rest: np.ndarray
    hidden: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=bool))


def eye_topology(eyes) -> EyeTopology:
    """The numpy topology of :class:`vitdeca.head.eyes.Eyeballs`."""
    texture = float_to_uint8(eyes.texture())
    return EyeTopology(eyes.faces.numpy(), eyes.uv_coords.numpy(), eyes.uv_faces.numpy(), texture)


def eye_faces(topology: EyeTopology) -> list[tuple[str, int, int, np.ndarray, np.ndarray]]:
    """Per eye, left first: (``"eye_left"``/``"eye_right"``, first vertex, end vertex, its triangles (F_e,3)
    in the eyeballs' vertex numbering, their uv_faces (F_e,3)). The eyes' vertices are contiguous and
    together all of the eyeballs' array."""
    starts = np.cumsum([0] + [b - a for a, b in SCLERA_VERTICES])
    faces, uv_faces = np.asarray(topology.faces, np.int64), np.asarray(topology.uv_faces, np.int64)
    out = []
    for e, eye in enumerate(EYES):
        first, end = int(starts[e]), int(starts[e + 1])
        mine = (faces >= first).all(axis=1) & (faces < end).all(axis=1)
        out.append((f"eye_{eye}", first, end, faces[mine], uv_faces[mine]))
    return out


def eye_obj_parts(measure: EyeMeasure, topology: EyeTopology, texture_name: str | None, texture=None):
    """The posed eyeballs of ``measure`` as two :class:`vitdeca.io.ObjPart` ("eye_left", "eye_right")
    with their UVs; ``texture_name`` the eyes' PNG (None: untextured) and ``texture`` to write it."""
    from vitdeca.io import ObjPart

    parts = []
    for name, first, end, faces, uv_faces in eye_faces(topology):
        used, own_uv_faces = np.unique(uv_faces, return_inverse=True)
        args = (measure.vertices[first:end], faces - first, topology.uv_coords[used])
        parts.append(ObjPart(name, *args, own_uv_faces.reshape(-1, 3), texture, texture_name))
    return parts


def with_eyeballs(vertices: np.ndarray, faces: np.ndarray, measure: EyeMeasure | None, topology):
    """The head's (V,3) vertices and (F,3) faces followed by the posed eyeballs' (their indices offset
    by V): the head's indices are unchanged. Unchanged without eyes."""
    if measure is None or topology is None:
        return vertices, faces
    eye_faces = np.asarray(topology.faces, np.int64) + len(vertices)
    both = np.concatenate([np.asarray(vertices, np.float64), measure.vertices])
    return both, np.concatenate([np.asarray(faces, np.int64), eye_faces])


def measure_eyes(
    eyes,
    codes,
    crops,
    fitted_landmarks: np.ndarray,
    size: int,
    held: np.ndarray | None = None,
    hidden: np.ndarray | None = None,
) -> list[EyeMeasure]:
    """Gaze and blink of every face: ``codes`` (batch B), ``crops`` (B FaceCrop), ``fitted_landmarks``
    (B,68,2) the fitted landmarks in crop pixels, ``size`` the crop's side. ``held`` (B,2,2) the gaze
    the eyes keep when no iris is located, or only behind half-closed lids (blink ≥ 0.5; a video's
    previous frame); None: they look ahead when no iris is located (:func:`conjugate_gaze`).
    ``hidden`` (B,2) bool (:func:`hidden_eyes`; None: none): an eye the head hides (a profile's far eye)
    is not searched for an iris, and its blink is the other eye's: its detected lids and any iris found
    there are guesses (on a profile they moved the gaze by 10° for a sub-pixel change of the crop). A
    face turned :data:`GAZE_YAW_READ_WITHIN_DEGREES` or more in yaw gets the gaze yaw of ``held`` (0
    without it) and its measured pitch."""
    from vitdeca.arkit import head_yaws
    from vitdeca.faces.iris import blink_weight, eye_aspect_ratio, eyelids

    rest = eyes(codes.shape, codes.pose)
    distance = eyes.iris_distance.numpy()
    camera = codes.camera.detach().cpu().float()
    turned = head_yaws(codes.pose.detach().cpu()) >= GAZE_YAW_READ_WITHIN_DEGREES
    gazes, out = [], []  # out: (gaze, blink, open) per face
    for b, crop in enumerate(crops):
        detected = np.asarray(crop.crop_landmarks, np.float64)
        lids = eyelids(detected)
        blink, found = np.zeros(2), [None, None]
        face_hidden = np.zeros(2, dtype=bool) if hidden is None else np.asarray(hidden[b], dtype=bool)
        for e, eye in enumerate(EYES):
            blink[e] = blink_weight(eye_aspect_ratio(lids[eye]))
            if face_hidden[e]:
                continue
            pivot, basis = _projected_eye(rest.pivots[b, e], rest.axes[b, e], distance[e], camera[b], size)
            corners = list(CORNERS[eye])
            pivot = pivot + (detected[corners] - fitted_landmarks[b][corners]).mean(axis=0)
            ratio = float(eyes.iris_radius[e]) / distance[e]
            found[e] = _gaze_in_crop(crop.crop.image, lids[eye], pivot, basis, ratio)
        blink = blink_of_seen_eyes(blink, face_hidden)
        gaze = conjugate_gaze(found, blink, None if held is None else held[b])
        if turned[b]:
            gaze[:, 0] = 0.0 if held is None else held[b][:, 0]
        is_open = np.array([f is not None for f in found])
        gazes.append(gaze)
        out.append((gaze, blink, is_open, face_hidden))
    posed = eyes(codes.shape, codes.pose, torch.from_numpy(np.stack(gazes)).float())
    neutral = eyes(codes.shape, torch.zeros_like(codes.pose))
    args = (posed.vertices, neutral.vertices, neutral.pivots)
    rest = eyes.rest.numpy()
    return [
        EyeMeasure(*out[b][:3], *(a[b].numpy() for a in args), rest, hidden=out[b][3])
        for b in range(len(out))
    ]


def hidden_eyes(visible: np.ndarray) -> np.ndarray:
    """(B,2) bool, left eye first: the eyes of which the head hides more than half of the six landmarks,
    from landmark visibility (B,68) bool (:func:`vitdeca.fit.landmark_visibility`)."""
    from vitdeca.faces.iris import EYELIDS

    visible = np.asarray(visible, dtype=bool)
    return np.stack([visible[:, list(EYELIDS[eye])].sum(axis=1) < 3 for eye in EYES], axis=1)


EYES_SEEN_WITHIN_DEGREES = 35.0
"""A head turned less than this from the camera (the angle between its forward axis and the camera's
axis, :func:`vitdeca.arkit.off_axis_degrees`) shows both eyes, so :func:`eyes_hidden_by_head` does not
render it. Measured with the ICT-FaceKit head (session 13; random shapes at 1 and 2 standard
deviations, random sparse expressions, random rotations and a yaw × pitch × roll grid): the first eye with
more than half of its landmarks hidden appeared at 44.5° off-axis (yaw 20° with pitch 40°, or yaw ≥ 45°
alone); the bound keeps a 9.5° margin. ``test_eyes`` checks it on the head model."""


def eyes_hidden_by_head(model, codes) -> np.ndarray:
    """(B,2) bool, left eye first: :func:`hidden_eyes` of the posed heads of ``codes`` (B faces), with
    the visibility render (:func:`vitdeca.fit.landmark_visibility`, ~6 ms a face) only for faces turned
    :data:`EYES_SEEN_WITHIN_DEGREES` or more; nearer to frontal both eyes are seen."""
    from vitdeca.arkit import off_axis_degrees
    from vitdeca.fit import landmark_visibility

    hidden = np.zeros((codes.batch_size, 2), dtype=bool)
    turned = np.flatnonzero(off_axis_degrees(codes.pose) >= EYES_SEEN_WITHIN_DEGREES).tolist()
    if turned:
        hidden[turned] = hidden_eyes(landmark_visibility(model, codes.index(turned)).cpu().numpy())
    return hidden


def blink_of_seen_eyes(blink: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """One face's eye weights (2,) with each ``hidden`` (2,) eye given the other eye's value when that one
    is seen (eyes blink together; a hidden eye's lids are a guess)."""
    out = np.array(blink, copy=True)
    for e in np.flatnonzero(hidden & ~hidden[::-1]):
        out[e] = out[1 - e]
    return out


BLINK_GRID = 21
"""eyeBlink values tried per eye (evenly over [0, 1]) by :func:`settle_eyelids`, then interpolated."""


def settle_eyelids(model, codes, crops, measures: list[EyeMeasure], mapping, size: int):
    """``codes`` with the eyes' expression weights taken from the image: ``eyeLook*`` from the measured
    gaze (``measures``, :func:`vitdeca.arkit.with_gaze_looks`) and each eye's ``eyeBlink`` the value
    (in [0, 1], other shapes as they are) at which the head's eye aspect ratio equals that of the
    detector's eyelid landmarks (``crops``' ``crop_landmarks``), read on the mean identity (shape code 0);
    an eye the head hides (``EyeMeasure.hidden``) takes the other eye's eyeBlink.

    Why: fitting matches the eyelid landmarks with whatever closes the lids, and on ICT-FaceKit
    ``eyeLookDown`` lowers the upper lid as ``eyeBlink`` does, so a blink came out as eyeBlink ≈ 0.3
    plus eyeLookDown ≈ 0.2, and the eyeLook* part was then replaced by the gaze. Solving the blink
    after the gaze is fixed gives the lids' closure to eyeBlink. The mean identity: a fit to one image
    splits a closed eye between eyeBlink and a shape code with narrower eyes (docs/arkit.md), so the
    lids are measured against the average eye. ``mapping``: the head's
    :class:`~vitdeca.arkit.ArkitMapping`; ``size``: the crop side in pixels. Codes (batch B) in, new
    codes out (the input is not changed)."""
    from vitdeca.arkit import with_gaze_looks
    from vitdeca.faces.iris import landmark_eye_aspect_ratios

    expression = codes.expression.detach().clone()
    for b, measure in enumerate(measures):
        looks = with_gaze_looks(expression[b].cpu().numpy(), mapping.expression_names, measure.gaze)
        expression[b] = torch.from_numpy(looks).to(expression)
    blink_index = [_expression_index(mapping, f"eyeBlink{side}") for side in ("Left", "Right")]
    target = landmark_eye_aspect_ratios(np.stack([c.crop_landmarks for c in crops]))  # (B,2)
    grid = torch.linspace(0.0, 1.0, BLINK_GRID, dtype=expression.dtype)
    mean_identity = codes.replace(expression=expression, shape=torch.zeros_like(codes.shape))
    ratios = _blink_aspect_ratios(model, mean_identity, blink_index, grid, size)
    for b in range(len(crops)):
        solved = [float(_solve_decreasing(grid.numpy(), ratios[:, b, e], target[b, e])) for e in range(2)]
        for j, value in zip(
            blink_index, blink_of_seen_eyes(np.array(solved), measures[b].hidden), strict=True
        ):
            expression[b, j] = float(value)
    return codes.replace(expression=expression)


def _blink_aspect_ratios(model, codes, blink_index: list[int], grid: torch.Tensor, size: int) -> np.ndarray:
    """(K,B,2) eye aspect ratios of the head's eyelid landmarks with both eyeBlink weights at each of
    the K ``grid`` values (the other codes as given)."""
    from vitdeca.faces.iris import landmark_eye_aspect_ratios
    from vitdeca.fit import landmarks2d

    batch = codes.batch_size
    tiled = codes.index(torch.arange(batch).repeat(len(grid)))
    expression = tiled.expression.clone()
    expression[:, blink_index] = grid.repeat_interleave(batch)[:, None].to(expression)
    with torch.no_grad():
        points = landmarks2d(model, tiled.replace(expression=expression), size).cpu().numpy()
    return landmark_eye_aspect_ratios(points).reshape(len(grid), batch, 2)


def _solve_decreasing(xs: np.ndarray, ys: np.ndarray, target: float) -> float:
    """The first x in [xs[0], xs[-1]] where the sampled ys (K,) fall to ``target``: linear interpolation
    within the first bracketing interval of their running minimum (a guard: with signed lid distances the
    aspect ratio keeps falling once the lids cross, but a head's curve need not be monotone), else where
    that minimum is nearest in y (the first such x)."""
    ys = np.minimum.accumulate(np.asarray(ys, np.float64))
    above = ys >= target
    for k in range(len(xs) - 1):
        if above[k] and not above[k + 1]:
            t = (ys[k] - target) / max(ys[k] - ys[k + 1], 1e-12)
            return float(xs[k] + t * (xs[k + 1] - xs[k]))
    return float(xs[int(np.argmin(np.abs(ys - target)))])


def _expression_index(mapping, arkit_name: str) -> int:
    """The head's expression entry that drives the (unmerged) ARKit shape ``arkit_name``."""
    from vitdeca.arkit import ARKIT_NAMES

    (rows,) = np.nonzero(mapping.inverse[:, ARKIT_NAMES.index(arkit_name)] == 1.0)
    return int(rows[0])


def conjugate_gaze(found: list, blink: np.ndarray, held: np.ndarray | None) -> np.ndarray:
    """(2,2) yaw/pitch degrees of both eyes (left first): the mean of the eyes' located gazes ``found``
    (2 × (2,) or None). With ``held`` (2,2) (a video's previous frame), an eye with ``blink`` ≥ 0.5 does
    not count, and when no eye counts both keep ``held``; without it, both look ahead (0, 0)."""
    usable = [g for g, b in zip(found, blink, strict=True) if g is not None and (held is None or b < 0.5)]
    if usable:
        return np.repeat(np.mean(usable, axis=0)[None], 2, axis=0)
    return np.zeros((2, 2)) if held is None else np.array(held, np.float64)


def _gaze_in_crop(image, lid, pivot, basis, ratio: float) -> np.ndarray | None:
    """(2,) yaw/pitch degrees of one eye from its iris in ``image`` between ``lid`` (6,2), with the
    projected ``pivot`` (2,) and ``basis`` (2,3) (:func:`_projected_eye`) and ``ratio`` iris radius /
    iris distance: the iris located with a disk of its radius, then again with the ellipse that
    gaze makes it (:func:`vitdeca.head.eyes.iris_ellipse`). None when no iris is located, or only one
    beyond :data:`MAX_GAZE_DEGREES`."""
    from vitdeca.faces.iris import locate_iris
    from vitdeca.head.eyes import gaze_from_image, iris_ellipse

    def plausible(angles: np.ndarray) -> bool:
        return bool(np.abs(angles).max() <= MAX_GAZE_DEGREES)

    radius = float(np.linalg.norm(basis[:, 0])) * ratio
    iris = locate_iris(image, lid, radius)
    if iris is None:
        return None
    gaze = gaze_from_image(iris.centre, pivot, basis)
    if not plausible(gaze):
        return None
    iris = locate_iris(image, lid, radius, iris_ellipse(gaze, basis, ratio))
    refined = gaze if iris is None else gaze_from_image(iris.centre, pivot, basis)
    return refined if plausible(refined) else gaze


def _projected_eye(pivot, axes, distance: float, camera, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The pivot (2,) in crop pixels and the image displacement (2,3) per unit of each rest axis at
    the iris distance (weak perspective: linear)."""
    from vitdeca.render import project_points

    points = torch.cat([pivot[None], pivot[None] + distance * axes.T])[None]  # (1,4,3)
    pixels = project_points(points, camera[None], size, size)[0].double().numpy()
    return pixels[0], (pixels[1:] - pixels[0]).T


def render_eyes(eyes, vertices, camera, light, size: int, texture: np.ndarray):
    """The :class:`~vitdeca.render.RenderOutput` of posed eyeballs (B,E,3) with weak-perspective
    ``camera`` (B,3), SH ``light`` (B,9,3) and ``texture`` (S,S,3) uint8, on a black background."""
    from vitdeca.render import render

    albedo = torch.from_numpy(texture).permute(2, 0, 1)[None].float() / 255.0
    batch = vertices.shape[0]
    args = (eyes.faces, eyes.uv_coords, eyes.uv_faces, camera.detach().cpu().float())
    return render(vertices, *args, albedo.expand(batch, -1, -1, -1), light.detach().cpu().float(), size)


def in_front(eye_render, head_alpha: torch.Tensor, head_depth: torch.Tensor) -> torch.Tensor:
    """(B,H,W) bool: pixels where the eyeballs are nearer than the head (or the head is absent);
    alpha/depth (B,H,W) (weak-perspective depth: smaller is nearer)."""
    eye_alpha, eye_depth = eye_render.alpha[:, 0] > 0.5, eye_render.depth[:, 0]
    return eye_alpha & ((head_alpha < 0.5) | (eye_depth < head_depth))


@torch.no_grad()
def draw_eyes(arrays: dict[str, np.ndarray], eyes, topology: EyeTopology, measures, codes) -> None:
    """Render the posed eyeballs of ``measures`` with the faces' cameras and lights and put them into
    ``arrays`` (the decode's per-batch ``render``, ``shape_render`` uint8, ``alpha``, ``depth``) where
    they are nearer than the head."""
    size = arrays["alpha"].shape[1]
    vertices = torch.from_numpy(np.stack([m.vertices for m in measures])).float()
    out = render_eyes(eyes, vertices, codes.camera, codes.light, size, topology.texture)
    nearer = in_front(out, torch.from_numpy(arrays["alpha"]), torch.from_numpy(arrays["depth"])).numpy()
    for key, image in (("render", out.image), ("shape_render", out.shape_image)):
        pixels = float_to_uint8(image.permute(0, 2, 3, 1))
        arrays[key] = np.where(nearer[..., None], pixels, arrays[key])
    arrays["depth"] = np.where(nearer, out.depth[:, 0].numpy(), arrays["depth"])
    arrays["alpha"] = np.where(nearer, 1.0, arrays["alpha"]).astype(arrays["alpha"].dtype)
