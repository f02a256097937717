"""Media for the reconstruct pipeline: which inputs are images or videos, video reading and writing,
PNG writing, the visual panels (landmarks, overlays, depth, the side-by-side grid) and the One-Euro
filter that smooths codes over video frames.

Arrays here are uint8 HWC RGB at the file boundary; pixel (row i, column j) has its centre at
(j + 0.5, i + 0.5), the convention of every landmark array in vitdeca.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vitdeca.errors import VitdecaError, first_line
from vitdeca.storage import atomic_path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
_GLOB_CHARS = frozenset("*?[")


# --------------------------------------------------------------------------------------------- inputs
def media_kind(path: str | os.PathLike) -> str:
    """``"video"`` for video suffixes, ``"image"`` for everything else (decoding decides the rest)."""
    return "video" if Path(path).suffix.lower() in VIDEO_SUFFIXES else "image"


def is_media_file(path: Path) -> bool:
    """True for a visible file with an image or video suffix."""
    suffix = path.suffix.lower()
    return path.is_file() and not path.name.startswith(".") and suffix in IMAGE_SUFFIXES | VIDEO_SUFFIXES


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand the command line's inputs into a list of files, in order and without repeats.

    A file is taken as given (whatever its suffix: an unreadable file is reported per item later); a
    folder contributes its image and video files, recursively and sorted; a pattern with ``* ? [``
    (``**`` recursive) contributes the image and video files it matches. An input that neither exists
    nor matches anything does not stop the others: a missing path stays in the list (the batch reports
    it as a failed item, one line), a pattern without matches is logged. Raises :class:`VitdecaError`
    when no input exists at all (naming them).
    """
    found: list[Path] = []
    missing: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if is_media_file(p) and not _hidden_below(p, path))
        elif path.is_file():
            found.append(path)
        elif _GLOB_CHARS & set(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if is_media_file(m)]
            found += files
            if not files:
                missing.append(f"{text}: the pattern matches no image or video file")
        else:
            missing.append(f"{text}: no such file or folder")
            found.append(path)
    existing = [p for p in found if p.exists()]
    if missing and not existing:
        raise VitdecaError("; ".join(missing))
    for message in missing:
        log.warning("%s", message)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        shown = ", ".join(os.fspath(i) for i in inputs) or "(none)"
        raise VitdecaError(f"{shown}: no image or video files found")
    return unique


