"""The demo in a real browser: ``vitdeca demo`` is started on a free localhost port and driven with
Playwright through Debian's headless Chromium (no browser download). Every request to another host is
aborted and recorded, so the page must work with the network cut off.

The screenshot and the timings go to ``$VITDECA_ARTIFACTS`` (else the test's temporary folder); the
README's ``docs/images/demo.png`` is made with ``VITDECA_ARTIFACTS=docs/images``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ..browser import local_only

pytest.importorskip("gradio", reason="the demo needs the [demo] extra (gradio)")
pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (pip)")

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 900  # imports, the model and the warm-up reconstruction; slow on a loaded machine
RESULT_TIMEOUT_S = 600  # fitting on a loaded 2-core machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(ict_archive, ict_home, tmp_path_factory):
    """``vitdeca demo`` on a free port: (url, seconds from spawn to serving)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("demo_server") / "server.log"
    env = dict(os.environ, VITDECA_ICT_FACEKIT=str(ict_archive), VITDECA_HOME=str(ict_home))
    args = [
        sys.executable,
        "-m",
        "vitdeca",
        "demo",
        "--port",
        str(port),
        "--max-upload-mb",
        "8",
        "--max-frames",
        "3",
    ]
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"vitdeca demo exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            if time.perf_counter() - start > START_TIMEOUT_S:
                pytest.fail(f"vitdeca demo did not start in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=5).close()
                break
            except OSError:
                time.sleep(1)
        yield url, time.perf_counter() - start
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def page(browser, server):
    """A fresh page on the demo, with every request to another host aborted and recorded."""
    url, _ = server
    context = browser.new_context(
        viewport={"width": 1400, "height": 1150}, accept_downloads=True, permissions=["camera"]
    )
    page = context.new_page()
    page.external = local_only(page, url)
    page.goto(url)
    page.wait_for_selector("#run")
    yield page
    context.close()


def _run(page, file) -> tuple[str, float]:
    """Upload ``file`` (a path or a Playwright file payload), press Reconstruct, wait for the message."""
    page.set_input_files("#upload input[type=file]", file)
    _wait_uploaded(page, Path(file).name if isinstance(file, Path) else file["name"])
    return _press_run(page)


def _wait_uploaded(page, name: str) -> None:
    """Wait until the upload box lists ``name`` (Gradio's file preview labels the row with it)."""
    page.wait_for_selector(f'#upload [aria-label="{name}"]', timeout=120_000)


def _press_run(page) -> tuple[str, float]:
    """Press Reconstruct and wait for the message; (message, seconds)."""
    start = time.perf_counter()
    page.click("#run")
    page.wait_for_function(
        "() => { const t = document.querySelector('#status textarea'); return t && t.value.length > 0 }",
        timeout=RESULT_TIMEOUT_S * 1000,
    )
    return page.input_value("#status textarea"), time.perf_counter() - start


def _canvas_pixels(page) -> np.ndarray:
    """The 3D viewer's canvas as shown on screen (H,W,3) uint8."""
    from io import BytesIO

    from PIL import Image

    png = page.locator("#viewer canvas").screenshot()
    return np.asarray(Image.open(BytesIO(png)).convert("RGB"))


def _wait_non_blank(page, timeout_s: float = 120.0) -> np.ndarray:
    """Poll the viewer until more than 5 % of its pixels differ from the white clear colour."""
    deadline = time.perf_counter() + timeout_s
    while True:
        pixels = _canvas_pixels(page)
        covered = (np.abs(pixels.astype(int) - 255).sum(-1) > 30).mean()
        if covered > 0.05 or time.perf_counter() > deadline:
            return pixels
        time.sleep(1)


def test_astronaut_in_the_browser(page, server, artifacts, tmp_path):
    from skimage import data

    from vitdeca import media

    photo = media.save_png(tmp_path / "astronaut.png", data.astronaut())
    status, seconds = _run(page, photo)
    assert re.match(r"astronaut\.png: 1 face reconstructed \((fit|refine), ", status), status
    # the 3D viewer draws the head: a good part of the canvas is neither background nor one flat colour
    pixels = _wait_non_blank(page)
    covered = (np.abs(pixels.astype(int) - 255).sum(-1) > 30).mean()
    assert covered > 0.05 and pixels.reshape(-1, 3).std(0).max() > 20, covered
    # the panels arrived: the vis image and the depth map are shown
    for element in ("#vis img", "#depth img"):
        assert page.locator(element).evaluate("img => img.complete && img.naturalWidth > 0")
    # the zip downloads and holds reconstruct's files
    with page.expect_download() as download:
        page.locator("#zip a[download]").first.click()
    archive = tmp_path / "download.zip"
    download.value.save_as(archive)
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        summary = json.loads(zf.read("summary.json"))
    assert {"astronaut/astronaut.glb", "astronaut/astronaut.obj", "astronaut/astronaut_vis.png"} <= names
    assert summary["counts"]["ok"] == 1
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "demo.png"), full_page=True)
    timing = {"start_to_serving_s": round(server[1], 1), "click_to_result_s": round(seconds, 1)}
    timing["load_average_1min"] = os.getloadavg()[0]
    (artifacts / "demo_timing.json").write_text(json.dumps(timing, indent=2) + "\n")
    assert page.external == []


