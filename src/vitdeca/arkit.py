"""Apple ARKit blendshapes from a head model's expression code: the mapping, priors and angles.

ARKit describes a face by 52 blendshape coefficients in [0, 1] (``ARFaceAnchor.BlendShapeLocation``);
:data:`ARKIT_NAMES` lists them in the order of Apple's documentation (left eye, right eye, mouth and jaw,
brows/cheeks/nose, tongue). A head model exposes ARKit semantics through
:attr:`vitdeca.head.HeadModel.blendshape_names` (ARKit-style names of its expression entries, or None for
a PCA expression space such as FLAME's, which has no ARKit weights).

ICT-FaceKit → ARKit (:class:`ArkitMapping`), 51 of the 52 shapes:

- ``browDown_L`` … ``noseSneer_R``: direct, ``_L``/``_R`` → ``Left``/``Right``. ICT's left (+x of its
  model space) is the subject's own left, like ARKit's ``Left``.
- ``browInnerUp`` and ``cheekPuff``: ICT splits them into ``_L``/``_R``; ARKit's weight is their mean
  (and an ARKit weight drives both halves equally on the way back).
- ``cheekRaiser_L/R`` (not an ARKit shape): **folded in**. Its displacement is projected by least
  squares onto the same side's ``cheekSquint`` and ``eyeSquint`` (computed from the loaded model: about
  0.92 and 0.34 for ICT-FaceKit), and those amounts are added to the two ARKit weights (clipped to 1).
  The fitting priors (:func:`expression_priors`) also make cheekRaiser cost more than ARKit shapes.
- ``tongueOut``: not in ICT-FaceKit; reported as unavailable (weight 0 in files, listed under
  ``unavailable``).

Angles (degrees) follow the model frame (right-handed, y up, the face looking along +z): head yaw is
the rotation about +y (positive turns the face towards the subject's left), pitch about +x (positive
looks down), roll about +z, composed as ``R = R_y(yaw) · R_x(pitch) · R_z(roll)``. Eyes use the same
yaw/pitch signs. ``eyeLook*`` weights ↔ eye angles use the fixed convention :data:`EYE_LOOK_DEGREES`
(ARKit does not define one): weight 1 = the eye turned that many degrees that way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vitdeca.errors import VitdecaError

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker",
    "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower",
    "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip
MERGED = ("browInnerUp", "cheekPuff")  # ICT has them per side; ARKit's weight is the mean
FOLDED = {"cheekRaiser": ("cheekSquint", "eyeSquint")}  # not ARKit: projected onto these (same side)
# Degrees of eye rotation at eyeLook* weight 1 (a convention; ARKit defines none): in/out, up, down.
EYE_LOOK_DEGREES = {"horizontal": 30.0, "up": 25.0, "down": 30.0}
# ARKit shapes that cannot both be active: the fitting prior penalises the product of their weights.
EXCLUSIVE: tuple[tuple[str, str], ...] = (
    ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"), ("mouthPucker", "mouthStretchLeft"),
    ("mouthPucker", "mouthStretchRight"), ("mouthFunnel", "mouthStretchLeft"),
    ("mouthFunnel", "mouthStretchRight"),
    *((f"{a}{s}", f"{b}{s}") for s in ("Left", "Right") for a, b in (
        ("eyeBlink", "eyeWide"), ("eyeLookIn", "eyeLookOut"), ("eyeLookUp", "eyeLookDown"),
        ("mouthSmile", "mouthFrown"), ("browDown", "browOuterUp"),
    )),
    *((f"browDown{s}", "browInnerUp") for s in ("Left", "Right")),
)  # fmt: skip


def arkit_name(name: str) -> str:
    """An ICT-style name → its ARKit spelling: ``browDown_L`` → ``browDownLeft``; merged halves lose
    their side (``browInnerUp_R`` → ``browInnerUp``); other names are returned unchanged."""
    for suffix, side in (("_L", "Left"), ("_R", "Right")):
        if name.endswith(suffix):
            base = name[: -len(suffix)]
            return base if base in MERGED else base + side
    return name


def mirror_name(name: str) -> str | None:
    """The other side's ARKit name (``eyeBlinkLeft`` ↔ ``eyeBlinkRight``, ``jawLeft`` ↔ ``jawRight``)."""
    for a, b in (("Left", "Right"), ("Right", "Left")):
        if name.endswith(a):
            return name[: -len(a)] + b
    return None


