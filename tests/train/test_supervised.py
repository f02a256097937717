"""Supervised terms for samples with ground truth (synthetic datasets): truth collation, the mesh and pose
terms against independent computations, and mixed synthetic + photo training data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitdeca import losses as L
from vitdeca.codes import Codes
from vitdeca.train.data import collate_truth


def test_collate_truth_fills_photos_with_zero_rows_and_flags_them():
    truth = {"shape": torch.ones(3), "expression": torch.full((2,), 0.5), "pose": torch.ones(3)}
    batch = collate_truth([truth, None, truth])
    assert batch["has_truth"].tolist() == [1.0, 0.0, 1.0]
    assert batch["truth_shape"].shape == (3, 3) and batch["truth_shape"][1].abs().sum() == 0
    assert batch["truth_expression"][2].tolist() == [0.5, 0.5]
    assert collate_truth([None, None]) == {}


def test_vertex_distance_is_the_mean_euclidean_distance_in_mm_over_weighted_samples():
    pred = torch.zeros(2, 4, 3)
    target = torch.zeros(2, 4, 3)
    target[0, :, 0] = 3.0  # 3 model units = 0.3 mm at 10 units per mm
    target[1, :, 1] = 4.0  # ignored: weight 0
    value = L.vertex_distance_mm(pred, target, units_per_mm=10.0, sample_weights=torch.tensor([1.0, 0.0]))
    assert value.item() == pytest.approx(0.3)
    assert L.vertex_distance_mm(pred, target, 10.0, torch.zeros(2)).item() == 0.0


def _least_squares_scale_translation(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Independent reference: solve min_{s,t} ||s·pred + t − target||² as one linear least-squares problem
    in (s, tx, ty, tz)."""
    design = np.zeros((pred.size, 4))
    design[:, 0] = pred.reshape(-1)
    for axis in range(3):
        design[axis::3, 1 + axis] = 1.0
    (scale, *shift), *_ = np.linalg.lstsq(design, target.reshape(-1), rcond=None)
    return scale * pred + np.asarray(shift)


def test_scale_translation_alignment_is_the_least_squares_fit():
    rng = np.random.default_rng(0)
    pred, target = rng.normal(size=(2, 50, 3)), rng.normal(size=(2, 50, 3))
    target[1] = 1.7 * pred[1] + np.array([0.3, -2.0, 5.0])  # sample 1: a scaled, moved copy
    got = L.align_scale_translation(torch.from_numpy(pred), torch.from_numpy(target)).numpy()
    np.testing.assert_allclose(got[0], _least_squares_scale_translation(pred[0], target[0]), atol=1e-10)
    np.testing.assert_allclose(got[1], target[1], atol=1e-10)
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    assert L.vertex_distance_mm(p, t, 1.0, align=True) < L.vertex_distance_mm(p, t, 1.0)


def test_code_l1_ignores_unweighted_samples():
    pred, target = torch.zeros(2, 3), torch.tensor([[0.3, 0.0, 0.0], [9.0, 9.0, 9.0]])
    assert L.code_l1(pred, target, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.1)


def test_supervised_shape_term_matches_the_basis_offset_in_mm(ict_head):
    from vitdeca.train.config import LossConfig
    from vitdeca.train.objective import REGISTRY, LossInputs

    head = ict_head
    n_s, n_e = head.n_shape, head.n_expression
    shape = torch.zeros(2, n_s)
    true_shape = torch.zeros(2, n_s)
    true_shape[0, 0] = 1.0  # sample 0: one unit of the first identity mode; sample 1: a photo
    codes = Codes(shape=shape, expression=torch.zeros(2, n_e), pose=torch.zeros(2, head.n_pose),
                  camera=torch.zeros(2, 3), light=torch.zeros(2, 9, 3), albedo=torch.zeros(2, 1))  # fmt: skip
    truth = {"truth_shape": true_shape, "truth_expression": torch.zeros(2, n_e),
             "truth_pose": torch.zeros(2, head.n_pose), "has_truth": torch.tensor([1.0, 0.0])}  # fmt: skip
    inputs = LossInputs(images=torch.zeros(2, 3, 8, 8), landmarks=torch.zeros(2, 68, 2), masks=None,
                        codes=codes, recon=None, config=LossConfig(), truth=truth, head=head)  # fmt: skip
    got = REGISTRY["sup_shape"].fn(inputs).item()
    # independent: the first shape mode's displacement, straight from the neutral and the +1 meshes
    plus = head(true_shape[:1], torch.zeros(1, n_e), torch.zeros(1, head.n_pose)).vertices[0].numpy()
    base = head.template_vertices.numpy()
    mask = head.face_mask.numpy()
    pred, target = base[mask].astype(np.float64), plus[mask].astype(np.float64)
    aligned = _least_squares_scale_translation(pred, target)
    expected = np.linalg.norm(aligned - target, axis=1).mean() / head.units_per_mm
    unaligned = np.linalg.norm(pred - target, axis=1).mean() / head.units_per_mm
    assert got == pytest.approx(expected, rel=1e-3) and 0.05 < got < unaligned
    assert REGISTRY["sup_expression"].fn(inputs).item() == 0.0
    without = LossInputs(images=torch.zeros(2, 3, 8, 8), landmarks=torch.zeros(2, 68, 2), masks=None,
                         codes=codes, recon=None, config=LossConfig())  # fmt: skip
    assert REGISTRY["sup_shape"].fn(without).item() == 0.0


