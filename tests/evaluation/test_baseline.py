"""The subject bootstrap and the per-subject mean-face measurement, against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from vitdeca.evaluation.baseline import (
    BootstrapOptions,
    FixedPrediction,
    bootstrap_intervals,
    evaluate_fixed_prediction,
    evaluate_shapes,
    resample_counts,
    weighted_medians,
)


def _groups(seed: int, sizes=(300, 1000, 50, 700, 420)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.gamma(2.0, 0.5 + 0.3 * k, size=n).astype(np.float32) for k, n in enumerate(sizes)]


def test_histogram_medians_match_concatenated_copies():
    groups = _groups(0, (9000, 30000, 1500, 21000, 12600))  # scan-sized subjects
    counts = resample_counts(len(groups), 40, seed=1)
    assert counts.shape == (40, 5) and (counts.sum(axis=1) == 5).all()
    fast = weighted_medians(groups, counts)
    for row, value in zip(counts, fast, strict=True):
        copies = [np.tile(g, c) for g, c in zip(groups, row, strict=True)]
        exact = np.median(np.concatenate(copies))
        assert value == pytest.approx(exact, abs=5e-4)  # the median is about 1.3


def test_paired_resamples_make_an_exact_ratio_exact():
    method = _groups(2)
    baseline = [2.0 * g for g in method]  # every resample: median ratio exactly 0.5
    out = bootstrap_intervals(method, baseline, BootstrapOptions(resamples=300, seed=3))
    assert out["relative_median_ci95"] == pytest.approx([0.5, 0.5], abs=1e-3)
    low, high = out["ci95_median"]
    pooled = np.median(np.concatenate(method))
    assert low < pooled < high and high - low > 0.05  # subjects differ: a real spread


def test_interval_is_seeded_and_narrows_with_more_subjects():
    few = bootstrap_intervals(_groups(4, (200,) * 4), None, BootstrapOptions(500, seed=0))
    again = bootstrap_intervals(_groups(4, (200,) * 4), None, BootstrapOptions(500, seed=0))
    assert few == again
    rng = np.random.default_rng(5)
    many = [rng.gamma(2.0, 0.5 + 0.3 * (k % 4), size=200) for k in range(64)]
    wide = np.diff(few["ci95_median"])[0]
    narrow = np.diff(bootstrap_intervals(many, None, BootstrapOptions(500, seed=0))["ci95_median"])[0]
    assert narrow < wide
    assert bootstrap_intervals(many, None, BootstrapOptions(resamples=0)) == {"ci95_median": None}


IMAGES = ["A/neutral/1.jpg", "A/expression/2.jpg", "B/neutral/3.jpg"]


def _now_folder(root, synth):
    """A NoW-layout folder: subjects A and B (head-like scans), :data:`IMAGES` listed."""
    from vitdeca.evaluation.pp import write_pp

    from .test_now_cli import write_obj

    for subject, size in (("A", 1.0), ("B", 1.15)):
        v, f, lmk = synth.head(900, size=size)
        write_obj(root / "scans" / subject / "scan.obj", v, f)
        write_pp(root / "scans_lmks_onlypp" / subject / "scan_picked_points.pp", lmk)
    (root / "imagepathsvalidation.txt").write_text("\n".join(IMAGES) + "\n")
    return root


def test_fixed_prediction_is_measured_once_per_subject_for_each_image(tmp_path, synth):
    from vitdeca.evaluation.baseline import write_prediction
    from vitdeca.evaluation.now_dataset import evaluate_now, read_image_list

    _now_folder(tmp_path / "now", synth)
    images = IMAGES
    v, f, lmk = synth.head(500, size=0.9)
    results = evaluate_fixed_prediction(FixedPrediction(v, f, lmk), tmp_path / "now", workers=2)
    for item in read_image_list(tmp_path / "now", "val"):
        write_prediction(tmp_path / "pred", item, v, f, lmk)
    direct = evaluate_now(tmp_path / "pred", tmp_path / "now", progress=False)
    assert [r.item.image for r in results] == images
    for a, b in zip(results, direct, strict=True):
        np.testing.assert_allclose(a.distances, b.distances, atol=1e-4)
    assert results[0].distances is results[1].distances  # one measurement for subject A


class ScalingHead:
    """A head model whose neutral mesh is a head-like surface scaled by ``1 + shape[0]``; its 68
    landmarks hold the 7 NoW points at the NoW indices."""

    n_expression, n_pose = 2, 3

    def __init__(self, synth) -> None:
        import torch

        from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68

        v, f, lmk = synth.head(500, size=0.9)
        self.template, self.faces = torch.tensor(v), torch.tensor(f)
        self.landmarks = torch.zeros(68, 3, dtype=torch.float64)
        self.landmarks[list(NOW_LANDMARKS_IBUG68)] = torch.tensor(lmk)

    def __call__(self, shape, expression, pose):
        from types import SimpleNamespace

        assert not expression.any() and not pose.any()  # neutral meshes only
        scale = 1.0 + shape[:, :1, None].double()
        return SimpleNamespace(vertices=scale * self.template, landmarks3d=scale * self.landmarks)


def test_evaluate_shapes_writes_and_measures_the_neutral_meshes(tmp_path, synth):
    import torch

    from vitdeca.evaluation.now import NOW_LANDMARKS_IBUG68

    now, head = _now_folder(tmp_path / "now", synth), ScalingHead(synth)
    shapes = torch.tensor([[0.0], [0.3], [-0.2]])
    results = evaluate_shapes(head, shapes, now, tmp_path / "pred")
    assert [r.item.image for r in results] == IMAGES and all(r.status == "ok" for r in results)
    for k, image in enumerate(IMAGES):  # each image's prediction: its own scaled mesh
        written = np.load(tmp_path / "pred" / image.replace(".jpg", ".npy"))
        expected = (1.0 + shapes[k, 0].item()) * head.landmarks[list(NOW_LANDMARKS_IBUG68)].numpy()
        np.testing.assert_allclose(written, expected, rtol=1e-6)
    template = FixedPrediction(
        head.template.numpy(), head.faces.numpy(), head.landmarks[[36, 39, 42, 45, 33, 48, 54]].numpy()
    )
    mean_face = evaluate_shapes(head, torch.zeros(1, 1), now, tmp_path / "mean")  # one row: every image
    for a, b in zip(mean_face, evaluate_fixed_prediction(template, now), strict=True):
        np.testing.assert_allclose(a.distances, b.distances, atol=1e-4)
    with pytest.raises(ValueError, match="2 shapes for 3 images"):
        evaluate_shapes(head, shapes[:2], now, tmp_path / "bad")
