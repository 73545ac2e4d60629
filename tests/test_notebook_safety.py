"""No active markup from notebook outputs reaches the site (issue 9 §2: stored XSS).

Examples are code; a value with `_repr_html_` (or `_repr_javascript_`, `_repr_svg_`, …) would put
its markup into the executed notebook and from there into the site's notebook page. Outputs are
reduced to text before anything is cached or published. Each payload below is assembled at run time
from pieces, so the whole string exists only in an output: finding it in any site file, raw or
HTML-escaped, means an output got through.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import nbformat
import pytest

from sheetgen.notebook_run import text_only
from tests.conftest import needs_katex

PAYLOADS = {
    "html": '<img src=x onerror=alert("h3-html")><script>alert("h3-script")</script>',
    "javascript": 'alert("h3-js")',
    "svg": '<svg onload="alert(\'h3-svg\')"><script>alert("h3-svg-script")</script></svg>',
    "markdown": '<img src=y onerror=alert("h3-md")>',
    "latex": r"$\href{javascript:alert('h3-tex')}{x}$",
}


def _split(text: str) -> str:
    """Python source for `text` built from 6-character pieces, so the source never holds the payload
    (nor a whole `javascript:`, which the loader refuses anywhere)."""
    return " + ".join(repr(text[i:i + 6]) for i in range(0, len(text), 6))


SHEET = f"""\
sheet:
  title: Payloads
sections:
  - id: rich
    title: Rich outputs
    entries:
      - kind: formula
        id: rich
        name: Rich reprs
        latex: 'y = x'
        check:
          skip: the example passes an object with rich representations, not numbers
        meaning: Returns objects whose rich representations carry scripts.
        source: A test
        implementation: |
          def rich(x):
              return x
        examples: |
          >>> class Rich:
          ...     def _repr_html_(self):
          ...         return {_split(PAYLOADS["html"])}
          ...     def _repr_javascript_(self):
          ...         return {_split(PAYLOADS["javascript"])}
          ...     def _repr_svg_(self):
          ...         return {_split(PAYLOADS["svg"])}
          ...     def _repr_markdown_(self):
          ...         return {_split(PAYLOADS["markdown"])}
          ...     def _repr_latex_(self):
          ...         return {_split(PAYLOADS["latex"])}
          ...     def __repr__(self):
          ...         return 'Rich()'
          >>> rich(Rich())
          Rich()
