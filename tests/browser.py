"""Shared by the browser tests: Debian's headless Chromium driven by Playwright through
``executable_path`` (no browser download), with every request to another host aborted and recorded."""

from __future__ import annotations

import os
import shutil

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--enable-unsafe-swiftshader",  # WebGL in software (three.js, the 3D viewer) without a GPU
    "--use-fake-device-for-media-stream",  # a synthetic webcam (a test pattern, no face)
    "--use-fake-ui-for-media-stream",
]


def chromium_path() -> str | None:
    """``$VITDECA_CHROMIUM``, else Debian's ``chromium`` (apt-get install chromium) on the PATH."""
    return os.environ.get("VITDECA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def local_only(page, origin: str) -> list[str]:
    """Route every request of ``page`` that is not for ``origin`` (or a data:/blob: URL) to an abort;
    returns the list the aborted URLs are appended to (a test asserts it stays empty)."""
    external: list[str] = []

    def route(request_route):
        target = request_route.request.url
        if target.startswith((origin, "data:", "blob:")):
            request_route.continue_()
        else:
            external.append(target)
            request_route.abort()

    page.route("**/*", route)
    return external
