"""Run every formula's examples against the generated module, reporting failures at YAML lines.

The examples and implementations are code from formulas.yaml, so they run in a child process with
limits (`sheetgen.sandbox`): CPU time, memory, a wall clock per formula, a temporary working folder
and a scrubbed environment. Whatever an example does — loop forever, exit the interpreter, raise
KeyboardInterrupt, allocate 100 GB, print 300 KB — the build gets one located problem back.
Extra checks that need the imported module (e.g. the printed-formula check) can run in the same
child: name them as `"module:function"`; each is called as `function(sheet, module)` and its
(picklable) result comes back in `DoctestReport.extra`.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import io
import traceback
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import sandbox
from .errors import Problem, SheetError
from .model import Sheet
from .render.code import render_module

__all__ = ["PRINTED_CHECK", "DoctestReport", "import_module", "run_doctests"]

PRINTED_CHECK = "sheetgen.printed:check_printed"
"""The printed-formula check, for `run_doctests(..., checks=[PRINTED_CHECK])`."""
LIMITS = sandbox.Limits(step_seconds=10.0, total_seconds=300.0, cpu_seconds=300, memory_bytes=1 << 30)
CHECK_SECONDS = 120.0
"""Wall clock for each extra check (it covers every formula at once, unlike a formula's examples)."""
_FIX = "fix the implementation or the expected output"
_MESSAGE_CHARS = 200


@dataclass(frozen=True)
class DoctestReport:
    formulas: int
    examples: int
    extra: Mapping[str, Any] = field(default_factory=dict)
    """What each extra check returned, by its `"module:function"` name."""

    @property
    def printed(self) -> Any:
        """The printed-formula check's report, when it ran (`checks=[PRINTED_CHECK]`)."""
        return self.extra.get(PRINTED_CHECK)


def import_module(source: str, name: str = "formulas") -> types.ModuleType:
    """Execute generated source as a fresh module in *this* process (nothing is written to disk).

    Only for code you trust (tests of the shipped sheet): builds use `run_doctests`, which imports
    the module in a limited child process.
    """
    module = types.ModuleType(name)
    module.__file__ = f"<{name}>"
    exec(compile(source, f"{name}.py", "exec"), module.__dict__)
    module.__dict__["__sheetgen_source__"] = source
    return module


def run_doctests(sheet: Sheet, module_source: str | types.ModuleType | None = None, *,
                 checks: Sequence[str] = (), limits: sandbox.Limits = LIMITS,
                 result_types: Sequence[type] = ()) -> DoctestReport:
    """Run each formula's examples against the module in a limited child process; raise SheetError on any
    failure. `module_source` defaults to the module rendered from `sheet`.

    `checks` run in the same child after the doctests (`"module:function"`, called as
    `function(sheet, module)`); what they return may hold plain values and instances of
    `result_types` (the printed check's report is always allowed)."""
    if PRINTED_CHECK in checks:
        from .printed import PrintedReport

        result_types = [*result_types, PrintedReport]
    if isinstance(module_source, types.ModuleType):  # the older API: the module's source, not the module
        module_source = module_source.__dict__.get("__sheetgen_source__")
    source = module_source if module_source is not None else render_module(sheet)
    import numpy  # imported once here, every forked child inherits it (saves ~0.15 s a run)
    import numpy.random  # noqa: F401 - examples use it; numpy imports it lazily

    result_types = [Problem, *result_types]
    outcome = sandbox.run(_run_in_child, sheet, source, tuple(checks), limits=limits, result_types=result_types)
    if outcome.failure is not None and outcome.step == ("define", None):
        # Defining the functions hung or ended the process: again, one definition at a time, to say which.
        outcome = sandbox.run(_run_in_child, sheet, source, tuple(checks), True, limits=limits,
                              result_types=result_types)
    if outcome.failure is not None:
        raise SheetError([_located_failure(sheet, outcome)])
    result = outcome.value
    if not (isinstance(result, dict) and isinstance(result.get("problems"), list)
            and all(isinstance(p, Problem) for p in result["problems"])
            and isinstance(result.get("examples"), int) and isinstance(result.get("extra"), dict)):
        # The examples ran in that process and could have changed anything there, our code included.
        raise SheetError([Problem(sheet.source_path, 0, "running the examples: the process sent back something "
                                  "that is not a report", "formulas.yaml is code: see the README section "
                                  "'formulas.yaml is code'")])
    if result["problems"]:
        raise SheetError(result["problems"])
    return DoctestReport(formulas=len(sheet.formulas()), examples=result["examples"], extra=result["extra"])


def _located_failure(sheet: Sheet, outcome: sandbox.Outcome) -> Problem:
    """A timeout or a dead child, at the example (or the definition) it happened in."""
    step, note, what = outcome.step, outcome.note, outcome.message
    ids = {f.id for f in sheet.formulas()}
    if isinstance(step, tuple) and len(step) == 2 and step[0] == "formula" and step[1] in ids:
        formula_id = step[1]
        line = sheet.line_of(formula_id, "examples")
        at = ""
        if isinstance(note, tuple) and len(note) == 2 and isinstance(note[0], int) and isinstance(note[1], str):
            line += note[0]
            at = f"`{sandbox.clip(note[1], 80)}`"
        if outcome.failure == "timeout":
            problem = f"examples of {formula_id} {what}" + (f" (at {at})" if at else "")
            fix = "an endless loop or a very slow example? make it smaller or the implementation faster"
        else:
            problem = f"examples of {formula_id} stopped" + (f" at {at}" if at else "") + f": {what}"
            fix = "examples must not exit the interpreter, kill the process or exhaust its limits"
        return Problem(sheet.source_path, line, problem, fix, None, formula_id, "examples")
    if step == ("define", None) and note in ids:
        assert isinstance(note, str)
        what = f" {what}" if outcome.failure == "timeout" else f": {what}"
        return Problem(sheet.source_path, sheet.line_of(note, "implementation"), f"defining {note}{what}",
                       "default arguments run when the module is imported; compute them inside the function",
                       None, note, "implementation")
    if isinstance(step, tuple) and len(step) == 2 and step[0] == "check":
        what = f" {what}" if outcome.failure == "timeout" else f": {what}"
        return Problem(sheet.source_path, 0, f"the check {step[1]}{what}", "this is a bug in sheetgen; report it")
    return Problem(sheet.source_path, 0, f"running the examples: {what}",
                   "formulas.yaml is code: see the README section 'formulas.yaml is code'")


# --- in the child ---------------------------------------------------------------------------------


def _run_in_child(child: sandbox.Child, sheet: Sheet, source: str, checks: tuple[str, ...],
                  one_by_one: bool = False) -> dict[str, Any]:
    module = types.ModuleType("formulas")
    module.__file__ = "formulas.py"
    failed = _define(child, sheet, source, module, one_by_one)
    if failed:
        return {"problems": failed, "examples": 0, "extra": {}}
    problems: list[Problem] = []
    examples = 0
    parser = doctest.DocTestParser()
    for formula in sheet.formulas():
        child.step(("formula", formula.id))
        first_line = sheet.line_of(formula.id, "examples")
        test = parser.get_doctest(formula.examples, dict(module.__dict__), formula.id, sheet.source_path, 0)
        runner = _Runner(child, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        try:
            runner.run(test, out=io.StringIO().write, clear_globs=True)
        except BaseException as err:  # doctest lets KeyboardInterrupt through; locate it
            runner.collected.append((runner.current, "", _exception_text(type(err), err)))
        examples += len(test.examples)
        for example, got, exception in runner.collected:
            line = first_line + (example.lineno or 0) if example is not None else first_line
            shown = sandbox.clip(example.source.strip().splitlines()[0], 80) if example is not None else "?"
            if exception is not None:
                problem = f"doctest `{shown}` raised {exception}"
            else:
                want = sandbox.clip(example.want.strip(), _MESSAGE_CHARS) if example is not None else ""
                problem = f"doctest `{shown}` expected {want!r} but got {sandbox.clip(got.strip(), _MESSAGE_CHARS)!r}"
            fix = _FIX
            if exception is not None and exception.startswith("MemoryError"):
                fix = f"examples may use {LIMITS.memory_bytes >> 20:,} MB of memory; use smaller inputs"
            problems.append(Problem(sheet.source_path, line, problem, fix, None, formula.id, "examples"))
    extra: dict[str, Any] = {}
    if problems:  # the extra checks build on the examples: they run once the examples pass
        return {"problems": problems, "examples": examples, "extra": extra}
    for name in checks:
        child.step(("check", name), CHECK_SECONDS)
        try:
            module_name, _, function_name = name.partition(":")
            check = getattr(importlib.import_module(module_name), function_name)
            extra[name] = check(sheet, module)
        except SheetError as err:
            problems.extend(err.problems)
        except BaseException as err:  # a check that runs the examples meets what they raise, too
            problems.append(Problem(sheet.source_path, 0, f"the check {name} failed: {_exception_text(type(err), err)}",
                                    "this is a bug in sheetgen; report it"))
    return {"problems": problems, "examples": examples, "extra": extra}


def _define(child: sandbox.Child, sheet: Sheet, source: str, module: types.ModuleType,
            one_by_one: bool) -> list[Problem]:
    """Execute the module. A definition that fails (a default argument that raises, say) is blamed on
    its own formula's implementation line. `one_by_one` executes one top-level statement at a time and
    tells the parent which, so a definition that hangs or ends the process can be located too."""
    child.step(("define", None))
    try:
        if not one_by_one:
            exec(compile(source, "formulas.py", "exec", dont_inherit=True), module.__dict__)
            return []
        flags = annotations.compiler_flag  # the module's `from __future__ import annotations`, per statement
        for node in ast.parse(source).body:
            child.note(node.name if isinstance(node, ast.FunctionDef) else None)
            exec(compile(ast.Module([node], []), "formulas.py", "exec", flags=flags, dont_inherit=True),
                 module.__dict__)
    except BaseException as err:  # anything a default argument can raise, KeyboardInterrupt included
        frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == "formulas.py"]
        line = frames[-1].lineno or 0 if frames else 0
        ids = {f.id for f in sheet.formulas()}
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef) and node.name in ids \
                    and node.lineno <= line <= (node.end_lineno or node.lineno):
                return [Problem(sheet.source_path, sheet.line_of(node.name, "implementation") + line - node.lineno,
                                f"defining {node.name} raised {_exception_text(type(err), err)}",
                                "default arguments run when the module is imported; compute them inside the "
                                "function", None, node.name, "implementation")]
        return [Problem(sheet.source_path, 0, f"the generated module failed: {_exception_text(type(err), err)}",
                        "this is a bug in sheetgen; report it")]
    return []


def _exception_text(kind: type[BaseException], value: BaseException) -> str:
    text = str(value)
    return f"{kind.__name__}: {sandbox.clip(text, _MESSAGE_CHARS)}" if text else kind.__name__


class _Runner(doctest.DocTestRunner):
    """Collects failures instead of printing doctest's multi-line reports; tells the parent where it is."""

    def __init__(self, child: sandbox.Child, **kwargs: object) -> None:
        super().__init__(verbose=False, **kwargs)  # type: ignore[arg-type]
        self.child = child
        self.current: doctest.Example | None = None
        self.collected: list[tuple[doctest.Example | None, str, str | None]] = []

    def report_start(self, out, test, example):  # type: ignore[no-untyped-def]
        self.current = example
        self.child.note((example.lineno, example.source.strip().splitlines()[0] if example.source.strip() else ""))

    def report_failure(self, out, test, example, got):  # type: ignore[no-untyped-def]
        self.collected.append((example, got, None))

    def report_unexpected_exception(self, out, test, example, exc_info):  # type: ignore[no-untyped-def]
        kind, value, _ = exc_info
        self.collected.append((example, "", _exception_text(kind, value)))
