"""A full UV texture from one photo: the photo where it saw the face well, its mirror image where only the
other side was seen, and the model's albedo (shifted to the photo's mean colour) elsewhere, with feathered
seams between the three.

DECA's ``--extractTex`` keeps the photo only where a texel is visible; the hidden side of a turned head and
texels seen at a grazing angle (stretched across the silhouette) then show a hard edge against a flat albedo.
Faces are close to mirror-symmetric, so the seen side is the best guess for the hidden one.

The mirror map pairs each texel with the texel at the mirror image (x → −x) of its position on the head
model's template: a property of the layout and the template only (:func:`mirror_texels`), so it works for
any head model whose template is symmetric about x = 0 (ICT-FaceKit, FLAME), whatever its UV atlas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vitdeca.head.mirror import nearest_mirror_images
from vitdeca.render.shading import vertex_normals
from vitdeca.render.uv import UVSpace

# |n_z| of a surface seen head-on is 1, at the silhouette 0: photo texels count fully from FACING_FULL
# on and not at all below FACING_NONE (the photo smears along the view direction there).
FACING_NONE = 0.15
FACING_FULL = 0.5
FEATHER_TEXELS = 2
MIN_COLOUR_TEXELS = 16  # seam half-width: confidences are eroded, then blurred, by this radius


def mirror_texels(uv: UVSpace, template_vertices: torch.Tensor, tolerance: float = 0.02) -> torch.Tensor:
    """(S·S,) long: for every texel of ``uv``, the flat index of the texel nearest to the mirror image
    (x → −x) of its template position, or −1 (outside the layout, or no texel within ``tolerance`` × the
    template's largest extent). template_vertices: (V,3), symmetric about x = 0."""
    template = template_vertices.detach().float().cpu()
    positions = uv.world_to_uv(template[None].to(uv.mask.device))[0].reshape(3, -1).T.cpu().numpy()
    covered = (uv.mask.reshape(-1) > 0).cpu().numpy()
    index = covered.nonzero()[0]
    distance, nearest = nearest_mirror_images(positions[index])
    extent = float((template.amax(0) - template.amin(0)).max())
    result = torch.full((positions.shape[0],), -1, dtype=torch.long)
    good = distance <= tolerance * extent
    result[torch.from_numpy(index[good])] = torch.from_numpy(index[nearest[good]])
    return result


def facing(uv: UVSpace, vertices: torch.Tensor) -> torch.Tensor:
    """(B,1,S,S) in [0,1]: how squarely each texel faces the camera, from |n_z| of the posed vertices
    (B,V,3) (camera frame of the orthographic/weak-perspective camera: z along the view) through
    :data:`FACING_NONE` .. :data:`FACING_FULL`."""
    normals = vertex_normals(vertices, uv.faces)
    n_z = uv.world_to_uv(normals[..., 2:].abs())
    return ((n_z - FACING_NONE) / (FACING_FULL - FACING_NONE)).clamp(0.0, 1.0)


def feathered(confidence: torch.Tensor, radius: int = FEATHER_TEXELS) -> torch.Tensor:
    """(B,1,S,S) → the same, eroded by ``radius`` texels then box-blurred by the same radius: soft edges
    that never reach beyond the original support."""
    if radius <= 0:
        return confidence
    size = 2 * radius + 1
    eroded = -F.max_pool2d(-confidence, size, stride=1, padding=radius)
    blurred = F.avg_pool2d(eroded, size, stride=1, padding=radius, count_include_pad=False)
    return torch.minimum(blurred, confidence)


def colour_offset(texture: torch.Tensor, weight: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """(B,3,1,1): per channel, the median of (texture − fallback) over the texels seen with confidence
    ``weight`` > 0.5 (a median: hair, glasses or background at the face's edge do not tint the rest);
    0 for an image with fewer than :data:`MIN_COLOUR_TEXELS` such texels."""
    offsets = texture.new_zeros(texture.shape[0], texture.shape[1], 1, 1)
    for b in range(texture.shape[0]):
        seen = weight[b, 0] > 0.5
        if int(seen.sum()) >= MIN_COLOUR_TEXELS:
            offsets[b, :, 0, 0] = (texture[b][:, seen] - fallback[b][:, seen]).median(dim=1).values
    return offsets


def complete_texture(
    texture: torch.Tensor,
    confidence: torch.Tensor,
    fallback: torch.Tensor,
    mirror: torch.Tensor,
    layout_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The completed texture (B,3,S,S) in [0,1].

    texture (B,3,S,S): photo colours, valid where ``confidence`` (B,1,S,S, in [0,1]) > 0; fallback
    (B,3,S,S): e.g. the model's albedo, shifted here by the typical difference (texture − fallback)
    (:func:`colour_offset`) so it meets the photo without a colour jump; mirror (S·S,):
    :func:`mirror_texels`; layout_mask (1,1,S,S): texels outside it keep the shifted fallback.
    """
    batch, channels = texture.shape[:2]
    weight = confidence.clamp(0.0, 1.0)
    base = (fallback + colour_offset(texture, weight, fallback)).clamp(0.0, 1.0)
    has_mirror = (mirror >= 0).to(texture.dtype).reshape(1, 1, *texture.shape[-2:])
    source = mirror.clamp_min(0).to(texture.device)
    mirror_colour = texture.flatten(2)[:, :, source].reshape_as(texture)
    mirror_weight = feathered(weight.flatten(2)[:, :, source].reshape_as(weight) * has_mirror)
    own_weight = feathered(weight)
    filled = mirror_weight * mirror_colour + (1.0 - mirror_weight) * base
    out = own_weight * texture + (1.0 - own_weight) * filled
    if layout_mask is not None:
        out = torch.where(layout_mask.expand(batch, channels, -1, -1) > 0, out, base)
    return out.clamp(0.0, 1.0)
