"""Media helpers: input expansion, PNG/video round trips, panels and the One-Euro filter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vitdeca import media
from vitdeca.errors import VitdecaError


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_expand_inputs_folders_globs_files(tmp_path):
    a = _touch(tmp_path / "in" / "b.jpg")
    b = _touch(tmp_path / "in" / "sub" / "a.PNG")
    c = _touch(tmp_path / "in" / "sub" / "clip.mp4")
    _touch(tmp_path / "in" / "notes.txt")
    _touch(tmp_path / "in" / ".hidden" / "x.jpg")
    _touch(tmp_path / "in" / ".dot.jpg")
    odd = _touch(tmp_path / "odd.dat")
    got = media.expand_inputs([tmp_path / "in", str(tmp_path / "in" / "*.jpg"), odd])
    # folder: recursive, media suffixes only, sorted, no hidden; glob repeat dropped; explicit file kept
    assert got == [a.resolve(), b.resolve(), c.resolve(), odd.resolve()]
    assert media.expand_inputs([str(tmp_path / "**" / "*.mp4")]) == [c.resolve()]


@pytest.mark.parametrize("bad", ["missing.jpg", "nothing-*.jpg"])
def test_expand_inputs_errors_name_the_input(tmp_path, bad):
    with pytest.raises(VitdecaError, match="missing|nothing"):
        media.expand_inputs([str(tmp_path / bad)])


def test_a_missing_input_does_not_stop_the_others(tmp_path, caplog):
    """A mistyped path stays in the list (the batch fails that item alone, one line); a pattern without
    matches is logged; only when nothing exists at all is it an error, naming every input."""
    good = _touch(tmp_path / "a.jpg")
    missing, pattern = tmp_path / "typo.jpg", str(tmp_path / "nothing-*.png")
    with caplog.at_level("WARNING", logger="vitdeca.media"):
        got = media.expand_inputs([good, missing, pattern])
    assert got == [good.resolve(), missing.resolve()]
    assert "typo.jpg: no such file or folder" in caplog.text and "nothing-*.png: the pattern" in caplog.text
    with pytest.raises(VitdecaError, match=r"typo\.jpg: no such .*; .*nothing-\*\.png: the pattern"):
        media.expand_inputs([missing, pattern])
    from vitdeca.faces.image_io import read_image

    with pytest.raises(VitdecaError, match=r"typo\.jpg: cannot read \(No such file"):
        read_image(missing)  # what the batch records for that item


def test_expand_inputs_empty_folder(tmp_path):
    with pytest.raises(VitdecaError, match="no image or video"):
        media.expand_inputs([tmp_path])


def test_media_kind():
    assert media.media_kind("a/b.MOV") == "video"
    assert media.media_kind("a/b.avi") == "video"
    assert media.media_kind("a/b.jpeg") == "image"


def test_png_round_trip(tmp_path):
    import imageio.v2 as iio

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    media.save_png(tmp_path / "o" / "a.png", rgb)
    assert np.array_equal(iio.imread(tmp_path / "o" / "a.png"), rgb)
    deep = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    media.save_png(tmp_path / "d.png", deep)
    assert np.array_equal(iio.imread(tmp_path / "d.png"), deep)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_video_round_trip(tmp_path):
    frames = []
    for i in range(12):
        f = np.full((33, 47, 3), 40, np.uint8)  # odd size: padded to even
        f[:, : 3 + 3 * i] = 220
        frames.append(f)
    with media.video_writer(tmp_path / "v.mp4", fps=12) as write:
        for f in frames:
            write(f)
    with media.Video(tmp_path / "v.mp4") as video:
        assert video.fps == pytest.approx(12.0) and video.size == (48, 34) and video.n_frames in (12, None)
        got = list(video.frames())
        again = list(video.frames(max_frames=3))  # a second pass over the same reader starts at frame 0
    assert [i for i, _ in again] == [0, 1, 2]
    assert all(np.array_equal(a, g) for (_, a), (_, g) in zip(again, got, strict=False))
    got = list(media.iter_video(tmp_path / "v.mp4"))
    assert [i for i, _ in got] == list(range(12))
    for (_, g), f in zip(got, frames, strict=True):
        # bright bar width survives lossy coding
        assert abs(int((g[16, :47, 0] > 128).sum()) - int((f[16, :, 0] > 128).sum())) <= 1
    assert len(list(media.iter_video(tmp_path / "v.mp4", max_frames=5))) == 5


def test_broken_video_keeps_good_frames(tmp_path):
    with media.video_writer(tmp_path / "v.mp4", fps=10) as write:
        for i in range(20):
            write(np.full((32, 32, 3), 10 * i, np.uint8))
    data = bytearray((tmp_path / "v.mp4").read_bytes())
    mid = len(data) // 2
    data[mid : mid + 150] = bytes(b ^ 0xFF for b in data[mid : mid + 150])
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    got = list(media.iter_video(tmp_path / "bad.mp4"))
    assert 0 < len(got) <= 20
    (tmp_path / "junk.mp4").write_bytes(b"not a video" * 50)
    with pytest.raises(VitdecaError, match="junk.mp4"):
        list(media.iter_video(tmp_path / "junk.mp4"))


def test_draw_landmarks_uses_pixel_centres():
    img = np.zeros((30, 40, 3), np.uint8)
    out = media.draw_landmarks(img, np.array([[10.5, 20.5]]), color=(255, 0, 0), radius=1.0)
    assert out[20, 10, 0] == 255 and out[20, 10, 1] == 0
    assert out[20, 14, 0] == 0 and out[25, 10, 0] == 0
    assert img.max() == 0  # input untouched


def test_blend_and_depth():
    a = np.zeros((2, 2, 3), np.uint8)
    b = np.full((2, 2, 3), 200, np.uint8)
    alpha = np.array([[0.0, 1.0], [0.5, 1.0]])
    out = media.blend(a, b, alpha, opacity=0.5)
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 100 and out[1, 0, 0] == 50
    depth = np.array([[1.0, 2.0], [3.0, 9.0]])
    mask = np.array([[True, True], [True, False]])
    assert media.depth_to_uint8(depth, mask).tolist() == [[55, 155], [255, 0]]
    assert media.depth_to_uint8(depth, mask, near_is_large=False).tolist() == [[255, 155], [55, 0]]


def test_warp_to_image_inverts_a_crop():
    from vitdeca.faces.geometry import warp_image

    rng = np.random.default_rng(1)
    image = np.kron(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    # original -> crop: x' = 2 (x - 8), so the crop shows original pixels [8, 40)^2 at twice the size
    matrix = np.array([[2.0, 0.0, -16.0], [0.0, 2.0, -16.0]])
    crop = warp_image(image, matrix, (64, 64), nearest=True)
    assert np.array_equal(crop[::2, ::2], image[8:40, 8:40])
    back = media.warp_to_image(crop, matrix, (64, 64), nearest=True)
    assert np.array_equal(back[8:40, 8:40], image[8:40, 8:40])
    assert back[:8].max() == 0 and back[40:].max() == 0


def test_vis_grid():
    a = np.zeros((10, 10, 3), np.uint8)
    b = np.full((20, 40), 7, np.uint8)
    grid = media.vis_grid([a, b], gap=2)
    assert grid.shape == (10, 10 + 2 + 20, 3) and grid[0, 20, 1] == 7


def test_one_euro_hand_computed():
    f = media.OneEuroFilter(min_cutoff=1.0, beta=0.0, d_cutoff=1.0)
    assert f(np.array([0.0]), 0.0)[0] == 0.0
    a = 1.0 / (1.0 + 1.0 / (2 * math.pi * 1.0 * 0.1))
    assert f(np.array([1.0]), 0.1)[0] == pytest.approx(a)
    assert f(np.array([1.0]), 0.2)[0] == pytest.approx(a + a * (1 - a))


def test_one_euro_constant_and_speed():
    slow = media.OneEuroFilter(min_cutoff=0.5, beta=0.0)
    fast = media.OneEuroFilter(min_cutoff=0.5, beta=5.0)
    const = media.OneEuroFilter(min_cutoff=0.5)
    ramp = np.arange(30) * 0.5
    for i, x in enumerate(ramp):
        t = i / 30
        s, q = slow(np.array([x]), t), fast(np.array([x]), t)
        assert const(np.full(3, 2.5), t) == pytest.approx(np.full(3, 2.5))
    # a fast ramp: the speed-adaptive filter lags far less than the plain low-pass
    assert abs(ramp[-1] - q[0]) < 0.3 * abs(ramp[-1] - s[0])
    with pytest.raises(ValueError):
        fast(np.array([0.0]), 0.0)


def test_float_to_uint8_rounds_half_up_in_the_inputs_precision():
    values = np.array([-0.5, 0.0, 0.49 / 255, 0.51 / 255, 0.3, 1.0, 2.0])
    assert media.float_to_uint8(values).tolist() == [0, 0, 0, 1, 77, 255, 255]
    tensor = torch.tensor([[[0.2, 0.6]]])  # torch in, numpy out, shape kept
    assert media.float_to_uint8(tensor).tolist() == [[[51, 153]]]
    image = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert media.float_to_uint8(image) is image  # uint8 passes through
    # float32 arithmetic rounds up the rare value just below a half step; float64 does not
    below_half = np.array([np.nextafter(np.float32(0.5 / 255), np.float32(0))])
    assert media.float_to_uint8(below_half)[0] == 1
    assert media.float_to_uint8(below_half, np.float64)[0] == 0
