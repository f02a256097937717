"""ARKit semantics: the ICT → ARKit mapping, merged/folded/unavailable shapes, priors and angles."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeca.arkit import (
    ARKIT_NAMES,
    arkit_mapping,
    expression_priors,
    eye_angles,
    eye_look_weights,
    head_angles,
    without_contradictions,
)
from vitdeca.errors import VitdecaError
from vitdeca.head.base import HeadModel


class PcaHead(HeadModel):
    """A head model without ARKit semantics (like FLAME)."""

    name = "flame"
    blendshape_names = None


def test_apple_order_and_names():
    assert len(ARKIT_NAMES) == 52 == len(set(ARKIT_NAMES))
    assert ARKIT_NAMES[:3] == ("eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft")
    assert ARKIT_NAMES[14:18] == ("jawForward", "jawLeft", "jawRight", "jawOpen")
    assert ARKIT_NAMES[-1] == "tongueOut"


def test_ict_mapping_direct_merged_and_unavailable(ict_head):
    mapping = arkit_mapping(ict_head)
    names = list(ict_head.blendshape_names)
    assert mapping.unavailable == ["tongueOut"] and mapping.available.sum() == 51

    def one_hot(*shapes):
        code = np.zeros(len(names), np.float32)
        for s in shapes:
            code[names.index(s)] = 1.0
        return dict(zip(ARKIT_NAMES, mapping.weights(code), strict=True))

    w = one_hot("eyeBlink_L")
    assert w["eyeBlinkLeft"] == 1.0 and sum(w.values()) == 1.0
    assert one_hot("browInnerUp_L")["browInnerUp"] == pytest.approx(0.5)
    assert one_hot("cheekPuff_L", "cheekPuff_R")["cheekPuff"] == pytest.approx(1.0)
    # every ARKit shape but tongueOut is reached by some ICT shape, and back again
    arkit = np.eye(52, dtype=np.float32)[:51]
    back = mapping.weights(mapping.expression(arkit))
    np.testing.assert_allclose(back, arkit, atol=1e-6)


def test_ict_left_is_the_subjects_left(ict_head):
    """ARKit's Left is the subject's own left: +x in the model frame (face along +z, y up)."""
    basis = ict_head.basis[ict_head.n_shape :].numpy().reshape(ict_head.n_expression, -1, 3)
    template = ict_head.template.numpy()
    for name in ("eyeBlink_L", "mouthSmile_L", "browDown_L"):
        motion = np.linalg.norm(basis[ict_head.blendshape_names.index(name)], axis=1)
        assert (motion * template[:, 0]).sum() / motion.sum() > 1.0  # cm, on the +x side


def test_cheek_raiser_is_folded_by_least_squares(ict_head):
    names = list(ict_head.blendshape_names)
    basis = ict_head.basis[ict_head.n_shape :].double().numpy()
    raiser = basis[names.index("cheekRaiser_R")]
    targets = basis[[names.index("cheekSquint_R"), names.index("eyeSquint_R")]]
    expected = np.linalg.solve(targets @ targets.T, targets @ raiser)
    code = np.zeros(len(names))
    code[names.index("cheekRaiser_R")] = 0.5
    w = dict(zip(ARKIT_NAMES, arkit_mapping(ict_head).weights(code), strict=True))
    assert w["cheekSquintRight"] == pytest.approx(0.5 * expected[0], abs=1e-5)
    assert w["eyeSquintRight"] == pytest.approx(0.5 * expected[1], abs=1e-5)
    assert expected[0] > 0.5 and w["cheekSquintLeft"] == 0.0


def test_pca_head_has_no_arkit_weights():
    with pytest.raises(VitdecaError) as info:
        arkit_mapping(PcaHead())
    assert "'flame'" in str(info.value) and "\n" not in str(info.value)
    assert expression_priors(PcaHead()) is None


def test_priors_pairs(ict_head):
    names = ict_head.blendshape_names
    priors = expression_priors(ict_head)
    pairs = {(names[a], names[b]) for a, b in priors.symmetric}
    assert ("eyeBlink_L", "eyeBlink_R") in pairs and len(pairs) == 21
    exclusive = {frozenset((names[a], names[b])) for a, b in priors.exclusive}
    assert frozenset(("jawLeft", "jawRight")) in exclusive
    assert frozenset(("eyeBlink_R", "eyeWide_R")) in exclusive
    assert frozenset(("browDown_L", "browInnerUp_R")) in exclusive
    assert priors.l1[names.index("cheekRaiser_L")] > priors.l1[names.index("cheekSquint_L")]


def _rot(axis: str, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def test_head_angles_compose_yaw_pitch_roll():
    from scipy.spatial.transform import Rotation

    matrix = _rot("y", 25.0) @ _rot("x", -10.0) @ _rot("z", 4.0)
    angles = head_angles(Rotation.from_matrix(matrix).as_rotvec())
    assert angles == pytest.approx({"yaw": 25.0, "pitch": -10.0, "roll": 4.0})
    # positive yaw turns the face (+z) towards +x, the subject's left
    assert (_rot("y", 25.0) @ [0, 0, 1])[0] > 0


def test_head_yaws_are_the_unsigned_yaws_of_a_batch():
    from scipy.spatial.transform import Rotation

    from vitdeca.arkit import head_yaws

    matrices = [_rot("y", 25.0) @ _rot("x", -10.0), _rot("y", -60.0) @ _rot("z", 30.0)]
    pose = np.concatenate([Rotation.from_matrix(np.stack(matrices)).as_rotvec(), np.zeros((2, 3))], axis=1)
    np.testing.assert_allclose(head_yaws(pose), [25.0, 60.0], atol=1e-9)


def test_eye_angles_invert_eye_look_weights():
    weights = dict.fromkeys(ARKIT_NAMES, 0.0)
    weights.update(eye_look_weights(12.0, -8.0, "Left"))
    weights.update(eye_look_weights(-6.0, 9.0, "Right"))
    assert weights["eyeLookOutLeft"] > 0 and weights["eyeLookOutRight"] > 0  # both turn outwards
    assert weights["eyeLookUpLeft"] > 0 and weights["eyeLookDownRight"] > 0
    eyes = eye_angles(np.array([weights[n] for n in ARKIT_NAMES]))
    assert eyes["left"] == pytest.approx({"yaw": 12.0, "pitch": -8.0})
    assert eyes["right"] == pytest.approx({"yaw": -6.0, "pitch": 9.0})


def test_without_contradictions_drops_the_smaller_of_each_pair(ict_head):
    names = list(ict_head.blendshape_names)
    at = names.index
    expression = np.zeros(len(names), np.float32)
    expression[[at("eyeBlink_L"), at("eyeWide_L"), at("mouthSmile_R"), at("mouthFrown_R")]] = [
        0.9,
        0.3,
        0.2,
        0.5,
    ]
    expression[[at("browDown_L"), at("browInnerUp_L"), at("browInnerUp_R"), at("jawOpen")]] = [
        0.4,
        0.6,
        0.7,
        0.5,
    ]
    out = without_contradictions(expression, names)
    assert out[at("eyeWide_L")] == 0 and out[at("eyeBlink_L")] == np.float32(0.9)
    assert out[at("mouthSmile_R")] == 0 and out[at("mouthFrown_R")] == np.float32(0.5)
    assert out[at("browDown_L")] == 0 and out[at("browInnerUp_R")] == np.float32(0.7)  # merged halves
    assert out[at("jawOpen")] == np.float32(0.5) and expression[at("eyeWide_L")] == np.float32(0.3)
    expression[at("eyeWide_L")] = 0.95  # larger than the blink, but the blink is kept
    kept = without_contradictions(expression, names, keep=("eyeBlinkLeft",))
    assert kept[at("eyeWide_L")] == 0 and kept[at("eyeBlink_L")] == np.float32(0.9)
    assert without_contradictions(expression, names)[at("eyeBlink_L")] == 0


def test_with_gaze_looks_sets_only_the_eye_look_shapes_the_head_has():
    from vitdeca.arkit import eye_look_weights, with_gaze_looks

    names = ["eyeLookOut_L", "jawOpen", "eyeLookIn_R", "eyeLookDown_L", "browInnerUp_L", "browInnerUp_R"]
    expression = np.full(len(names), 0.3)
    gaze = np.array([[10.0, 8.0], [-12.0, 0.0]])  # left eye out and down; right eye (yaw -12) out
    out = with_gaze_looks(expression, names, gaze)
    left = eye_look_weights(10.0, 8.0, "Left")
    assert out[0] == pytest.approx(left["eyeLookOutLeft"]) and out[0] > 0
    assert out[3] == pytest.approx(left["eyeLookDownLeft"]) and out[3] > 0
    assert out[2] == pytest.approx(eye_look_weights(-12.0, 0.0, "Right")["eyeLookInRight"]) == 0.0
    assert out[[1, 4, 5]].tolist() == [0.3, 0.3, 0.3] and expression.tolist() == [0.3] * 6  # a copy
