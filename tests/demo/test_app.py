"""The demo page: its handler (one-line errors, never a traceback), the server making no outbound
connection and loading nothing from another host, and the ``vitdeca demo`` command's user errors."""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from vitdeca.cli import main
from vitdeca.cli.demo import is_loopback
from vitdeca.demo.engine import DemoEngine, DemoResult

gr = pytest.importorskip("gradio", reason="the demo needs the [demo] extra (gradio)")
from vitdeca.demo import app as demo_app  # noqa: E402


class FakeEngine(DemoEngine):
    """An engine whose run returns ``result`` (or raises ``error``) and records its arguments."""

    def __init__(self, tmp_path: Path, result=None, error: BaseException | None = None) -> None:
        super().__init__(workdir=tmp_path, factory=lambda m, d: None)
        self.result, self.error, self.calls = result, error, []

    def run(self, source, method=None, detail=True, all_faces=False, progress=None):
        self.calls.append((source, method, detail, all_faces))
        if self.error is not None:
            raise self.error
        progress(0.5, "halfway")
        return self.result


def test_handler_shows_the_files(tmp_path):
    files = {n: tmp_path / n for n in ("a_vis.png", "a.glb", "a_depth.png", "bars.png", "a.zip")}
    result = DemoResult("a.png", "image", "fit", "a.png: 1 face reconstructed", 2.5, vis=files["a_vis.png"],
                        model=files["a.glb"], depth=files["a_depth.png"], arkit_chart=files["bars.png"],
                        arkit_note="ARKit blendshape weights", zip=files["a.zip"])  # fmt: skip
    engine = FakeEngine(tmp_path, result)
    reported = []

    def progress(fraction, desc):
        reported.append(desc)

    out = demo_app.handle(engine, None, "/tmp/snap.png", "fit", True, False, progress)
    assert engine.calls == [("/tmp/snap.png", "fit", True, False)]  # no upload: the webcam snapshot
    assert reported == ["halfway"]
    status, vis, video, model, depth, arkit, note, archive = out
    assert status == "a.png: 1 face reconstructed (fit, 2.5 s)"
    assert vis["value"] == str(files["a_vis.png"]) and vis["visible"] and not video["visible"]
    assert (model, depth, archive) == (str(files["a.glb"]), str(files["a_depth.png"]), str(files["a.zip"]))
    assert arkit["visible"] and arkit["value"] == str(files["bars.png"]) and note == result.arkit_note
    assert len(out) == demo_app.N_OUTPUTS


def test_handler_prefers_the_upload(tmp_path):
    engine = FakeEngine(tmp_path, DemoResult("u.jpg", "image", "fit", "ok", 1.0))
    demo_app.handle(engine, "/tmp/u.jpg", "/tmp/snap.png", "fit", False, True)
    assert engine.calls == [("/tmp/u.jpg", "fit", False, True)]


def test_bad_file_is_the_cli_line(engine, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"this is no image")
    status, *rest = demo_app.handle(engine, str(bad), None, "fit", False, False)
    assert status.startswith("error: broken.jpg: not a readable image (") and "\n" not in status
    vis, video, model, depth, arkit, note, archive = rest
    assert model is None and depth is None and archive is None and note == ""
    assert vis["value"] is None and not video["visible"] and not arkit["visible"]


def test_a_bug_shows_one_line_and_logs_the_traceback(tmp_path, caplog):
    engine = FakeEngine(tmp_path, error=RuntimeError("exploded\nsecond line"))
    status, *_ = demo_app.handle(engine, "/tmp/x.jpg", None, "fit", False, False)
    assert status == "error: internal error (RuntimeError: exploded); see the server log"
    assert "Traceback" in caplog.text and "second line" in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_stays_local(tmp_path, monkeypatch):
    """Launched in this process with every non-loopback connection refused and recorded: the server
    makes none (no analytics, no version check), and its page references no other host."""
    outbound: list[str] = []
    connect = socket.socket.connect

    def guarded(sock, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not ipaddress.ip_address(host).is_loopback:
            outbound.append(host)
            raise OSError("outbound connection refused by the test")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    engine = DemoEngine(workdir=tmp_path, factory=lambda m, d: None)
    port = _free_port()
    app = demo_app.launch(engine, port=port, block=False, quiet=True)
    try:
        assert app.analytics_enabled is False and app.share is False
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
            html = response.read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=60) as response:
            config = response.read().decode()
    finally:
        app.close()
    assert outbound == []
    assert "vitdeca" in html and '"analytics_enabled":false' in config.replace(" ", "")
    external = re.findall(r"<(?:script|link|img)[^>]*(?:src|href)=[\"']((?:https?:)?//[^\"']+)", html)
    assert external == []


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.1.2.3"])
def test_loopback_hosts(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.4", "example.org", "::"])
def test_other_hosts(host):
    assert not is_loopback(host)


def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitdeca: error:") and len(err.strip().splitlines()) == 1
    return err


def test_cli_user_errors(tmp_path, capsys):
    assert "no such checkpoint file" in _cli_error(["demo", "--checkpoint", str(tmp_path / "x.pt")], capsys)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "cannot listen there" in _cli_error(["demo", "--port", str(port)], capsys)


def test_cli_without_gradio(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert 'pip install "vitdeca[demo]"' in _cli_error(["demo"], capsys)
