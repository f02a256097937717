"""``--save avatar`` in a real browser: three.js r187 (GLTFLoader, AnimationMixer) in Debian's headless
Chromium draws the GLB at rest and at a frame of its animation; vitdeca's own renderer draws the same
frame from the head model itself (not from the GLB): head vertices from the shape, expression and pose
codes, eyeballs from the gaze. Both are unlit (texture colour only: ``MeshBasicMaterial`` in three.js,
the sampled UV map here) with the same orthographic camera looking along -z, back faces culled (glTF's
single-sided default). Silhouettes (IoU) and colours inside the common mask must agree, and a different
frame (or zeroed weights) must not.

three.js comes from ``$VITDECA_THREEJS`` or ``.cache/threejs`` (``.ci/run`` installs it with npm) and is
served with the page and the GLB from a local server; a request to any other host fails the test. The
PNGs (browser, vitdeca, difference) go to ``$VITDECA_ARTIFACTS``, else the test's temporary folder.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitdeca.arkit import ARKIT_NAMES
from vitdeca.media import float_to_uint8
from vitdeca.pipeline.animation import write_avatar_glb
from vitdeca.pipeline.eyes import in_front
from vitdeca.render import rasterize, shade, weak_perspective_to_screen

from ..browser import local_only
from .test_avatar import ict_face, random_weights
from .test_eyes import with_eyes

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
THREE_NPM = f"npm install --no-save --prefix {REPO / '.cache' / 'threejs'} three@0.187.0"
PAGE = Path(__file__).with_name("avatar_three.html")
SIZE = 256  # canvas and render side, pixels
# orthographic views: centre (x, y) and half side, metres; eyesOnly: the eyeballs without the head
HEAD_VIEW = {"centre": (0.0, -0.02), "half": 0.18, "eyesOnly": False}
EYES_HALF = 0.05  # the eyes' view: centred between the posed eyeballs
BACKGROUND = (255, 0, 255)  # no texel of the test textures is near it (their green is >= 40)
FPS = 25.0
# per video frame: (pitch, yaw, roll) degrees of the head, (yaw, pitch) degrees of both eyes, jawOpen
POSES = [(4, -8, 2), (6, 12, -3), (-10, 25, 6), (12, -20, -8), (0, 5, 0)]
GAZES = [(10, -5), (-15, 8), (20, 10), (-8, -12), (0, 0)]
JAW_OPEN = [0.7, 0.2, 0.5, 0.1, 0.0]
FRAME = 2  # the animation frame compared (not the last: a looping action wraps there)
# Agreement, measured: IoU >= 0.9997, median 0; pixels off by more than MISMATCH_LEVELS: 0.4-0.6 % in
# the head views, 2.2-2.6 % in the eye views (one-pixel rings at the iris' and pupil's sharp edges: three.js
# filters the texture with mipmaps, in linear colour). A pair "clearly differs" when it misses a threshold
# by CLEAR_MARGIN times (measured for the controls: 14-70 % mismatching pixels, or IoU 0.80).
IOU_MIN = 0.99
MEDIAN_MAX = 2.0  # median |browser - vitdeca| over the common mask, levels 0..255 per channel
MISMATCH_LEVELS, MISMATCH_MAX = 32, 0.05  # fraction of common pixels off by more than 32 levels
CLEAR_MARGIN = 2.0


def three_dir() -> Path:
    """three.js (a folder with ``build/three.module.js``): ``$VITDECA_THREEJS``, else the npm copy that
    ``.ci/run`` installs into ``.cache/threejs``; skips without either."""
    folder = os.environ.get("VITDECA_THREEJS")
    path = Path(folder) if folder else REPO / ".cache" / "threejs" / "node_modules" / "three"
    if not (path / "build" / "three.module.js").is_file():
        pytest.skip(f"three.js not found at {path} (set VITDECA_THREEJS, or run {THREE_NPM})")
    return path


class _Files(SimpleHTTPRequestHandler):
    extensions_map = {".html": "text/html", ".js": "text/javascript", ".glb": "model/gltf-binary"}

    def log_message(self, *args) -> None:
        pass


@contextmanager
def serve(folder: Path):
    """``folder`` over HTTP on a free port of 127.0.0.1 (a thread); yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Files, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def pattern_texture(size: int = 256) -> np.ndarray:
    """An (S,S,3) uint8 texture whose colour tells u from v (a flip or shift shows) with a blue pattern of
    12 periods (surface motion shows); green >= 40."""
    v, u = np.meshgrid(1.0 - (np.arange(size) + 0.5) / size, (np.arange(size) + 0.5) / size, indexing="ij")
    rgb = np.stack([u, 0.5 + 0.5 * v, 0.5 + 0.5 * np.sin(24 * np.pi * u) * np.cos(24 * np.pi * v)], -1)
    return (40 + 175 * rgb).round().astype(np.uint8)


