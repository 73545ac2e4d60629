"""Notebooks: deterministic JSON, runnable cells, and execution cached by content hash."""

from __future__ import annotations

import ast
import doctest
import json
from pathlib import Path

import nbformat
import pytest

from sheetgen import notebook_run as run
from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet_text
from sheetgen.model import Formula, Sheet
from sheetgen.render import notebooks as nb

SMALL = """\
sheet:
  title: Small sheet
sections:
  - id: algebra
    title: Algebra
    entries:
      - kind: formula
        id: square
        name: Square
        latex: 'y = x^2'
        meaning: 'Multiplies $x$ by itself.'
        source: Everyone
        implementation: |
          def square(x):
              return np.asarray(x, dtype=float) ** 2
        examples: |
          >>> float(square(3))  # three squared
          9.0
          >>> values = square([1, 2])
          >>> values.tolist()
          [1.0, 4.0]
      - kind: formula
        id: fourth
        name: Fourth power
        latex: 'y = x^4'
        meaning: Squares twice.
        source: Everyone
        implementation: |
          def fourth(x):
              return square(square(x))
        examples: |
          >>> float(fourth(2))
          16.0
          >>> fourth('a')
          Traceback (most recent call last):
          ValueError: could not convert string to float: 'a'
  - id: facts_only
    title: Only facts
    entries:
      - kind: fact
        id: a_fact
        name: A fact
        text: No code here.
"""


def small_sheet(text: str = SMALL) -> Sheet:
    return load_sheet_text(text, "small.yaml")


def test_one_notebook_per_section_with_formulas() -> None:
    assert list(nb.render_notebooks(small_sheet())) == ["notebooks/algebra.ipynb"]


def test_notebooks_are_deterministic_with_fixed_cell_ids() -> None:
    first = nb.render_notebooks(small_sheet())["notebooks/algebra.ipynb"]
    second = nb.render_notebooks(small_sheet())["notebooks/algebra.ipynb"]
    assert nb.dumps(first) == nb.dumps(second)
    assert [cell.id for cell in first.cells] == ["intro", "setup", "square-md", "square-code",
                                                 "fourth-md", "fourth-code"]
    assert first.cells[1].source.startswith("import numpy as np")
    nbformat.validate(first)
    assert json.loads(nb.dumps(first))["metadata"]["kernelspec"]["name"] == "python3"


def test_cells_show_formula_and_run_examples() -> None:
    notebook = nb.render_notebooks(small_sheet())["notebooks/algebra.ipynb"]
    markdown = notebook.cells[2].source
    assert markdown.startswith("## Square") and "$$\ny = x^2\n$$" in markdown
    assert "$x$" in markdown and "*Source:* Everyone" in markdown
    code = notebook.cells[3].source
    assert code.startswith("def square(x):\n") and '"""' not in code  # the Markdown cell above shows the rest
    assert "display(float(square(3)))  # three squared" in code
    assert "values = square([1, 2])\ndisplay(values.tolist())" in code


def test_example_code_keeps_expected_exceptions_from_stopping_the_notebook() -> None:
    code = nb.example_code(">>> 1 / 0\nTraceback (most recent call last):\nZeroDivisionError: division by zero\n")
    assert code.startswith("try:\n    1 / 0\nexcept Exception as error:")
    compile(code, "cell", "exec")


def test_setup_defines_functions_from_other_sections() -> None:
    text = SMALL.replace("""      - kind: formula
        id: fourth""", """  - id: powers
    title: Powers
    entries:
      - kind: formula
        id: fourth""")
    notebooks = nb.render_notebooks(small_sheet(text))
    setup = notebooks["notebooks/powers.ipynb"].cells[1].source
    assert "def square(x):" in setup
    assert "def square" not in notebooks["notebooks/algebra.ipynb"].cells[1].source


