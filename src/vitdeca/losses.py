"""The training losses of DECA, one pure function per term: tensors in, a scalar tensor out.

Conventions (shared by every function here):

- ``B`` is the batch size; every loss is a mean over the batch, so a loss computed on a batch equals the
  mean of the losses of equal halves of it (what DistributedDataParallel's gradient averaging assumes).
  DECA sums some terms over the batch; where its weights meant a sum, the docstring says so.
- The terms fitting uses take ``per_image=True`` to return each image's own loss (B,) instead of the
  batch mean: per-image fitting sums them, so that every image's codes get the gradient of its own loss
  alone, whatever else is in the batch (:func:`vitdeca.fit.fit_codes`).
- 2D landmarks are (B,68,2) crop pixels (x right, y down) in the iBUG-68 order; the landmark terms first
  map them to [-1, 1] with :func:`normalise_pixels`, as DECA does, so their weights do not depend on the
  crop size.
- Images are (B,3,H,W) float RGB in [0, 1]; masks are (B,1,H,W) in [0, 1] (broadcast over channels).

Each term has one name (:data:`TERMS`), the same in training and fitting. Weights and switches live in
the training config (``vitdeca.train.config.LossConfig``) and the fitting config
(``vitdeca.fit.FitWeights``); the registry that applies them to a model's output is
``vitdeca.train.objective``, fitting's terms are in ``vitdeca.fit``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# iBUG-68 (0-based) upper/lower eyelid pairs: left eye (37,41), (38,40); right eye (43,47), (44,46).
EYE_PAIRS: tuple[tuple[int, int], ...] = ((37, 41), (38, 40), (43, 47), (44, 46))
# iBUG-68 (0-based) upper/lower inner-lip pairs: (61,67), (62,66), (63,65).
LIP_PAIRS: tuple[tuple[int, int], ...] = ((61, 67), (62, 66), (63, 65))


def normalise_pixels(points: torch.Tensor, image_size: int | tuple[int, int]) -> torch.Tensor:
    """Crop pixels → [-1, 1]: ``x_n = 2 x / W − 1``, ``y_n = 2 y / H − 1``.

    points (...,2) in pixels (x, y); image_size W (square) or (H, W). Returns (...,2).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    scale = points.new_tensor([2.0 / width, 2.0 / height])
    return points * scale - 1.0


def batch_mean(per_image: torch.Tensor, keep: bool = False) -> torch.Tensor:
    """The batch mean of per-image losses (B,), or the losses themselves when ``keep`` (``per_image``)."""
    return per_image if keep else per_image.mean()


def deca_landmark_weights(device: torch.device | str | None = None) -> torch.Tensor:
    """DECA's per-landmark weights (68,) for :func:`landmark_loss` (its ``weighted_landmark_loss``).

    1 everywhere, except: jaw points 5–6 and 10–11 → 2; nose 27–35 → 1.5, with nose tip 30 and the
    nostril corners 31, 35 → 3; mouth 48–67 → 1.5, with the mouth corners 48, 54 → 3 (0-based indices).
    """
    w = torch.ones(68, device=device)
    w[5:7] = 2.0
    w[10:12] = 2.0
    w[27:36] = 1.5
    w[[30, 31, 35]] = 3.0
    w[48:68] = 1.5
    w[[48, 54]] = 3.0
    return w


OCCLUDED_LANDMARK_WEIGHT = 0.1
"""Default weight of a self-occluded landmark in the landmark terms (a visible one weighs 1): a
detector's guess at a hidden point (the far eye of a profile) should barely pull the fit."""


