"""DecaModel: encode/decode shapes for each encoder, priors, checkpoints."""

from __future__ import annotations

import pytest
import torch

from vitdeca.codes import Codes
from vitdeca.errors import VitdecaError
from vitdeca.model import DecaModel, ModelConfig

SMALL = dict(uv_size=64, n_albedo=8)


@pytest.fixture(scope="module")
def head(ict_head):
    return ict_head


@pytest.mark.parametrize("encoder", ["resnet50", "vit_small_patch16_224"])
def test_encode_decode_shapes(head, encoder):
    torch.manual_seed(0)
    dropkey = 0.05 if encoder.startswith("vit") else 0.0
    model = DecaModel(ModelConfig(encoder=encoder, dropkey=dropkey, **SMALL), head=head).eval()
    images = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        codes = model.encode(images)
        recon = model.decode(codes)
    n_vertices = head.template_vertices.shape[0]
    assert codes.shape.shape == (2, head.n_shape) and codes.light.shape == (2, 9, 3)
    assert codes.detail.shape == (2, 128)
    assert recon.vertices.shape == (2, n_vertices, 3)
    assert recon.landmarks3d.shape == (2, 68, 3) and recon.landmarks2d.shape == (2, 68, 2)
    for name in ("image", "shading", "normal_image", "shape_image", "detail_image", "detail_normal_image"):
        assert getattr(recon, name).shape == (2, 3, 224, 224), name
    assert recon.alpha.shape == (2, 1, 224, 224)
    assert recon.albedo_uv.shape == (2, 3, 64, 64)
    assert recon.displacement_uv.shape == (2, 1, 64, 64)
    assert torch.isfinite(recon.detail_image).all()


def test_a_model_for_fitting_has_no_encoders(head):
    """encoder=None: the head, decoders and renderer only; encoding is a programming error."""
    model = DecaModel(ModelConfig(encoder=None, image_size=64, **SMALL), head=head).eval()
    assert model.encoder is None and model.detail_encoder is None
    assert not [key for key in model.state_dict() if "encoder" in key]
    with pytest.raises(ValueError, match="no encoder"):
        model.encode(torch.rand(1, 3, 64, 64))
    codes = model.neutral_codes(2)
    with torch.no_grad():
        recon = model.decode(codes)
        both, second = model.detail_mesh(recon), model.detail_mesh(recon, index=1)
    assert recon.displacement_uv.shape == (2, 1, 64, 64)  # the detail decoder is there for given codes
    assert torch.equal(second.vertices[0], both.vertices[1]) and torch.equal(second.faces, both.faces)


def test_neutral_codes_put_face_in_crop_centre(head):
    model = DecaModel(ModelConfig(detail=False, **SMALL), head=head)
    with torch.no_grad():
        recon = model.decode(model.neutral_codes(1))
    lmk = recon.landmarks2d[0]
    extent = (lmk.amax(0) - lmk.amin(0)).max()
    centre = (lmk.amax(0) + lmk.amin(0)) / 2
    # DECA's crop: the landmarks' box is 1/1.25 of the 224-pixel crop, centred.
    assert torch.allclose(extent, torch.tensor(224 / 1.25), atol=1e-3)
    assert torch.allclose(centre, torch.tensor([112.0, 112.0]), atol=1e-3)
    # ambient light: band 0 alone gives unit shading, so the render shows the albedo inside the face
    inside = recon.alpha[0, 0] > 0
    assert torch.allclose(recon.shading[0, :, inside], torch.ones(()), atol=1e-5)
    assert recon.detail_image is None


def test_codes_round_trip_through_flat_vector(head):
    model = DecaModel(ModelConfig(detail=False, **SMALL), head=head)
    flat = torch.randn(3, model.layout.n_coarse)
    codes = Codes.split(flat, model.layout)
    assert torch.equal(codes.cat(), flat)
    assert Codes.concat([codes.index(0), codes.index(slice(1, 3))]).cat().equal(flat)


