"""A real browser (headless Debian chromium via playwright) lays out the built site's math."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sheetgen.model import Formula, Sheet
from tests.sitehelpers import ROOT, built_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed"),
    pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "katex").is_dir(),
                       reason="KaTeX (node and node_modules/katex) is not installed"),
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no request lines in the test output


@pytest.fixture(scope="module")
def server(sheet: Sheet) -> Iterator[str]:
    site = built_site(sheet.source_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def first_section_with_formulas(sheet: Sheet) -> tuple[str, int]:
    for section in sheet.sections:
        count = sum(isinstance(e, Formula) for e in section.entries)
        if count:
            return section.id, count
    pytest.skip("the sheet has no formulas")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_math_boxes_have_size(server: str, browser: Any, sheet: Sheet, javascript: bool) -> None:
    section_id, formulas = first_section_with_formulas(sheet)
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        offsite: list[str] = []
        page.on("request", lambda request: offsite.append(request.url)
                if not request.url.startswith(server) and not request.url.startswith("data:") else None)
        page.goto(f"{server}/sections/{section_id}/", wait_until="load")
        page.evaluate("document.fonts.ready")
        displays = page.locator(".sg-math .katex-html")
        assert displays.count() >= formulas
        for index in range(displays.count()):
            box = displays.nth(index).bounding_box()
            assert box is not None and box["width"] > 10 and box["height"] > 10, (index, box)
        # KaTeX's own fonts were loaded from the site, and nothing was fetched from elsewhere.
        families = page.evaluate("[...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)")
        assert "KaTeX_Main" in families and "KaTeX_Math" in families
        assert offsite == []
        # A fraction is drawn as a stacked box: taller than a line of text.
        fraction = page.locator(".katex .mfrac").first
        if fraction.count():
            frac_box = fraction.bounding_box()
            assert frac_box is not None and frac_box["height"] > 20
    finally:
        context.close()


def test_dark_palette_math_is_readable(server: str, browser: Any, sheet: Sheet) -> None:
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(f"{server}/sections/{section_id}/", wait_until="load")
        scheme = page.evaluate("document.body.getAttribute('data-md-color-scheme')")
        assert scheme == "slate"
        colour = page.evaluate("getComputedStyle(document.querySelector('.sg-math .katex')).color")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert luminance(colour) - luminance(background) > 0.4, (colour, background)
    finally:
        context.close()


def luminance(css_colour: str) -> float:
    """Relative luminance of an `rgb(...)`/`rgba(...)` colour, 0 (black) to 1 (white)."""
    parts = css_colour[css_colour.index("(") + 1: css_colour.index(")")].replace("/", ",").split(",")
    channels = [float(p) / 255 for p in parts[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_notebook_page_math_has_size(server: str, browser: Any, sheet: Sheet) -> None:
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server}/notebooks/{section_id}/", wait_until="load")
        displays = page.locator(".jp-RenderedMarkdown .katex-display .katex-html")
        assert displays.count() >= 1
        box = displays.first.bounding_box()
        assert box is not None and box["width"] > 10 and box["height"] > 10
    finally:
        context.close()