def video_faces(face_factory, fit_model, topology) -> list[tuple[float, object]]:
    """(time, FaceResult) of a short performance of one person: per frame another expression, head pose
    and gaze; each expression code is the one of the face's ARKit weights (eyeLook* from the gaze)."""
    eyes, frames = fit_model.head.eyeballs(), []
    for k, ((pitch, yaw, roll), gaze) in enumerate(zip(POSES, GAZES, strict=True)):
        weights = random_weights(40 + k)
        weights[ARKIT_NAMES.index("jawOpen")] = JAW_OPEN[k]
        face = ict_face(face_factory, fit_model, topology, weights)
        face.texture = pattern_texture()
        face.codes = face.codes.replace(
            pose=torch.tensor(np.radians([[pitch, yaw, roll]]), dtype=torch.float32)
        )
        face = with_eyes(face, eyes, [list(gaze), list(gaze)])
        expression = topology.arkit.expression(face.arkit_weights)
        face.codes = face.codes.replace(expression=torch.from_numpy(expression)[None])
        frames.append((k / FPS, face))
    return frames


def posed_vertices(fit_model, topology, face, rest=False, expression=True, gaze=True):
    """(head, eyeballs) (1,V,3) metres of ``face`` from the head model: its expression code (zero
    without ``expression``), pose (zero at ``rest``: the GLB's rest) and gaze (ahead without ``gaze``)."""
    codes, metres = face.codes, 1.0 / (topology.units_per_mm * 1000.0)
    pose = torch.zeros_like(codes.pose) if rest else codes.pose
    code = codes.expression if expression else torch.zeros_like(codes.expression)
    angles = torch.as_tensor(face.eyes.gaze, dtype=torch.float32)[None] * float(gaze)
    with torch.no_grad():
        head = fit_model.head(codes.shape, code, pose).vertices * metres
        eyeballs = fit_model.head.eyeballs()(codes.shape, pose, angles).vertices * metres
    return head, eyeballs


def eyes_view(eyeballs: torch.Tensor) -> dict:
    """The close view of the eyeballs alone, centred on them (x, y)."""
    centre = eyeballs[0, :, :2].mean(0)
    return {"centre": (float(centre[0]), float(centre[1])), "half": EYES_HALF, "eyesOnly": True}


def project_render(topology, texture: np.ndarray, vertices, view: dict) -> np.ndarray:
    """vitdeca's unlit render (S,S,3) uint8 of ``vertices`` (head, eyeballs) in ``view`` over
    :data:`BACKGROUND`, the eyeballs where they are nearer than the head (or alone: ``eyesOnly``)."""
    head_out = _unlit(vertices[0], topology, texture, view)
    eye_out = _unlit(vertices[1], topology.eyes, topology.eyes.texture, view)
    head_alpha = torch.zeros_like(head_out.alpha) if view["eyesOnly"] else head_out.alpha
    nearer = in_front(eye_out, head_alpha[:, 0], head_out.depth[:, 0])[0]
    colour = torch.where(nearer, eye_out.albedo_image[0], head_out.albedo_image[0])
    covered = nearer | (head_alpha[0, 0] > 0.5)
    image = float_to_uint8(colour.permute(1, 2, 0))
    return np.where(covered.numpy()[..., None], image, np.array(BACKGROUND, np.uint8))


def _unlit(vertices: torch.Tensor, topology, texture: np.ndarray, view: dict):
    """The :class:`~vitdeca.render.RenderOutput` of (1,V,3) metres with the orthographic camera of
    ``view`` (weak perspective: scale 1/half, shift -centre), back faces culled; ``albedo_image`` is
    the texture colour."""
    camera = torch.tensor([[1.0 / view["half"], -view["centre"][0], -view["centre"][1]]])
    screen = weak_perspective_to_screen(vertices, camera, SIZE, SIZE)
    faces = torch.as_tensor(np.asarray(topology.faces, np.int64))
    fragments = rasterize(screen, faces, SIZE, SIZE, cull_backfaces=True)
    face_uvs = torch.as_tensor(np.asarray(topology.uv_coords, np.float32))[np.asarray(topology.uv_faces)]
    albedo = torch.from_numpy(texture).permute(2, 0, 1)[None].float() / 255.0
    return shade(fragments, vertices, screen, faces, face_uvs, albedo, torch.zeros(1, 9, 3))


def compare(browser_img: np.ndarray, project_img: np.ndarray) -> dict[str, float]:
    """Silhouette IoU, and over the pixels both images cover the median absolute colour difference
    (levels per channel) and the fraction of pixels off by more than :data:`MISMATCH_LEVELS`."""
    background = np.array(BACKGROUND, int)
    a = np.abs(browser_img.astype(int) - background).max(-1) > 20
    b = np.abs(project_img.astype(int) - background).max(-1) > 20
    both = a & b
    if not both.any():
        return {"iou": 0.0, "median": 255.0, "mismatch": 1.0}
    error = np.abs(browser_img.astype(int) - project_img.astype(int))[both]
    return {
        "iou": round(float(both.sum() / max(1, (a | b).sum())), 5),
        "median": float(np.median(error)),
        "mismatch": round(float((error.max(-1) > MISMATCH_LEVELS).mean()), 5),
    }


