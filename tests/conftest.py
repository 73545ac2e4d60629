"""Shared fixtures: the shipped sheet and the module generated from it (imported, never hand-written)."""

from __future__ import annotations

import os
import shutil
import types
from pathlib import Path

import pytest

from sheetgen.doctests import import_module
from sheetgen.loader import load_sheet
from sheetgen.model import Sheet
from sheetgen.render.code import render_module

ROOT = Path(__file__).resolve().parent.parent
# Tests that typeset with KaTeX need node and `npm ci`'s node_modules; `make test` installs both.
needs_katex = pytest.mark.skipif(
    shutil.which("node") is None or not (ROOT / "node_modules" / "katex").is_dir(),
    reason="KaTeX (node and node_modules/katex) is not installed: run `make`",
)
# SHEETGEN_YAML lets a test run use another sheet file; the default is the shipped one.
SHEET_PATH = Path(os.environ.get("SHEETGEN_YAML", ROOT / "formulas.yaml"))


@pytest.fixture(scope="session", autouse=True)
def _shared_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Where tests/sitehelpers.py keeps the build all xdist workers share: the run's base temp folder
    (a worker's own is one level below it)."""
    from tests import sitehelpers

    base = tmp_path_factory.getbasetemp()
    sitehelpers.shared_root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def sheet() -> Sheet:
    return load_sheet(SHEET_PATH)


@pytest.fixture(scope="session")
def formulas(sheet: Sheet) -> types.ModuleType:
    """The generated NumPy module, imported fresh from its rendered source."""
    return import_module(render_module(sheet))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true",
                     help="rewrite tests/golden/* from the current renderers instead of comparing")


@pytest.fixture
def golden(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """`golden(name, content)`: compare with tests/golden/NAME, or rewrite it with --update-goldens."""
    update = request.config.getoption("--update-goldens")

    def check(name: str, content: str | bytes) -> None:
        path = ROOT / "tests" / "golden" / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return
        assert path.exists(), f"{path} is missing; run `make golden` and review the diff"
        assert path.read_bytes() == data, f"{name} differs from its golden file; if intended, run `make golden`"

    return check
