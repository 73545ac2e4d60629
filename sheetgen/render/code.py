"""The NumPy module: one function per formula, docstring = formula + source + doctests.

No YAML text can leave its string or comment here: docstrings are ordinary (non-raw) string
literals written by `string_literal`, which escapes every backslash, every quote that could end the
string and every character Python would not read back as itself; the section comments go through
`comment`, which keeps them on one line. tests/test_code_safety.py checks this on arbitrary text.
"""

from __future__ import annotations

import ast
import re
import textwrap

from ..model import Formula, Sheet
from .texplain import prose_to_unicode, tex_to_unicode

__all__ = ["comment", "docstring", "function_source", "render_module", "string_literal"]

HEADER = '''\
{docstring}

from __future__ import annotations

import numpy as np

__all__ = [
{names}
]
'''

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PROMPT = re.compile(r"(?m)^(\s*)>>>")


def _escape_char(char: str) -> str:
    code = ord(char)
    if char == "\t":
        return "\\t"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _escape_line(line: str) -> str:
    """One line (no `\\n`) as the body of a non-raw string: reads back as exactly `line`."""
    out: list[str] = []
    for i, char in enumerate(line):
        if char == "\\":
            out.append("\\\\")
        elif char == '"' and (i + 1 == len(line) or line[i + 1] == '"'):
            out.append('\\"')  # no two unescaped quotes in a row, none at the end: `"""` cannot occur
        elif not char.isprintable() or (char == " " and i + 1 == len(line)):
            out.append(_escape_char(char))  # also a trailing space, so the source has no trailing blanks
        else:
            out.append(char)
    return "".join(out)


def string_literal(text: str, indent: str = "") -> str:
    """A `\"\"\"…\"\"\"` literal whose value is `text` with `indent` added to its non-empty lines after the first.

    Line breaks stay line breaks (the docstring reads naturally and doctest finds its examples);
    everything else that is not a printable character is written as an escape.
    """
    lines = [_escape_line(line) for line in text.split("\n")]
    body = "\n".join([lines[0], *(indent + line if line else "" for line in lines[1:])])
    closing = f"\n{indent}" if len(lines) > 1 else ""
    return f'"""{body}{closing}"""'


def comment(text: str) -> str:
    """`text` as the body of a one-line `#` comment: whitespace runs become one space, and anything
    unprintable is shown as its escape."""
    flat = " ".join(text.split())
    return "".join(char if char.isprintable() else _escape_char(char) for char in flat)


def _prose(text: str) -> str:
    """A prose field on one line, its `$…$` math as Unicode."""
    return " ".join(prose_to_unicode(text).split())


def docstring(formula: Formula) -> str:
    """The docstring text of a formula's function (its value, before indentation)."""
    plain = formula.plain or tex_to_unicode(formula.latex)  # the docstring is plain text, not TeX
    parts = [f"{_prose(formula.name)}: {_prose(formula.meaning)}", "",
             "Formula: " + "\n".join(plain.strip("\n").splitlines()),
             f"Source: {_prose(formula.source)}"]
    if formula.conventions:
        parts.append("Conventions:")
        parts.extend(textwrap.fill(_prose(c), 92, initial_indent="  - ", subsequent_indent="    ")
                     for c in formula.conventions)
    # Prose must not hold a doctest prompt: `python -m doctest` would run it as an example.
    prose = _PROMPT.sub(r"\1>> >", "\n".join(parts))
    # Tabs expanded here: doctest expands them after the docstring is indented, which would move tab
    # stops; this way `python -m doctest` runs exactly the examples the build ran.
    return prose + "\n\n" + formula.examples.expandtabs().strip("\n")


def function_source(formula: Formula, with_docstring: bool = True) -> str:
    """The implementation as written in the YAML, with the generated docstring inserted."""
    code = textwrap.dedent(formula.implementation).strip("\n")
    if not with_docstring:
        return code
    lines = code.splitlines()
    function = ast.parse(code).body[0]
    assert isinstance(function, ast.FunctionDef)  # guaranteed by the loader
    body_line = function.body[0].lineno - 1
    # Comments between the signature and the first statement belong to the body too.
    while body_line > function.lineno and lines[body_line - 1].strip().startswith("#"):
        body_line -= 1
    indent = lines[body_line][: len(lines[body_line]) - len(lines[body_line].lstrip())]
    doc = indent + string_literal(docstring(formula), indent)
    return "\n".join([*lines[:body_line], doc, *lines[body_line:]])


def _quoted_name(name: str) -> str:
    return f'"{name}"' if _NAME.fullmatch(name) else repr(name)


def render_module(sheet: Sheet) -> str:
    """The whole generated module as Python source."""
    formulas = sheet.formulas()
    source = sheet.source_path.rsplit("/", 1)[-1]
    header_doc = (f"{_prose(sheet.sheet.title)}: every formula as a NumPy function, checked by its doctests.\n\n"
                  f"Generated by sheetgen from {source}; do not edit. Edit the YAML and run `sheetgen code`.\n"
                  "Only NumPy is needed: `python -m doctest -v formulas.py` runs every example.")
    header = HEADER.format(
        docstring=string_literal(_PROMPT.sub(r"\1>> >", header_doc)),
        names="\n".join(f"    {_quoted_name(name)}," for name in sorted(f.id for f in formulas)),
    )
    chunks = [header]
    for section in sheet.sections:
        defined = [e for e in section.entries if isinstance(e, Formula)]
        if not defined:
            continue
        title = comment(section.title)
        chunks.append(f"\n\n# --- {title} " + "-" * max(0, 80 - len(title)) + "\n")
        chunks.extend("\n\n" + function_source(f) + "\n" for f in defined)
    return "".join(chunks).rstrip("\n") + "\n"
