"""Expression transfer: the face of photo A with the expression (and jaw) of photo B."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vitdeca import media
from vitdeca.errors import VitdecaError


def transfer_codes(identity, expression):
    """A's codes (shape, camera, light, albedo, detail, head rotation) with B's expression; for head
    models whose pose has a jaw joint after the global rotation (FLAME: pose[3:6]) B's jaw too."""
    pose = identity.pose.clone()
    pose[:, 3:] = expression.pose[:, 3:].to(pose)
    return identity.replace(expression=expression.expression.to(pose), pose=pose)


def transfer(
    rec, identity: str | os.PathLike, expression: str | os.PathLike, out_dir: Path, save: frozenset[str]
) -> list[Path]:
    """Reconstruct A and B (largest face each), decode A's codes with B's expression in A's crop and
    write ``out_dir/<A>_as_<B>/``: the files of ``save`` (the texture is A's) and a vis strip
    A | B | transferred shape | transferred render. Returns the written files."""
    from vitdeca.pipeline.batch import write_face_outputs
    from vitdeca.pipeline.outdir import safe_name

    prepared = [rec.prepare(identity), rec.prepare(expression)]
    for path, item in zip((identity, expression), prepared, strict=True):
        if not item.crops:
            raise VitdecaError(f"{path}: {item.message or 'no face found'}")
    face_a, face_b = (faces[0] for faces in rec.reconstruct_crops(prepared))
    codes = transfer_codes(face_a.codes, face_b.codes).to(rec.device)
    result = rec.decode(codes, [prepared[0].crops[0]], settle_eyes=False)[0]  # B's eyes, as settled in B
    result.texture = face_a.texture
    stem = safe_name(f"{Path(identity).stem}_as_{Path(expression).stem}")
    folder = out_dir / stem
    written = write_face_outputs(result, folder, stem, save - {"vis"})
    if "vis" in save:
        written.append(media.save_png(folder / f"{stem}_vis.png", transfer_vis(face_a, face_b, result)))
    return written


def transfer_vis(face_a, face_b, result) -> np.ndarray:
    """uint8 strip: A's crop | B's crop | the transferred shape over A | the transferred render over A."""
    crop = face_a.crop
    return media.vis_grid(
        [
            crop,
            face_b.crop,
            media.blend(crop, result.shape_render, result.alpha, opacity=0.8),
            media.blend(crop, result.render, result.alpha),
        ]
    )