def _hidden_below(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


# ------------------------------------------------------------------------------------------- writing
def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a uint8 (H,W), (H,W,3) or (H,W,4) image, or a uint16 (H,W) image, as PNG atomically."""
    import imageio.v2 as iio

    image = np.asarray(image)
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"save_png expects uint8 or uint16, got {image.dtype}")
    with atomic_path(path, suffix=".png") as tmp:
        iio.imwrite(tmp, image, format="PNG")
    return Path(path)


def float_to_uint8(image: Any, dtype: Any = None) -> np.ndarray:
    """An image (numpy or torch, any shape) with values in [0,1] as uint8 of the same shape: clipped,
    scaled to 0..255 and rounded half up. uint8 input is returned as it is. The arithmetic runs in
    ``dtype`` (default: the input's own float type; float64 for other types), which decides the rare
    value that lies within rounding error of a half step."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if dtype is None:
        dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float64
    return (np.clip(image.astype(dtype, copy=False), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class Video:
    """One open video file (an imageio ffmpeg reader), to use as a context manager: ``fps`` (25 when
    the container does not say), ``size`` (width, height), ``n_frames`` (None when the container does
    not say) and :meth:`frames`, which may run several times over the same reader. Raises
    :class:`VitdecaError` when the file is no readable video."""

    def __init__(self, path: str | os.PathLike) -> None:
        import imageio.v2 as iio

        self.path, reader = path, None
        try:
            reader = iio.get_reader(os.fspath(path), "ffmpeg")
            meta = reader.get_meta_data()
        except (OSError, RuntimeError, ValueError, IndexError, StopIteration) as exc:
            if reader is not None:
                reader.close()
            raise VitdecaError(f"{path}: cannot read as a video ({first_line(exc)})") from exc
        self._reader = reader
        fps = float(meta.get("fps") or 0.0)
        n_frames = meta.get("nframes")
        self.fps = fps if fps > 0 else 25.0
        self.n_frames = (
            int(n_frames) if isinstance(n_frames, (int, float)) and math.isfinite(n_frames) else None
        )
        self.size = tuple(int(v) for v in meta.get("size", (0, 0)))

    def frames(self, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` from the first frame on, frames uint8 (H,W,3), in order.

        Frames ffmpeg cannot decode are dropped by ffmpeg itself; a reader error after the first frame
        ends the video early with a warning instead of failing it (what was read stays usable).
        """
        self._reader.set_image_index(0)
        index = 0
        while max_frames is None or index < max_frames:
            try:
                frame = self._reader.get_next_data()
            except (IndexError, StopIteration):
                return
            except (OSError, RuntimeError, ValueError) as exc:
                if index == 0:
                    raise VitdecaError(
                        f"{self.path}: cannot decode the first frame ({first_line(exc)})"
                    ) from exc
                log.warning("%s: stopped at frame %d (%s)", self.path, index, first_line(exc))
                return
            yield index, np.ascontiguousarray(frame[..., :3])
            index += 1

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> Video:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def iter_video(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """:meth:`Video.frames` of the video at ``path``, closed when the iteration ends."""
    with Video(path) as video:
        yield from video.frames(max_frames)


@contextmanager
def video_writer(path: str | os.PathLike, fps: float) -> Iterator:
    """Context manager yielding ``write(frame)`` for uint8 (H,W,3) frames of one size; the MP4 (H.264)
    appears atomically at ``path`` when the block ends without error. Odd sizes are padded to even."""
    import imageio_ffmpeg

    with atomic_path(path, suffix=".mp4") as tmp:
        state: dict = {}

        def write(frame: np.ndarray) -> None:
            frame = pad_even(np.ascontiguousarray(frame[..., :3], dtype=np.uint8))
            if "gen" not in state:
                state["size"] = frame.shape[:2]
                state["gen"] = imageio_ffmpeg.write_frames(
                    os.fspath(tmp),
                    (frame.shape[1], frame.shape[0]),
                    fps=float(fps),
                    codec="libx264",
                    quality=7,
                    macro_block_size=2,
                    output_params=["-f", "mp4"],
                    ffmpeg_log_level="error",
                )
                state["gen"].send(None)
            if frame.shape[:2] != state["size"]:
                raise ValueError(f"video frames must keep one size: {frame.shape[:2]} != {state['size']}")
            state["gen"].send(frame)

        try:
            yield write
        finally:
            if "gen" in state:
                state["gen"].close()


def pad_even(image: np.ndarray) -> np.ndarray:
    """Pad the bottom/right edge with black so that height and width are even (H.264 needs it)."""
    h, w = image.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return image
    return np.pad(image, ((0, h % 2), (0, w % 2)) + ((0, 0),) * (image.ndim - 2))


# -------------------------------------------------------------------------------------------- panels
def draw_landmarks(
    image: np.ndarray,
    points: np.ndarray,
    color: tuple[int, int, int] = (0, 255, 0),
    radius: float | None = None,
) -> np.ndarray:
    """A copy of uint8 ``image`` (H,W,3) with filled dots at ``points`` (N,2) in pixel-centre coordinates."""
    import cv2

    out = np.ascontiguousarray(image[..., :3]).copy()
    if radius is None:
        radius = max(1.0, min(out.shape[:2]) / 150.0)
    shift = 4
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        centre = (int(round((x - 0.5) * (1 << shift))), int(round((y - 0.5) * (1 << shift))))
        cv2.circle(out, centre, int(round(radius * (1 << shift))), color, -1, cv2.LINE_AA, shift)
    return out


def blend(image: np.ndarray, overlay: np.ndarray, alpha: np.ndarray, opacity: float = 1.0) -> np.ndarray:
    """``image`` (H,W,3) uint8 with ``overlay`` (H,W,3) uint8 composited where ``alpha`` (H,W) in [0,1]."""
    a = np.clip(np.asarray(alpha, dtype=np.float32), 0.0, 1.0)[..., None] * opacity
    mixed = image[..., :3].astype(np.float32) * (1.0 - a) + overlay[..., :3].astype(np.float32) * a
    return (mixed + 0.5).astype(np.uint8)


def warp_to_image(
    crop: np.ndarray, matrix: np.ndarray, size: tuple[int, int], nearest: bool = False
) -> np.ndarray:
    """Warp a crop-space array (h,w[,C]) back into an image of ``size`` = (width, height), 0 outside.

    ``matrix`` (2,3) maps original-image pixels to crop pixels (pixel-centre convention on both sides).
    """
    from vitdeca.faces.geometry import invert_similarity, warp_image

    return warp_image(np.ascontiguousarray(crop), invert_similarity(matrix), size, nearest=nearest)


def depth_to_uint8(depth: np.ndarray, mask: np.ndarray, near_is_large: bool = True) -> np.ndarray:
    """A (H,W) depth map as a grey uint8 picture: 0 (black) outside ``mask``, 255 for the nearest
    point of the masked region and 55 for its farthest, linear in between."""
    depth = np.asarray(depth, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool) & np.isfinite(depth)
    out = np.zeros(depth.shape, dtype=np.uint8)
    if not mask.any():
        return out
    values = depth[mask] if near_is_large else -depth[mask]
    lo, hi = values.min(), values.max()
    scaled = (values - lo) / (hi - lo) if hi > lo else np.ones_like(values)
    out[mask] = (55.0 + 200.0 * scaled + 0.5).astype(np.uint8)
    return out


def vis_grid(panels: Sequence[np.ndarray], height: int | None = None, gap: int = 0) -> np.ndarray:
    """Panels side by side: each uint8 (h,w[,3]) resized to ``height`` (default: the first panel's),
    grey panels turned RGB, separated by ``gap`` black columns. Returns uint8 (height, W, 3)."""
    import cv2

    if not panels:
        raise ValueError("vis_grid needs at least one panel")
    height = int(height or panels[0].shape[0])
    row = []
    for i, panel in enumerate(panels):
        panel = np.asarray(panel)
        if panel.ndim == 2:
            panel = np.repeat(panel[..., None], 3, axis=2)
        h, w = panel.shape[:2]
        if h != height:
            width = max(1, int(round(w * height / h)))
            interp = cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
            panel = cv2.resize(panel[..., :3], (width, height), interpolation=interp)
        if i and gap:
            row.append(np.zeros((height, gap, 3), np.uint8))
        row.append(np.ascontiguousarray(panel[..., :3], dtype=np.uint8))
    return np.concatenate(row, axis=1)


def fit_height(image: np.ndarray, max_height: int) -> np.ndarray:
    """Downscale ``image`` so that its height is at most ``max_height`` (never upscales)."""
    import cv2

    h, w = image.shape[:2]
    if h <= max_height:
        return image
    return cv2.resize(image, (max(1, round(w * max_height / h)), max_height), interpolation=cv2.INTER_AREA)


# -------------------------------------------------------------------------------- temporal smoothing
class OneEuroFilter:
    """The One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) on arrays of any fixed shape, elementwise.

    A first-order low-pass whose cutoff rises with the signal's speed: ``fc = min_cutoff + beta·|dx̂|``,
    ``α(fc, dt) = 1 / (1 + 1/(2π·fc·dt))``, ``x̂_t = x̂_{t-1} + α·(x_t − x̂_{t-1})``, where the speed
    ``dx̂`` is itself low-passed with cutoff ``d_cutoff``. Slow changes are smoothed strongly (little
    jitter), fast ones pass with little lag. Cutoffs are in Hz; timestamps in seconds.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("OneEuroFilter needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past (e.g. after a cut or a long gap)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
        """Smoothing factor of an exponential low-pass with ``cutoff`` Hz at step ``dt`` s."""
        return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * np.asarray(cutoff) * dt))

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter sample ``x`` taken at time ``t`` (strictly increasing); returns the smoothed sample."""
        x = np.asarray(x, dtype=np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:
            raise ValueError(f"OneEuroFilter timestamps must increase (got {t} after {self._t})")
        dx = (x - self._x) / dt
        self._dx = self._dx + self.alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + self.alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()