def test_shipped_notebooks_are_valid_and_cover_every_formula(sheet: Sheet) -> None:
    notebooks = nb.render_notebooks(sheet)
    for section in sheet.sections:
        formulas = [e for e in section.entries if isinstance(e, Formula)]
        path = f"notebooks/{section.id}.ipynb"
        if not formulas:
            assert path not in notebooks
            continue
        cells = notebooks[path].cells
        ids = [cell.id for cell in cells]
        for formula in formulas:
            assert f"{formula.id}-md" in ids and f"{formula.id}-code" in ids
        for cell in cells:
            if cell.cell_type == "code":
                compile(cell.source, f"{path}#{cell.id}", "exec")


# --- execution ------------------------------------------------------------------------------------


class NoKernel:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("a kernel was started although the notebook is cached")


def test_execution_is_cached_by_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sheet = small_sheet()
    notebook = nb.render_notebooks(sheet)["notebooks/algebra.ipynb"]
    first = run.execute_notebook(notebook, tmp_path, sheet=sheet, timeout=60)
    assert not first.cached
    outputs = {cell.id: cell.outputs for cell in first.notebook.cells if cell.cell_type == "code"}
    texts = ["".join(o["data"]["text/plain"]) for o in outputs["square-code"]]
    assert texts == ["9.0", "[1.0, 4.0]"]
    printed = "".join(o.get("text", "") for o in outputs["fourth-code"])
    assert printed == "ValueError: could not convert string to float: 'a'\n"
    assert not any("metadata" in cell and "execution" in cell.metadata for cell in first.notebook.cells)

    import nbclient

    monkeypatch.setattr(nbclient, "NotebookClient", NoKernel)
    second = run.execute_notebook(nb.render_notebooks(sheet)["notebooks/algebra.ipynb"], tmp_path, sheet=sheet)
    assert second.cached
    assert nb.dumps(second.notebook) == nb.dumps(first.notebook)

    changed = nb.render_notebooks(small_sheet(SMALL.replace("three squared", "3²")))["notebooks/algebra.ipynb"]
    assert run.cache_key(changed) != run.cache_key(notebook)
    with pytest.raises(AssertionError, match="kernel was started"):
        run.execute_notebook(changed, tmp_path, sheet=sheet)


def test_a_failing_cell_names_the_yaml_line(tmp_path: Path) -> None:
    # The loader does not run doctests, so an example that raises reaches the notebook.
    text = SMALL.replace("          >>> float(fourth(2))\n          16.0\n",
                         "          >>> float(fourth('x'))\n          16.0\n")
    sheet = small_sheet(text)
    with pytest.raises(SheetError) as raised:
        run.execute_notebook(nb.render_notebooks(sheet)["notebooks/algebra.ipynb"], tmp_path, sheet=sheet,
                            timeout=60, name="notebooks/algebra.ipynb")
    line = sheet.line_of("fourth", "examples")
    assert str(raised.value).startswith(f"small.yaml:{line} [fourth] examples: notebook notebooks/algebra.ipynb "
                                        "failed: ValueError")
    assert not list(tmp_path.glob("*.ipynb"))  # failures are not cached


@pytest.mark.slow
def test_shipped_notebooks_run_and_match_their_doctests(sheet: Sheet, tmp_path: Path) -> None:
    results = run.execute_notebooks(nb.render_notebooks(sheet), tmp_path, sheet=sheet)
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    for path, result in results.items():
        cells = {cell.id: cell for cell in result.notebook.cells}
        for formula in (f for f in sheet.formulas() if f"{f.id}-code" in cells):
            shown = [
                "".join(o["data"]["text/plain"]) if "data" in o else "".join(o.get("text", ""))
                for o in cells[f"{formula.id}-code"].outputs
            ]
            wants = [e.want for e in doctest.DocTestParser().get_examples(formula.examples)
                     if e.want.strip() and e.exc_msg is None]
            displayed = shown[: len(wants)]
            assert len(displayed) == len(wants), f"{path}: {formula.id} shows {shown}"
            for want, got in zip(wants, displayed, strict=True):
                assert checker.check_output(want, got + "\n", flags), f"{formula.id}: {got!r} != {want!r}"