def test_example_without_a_face(page):
    page.get_by_text("chelsea_cat.png", exact=True).first.click()
    _wait_uploaded(page, "chelsea_cat.png")
    status, _ = _press_run(page)
    assert re.match(r"chelsea_cat\.png: no face found.* \((fit|refine), ", status), status
    assert page.external == []


def test_video_example(page):
    page.get_by_text("astronaut_clip.mp4", exact=True).first.click()
    _wait_uploaded(page, "astronaut_clip.mp4")
    status, _ = _press_run(page)
    assert status.startswith("astronaut_clip.mp4: 3 frames: 3 with a face, 0 without"), status
    video = page.locator("#vis_video video")
    video.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const v = document.querySelector('#vis_video video'); return v && v.readyState >= 1 }",
        timeout=60_000,
    )
    assert video.evaluate("v => v.duration") > 0 and not page.locator("#vis img").is_visible()
    assert page.external == []


def test_webcam_snapshot(page):
    """Chromium's fake camera shows a test pattern: the snapshot reaches the handler, which finds no face."""
    page.get_by_role("tab", name="Webcam").click()
    page.get_by_text("Click to Access Webcam").click()
    # Capture only once the fake stream plays: a click before its first frame captures nothing.
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#webcam video')).some(v => v.readyState >= 2"
        " && v.videoWidth > 0)",
        timeout=RESULT_TIMEOUT_S * 1000,
    )
    page.locator("#webcam button[aria-label='capture photo']").click()
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#webcam img')).some(i => i.naturalWidth > 0)",
        timeout=RESULT_TIMEOUT_S * 1000,
    )
    status, _ = _press_run(page)
    assert re.match(r"image\.png: no face found.* \((fit|refine), ", status), status
    assert page.external == []


def test_broken_file_shows_the_cli_line(page):
    payload = {"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": b"\xff\xd8 these bytes are no JPEG"}
    status, _ = _run(page, payload)
    assert status.startswith("error: broken.jpg: not a readable image ("), status
    assert "\n" not in status and "Traceback" not in page.content()
    assert page.external == []


def test_oversized_upload_is_refused(page):
    payload = {"name": "huge.png", "mimeType": "image/png", "buffer": b"\0" * (9 << 20)}  # server: 8 MB
    page.set_input_files("#upload input[type=file]", payload)
    message = page.get_by_text(re.compile("exceed|too large|maximum|max size", re.IGNORECASE)).first
    message.wait_for(timeout=60_000)
    assert "huge.png" in message.inner_text() and page.input_value("#status textarea") == ""
    assert page.external == []