def test_with_rows_puts_a_subset_back_in_order():
    from vitdeca.codes import CodeLayout

    layout = CodeLayout(n_shape=4, n_expression=3, n_pose=3, n_albedo=2, n_detail=5)
    codes = Codes.zeros(layout, batch_size=4)
    other = Codes.zeros(layout, batch_size=2)
    other.shape[:] = torch.tensor([[1.0], [2.0]])
    merged = codes.with_rows([3, 1], other)
    assert merged.shape[:, 0].tolist() == [0.0, 2.0, 0.0, 1.0]
    assert codes.shape.abs().sum() == 0  # a copy: the original is untouched
    assert merged.with_rows([0], other.index(0).replace(detail=None)).detail is None  # as Codes.concat


def test_gradients_reach_encoder(head):
    torch.manual_seed(0)
    model = DecaModel(ModelConfig(detail=False, **SMALL), head=head).train()
    recon = model.decode(model.encode(torch.rand(2, 3, 224, 224)))
    (recon.image.mean() + recon.landmarks2d.mean()).backward()
    grads = [p.grad for p in model.encoder.head.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_checkpoint_round_trip(head, tmp_path):
    torch.manual_seed(0)
    model = DecaModel(ModelConfig(dropkey=0.01, **SMALL), head=head).eval()
    path = tmp_path / "model.pt"
    model.save(path)
    assert not list(tmp_path.glob(".*tmp"))
    loaded = DecaModel.load(path, head=head).eval()
    images = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        a, b = model.decode(model.encode(images)), loaded.decode(loaded.encode(images))
    assert torch.equal(a.image, b.image) and torch.equal(a.detail_image, b.detail_image)
    assert loaded.config == model.config
    # the head model's bases come from its asset (checked by checksum), not from the checkpoint
    assert not [key for key in model.state_dict() if key.startswith("head.")]


def test_checkpoint_with_other_head_model_is_refused(head, tmp_path):
    model = DecaModel(ModelConfig(detail=False, **SMALL), head=head)
    payload = model.checkpoint_payload()
    payload["head_model"] = {"name": "flame", "checksum": "0" * 64}
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(VitdecaError, match="trained with head model flame"):
        DecaModel.load(tmp_path / "other.pt", head=head)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", None])
def test_bad_checkpoint_files(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VitdecaError, match="bad.pt"):
        DecaModel.load(path)


def test_decode_under_bf16_autocast_renders_in_float32(head):
    from vitdeca.model import DecaModel, ModelConfig

    torch.manual_seed(0)
    config = ModelConfig(encoder="vit_tiny_patch16_224", image_size=64, uv_size=32, n_albedo=8, pool="mean")
    model = DecaModel(config, head=head).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        codes = model.encode(images)
        reference = model.decode(codes)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.decode(codes._map(lambda t: t.bfloat16()))
    rounded = model.decode(codes._map(lambda t: t.bfloat16().float()))  # what bf16 codes can hold
    for name in ("vertices", "landmarks2d", "image", "depth", "detail_image"):
        assert getattr(mixed, name).dtype == torch.float32, name
    torch.testing.assert_close(mixed.vertices, rounded.vertices)  # the geometry ran in float32
    torch.testing.assert_close(mixed.landmarks2d, rounded.landmarks2d)
    assert torch.equal(mixed.render.fragments.face_index, rounded.render.fragments.face_index)
    assert (mixed.image - reference.image).abs().mean() < 0.02  # only the decoders ran in bf16


@pytest.mark.parametrize("flip", [False, True])
def test_encode_under_bf16_autocast_returns_float32_codes(head, flip):
    """Under bfloat16 autocast (:func:`inference_autocast`) the encoders compute in bf16 but the codes are
    float32 (a bf16 camera translation would move the face by a fraction of a pixel)."""
    from vitdeca.model import inference_autocast

    torch.manual_seed(0)
    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", image_size=64, **SMALL), head=head).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad(), inference_autocast("cpu", "bf16"):
        assert model.encoder(images).dtype == torch.bfloat16
        codes = model.encode(images, flip=flip)
    assert all(getattr(codes, name).dtype == torch.float32 for name in ("shape", "camera", "light", "detail"))
    with pytest.raises(VitdecaError, match="unknown precision"):
        inference_autocast("cpu", "half")


def test_renders_are_the_detail_pass_when_it_ran(head):
    """``Reconstruction.renders()``: the (textured, shape) renders reconstruct keeps: the detail pass's
    when the detail branch ran, else the coarse pass's (each made once, when first read)."""
    torch.manual_seed(0)
    model = DecaModel(ModelConfig(encoder="vit_tiny_patch16_224", image_size=64, **SMALL), head=head).eval()
    with torch.no_grad():
        codes = model.encode(torch.rand(1, 3, 64, 64))
        coarse, full = model.decode(codes, detail=False), model.decode(codes)
    assert coarse.detail_render is None and coarse.detail_image is None
    assert coarse.renders()[0] is coarse.image and coarse.renders()[1] is coarse.shape_image
    assert full.renders()[0] is full.detail_image and full.renders()[1] is full.detail_shape_image
    assert "image" not in vars(full.render)  # the coarse pass's textured image was never needed


def test_the_ict_head_is_rendered_with_back_faces_culled(head):
    """ICT-FaceKit's faces point outward, so the model's renderer culls back faces; on posed, expressive
    heads that changes almost no pixel (a face seen from behind is hidden by a nearer one)."""
    from vitdeca.render.rasterize import rasterize

    model = DecaModel(ModelConfig(encoder=None, image_size=96, **SMALL), head=head)
    assert model.renderer.cull_backfaces
    torch.manual_seed(0)
    codes = model.neutral_codes(4)
    codes = codes.replace(
        shape=torch.randn(4, head.n_shape),
        expression=torch.rand(4, head.n_expression) * 0.6,
        pose=torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.6, 0.0], [-0.2, -1.2, 0.1], [0.3, 0.3, 0.0]]),
    )
    with torch.no_grad():
        vertices = model.head(codes.shape, codes.expression, codes.pose).vertices
        screen = model.renderer.to_screen(vertices, codes.camera, 96, 96)
    both, culled = (rasterize(screen, head.faces, 96, 96, cull_backfaces=c).face_index for c in (False, True))
    covered = (both >= 0).sum()
    assert covered > 4 * 96 * 96 * 0.2 and (both != culled).sum() <= 1e-3 * covered