"""


def _outputs(cell: dict[str, object]) -> list[dict[str, object]]:
    return cell["outputs"]  # type: ignore[return-value]


def test_text_only_keeps_text_and_drops_every_rich_output() -> None:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "printed\n"},
        {"output_type": "execute_result", "execution_count": 1, "metadata": {"isolated": True},
         "data": {"text/plain": "Rich()", "text/html": PAYLOADS["html"], "image/svg+xml": PAYLOADS["svg"],
                  "application/javascript": PAYLOADS["javascript"], "text/markdown": PAYLOADS["markdown"],
                  "text/latex": PAYLOADS["latex"], "image/png": "iVBORw0KGgo=",
                  "application/vnd.jupyter.widget-view+json": {"model_id": "m"}}},
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": PAYLOADS["html"]}},
        {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["line"]},
        {"output_type": "something_new", "data": {"text/html": PAYLOADS["html"]}},
    ]
    notebook = nbformat.from_dict({  # type: ignore[no-untyped-call]
        "nbformat": 4, "nbformat_minor": 5, "metadata": {},
        "cells": [{"cell_type": "code", "id": "c", "source": "x", "metadata": {}, "execution_count": 1,
                   "outputs": outputs}]})
    text_only(notebook)
    assert json.loads(json.dumps(_outputs(notebook.cells[0]))) == [
        {"output_type": "stream", "name": "stdout", "text": "printed\n"},
        {"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": "Rich()"}},
        {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": ["line"]},
    ]
    nbformat.validate(notebook)


def _found(site: Path) -> list[str]:
    hits = []
    for path in sorted(site.rglob("*")):
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for kind, payload in PAYLOADS.items():
            for form in {payload, html.escape(payload), html.escape(payload, quote=False), json.dumps(payload)[1:-1]}:
                if form in text:
                    hits.append(f"{path.relative_to(site)}: {kind} payload")
    return hits


@pytest.mark.slow
@needs_katex
def test_rich_outputs_never_reach_the_site(tmp_path: Path) -> None:
    from tests.sitehelpers import built_site

    yaml = tmp_path / "formulas.yaml"
    yaml.write_text(SHEET, encoding="utf-8")
    site = built_site(str(yaml))
    pages = list(site.rglob("notebooks/**/*.html"))
    assert pages, "the notebook page was not built"
    page = "".join(p.read_text(encoding="utf-8") for p in pages)
    assert "Rich()" in page, "the text form of the value should be shown"
    assert _found(site) == []


def test_kernels_run_limited_in_a_temporary_folder_without_our_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sheetgen.notebook_run import KERNEL_LIMITS, execute_notebook

    monkeypatch.setenv("SHEETGEN_TEST_SECRET", "hunter2")
    probe = ("import json, os, resource\n"
             "print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ),\n"
             "                  'cpu': resource.getrlimit(resource.RLIMIT_CPU)[0],\n"
             "                  'memory': resource.getrlimit(resource.RLIMIT_AS)[0],\n"
             "                  'file': resource.getrlimit(resource.RLIMIT_FSIZE)[0]}))")
    notebook = nbformat.from_dict({  # type: ignore[no-untyped-call]
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{"cell_type": "code", "id": "probe", "source": probe, "metadata": {}, "execution_count": None,
                   "outputs": []}]})
    executed = execute_notebook(notebook, tmp_path / "cache").notebook
    seen = json.loads(executed.cells[0].outputs[0]["text"])
    assert Path(seen["cwd"]).name.startswith("sheetgen-kernel-") and not Path(seen["cwd"]).exists()
    assert seen["env"]["HOME"] == seen["cwd"] and "hunter2" not in json.dumps(seen["env"])
    assert not {"SHEETGEN_TEST_SECRET", "VIRTUAL_ENV", "PYTHONPATH"} & set(seen["env"])
    assert seen["cpu"] == KERNEL_LIMITS.cpu_seconds
    assert seen["file"] == KERNEL_LIMITS.file_bytes
    assert 0 < seen["memory"] <= (1 << 30) + KERNEL_LIMITS.memory_bytes


@pytest.mark.parametrize(("example", "needle"), [
    # Only in a kernel (the doctests pass): the kernel dies, or hits its memory limit (3 GiB would fit
    # in this machine's memory without the limit).
    ("__import__('os')._exit(0) if 'ipykernel' in __import__('sys').modules else None",
     "the kernel died (out of memory, CPU time, or the code ended it)"),
    ("len(bytearray(3 * 2**30)) if 'ipykernel' in __import__('sys').modules else None", "failed: MemoryError"),
])
def test_a_cell_that_kills_or_exhausts_its_kernel_is_located(tmp_path: Path, example: str, needle: str) -> None:
    from sheetgen.errors import SheetError
    from sheetgen.notebook_run import execute_notebooks
    from sheetgen.render.notebooks import render_notebooks
    from tests.test_notebooks import SMALL, small_sheet

    marker = "          >>> values = square([1, 2])\n"
    sheet = small_sheet(SMALL.replace(marker, f"          >>> {example}\n{marker}"))
    with pytest.raises(SheetError) as raised:
        execute_notebooks(render_notebooks(sheet), tmp_path, sheet=sheet, timeout=60)
    message = str(raised.value)
    assert message.startswith(f"small.yaml:{sheet.line_of('square', 'examples')} [square] examples: notebook"), message
    assert needle in message


def test_kernel_folders_of_killed_builds_are_removed(tmp_path: Path) -> None:
    import tempfile

    from sheetgen.notebook_run import execute_notebook
    from sheetgen.render.notebooks import render_notebooks
    from tests.test_notebooks import small_sheet

    stale = Path(tempfile.mkdtemp(prefix="sheetgen-kernel-999999999-"))  # no such process
    notebook = next(iter(render_notebooks(small_sheet()).values()))
    execute_notebook(notebook, tmp_path)
    assert not stale.exists()


def test_a_notebook_has_a_total_time_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    from sheetgen import notebook_run
    from sheetgen.errors import SheetError
    from sheetgen.render import notebooks
    from tests.test_notebooks import SMALL, small_sheet

    monkeypatch.setattr(notebook_run, "NOTEBOOK_SECONDS", 8.0)
    marker = "          >>> values = square([1, 2])\n"
    slow = "__import__('time').sleep(60) if 'ipykernel' in __import__('sys').modules else None"
    sheet = small_sheet(SMALL.replace(marker, f"          >>> {slow}\n{marker}"))
    started = time.monotonic()
    with pytest.raises(SheetError) as raised:
        notebook_run.execute_notebooks(notebooks.render_notebooks(sheet), tmp_path, sheet=sheet, timeout=120)
    assert time.monotonic() - started < 30
    time.sleep(1)  # the interrupted kernel logs a traceback while it shuts down: it must not reach our stderr
    assert "Traceback" not in capfd.readouterr().err
    assert str(raised.value).startswith(f"small.yaml:{sheet.line_of('square', 'examples')} [square] examples: "
                                        "notebook notebooks/algebra.ipynb failed: the notebook ran longer than 8 s")


def test_a_kernel_that_cannot_start_is_one_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sheetgen import sandbox
    from sheetgen.errors import SheetError
    from sheetgen.notebook_run import execute_notebooks
    from sheetgen.render.notebooks import render_notebooks
    from tests.test_notebooks import small_sheet

    monkeypatch.setattr(sandbox, "limited_command", lambda argv, limits, baseline_bytes=0: ["/nonexistent/python"])
    sheet = small_sheet()
    with pytest.raises(SheetError) as raised:
        execute_notebooks(render_notebooks(sheet), tmp_path, sheet=sheet)
    assert len(raised.value.problems) == 1
    assert "notebook notebooks/algebra.ipynb: no kernel to run it (FileNotFoundError" in str(raised.value)


def test_a_failing_figure_cell_is_blamed_on_the_figure(tmp_path: Path) -> None:
    from sheetgen.errors import SheetError
    from sheetgen.notebook_run import execute_notebooks
    from sheetgen.render.notebooks import render_notebooks
    from tests.test_notebooks import SMALL, small_sheet

    figure = ("        figure:\n          caption: Squares.\n          code: |\n"
              "            plt.plot([1, 2], square([1, 2]))\n"
              "            assert 'ipykernel' not in __import__('sys').modules, 'only in the kernel'\n")
    marker = "      - kind: formula\n        id: fourth\n"
    sheet = small_sheet(SMALL.replace(marker, figure + marker))
    assert sheet.formula("square").figure is not None
    with pytest.raises(SheetError) as raised:
        execute_notebooks(render_notebooks(sheet), tmp_path, sheet=sheet)
    assert str(raised.value).startswith(f"small.yaml:{sheet.line_of('square', 'figure')} [square] figure: notebook")
    assert "AssertionError: only in the kernel" in str(raised.value)
