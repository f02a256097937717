"""Contact sheet of `vitdeca synth` images with the photo-like effects: docs/images/synth_examples.png.

    python benchmarks/synth_examples.py [--out docs/images/synth_examples.png] [--backgrounds DIR]

16 images of 8 subjects at 128 px (seed 21), more of them occluded and blurred than the defaults
(occluder and blur fractions 0.5) and framed smaller (face fraction 0.45–0.55) so the neck's
fade shows; each tile is labelled with its occluder and blur. Without ``--backgrounds`` the dlib example
photos of ``$VITDECA_SHARED/faces/dlib_examples`` give the backgrounds when present.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image


def label(spec, occluded: bool) -> str:
    words = [spec.occluder.kind] if occluded else []
    if spec.blur is not None:
        words.append(f"{'defocus' if spec.blur.kind == 'gaussian' else 'motion'} {spec.blur.sigma:.1f}px")
    return ", ".join(words)


def contact_sheet(options, columns: int = 8) -> np.ndarray:
    """The options' images in a grid (uint8 RGB), each labelled."""
    from vitdeca.data.synth import image_specs, load_synth_head
    from vitdeca.data.synth_render import SynthRenderer

    head = load_synth_head(options)
    renderer = SynthRenderer(head, options)
    specs = image_specs(options, head, [])
    tiles = []
    for start in range(0, len(specs), options.batch_size):
        batch = specs[start : start + options.batch_size]
        rendered = renderer.render(batch)
        for k, spec in enumerate(batch):
            tile = np.ascontiguousarray(rendered.images[k])
            text = label(spec, bool(rendered.occluded[k]))
            for colour, width in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                cv2.putText(tile, text, (3, tile.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.33, colour, width,
                            cv2.LINE_AA)  # fmt: skip
            tiles.append(tile)
    rows = [np.concatenate(tiles[i : i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def main() -> None:
    from vitdeca.data.synth import SynthOptions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/synth_examples.png")
    parser.add_argument("--backgrounds", default=None)
    args = parser.parse_args()
    shared = Path(os.environ.get("VITDECA_SHARED", "../shared")) / "faces" / "dlib_examples"
    backgrounds = args.backgrounds or (str(shared) if shared.is_dir() else None)
    options = SynthOptions(n_images=16, images_per_subject=2, seed=21, size=128, uv_size=512, batch_size=8,
                           face_fraction=(0.45, 0.55), blur_fraction=0.5, occluder_fraction=0.5,
                           backgrounds=backgrounds).validated()  # fmt: skip
    sheet = contact_sheet(options)
    palette = Image.fromarray(sheet).quantize(256, dither=Image.Dither.NONE)  # 8-bit: a small file
    palette.save(args.out, optimize=True)
    print(f"{args.out}: {sheet.shape[1]}x{sheet.shape[0]}, {Path(args.out).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
