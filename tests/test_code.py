"""The generated NumPy module: golden file, every formula has a function and doctests that pass."""

from __future__ import annotations

import ast
import doctest
import subprocess
import sys
import types
from pathlib import Path

import pytest

from sheetgen.cli import main
from sheetgen.model import Sheet
from sheetgen.render.code import render_module
from tests.conftest import ROOT


def test_generated_module_matches_golden(sheet: Sheet, golden) -> None:  # type: ignore[no-untyped-def]
    golden("formulas.py", render_module(sheet))


def test_every_formula_has_a_public_function_with_docstring_and_doctests(
        sheet: Sheet, formulas: types.ModuleType) -> None:
    finder = doctest.DocTestFinder()
    for formula in sheet.formulas():
        function = getattr(formulas, formula.id, None)
        assert callable(function), f"{formula.id}: no function in the generated module"
        assert formula.id in formulas.__all__
        assert function.__doc__ and formula.source in function.__doc__
        tests = finder.find(function, formula.id, globs=vars(formulas))
        assert tests and tests[0].examples, f"{formula.id}: no doctest examples"


def _doctest_ids(path: Path = ROOT / "formulas.yaml") -> list[str]:
    from sheetgen.loader import load_sheet

    return [f.id for f in load_sheet(path).formulas()]


@pytest.mark.parametrize("function_id", _doctest_ids())
def test_doctests_pass(function_id: str, formulas: types.ModuleType) -> None:
    function = getattr(formulas, function_id)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(function, function_id, globs=dict(vars(formulas))):
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0


def test_module_needs_only_numpy(sheet: Sheet) -> None:
    tree = ast.parse(render_module(sheet))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"numpy", "__future__"}


def test_cli_writes_module_that_doctests_standalone(tmp_path: Path) -> None:
    out = tmp_path / "formulas.py"
    assert main(["code", "-f", str(ROOT / "formulas.yaml"), "-o", str(out)]) == 0
    # A fresh interpreter with warnings as errors: no overflow or divide warnings in any example.
    run = subprocess.run([sys.executable, "-W", "error", "-m", "doctest", str(out)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def test_failing_doctest_leaves_previous_module_untouched(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "formulas.py"
    out.write_text("previous\n")
    broken = tmp_path / "broken.yaml"
    text = (ROOT / "formulas.yaml").read_text(encoding="utf-8")
    broken.write_text(text.replace("          32.0\n", "          33.0\n", 1), encoding="utf-8")
    assert main(["code", "-f", str(broken), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "[dot_product] examples: doctest" in err and "expected '33.0' but got '32.0'" in err
    assert out.read_text() == "previous\n"


def test_schema_file_is_current(tmp_path: Path) -> None:
    out = tmp_path / "schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert out.read_text() == (ROOT / "docs" / "formulas.schema.json").read_text(), \
        "docs/formulas.schema.json is stale; run `make schema`"


def test_shipped_yaml_points_editors_at_the_schema() -> None:
    first = (ROOT / "formulas.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=./docs/formulas.schema.json"


def test_check_prints_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-f", str(ROOT / "formulas.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok —" in out and "doctests passed" in out
