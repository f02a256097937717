"""read_image / as_rgb_uint8: every pixel format, EXIF orientation, and every kind of bad file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from vitdeca.errors import VitdecaError
from vitdeca.faces import ImageReadError, as_rgb_uint8, read_image

ORIENTATION = 0x0112


def _pattern(height: int = 24, width: int = 32) -> np.ndarray:
    """An asymmetric RGB test pattern (so every flip or turn changes it)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 7 % 256, y * 11 % 256, (x * y) % 256], axis=-1).astype(np.uint8)


def test_rgb_png_is_exact(tmp_path: Path) -> None:
    image = _pattern()
    Image.fromarray(image).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, image)
    out[0, 0] = 0  # the caller's own array: writable (np.asarray of a Pillow image is read-only)
    for name in ("g.png", "b.jpg"):  # the grey path and the plain RGB (JPEG) path too
        Image.fromarray(image[..., 0] if name == "g.png" else image).save(tmp_path / name)
        assert read_image(tmp_path / name).flags.writeable, name


def test_grayscale_one_bit_and_palette(tmp_path: Path) -> None:
    grey = _pattern()[..., 0]
    Image.fromarray(grey).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), np.repeat(grey[..., None], 3, axis=2))
    Image.fromarray(grey > 100).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png")[..., 1], np.where(grey > 100, 255, 0))
    palette = Image.fromarray(_pattern()).quantize(8)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), np.asarray(palette.convert("RGB")))


def test_alpha_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[0, :, 3] = 255  # opaque row
    rgba[1, :, 3] = 0  # transparent row
    rgba[2, :, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[1, 0], [255, 255, 255])
    a = 128 / 255
    np.testing.assert_array_equal(out[2, 0], np.rint([200 * a + 255 * (1 - a), 255 * (1 - a), 255 * (1 - a)]))
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[1, 0], [255, 255, 255])


def test_sixteen_bit_grey_and_rgb(tmp_path: Path) -> None:
    grey = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(4, axis=0)
    cv2.imwrite(str(tmp_path / "g16.png"), grey)
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png")[0, :, 0], [0, 1, 128, 255])
    rgb = np.zeros((4, 4, 3), np.uint16)
    rgb[..., 0] = 65535  # pure red, stored by cv2 in BGR order
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png")[0, 0], [255, 0, 0])
    dark = np.full((4, 4), 200, np.uint16)  # a dark 16-bit image is not mistaken for 8 bit
    cv2.imwrite(str(tmp_path / "d16.png"), dark)
    assert read_image(tmp_path / "d16.png")[0, 0, 0] == 1


def test_cmyk_jpeg(tmp_path: Path) -> None:
    image = _pattern(64, 64)
    Image.fromarray(image).convert("CMYK").save(tmp_path / "c.jpg", quality=98)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = read_image(tmp_path / "c.jpg")
    assert out.shape == (64, 64, 3)
    assert np.abs(out.astype(int) - image).mean() < 6


def test_float_tiff(tmp_path: Path) -> None:
    data = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    Image.fromarray(data, "F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[..., 0], np.rint(data * 255))


@pytest.mark.parametrize(
    ("orientation", "stored_from_upright"),
    [
        (3, lambda a: np.rot90(a, 2)),
        (6, lambda a: np.rot90(a, 1)),  # stored turned 90° counter-clockwise; shown turned clockwise
        (8, lambda a: np.rot90(a, -1)),
        (2, lambda a: a[:, ::-1]),
    ],
)
def test_exif_orientation(tmp_path: Path, orientation: int, stored_from_upright) -> None:
    upright = _pattern()
    stored = Image.fromarray(np.ascontiguousarray(stored_from_upright(upright)))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    stored.save(tmp_path / "r.png", exif=exif)
    np.testing.assert_array_equal(read_image(tmp_path / "r.png"), upright)


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.jpg", b""), ("text.jpg", b"this is not an image\n"), ("half.png", b"\x89PNG\r\n\x1a\n\x00\x00")],
)
def test_bad_files_are_unreadable(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageReadError) as info:
        read_image(tmp_path / name)
    assert info.value.status == "unreadable"
    assert str(tmp_path / name) in str(info.value)
    assert isinstance(info.value, VitdecaError)


def test_truncated_jpeg(tmp_path: Path, face_photo: Path) -> None:
    data = face_photo.read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.jpg") as info:
        read_image(tmp_path / "cut.jpg")
    assert info.value.status == "unreadable"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="nothing.png"):
        read_image(tmp_path / "nothing.png")


def test_pixel_guard(tmp_path: Path, write_huge_png) -> None:
    huge = write_huge_png(tmp_path / "huge.png")
    with pytest.raises(ImageReadError, match="too large") as info:
        read_image(huge)
    assert info.value.status == "too_large"
    Image.fromarray(_pattern(100, 100)).save(tmp_path / "small.png")  # our own limit, below Pillow's
    with pytest.raises(ImageReadError, match="100x100") as info:
        read_image(tmp_path / "small.png", max_pixels=9_999)
    assert info.value.status == "too_large"
    assert read_image(tmp_path / "small.png", max_pixels=10_000).shape == (100, 100, 3)


def test_as_rgb_uint8_arrays() -> None:
    np.testing.assert_array_equal(as_rgb_uint8(np.full((2, 2), 0.5, np.float32))[0, 0], [128, 128, 128])
    np.testing.assert_array_equal(as_rgb_uint8(np.full((2, 2, 1), 7, np.uint8))[0, 0], [7, 7, 7])
    np.testing.assert_array_equal(as_rgb_uint8(np.full((2, 2, 3), 65535, np.uint16))[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(as_rgb_uint8(np.full((2, 2, 3), 200.0))[0, 0], [200, 200, 200])
    with pytest.raises(VitdecaError, match="shape"):
        as_rgb_uint8(np.zeros((2, 2, 5)))