def landmark_weights(
    visible: torch.Tensor | None,
    occluded: float = OCCLUDED_LANDMARK_WEIGHT,
    base: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Per-image landmark weights (B,68) for :func:`landmark_loss`: ``base`` (68,) (e.g.
    :func:`deca_landmark_weights`; None = ones) times 1 where ``visible`` (B,68) bool, else ``occluded``.
    ``visible`` None: just ``base``."""
    if visible is None:
        return base
    factor = torch.where(visible, 1.0, float(occluded)).to(torch.get_default_dtype())
    return factor if base is None else factor * base.to(factor.device, factor.dtype)


def landmark_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    image_size: int | tuple[int, int],
    weights: torch.Tensor | None = None,
    per_image: bool = False,
) -> torch.Tensor:
    """L_lmk: weighted L1 between predicted and target 2D landmarks in normalised coordinates.

    With p̂, t̂ the landmarks mapped to [-1, 1] (:func:`normalise_pixels`) and w the weights:
    ``L = Σ_b Σ_k w_bk (|p̂_bkx − t̂_bkx| + |p̂_bky − t̂_bky|) / (2 Σ_b Σ_k w_bk)``,
    i.e. the mean absolute coordinate error when ``weights`` is None (all ones). This is DECA's
    ``batch_kp_2d_l1_loss``; pass :func:`deca_landmark_weights` for its weighted variant, or per-image
    weights (B,68) (e.g. detection confidences, 0 for missing points).

    pred, target (B,68,2) crop pixels; weights None, (68,) or (B,68). Returns a scalar, or with
    ``per_image`` (B,): each image's loss with its own weights (Σ_k over its points only).
    """
    diff = (normalise_pixels(pred, image_size) - normalise_pixels(target, image_size)).abs().sum(-1)
    if weights is None:
        return diff.mean(dim=1) / 2.0 if per_image else diff.mean() / 2.0
    w = weights.to(diff.dtype).expand_as(diff)
    if per_image:
        return (diff * w).sum(dim=1) / (2.0 * w.sum(dim=1)).clamp_min(1e-8)
    return (diff * w).sum() / (2.0 * w.sum()).clamp_min(1e-8)


def _pair_distances(points: torch.Tensor, pairs: tuple[tuple[int, int], ...]) -> torch.Tensor:
    """Euclidean distances (B,P) between the landmark pairs of (B,68,2) points."""
    upper = points[:, [a for a, _ in pairs]]
    lower = points[:, [b for _, b in pairs]]
    return (upper - lower).norm(dim=-1)


def eye_closure_loss(
    pred: torch.Tensor, target: torch.Tensor, image_size: int | tuple[int, int], per_image: bool = False
) -> torch.Tensor:
    """L_eye: L1 between predicted and target eyelid openings (DECA's ``eyed_loss``).

    With d(x) the distances between the upper/lower eyelid pairs :data:`EYE_PAIRS` of the landmarks in
    [-1, 1] coordinates: ``L = mean_{b, pairs} |d(p̂) − d(t̂)|``. It constrains the relative position of
    the eyelids (so blinks are captured) independently of where the eye sits.

    pred, target (B,68,2) crop pixels. Returns a scalar.
    """
    d_pred = _pair_distances(normalise_pixels(pred, image_size), EYE_PAIRS)
    d_target = _pair_distances(normalise_pixels(target, image_size), EYE_PAIRS)
    return batch_mean((d_pred - d_target).abs().mean(dim=1), per_image)


def lip_closure_loss(
    pred: torch.Tensor, target: torch.Tensor, image_size: int | tuple[int, int], per_image: bool = False
) -> torch.Tensor:
    """L_lip: L1 between predicted and target inner-lip openings (DECA's ``lipd_loss``).

    As :func:`eye_closure_loss` with the inner-lip pairs :data:`LIP_PAIRS`:
    ``L = mean_{b, pairs} |d(p̂) − d(t̂)|``. pred, target (B,68,2) crop pixels. Returns a scalar.
    """
    d_pred = _pair_distances(normalise_pixels(pred, image_size), LIP_PAIRS)
    d_target = _pair_distances(normalise_pixels(target, image_size), LIP_PAIRS)
    return batch_mean((d_pred - d_target).abs().mean(dim=1), per_image)


def photometric_loss(
    image: torch.Tensor, render: torch.Tensor, mask: torch.Tensor, per_image: bool = False
) -> torch.Tensor:
    """L_pho: masked L1 between the photo and the render, ``L = mean_{b,c,y,x} M ⊙ |I − R|``.

    The mean runs over every pixel (not only the masked ones), as in DECA, so its weight 2 keeps DECA's
    meaning. image, render (B,3,H,W); mask (B,1,H,W) or (B,3,H,W) in [0, 1]. Returns a scalar.
    """
    return batch_mean((mask * (render - image).abs()).flatten(1).mean(dim=1), per_image)


def detail_photometric_loss(
    image: torch.Tensor, detail_render: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """L_phoD: :func:`photometric_loss` of the render shaded with the detail normals (DECA's detail stage).

    ``L = mean_{b,c,y,x} M ⊙ |I − R_detail|``; DECA compares in UV space after texture extraction, here
    the comparison is in image space (same pixels, no resampling). Shapes as :func:`photometric_loss`.
    """
    return photometric_loss(image, detail_render, mask)


def identity_loss(emb_a: torch.Tensor, emb_b: torch.Tensor) -> torch.Tensor:
    """L_id: one minus the cosine similarity of identity embeddings, ``L = mean_b (1 − cos(a_b, b_b))``.

    emb_a, emb_b (B,D) (need not be unit length). Returns a scalar in [0, 2].
    """
    return (1.0 - F.cosine_similarity(emb_a, emb_b, dim=1, eps=1e-8)).mean()


def shape_swap_index(
    n_identities: int, images_per_identity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """For a batch laid out as P identities × K images (identity p owns rows p·K … p·K+K−1), the row j
    whose shape code image i borrows for L_sc: another image of the same identity (j ≠ i when K > 1).

    Each identity's rows are rotated by a random offset r ∈ [1, K−1], so the map is a permutation with
    no fixed point. Returns (P·K,) long. With K = 1 it is the identity map (L_sc then adds nothing new).
    """
    p, k = n_identities, images_per_identity
    rows = torch.arange(p * k).reshape(p, k)
    if k == 1:
        return rows.reshape(-1)
    offsets = torch.randint(1, k, (p, 1), generator=generator)
    cols = (torch.arange(k).reshape(1, k) + offsets) % k
    return torch.gather(rows, 1, cols).reshape(-1)


def swap_code(code: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The codes (B,N) with row i replaced by row ``index[i]`` (B,) — the L_sc input for one code."""
    return code[index.to(code.device)]


def code_regulariser(code: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """L_reg for one code: ``L = mean_b Σ_n c_bn² / 2`` (DECA sums over the batch too: our weight × B
    equals its weight). code (B,N). Returns a scalar."""
    return batch_mean(code.pow(2).sum(dim=1) / 2.0, per_image)


def sparsity_regulariser(
    code: torch.Tensor, weights: torch.Tensor | None = None, per_image: bool = False
) -> torch.Tensor:
    """Weighted L1 that keeps blend-shape weights sparse: ``L = mean_b Σ_n w_n |c_bn|``.

    code (B,N); weights (N,) or None (all ones). Returns a scalar."""
    absolute = code.abs()
    return batch_mean((absolute if weights is None else absolute * weights).sum(dim=1), per_image)


def pair_symmetry_regulariser(
    code: torch.Tensor, pairs: torch.Tensor, per_image: bool = False
) -> torch.Tensor:
    """Left/right coherence of blend-shape weights: ``L = mean_b Σ_{(l,r)} (c_bl − c_br)²``.

    code (B,N); pairs (P,2) long indices (left, right). Returns a scalar (0 without pairs)."""
    if pairs.numel() == 0:
        return batch_mean(code.sum(dim=1) * 0.0, per_image)
    return batch_mean((code[:, pairs[:, 0]] - code[:, pairs[:, 1]]).pow(2).sum(dim=1), per_image)


def pair_exclusion_regulariser(
    code: torch.Tensor, pairs: torch.Tensor, per_image: bool = False
) -> torch.Tensor:
    """Contradicting blend shapes (jawLeft with jawRight, eyeBlink with eyeWide, ...) not both active:
    ``L = mean_b Σ_{(a,b)} relu(c_ba) · relu(c_bb)``. code (B,N); pairs (Q,2) long. Returns a scalar."""
    if pairs.numel() == 0:
        return batch_mean(code.sum(dim=1) * 0.0, per_image)
    positive = code.clamp_min(0.0)
    return batch_mean((positive[:, pairs[:, 0]] * positive[:, pairs[:, 1]]).sum(dim=1), per_image)


def light_regulariser(light: torch.Tensor, per_image: bool = False) -> torch.Tensor:
    """DECA's light regulariser: spherical-harmonic lighting close to white,
    ``L = mean_{b,k,c} (l_bkc − mean_c' l_bkc')²``. light (B,9,3) (SH band × RGB). Returns a scalar."""
    return batch_mean((light - light.mean(dim=2, keepdim=True)).pow(2).flatten(1).mean(dim=1), per_image)


def soft_symmetry_loss(
    displacement_uv: torch.Tensor, mask: torch.Tensor | None = None, axis: float = 0.5
) -> torch.Tensor:
    """DECA's soft symmetry on the UV displacement map: ``L = mean_b Σ_{u,v} M ⊙ |D − sg(mirror(D))|``.

    mirror(D) reflects the map about the UV column ``u = axis``: texel column j ↔ 2·axis·S − 1 − j
    (DECA's FLAME layout is symmetric about u = 0.5, a plain left–right flip; ICT-FaceKit's face is
    symmetric about u = 0.25); columns without a mirror inside the map are left out. sg stops the
    gradient through the mirrored copy, as DECA does. M is a face-region UV mask (DECA: the face region
    outside the visible part, so occluded details copy the visible side). The sum over UV texels keeps
    DECA's scale (weight 5e-3 at a 256² UV map); DECA also sums over the batch.

    displacement_uv (B,1,S,S); mask None (all ones), (1,1,S,S) or (B,1,S,S). Returns a scalar.
    """
    size = displacement_uv.shape[-1]
    edge = round(2.0 * axis * size)  # the mirror of column j is edge − 1 − j
    lo, hi = max(0, edge - size), min(size, edge)
    if hi <= lo:
        raise ValueError(f"symmetry axis u={axis} leaves no mirrored columns in a {size}-texel map")
    block = displacement_uv[..., lo:hi]
    diff = (block - torch.flip(block, dims=[-1]).detach()).abs()
    if mask is not None:
        diff = diff * mask[..., lo:hi]
    return diff.flatten(1).sum(dim=1).mean()


def displacement_regulariser(displacement_uv: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """L_regD: L1 on the UV displacements, ``L = mean_{b,u,v} M ⊙ |D|`` (DECA's ``z_reg``).

    displacement_uv (B,1,S,S); mask None (all ones), (1,1,S,S) or (B,1,S,S). Returns a scalar.
    """
    values = displacement_uv.abs()
    if mask is not None:
        values = values * mask
    return values.mean()


def shading_smoothness_loss(shading: torch.Tensor) -> torch.Tensor:
    """DECA's ``shading_smooth_loss`` (z_diff): squared finite differences of a shading map,
    ``L = mean (S[y, x+1] − S[y, x])² + mean (S[y+1, x] − S[y, x])²`` over interior pixels.
    shading (B,C,H,W). Returns a scalar."""
    dx = shading[:, :, 1:-1, 1:] - shading[:, :, 1:-1, :-1]
    dy = shading[:, :, 1:, 1:-1] - shading[:, :, :-1, 1:-1]
    return dx.pow(2).mean() + dy.pow(2).mean()


def mrf_loss(
    gen_features: torch.Tensor, target_features: torch.Tensor, bias: float = 1.0, sigma: float = 0.5
) -> torch.Tensor:
    """The implicit-diversified Markov-random-field term of ID-MRF on one feature layer (DECA's detail stage).

    Features are centred on the target's mean feature (per channel over its pixels, as the original ID-MRF;
    DECA's port centres each pixel on its channel mean) and L2-normalised per pixel. For generated pixel i
    and target pixel j the cosine distance is d_ij = (1 − cos_ij)/2; it is made relative to the nearest
    target of i, d̃_ij = d_ij / (min_j' d_ij' + 1e-5), turned into a similarity
    w_ij = exp((bias − d̃_ij)/sigma) and normalised over the targets j (w̄). Then
    ``L = mean_b −log(mean_j max_i w̄_ij)``: near 0 when every target feature has a generated pixel that
    matches it and no other target (DECA sums over the batch).

    gen_features, target_features (B,C,h,w). Returns a scalar.
    """
    mean_t = target_features.mean(dim=(2, 3), keepdim=True)
    gen = F.normalize((gen_features - mean_t).flatten(2), dim=1)  # (B,C,Ng)
    tar = F.normalize((target_features - mean_t).flatten(2), dim=1)  # (B,C,Nt)
    dist = (1.0 - torch.bmm(tar.transpose(1, 2), gen)) / 2.0  # (B,Nt,Ng): [b, j, i]
    relative = dist / (dist.min(dim=1, keepdim=True).values + 1e-5)
    similarity = torch.exp((bias - relative) / sigma)
    similarity = similarity / similarity.sum(dim=1, keepdim=True)
    best = similarity.max(dim=2).values  # (B,Nt): best generated match of each target pixel
    return -torch.log(best.mean(dim=1)).mean()


def align_scale_translation(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``pred`` (B,V,3) moved and scaled onto ``target`` (B,V,3), per sample, in closed form:
    ``s · (p − p̄) + t̄`` with ``s = ⟨p − p̄, t − t̄⟩ / ‖p − p̄‖²`` (least squares; no rotation). Under DECA's
    weak-perspective camera a face's absolute size and position are not observable in the image (the
    camera's scale and translation absorb them), so the learnable part of a shape error is this aligned
    one, and the NoW protocol also removes scale before measuring."""
    p = pred - pred.mean(dim=1, keepdim=True)
    t_mean = target.mean(dim=1, keepdim=True)
    scale = (p * (target - t_mean)).sum(dim=(1, 2)) / (p * p).sum(dim=(1, 2)).clamp_min(1e-12)
    return scale[:, None, None] * p + t_mean


def vertex_distance_mm(
    pred: torch.Tensor,
    target: torch.Tensor,
    units_per_mm: float,
    sample_weights: torch.Tensor | None = None,
    align: bool = False,
) -> torch.Tensor:
    """Supervised geometry: the mean Euclidean vertex distance in millimetres.

    ``L = Σ_b w_b · mean_v ‖p_bv − t_bv‖ / (units_per_mm · #{b : w_b > 0})``, the per-vertex quantity that
    the NoW protocol reports, averaged over the samples with a positive weight (:func:`sample_mean`); with
    ``align`` ``p`` is first scaled and moved onto ``t`` (:func:`align_scale_translation`). pred, target
    (B,V,3) model units; sample_weights (B,) (e.g. 1 for samples with ground truth, less for
    pseudo-labels, 0 for photos) or None (all ones). Returns a scalar in mm (0 when every weight is 0).
    """
    if align:
        pred = align_scale_translation(pred, target)
    return sample_mean((pred - target).norm(dim=-1).mean(dim=-1) / units_per_mm, sample_weights)


def code_l1(
    pred: torch.Tensor, target: torch.Tensor, sample_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Supervised codes: ``L = Σ_b w_b · mean_k |p_bk − t_bk| / #{b : w_b > 0}`` for pred, target (B,K) (e.g.
    pose axis-angle in radians); sample_weights (B,) or None (:func:`sample_mean`). Returns a scalar (0 when
    every weight is 0)."""
    return sample_mean((pred - target).abs().mean(dim=-1), sample_weights)


def sample_mean(per_sample: torch.Tensor, sample_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The supervised terms' batch mean of per-sample errors e (B,): ``Σ_b w_b e_b / #{b : w_b > 0}``.

    A weight scales a sample's error and any positive weight counts the sample once, so weights {0, 1}
    give the plain mean over the samples with ground truth (0 for photos), and a sample weighted 0.3 (a
    pseudo-label) pulls 0.3 times as hard as an exact one, whatever else is in the batch. None: the mean.
    Returns a scalar (0 when every weight is 0)."""
    if sample_weights is None:
        return per_sample.mean()
    w = sample_weights.to(per_sample.dtype)
    return (per_sample * w).sum() / (w > 0).sum().clamp_min(1)


# ------------------------------------------------------------------------------ the one vocabulary
# Every loss term's one name: its weight key in training (``LossConfig``) and fitting (``FitWeights``),
# its column in ``losses.csv`` and its key in a fit's result, mapped to the function above that computes it.
TERMS: dict[str, Callable[..., torch.Tensor]] = {
    "landmark": landmark_loss,
    "eye": eye_closure_loss,
    "lip": lip_closure_loss,
    "photometric": photometric_loss,
    "identity": identity_loss,
    "sup_shape": vertex_distance_mm,
    "sup_expression": vertex_distance_mm,
    "sup_pose": code_l1,
    "reg_shape": code_regulariser,
    "reg_expression": code_regulariser,
    "reg_pose": code_regulariser,
    "reg_albedo": code_regulariser,
    "reg_light": light_regulariser,
    "reg_sparsity": sparsity_regulariser,  # ARKit-semantics expression priors (fitting)
    "reg_pair_symmetry": pair_symmetry_regulariser,
    "reg_pair_exclusion": pair_exclusion_regulariser,
    "detail_photometric": detail_photometric_loss,
    "mrf": mrf_loss,
    "symmetry": soft_symmetry_loss,
    "reg_displacement": displacement_regulariser,
}

# The code regularisers as terms of a :class:`vitdeca.codes.Codes` (the same for training and fitting).
CODE_REGULARISERS: dict[str, Callable[..., torch.Tensor]] = {
    "reg_shape": lambda codes, per_image=False: code_regulariser(codes.shape, per_image),
    "reg_expression": lambda codes, per_image=False: code_regulariser(codes.expression, per_image),
    "reg_pose": lambda codes, per_image=False: code_regulariser(codes.pose, per_image),
    "reg_albedo": lambda codes, per_image=False: code_regulariser(codes.albedo, per_image),
    "reg_light": lambda codes, per_image=False: light_regulariser(codes.light, per_image),
}
