"""Per-image fitting (analysis by synthesis): optimise the :class:`~vitdeca.codes.Codes` of a few crops.

No network weights are needed. Stages run in the order of :attr:`FitConfig.stages`:

1. ``landmarks`` — shape, expression, pose and camera against the detected 2D landmarks
   (:func:`vitdeca.losses.landmark_loss` with DECA's weights, eye and lip closure), plus the code
   regularisers. Only the head model and the camera run: each step costs milliseconds.
2. ``photometric`` — the same plus :func:`vitdeca.losses.photometric_loss` between the crop and the render
   (inside the landmark face mask × the render's coverage), now also optimising light and albedo. The
   light starts from its least-squares solution for the current geometry.

Everything uses Adam. Before the first stage, pose and camera start from a closed-form weak-perspective
fit of the template's landmarks to the detected ones (:func:`initial_codes`). Expression codes stay
within the head model's ``expression_bounds`` (ICT's blend-shape weights: [0, 1]).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from vitdeca import losses as L
from vitdeca.codes import Codes
from vitdeca.errors import VitdecaError, first_line

log = logging.getLogger(__name__)

STAGES = ("landmarks", "photometric")
LOSSES = ("landmark", "eye", "lip", "photometric", "reg")
_STAGE_CODES = {
    "landmarks": ("shape", "expression", "pose", "camera"),
    "photometric": ("shape", "expression", "pose", "camera", "light", "albedo"),
}


@dataclass
class FitWeights:
    """Weight of each loss term (0 switches a term off); the names are the terms' one name
    (:data:`vitdeca.losses.TERMS`), as in training's ``LossConfig``."""

    landmark: float = 1.0
    eye: float = 1.0
    lip: float = 0.5
    photometric: float = 1.0
    reg_shape: float = 1e-4
    reg_expression: float = 5e-5
    reg_pose: float = 0.0
    reg_albedo: float = 1e-4
    reg_light: float = 0.1
    # ARKit-semantics priors on blend-shape expressions (vitdeca.arkit.expression_priors; ICT only)
    reg_sparsity: float = 1e-3
    reg_pair_symmetry: float = 2e-3
    reg_pair_exclusion: float = 5e-3


