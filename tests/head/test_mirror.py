"""The mirror map of codes (vitdeca.head.mirror) and the encoder's test-time flip averaging."""

from __future__ import annotations

import pytest
import torch

from vitdeca.codes import Codes
from vitdeca.head.landmarks import IBUG68_GROUPS, IBUG68_MIRROR
from vitdeca.head.mirror import CodeMirror, flip_averaged

SIZE = 224


def random_codes(model, batch: int = 3, seed: int = 0) -> Codes:
    generator = torch.Generator().manual_seed(seed)
    codes = model.neutral_codes(batch)

    def normal(like, std):
        return torch.randn(like.shape, generator=generator) * std

    return codes.replace(
        shape=normal(codes.shape, 1.0),
        expression=normal(codes.expression, 0.3).clamp(0, 1),
        pose=normal(codes.pose, 0.3),
        camera=codes.camera
        + normal(codes.camera, 0.2) * torch.tensor([0.1, 1.0, 1.0]) * codes.camera[:, :1].abs(),
    )


@pytest.fixture(scope="module")
def model(ict_head):
    from vitdeca.model import DecaModel, ModelConfig

    return DecaModel(ModelConfig(encoder=None, detail=False), head=ict_head).eval()


@pytest.fixture(scope="module")
def encoder_model(ict_head):
    from vitdeca.model import DecaModel, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(encoder="vit_tiny_patch16_224", image_size=64, uv_size=32, n_albedo=8, pool="mean")
    return DecaModel(config, head=ict_head).eval()


def test_mirror_order_is_an_involution_that_swaps_the_sides():
    order = torch.tensor(IBUG68_MIRROR)
    assert sorted(IBUG68_MIRROR) == list(range(68))
    assert torch.equal(order[order], torch.arange(68))
    assert [IBUG68_MIRROR[i] for i in IBUG68_GROUPS["right_eye"]] == [45, 44, 43, 42, 47, 46]
    assert [i for i in range(68) if IBUG68_MIRROR[i] == i] == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]


def test_mirrored_codes_draw_the_mirror_image_of_the_landmarks(model):
    """Shape, expression, pose and camera together: a wrong sign anywhere moves the points by pixels."""
    from vitdeca.fit import landmarks2d

    codes = random_codes(model)
    with torch.no_grad():
        points = landmarks2d(model, codes, SIZE)
        mirrored = landmarks2d(model, model.code_mirror(codes), SIZE)
    expected = points[:, list(IBUG68_MIRROR)] * torch.tensor([-1.0, 1.0]) + torch.tensor([SIZE, 0.0])
    assert (mirrored - expected).norm(dim=-1).max() < 0.5  # pixels; ICT's mesh is nearly symmetric
    assert (mirrored - points).norm(dim=-1).mean() > 5  # and the mirror image is another face


def test_mirrored_codes_give_the_mirrored_mesh(model):
    from vitdeca.head.mirror import nearest_mirror_images

    codes = random_codes(model, seed=1)
    index = torch.from_numpy(nearest_mirror_images(model.head.template_vertices.numpy())[1])
    with torch.no_grad():
        vertices = model.head(codes.shape, codes.expression, codes.pose).vertices
        back = model.code_mirror(codes)
        mirrored = model.head(back.shape, back.expression, back.pose).vertices
    error = (mirrored - vertices[:, index] * torch.tensor([-1.0, 1.0, 1.0])).norm(dim=-1)
    assert error.median() < 0.1 * model.head.units_per_mm  # < 0.1 mm for most vertices
    assert error.quantile(0.99) < 1.0 * model.head.units_per_mm  # < 1 mm nearly everywhere


def mesh_distance_mm(model, a: Codes, b: Codes) -> torch.Tensor:
    """(B,V) distances (mm) between the posed meshes of codes ``a`` and ``b``."""
    with torch.no_grad():
        first = model.head(a.shape, a.expression, a.pose).vertices
        second = model.head(b.shape, b.expression, b.pose).vertices
    return (first - second).norm(dim=-1) / model.head.units_per_mm


def test_mirroring_twice_gives_the_head_back(model):
    codes = random_codes(model, seed=2)
    twice = model.code_mirror(model.code_mirror(codes))
    assert mesh_distance_mm(model, twice, codes).quantile(0.99) < 0.5
    assert torch.allclose(twice.pose, codes.pose) and torch.allclose(twice.camera, codes.camera)