def test_prose_in_the_setup_cell_stays_a_comment() -> None:
    sheet = small_sheet()
    algebra = sheet.sections[0]
    square = algebra.entries[0]
    # `fourth` calls `square`: a section with only `fourth` defines `square` in its setup cell, with its name.
    renamed = square.model_copy(update={"name": "Square\nimport os; os.system('touch /tmp/x')"})
    other = algebra.model_copy(update={"id": "other", "entries": (algebra.entries[1],)})
    first = algebra.model_copy(update={"entries": (renamed,)})
    sheet = sheet.model_copy(update={"sections": (first, other)})
    setup = nb.render_notebooks(sheet)["notebooks/other.ipynb"].cells[1].source
    tree = ast.parse(setup)
    assert [type(node).__name__ for node in tree.body] == ["Import", "FunctionDef"], setup


def test_a_notebook_matches_its_golden_file(sheet, golden) -> None:  # type: ignore[no-untyped-def]
    """One section's notebook before execution: `make golden` after a deliberate change."""
    golden("notebooks_math.ipynb", nb.dumps(nb.render_notebooks(sheet)["notebooks/math.ipynb"]))


TWO_SECTIONS = SMALL.replace("""      - kind: formula
        id: fourth""", """  - id: powers
    title: Powers
    entries:
      - kind: formula
        id: fourth""")


def _count_kernel_starts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    manager = run._limited_kernel_manager()
    starts: list[int] = []
    original = manager.start_kernel

    async def counted(self: object, **kwargs: object) -> None:
        starts.append(1)
        await original(self, **kwargs)

    monkeypatch.setattr(manager, "start_kernel", counted)
    return starts


def test_a_build_runs_all_its_notebooks_in_one_kernel_with_a_fresh_namespace_each(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The second notebook must not see the first one's variables (`values` is only set in algebra),
    # and its cells are numbered from 1 again.
    probe = "          >>> 'values' in globals()\n          False\n"
    text = TWO_SECTIONS.replace("          >>> float(fourth(2))\n", probe + "          >>> float(fourth(2))\n")
    sheet = small_sheet(text)
    starts = _count_kernel_starts(monkeypatch)
    results = run.execute_notebooks(nb.render_notebooks(sheet), tmp_path, sheet=sheet)
    assert sorted(results) == ["notebooks/algebra.ipynb", "notebooks/powers.ipynb"]
    assert len(starts) == 1
    for result in results.values():
        counts = [c.execution_count for c in result.notebook.cells if c.cell_type == "code"]
        assert counts == list(range(1, len(counts) + 1))
    powers = {c.id: c for c in results["notebooks/powers.ipynb"].notebook.cells}
    assert powers["fourth-code"].outputs[0]["data"]["text/plain"] == "False"


def test_a_notebook_that_kills_the_kernel_does_not_stop_the_next_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kill = "          >>> __import__('os')._exit(0) if 'ipykernel' in __import__('sys').modules else None\n"
    marker = "          >>> values = square([1, 2])\n"
    sheet = small_sheet(TWO_SECTIONS.replace(marker, kill + marker))
    notebooks = nb.render_notebooks(sheet)
    # powers runs after algebra (dict order), in the replacement kernel.
    assert list(notebooks) == ["notebooks/algebra.ipynb", "notebooks/powers.ipynb"]
    starts = _count_kernel_starts(monkeypatch)
    with pytest.raises(SheetError) as raised:
        run.execute_notebooks(notebooks, tmp_path, sheet=sheet, timeout=60)
    assert [p.entry_id for p in raised.value.problems] == ["square"]
    assert "the kernel died" in str(raised.value)
    assert len(starts) == 2
    # nothing is cached for the failed notebook; the one that ran is not published either (the build failed),
    # but a rerun after the fix only runs what changed.
    assert not list(tmp_path.glob("*.ipynb"))