@dataclass
class FitConfig:
    """Settings of :func:`fit_codes` (YAML/``--set`` keys as the field names).

    ``stages``: from :data:`STAGES`, run in this order; ``*_iterations``: Adam steps per stage; ``lr``:
    the base learning rate, scaled per code by ``lr_scale``; ``refine_lr``: the factor for codes an
    earlier stage already fitted (a fresh Adam's first steps move every code by ~lr, whatever its
    gradient, which would throw a converged fit off); ``warm_iterations``: the fraction of the iterations
    used when a fit starts from a close guess (the previous video frame); ``refine_*``: the fit that
    follows a trained encoder (:meth:`refining`: landmark and photometric steps, and factors on
    ``lr_scale``; ``refine_max_yaw``: a face the encoder turns this many degrees or more keeps the
    encoder's codes: the detector's 68 points fail on profiles, see docs/pose.md; 90 = off;
    ``refine_fusion``: refine fits each landmark to a mix of the detector's point and the encoder's,
    weighted by how sure each is, :func:`fuse_landmarks`; False: to the detector's points);
    ``losses``: the enabled terms from :data:`LOSSES` (``reg`` = every code regulariser);
    ``expression_range``: bounds for blend-shape expression weights ("auto": the head model's
    ``expression_bounds``, [0, 1] for ICT, none for PCA expressions); ``weighted_landmarks``: DECA's
    per-landmark weights (nose and mouth count more) instead of uniform ones (the uniform NME is lower);
    ``occluded_weight``: the landmark weight of points the current fit hides behind the head itself (1:
    no visibility weighting), re-tested every ``visibility_every`` landmark steps and at every
    photometric step (:mod:`vitdeca.render.visibility`); ``robust`` > 0: from the second third of the
    landmark stage on, each landmark is also weighted by ``1 / (1 + (r / c)²)`` of its residual r, with
    c = ``robust`` × the image's median residual (re-estimated with the visibility), so that points the
    head cannot reach (a detector's failure on a profile) stop pulling (0: off); ``torch_compile``: run
    the landmark stage's head and loss terms through ``torch.compile`` (:func:`landmark_terms`; needs a
    C++ compiler; each new batch size compiles once per process, from inductor's disk cache after the
    first time; the codes then agree with the eager fit's to rounding, not bit for bit, and a face's bits
    depend on its batch's size; measured in ``benchmarks/results/fit_batch.md``).
    """

    stages: list[str] = field(default_factory=lambda: list(STAGES))
    landmark_iterations: int = 150
    photometric_iterations: int = 6  # 20 until session 8: same NME and shape, 1.7x the time (docs)
    lr: float = 0.01
    lr_scale: dict[str, float] = field(
        default_factory=lambda: {
            "shape": 5.0,
            "expression": 3.0,
            "pose": 2.0,
            "camera": 1.0,
            "light": 5.0,
            "albedo": 5.0,
        }
    )
    refine_lr: float = 0.1
    warm_iterations: float = 0.3
    refine_landmark_iterations: int = 100
    refine_photometric_iterations: int = 0
    refine_lr_boost: dict[str, float] = field(default_factory=lambda: {"shape": 2.0, "expression": 2.0})
    refine_max_yaw: float = 45.0
    refine_fusion: bool = True
    losses: list[str] = field(default_factory=lambda: list(LOSSES))
    weights: FitWeights = field(default_factory=FitWeights)
    weighted_landmarks: bool = False
    expression_range: str = "auto"
    occluded_weight: float = L.OCCLUDED_LANDMARK_WEIGHT
    visibility_every: int = 25
    robust: float = 0.0
    torch_compile: bool = False

    def iterations(self, stage: str) -> int:
        return {"landmarks": self.landmark_iterations, "photometric": self.photometric_iterations}[stage]

    def warm(self) -> FitConfig:
        """The config for a warm start: every stage's iterations scaled by ``warm_iterations``."""
        scale = self.warm_iterations
        return dataclasses.replace(
            self,
            landmark_iterations=max(1, round(self.landmark_iterations * scale)),
            photometric_iterations=round(self.photometric_iterations * scale),
        )

    def refining(self) -> FitConfig:
        """The config of ``refine``, a fit from a trained encoder's codes: ``refine_landmark_iterations``
        and ``refine_photometric_iterations`` steps, ``lr_scale`` times ``refine_lr_boost``.

        Defaults measured in ``benchmarks/results/refine.md``: the encoder's
        shape and expression are further from the photo's than its pose and camera, so those two move
        faster; the photometric stage leaves the landmark error unchanged (albedo and light stay the
        encoder's) and would cost most of the time."""
        scale = {k: v * self.refine_lr_boost.get(k, 1.0) for k, v in self.lr_scale.items()}
        return dataclasses.replace(
            self,
            landmark_iterations=self.refine_landmark_iterations,
            photometric_iterations=self.refine_photometric_iterations,
            lr_scale=scale,
        )

    def landmarks_only(self) -> FitConfig:
        """This config with the landmark stage alone: the fit of faces whose crops are not at hand
        (:func:`fit_codes` with ``images=None``)."""
        return dataclasses.replace(self, stages=["landmarks"])

    def with_iterations(self, text: str) -> FitConfig:
        """Set the iterations of the stages in order from ``"100,30"`` (one number per stage), for a fit
        from the template and for ``refine`` alike."""
        try:
            counts = [int(v) for v in str(text).split(",") if v.strip()]
        except ValueError:
            raise VitdecaError(f"--iterations {text!r}: expected numbers like 100,30") from None
        if not counts or len(counts) > len(self.stages) or min(counts) < 0:
            raise VitdecaError(f"--iterations {text!r}: one count >= 0 per stage ({', '.join(self.stages)})")
        names = {"landmarks": "landmark_iterations", "photometric": "photometric_iterations"}
        changes = {names[stage]: n for stage, n in zip(self.stages, counts, strict=False)}
        changes |= {f"refine_{name}": n for name, n in changes.items()}  # and refine's, when it runs
        return dataclasses.replace(self, **changes)

    def validated(self) -> FitConfig:
        """Self, after checking stage and loss names and numbers (:class:`VitdecaError` otherwise)."""
        for label, values, known in (("stages", self.stages, STAGES), ("losses", self.losses, LOSSES)):
            unknown = [v for v in values if v not in known]
            if unknown:
                raise VitdecaError(f"fit {label}: unknown {unknown[0]!r} (choose from {', '.join(known)})")
        counts = (self.landmark_iterations, self.photometric_iterations, self.refine_landmark_iterations,
                  self.refine_photometric_iterations)  # fmt: skip
        if min(counts) < 0 or self.lr <= 0 or min(self.refine_lr_boost.values(), default=1.0) <= 0:
            raise VitdecaError("fit: iterations must be >= 0, lr and refine_lr_boost > 0")
        if not 0.0 <= self.occluded_weight <= 1.0 or self.visibility_every < 1 or self.robust < 0:
            raise VitdecaError("fit: occluded_weight in [0, 1], visibility_every >= 1 and robust >= 0")
        if self.expression_range not in ("auto", "none"):
            raise VitdecaError(f"fit expression_range: 'auto' or 'none', got {self.expression_range!r}")
        return self

    def weight(self, name: str) -> float:
        """The weight of a term, 0 when its group is not in ``losses``."""
        group = "reg" if name.startswith("reg_") else name
        return getattr(self.weights, name) if group in self.losses else 0.0