def test_flip_average_of_a_mirror_pair_is_the_codes_and_keeps_appearance(model):
    codes = random_codes(model, seed=3)
    flipped = model.code_mirror(codes).replace(light=codes.light + 1, albedo=codes.albedo + 1)
    averaged = flip_averaged(codes, flipped, model.code_mirror)
    assert mesh_distance_mm(model, averaged, codes).quantile(0.99) < 0.5
    assert torch.allclose(averaged.camera, codes.camera, atol=1e-5)
    assert torch.equal(averaged.light, codes.light) and torch.equal(averaged.albedo, codes.albedo)


def test_a_head_without_a_linear_basis_has_no_mirror():
    class Curved:
        name = "curved"

        def linear_basis(self):
            return None

    with pytest.raises(ValueError, match="curved: no rigid linear basis"):
        CodeMirror.of_head(Curved())


def test_encode_with_flip_averages_the_photo_and_its_mirror_image(encoder_model):
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        averaged = encoder_model.encode(images, flip=True)
        plain, flipped = encoder_model.encode(images), encoder_model.encode(images.flip(-1))
        mirrored_photo = encoder_model.encode(images.flip(-1), flip=True)
    expected = flip_averaged(plain, flipped, encoder_model.code_mirror)
    for name, value in expected.as_dict().items():
        assert torch.allclose(getattr(averaged, name), value, atol=1e-5), name
    assert torch.equal(averaged.detail, plain.detail)  # the detail encoder reads the photo only
    assert not torch.allclose(averaged.shape, plain.shape, atol=1e-3)
    # the mirrored photo's averaged codes are the mirror image of the photo's
    assert mesh_distance_mm(encoder_model, encoder_model.code_mirror(mirrored_photo), averaged).max() < 0.5


def test_encode_mirrored_reads_both_in_one_batch(encoder_model, monkeypatch):
    """``encode_mirrored``: the photo's codes (with detail) and the mirrored photo's as read (no detail),
    equal to two separate ``encode`` calls, from one coarse-encoder batch of 2B."""
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    batches, forward = [], encoder_model.encoder.forward
    with torch.no_grad():
        plain, flipped = encoder_model.encode(images), encoder_model.encode(images.flip(-1))
        monkeypatch.setattr(encoder_model.encoder, "forward", lambda x: batches.append(len(x)) or forward(x))
        codes, mirrored = encoder_model.encode_mirrored(images)
    assert batches == [4]
    for name in ("shape", "expression", "pose", "camera", "light", "albedo"):
        torch.testing.assert_close(getattr(codes, name), getattr(plain, name), atol=1e-5, rtol=0)
        torch.testing.assert_close(getattr(mirrored, name), getattr(flipped, name), atol=1e-5, rtol=0)
    assert torch.equal(codes.detail, plain.detail) and mirrored.detail is None


def test_reconstructor_flips_for_regress_when_the_head_allows_and_refuses_the_impossible(
    encoder_model, monkeypatch
):
    from vitdeca.errors import VitdecaError
    from vitdeca.fit import FitConfig
    from vitdeca.pipeline import Reconstructor

    assert Reconstructor(encoder_model, detector="dlib").flip is True  # regress
    assert Reconstructor(encoder_model, detector="dlib", fit=FitConfig(), refine=True).flip is False
    assert Reconstructor(encoder_model, detector="dlib", fit=FitConfig(), refine=True, flip=True).flip is True
    assert Reconstructor(encoder_model, detector="dlib", flip=False).flip is False
    monkeypatch.setattr(type(encoder_model), "supports_flip", property(lambda self: False))
    assert Reconstructor(encoder_model, detector="dlib").flip is False
    with pytest.raises(VitdecaError, match="--flip: the ict head has no mirror map"):
        Reconstructor(encoder_model, detector="dlib", flip=True)


@pytest.mark.parametrize("command", [["reconstruct", "x.jpg"], ["fit", "x.jpg", "--checkpoint", "m.pt"]])
def test_the_flip_option_reaches_the_reconstructor(monkeypatch, tmp_path, command):
    from vitdeca.cli import main
    from vitdeca.errors import VitdecaError
    from vitdeca.pipeline import Reconstructor

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.jpg").write_bytes(b"not read: the model is built first")
    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs["flip"])
        raise VitdecaError("stop here")

    monkeypatch.setattr(Reconstructor, "from_pretrained", record)
    monkeypatch.setattr("vitdeca.cli.reconstruct.choose_model", lambda checkpoint, method: ("m.pt", "refine"))
    for extra in ([], ["--flip"], ["--no-flip"]):
        assert main([*command, "--out", "out", *extra]) == 2
    assert seen == [None, True, False]