@dataclass(frozen=True)
class ArkitMapping:
    """Linear map from a head model's expression code (n,) to the 52 ARKit weights.

    ``matrix`` (52,n): ``arkit = clip(matrix @ expression, 0, 1)``; ``available`` (52,) bool (False:
    the model has no such shape, e.g. tongueOut); ``inverse`` (n,52): ARKit weights → expression code
    (merged shapes drive both halves, folded shapes get 0); ``targets`` (52,V,3) float32: the vertex
    displacement (model units) of each ARKit shape at weight 1 (``inverse`` applied to the expression
    basis; zero where unavailable), None for a head without a linear expression basis.
    """

    expression_names: tuple[str, ...]
    matrix: np.ndarray
    inverse: np.ndarray
    available: np.ndarray
    targets: np.ndarray | None = None

    names = ARKIT_NAMES

    @property
    def unavailable(self) -> list[str]:
        return [n for n, ok in zip(ARKIT_NAMES, self.available, strict=True) if not ok]

    def weights(self, expression) -> np.ndarray:
        """(…,n) expression code (numpy or torch) → (…,52) float32 ARKit weights in [0, 1]."""
        if hasattr(expression, "detach"):
            expression = expression.detach().cpu().numpy()
        out = np.asarray(expression, np.float64) @ self.matrix.T
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def expression(self, weights) -> np.ndarray:
        """(…,52) ARKit weights → (…,n) float32 expression code of the head model."""
        return (np.asarray(weights, np.float64) @ self.inverse.T).astype(np.float32)


def arkit_mapping(head) -> ArkitMapping:
    """The :class:`ArkitMapping` of ``head``; :class:`VitdecaError` when its expressions have no ARKit
    semantics (``head.blendshape_names`` is None, e.g. FLAME)."""
    names = head.blendshape_names
    if not names:
        raise VitdecaError(
            f"head model {head.name!r} has no ARKit blendshapes (its expressions are a "
            "PCA space): ARKit weights and avatars need the ICT-FaceKit head model"
        )
    index = {n: i for i, n in enumerate(ARKIT_NAMES)}
    n = len(names)
    matrix, inverse = np.zeros((52, n)), np.zeros((n, 52))
    folds = _fold_coefficients(head, names)
    for j, name in enumerate(names):
        target = arkit_name(name)
        if target in index:
            share = 0.5 if target in MERGED else 1.0
            matrix[index[target], j] = share
            inverse[j, index[target]] = 1.0
        for other, amount in folds.get(name, {}).items():
            matrix[index[other], j] += amount
    available = np.abs(matrix).sum(axis=1) > 0
    basis = _expression_basis(head)
    targets = None if basis is None else (inverse.T @ basis).reshape(52, -1, 3).astype(np.float32)
    return ArkitMapping(tuple(names), matrix, inverse, available, targets)


def _fold_coefficients(head, names) -> dict[str, dict[str, float]]:
    """For each non-ARKit shape of :data:`FOLDED`: least-squares amounts of its same-side targets
    (ARKit names) that best reproduce its displacement (from the head model's expression basis)."""
    out: dict[str, dict[str, float]] = {}
    basis = _expression_basis(head)
    for j, name in enumerate(names):
        base, _, side = name.rpartition("_")
        if base not in FOLDED or basis is None:
            continue
        cols = [names.index(f"{t}_{side}") for t in FOLDED[base] if f"{t}_{side}" in names]
        coef, *_ = np.linalg.lstsq(basis[cols].T, basis[j], rcond=None)
        out[name] = {arkit_name(names[c]): float(max(a, 0.0)) for c, a in zip(cols, coef, strict=True)}
    return out


def _expression_basis(head) -> np.ndarray | None:
    """(n_expression, V*3) float64 displacements of a linear blend-shape head (ICT: its
    :meth:`~vitdeca.head.HeadModel.linear_basis`), else None."""
    linear = head.linear_basis()
    if linear is None:
        return None
    return linear.expression_basis.detach().cpu().double().numpy()


# ------------------------------------------------------------------------------------- fitting priors
@dataclass(frozen=True)
class ExpressionPriors:
    """What the fitting priors need, as expression-code indices: ``l1`` (n,) per-entry L1 weight
    (1 for ARKit shapes, 4 for folded non-ARKit ones), ``symmetric`` (P,2) left/right pairs,
    ``exclusive`` (Q,2) shapes that contradict each other (:data:`EXCLUSIVE`)."""

    l1: np.ndarray
    symmetric: np.ndarray
    exclusive: np.ndarray


def expression_priors(head) -> ExpressionPriors | None:
    """The :class:`ExpressionPriors` of ``head``, None without ARKit semantics."""
    names = head.blendshape_names
    if not names:
        return None
    by_arkit = indices_by_arkit_name(names)
    l1 = np.array([1.0 if arkit_name(n) in ARKIT_NAMES else 4.0 for n in names], np.float32)
    symmetric = sorted(
        {tuple(sorted((j, names.index(n[:-2] + "_R")))) for j, n in enumerate(names)
         if n.endswith("_L") and n[:-2] + "_R" in names}
    )  # fmt: skip
    exclusive = exclusive_pairs(by_arkit)
    as_pairs = lambda p: np.asarray(p, np.int64).reshape(-1, 2)  # noqa: E731
    return ExpressionPriors(l1, as_pairs(symmetric), as_pairs(exclusive))


# ------------------------------------------------------------------------------------------- angles
def head_angles(pose) -> dict[str, float]:
    """Axis-angle ``pose[:3]`` (model frame) → ``{"yaw", "pitch", "roll"}`` degrees (module docstring)."""
    from scipy.spatial.transform import Rotation

    rotvec = np.asarray(pose.detach().cpu().numpy() if hasattr(pose, "detach") else pose, np.float64)
    yaw, pitch, roll = Rotation.from_rotvec(rotvec.reshape(-1)[:3]).as_euler("YXZ", degrees=True)
    return {"yaw": float(yaw), "pitch": float(pitch), "roll": float(roll)}


