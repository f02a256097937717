"""vitdeca.losses on hand-made inputs with values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from vitdeca import losses as L
from vitdeca.codes import CodeLayout, Codes


def _points(value: tuple[float, float], b: int = 1) -> torch.Tensor:
    return torch.tensor(value).expand(b, 68, 2).clone()


def test_normalise_pixels_maps_edges_to_minus_one_and_one():
    pts = torch.tensor([[0.0, 0.0], [8.0, 4.0], [4.0, 2.0]])
    out = L.normalise_pixels(pts, (4, 8))  # H=4, W=8
    assert torch.allclose(out, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))


def test_landmark_loss_unweighted_is_mean_absolute_coordinate_error():
    # 4-pixel crop: 1 px = 0.5 normalised. Every point off by (1, -1) px → |dx|+|dy| = 1 → loss 1/2.
    pred, target = _points((2.0, 2.0), b=2), _points((3.0, 1.0), b=2)
    assert L.landmark_loss(pred, target, 4).item() == pytest.approx(0.5)
    assert L.landmark_loss(target, target, 4).item() == 0.0


def test_deca_landmark_weights_sum_and_values():
    w = L.deca_landmark_weights()
    # 68 ones + jaw (4 points +1) + nose (3 points +2, 6 points +0.5) + mouth (2 points +2, 18 points +0.5)
    assert w.sum().item() == pytest.approx(68 + 4 + 9 + 13)
    assert w[30].item() == 3.0 and w[48].item() == 3.0 and w[5].item() == 2.0 and w[0].item() == 1.0
    assert w[60].item() == 1.5 and w[27].item() == 1.5


def test_landmark_loss_weighted_by_deca_weights():
    target = _points((2.0, 2.0))
    pred = target.clone()
    pred[0, 30, 0] += 1.0  # nose tip (weight 3) off by 1 px = 0.5 normalised
    expected = 3.0 * 0.5 / (2.0 * 94.0)
    assert L.landmark_loss(pred, target, 4, L.deca_landmark_weights()).item() == pytest.approx(expected)
    per_image = torch.zeros(1, 68)
    per_image[0, 30] = 1.0  # only the differing point counts → its error / 2
    assert L.landmark_loss(pred, target, 4, per_image).item() == pytest.approx(0.25)


def test_eye_closure_loss_counts_eyelid_openings():
    target = _points((4.0, 4.0))  # all eyelids closed (distance 0)
    pred = target.clone()
    pred[0, [37, 38, 43, 44], 1] = 6.0  # upper lids 2 px up the image: 0.5 normalised in an 8-px crop
    assert L.eye_closure_loss(pred, target, 8).item() == pytest.approx(0.5)
    pred_one = target.clone()
    pred_one[0, 37, 1] = 6.0  # one of four pairs open
    assert L.eye_closure_loss(pred_one, target, 8).item() == pytest.approx(0.125)
    # a rigid shift of every landmark changes no opening
    assert L.eye_closure_loss(target + 3.0, target, 8).item() == pytest.approx(0.0, abs=1e-7)


def test_lip_closure_loss_uses_inner_lip_pairs():
    target = _points((4.0, 4.0))
    pred = target.clone()
    pred[0, 62, 0] = 8.0  # pair (62, 66) opens by 4 px = 1.0 normalised; 1 of 3 pairs
    assert L.lip_closure_loss(pred, target, 8).item() == pytest.approx(1.0 / 3.0)
    pred[0, 37, 1] = 0.0  # an eyelid point is not a lip point
    assert L.lip_closure_loss(pred, target, 8).item() == pytest.approx(1.0 / 3.0)


def test_photometric_loss_is_masked_mean_over_all_pixels():
    image = torch.ones(2, 3, 4, 4)
    render = torch.zeros(2, 3, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[..., :2] = 1.0  # half of each image
    assert L.photometric_loss(image, render, mask).item() == pytest.approx(0.5)
    assert L.photometric_loss(image, image, mask).item() == 0.0
    assert L.detail_photometric_loss(image, render, mask).item() == pytest.approx(0.5)


def test_identity_loss_is_one_minus_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])  # cosines 0, 1, -1
    assert L.identity_loss(a, b).item() == pytest.approx((1.0 + 0.0 + 2.0) / 3.0)
    assert L.identity_loss(a, a).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("p,k", [(1, 2), (3, 3), (2, 4)])
def test_shape_swap_index_stays_within_identity_and_never_maps_to_itself(p, k):
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        index = L.shape_swap_index(p, k, gen)
        rows = torch.arange(p * k)
        assert sorted(index.tolist()) == rows.tolist()  # a permutation
        assert torch.equal(index // k, rows // k)  # same identity
        assert not torch.any(index == rows)  # another image


def test_shape_swap_index_with_one_image_per_identity_is_the_identity_map():
    assert torch.equal(L.shape_swap_index(3, 1), torch.arange(3))


def test_swap_code_takes_rows_by_index():
    code = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    assert L.swap_code(code, torch.tensor([1, 0, 3, 2])).flatten().tolist() == [2.0, 1.0, 4.0, 3.0]


def test_code_and_light_regularisers():
    code = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert L.code_regulariser(code).item() == pytest.approx((5 / 2 + 25 / 2) / 2)
    light = torch.tensor([1.0, 2.0, 3.0]).expand(2, 9, 3)  # deviations (-1, 0, 1) from the grey mean
    assert L.light_regulariser(light).item() == pytest.approx(2.0 / 3.0)
    assert L.light_regulariser(torch.ones(2, 9, 3) * 0.7).item() == 0.0


def test_soft_symmetry_loss_value_mask_and_gradient():
    d = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]], requires_grad=True)
    loss = L.soft_symmetry_loss(d)
    assert loss.item() == pytest.approx(4.0)  # |1-0| at each of the 4 UV pixels, summed
    loss.backward()
    # the mirrored copy is detached: d/dD |D - sg(flip D)| = sign(D - flip D)
    assert torch.equal(d.grad, torch.tensor([[[[1.0, -1.0], [1.0, -1.0]]]]))
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert L.soft_symmetry_loss(d, mask).item() == pytest.approx(1.0)
    symmetric = torch.tensor([[[[0.3, 0.3], [0.1, 0.1]]]])
    assert L.soft_symmetry_loss(symmetric).item() == 0.0


def test_soft_symmetry_loss_about_another_uv_column():
    # axis u = 0.25 of a 4-texel map (ICT's face): columns 0 ↔ 1 mirror each other, 2 and 3 are left out
    d = torch.tensor([[[[1.0, 3.0, 5.0, -7.0]]]])
    assert L.soft_symmetry_loss(d, axis=0.25).item() == pytest.approx(4.0)  # |1-3| + |3-1|
    assert L.soft_symmetry_loss(torch.tensor([[[[2.0, 2.0, 5.0, -7.0]]]]), axis=0.25).item() == 0.0
    # axis u = 0.625: columns 1 ↔ 3 and 2 ↔ 2 (edge 5 → mirror of j is 4 − j), column 0 left out
    assert L.soft_symmetry_loss(d, axis=0.625).item() == pytest.approx(2 * 10.0)


def test_displacement_regulariser_and_shading_smoothness():
    d = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])
    assert L.displacement_regulariser(d).item() == pytest.approx(1.0)
    assert L.displacement_regulariser(d, torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]])).item() == pytest.approx(
        0.5
    )
    ramp = torch.arange(5.0).expand(1, 1, 5, 5)  # +1 per column, constant per row
    assert L.shading_smoothness_loss(ramp).item() == pytest.approx(1.0)
    assert L.shading_smoothness_loss(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_mrf_loss_is_zero_for_matching_features_and_ignores_their_layout():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 4, 4, generator=gen)
    assert L.mrf_loss(feats, feats).item() == pytest.approx(0.0, abs=1e-4)
    shuffled = feats.flatten(2)[:, :, torch.randperm(16, generator=gen)].view_as(feats)
    assert L.mrf_loss(shuffled, feats).item() == pytest.approx(0.0, abs=1e-4)
    other = torch.randn(2, 16, 4, 4, generator=gen)
    assert L.mrf_loss(other, feats).item() > 0.1


def test_landmark_weights_down_weight_hidden_points():
    visible = torch.ones(2, 68, dtype=torch.bool)
    visible[1, 42:48] = False  # the far eye of a profile
    w = L.landmark_weights(visible, occluded=0.1, base=L.deca_landmark_weights())
    assert w.shape == (2, 68)
    assert torch.equal(w[0], L.deca_landmark_weights())
    assert torch.allclose(w[1, 42:48], 0.1 * L.deca_landmark_weights()[42:48])
    assert L.landmark_weights(None, 0.1, None) is None
    # a hallucinated far eye barely moves the loss once it is marked hidden
    pred = torch.rand(2, 68, 2) * 100
    target = pred.clone()
    target[1, 42:48] += 30.0
    hidden_loss = L.landmark_loss(pred, target, 100, L.landmark_weights(visible, 0.1))
    plain_loss = L.landmark_loss(pred, target, 100)
    assert hidden_loss < 0.15 * plain_loss


def test_expression_priors():
    from vitdeca.losses import pair_exclusion_regulariser, pair_symmetry_regulariser, sparsity_regulariser

    code = torch.tensor([[0.2, -0.5, 0.0, 1.0], [0.0, 0.0, 0.3, 0.3]])
    weights = torch.tensor([1.0, 2.0, 1.0, 4.0])
    # by hand: row 0: 0.2 + 1.0 + 0 + 4.0 = 5.2; row 1: 0.3 + 1.2 = 1.5
    assert sparsity_regulariser(code, weights).item() == pytest.approx((5.2 + 1.5) / 2)
    pairs = torch.tensor([[0, 1], [2, 3]])
    # row 0: 0.7² + 1.0²; row 1: 0 + 0
    assert pair_symmetry_regulariser(code, pairs).item() == pytest.approx((0.49 + 1.0) / 2)
    # negative weights do not count: row 0: relu(0.2)·relu(-0.5) + 0·1 = 0; row 1: 0 + 0.09
    assert pair_exclusion_regulariser(code, pairs).item() == pytest.approx(0.09 / 2)
    empty = torch.zeros(0, 2, dtype=torch.long)
    assert pair_symmetry_regulariser(code, empty).item() == 0.0


def test_training_and_fitting_share_one_vocabulary():
    """Every weight key of LossConfig and FitWeights, every registered training term, is a term of
    TERMS; a term both use has the same key in both configs."""
    import dataclasses

    from vitdeca.fit import FitWeights
    from vitdeca.train.config import LOSS_FACTORS, LossConfig
    from vitdeca.train.objective import REGISTRY

    training = {
        f.name
        for f in dataclasses.fields(LossConfig)
        if f.type in ("float", float) and f.name not in LOSS_FACTORS
    }
    fitting = {f.name for f in dataclasses.fields(FitWeights)}
    assert training == set(REGISTRY) and training <= set(L.TERMS) and fitting <= set(L.TERMS)
    shared = {
        "landmark",
        "eye",
        "lip",
        "photometric",
        "reg_shape",
        "reg_expression",
        "reg_albedo",
        "reg_light",
    }
    assert shared <= training & fitting
    layout = CodeLayout(n_shape=2, n_expression=1, n_pose=1, n_albedo=1)
    codes = Codes.split(torch.zeros(2, layout.n_coarse), layout).replace(shape=torch.tensor([[0.1, 0.2]] * 2))
    assert L.CODE_REGULARISERS["reg_shape"](codes).item() == pytest.approx((0.01 + 0.04) / 2)


def test_per_image_losses_are_each_images_own_and_average_to_the_batch_loss():
    """``per_image=True`` gives each image's loss (B,): the loss of that image alone, and the batch loss is
    their mean; a landmark loss with per-image weights is normalised by each image's own weights (an
    image with one heavy point does not dilute the others)."""
    g = torch.Generator().manual_seed(0)
    pred, target = torch.rand(3, 68, 2, generator=g) * 224, torch.rand(3, 68, 2, generator=g) * 224
    code, light = torch.randn(3, 20, generator=g), torch.randn(3, 9, 3, generator=g)
    image, render, mask = (torch.rand(3, c, 8, 8, generator=g) for c in (3, 3, 1))
    pairs, l1 = torch.tensor([[0, 1], [2, 5]]), torch.rand(20, generator=g)
    terms = {  # name → loss of the images ``i`` (a slice)
        "eye": lambda i, **k: L.eye_closure_loss(pred[i], target[i], 224, **k),
        "lip": lambda i, **k: L.lip_closure_loss(pred[i], target[i], 224, **k),
        "landmark": lambda i, **k: L.landmark_loss(pred[i], target[i], 224, **k),
        "photometric": lambda i, **k: L.photometric_loss(image[i], render[i], mask[i], **k),
        "code": lambda i, **k: L.code_regulariser(code[i], **k),
        "light": lambda i, **k: L.light_regulariser(light[i], **k),
        "sparsity": lambda i, **k: L.sparsity_regulariser(code[i], l1, **k),
        "symmetry": lambda i, **k: L.pair_symmetry_regulariser(code[i], pairs, **k),
        "exclusion": lambda i, **k: L.pair_exclusion_regulariser(code[i], pairs, **k),
    }
    everything = slice(None)
    for name, term in terms.items():
        each = term(everything, per_image=True)
        assert each.shape == (3,), name
        assert torch.allclose(each.mean(), term(everything), rtol=1e-5), name
        assert torch.allclose(each[1], term(slice(1, 2)), rtol=1e-5), name
    weights = torch.ones(3, 68)
    weights[0, 0] = 100.0
    each = L.landmark_loss(pred, target, 224, weights, per_image=True)
    assert torch.allclose(each[1:], L.landmark_loss(pred[1:], target[1:], 224, per_image=True))
    assert not torch.allclose(each.mean(), L.landmark_loss(pred, target, 224, weights))  # batch-normalised