@dataclass
class FitResult:
    """Fitted codes, the per-image landmark NME after fitting (B,), the final loss terms and seconds."""

    codes: Codes
    nme: np.ndarray
    losses: dict[str, float]
    seconds: float


def landmark_nme(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean point-to-point error over 68 landmarks divided by the target's outer-eye-corner distance
    (iBUG 36 ↔ 45). pred, target (B,68,2) → (B,)."""
    scale = (target[:, 36] - target[:, 45]).norm(dim=-1).clamp_min(1e-6)
    return (pred - target).norm(dim=-1).mean(dim=1) / scale


def initial_codes(model, landmarks: torch.Tensor, image_size: int) -> Codes:
    """Neutral codes with pose and camera from a closed-form weak-perspective fit of the template's
    landmarks to ``landmarks`` (B,68,2) crop pixels (a scaled orthographic Procrustes on points 17-67)."""
    from scipy.spatial.transform import Rotation

    from vitdeca.render import pixels_to_ndc

    codes = model.neutral_codes(landmarks.shape[0])
    with torch.no_grad():
        zeros = [
            torch.zeros(1, n, device=landmarks.device) for n in (model.head.n_shape, model.head.n_expression)
        ]
        pose0 = torch.zeros(1, model.head.n_pose, device=landmarks.device)
        template = model.head(zeros[0], zeros[1], pose0).landmarks3d[0, 17:].double().cpu().numpy()
    target = pixels_to_ndc(landmarks[:, 17:].double(), image_size, image_size).cpu().numpy()
    cameras, poses = [], []
    for points in target:
        X = template - template.mean(0)
        x = points - points.mean(0)
        M = np.linalg.lstsq(X, x, rcond=None)[0].T  # (2,3): x ≈ M X
        u, sv, vt = np.linalg.svd(M, full_matrices=False)
        rows = u @ vt  # nearest matrix with orthonormal rows
        rot = np.vstack([rows, np.cross(rows[0], rows[1])])
        if np.linalg.det(rot) < 0:
            rot[2] *= -1
        s = float(sv.mean())
        rotated = template @ rot.T
        t = (points.mean(0) - s * rotated[:, :2].mean(0)) / s
        cameras.append([s, *t])
        poses.append(Rotation.from_matrix(rot).as_rotvec())
    camera = torch.tensor(cameras, dtype=codes.camera.dtype, device=codes.camera.device)
    pose = codes.pose.clone()
    pose[:, :3] = torch.tensor(np.array(poses), dtype=pose.dtype, device=pose.device)
    return codes.replace(camera=camera, pose=pose)


class _Variables:
    """The optimised tensors: codes as leaves, camera as (log-scale change, NDC shift) around its start."""

    def __init__(self, codes: Codes, shared: tuple[str, ...] = ()) -> None:
        self.start = codes.detach()
        self.shared = tuple(shared)
        self.leaves = {
            name: (_median(value) if name in self.shared else value.detach().clone()).requires_grad_(True)
            for name, value in codes.as_dict().items()
            if value is not None and name != "camera"
        }
        batch = codes.batch_size
        self.leaves["camera"] = torch.zeros(batch, 3, device=codes.camera.device, requires_grad=True)
        self.fitted: set[str] = set()

    def codes(self) -> Codes:
        s0, t0 = self.start.camera[:, :1], self.start.camera[:, 1:]
        delta = self.leaves["camera"]
        camera = torch.cat([s0 * torch.exp(delta[:, :1]), t0 + delta[:, 1:] / s0], dim=1)
        values = {name: self.leaves.get(name) for name in self.start.as_dict() if name != "camera"}
        values = {k: (v if v is not None else self.start.as_dict()[k]) for k, v in values.items()}
        for name in self.shared:  # one (1,...) leaf seen by every image
            values[name] = values[name].expand(s0.shape[0], *values[name].shape[1:])
        return Codes(camera=camera, **values)

    def optimizer(self, names: tuple[str, ...], config: FitConfig) -> torch.optim.Optimizer:
        """Adam over the codes ``names``; codes fitted by an earlier stage get ``config.refine_lr``."""
        groups = []
        for n in names:
            if n in self.leaves:
                factor = config.refine_lr if n in self.fitted else 1.0
                groups.append(
                    {"params": [self.leaves[n]], "lr": config.lr * config.lr_scale.get(n, 1.0) * factor}
                )
        self.fitted.update(names)
        return torch.optim.Adam(groups)


def _median(value: torch.Tensor) -> torch.Tensor:
    """(B,...) → (1,...): the per-coordinate median over the batch (mean of the two middle values)."""
    return torch.quantile(value.detach().float(), 0.5, dim=0, keepdim=True).to(value.dtype)


class _Priors:
    """The expression priors of a blend-shape head as tensors (:func:`vitdeca.arkit.expression_priors`)."""

    def __init__(self, head, device) -> None:
        from vitdeca.arkit import expression_priors

        priors = expression_priors(head)
        self.active = priors is not None
        if priors is not None:
            self.l1 = torch.as_tensor(priors.l1, device=device)
            self.symmetric = torch.as_tensor(priors.symmetric, device=device)
            self.exclusive = torch.as_tensor(priors.exclusive, device=device)

    def terms(self, expression: torch.Tensor) -> dict:
        """Name → a function giving each image's prior (B,) on ``expression`` (B,N)."""
        if not self.active:
            return {}
        each = {"per_image": True}
        return {
            "reg_sparsity": lambda: L.sparsity_regulariser(expression, self.l1, **each),
            "reg_pair_symmetry": lambda: L.pair_symmetry_regulariser(expression, self.symmetric, **each),
            "reg_pair_exclusion": lambda: L.pair_exclusion_regulariser(expression, self.exclusive, **each),
        }


def _geometry_losses(config: FitConfig, codes: Codes, pred: torch.Tensor, target: torch.Tensor, size: int,
                     priors: _Priors | None = None, visible: torch.Tensor | None = None,
                     robust: torch.Tensor | None = None):  # fmt: skip
    """Landmark, eye, lip, code-regulariser and expression-prior terms (name → each image's weighted
    loss (B,));
    ``visible`` (B,68) bool down-weights self-occluded landmarks (``config.occluded_weight``); ``robust``
    (B,68) multiplies the landmark weights (:func:`robust_weights`)."""
    base = L.deca_landmark_weights(target.device) if config.weighted_landmarks else None
    weights = L.landmark_weights(visible, config.occluded_weight, base)
    if robust is not None:
        weights = robust if weights is None else weights * robust
    terms = {
        "landmark": lambda: L.landmark_loss(pred, target, size, weights, per_image=True),
        "eye": lambda: L.eye_closure_loss(pred, target, size, per_image=True),
        "lip": lambda: L.lip_closure_loss(pred, target, size, per_image=True),
        **{
            name: partial(L.CODE_REGULARISERS[name], codes, per_image=True)
            for name in ("reg_shape", "reg_expression", "reg_pose")
        },
        **(priors.terms(codes.expression) if priors is not None else {}),
    }
    return {name: config.weight(name) * fn() for name, fn in terms.items() if config.weight(name) > 0}


def _appearance_losses(config: FitConfig, codes: Codes, recon, images, masks):
    """Photometric term (inside ``masks`` × the render's coverage) and the albedo/light regularisers
    (name → each image's weighted loss (B,))."""
    terms = {
        "photometric": lambda: L.photometric_loss(images, recon.image, masks * recon.alpha.detach(), True),
        **{
            name: partial(L.CODE_REGULARISERS[name], codes, per_image=True)
            for name in ("reg_albedo", "reg_light")
        },
    }
    return {name: config.weight(name) * fn() for name, fn in terms.items() if config.weight(name) > 0}


def _clamp_expression(variables: _Variables, bounds: tuple[float, float] | None) -> None:
    if bounds is not None:
        with torch.no_grad():
            variables.leaves["expression"].clamp_(*bounds)


def _expression_bounds(model, config: FitConfig) -> tuple[float, float] | None:
    return model.head.expression_bounds if config.expression_range == "auto" else None


def solve_light(images: torch.Tensor, albedo: torch.Tensor, normals: torch.Tensor, mask: torch.Tensor):
    """Least-squares SH light (B,9,3) so that ``albedo · SH(normals) ≈ images`` inside ``mask``.

    images, albedo, normals (B,3,H,W); mask (B,1,H,W). A tiny ridge (1e-4 of the mean diagonal) keeps
    the solve stable when the visible normals span few directions.
    """
    from vitdeca.render import sh_basis

    basis = sh_basis(normals, dim=1)  # (B,9,H,W)
    out = []
    for b in range(images.shape[0]):
        m = mask[b, 0].reshape(-1) > 0.5
        Y = basis[b].reshape(9, -1)[:, m].T  # (N,9)
        channels = []
        for c in range(3):
            A = Y * albedo[b, c].reshape(-1)[m, None]
            rhs = images[b, c].reshape(-1)[m]
            gram = A.T @ A
            gram = gram + 1e-4 * gram.diagonal().mean().clamp_min(1e-12) * torch.eye(
                9, dtype=A.dtype, device=A.device
            )
            channels.append(torch.linalg.solve(gram, A.T @ rhs))
        out.append(torch.stack(channels, dim=1))
    return torch.stack(out)


ENCODER_SPREAD_FLOOR = 0.002  # of the face's size: the least uncertainty granted the encoder's points


def fuse_landmarks(
    detected: torch.Tensor, detected_spread: torch.Tensor, encoded: torch.Tensor, encoded_spread: torch.Tensor
) -> torch.Tensor:
    """(B,68,2) refine's targets: per landmark, the inverse-variance mean of the detector's point and the
    encoder's, each with its own spread as its standard deviation.

    detected, encoded (B,68,2) crop pixels; detected_spread (B,68) pixels
    (:meth:`vitdeca.faces.FaceBackend.landmark_spread`: the predictor's points under a moved box);
    encoded_spread (B,68) pixels (half the distance between the encoder's point and its reading of the
    mirrored crop), at least :data:`ENCODER_SPREAD_FLOOR` of the face's size (the square root of the
    detected points' box area). A point the detector is sure of stays the detector's; one it guesses (on
    a render, a turned face's far side) moves to the encoder's (docs/pose.md)."""
    size = (detected.amax(dim=1) - detected.amin(dim=1)).prod(dim=-1).sqrt()  # (B,)
    encoder_variance = encoded_spread**2 + (ENCODER_SPREAD_FLOOR * size[:, None]) ** 2
    weight = encoder_variance / (encoder_variance + detected_spread**2)  # (B,68): the detector's share
    return weight[..., None] * detected + (1.0 - weight[..., None]) * encoded


def landmarks2d(model, codes: Codes, image_size: int) -> torch.Tensor:
    """(B,68,2) crop-pixel landmarks of ``codes`` from the head model and camera only (no rendering;
    :meth:`HeadModel.landmarks3d`, which ICT computes from the few vertices the landmarks read)."""
    from vitdeca.render import project_points

    points = model.head.landmarks3d(codes.shape, codes.expression, codes.pose)
    return project_points(points, codes.camera, image_size, image_size)


def face_masks(images: torch.Tensor, landmarks: torch.Tensor, method: str = "skin") -> torch.Tensor:
    """(B,1,H,W) photometric masks of crops (B,3,H,W) from their landmarks (B,68,2) (``vitdeca.faces``)."""
    from vitdeca.faces import face_mask
    from vitdeca.media import float_to_uint8

    rgb = float_to_uint8(images.permute(0, 2, 3, 1))
    masks = [
        face_mask(img, lmk, method=method)
        for img, lmk in zip(rgb, landmarks.detach().cpu().numpy(), strict=True)
    ]
    return torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)).to(images.device)


