"""Debian's Chromium driven by Playwright: one browser per session, a fresh page per test.

Never downloads a browser: it launches /usr/bin/chromium and skips with the reason when that, or
the built page (frontend/dist), is missing.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
DIST_INDEX = Path(__file__).resolve().parents[2] / "frontend" / "dist" / "index.html"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 375, "height": 740}


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    if not DIST_INDEX.exists():
        pytest.skip("the page is not built: run `cd frontend && npm ci && npm run build`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class PageProblems:
    """Console errors and failed page loads: a CSP violation shows up here as 'Refused to ...'."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def attach(self, page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _console(self, message) -> None:
        if message.type != "error":
            return
        # The API's own error answers (422, 415, 400...) are logged by Chromium as failed loads;
        # those are what the tests provoke. A failed load of anything else (an asset) is a fault.
        url = (message.location or {}).get("url", "")
        if message.text.startswith("Failed to load resource") and "/api/" in url:
            return
        self.errors.append(f"{message.text} ({url})" if url else message.text)


@pytest.fixture
def open_page(browser) -> Iterator:
    """open_page(base_url, viewport=DESKTOP) → a loaded page; fails the test on console errors."""
    contexts, problems = [], PageProblems()

    def _open(base_url: str, viewport: dict = DESKTOP):
        context = browser.new_context(viewport=viewport, locale="en-US")
        contexts.append(context)
        page = context.new_page()
        problems.attach(page)
        response = page.goto(base_url + "/")
        assert response is not None and response.ok, (
            f"GET / answered {response and response.status}"
        )
        # Everything below runs under the app's own CSP; the page must not need anything looser.
        assert "script-src 'self'" in response.headers.get("content-security-policy", "")
        page.get_by_text("It can be wrong").wait_for()
        return page

    yield _open
    for context in contexts:
        context.close()
    assert not problems.errors, f"the page logged errors: {problems.errors}"


def jpeg(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut_jpeg() -> bytes:
    from skimage import data

    return jpeg(data.astronaut())


@pytest.fixture(scope="session")
def cat_jpeg() -> bytes:
    from skimage import data

    return jpeg(data.chelsea())
