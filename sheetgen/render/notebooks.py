"""One Jupyter notebook per section: `Sheet` → `{path: notebook}`.

`render_notebooks` is pure and deterministic (explicit cell ids, sorted JSON): the same YAML gives
byte-identical notebooks. Running them is `sheetgen.notebook_run`'s job (one sandboxed kernel per
build, outputs cached by content).
"""

from __future__ import annotations

import ast
import contextlib
import doctest
import io
import re
import tokenize
from typing import cast

import nbformat
from nbformat import NotebookNode

from ..mathtext import split_inline_math
from ..model import Formula, Section, Sheet
from .code import comment, function_source

__all__ = [
    "KERNEL_NAME",
    "dumps",
    "example_code",
    "loads",
    "notebook_path",
    "render_notebooks",
]

KERNEL_NAME = "python3"
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