def head_yaws(pose) -> np.ndarray:
    """(B,) |yaw| in degrees of the head rotations ``pose[:, :3]`` (pose (B,P), axis-angle;
    :func:`head_angles`)."""
    return np.array([abs(head_angles(p[:3])["yaw"]) for p in pose])


def off_axis_degrees(pose) -> np.ndarray:
    """(B,) degrees between the head's forward axis (the model's +z) and the camera's axis, from the
    global rotation ``pose[:, :3]`` (pose (B,P), axis-angle; tensor or array). A roll in the image plane
    leaves it as is; yaw alone or pitch alone gives its own size."""
    import torch

    from vitdeca.head.lbs import batch_rodrigues

    rotation = batch_rodrigues(torch.as_tensor(pose)[:, :3].detach().double().cpu())
    return np.degrees(np.arccos(rotation[:, 2, 2].clamp(-1.0, 1.0).numpy()))


def eye_angles(weights: np.ndarray) -> dict[str, dict[str, float]]:
    """ARKit weights (52,) → ``{"left": {"yaw", "pitch"}, "right": {...}}`` degrees from the eyeLook*
    weights (:data:`EYE_LOOK_DEGREES`; yaw positive towards the subject's left, pitch positive down)."""
    w = dict(zip(ARKIT_NAMES, np.asarray(weights, np.float64).tolist(), strict=True))
    h, up, down = (EYE_LOOK_DEGREES[k] for k in ("horizontal", "up", "down"))
    out = {}
    for eye, side, outward in (("left", "Left", 1.0), ("right", "Right", -1.0)):
        yaw = outward * h * (w[f"eyeLookOut{side}"] - w[f"eyeLookIn{side}"])
        pitch = down * w[f"eyeLookDown{side}"] - up * w[f"eyeLookUp{side}"]
        out[eye] = {"yaw": yaw, "pitch": pitch}
    return out


def eye_look_weights(yaw: float, pitch: float, side: str) -> dict[str, float]:
    """Eye angles (degrees, :func:`eye_angles` signs) of the ``"Left"``/``"Right"`` eye → its four
    eyeLook* ARKit weights (the inverse of :func:`eye_angles`, clipped to [0, 1])."""
    h, up, down = (EYE_LOOK_DEGREES[k] for k in ("horizontal", "up", "down"))
    outward = yaw / h if side == "Left" else -yaw / h
    values = {
        f"eyeLookOut{side}": outward,
        f"eyeLookIn{side}": -outward,
        f"eyeLookDown{side}": pitch / down,
        f"eyeLookUp{side}": -pitch / up,
    }
    return {k: float(np.clip(v, 0.0, 1.0)) for k, v in values.items()}


def without_contradictions(expression: np.ndarray, names, keep=()) -> np.ndarray:
    """A copy of one expression code (n,) of a blend-shape head (``names``: its ``blendshape_names``)
    in which, of each :data:`EXCLUSIVE` pair with both weights above 0, the smaller is set to 0 (a tie:
    the second); a weight whose ARKit name is in ``keep`` always wins (e.g. an imposed blink)."""
    out = np.array(expression, copy=True)
    kept = {j for j, name in enumerate(names) if arkit_name(name) in keep}
    for i, j in exclusive_pairs(indices_by_arkit_name(names)):
        if out[i] > 0 and out[j] > 0:
            out[j if i in kept or (j not in kept and out[i] >= out[j]) else i] = 0.0
    return out


def indices_by_arkit_name(names) -> dict[str, list[int]]:
    """{ARKit name: the indices of ``names`` (a head's ``blendshape_names``) that drive it} (merged
    halves: two indices)."""
    by_arkit: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        by_arkit.setdefault(arkit_name(name), []).append(j)
    return by_arkit


def exclusive_pairs(by_arkit: dict[str, list[int]]) -> list[tuple[int, int]]:
    """The (i, j) index pairs of the :data:`EXCLUSIVE` shapes (``by_arkit``: :func:`indices_by_arkit_name`),
    in its order."""
    return [(i, j) for a, b in EXCLUSIVE for i in by_arkit.get(a, []) for j in by_arkit.get(b, [])]


def with_gaze_looks(expression: np.ndarray, names, gaze: np.ndarray) -> np.ndarray:
    """A copy of one expression code (n,) of a blend-shape head (``names``: its ``blendshape_names``)
    whose eyeLook* entries are those of ``gaze`` (2,2) yaw/pitch degrees, left eye first
    (:func:`eye_look_weights`); entries the head lacks are skipped."""
    by_arkit = indices_by_arkit_name(names)
    out = np.array(expression, copy=True)
    for (yaw, pitch), side in zip(np.asarray(gaze, np.float64), ("Left", "Right"), strict=True):
        for name, value in eye_look_weights(float(yaw), float(pitch), side).items():
            out[by_arkit.get(name, [])] = value
    return out
