"""Math inside the sheet's text: `$…$` in prose, and every piece of math a renderer must typeset.

Pure functions over the model; `sheetgen.katex` typesets what `sheet_math_requests` lists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .errors import Problem, SheetError
from .katex import MathRequest
from .model import QA, EntryBase, Fact, Formula, Sheet, Snippet, Steps

__all__ = ["entry_texts", "sheet_math_requests", "split_inline_math"]


def split_inline_math(text: str) -> list[tuple[bool, str]]:
    """Split prose into (is_math, chunk) pieces: math is between single dollars, `\\$` is a dollar.

    Inside math, backslash escapes are kept as they are (`$\\$5$` is the TeX `\\$5`).
    Raises ValueError on an unclosed or empty `$...$`.
    """
    pieces: list[tuple[bool, str]] = []
    chunk: list[str] = []
    in_math = False
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and (in_math or text[i + 1] == "$"):
            chunk.append(text[i:i + 2] if in_math else "$")
            i += 2
            continue
        if char == "$":
            if in_math and not "".join(chunk).strip():
                raise ValueError(f"empty math `$$` at character {i}")
            if chunk:
                pieces.append((in_math, "".join(chunk)))
            chunk = []
            in_math = not in_math
        else:
            chunk.append(char)
        i += 1
    if in_math:
        raise ValueError("a `$` opens inline math that is never closed")
    if chunk:
        pieces.append((False, "".join(chunk)))
    return pieces


def entry_texts(entry: EntryBase) -> Iterator[tuple[str, str]]:
    """(field, text) for every prose field of an entry that may hold inline `$math$`."""
    if isinstance(entry, Formula):
        yield from (("name", entry.name), ("meaning", entry.meaning), ("source", entry.source))
        yield from (("conventions", c) for c in entry.conventions)
    elif isinstance(entry, Fact):
        yield from (("name", entry.name), ("text", entry.text))
    elif isinstance(entry, QA):
        yield "question", entry.question
        yield from (("answer", a) for a in entry.answer)
    elif isinstance(entry, Steps):
        yield "name", entry.name
        for step in entry.steps:
            yield "steps", step.title
            yield from (("steps", p) for p in step.points)
    elif isinstance(entry, Snippet):
        yield "name", entry.name


def sheet_math_requests(sheet: Sheet, entries: Iterable[EntryBase] | None = None,
                        display_tex: Callable[[EntryBase, str], tuple[str, bool]] | None = None,
                        ) -> list[MathRequest]:
    """Every piece of math on the sheet: display formulas (Formula.latex, Fact.latex) and inline
    `$...$` in prose, so a renderer typesets all of it in one batch. Look results up by (tex, display).

    `entries` limits it to some entries (default: all). `display_tex(entry, latex)` gives the
    (tex, display) to request for a display formula (default: the latex, in display mode).
    """
    requests: list[MathRequest] = []
    problems: list[Problem] = []
    for entry in sheet.entries() if entries is None else entries:
        latex = entry.latex if isinstance(entry, Formula | Fact) else None
        if latex:
            tex, display = display_tex(entry, latex) if display_tex else (latex, True)
            requests.append(MathRequest.at(sheet, entry.id, "latex", tex, display))
        for field, text in entry_texts(entry):
            try:
                pieces = split_inline_math(text)
            except ValueError as err:
                problems.append(Problem(sheet.source_path, sheet.line_of(entry.id, field), str(err),
                                        "close it with a `$`, or write `\\$` for a dollar sign",
                                        None, entry.id, field))
                continue
            requests.extend(MathRequest.at(sheet, entry.id, field, tex, False) for is_math, tex in pieces
                            if is_math)
    if problems:
        raise SheetError(problems)
    return requests
