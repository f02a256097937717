"""The loss registry: each training loss by name, the stage it belongs to, and how it reads a model's output.

Term names are the one vocabulary of :data:`vitdeca.losses.TERMS` (fitting uses the same names). A term's
weight is the ``LossConfig`` field of the same name (0 switches it off); the training objective is
``Σ_t w_t · L_t``. The term functions are thin adapters from :class:`LossInputs` to the pure functions of
:mod:`vitdeca.losses`, where each formula is documented.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vitdeca import losses as L
from vitdeca.codes import Codes
from vitdeca.errors import VitdecaError, first_line
from vitdeca.train.config import LossConfig

log = logging.getLogger(__name__)


@dataclass
class LossInputs:
    """What the loss terms see for one batch.

    images (N,3,H,W), landmarks (N,68,2) crop pixels, masks (N,1,H,W) or None: the targets, repeated when
    the batch was doubled for shape/detail consistency (N = 2B) — ``recon`` then covers all N rows.
    codes: the encoder's codes of the B original images (regularisers only look at these).
    recon: the model's ``Reconstruction`` (see ``vitdeca.model``). uv_mask: (1,1,S,S) UV mask of the
    symmetry term or None; uv_axis: the UV column the face is mirror-symmetric about
    (:func:`uv_mirror_axis`). identity: the frozen identity network (``embed(images, landmarks) -> (N,D)``)
    or None. mrf: an :class:`IDMRF` module or None.
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    masks: torch.Tensor | None
    codes: Codes
    recon: Any
    config: LossConfig
    uv_mask: torch.Tensor | None = None
    uv_axis: float = 0.5
    identity: Any = None
    mrf: nn.Module | None = None
    truth: dict[str, torch.Tensor] | None = None
    head: Any = None

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.images.shape[-2], self.images.shape[-1])

    def photo_mask(self) -> torch.Tensor:
        """The photometric mask: the data's skin mask when present and wanted, else the render coverage."""
        if self.config.use_skin_mask and self.masks is not None:
            return self.masks
        return self.recon.alpha

    def render(self, image: torch.Tensor) -> torch.Tensor:
        """A render restricted to its coverage (DECA: rendered × alpha)."""
        return image * self.recon.alpha


@dataclass(frozen=True)
class LossTerm:
    """A registered loss: ``fn(inputs) -> scalar``; ``needs`` names an optional resource (``identity``,
    ``mrf``) without which the term is skipped with a warning."""

    name: str
    stage: str
    fn: Callable[[LossInputs], torch.Tensor]
    needs: str | None = None


def _landmark(x: LossInputs) -> torch.Tensor:
    """DECA's landmark term; with ``landmark_visibility``, landmarks the decoded head hides itself (a depth
    test in the coarse render) weigh :data:`vitdeca.losses.OCCLUDED_LANDMARK_WEIGHT`."""
    from vitdeca.render.visibility import render_visibility

    base = L.deca_landmark_weights(x.landmarks.device) if x.config.weighted_landmarks else None
    visible = None
    if x.config.landmark_visibility:
        r = x.recon
        visible = render_visibility(r.landmarks3d, r.codes.camera, r.depth, r.alpha)
    weights = L.landmark_weights(visible, L.OCCLUDED_LANDMARK_WEIGHT, base)
    return L.landmark_loss(x.recon.landmarks2d, x.landmarks, x.image_size, weights)


def _identity(x: LossInputs) -> torch.Tensor:
    alpha = x.recon.alpha
    overlay = x.recon.image * alpha + x.images * (1.0 - alpha)
    with torch.no_grad():
        target = x.identity.embed(x.images, x.landmarks)
    return L.identity_loss(x.identity.embed(overlay, x.landmarks), target)


def _mrf(x: LossInputs) -> torch.Tensor:
    mask = x.photo_mask()
    return x.mrf(x.render(x.recon.detail_image) * mask, x.images * mask)


