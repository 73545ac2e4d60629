"""One Jupyter notebook per section: `Sheet` → `{path: notebook}`, plus cached execution.

`render_notebooks` is pure and deterministic (explicit cell ids, sorted JSON): the same YAML gives
byte-identical notebooks. `execute_notebook` runs one with nbclient and caches the executed
notebook under its content hash, so an unchanged notebook never starts a kernel again.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import doctest
import functools
import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import time
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nbformat
from nbformat import NotebookNode

from .. import sandbox
from ..errors import Problem, SheetError
from ..katex import split_inline_math
from ..model import Formula, Section, Sheet
from ..outputs import write_atomic
from .code import comment, function_source

__all__ = [
    "Executed",
    "cache_key",
    "dumps",
    "example_code",
    "execute_notebook",
    "execute_notebooks",
    "loads",
    "notebook_path",
    "render_notebooks",
    "text_only",
]

KERNEL_NAME = "python3"
_CACHE_FORMAT = "2"  # 2: outputs are text only (see text_only)
_KERNELSPEC = {"name": KERNEL_NAME, "display_name": "Python 3 (ipykernel)", "language": "python"}


def dumps(notebook: NotebookNode) -> str:
    """Notebook JSON as nbformat writes it (sorted keys, so equal notebooks are equal bytes)."""
    return cast(str, nbformat.writes(notebook))  # type: ignore[no-untyped-call]


def loads(text: str) -> NotebookNode:
    return cast(NotebookNode, nbformat.reads(text, as_version=4))  # type: ignore[no-untyped-call]


def _cell(kind: str, source: str, cell_id: str) -> NotebookNode:
    make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
    return cast(NotebookNode, make(source, id=cell_id))  # type: ignore[no-untyped-call]


def notebook_path(section: Section) -> str:
    """Docs-relative path of a section's notebook."""
    return f"notebooks/{section.id}.ipynb"


# --- building -------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]#|!<>~])")


def _markdown_text(text: str) -> str:
    """Prose for a Jupyter Markdown cell: Markdown characters escaped, `$math$` kept for MathJax."""
    parts = []
    for is_math, chunk in split_inline_math(text):
        if is_math:
            parts.append(f"${chunk}$")
        else:
            parts.append(_MD_SPECIAL.sub(r"\\\1", chunk.replace("$", "\\$")))
    return " ".join("".join(parts).split())


def _strip_comment(source: str) -> tuple[str, str]:
    """Split a one-line statement into code and its trailing `# comment`."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source, ""
    for token in tokens:
        if token.type == tokenize.COMMENT:
            column = token.start[1]
            return source[:column].rstrip(), token.string
    return source, ""


def example_code(examples: str) -> str:
    """Doctest examples as notebook code: every expression's value is shown, as the doctest shows it;
    an example that expects an exception prints it instead of stopping the notebook."""
    lines: list[str] = []
    for example in doctest.DocTestParser().get_examples(examples):
        source = example.source.rstrip("\n")
        if example.exc_msg is not None:
            lines += ["try:", *("    " + line for line in source.splitlines()),
                      "except Exception as error:  # the example expects this exception",
                      '    print(f"{type(error).__name__}: {error}")']
            continue
        code, comment = _strip_comment(source) if "\n" not in source else (source, "")
        try:
            tree = ast.parse(code, mode="eval")
        except SyntaxError:
            tree = None
        if tree is not None and example.want.strip():
            shown = f"({code})" if isinstance(tree.body, ast.Tuple) else code  # display(a, b) shows two
            lines.append(f"display({shown})" + (f"  {comment}" if comment else ""))
        else:
            lines.append(source)
    return "\n".join(lines)


def _formula_markdown(formula: Formula) -> str:
    return "\n".join([
        f"## {_markdown_text(formula.name)}",
        "",
        "$$",
        formula.latex.strip("\n"),
        "$$",
        "",
        _markdown_text(formula.meaning),
        "",
        f"*Source:* {_markdown_text(formula.source)}",
    ])


def _calls(formula: Formula, ids: set[str]) -> set[str]:
    """Other formulas' functions that an implementation (or its figure) calls."""
    names = {n.id for n in ast.walk(ast.parse(formula.implementation)) if isinstance(n, ast.Name)}
    if formula.figure is not None:
        with contextlib.suppress(SyntaxError):  # the loader reports it, at its line
            names |= {n.id for n in ast.walk(ast.parse(formula.figure.code)) if isinstance(n, ast.Name)}
    return (names & ids) - {formula.id}


