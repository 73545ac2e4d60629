"""`sheetgen serve` as a user meets it: an edit shows up by itself, a broken edit is shown in the browser
with its located message while the last good page stays, and fixing the YAML brings the page back."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, needs_katex
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_pipeline import SMALL

pytestmark = [pytest.mark.slow, pytest.mark.browser, needs_katex,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    yaml = tmp_path / "formulas.yaml"
    yaml.write_text(SMALL, encoding="utf-8")
    port = _free_port()
    env = {**os.environ, "SHEETGEN_BUILD_DIR": str(tmp_path / "build")}
    log = tmp_path / "serve.log"
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-m", "sheetgen", "serve", "-f", str(yaml), "-c",
                                    str(ROOT / "mkdocs.yml"), "-a", f"127.0.0.1:{port}"], cwd=tmp_path, env=env,
                                   stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("serve did not start: " + log.read_text())
        yield url, yaml, tmp_path / "build"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for(page: Any, predicate: str, seconds: float = 60.0) -> None:
    """Reload until `predicate` (JavaScript) holds: livereload may or may not have reloaded already."""
    deadline = time.monotonic() + seconds
    url = page.url
    while time.monotonic() < deadline:
        try:
            if page.evaluate(predicate):
                return
        except Exception:  # livereload navigated in the middle of evaluate
            pass
        time.sleep(0.5)
        # The server answers once its rebuild is done; livereload may navigate in the meantime too.
        with contextlib.suppress(Exception):
            page.goto(url, wait_until="domcontentloaded", timeout=15_000)
    raise AssertionError(f"timed out waiting for {predicate}")


def test_serve_shows_edits_and_problems_in_the_browser(served: tuple[str, Path, Path]) -> None:
    url, yaml, build = served
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{url}/sections/basics/", wait_until="load")
            assert "Doubles" in page.inner_text("article")
            assert page.locator(".sheetgen-error").count() == 0

            # A good edit shows up without a restart.
            yaml.write_text(SMALL.replace("Doubles", "Multiplies by two"), encoding="utf-8")
            _wait_for(page, "document.querySelector('article').innerText.includes('Multiplies by two')")

            # A failing doctest: the located message is in the browser, the last good page stays.
            broken = SMALL.replace("Doubles", "Multiplies by two").replace("          4\n", "          5\n")
            yaml.write_text(broken, encoding="utf-8")
            _wait_for(page, "!!document.querySelector('.sheetgen-error')")
            banner = page.inner_text(".sheetgen-error")
            line = broken.splitlines().index("          5")  # 1-based: the `>>>` line above the output
            assert f"formulas.yaml:{line} [twice] examples:" in banner, banner
            assert "Multiplies by two" in page.inner_text("article")

            # Fixed: the banner goes away by itself.
            yaml.write_text(SMALL.replace("Doubles", "Multiplies by two"), encoding="utf-8")
            _wait_for(page, "!document.querySelector('.sheetgen-error')")
        finally:
            browser.close()
    # serve keeps build/ up to date too: the PDF and the module of the last good sheet.
    deadline = time.monotonic() + 60
    while not (build / "formulas.py").is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "Multiplies by two" in (build / "formulas.py").read_text(encoding="utf-8")
    assert (build / "cheatsheet.pdf").read_bytes().startswith(b"%PDF")