def _pose_inputs(pred_pose, true_pose, has_truth, pseudo, pseudo_weight):
    from vitdeca.train.config import LossConfig
    from vitdeca.train.objective import LossInputs

    n = pred_pose.shape[0]
    codes = Codes(shape=torch.zeros(n, 2), expression=torch.zeros(n, 2), pose=pred_pose,
                  camera=torch.zeros(n, 3), light=torch.zeros(n, 9, 3), albedo=torch.zeros(n, 1))  # fmt: skip
    truth = {"truth_pose": true_pose, "has_truth": torch.tensor(has_truth)}
    if pseudo is not None:
        truth["truth_pseudo"] = torch.tensor(pseudo)
    return LossInputs(images=torch.zeros(n, 3, 8, 8), landmarks=torch.zeros(n, 68, 2), masks=None,
                      codes=codes, recon=None, config=LossConfig(pseudo_weight=pseudo_weight),
                      truth=truth)  # fmt: skip


def test_pseudo_labels_weigh_the_configured_factor_in_a_mixed_batch():
    """Exact, pseudo-labelled and plain samples: sup_pose = (1·0.3 + w·0.6) / 2 (two samples with codes)."""
    from vitdeca.train.objective import REGISTRY

    pred = torch.zeros(3, 3)
    true = torch.tensor([[0.9, 0.0, 0.0], [1.8, 0.0, 0.0], [5.0, 5.0, 5.0]])  # per-sample L1 0.3, 0.6, (5)
    for weight, expected in ((0.3, (0.3 + 0.3 * 0.6) / 2), (1.0, (0.3 + 0.6) / 2), (0.0, 0.3 / 1)):
        x = _pose_inputs(pred, true, [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], weight)
        assert REGISTRY["sup_pose"].fn(x).item() == pytest.approx(expected)
    only_pseudo = _pose_inputs(pred[1:2], true[1:2], [1.0], [1.0], 0.3)
    assert REGISTRY["sup_pose"].fn(only_pseudo).item() == pytest.approx(0.3 * 0.6)  # soft, not renormalised


def test_exact_truth_without_a_pseudo_marker_keeps_weight_one():
    from vitdeca.train.objective import REGISTRY

    pred, true = torch.zeros(2, 3), torch.tensor([[0.9, 0.0, 0.0], [3.0, 3.0, 3.0]])
    x = _pose_inputs(pred, true, [1.0, 0.0], None, 0.3)
    assert REGISTRY["sup_pose"].fn(x).item() == pytest.approx(0.3)


def test_sample_mean_counts_every_weighted_sample_once():
    errors = torch.tensor([2.0, 4.0, 8.0])
    assert L.sample_mean(errors, torch.tensor([1.0, 0.5, 0.0])).item() == pytest.approx((2.0 + 2.0) / 2)
    assert L.sample_mean(errors, torch.tensor([1.0, 1.0, 0.0])).item() == pytest.approx(3.0)
    assert L.sample_mean(errors).item() == pytest.approx(14.0 / 3)
    assert L.sample_mean(errors, torch.zeros(3)).item() == 0.0


def test_supervised_shape_term_scales_a_pseudo_sample_by_the_factor(ict_head):
    """The mesh term through the same weights: one pseudo sample's sup_shape is factor × its exact value."""
    from vitdeca.train.config import LossConfig
    from vitdeca.train.objective import REGISTRY, LossInputs

    head = ict_head
    true_shape = torch.zeros(1, head.n_shape)
    true_shape[0, 0] = 1.0
    codes = Codes(shape=torch.zeros(1, head.n_shape), expression=torch.zeros(1, head.n_expression),
                  pose=torch.zeros(1, head.n_pose), camera=torch.zeros(1, 3), light=torch.zeros(1, 9, 3),
                  albedo=torch.zeros(1, 1))  # fmt: skip
    values = []
    for pseudo in (0.0, 1.0):
        truth = {"truth_shape": true_shape, "truth_expression": torch.zeros(1, head.n_expression),
                 "truth_pose": torch.zeros(1, head.n_pose), "has_truth": torch.ones(1),
                 "truth_pseudo": torch.tensor([pseudo])}  # fmt: skip
        x = LossInputs(images=torch.zeros(1, 3, 8, 8), landmarks=torch.zeros(1, 68, 2), masks=None,
                       codes=codes, recon=None, config=LossConfig(pseudo_weight=0.25), truth=truth,
                       head=head)  # fmt: skip
        values.append(REGISTRY["sup_shape"].fn(x).item())
    assert values[0] > 0.05 and values[1] == pytest.approx(0.25 * values[0], rel=1e-6)


def test_pseudo_weight_must_not_be_negative():
    from vitdeca.errors import VitdecaError
    from vitdeca.train.config import TrainConfig, validate

    config = TrainConfig()
    config.losses.pseudo_weight = -0.1
    with pytest.raises(VitdecaError, match="losses.pseudo_weight"):
        validate(config)