def _prerequisites(sheet: Sheet, formulas: list[Formula]) -> list[Formula]:
    """Functions the section's cells call before (or without) defining them, with what they call,
    in module order: the setup cell defines them so each cell runs top to bottom."""
    everything = {f.id: f for f in sheet.formulas()}
    ids = set(everything)
    needed: set[str] = set()
    defined: set[str] = set()
    for formula in formulas:
        pending = list(_calls(formula, ids) - defined)
        while pending:
            name = pending.pop()
            if name not in needed:
                needed.add(name)
                pending.extend(_calls(everything[name], ids))
        defined.add(formula.id)
    return [f for f in sheet.formulas() if f.id in needed]


def render_notebooks(sheet: Sheet) -> dict[str, NotebookNode]:
    """`{docs-relative path: notebook}` for every section that has formulas (others have no code)."""
    notebooks: dict[str, NotebookNode] = {}
    for section in sheet.sections:
        formulas = [e for e in section.entries if isinstance(e, Formula)]
        if not formulas:
            continue
        intro = (f"# {_markdown_text(section.title)}\n\n"
                 f"From *{_markdown_text(sheet.sheet.title)}*: each formula of this section with its "
                 "tested NumPy implementation, run on its documented examples.\n\n"
                 "Generated by sheetgen from `formulas.yaml`: edit the YAML, not this notebook.")
        setup = ["import numpy as np"]
        for helper in _prerequisites(sheet, formulas):
            setup += ["", "", f"# {comment(helper.name)}: used below; shown with its examples in its own section",
                      function_source(helper, with_docstring=False)]
        cells = [_cell("markdown", intro, "intro"), _cell("code", "\n".join(setup), "setup")]
        for formula in formulas:
            cells.append(_cell("markdown", _formula_markdown(formula), f"{formula.id}-md"))
            # No docstring: the Markdown cell above already shows name, formula, meaning and source, and
            # the examples follow as code (a docstring would repeat both, and weigh on the site's page).
            code = function_source(formula, with_docstring=False) + "\n\n\n" + example_code(formula.examples)
            cells.append(_cell("code", code, f"{formula.id}-code"))
            if formula.figure is not None:
                # The site's figure, drawn by the functions above. `plt.show()` last: no object repr
                # (with a memory address) as the cell's result; the image itself is not kept (text_only).
                figure = (f"# {comment(formula.figure.caption)}\nimport matplotlib.pyplot as plt\n\n"
                          f"{formula.figure.code.strip()}\nplt.show()")
                cells.append(_cell("code", figure, f"{formula.id}-figure"))
        notebook = nbformat.v4.new_notebook(  # type: ignore[no-untyped-call]
            cells=cells,
            metadata={"kernelspec": dict(_KERNELSPEC), "language_info": {"name": "python"},
                      "sheetgen": {"section": section.id}},
        )
        nbformat.validate(notebook)
        notebooks[notebook_path(section)] = notebook
    return notebooks


# --- executing ------------------------------------------------------------------------------


