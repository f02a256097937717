"""dlib's serialisation: primitives on hand-made bytes, a small hand-built network, corrupt files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from vitdeca.errors import VitdecaError
from vitdeca.identity import dlib_model_path
from vitdeca.identity.dlib_format import DlibFormatError, DlibStream, Node, parse_network, read_network_file
from vitdeca.identity.dlib_resnet import network_nodes


# An independent writer for the test network, following dlib/serialize.h.
def enc_int(value: int) -> bytes:
    magnitude = abs(value).to_bytes(8, "little").rstrip(b"\0")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def enc_float(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)
    mantissa, exponent = int(mantissa * 2**53), exponent - 53
    while mantissa and mantissa % 256 == 0:
        mantissa, exponent = mantissa // 256, exponent + 8
    return enc_int(mantissa) + enc_int(exponent)


def enc_str(text: str) -> bytes:
    return enc_int(len(text)) + text.encode()


def enc_tensor(array: np.ndarray) -> bytes:
    shape = array.shape + (1,) * (4 - array.ndim)
    return enc_int(2) + b"".join(enc_int(d) for d in shape) + array.astype("<f4").tobytes()


def enc_alias(*shape: int) -> bytes:
    return enc_int(1) + b"".join(enc_int(d) for d in shape)


EMPTY = enc_tensor(np.zeros((0, 0, 0, 0), np.float32))


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"\x00", 0),
        (b"\x01\x05", 5),
        (b"\x81\x05", -5),
        (b"\x02\x80\x12", 4736),
        (b"\x03\x01\x00\x01", 65537),
    ],
)
def test_integers(data: bytes, value: int) -> None:
    assert DlibStream(data).int() == value


def test_floats_strings_bools() -> None:
    # 0.04f in dlib's encoding: mantissa 0xa3d70a = 10737418, exponent -28 (bytes from the model file).
    s = DlibStream(b"\x03\x0a\xd7\xa3\x81\x1c" + b"\x01\x05relu_" + b"10" + b"\x00\x02\x00\x7d")
    assert s.float() == 10737418 * 2.0**-28 == pytest.approx(0.04, rel=1e-7)
    assert s.string() == "relu_"
    assert s.bool() is True and s.bool() is False
    assert s.float() == math.inf  # exponent 32000 marks +inf
    assert s.pos == len(s.data)


def test_tensor_layout() -> None:
    values = np.arange(4, dtype=np.float32)
    t = DlibStream(enc_int(2) + b"".join(enc_int(d) for d in (1, 2, 1, 2)) + values.tobytes()).tensor()
    assert t.shape == (1, 2, 1, 2)
    np.testing.assert_array_equal(t.reshape(-1), values)


@pytest.mark.parametrize(
    ("data", "method", "message"),
    [
        (b"\x02\x80", "int", "unexpected end"),
        (b"\x30", "int", "control byte"),
        (b"2", "bool", "bool byte"),
        (b"\x01\x09abc", "string", "unexpected end"),
        (enc_int(1) + enc_int(1), "tensor", "tensor version 1"),
    ],
)
def test_bad_primitives_raise(data: bytes, method: str, message: str) -> None:
    with pytest.raises(DlibFormatError, match=message) as info:
        getattr(DlibStream(data, "x.dat"), method)()
    assert str(info.value).startswith("x.dat: ")


def _small_network(con_weight: np.ndarray, con_bias: np.ndarray, fc_w: np.ndarray) -> bytes:
    """loss_metric<fc_no_bias<relu<con 2 1x1 /1<input_rgb_image_sized<4>>>>> as dlib writes it."""
    state = b"010" + EMPTY + EMPTY + EMPTY  # bools, x_grad, cached_output, params_grad / grad_final
    data = enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6)
    data += enc_int(2) + enc_int(2) + enc_int(3)  # add_layer versions: fc, relu, con (above the input)
    data += enc_str("input_rgb_image_sized") + enc_float(122.5) + enc_float(117.0) + enc_float(104.25)
    data += enc_int(4) + enc_int(4)
    params = np.concatenate([con_weight.reshape(-1), con_bias])
    data += (
        enc_str("con_4")
        + enc_tensor(params[:, None, None, None])
        + b"".join(map(enc_int, (2, 1, 1, 1, 1, 0, 0)))
    )
    data += enc_alias(2, 3, 1, 1) + enc_alias(1, 2, 1, 1) + b"".join(enc_float(v) for v in (1, 1, 1, 0))
    data += state + enc_int(1)  # sample expansion factor of the add_layer above the input (version 3)
    data += enc_str("relu_") + state
    data += enc_str("fc_2") + enc_int(3) + enc_int(2) + enc_tensor(fc_w.reshape(-1, 1, 1, 1))
    data += (
        enc_alias(2, 3, 1, 1)
        + enc_alias(0, 1, 1, 1)
        + enc_int(1)
        + b"".join(enc_float(v) for v in (1, 1, 1, 0))
    )
    return data + state


SMALL_NODES = [Node("loss", "metric"), Node("layer", "fc"), Node("layer", "relu"), Node("layer", "con")]
SMALL_NODES += [Node("input", "rgb_image_sized")]


def test_small_network_round_trip() -> None:
    con_w, con_b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -0.5], np.float32)
    fc_w = np.arange(6, dtype=np.float32).reshape(2, 3)  # dlib: (num_inputs, num_outputs)
    layers = parse_network(_small_network(con_w, con_b, fc_w), SMALL_NODES)
    assert [layer.node.name for layer in layers] == ["rgb_image_sized", "con", "relu", "fc", "metric"]
    np.testing.assert_array_equal(layers[0].fields["mean"], np.array([122.5, 117.0, 104.25], np.float32))
    assert layers[0].fields["size"] == (4, 4)
    np.testing.assert_array_equal(layers[1].fields["weight"], con_w.reshape(2, 3, 1, 1))
    np.testing.assert_array_equal(layers[1].fields["bias"], con_b)
    assert layers[1].fields["stride"] == (1, 1) and layers[1].fields["padding"] == (0, 0)
    np.testing.assert_array_equal(layers[3].fields["weight"], fc_w.T)  # torch layout (out, in)
    assert layers[4].fields["distance_threshold"] == pytest.approx(0.6)


def test_small_network_wrong_structure() -> None:
    data = _small_network(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros((2, 3), np.float32))
    nodes = SMALL_NODES[:2] + [Node("layer", "affine")] + SMALL_NODES[3:]
    with pytest.raises(DlibFormatError, match="expected a 'affine' layer, found 'relu_'"):
        parse_network(data, nodes, name="small.dat")
    with pytest.raises(DlibFormatError, match="trailing bytes"):
        parse_network(data + b"\x00", SMALL_NODES)


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return dlib_model_path().read_bytes()


def test_real_model_parses(model_bytes: bytes) -> None:
    layers = parse_network(model_bytes, network_nodes())
    names = [layer.node.name or layer.node.kind for layer in layers]
    assert names.count("con") == 29 and names.count("affine") == 29 and names.count("add_prev") == 14
    assert layers[0].fields["size"] == (150, 150)
    np.testing.assert_allclose(layers[0].fields["mean"], [122.782, 117.001, 104.298], atol=1e-3)
    assert layers[-2].fields["weight"].shape == (128, 256)


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda b: b[: len(b) // 2], "unexpected end of data"),
        (lambda b: b[:-3], "unexpected end of data"),
        (lambda b: b"", "unexpected end of data"),
        (lambda b: bytes(range(256)) * 8, "corrupt or truncated"),
        (lambda b: b.replace(b"con_4", b"cxn_4", 1), "expected a 'con' layer, found 'cxn_4'"),
        (lambda b: b.replace(b"input_rgb_image_sized", b"input_rgb_image_sizex", 1), "input_rgb_image_sized"),
    ],
)
def test_corrupt_model_file(tmp_path: Path, model_bytes: bytes, corrupt, message: str) -> None:
    path = tmp_path / "broken.dat"
    path.write_bytes(corrupt(model_bytes))
    with pytest.raises(VitdecaError, match=message) as info:
        read_network_file(path, network_nodes())
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VitdecaError, match="file not found"):
        read_network_file(tmp_path / "nope.dat", network_nodes())


def test_other_architecture_is_rejected(model_bytes: bytes) -> None:
    fewer_blocks = network_nodes(
        ((32, 3, False), (64, 4, True), (128, 3, True), (256, 2, True), (256, 1, True))
    )
    with pytest.raises(DlibFormatError, match="expected"):
        parse_network(model_bytes, fewer_blocks, name="model.dat")