def _step(optimizer: torch.optim.Optimizer, terms: dict[str, torch.Tensor]) -> None:
    """One Adam step on the sum of every image's loss terms (name → (B,)), with gradients for the
    optimised codes only (not the model's weights): each image's codes get the gradient of its own loss,
    exactly as when fitted alone."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    total = sum(value.sum() for value in terms.values())
    grads = torch.autograd.grad(total, params, allow_unused=True)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer.step()


def landmark_visibility(model, codes: Codes) -> torch.Tensor:
    """(B,68) bool: the landmarks of ``codes`` that the head does not hide from the camera itself
    (:func:`vitdeca.render.visibility.mesh_visibility` of the posed mesh). The mesh is posed row by row
    (:meth:`HeadModel.forward_rows`): a batched mesh rounds differently, and a point on the silhouette
    could change sides with the batch."""
    from vitdeca.render.visibility import mesh_visibility

    with torch.no_grad():
        out = model.head.forward_rows(codes.shape, codes.expression, codes.pose)
    return mesh_visibility(out.vertices, model.head.faces, out.landmarks3d)


def robust_weights(pred: torch.Tensor, target: torch.Tensor, scale: float) -> torch.Tensor:
    """Cauchy weights (B,68) ``1 / (1 + (r / c)²)`` of the residuals r = |pred − target| (pixels) of
    (B,68,2) landmarks, with c = ``scale`` × each image's median residual (at least 0.5 px)."""
    residual = (pred.detach() - target).norm(dim=-1)
    c = (scale * residual.median(dim=1, keepdim=True).values).clamp_min(0.5)
    return 1.0 / (1.0 + (residual / c) ** 2)


