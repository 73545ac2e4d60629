"""The README's troubleshooting table is what scripts/troubleshooting.py generates from tests/bad_inputs.py."""

from __future__ import annotations

import importlib.util
import re
import sys
import types

import pytest

from tests.conftest import ROOT, needs_katex

# Slow: it runs `sheetgen check` on all ~58 bad inputs (~35 s), so `make test-fast` leaves it to `make test`.
pytestmark = [needs_katex, pytest.mark.slow]


def _script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("troubleshooting", ROOT / "scripts" / "troubleshooting.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def _without_line_numbers(table: str) -> str:
    # Rows mutate the shipped formulas.yaml, so its line numbers move whenever the sheet is edited;
    # the table goes stale only when a message itself changes.
    return re.sub(r"(formulas\.yaml):\d+(:\d+)?", r"\1:N", table)


def test_readme_table_is_generated() -> None:
    script = _script()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _without_line_numbers(script.readme_block(readme)) == _without_line_numbers(script.table()), (
        "README.md's troubleshooting table is stale: run `.venv/bin/python scripts/troubleshooting.py --write`"
    )
