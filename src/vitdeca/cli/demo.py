"""``vitdeca demo``: a local web page to try vitdeca on a photo or a short video (needs the ``[demo]``
extra: ``pip install "vitdeca[demo]"``).

The page shows the visualisation panel, a 3D viewer of the GLB, the depth map, ARKit weights and a zip of
every file ``vitdeca reconstruct`` writes. It binds to 127.0.0.1 (this machine only) unless ``--host``
says otherwise, sends no analytics and loads nothing from the internet. Without ``--checkpoint`` every
face is reconstructed by per-image fitting, unless the default zoo model is installed (as for
``vitdeca reconstruct``).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import socket
import tempfile

from vitdeca.cli.reconstruct import _positive_int, add_precision_argument

log = logging.getLogger("vitdeca")


def add_parser(subparsers) -> argparse.ArgumentParser:
    from vitdeca.demo.engine import DEFAULT_MAX_FRAMES, DEFAULT_MAX_UPLOAD_MB
    from vitdeca.faces.backends import DEFAULT_BACKEND

    parser = subparsers.add_parser(
        "demo",
        help="a local web page: photo or video in, 3D head, overlays and files out",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (%(default)s: this machine)")
    parser.add_argument("--port", type=_port, default=7860, help="(%(default)s)")
    parser.add_argument(
        "--checkpoint",
        metavar="NAME|PATH",
        help="a zoo model name or a checkpoint file; default: the default model when it is installed, "
        "else per-image fitting only",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(%(default)s)")
    parser.add_argument("--detector", default=DEFAULT_BACKEND, help="face detector backend (%(default)s)")
    add_precision_argument(parser)
    parser.add_argument(
        "--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_MB, metavar="MB", help="(%(default)s)"
    )
    parser.add_argument(
        "--max-frames", type=_positive_int, default=DEFAULT_MAX_FRAMES, metavar="N", help="(%(default)s)"
    )
    parser.add_argument("--workdir", metavar="DIR", help="where jobs are written (a temporary folder)")
    parser.add_argument("--no-examples", action="store_true", help="do not offer the bundled examples")
    parser.add_argument(
        "--no-warmup", action="store_true", help="serve at once (the first request pays the first-call costs)"
    )
    parser.set_defaults(func=run)
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"expected a port number in 1..65535, got {text!r}")
    return value


def is_loopback(host: str) -> bool:
    """True when ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int) -> None:
    """VitdecaError when ``host:port`` cannot be bound (in use, or not an address of this machine)."""
    from vitdeca.errors import VitdecaError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = exc.strerror or exc
            raise VitdecaError(f"--host {host} --port {port}: cannot listen there ({reason})") from exc


def run(args: argparse.Namespace) -> int:
    from vitdeca.errors import VitdecaError

    try:
        import gradio  # noqa: F401
    except ImportError as exc:
        raise VitdecaError(f'the demo needs Gradio ({exc}): pip install "vitdeca[demo]"') from exc
    from vitdeca.cli.reconstruct import choose_model
    from vitdeca.zoo import resolve_model

    checkpoint, _ = choose_model(args.checkpoint, None)  # as reconstruct chooses
    checkpoint = None if checkpoint is None else os.fspath(resolve_model(checkpoint))
    check_port(args.host, args.port)
    if not is_loopback(args.host):
        log.warning("--host %s: the demo is reachable from other machines (no login)", args.host)
    from vitdeca.demo.app import launch
    from vitdeca.demo.engine import DemoEngine
    from vitdeca.demo.examples import write_examples
    from vitdeca.storage import vitdeca_home

    examples = write_examples(vitdeca_home() / "demo_examples")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix="vitdeca-demo-"))
        engine = DemoEngine(
            checkpoint,
            device=args.device,
            detector=args.detector,
            precision=args.precision,
            workdir=workdir,
            max_upload_mb=args.max_upload_mb,
            max_frames=args.max_frames,
        )
        sample = None if args.no_warmup else examples[0]
        log.info(
            "loading the %s model%s",
            engine.default_method,
            f", warming up on {sample.name}" if sample else "",
        )
        engine.warm_up(sample)
        launch(engine, host=args.host, port=args.port, examples=None if args.no_examples else examples)
    return 0