def _supervised_mesh(x: LossInputs, code: str) -> torch.Tensor:
    """Vertex distance (mm, face region) between the mesh of the predicted and of the true ``code``
    (``shape`` or ``expression``), the other codes zero: the neutral shape (after scale and translation
    alignment: the image cannot show them, :func:`losses.align_scale_translation`), or the expression
    offsets (in place: the neutral face fixes them)."""
    if x.truth is None or x.head is None:
        return x.codes.shape.new_zeros(())
    predicted, true = getattr(x.codes, code), x.truth[f"truth_{code}"].to(x.codes.shape.dtype)
    both = torch.cat([predicted, true])
    zeros = {name: getattr(x.codes, name).new_zeros(both.shape[0], getattr(x.codes, name).shape[1])
             for name in ("shape", "expression", "pose") if name != code}  # fmt: skip
    vertices = x.head(**{code: both}, **zeros).vertices
    mask = x.head.face_mask
    if bool(mask.any()):
        vertices = vertices[:, mask]
    pred, target = vertices.chunk(2)
    return L.vertex_distance_mm(pred, target, x.head.units_per_mm, truth_weights(x), align=code == "shape")


def _supervised_pose(x: LossInputs) -> torch.Tensor:
    if x.truth is None:
        return x.codes.pose.new_zeros(())
    return L.code_l1(x.codes.pose, x.truth["truth_pose"].to(x.codes.pose.dtype), truth_weights(x))


def truth_weights(x: LossInputs) -> torch.Tensor:
    """The supervised terms' per-sample weights (B,): 1 for exact truth (``vitdeca synth``),
    ``losses.pseudo_weight`` for pseudo-labels (``truth_pseudo`` 1: codes fitted by ``vitdeca annotate
    --fit``), 0 for samples without codes."""
    has = x.truth["has_truth"]
    pseudo = x.truth.get("truth_pseudo")
    if pseudo is None:
        return has
    return has * torch.where(pseudo > 0.5, float(x.config.pseudo_weight), 1.0).to(has.dtype)


REGISTRY: dict[str, LossTerm] = {
    term.name: term
    for term in [
        LossTerm("landmark", "coarse", _landmark),
        LossTerm(
            "eye", "coarse", lambda x: L.eye_closure_loss(x.recon.landmarks2d, x.landmarks, x.image_size)
        ),
        LossTerm(
            "lip", "coarse", lambda x: L.lip_closure_loss(x.recon.landmarks2d, x.landmarks, x.image_size)
        ),
        LossTerm(
            "photometric",
            "coarse",
            lambda x: L.photometric_loss(x.images, x.render(x.recon.image), x.photo_mask()),
        ),
        LossTerm("identity", "coarse", _identity, needs="identity"),
        LossTerm("sup_shape", "coarse", lambda x: _supervised_mesh(x, "shape")),
        LossTerm("sup_expression", "coarse", lambda x: _supervised_mesh(x, "expression")),
        LossTerm("sup_pose", "coarse", _supervised_pose),
        *[
            LossTerm(name, "coarse", lambda x, fn=L.CODE_REGULARISERS[name]: fn(x.codes))
            for name in ("reg_shape", "reg_expression", "reg_albedo", "reg_light")
        ],
        LossTerm(
            "detail_photometric",
            "detail",
            lambda x: L.detail_photometric_loss(x.images, x.render(x.recon.detail_image), x.photo_mask()),
        ),
        LossTerm("mrf", "detail", _mrf, needs="mrf"),
        LossTerm(
            "symmetry",
            "detail",
            lambda x: L.soft_symmetry_loss(x.recon.displacement_uv, x.uv_mask, x.uv_axis),
        ),
        LossTerm("reg_displacement", "detail", lambda x: L.displacement_regulariser(x.recon.displacement_uv)),
    ]
}


def weights_for(config: LossConfig, stage: str) -> dict[str, float]:
    """The non-zero weights of ``stage``'s terms, in registry order."""
    return {
        name: float(getattr(config, name))
        for name, term in REGISTRY.items()
        if term.stage == stage and getattr(config, name) != 0.0
    }


def all_term_names() -> list[str]:
    """Every registered term, in registry order (the columns of ``losses.csv`` after step and total)."""
    return list(REGISTRY)