def cache_key(notebook: NotebookNode, kernel_name: str = KERNEL_NAME) -> str:
    """Hash of everything the outputs depend on: the cells, the kernel, Python and NumPy."""
    import numpy

    digest = hashlib.sha256()
    for part in (_CACHE_FORMAT, kernel_name, platform.python_version(), numpy.__version__,
                 dumps(notebook)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _node(data: dict[str, Any]) -> NotebookNode:
    return cast(NotebookNode, nbformat.from_dict(data))  # type: ignore[no-untyped-call]


_TEXT_OUTPUT_KEYS = {"stream": ("name", "text"), "error": ("ename", "evalue", "traceback")}


def text_only(notebook: NotebookNode) -> NotebookNode:
    """The notebook with every output reduced to plain text, in place.

    Examples are code from the YAML: a value's `_repr_html_`, `_repr_javascript_`, `_repr_svg_` or
    `_repr_markdown_` would otherwise reach the site as live markup (stored XSS). Rich results keep
    only their `text/plain` form (which nbconvert escapes); outputs without one, widgets and unknown
    output types are dropped; output metadata is dropped.
    """
    for cell in notebook.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind in _TEXT_OUTPUT_KEYS:
                fields = {key: output.get(key) for key in _TEXT_OUTPUT_KEYS[kind]}
                if all(isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                       for v in fields.values()):
                    kept.append(_node({"output_type": kind, **fields}))
            elif kind in ("execute_result", "display_data"):
                text = output.get("data", {}).get("text/plain")
                if isinstance(text, list):
                    text = "".join(text)
                if not isinstance(text, str):
                    continue
                plain: dict[str, Any] = {"output_type": kind, "data": {"text/plain": text}, "metadata": {}}
                if kind == "execute_result":
                    plain["execution_count"] = output.get("execution_count")
                kept.append(_node(plain))
        cell["outputs"] = kept
    return notebook


@dataclass(frozen=True)
class Executed:
    notebook: NotebookNode
    cached: bool
    """True when the outputs came from the cache (no kernel was started)."""


def execute_notebook(notebook: NotebookNode, cache_dir: Path, *, timeout: int = 120,
                     kernel_name: str = KERNEL_NAME, sheet: Sheet | None = None, name: str = "notebook"
                     ) -> Executed:
    """Run every cell with nbclient, or take the outputs from `cache_dir/<content hash>.ipynb`.

    A failing cell raises `SheetError` at the formula's `examples` line when `sheet` is given.
    """
    return execute_notebooks({name: notebook}, cache_dir, timeout=timeout, kernel_name=kernel_name,
                             sheet=sheet)[name]


def execute_notebooks(notebooks: Mapping[str, NotebookNode], cache_dir: Path, *, timeout: int = 120,
                      kernel_name: str = KERNEL_NAME, sheet: Sheet | None = None,
                      jobs: int | None = None) -> dict[str, Executed]:
    """`execute_notebook` for each; the cache misses run concurrently, one kernel each."""
    results: dict[str, Executed] = {}
    misses: dict[str, tuple[Path, NotebookNode]] = {}
    for name, notebook in notebooks.items():
        cached = cache_dir / f"{cache_key(notebook, kernel_name)}.ipynb"
        try:
            results[name] = Executed(text_only(loads(cached.read_text(encoding="utf-8"))), True)
            continue
        except (OSError, ValueError):
            pass  # not cached yet, or a damaged entry: execute again and overwrite
        misses[name] = (cached, loads(dumps(notebook)))
    if misses:
        jobs = jobs or 4  # kernels mostly wait on startup; 4 halves a cold build on 2 cores
        errors = asyncio.run(_run_all({n: nb for n, (_, nb) in misses.items()}, timeout=timeout,
                                      kernel_name=kernel_name, sheet=sheet, jobs=jobs))
        if errors:
            raise SheetError(problem for error in errors for problem in error.problems)
        for name, (cached, executed) in misses.items():
            text_only(executed)
            write_atomic(cached, dumps(executed))
            results[name] = Executed(executed, cached=False)
    return {name: results[name] for name in notebooks}


async def _run_all(notebooks: Mapping[str, NotebookNode], *, timeout: int, kernel_name: str,
                   sheet: Sheet | None, jobs: int) -> list[SheetError]:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from traitlets.config import Config

    slots = asyncio.Semaphore(jobs)

    async def run(name: str, notebook: NotebookNode) -> SheetError | None:
        async with slots:
            workdir = sandbox.working_folder("sheetgen-kernel-", sockets=True)  # a killed build's goes next time
            try:
                # IPC sockets instead of TCP: nothing listens on the network, and ipykernel does not
                # print its warning about unencrypted TCP.
                config = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(workdir, "kernel")}})
                total = NOTEBOOK_SECONDS
                deadline = time.monotonic() + total

                def cell_timeout(cell: Any) -> int:  # the whole notebook is bounded too, not only each cell
                    return max(1, min(timeout, int(deadline - time.monotonic())))

                client = NotebookClient(notebook, timeout=timeout, kernel_name=kernel_name, config=config,
                                        record_timing=False, resources={"metadata": {"path": workdir}},
                                        kernel_manager_class=_limited_kernel_manager(), timeout_func=cell_timeout)
                try:
                    # The cells are YAML code: the kernel gets the sandbox's limits, this temporary folder
                    # as cwd and HOME, and no environment variables of ours (no tokens, no credentials).
                    # Its stdout/stderr go nowhere: an interrupted kernel logs tracebacks, even after we exit.
                    await client.async_execute(env=sandbox.scrubbed_env(workdir), stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL)
                except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
                    if isinstance(err, CellTimeoutError) and time.monotonic() >= deadline - 1:
                        err = CellTimeoutError(f"the notebook ran longer than {total:g} s")
                    return _cell_error(notebook, err, sheet, name)
                except (RuntimeError, TimeoutError, OSError) as err:  # the kernel did not start or answer
                    where = sheet.source_path if sheet is not None else name
                    return SheetError([Problem(where, 0, f"notebook {name}: no kernel to run it "
                                               f"({type(err).__name__}: {sandbox.clip(str(err), 120)})",
                                               "run `make` to install the environment (ipykernel), then retry")])
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        return None

    outcomes = await asyncio.gather(*(run(name, nb) for name, nb in notebooks.items()))
    return [error for error in outcomes if error is not None]


