"""Synthetic faces with exact ground truth, written as a NoW-layout dataset that also trains.

``write_synthetic_dataset(out, SynthOptions(...))`` samples subjects (identity, skin/hair/eye appearance
or a photo texture) and, per subject, several images (expression, head pose, SH light, camera,
background), renders them with the head model and :mod:`vitdeca.render`, and writes::

    OUT/imagepathsvalidation.txt                 SUBJECT/CATEGORY/IMAGE.jpg per image
    OUT/iphone_pictures/SUBJECT/CATEGORY/*.jpg   the images (size×size, JPEG)
    OUT/scans/SUBJECT/SUBJECT.obj                the neutral mesh (expression and pose zero) in mm,
                                                 outer surface only (ICT: no eye/mouth sockets)
    OUT/scans_lmks_onlypp/SUBJECT/SUBJECT_picked_points.pp   its 7 NoW landmarks (iBUG 36,39,42,45,33,48,54)
    OUT/landmarks2d/SUBJECT/CATEGORY/IMAGE.npy   68×2 float32 landmarks, image pixels (pixel-centre frame)
    OUT/masks/SUBJECT/CATEGORY/IMAGE.png         the visible face-mask pixels (head model's face_mask),
                                                 without those an occluder hides
    OUT/albedo/SUBJECT.png                       the subject's UV albedo
    OUT/manifest.jsonl + dataset.json            a `vitdeca annotate`-style dataset (FaceDataset reads it)
    OUT/codes.npz                                the true codes per image (:func:`write_synthetic_dataset`)

Categories are ``neutral`` (expression zero) and ``expression``. A share of the images is blurred or
carries an occluder (:func:`sample_blur`, :func:`sample_occluder`; streams of their own), and the neck
fades into the background (:func:`vitdeca.data.synth_render.neck_fade`). Images are rendered ``supersample``
times larger and area-averaged (anti-aliased edges); the face's landmark box (mean of width and height)
spans ``face_fraction`` of the image, so DECA's 1.25 crop of the true landmarks is (nearly) the image.
Everything is drawn from ``numpy.random.default_rng([seed, ...])`` streams per subject and per image, so
a seed gives the same files byte for byte (same library versions, same ``batch_size``).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from vitdeca.arkit import arkit_name, with_gaze_looks, without_contradictions
from vitdeca.data.synth_appearance import list_textures, sample_skin, socket_weights
from vitdeca.data.synth_render import SynthRenderer
from vitdeca.data.synth_spec import (
    BLUR_KINDS,
    OCCLUDER_KINDS,
    Blur,
    ImageSpec,
    Occluder,
    Subject,
    SynthOptions,
)
from vitdeca.errors import VitdecaError
from vitdeca.storage import atomic_path, atomic_write_bytes

IMAGE_FOLDER = "iphone_pictures"
IMAGE_LIST = "imagepathsvalidation.txt"
CODES_NAME = "codes.npz"


# ---- sampling ---------------------------------------------------------------------------------------
def sample_subject(options: SynthOptions, head, index: int, textures: list[Path]) -> Subject:
    """Subject ``index``: identity ~ N(0, shape_std²) per mode, appearance (deterministic in seed, index)."""
    rng = np.random.default_rng([options.seed, 0, index])
    shape = (rng.standard_normal(head.n_shape) * options.shape_std).astype(np.float32)
    skin = sample_skin(rng)
    texture = None
    if textures and rng.uniform() < options.texture_fraction:
        texture = textures[int(rng.integers(0, len(textures)))]
    return Subject(f"SUBJ_{index:05d}", shape, None if texture else skin, texture)


def sample_expression(rng: np.random.Generator, head) -> np.ndarray:
    """Blend-shape models (``blendshape_names``): sparse weights in [0,1], mirrored pairs mostly
    symmetric, the jaw often open; PCA models: N(0, 0.8²) on the first 10 components."""
    n = head.n_expression
    names = list(head.blendshape_names or ())
    if len(names) != n:
        out = np.zeros(n, np.float32)
        out[: min(10, n)] = rng.normal(0.0, 0.8, min(10, n))
        return out
    weights = np.where(rng.uniform(size=n) < 0.12, rng.uniform(0.2, 1.0, n), 0.0)
    for i, name in enumerate(names):
        if name.endswith("_L") and name[:-2] + "_R" in names and rng.uniform() < 0.7:
            weights[names.index(name[:-2] + "_R")] = weights[i]
    if "jawOpen" in names and rng.uniform() < 0.35:
        weights[names.index("jawOpen")] = rng.uniform(0.1, 0.6)
    return np.clip(weights, 0.0, 1.0).astype(np.float32)


BLINKS = ("eyeBlink_L", "eyeBlink_R")
BLINKS_ARKIT = tuple(arkit_name(n) for n in BLINKS)


def with_blink(expression: np.ndarray, head, rng: np.random.Generator | None) -> np.ndarray:
    """``expression`` (n,) with both eyes blinking when ``rng`` is given (the image's blink stream) and
    the head has the shapes: a level U(0.65, 0.95), each eye's eyeBlink within ±0.05 of it (the other
    shapes as drawn); else unchanged."""
    names = list(head.blendshape_names or ())
    if rng is None or not all(n in names for n in BLINKS):
        return expression
    out = expression.copy()
    level = rng.uniform(0.65, 0.95)
    for name in BLINKS:
        out[names.index(name)] = level + rng.uniform(-0.05, 0.05)
    return out


def sample_pose(rng: np.random.Generator, options: SynthOptions, n_pose: int) -> np.ndarray:
    """Global rotation (axis-angle of yaw/pitch/roll, degrees' normal draws clipped at 2.5 std; with
    ``yaw_max`` the yaw is uniform in ±yaw_max); a FLAME jaw (pose[3:6]) opens a little in a third of the
    images."""
    from scipy.spatial.transform import Rotation

    angles = np.clip(rng.standard_normal(3), -2.5, 2.5) * [options.pitch, options.yaw, options.roll]
    if options.yaw_max > 0:
        angles[1] = rng.uniform(-options.yaw_max, options.yaw_max)
    pose = np.zeros(n_pose, np.float32)
    pose[:3] = Rotation.from_euler("xyz", angles, degrees=True).as_rotvec()
    if n_pose >= 6 and rng.uniform() < 0.35:
        pose[3] = rng.uniform(0.0, 0.25)
    return pose


def sample_light(rng: np.random.Generator) -> np.ndarray:
    """SH light (9,3): ambient a plus a directional term b·(n·d) (b < a, so shading stays positive),
    a small random second band, and a colour tint."""
    from vitdeca.render.shading import SH_CONSTANTS

    ambient = rng.uniform(0.55, 0.9)
    strength = rng.uniform(0.1, 0.9) * ambient
    direction = np.array([rng.normal(0, 0.6), rng.normal(0.3, 0.4), 1.0])
    direction /= np.linalg.norm(direction)
    tint = 1.0 + rng.normal(0.0, 0.04, 3)
    light = np.zeros((9, 3))
    light[0] = ambient / SH_CONSTANTS[0]
    light[1:4] = strength * direction[:, None] / SH_CONSTANTS[1]
    light[4:] = rng.normal(0.0, 0.03, (5, 1)) / np.asarray(SH_CONSTANTS[4:])[:, None]
    return (light * tint).astype(np.float32)


def _effect_stream(options: SynthOptions, stream: int, index: int, fraction: float):
    """Image ``index``'s generator of effect ``stream`` when the image gets the effect (a ``fraction``
    share of images), else None; nothing is drawn when ``fraction`` is 0."""
    if fraction <= 0:
        return None
    rng = np.random.default_rng([options.seed, stream, index])
    return rng if rng.uniform() < fraction else None


def sample_blur(options: SynthOptions, index: int) -> Blur | None:
    """Image ``index``'s blur (its own stream): in a ``blur_fraction`` share of images, defocus or
    motion (even odds), std U(0.5, ``blur_max_px``)."""
    rng = _effect_stream(options, 3, index, options.blur_fraction)
    if rng is None:
        return None
    kind = BLUR_KINDS[int(rng.integers(0, len(BLUR_KINDS)))]
    return Blur(kind, float(rng.uniform(0.5, options.blur_max_px)), float(rng.uniform(0.0, 180.0)))


def sample_occluder(options: SynthOptions, index: int) -> Occluder | None:
    """Image ``index``'s occluder (its own stream): in an ``occluder_fraction`` share of images, a hand,
    glasses or an object (even odds)."""
    rng = _effect_stream(options, 4, index, options.occluder_fraction)
    if rng is None:
        return None
    return Occluder(OCCLUDER_KINDS[int(rng.integers(0, len(OCCLUDER_KINDS)))], int(rng.integers(0, 2**31)))


def sample_image(options: SynthOptions, head, subject: Subject, index: int, k: int) -> ImageSpec:
    """Image ``index`` (the subject's ``k``-th): deterministic in (seed, index)."""
    rng = np.random.default_rng([options.seed, 1, index])
    neutral = k == 0 or rng.uniform() < options.neutral_fraction
    expression = np.zeros(head.n_expression, np.float32) if neutral else sample_expression(rng, head)
    if not neutral:
        expression = with_blink(expression, head, _effect_stream(options, 5, index, options.blink_fraction))
        if options.consistent_expressions:
            expression = without_contradictions(expression, head.blendshape_names or (), keep=BLINKS_ARKIT)
    quality = options.jpeg_quality
    gaze = None
    if options.eyes == "ict":  # its own stream: the other draws stay those of eyes="convex"
        draw = np.random.default_rng([options.seed, 2, index])
        gaze = np.repeat(np.clip(draw.standard_normal((1, 2)), -2.0, 2.0) * options.gaze, 2, axis=0)
        # the lids follow the turned eyeballs: eyeLook* are the gaze's, as ARKit defines them
        expression = with_gaze_looks(expression, head.blendshape_names or (), gaze)
    return ImageSpec(
        index=index,
        subject=subject,
        name=f"IMG_{index:06d}",
        category="neutral" if neutral else "expression",
        expression=expression,
        pose=sample_pose(rng, options, head.n_pose),
        light=sample_light(rng),
        fraction=float(rng.uniform(*options.face_fraction)),
        shift=rng.uniform(-options.shift, options.shift, 2),
        gain=1.0 + rng.normal(0.0, 0.04, 3),
        gamma=float(rng.uniform(0.9, 1.1)),
        noise=float(rng.uniform(0.0, options.noise)),
        jpeg_quality=int(rng.integers(quality[0], quality[1] + 1)),
        rng_seed=int(rng.integers(0, 2**31)),
        gaze=None if gaze is None else gaze.astype(np.float32),
        blur=sample_blur(options, index),
        occluder=sample_occluder(options, index),
    )


def image_specs(options: SynthOptions, head, textures: list[Path]) -> list[ImageSpec]:
    """Every image of the dataset, subject by subject."""
    specs = []
    for s in range(options.n_subjects):
        subject = sample_subject(options, head, s, textures)
        first = s * options.images_per_subject
        for k in range(min(options.images_per_subject, options.n_images - first)):
            specs.append(sample_image(options, head, subject, first + k, k))
    return specs


def scan_topology(head) -> tuple[np.ndarray, np.ndarray]:
    """(kept vertex indices, faces re-indexed to them): the outer surface, without socket regions."""
    sockets = socket_weights(head).max(axis=1) > 0.5
    keep = np.nonzero(~sockets)[0]
    faces = head.faces.numpy()
    faces = faces[(~sockets[faces]).all(axis=1)]
    remap = np.full(len(sockets), -1, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    return keep, remap[faces]


# ---- writing ----------------------------------------------------------------------------------------
def load_synth_head(options: SynthOptions):
    """The head model named by the options."""
    from vitdeca.head import load_head_model

    kwargs = {"path": options.head_path} if options.head_path else {}
    return load_head_model(options.head_model, **kwargs)


def write_scan(out: Path, head, subject: Subject, topology: tuple[np.ndarray, np.ndarray]) -> None:
    """The subject's neutral outer surface in mm and its 7 NoW landmarks (``.pp``)."""
    from vitdeca import io
    from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68
    from vitdeca.evaluation.pp import write_pp

    with torch.no_grad():
        shape = torch.from_numpy(subject.shape)[None]
        zeros = [torch.zeros(1, n) for n in (head.n_expression, head.n_pose)]
        neutral = head(shape, *zeros)
    mm = 1.0 / head.units_per_mm
    keep, faces = topology
    vertices = neutral.vertices[0].double().numpy()[keep] * mm
    io.save_obj(out / "scans" / subject.name / f"{subject.name}.obj", vertices, faces)
    landmarks = neutral.landmarks3d[0, list(NOW_LANDMARKS_IBUG68)].double().numpy() * mm
    write_pp(out / "scans_lmks_onlypp" / subject.name / f"{subject.name}_picked_points.pp", landmarks)


def _encode(image: np.ndarray, suffix: str, *params: int) -> bytes:
    ok, data = cv2.imencode(suffix, image[..., ::-1] if image.ndim == 3 else image, list(params))
    if not ok:
        raise VitdecaError(f"cannot encode a {suffix} image")
    return data.tobytes()


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_image(
    out: Path, spec: ImageSpec, image: np.ndarray, landmarks: np.ndarray, mask: np.ndarray
) -> dict:
    """Write one image, its landmarks and mask; return its manifest record."""
    stem = f"{spec.subject.name}/{spec.category}/{spec.name}"
    atomic_write_bytes(
        out / IMAGE_FOLDER / f"{stem}.jpg",
        _encode(image, ".jpg", cv2.IMWRITE_JPEG_QUALITY, spec.jpeg_quality),
    )
    _save_npy(out / "landmarks2d" / f"{stem}.npy", landmarks.astype(np.float32))
    atomic_write_bytes(out / "masks" / f"{stem}.png", _encode(mask.astype(np.uint8) * 255, ".png"))
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    size = image.shape[0]
    return {
        "image": spec.relative_path, "identity": spec.subject.name, "face_index": 0,
        "box": [float(v) for v in (*low, *high)], "landmarks": landmarks.astype(np.float64).tolist(),
        "score": 1.0, "mask": f"masks/{stem}.png", "crop": None,
        "crop_matrix": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "width": size, "height": size,
        "faces_found": 1, "image_records": 1, "status": "ok", "message": "",
    }  # fmt: skip


def check_output_folder(out: Path) -> None:
    """Refuse a folder that already holds a dataset (nothing is overwritten)."""
    for name in ("dataset.json", "manifest.jsonl", IMAGE_LIST, CODES_NAME, IMAGE_FOLDER):
        if (out / name).exists():
            raise VitdecaError(f"{out}: already holds a dataset ({name}); choose a new --out")


def write_synthetic_dataset(out: str | os.PathLike, options: SynthOptions | None = None,
                            progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Render and write a synthetic dataset (layout in the module docstring); returns its summary.

    ``codes.npz`` holds, per image in list order: ``image`` (SUBJECT/CATEGORY/IMAGE.jpg), ``subject``,
    ``shape`` (N,n_shape), ``expression`` (N,n_expression), ``pose`` (N,n_pose), ``camera`` (N,3) weak
    perspective in the image frame, ``light`` (N,9,3), ``landmarks2d`` (N,68,2) pixels, ``visible``
    (N,68) bool (hidden neither by the head itself nor by an occluder), ``occluded`` (N,) bool (an
    occluder was drawn), ``occluder`` (N,) its kind or "", ``blur`` (N,) the blur's std in pixels (0:
    sharp), ``blur_kind`` (N,) "gaussian", "motion" or "", ``skin_tone`` (N,3; NaN with a photo texture),
    ``texture`` (N,) path or "", ``gaze`` (N,2,2) the eyes' yaw/pitch degrees (left eye first; only
    with ``eyes="ict"``); and ``head_model``, ``head_checksum``,
    ``units_per_mm``, ``image_size``. ``dataset.json`` (written last) records the options.
    """
    from tqdm import tqdm

    from vitdeca import __version__
    from vitdeca.data.manifest import write_meta
    from vitdeca.media import float_to_uint8, save_png

    options = (options or SynthOptions()).validated()
    out = Path(out)
    check_output_folder(out)
    head = load_synth_head(options)
    textures = list_textures(options.textures) if options.textures else []
    specs = image_specs(options, head, textures)
    renderer = SynthRenderer(head, options)
    topology = scan_topology(head)
    subjects = list({s.subject.name: s.subject for s in specs}.values())
    for subject in subjects:
        write_scan(out, head, subject, topology)
        save_png(
            out / "albedo" / f"{subject.name}.png",
            float_to_uint8(renderer.albedo(subject).numpy().transpose(1, 2, 0)),
        )
    records, landmarks, cameras, visible, occluded = [], [], [], [], []
    with tqdm(total=len(specs), desc="synth", unit="image", disable=not progress) as bar:
        for start in range(0, len(specs), options.batch_size):
            batch = specs[start : start + options.batch_size]
            rendered = renderer.render(batch)
            for k, spec in enumerate(batch):
                records.append(
                    write_image(out, spec, rendered.images[k], rendered.landmarks[k], rendered.masks[k])
                )
            landmarks.append(rendered.landmarks)
            cameras.append(rendered.cameras)
            visible.append(rendered.visible)
            occluded.append(rendered.occluded)
            bar.update(len(batch))
    arrays = {name: np.concatenate(values) for name, values in
              (("landmarks2d", landmarks), ("visible", visible), ("occluded", occluded))}  # fmt: skip
    _write_codes(out / CODES_NAME, specs, arrays, np.concatenate(cameras), head, options)
    atomic_write_bytes(out / IMAGE_LIST, "".join(s.relative_path + "\n" for s in specs).encode())
    atomic_write_bytes(out / "manifest.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode())
    summary = {"images": len(specs), "subjects": len(subjects), "image_size": options.size}
    write_meta(out, {
        "image_root": str((out / IMAGE_FOLDER).resolve()), "manifest": "manifest.jsonl",
        "generator": "vitdeca synth", "vitdeca_version": __version__, "head_model": head.name,
        "synth": _jsonable(asdict(options)), **summary,
    })  # fmt: skip
    return summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _write_codes(path: Path, specs: list[ImageSpec], points: dict[str, np.ndarray], cameras: np.ndarray,
                 head, options: SynthOptions) -> None:  # fmt: skip
    tones = [s.subject.skin.tone if s.subject.skin else (np.nan,) * 3 for s in specs]
    arrays = {
        "image": np.array([s.relative_path for s in specs]),
        "subject": np.array([s.subject.name for s in specs]),
        "shape": np.stack([s.subject.shape for s in specs]),
        "expression": np.stack([s.expression for s in specs]),
        "pose": np.stack([s.pose for s in specs]),
        "camera": cameras.astype(np.float32),
        "light": np.stack([s.light for s in specs]),
        "landmarks2d": points["landmarks2d"].astype(np.float32),
        "visible": points["visible"].astype(bool),
        "occluded": points["occluded"].astype(bool),
        "occluder": np.array(
            [s.occluder.kind if hit else "" for s, hit in zip(specs, points["occluded"], strict=True)]
        ),
        "blur": np.array([s.blur.sigma if s.blur else 0.0 for s in specs], dtype=np.float32),
        "blur_kind": np.array([s.blur.kind if s.blur else "" for s in specs]),
        "skin_tone": np.array(tones, dtype=np.float32),
        "texture": np.array([str(s.subject.texture or "") for s in specs]),
        "head_model": np.array(head.name),
        "head_checksum": np.array(head.checksum()),
        "units_per_mm": np.array(head.units_per_mm),
        "image_size": np.array(options.size),
    }
    if options.eyes == "ict":
        arrays["gaze"] = np.stack([s.gaze for s in specs])
    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
