"""Run every formula's examples against the generated module, reporting failures at YAML lines."""

from __future__ import annotations

import doctest
import io
import types
from dataclasses import dataclass

from .errors import Problem, SheetError
from .model import Sheet
from .render.code import render_module


@dataclass(frozen=True)
class DoctestReport:
    formulas: int
    examples: int


def import_module(source: str, name: str = "formulas") -> types.ModuleType:
    """Execute generated source as a fresh module (nothing is written to disk)."""
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    return module


def run_doctests(sheet: Sheet, module: types.ModuleType | None = None) -> DoctestReport:
    """Run each formula's examples in the module's namespace; raise SheetError on any failure."""
    if module is None:
        module = import_module(render_module(sheet))
    parser = doctest.DocTestParser()
    problems: list[Problem] = []
    examples = 0
    formulas = sheet.formulas()
    for formula in formulas:
        first_line = sheet.line_of(formula.id, "examples")
        test = parser.get_doctest(formula.examples, dict(module.__dict__), formula.id, sheet.source_path, 0)
        output = io.StringIO()
        runner = _Runner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=output.write, clear_globs=True)
        examples += len(test.examples)
        for example, got, exception in runner.collected:
            line = first_line + (example.lineno or 0)
            source = example.source.strip().splitlines()[0]
            if exception is not None:
                problem = f"doctest `{source}` raised {exception}"
            else:
                problem = f"doctest `{source}` expected {example.want.strip()!r} but got {got.strip()!r}"
            problems.append(Problem(sheet.source_path, line, problem,
                                    "fix the implementation or the expected output", None, formula.id,
                                    "examples"))
    if problems:
        raise SheetError(problems)
    return DoctestReport(formulas=len(formulas), examples=examples)


class _Runner(doctest.DocTestRunner):
    """Collects failures instead of printing doctest's multi-line reports."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(verbose=False, **kwargs)  # type: ignore[arg-type]
        self.collected: list[tuple[doctest.Example, str, str | None]] = []

    def report_failure(self, out, test, example, got):  # type: ignore[no-untyped-def]
        self.collected.append((example, got, None))

    def report_unexpected_exception(self, out, test, example, exc_info):  # type: ignore[no-untyped-def]
        kind, value, _ = exc_info
        self.collected.append((example, "", f"{kind.__name__}: {value}"))
