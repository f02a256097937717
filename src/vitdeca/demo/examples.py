"""The demo's bundled examples, written on first use from images that ship inside installed packages
(nothing is downloaded and nothing is copied into the repository):

- ``astronaut.png``: Eileen Collins, NASA (scikit-image ``data.astronaut``), public domain.
- ``grace_hopper.jpg``: Rear Admiral Grace Hopper, U.S. Navy official photograph (matplotlib's sample
  data), public domain.
- ``chelsea_cat.png``: Chelsea the cat, CC0 by Stefan van der Walt (scikit-image ``data.chelsea``): a
  photo without a human face, to show the "no face" answer.
- ``astronaut_clip.mp4``: a 2-second clip made here from the astronaut photo (a slow zoom and turn), to
  show the video path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from vitdeca import media
from vitdeca.storage import atomic_path

EXAMPLES = ("astronaut.png", "grace_hopper.jpg", "chelsea_cat.png", "astronaut_clip.mp4")
CLIP_FPS = 8.0
CLIP_FRAMES = 16


def write_examples(folder: str | os.PathLike) -> list[Path]:
    """Write the examples into ``folder`` (kept when present); their paths in :data:`EXAMPLES` order."""
    from matplotlib import cbook
    from skimage import data

    folder = Path(folder)
    paths = [folder / name for name in EXAMPLES]
    astronaut, hopper, cat, clip = paths
    if not astronaut.exists():
        media.save_png(astronaut, data.astronaut())
    if not hopper.exists():
        with atomic_path(hopper) as tmp:
            shutil.copyfile(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), tmp)
    if not cat.exists():
        media.save_png(cat, data.chelsea())
    if not clip.exists():
        write_clip(clip, data.astronaut())
    return paths


def clip_frames(image: np.ndarray, n_frames: int = CLIP_FRAMES, size: int = 320) -> list[np.ndarray]:
    """``n_frames`` uint8 (size,size,3) windows of ``image`` (H,W,3) at its own resolution, centred on its
    upper third, zooming in by up to 15 % and turning by up to ±6° (a smooth camera move: the face moves
    but stays in view)."""
    import cv2

    h, w = image.shape[:2]
    centre = (w / 2.0, h / 3.0)
    frames = []
    for t in np.linspace(0.0, 1.0, n_frames):
        angle = 6.0 * np.sin(2.0 * np.pi * t)
        scale = 1.0 + 0.15 * t
        matrix = cv2.getRotationMatrix2D(centre, angle, scale)
        matrix[:, 2] += (size / 2.0 - centre[0], size / 2.0 - centre[1])
        frames.append(cv2.warpAffine(image, matrix, (size, size), borderMode=cv2.BORDER_REFLECT))
    return frames


def write_clip(path: str | os.PathLike, image: np.ndarray, fps: float = CLIP_FPS) -> Path:
    """Write :func:`clip_frames` of ``image`` as an H.264 MP4 at ``path``."""
    with media.video_writer(path, fps) as write:
        for frame in clip_frames(image):
            write(frame)
    return Path(path)