def test_a_batch_decoded_by_row_gives_each_image_its_bits_alone(head):
    """``decode(by_row=True)`` (fitting's photometric stage on a batch): each image's render, albedo and
    geometry, and the gradients of its own loss, are the bits a batch of one gives it; the plain batched
    decode agrees to rounding."""
    torch.manual_seed(0)
    model = DecaModel(ModelConfig(encoder=None, detail=False, image_size=64, **SMALL), head=head)
    with torch.no_grad():
        model.albedo.basis.normal_(0.0, 0.05)  # a learned albedo space (the default starts at zero)
    codes = model.neutral_codes(3)
    codes = codes.replace(
        shape=torch.randn(3, head.n_shape), expression=torch.rand(3, head.n_expression) * 0.3,
        pose=torch.tensor([[0.1, 0.4, 0.0], [-0.2, -0.6, 0.1], [0.0, 0.0, 0.0]]),
        albedo=torch.randn(3, model.albedo.n_albedo), light=codes.light + 0.1 * torch.randn(3, 9, 3),
    )  # fmt: skip
    weights = torch.rand(3, 3, 64, 64)

    def decoded(rows: slice, by_row: bool):
        part = codes.index(rows)
        leaves = {n: getattr(part, n).clone().requires_grad_(True) for n in ("shape", "albedo", "light")}
        recon = model.decode(part.replace(**leaves), by_row=by_row)
        loss = (recon.image * weights[rows]).flatten(1).sum(1)  # each image's own loss
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        return [recon.image.detach(), recon.albedo_uv.detach(), recon.vertices.detach(), *grads]

    batch = decoded(slice(0, 3), by_row=True)
    alone = [decoded(slice(b, b + 1), by_row=True) for b in range(3)]
    plain_one = decoded(slice(0, 1), by_row=False)
    for k, value in enumerate(batch):
        assert torch.equal(alone[0][k], plain_one[k]), k  # by_row on a batch of one is the plain decode
        assert torch.equal(value, torch.cat([a[k] for a in alone])), k
    for value, plain in zip(batch, decoded(slice(0, 3), by_row=False), strict=True):
        # the same values to rounding, which may move a silhouette pixel's coverage and its gradient
        assert (value - plain).abs().mean() <= 1e-2 * plain.abs().mean()