def compute_losses(weights: dict[str, float], inputs: LossInputs) -> dict[str, torch.Tensor]:
    """The unweighted value of every term in ``weights`` (scalars, float32)."""
    out = {}
    for name in weights:
        term = REGISTRY[name]
        if term.needs is not None and getattr(inputs, term.needs) is None:
            continue
        out[name] = term.fn(inputs).float()
    return out


def weighted_total(values: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``Σ_t w_t · L_t`` over the computed terms."""
    if not values:
        raise VitdecaError("no loss term is active for this stage; check the losses section of the config")
    return sum(weights[name] * value for name, value in values.items())


def uv_mirror_axis(head: Any, default: float = 0.5) -> float:
    """The UV column u = a about which a head model's UV layout mirrors its face: the median of
    (u + u')/2 over face vertices whose mirror image (x → −x) is also a vertex, u' being the mirror's u.
    ICT-FaceKit: 0.25; DECA's FLAME layout: 0.5. ``default`` when too few vertices have a mirror."""
    vertices = head.template_vertices.detach().float().cpu()
    uv_of_vertex = torch.full((vertices.shape[0],), -1, dtype=torch.long)
    uv_of_vertex[head.faces.reshape(-1).cpu()] = head.uv_faces.reshape(-1).cpu()
    chosen = torch.nonzero(head.face_mask.cpu()).squeeze(1) if bool(head.face_mask.any()) else None
    points = vertices if chosen is None else vertices[chosen]
    index = torch.arange(vertices.shape[0]) if chosen is None else chosen
    tolerance = 1e-3 * float((vertices.amax(0) - vertices.amin(0)).max())
    dist, partner = torch.cdist(points * torch.tensor([-1.0, 1.0, 1.0]), points).min(dim=1)
    found = (dist < tolerance) & (uv_of_vertex[index] >= 0) & (uv_of_vertex[index[partner]] >= 0)
    if int(found.sum()) < 10:
        log.warning("cannot find the UV mirror axis of head model %r; using u = %g", head.name, default)
        return default
    u = head.uv_coords[:, 0].detach().float().cpu()
    pairs = (u[uv_of_vertex[index[found]]] + u[uv_of_vertex[index[partner[found]]]]) / 2
    return float(pairs.median())


class IDMRF(nn.Module):
    """ID-MRF on VGG19 features: ``mrf(relu3_2) + 2·mrf(relu4_2)`` (DECA's style layers relu3_2, relu4_2
    plus the content layer relu4_2); images (B,3,H,W) RGB [0,1], ImageNet-normalised inside."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def _layers(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images - self.mean) / self.std
        relu3_2 = self.features[:14](x)
        return relu3_2, self.features[14:23](relu3_2)

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        g3, g4 = self._layers(generated)
        with torch.no_grad():
            t3, t4 = self._layers(target)
        return L.mrf_loss(g3, t3) + 2.0 * L.mrf_loss(g4, t4)


def load_idmrf(weights_path: str = "") -> IDMRF:
    """ID-MRF with ImageNet VGG19 weights from ``weights_path`` or torchvision's cache (downloading when
    online). Raises :class:`VitdecaError` with what to do when the weights cannot be had."""
    from torchvision.models import VGG19_Weights, vgg19

    from vitdeca.weights import read_state_dict

    try:
        if weights_path:
            state = read_state_dict(weights_path, "VGG19 weights")  # before building VGG
            net = vgg19(weights=None)
            net.load_state_dict(state)
        else:
            net = vgg19(weights=VGG19_Weights.IMAGENET1K_V1, progress=False)
    except Exception as exc:  # any failure here (offline, bad file) means: no weights
        where = weights_path or "torchvision's download of vgg19-dcbb9e9d.pth"
        reason = f"{type(exc).__name__}: {first_line(exc)}"
        raise VitdecaError(
            f"ID-MRF needs ImageNet VGG19 weights and {where} failed ({reason}); "
            "put the file in $TORCH_HOME/hub/checkpoints, set losses.vgg19_weights=FILE, or losses.mrf=0"
        ) from exc
    return IDMRF(net.features[:23])