def _report(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    """The loss terms (name → (B,)) as their means over the images."""
    return {name: float(value.detach().mean()) for name, value in terms.items()}


def landmark_terms(
    model,
    config: FitConfig,
    codes: Codes,
    target: torch.Tensor,
    size: int,
    priors: _Priors | None,
    visible: torch.Tensor | None,
    robust: torch.Tensor | None,
):
    """One landmark step's forward: (the predicted landmarks (B,68,2) crop pixels, :func:`_geometry_losses`
    (name → (B,))) of ``codes`` against ``target`` (B,68,2)."""
    pred = landmarks2d(model, codes, size)
    return pred, _geometry_losses(config, codes, pred, target, size, priors, visible, robust)


_compiled_landmark_terms = None  # torch.compile(landmark_terms), made on first use
COMPILED_GRAPHS = 64
"""How many graphs of the compiled landmark terms a process keeps (one per model and padded batch size;
torch._dynamo's default of 8 would send a fit of a ninth to eager)."""
COMPILED_MAX_BATCH = 64
"""Larger batches fit eagerly: the compiled graph unrolls the head's loop over the rows, and its compile
time grows with them."""
_compile_failed = False


def _landmark_terms_fn(config: FitConfig):
    """:func:`landmark_terms`, compiled when ``config.torch_compile`` and compiling works here."""
    global _compiled_landmark_terms
    if not config.torch_compile or _compile_failed:
        return landmark_terms
    if _compiled_landmark_terms is None:
        _compiled_landmark_terms = torch.compile(landmark_terms, dynamic=False)
    return _try_compiled


def _try_compiled(model, config, codes, target, size, priors, visible, robust):
    """The compiled :func:`landmark_terms`; where torch.compile cannot run (no C++ compiler, an operation
    inductor does not support) one warning, and the eager function from then on.

    Inductor compiles one graph per batch size (the head's rows are a loop), so the batch is padded to the
    next power of two with copies of its last face (their terms dropped: no gradient reaches the real
    faces from them), and absent weights are passed as ones: a run of varied batches compiles a few
    graphs, not one per size (torch._dynamo falls back to eager past its recompile limit). Batches of more
    than :data:`COMPILED_MAX_BATCH` faces, and joint fits, run eagerly."""
    global _compile_failed
    batch = target.shape[0]
    if not _compile_failed and batch <= COMPILED_MAX_BATCH:
        rows = torch.arange(1 << (batch - 1).bit_length(), device=target.device).clamp_max(batch - 1)
        ones = torch.ones(batch, target.shape[1], device=target.device)
        seen = visible if visible is not None else ones.bool()
        factors = robust if robust is not None else ones
        args = (codes.index(rows), target[rows], size, priors, seen[rows], factors[rows])
        try:
            with torch._dynamo.config.patch(recompile_limit=COMPILED_GRAPHS):
                pred, terms = _compiled_landmark_terms(model, config, *args)
        except Exception as exc:  # noqa: BLE001 - compilation problems; the eager call below re-raises bugs
            _compile_failed = True
            log.warning("fit: torch_compile failed, fitting without it (%s)", first_line(exc))
        else:
            return pred[:batch], {name: value[:batch] for name, value in terms.items()}
    return landmark_terms(model, config, codes, target, size, priors, visible, robust)


def _run_landmarks(model, variables: _Variables, target, config, iterations, bounds) -> dict[str, float]:
    optimizer = variables.optimizer(_STAGE_CODES["landmarks"], config)
    size = model.renderer.image_size[0]
    priors = _Priors(model.head, target.device)
    forward = _landmark_terms_fn(config) if not variables.shared else landmark_terms
    terms: dict[str, torch.Tensor] = {}
    visible = robust = None
    for step in range(iterations):
        codes = variables.codes()
        if step % config.visibility_every == 0:
            if config.occluded_weight < 1.0:
                visible = landmark_visibility(model, codes)
            if config.robust > 0 and step >= iterations // 3:
                robust = robust_weights(landmarks2d(model, codes, size), target, config.robust)
        _, terms = forward(model, config, codes, target, size, priors, visible, robust)
        _step(optimizer, terms)
        _clamp_expression(variables, bounds)
    return _report(terms)


def _run_photometric(model, variables: _Variables, images, target, masks, config, iterations, bounds):
    """The photometric stage on the whole batch. Images with codes of their own are decoded row by row
    (``DecaModel.decode(by_row=True)``), so that each gets the bits it gets alone; a joint fit's images
    share codes, and are decoded as one batch."""
    from vitdeca.render.visibility import render_visibility

    size, by_row = images.shape[-1], not variables.shared
    with torch.no_grad():
        recon = model.decode(variables.codes(), detail=False, by_row=by_row)
        mask = masks * recon.alpha
        light = solve_light(images, recon.render.albedo_image, recon.normal_image, mask)
        variables.leaves["light"].copy_(light)
        robust = robust_weights(recon.landmarks2d, target, config.robust) if config.robust > 0 else None
    optimizer = variables.optimizer(_STAGE_CODES["photometric"], config)
    priors = _Priors(model.head, target.device)
    terms: dict[str, torch.Tensor] = {}
    for _ in range(iterations):
        codes = variables.codes()
        recon = model.decode(codes, detail=False, by_row=by_row)
        visible = None
        if config.occluded_weight < 1.0:
            visible = render_visibility(recon.landmarks3d, codes.camera, recon.depth, recon.alpha)
        terms = _geometry_losses(config, codes, recon.landmarks2d, target, size, priors, visible, robust)
        terms.update(_appearance_losses(config, codes, recon, images, masks))
        _step(optimizer, terms)
        _clamp_expression(variables, bounds)
    return _report(terms)


def fit_codes(
    model,
    images: torch.Tensor,
    landmarks: torch.Tensor,
    config: FitConfig | None = None,
    init: Codes | None = None,
    masks: torch.Tensor | None = None,
    shared: tuple[str, ...] = (),
) -> FitResult:
    """Fit the codes of crops ``images`` (B,3,S,S) in [0,1] to their landmarks (B,68,2) crop pixels.

    ``model``: a :class:`vitdeca.model.DecaModel` (its weights stay fixed); ``init``: starting codes
    (default :func:`initial_codes`); ``masks`` (B,1,S,S): the photometric region (default
    :func:`face_masks`). Loss terms in the result are means over the images.

    Each image's codes depend only on it and the settings, never on the other images of the batch: the
    batch is fitted together, but through operations whose result for a face does not depend on the batch
    (:func:`_fit_batch`), so a face gets the same bits alone as in any batch, while the batch shares the
    per-step overhead (2.2x fewer seconds per face in batches of 8 photos than one at a time,
    ``benchmarks/results/fit_batch.md``). (Batched matrix products round differently from a single row's
    by ~1e-8; the L1 landmark loss and Adam's normalised steps would amplify that to ~0.1 in the shape
    codes within 60 steps.) On one machine and torch build, the same image, settings and thread count give
    bit-identical codes. Thread policy is the caller's: it runs on ``torch.get_num_threads()`` threads
    (``--threads`` in the CLI).

    ``shared`` (e.g. ``("shape", "albedo")``: one person in every image) makes it a joint fit of the whole
    batch instead: those codes get one value, starting at the per-coordinate median of ``init``'s, fitted
    to all the images at once; the other codes stay per image. ``images`` may be None when ``config``
    runs only the landmark stage (crops of ``model``'s size).
    """
    config = (config or FitConfig()).validated()
    start = time.perf_counter()
    if images is None and config.iterations("photometric") > 0 and "photometric" in config.stages:
        raise ValueError("fit_codes: the photometric stage needs the images")
    unknown = set(shared) - {"shape", "albedo"}
    if unknown:
        raise ValueError(f"fit_codes: cannot share {sorted(unknown)} between images")
    dtype = images.dtype if images is not None else torch.float32
    codes, nme, terms = _fit_batch(model, images, landmarks.to(dtype), config, init, masks, tuple(shared))
    return FitResult(codes, nme, terms, time.perf_counter() - start)


def _fit_batch(model, images, landmarks, config: FitConfig, init: Codes | None, masks, shared=()):
    """:func:`fit_codes` after its checks: (codes, NME (B,), final loss terms).

    Both stages fit the whole batch at once, with every operation a face's result goes through
    independent of the batch (each image's own loss; :meth:`HeadModel.landmarks3d`, the visibility mesh
    and, in the photometric stage, the head and the albedo row by row,
    ``DecaModel.decode(by_row=True)``; the renderer's kernels work image by image), so it gives each face
    the bits it would get alone for a fraction of the per-step overhead. ``images`` None: the landmark
    stage only."""
    size = images.shape[-1] if images is not None else int(model.renderer.image_size[0])
    codes = init if init is not None else initial_codes(model, landmarks, size)
    if codes.detail is not None:
        codes = codes.replace(detail=codes.detail.detach())
    variables = _Variables(codes, tuple(shared))
    bounds = _expression_bounds(model, config)
    _clamp_expression(variables, bounds)
    terms: dict[str, float] = {}
    for stage in config.stages:
        iterations = config.iterations(stage)
        if iterations == 0:
            continue
        if stage == "landmarks":
            terms = _run_landmarks(model, variables, landmarks, config, iterations, bounds)
            continue
        if masks is None:
            masks = face_masks(images, landmarks)
        terms = _run_photometric(model, variables, images, landmarks, masks, config, iterations, bounds)
    fitted = variables.codes().detach()
    fitted = fitted.replace(**{name: getattr(fitted, name).clone() for name in shared})  # own memory
    with torch.no_grad():
        nme = landmark_nme(landmarks2d(model, fitted, size), landmarks).cpu().numpy()
    return fitted, nme, terms