NOTEBOOK_SECONDS = 600.0
"""Wall clock for one whole notebook (each cell also has its own timeout)."""
KERNEL_LIMITS = sandbox.Limits(cpu_seconds=300, memory_bytes=1 << 30, file_bytes=64 << 20)


@functools.cache
def _limited_kernel_manager() -> type:
    """A kernel manager that starts the kernel under `KERNEL_LIMITS` (see `sandbox.limited_command`)."""
    from jupyter_client.manager import AsyncKernelManager

    class LimitedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return sandbox.limited_command(super().format_kernel_cmd(extra_arguments), KERNEL_LIMITS)

    return LimitedKernelManager


def _cell_error(notebook: NotebookNode, err: Exception, sheet: Sheet | None, name: str) -> SheetError:
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    failed: Any = None
    for cell in notebook.cells:
        if any(output.get("output_type") == "error" for output in cell.get("outputs", ())):
            failed = cell
    if failed is None:  # a timeout or a dead kernel: the last cell that started (execute_input numbers it)
        code_cells = [c for c in notebook.cells if c.get("cell_type") == "code"]
        started = [c for c in code_cells if c.get("execution_count") is not None]
        failed = started[-1] if started else (code_cells[0] if code_cells else None)
    message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    error = next((o for o in failed.outputs if o.get("output_type") == "error"), None) if failed is not None else None
    if isinstance(err, CellTimeoutError):  # the kernel was interrupted: its KeyboardInterrupt says nothing
        message = str(err).strip().splitlines()[0] if str(err).strip() else "a cell timed out"
    elif error is not None:
        message = str(error.get("ename", "Error")) + (f": {error['evalue']}" if error.get("evalue") else "")
    elif isinstance(err, DeadKernelError):
        message = "the kernel died (out of memory, CPU time, or the code ended it)"
    message = sandbox.clip(message)
    cell_id = str(failed.get("id", "")) if failed is not None else ""
    # `<id>-code` holds the examples, `<id>-figure` the figure code.
    entry_id, field = cell_id.rpartition("-")[0], "figure" if cell_id.endswith("-figure") else "examples"
    fix = "the doctests pass but the notebook cell failed; run `sheetgen notebooks` and open the notebook"
    if sheet is not None and entry_id and any(f.id == entry_id for f in sheet.formulas()):
        return SheetError([Problem(sheet.source_path, sheet.line_of(entry_id, field),
                                   f"notebook {name} failed: {message}", fix, None, entry_id, field)])
    return SheetError([Problem(name, 0, f"notebook failed: {message}", fix)])
