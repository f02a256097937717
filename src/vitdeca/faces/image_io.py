"""Robust still-image reading: any file Pillow can decode → RGB uint8 (H,W,3) in the displayed orientation.

Handled: EXIF orientation (the pixels are turned the way a viewer shows them, so landmarks refer to the
upright image), grayscale and 1-bit, palette (with or without transparency), RGBA/LA (composited over
white), CMYK (Pillow's conversion; Adobe-inverted JPEGs included), 16-bit and 32-bit integer and float
images (scaled to 8 bit), multi-frame files (first frame). Files larger than ``max_pixels`` are refused
from their header, before anything is decoded (a decompression bomb costs nothing).

Every failure is an :class:`ImageReadError` (a :class:`~vitdeca.errors.VitdecaError`) whose message
names the file and whose ``status`` is ``"unreadable"`` or ``"too_large"``.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from vitdeca.errors import VitdecaError, first_line

log = logging.getLogger(__name__)

# 80 megapixels (~240 MB as RGB uint8): below Pillow's own bomb warning (89.5 MP).
DEFAULT_MAX_PIXELS = 80_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".jfif")
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


class ImageReadError(VitdecaError):
    """An image file that cannot be used; ``status`` says why (``unreadable`` or ``too_large``)."""

    def __init__(self, message: str, status: str = "unreadable") -> None:
        super().__init__(message)
        self.status = status


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read ``path`` as RGB uint8 (H,W,3), EXIF orientation applied.

    Raises :class:`ImageReadError` naming the file for empty, truncated, undecodable or oversized files.
    """
    name = os.fspath(path)
    try:
        size = os.path.getsize(name)
    except OSError as exc:
        raise ImageReadError(f"{name}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise ImageReadError(f"{name}: empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(name) as image:
                _check_pixels(name, image.size, max_pixels)
                image.load()
                image = _upright(name, image)
                return as_rgb_uint8(_pil_to_array(image))
        except Image.DecompressionBombError as exc:
            raise ImageReadError(f"{name}: image too large ({exc})", status="too_large") from exc
        except MemoryError as exc:
            raise ImageReadError(f"{name}: image too large to decode (out of memory)", "too_large") from exc
        except ImageReadError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoder failure on user data is "unreadable"
            raise ImageReadError(f"{name}: not a readable image ({_reason(exc)})") from exc


def as_rgb_uint8(array: np.ndarray) -> np.ndarray:
    """Any (H,W), (H,W,1), (H,W,3) or (H,W,4) array (uint8/uint16/int/float) → C-contiguous RGB uint8.

    uint16 is 0..65535; other integers too if any value exceeds 255 (else 0..255); floats with
    maximum ≤ 1 are [0,1], otherwise [0,255].
    A 4th channel is alpha and is composited over white.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise VitdecaError(f"image array must be (H,W), (H,W,3) or (H,W,4), got shape {array.shape}")
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.dtype == np.uint8 and array.shape[2] == 3:
        return np.ascontiguousarray(array)
    unit = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else _to_unit_float(array)
    if unit.shape[2] == 4:
        alpha = unit[..., 3:]
        unit = unit[..., :3] * alpha + (1.0 - alpha)
    array = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(array)


def _to_unit_float(array: np.ndarray) -> np.ndarray:
    """Non-uint8 data → float32 in [0,1] (16-bit and float conventions as in :func:`as_rgb_uint8`)."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        top = 65535.0 if array.dtype == np.uint16 or array.max(initial=0) > 255 else 255.0
        return np.clip(array.astype(np.float32) / top, 0.0, 1.0)
    array = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    top = 1.0 if array.max(initial=0) <= 1.0 else 255.0
    return np.clip(array / top, 0.0, 1.0)


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{name}: image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageReadError(
            f"{name}: image too large ({width}x{height} = {width * height / 1e6:.0f} MP, "
            f"limit {max_pixels / 1e6:.0f} MP)",
            status="too_large",
        )


def _upright(name: str, image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block is ignored (the pixels are still good)."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # noqa: BLE001 - malformed EXIF must not reject a decodable image
        log.debug("%s: ignoring unreadable EXIF orientation (%s)", name, exc)
        return image


def _pil_to_array(image: Image.Image) -> np.ndarray:
    """A decoded Pillow image → array in a mode :func:`as_rgb_uint8` understands, writable (``np.asarray``
    of a Pillow image is a read-only view of its bytes; the copy costs little next to decoding)."""
    mode = image.mode
    if mode == "P" and "transparency" in image.info:
        return np.array(image.convert("RGBA"))
    if mode in _ALPHA_MODES:
        return np.array(image.convert("RGBA"))
    if mode.startswith("I;16") or mode in ("I", "F", "L", "RGB"):
        return np.array(image)
    return np.array(image.convert("RGB"))  # 1, P, CMYK, YCbCr, LAB, HSV, ...


def _reason(exc: BaseException) -> str:
    return first_line(exc)[:200]
