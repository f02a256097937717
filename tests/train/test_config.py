"""Training configs: DECA defaults, the repo's YAML files, validation, the loss registry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from vitdeca.config import to_dict
from vitdeca.errors import VitdecaError
from vitdeca.train.config import LOSS_FACTORS, LossConfig, TrainConfig, load_train_config
from vitdeca.train.objective import REGISTRY, LossInputs, compute_losses, weighted_total, weights_for
from vitdeca.train.run import _changed_keys

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
ABLATION = ["resnet50", "vit", "vit_dropkey001", "vit_dropkey005"]


def test_defaults_are_decas_released_weights():
    w = LossConfig()
    assert (w.landmark, w.eye, w.photometric, w.identity) == (1.0, 1.0, 2.0, 0.2)
    assert (w.reg_shape, w.reg_expression, w.reg_albedo, w.reg_light) == (1e-4, 1e-4, 1e-4, 1.0)
    assert (w.detail_photometric, w.symmetry, w.reg_displacement) == (2.0, 5e-3, 5e-3)
    assert w.weighted_landmarks and w.shape_consistency and w.detail_consistency


def test_every_float_loss_field_is_a_registered_term_and_back():
    weights = {
        f.name
        for f in dataclasses.fields(LossConfig)
        if f.type in ("float", float) and f.name not in LOSS_FACTORS
    }
    assert weights == set(REGISTRY)
    assert list(weights_for(LossConfig(), "coarse"))[:3] == ["landmark", "eye", "lip"]
    assert "symmetry" in weights_for(LossConfig(), "detail") and "landmark" not in weights_for(
        LossConfig(), "detail"
    )
    assert "eye" not in weights_for(LossConfig(eye=0.0), "coarse")


def test_ablation_configs_differ_only_in_encoder_and_dropkey():
    configs = {name: to_dict(load_train_config(CONFIGS / "ablation" / f"{name}.yaml")) for name in ABLATION}
    for name in ABLATION[1:]:
        assert set(_changed_keys(configs["resnet50"], configs[name])) <= {"model.encoder", "model.dropkey"}
    assert configs["vit_dropkey005"]["model"]["dropkey"] == 0.05
    assert configs["vit_dropkey001"]["model"]["dropkey"] == 0.01
    assert configs["resnet50"]["model"]["encoder"] == "resnet50"


def test_cpu_tiny_is_a_small_vit_with_dropkey():
    config = load_train_config(CONFIGS / "cpu_tiny.yaml")
    assert config.model.encoder == "vit_small_patch16_224" and config.model.dropkey > 0
    assert config.model.image_size == config.data.image_size


def test_yaml_overrides_and_clear_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 3.0e-4}\nrun: {coarse_steps: 5}\n")
    config = load_train_config(path, ["optim.lr=1e-3", "stages=[coarse]"])
    assert config.optim.lr == pytest.approx(1e-3) and isinstance(
        config.optim.lr, float
    )  # '1e-3' read as text
    assert config.run.coarse_steps == 5 and config.stages == ["coarse"]
    with pytest.raises(VitdecaError, match="unknown config key .*learning_rate"):
        load_train_config(path, ["optim.learning_rate=1"])
    with pytest.raises(VitdecaError, match="'optim.lr' must be a number"):
        load_train_config(path, ["optim.lr=fast"])
    with pytest.raises(VitdecaError, match="order coarse, detail"):
        load_train_config(path, ["stages=[detail, coarse]"])
    with pytest.raises(VitdecaError, match="needs model.detail: true"):
        load_train_config(path, ["model.detail=false"])
    with pytest.raises(VitdecaError, match="training needs an encoder"):  # encoder=None: fitting only
        load_train_config(path, ["model.encoder=null"])
    with pytest.raises(VitdecaError, match="model.image_size .* must equal data.image_size"):
        load_train_config(path, ["data.image_size=64"])
    with pytest.raises(VitdecaError, match="model.dropkey must be in"):
        load_train_config(path, ["model.dropkey=1.5"])


class _Recon:
    def __init__(self, landmarks2d, codes):
        self.landmarks2d = landmarks2d
        self.alpha = torch.ones(2, 1, 8, 8)
        self.image = torch.full((2, 3, 8, 8), 0.25)
        self.codes, self.landmarks3d = codes, torch.zeros(2, 68, 3)
        self.depth = torch.full((2, 1, 8, 8), 1e3)  # a surface far behind every landmark: all visible


class _Identity:
    """Embeds an image as its mean colour."""

    def embed(self, images, landmarks):
        return images.mean(dim=(2, 3))


def _inputs(config: LossConfig, identity=None) -> LossInputs:
    from vitdeca.codes import CodeLayout, Codes

    target = torch.full((2, 68, 2), 4.0)
    codes = Codes.zeros(CodeLayout(n_shape=2, n_expression=2, n_pose=3, n_albedo=2), batch_size=2)
    codes.shape[:] = 1.0  # reg_shape = mean_b Σ 1/2 = 1
    return LossInputs(
        images=torch.full((2, 3, 8, 8), 0.75), landmarks=target, masks=torch.ones(2, 1, 8, 8),
        codes=codes, recon=_Recon(target + 2.0, codes), config=config, identity=identity,
    )  # fmt: skip


def test_registry_evaluates_terms_on_a_reconstruction_and_weights_them():
    config = LossConfig(weighted_landmarks=False)
    weights = weights_for(config, "coarse")
    values = compute_losses(weights, _inputs(config))
    assert "identity" not in values  # no identity network given: skipped
    assert values["landmark"].item() == pytest.approx(0.5)  # 2 px in an 8 px crop = 0.5, both axes
    assert values["eye"].item() == 0.0 and values["lip"].item() == 0.0  # a rigid shift
    assert values["photometric"].item() == pytest.approx(0.5)
    assert values["reg_shape"].item() == pytest.approx(1.0) and values["reg_albedo"].item() == 0.0
    total = weighted_total(values, weights)
    assert total.item() == pytest.approx(1.0 * 0.5 + 2.0 * 0.5 + 1e-4 * 1.0 + values["reg_light"].item())
    with_identity = compute_losses(weights, _inputs(config, identity=_Identity()))
    # render (0.25 grey everywhere, alpha 1) vs image (0.75 grey): parallel mean colours → cosine 1
    assert with_identity["identity"].item() == pytest.approx(0.0, abs=1e-6)


def test_missing_vgg19_weights_give_a_clear_message(tmp_path):
    from vitdeca.train.objective import load_idmrf
    from vitdeca.train.run import load_mrf

    with pytest.raises(VitdecaError, match="ID-MRF needs ImageNet VGG19 weights.*losses.mrf=0"):
        load_idmrf(str(tmp_path / "missing.pth"))
    config = TrainConfig()
    config.losses.vgg19_weights = str(tmp_path / "missing.pth")
    assert load_mrf(config, torch.device("cpu")) is None  # warned; the rest trains


def test_idmrf_module_is_near_zero_for_identical_images_and_trains_the_generated_side():
    from vitdeca.train.objective import IDMRF

    torch.manual_seed(0)
    layers = []
    for i in range(23):  # VGG19's layer count up to relu4_2: conv, relu, conv, relu, ...
        layers.append(torch.nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) if i % 2 == 0 else torch.nn.ReLU())
        if i % 2 == 0:
            torch.nn.init.kaiming_normal_(layers[-1].weight, nonlinearity="relu")  # keeps the scale
    mrf = IDMRF(torch.nn.Sequential(*layers))
    target = torch.rand(1, 3, 8, 8)
    assert mrf(target, target).item() == pytest.approx(0.0, abs=1e-3)
    generated = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss = mrf(generated, target)
    loss.backward()
    assert loss.item() > 1e-2 and generated.grad.abs().sum() > 0
    assert all(p.grad is None for p in mrf.parameters())  # frozen


def test_uv_mirror_axis_of_a_layout_mirrored_about_the_middle():
    from types import SimpleNamespace

    from vitdeca.train.objective import uv_mirror_axis

    gen = torch.Generator().manual_seed(0)
    left = torch.rand(20, 3, generator=gen) + torch.tensor([0.1, 0.0, 0.0])  # x > 0
    vertices = torch.cat([left, left * torch.tensor([-1.0, 1.0, 1.0])])
    u = 0.5 - 0.4 * left[:, 0:1] / 1.1  # left half of the map; the mirror vertex at 1 − u
    uv = torch.cat([torch.cat([u, left[:, 1:2]], 1), torch.cat([1 - u, left[:, 1:2]], 1)])
    faces = torch.arange(40).reshape(-1, 1).repeat(1, 3)  # degenerate faces: enough for a vertex → uv map
    head = SimpleNamespace(name="toy", template_vertices=vertices, faces=faces, uv_faces=faces, uv_coords=uv,
                           face_mask=torch.ones(40, dtype=torch.bool))  # fmt: skip
    assert uv_mirror_axis(head) == pytest.approx(0.5)
    head.uv_coords = uv * torch.tensor([0.5, 1.0])  # the same layout squeezed into the map's left half
    assert uv_mirror_axis(head) == pytest.approx(0.25)


def test_relative_data_and_init_paths_resolve_from_the_configs_folder(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "data" / "faces").mkdir(parents=True)
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "first.pt").write_bytes(b"")
    path = tmp_path / "configs" / "c.yaml"
    path.write_text(
        "data: {manifest: ../data/faces, extra_manifests: [../data/faces]}\n"
        "run: {init: ../weights/first.pt}\n"
    )
    monkeypatch.chdir(tmp_path / "data")  # neither path exists from here
    config = load_train_config(path)
    assert config.data.manifest == str(tmp_path / "data" / "faces")
    assert config.data.extra_manifests == [str(tmp_path / "data" / "faces")]
    assert config.run.init == str(tmp_path / "weights" / "first.pt")
    assert load_train_config(path, ["run.init="]).run.init == ""  # no init stays none
