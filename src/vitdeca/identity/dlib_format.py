"""A reader for dlib's binary serialisation of DNN networks (``*.dat`` files from ``dlib::serialize``).

Written from dlib's public format description (``dlib/serialize.h``, ``dlib/float_details.h``,
``dlib/dnn/tensor.h``, ``dlib/dnn/core.h``, ``dlib/dnn/layers.h``, ``dlib/dnn/input.h``, ``dlib/dnn/loss.h``):

- integer: one control byte (bit 7 = negative, bits 0-3 = number of magnitude bytes), then the
  magnitude in little-endian order;
- floating point: two integers, mantissa then exponent, value ``mantissa * 2**exponent``
  (exponents 32000/32001/32002 mean +inf/-inf/nan);
- string: an integer length, then the raw bytes; bool: the ASCII byte ``'0'`` or ``'1'``;
- tensor (version 2): version, then ``n, k, nr, nc`` as integers, then ``n*k*nr*nc`` little-endian
  float32 values in NCHW order; alias tensor: version 1, then ``n, k, nr, nc``.

A network is serialised from the loss layer inwards: ``add_loss_layer`` (version, loss details,
subnetwork); each ``add_layer`` writes its version, its subnetwork, then its layer details and some
training state; ``tag``/``skip`` layers write a version and their subnetwork. The nesting (which tag
an ``add_prev`` reads) is not in the file, so parsing needs the network's structure: a list of
:class:`Node` from the loss layer down to the input layer, as dlib's C++ type gives it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vitdeca.errors import VitdecaError

_FLOAT_INF, _FLOAT_NINF, _FLOAT_NAN = 32000, 32001, 32002


class DlibFormatError(VitdecaError):
    """A dlib file that cannot be parsed (truncated, corrupt, or not the expected network)."""


class DlibStream:
    """A cursor over the bytes of a dlib file; every read checks bounds and names the file on error."""

    def __init__(self, data: bytes, name: str = "<bytes>") -> None:
        self.data = memoryview(data)
        self.name = name
        self.pos = 0

    def fail(self, problem: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {problem} at byte {self.pos} (corrupt or truncated dlib file)")

    def take(self, count: int) -> memoryview:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail(f"unexpected end of data (wanted {count} bytes)")
        out = self.data[self.pos : self.pos + count]
        self.pos += count
        return out

    def peek(self) -> int:
        if self.pos >= len(self.data):
            raise self.fail("unexpected end of data")
        return self.data[self.pos]

    def int(self) -> int:
        control = self.take(1)[0]
        size = control & 0x0F
        if control & 0x70 or size > 8:
            self.pos -= 1
            raise self.fail(f"invalid integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little") if size else 0
        return -value if control & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        if exponent == _FLOAT_INF:
            return float("inf")
        if exponent == _FLOAT_NINF:
            return float("-inf")
        if exponent >= _FLOAT_NAN:
            return float("nan")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def string(self, max_len: int = 1 << 16) -> str:
        length = self.int()
        if not 0 <= length <= max_len:
            raise self.fail(f"implausible string length {length}")
        return bytes(self.take(length)).decode("latin-1")

    def bool(self) -> bool:
        byte = self.take(1)[0]
        if byte not in (0x30, 0x31):
            self.pos -= 1
            raise self.fail(f"invalid bool byte 0x{byte:02x}")
        return byte == 0x31

    def version(self, allowed: tuple[int, ...], what: str) -> int:
        start = self.pos
        value = self.int()
        if value not in allowed:
            self.pos = start
            raise self.fail(f"unexpected {what} version {value} (expected one of {allowed})")
        return value

    def tensor(self) -> np.ndarray:
        """A ``resizable_tensor`` as a float32 array of shape (n, k, nr, nc)."""
        version = self.int()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version} (only dlib >= 19.0 files are read)")
        shape = tuple(self.int() for _ in range(4))
        if any(d < 0 for d in shape) or int(np.prod(shape, dtype=np.int64)) > (1 << 31):
            raise self.fail(f"implausible tensor shape {shape}")
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(self.take(4 * count), dtype="<f4").astype(np.float32).reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        self.version((1,), "alias_tensor")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


@dataclass(frozen=True)
class Node:
    """One level of dlib's network nesting, outermost first.

    ``kind`` is ``"loss"``, ``"layer"``, ``"tag"``, ``"skip"`` or ``"input"``; for ``"loss"``,
    ``"layer"`` and ``"input"``, ``name`` is the layer type (``"con"``, ``"affine"``, ``"relu"``,
    ``"max_pool"``, ``"avg_pool"``, ``"add_prev"``, ``"fc"``, ``"metric"``, ``"rgb_image_sized"``);
    ``tag`` is the tag id for ``tag``/``skip``/``add_prev`` nodes.
    """

    kind: str
    name: str = ""
    tag: int = 0


@dataclass
class DlibLayer:
    """A parsed layer: its node and its decoded fields (arrays float32, shapes as in torch)."""

    node: Node
    fields: dict = field(default_factory=dict)


def _read_con(s: DlibStream) -> dict:
    params = s.tensor().reshape(-1)
    num_filters, nr, nc = s.int(), s.int(), s.int()
    stride = (s.int(), s.int())
    padding = (s.int(), s.int())
    filters, biases = s.alias_tensor(), s.alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.float()
    n_w = int(np.prod(filters))
    if filters[0] != num_filters or filters[2:] != (nr, nc) or params.size != n_w + int(np.prod(biases)):
        raise s.fail(f"con_ parameter sizes disagree (filters {filters}, params {params.size})")
    weight = params[:n_w].reshape(filters)
    bias = params[n_w:].reshape(num_filters)
    return {"weight": weight, "bias": bias, "stride": stride, "padding": padding}


def _read_affine_params(s: DlibStream) -> tuple[np.ndarray, np.ndarray]:
    params = s.tensor().reshape(-1)
    gamma, beta = s.alias_tensor(), s.alias_tensor()
    n_g = int(np.prod(gamma))
    if params.size != n_g + int(np.prod(beta)):
        raise s.fail(f"affine parameter sizes disagree (gamma {gamma}, params {params.size})")
    return params[:n_g], params[n_g:]


def _read_bn_as_affine(s: DlibStream) -> dict:
    """A ``bn_con2`` layer folded into the affine transform dlib uses at inference."""
    gamma, beta = _read_affine_params(s)
    s.tensor(), s.tensor()  # means, invstds of the last training batch
    running_mean, running_var = s.tensor().reshape(-1), s.tensor().reshape(-1)
    s.int(), s.int()  # num_updates, running_stats_window_size
    for _ in range(4):
        s.float()
    eps = s.float()
    scale = (gamma / np.sqrt(running_var + np.float32(eps))).astype(np.float32)
    return {"scale": scale, "shift": (beta - scale * running_mean).astype(np.float32)}


def _read_affine(s: DlibStream, version: str) -> dict:
    if version == "bn_con2":
        return _read_bn_as_affine(s)
    if version != "affine_":
        raise s.fail(f"expected an affine_ or bn_con2 layer, found '{version}'")
    gamma, beta = _read_affine_params(s)
    mode = s.int()
    if mode != 0:
        raise s.fail(f"affine layer in fc mode ({mode}) is not supported here")
    return {"scale": gamma, "shift": beta}


def _read_pool(s: DlibStream) -> dict:
    size = (s.int(), s.int())
    stride = (s.int(), s.int())
    padding = (s.int(), s.int())
    return {"size": size, "stride": stride, "padding": padding}


def _read_fc(s: DlibStream) -> dict:
    num_outputs, num_inputs = s.int(), s.int()
    params = s.tensor().reshape(-1)
    weights, _ = s.alias_tensor(), s.alias_tensor()  # weights and biases
    bias_mode = s.int()
    for _ in range(4):
        s.float()
    n_w = num_inputs * num_outputs
    if int(np.prod(weights)) != n_w or params.size < n_w:
        raise s.fail(f"fc_ parameter sizes disagree (weights {weights}, params {params.size})")
    # dlib stores W as (num_inputs, num_outputs) row-major: output = input @ W.
    weight = params[:n_w].reshape(num_inputs, num_outputs).T.copy()
    bias = params[n_w:].copy() if bias_mode == 0 else None
    return {"weight": weight, "bias": bias}


_LAYER_VERSIONS = {
    "con": ("con_4",),
    "affine": ("affine_", "bn_con2"),
    "relu": ("relu_",),
    "max_pool": ("max_pool_2",),
    "avg_pool": ("avg_pool_2",),
    "add_prev": ("add_prev_",),
    "fc": ("fc_2",),
}


def _read_layer_details(s: DlibStream, node: Node) -> dict:
    start = s.pos
    version = s.string(max_len=64)
    if version not in _LAYER_VERSIONS.get(node.name, ()):
        s.pos = start
        raise s.fail(f"expected a '{node.name}' layer, found '{version}'")
    if node.name == "con":
        return _read_con(s)
    if node.name == "affine":
        return _read_affine(s, version)
    if node.name in ("max_pool", "avg_pool"):
        return _read_pool(s)
    if node.name == "fc":
        return _read_fc(s)
    return {}


def _read_input(s: DlibStream, node: Node) -> dict:
    start = s.pos
    version = s.string(max_len=64)
    if version != "input_" + node.name:
        s.pos = start
        raise s.fail(f"expected an input_{node.name} layer, found '{version}'")
    mean = np.array([s.float(), s.float(), s.float()], dtype=np.float32)
    fields = {"mean": mean}
    if node.name.endswith("_sized"):
        fields["size"] = (s.int(), s.int())
    return fields


def _read_loss(s: DlibStream, node: Node) -> dict:
    version = s.string(max_len=64)
    if node.name == "metric" and version == "loss_metric_2":
        return {"margin": s.float(), "distance_threshold": s.float()}
    if node.name == "metric" and version == "loss_metric_":
        return {"margin": 0.1, "distance_threshold": 0.75}
    raise s.fail(f"expected a loss_{node.name} layer, found '{version}'")


def _skip_training_state(s: DlibStream, above_input: bool, version: int) -> None:
    """Skip the bools and cached tensors each ``add_layer`` stores after its details."""
    while s.peek() in (0x30, 0x31):
        s.bool()
    s.tensor(), s.tensor()  # x_grad, cached_output
    if above_input:
        s.tensor()  # grad_final
        if version >= 3:
            s.int()  # sample expansion factor
    elif version >= 2:
        s.tensor()  # params_grad


def parse_network(data: bytes, nodes: list[Node], name: str = "<bytes>") -> list[DlibLayer]:
    """Parse a serialised dlib network whose nesting (outermost first) is ``nodes``.

    Returns the layers in forward order: the input layer first, the loss layer last.
    """
    if not nodes or nodes[0].kind != "loss" or nodes[-1].kind != "input":
        raise ValueError("nodes must run from a loss node down to an input node")
    s = DlibStream(data, name)
    s.version((1,), "add_loss_layer")
    loss = DlibLayer(nodes[0], _read_loss(s, nodes[0]))
    body = nodes[1:-1]
    versions = []
    for i, node in enumerate(body):
        above_input = i == len(body) - 1
        allowed = ((2, 3) if above_input else (1, 2)) if node.kind == "layer" else (1,)
        versions.append(s.version(allowed, f"add_{node.kind}_layer"))
    layers = [DlibLayer(nodes[-1], _read_input(s, nodes[-1]))]
    for i in range(len(body) - 1, -1, -1):
        node = body[i]
        fields = {}
        if node.kind == "layer":
            fields = _read_layer_details(s, node)
            _skip_training_state(s, i == len(body) - 1, versions[i])
        layers.append(DlibLayer(node, fields))
    layers.append(loss)
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} unexpected trailing bytes")
    return layers


def read_network_file(path: str | os.PathLike, nodes: list[Node]) -> list[DlibLayer]:
    """Read and parse a dlib network file; any problem is a :class:`DlibFormatError` naming the file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DlibFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise DlibFormatError(f"{path}: cannot read ({exc.strerror})") from exc
    return parse_network(data, nodes, name=str(path))