def agrees(score: dict[str, float], margin: float = 1.0) -> bool:
    """Within the thresholds; with ``margin`` > 1 within thresholds that many times looser."""
    return (
        1.0 - score["iou"] <= (1.0 - IOU_MIN) * margin
        and score["median"] <= MEDIAN_MAX * margin
        and score["mismatch"] <= MISMATCH_MAX * margin
    )


def png_pixels(data_url: str) -> np.ndarray:
    data = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def save_pngs(folder: Path, name: str, browser_img: np.ndarray, project_img: np.ndarray) -> None:
    difference = np.abs(browser_img.astype(int) - project_img.astype(int)).astype(np.uint8)
    for kind, image in (("browser", browser_img), ("vitdeca", project_img), ("diff", difference)):
        Image.fromarray(image).save(folder / f"avatar_{name}_{kind}.png")


def browser_renders(browser, glb: Path, three: Path, views: dict) -> tuple[dict, dict]:
    """(what the page read from ``glb``, {name: (S,S,3) uint8}) for ``views`` {name: (time or None,
    view)}, rest views (time None) first; fails if the page asked any other host for anything."""
    site = glb.parent / "site"
    site.mkdir()
    (site / "avatar.glb").write_bytes(glb.read_bytes())
    (site / "index.html").write_bytes(PAGE.read_bytes())
    (site / "three").symlink_to(three, target_is_directory=True)
    images = {}
    with serve(site) as url:
        page = browser.new_page()
        external = local_only(page, url)
        page.goto(url + "index.html")
        page.wait_for_function("() => window.avatarReady === true", timeout=60_000)
        info = page.evaluate("args => window.avatar.load(...args)", [SIZE, list(BACKGROUND)])
        for name, (time, view) in sorted(views.items(), key=lambda item: item[1][0] is not None):
            images[name] = png_pixels(page.evaluate("args => window.avatar.render(...args)", [time, view]))
        page.close()
    assert external == [], external
    return info, images


def score_pairs(folder: Path, topology, texture, views: dict, shown: dict, pairs: dict) -> dict:
    """{name: :func:`compare` scores} of ``pairs`` {name: (browser view name, vitdeca's (head,
    eyeballs))}: each drawn by vitdeca in the same view as the browser image ``shown[view name]``; the
    PNGs and the scores (``avatar_browser_scores.json``) are saved to ``folder``."""
    scores = {}
    for name, (view, vertices) in pairs.items():
        project_img = project_render(topology, texture, vertices, views[view][1])
        save_pngs(folder, name, shown[view], project_img)
        scores[name] = compare(shown[view], project_img)
    (folder / "avatar_browser_scores.json").write_text(json.dumps(scores, indent=2) + "\n")
    return scores


def test_avatar_in_three_js_matches_the_vitdeca_render(
    browser, artifacts, face_factory, fit_model, topology, tmp_path
):
    three = three_dir()
    frames = video_faces(face_factory, fit_model, topology)
    first, later = frames[0][1], frames[FRAME][1]
    glb = write_avatar_glb(tmp_path / "avatar.glb", first, frames)
    at_rest = posed_vertices(fit_model, topology, first, rest=True)
    at_frame = posed_vertices(fit_model, topology, later)
    views = {
        "rest": (None, HEAD_VIEW),
        "rest_eyes": (None, eyes_view(at_rest[1])),
        "frame": (FRAME / FPS, HEAD_VIEW),
        "frame_eyes": (FRAME / FPS, eyes_view(at_frame[1])),
    }
    info, shown = browser_renders(browser, glb, three, views)
    # the page read the file as written: 51 named targets at the fitted weights, two eyes, the clip length
    names = [n for n in ARKIT_NAMES if n != "tongueOut"]
    assert info["revision"] == "187" and info["morphTargets"] == names
    fitted = first.arkit_weights[[ARKIT_NAMES.index(n) for n in names]]
    assert np.allclose(info["influences"], fitted, atol=1e-6)
    assert info["eyes"] == ["eye_left", "eye_right"]
    assert info["duration"] == pytest.approx((len(frames) - 1) / FPS, abs=1e-6)
    # vitdeca draws the same frames from the head model alike; other weights, poses or gaze clearly not
    same = {name: (name, at_rest if name.startswith("rest") else at_frame) for name in views}
    controls = {
        "rest_vs_zero_weights": (
            "rest",
            posed_vertices(fit_model, topology, first, rest=True, expression=False),
        ),
        "rest_vs_posed": ("rest", posed_vertices(fit_model, topology, first)),
        "frame_vs_next_frame": ("frame", posed_vertices(fit_model, topology, frames[FRAME + 1][1])),
        "frame_eyes_vs_gaze_ahead": ("frame_eyes", posed_vertices(fit_model, topology, later, gaze=False)),
    }
    scores = score_pairs(artifacts, topology, first.texture, views, shown, {**same, **controls})
    disagree = {name: scores[name] for name in same if not agrees(scores[name])}
    assert not disagree, disagree
    alike = {name: scores[name] for name in controls if agrees(scores[name], CLEAR_MARGIN)}
    assert not alike, alike
