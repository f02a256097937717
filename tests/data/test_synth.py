"""The synthetic generator's effect draws (blur, occluders), their codes.npz records and CLI flags."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitdeca.cli import main
from vitdeca.data.synth import (
    SynthOptions,
    sample_blur,
    sample_image,
    sample_occluder,
    sample_subject,
    write_synthetic_dataset,
)
from vitdeca.errors import VitdecaError

TINY = dict(n_images=3, images_per_subject=3, seed=6, size=48, supersample=1, uv_size=128, batch_size=3)


@pytest.fixture(scope="module")
def home(ict_head, ict_home):
    """load_head_model("ict") inside the code under test finds the session's ICT cache."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VITDECA_HOME", str(ict_home))
        yield ict_home
    torch.set_num_threads(threads)


def test_effects_have_their_own_streams_and_fractions(ict_head):
    """The effects' draws leave every other draw as it was, none are drawn at fraction 0, and their
    shares follow the fractions."""
    options = SynthOptions(seed=3, blur_fraction=0.3, occluder_fraction=0.2)
    off = SynthOptions(seed=3, blur_fraction=0.0, occluder_fraction=0.0)
    subject = sample_subject(options, ict_head, 0, [])
    on_spec, off_spec = (
        sample_image(options, ict_head, subject, 5, 1),
        sample_image(off, ict_head, subject, 5, 1),
    )
    for key, value in asdict(off_spec).items():
        if key not in ("blur", "occluder", "subject"):
            np.testing.assert_array_equal(np.asarray(asdict(on_spec)[key]), np.asarray(value))
    assert off_spec.blur is None and off_spec.occluder is None
    blurs = [sample_blur(options, i) for i in range(2000)]
    occluders = [sample_occluder(options, i) for i in range(2000)]
    assert np.mean([b is not None for b in blurs]) == pytest.approx(0.3, abs=0.04)
    assert np.mean([o is not None for o in occluders]) == pytest.approx(0.2, abs=0.04)
    sigmas = [b.sigma for b in blurs if b]
    assert 0.5 <= min(sigmas) and max(sigmas) <= options.blur_max_px
    assert {b.kind for b in blurs if b} == {"gaussian", "motion"}
    assert {o.kind for o in occluders if o} == {"hand", "glasses", "object"}
    assert sample_blur(options, 17) == sample_blur(options, 17)  # reproducible from the seed


@pytest.fixture(scope="module")
def occluded_sets(home, tmp_path_factory):
    """The same seed written with every effect on (twice) and with occluders and blur off."""
    root = tmp_path_factory.mktemp("effects")
    on = dict(TINY, blur_fraction=1.0, occluder_fraction=1.0)
    for name, options in (
        ("a", on),
        ("b", on),
        ("off", dict(TINY, blur_fraction=0.0, occluder_fraction=0.0)),
    ):
        write_synthetic_dataset(root / name, SynthOptions(**options), progress=False)
    return root


def _mask(folder: Path, image: str) -> np.ndarray:
    return np.asarray(Image.open(folder / "masks" / image.replace(".jpg", ".png"))) > 0


def test_written_masks_visibility_and_codes_record_the_occluders(occluded_sets):
    codes, off = np.load(occluded_sets / "a" / "codes.npz"), np.load(occluded_sets / "off" / "codes.npz")
    assert codes["occluded"].dtype == bool and codes["occluded"].any() and not off["occluded"].any()
    assert set(codes["occluder"][codes["occluded"]]) <= {"hand", "glasses", "object"}
    assert (codes["occluder"][~codes["occluded"]] == "").all() and (off["occluder"] == "").all()
    assert (codes["blur"] >= 0.5).all() and set(codes["blur_kind"]) <= {"gaussian", "motion"}
    assert (off["blur"] == 0).all() and (off["blur_kind"] == "").all()
    np.testing.assert_array_equal(codes["landmarks2d"], off["landmarks2d"])
    for k, image in enumerate(codes["image"]):
        with_occluder, without = _mask(occluded_sets / "a", image), _mask(occluded_sets / "off", image)
        assert not (with_occluder & ~without).any()  # the occluder only removes face pixels
        if codes["occluded"][k]:
            removed = without.sum() - with_occluder.sum()
            assert 0 < removed <= 0.4 * without.sum() + 1
        assert not (codes["visible"][k] & ~off["visible"][k]).any()


def test_the_effects_are_deterministic_in_the_seed(occluded_sets):
    a, b = occluded_sets / "a", occluded_sets / "b"
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "dataset.json")
    assert len(files) > 10
    for path in files:
        assert (a / path).read_bytes() == (b / path).read_bytes(), path


def test_cli_flags_set_the_options_and_refuse_bad_values(home, tmp_path, capsys):
    args = ["-q", "synth", "--n", "1", "--seed", "2", "--size", "32", "--supersample", "1", "--uv-size", "64"]
    effects = ["--blur-fraction", "1", "--blur-max-px", "1.5", "--occluder-fraction", "0",
               "--occluder-max-area", "0.3", "--neck-fade", "0"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "d"), *effects]) == 0

    synth = json.loads((tmp_path / "d" / "dataset.json").read_text())["synth"]
    assert (synth["blur_fraction"], synth["blur_max_px"], synth["occluder_fraction"]) == (1.0, 1.5, 0.0)
    assert (synth["occluder_max_area"], synth["neck_fade_mm"]) == (0.3, 0.0)
    assert main([*args, "--out", str(tmp_path / "e")]) == 0
    defaults = json.loads((tmp_path / "e" / "dataset.json").read_text())["synth"]
    assert defaults["blur_fraction"] == SynthOptions().blur_fraction  # unset flags: the options' defaults
    capsys.readouterr()
    for flag, value in (("--blur-fraction", "1.5"), ("--occluder-fraction", "-0.1"), ("--neck-fade", "-1"),
                        ("--blur-max-px", "0"), ("--occluder-max-area", "0")):  # fmt: skip
        assert main([*args, "--out", str(tmp_path / "bad"), flag, value]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and "synth options: need" in error
    with pytest.raises(VitdecaError, match="occluder_fraction"):
        SynthOptions(occluder_fraction=2.0).validated()
