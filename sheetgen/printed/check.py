"""The printed-formula check: evaluate each formula's `latex` on its own doctest calls, compare with the code."""

from __future__ import annotations

import ast
import contextlib
import copy
import doctest
import inspect
import io
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import Problem, SheetError
from ..model import Formula, PrintedCheck, Sheet
from . import tex
from .evaluate import IndexVar, Scope, Unbound, atom_tex, index_items, walk
from .safeexpr import ExpressionError, compile_expression
from .safeexpr import evaluate as run_expression
from .values import EvalError, LArr, align, as_larr

__all__ = ["MIN_SAMPLES", "PrintedReport", "check_formula", "check_printed"]

MIN_SAMPLES = 1000  # a `\sim` statement is checked only with at least this many draws
RTOL, ATOL = 1e-7, 1e-12
FIX = "fix the LaTeX or the implementation, or bind the symbol in check:"


@dataclass(frozen=True)
class PrintedReport:
    """Coverage of the printed-formula check; `status[id]` is True when that formula's LaTeX was checked."""

    checked: int
    total: int
    skipped: tuple[tuple[str, str], ...]
    status: Mapping[str, bool] = field(default_factory=dict)

    def is_checked(self, formula_id: str) -> bool:
        return self.status.get(formula_id, False)

    @property
    def checked_ids(self) -> tuple[str, ...]:
        """Formulas whose printed LaTeX was checked, in sheet order (the site card marks them)."""
        return tuple(ident for ident, ok in self.status.items() if ok)

    def lines(self) -> list[str]:
        out = [f"printed formulas checked: {self.checked}/{self.total}"]
        out += [f"  skipped {ident}: {reason}" for ident, reason in self.skipped]
        return out


@dataclass(frozen=True)
class _Call:
    arguments: dict[str, Any]
    result: Any
    text: str


class _Failure(Exception):
    def __init__(self, message: str, fix: str = FIX) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix


def check_printed(sheet: Sheet, module: types.ModuleType) -> PrintedReport:
    """Check every formula's printed LaTeX against `module` (the imported generated module).

    Raises SheetError with one located problem per failing formula; returns the coverage otherwise.
    """
    problems: list[Problem] = []
    skipped: list[tuple[str, str]] = []
    status: dict[str, bool] = {}
    formulas = sheet.formulas()
    for formula in formulas:
        if formula.check is not None and formula.check.skip:
            skipped.append((formula.id, formula.check.skip))
            status[formula.id] = False
            continue
        found = check_formula(sheet, formula, module)
        problems.extend(found)
        status[formula.id] = not found
    if problems:
        raise SheetError(problems)
    return PrintedReport(sum(status.values()), len(formulas), tuple(skipped), status)


def check_formula(sheet: Sheet, formula: Formula, module: types.ModuleType) -> list[Problem]:
    where_latex = sheet.line_of(formula.id, "latex")
    where_check = sheet.line_of(formula.id, "check") if formula.check is not None else where_latex

    def problem(line: int, field_name: str, message: str, fix: str) -> Problem:
        return Problem(sheet.source_path, line, message, fix, None, formula.id, field_name)

    block = formula.check or PrintedCheck()
    try:
        plan = _Plan(formula, block)
    except ExpressionError as err:
        return [problem(where_check, "check", str(err),
                        "use argument names, numbers, operators, indexing, np.<function> and lambda only")]
    except (tex.TexError, RecursionError, ValueError, IndexError) as err:
        reason = "it is nested too deeply" if isinstance(err, RecursionError) else str(err)
        return [problem(where_latex, "latex", f"the printed-formula check cannot read this LaTeX: {reason}",
                        "write it with the subset the README lists, or add check: {skip: reason}")]
    problems = [problem(where_check, "check", message, fix) for message, fix in plan.problems]
    if problems:
        return problems
    function = getattr(module, formula.id, None)
    if not callable(function):
        return [problem(where_latex, "latex", f"the module has no function {formula.id}", "")]
    calls = _record_calls(formula, module, function)
    if plan.calls is not None:
        kept = []
        for call in calls:
            try:
                if run_expression(plan.calls, {k: _arrayish(v) for k, v in call.arguments.items()}):
                    kept.append(call)
            except Exception as err:
                return [problem(where_check, "check", f"calls: {type(err).__name__}: {err} for {call.text}",
                                "write an expression over the arguments, e.g. 'x.ndim == 1'")]
        calls = kept
    if not calls:
        return [problem(where_latex, "latex", f"no doctest call of {formula.id} to evaluate the printed formula on"
                        + (" (check: calls keeps none)" if plan.calls is not None else ""),
                        "add an example that calls the function")]
    compared = 0
    functions = {name: getattr(module, name) for name in getattr(module, "__all__", ())
                 if name != formula.id and callable(getattr(module, name, None))}
    used: set[str] = set()
    for call in calls:
        try:
            compared += plan.run(call, functions, used)
        except _Failure as failure:
            return [problem(where_latex, "latex", failure.message, failure.fix)]
        except Unbound as err:
            return [problem(where_latex, "latex", f"symbol {err.symbol} is not bound (for {call.text})",
                            "add it to the entry's check block, e.g. check: {symbols: {'"
                            + err.symbol + "': argument_name}}")]
        except (EvalError, ExpressionError) as err:
            return [problem(where_latex, "latex", f"the printed formula cannot be evaluated for {call.text}: {err}",
                            "fix the LaTeX, bind the symbol in check:, or limit check: calls")]
        except RecursionError:
            return [problem(where_latex, "latex", "the printed formula is nested too deeply to evaluate", "")]
        except Exception as err:  # anything else the LaTeX or the block leads NumPy into: one located line
            return [problem(where_latex, "latex", f"the printed formula cannot be evaluated for {call.text}: "
                            f"{type(err).__name__}: {err}",
                            "fix the LaTeX, bind the symbol in check:, or limit check: calls")]
    unused = [key for key in block.symbols if key not in used]
    if unused:
        return [problem(where_check, "check", f"symbols {', '.join(map(repr, unused))} never occur in the "
                        "evaluated LaTeX", "remove them or write them exactly as in latex")]
    missing = [name for name in block.returns if not name.startswith("_") and name not in plan.compared_returns]
    if compared and missing:
        return [problem(where_latex, "latex", f"the printed formula never gives the returned {', '.join(missing)}",
                        "print how it is computed, or name it with a leading underscore in check: returns "
                        "(e.g. _" + missing[0] + ")")]
    if compared == 0:
        return [problem(where_latex, "latex", "the printed formula was never compared with the implementation "
                        "(undefined, unchecked or too few samples on every doctest call)",
                        "add an example where every printed side is defined")]
    if plan.gaps:  # every value agreed, but some elements of a result were never printed
        message, fix = plan.gaps[0]
        return [problem(where_latex, "latex", message, fix)]
    return []


# --- one formula --------------------------------------------------------------------------------------


class _Plan:
    """The parsed LaTeX and check block of one formula, run once per doctest call."""

    def __init__(self, formula: Formula, block: PrintedCheck) -> None:
        self.formula = formula
        self.block = block
        self.problems: list[tuple[str, str]] = []
        self.compared_returns: set[str] = set()  # returned values some printed side was compared with
        # Coverage of one call: which elements of each result ("result" or a returned name) a printed statement
        # defines. `PE_{(pos, 2i)} = …` alone compares only the even columns, which are right; the odd ones
        # would pass unprinted. A gap is kept (first per call) and reported once every value has agreed.
        self.coverage: dict[str, np.ndarray] = {}
        self.gaps: list[tuple[str, str]] = []
        self.limits: dict[int, list[tex.Reduce]] = {}  # sums with a symbol as upper limit, per statement
        self.simple: dict[tuple[str, str, str, str, int], tuple[ast.expr, str]] = {}
        self.compound: dict[tuple[tuple[str, str], ...], str] = {}
        self.compound_trees: dict[str, ast.expr] = {}
        for written, expression in block.symbols.items():
            tree = compile_expression(expression)
            try:
                node = tex.parse_expression(written) if written not in ("+", "-") else tex.Atom(written, "letters")
            except tex.TexError:
                node = None
            if isinstance(node, tex.Atom) and not node.transposed:
                self.simple[node.key] = (tree, written)
            else:
                self.compound[tex.normalize(tex.tokenize(written))] = written
                self.compound_trees[written] = tree
        self.calls = compile_expression(block.calls) if block.calls else None
        unchecked = {tex.normalize(tex.tokenize(written)): written for written in block.unchecked}
        self.statements = tex.parse_statements(formula.latex, self.compound, frozenset(unchecked))
        self.skip_sides: set[tuple[int, int]] = set()
        for key, written in unchecked.items():
            hits = [(s, k) for s, st in enumerate(self.statements) for k, side in enumerate(st.keys) if side == key]
            hits += [(s, -1) for s, st in enumerate(self.statements) if st.all_keys == key]
            if not hits:
                self.problems.append((f"unchecked: {written!r} is not a side or statement of the LaTeX",
                                      "copy the part exactly as written in latex"))
            self.skip_sides.update(hits)
        self.counts: dict[int, tuple[list[tex.Atom], list[tex.Reduce]]] = {}  # `\frac{1}{n} \sum_i`
        for s, st in enumerate(self.statements):
            nodes = [node for side in st.sides for node in walk(side)]
            self.limits[s] = [node for node in nodes
                              if isinstance(node, tex.Reduce) and isinstance(node.upper, tex.Atom)]
            variables = {node.var for node in nodes if isinstance(node, tex.Reduce)}
            counts = [node for node in nodes if isinstance(node, tex.Atom) and node.base in ("n", "N")
                      and node.kind == "letters" and not node.sub and node.sup is None
                      and node.base not in variables]
            open_sums = [node for node in nodes if isinstance(node, tex.Reduce) and node.op == "sum"
                         and node.upper is None and node.within is None]
            self.counts[s] = (counts, open_sums)
        # which definitions are used by other statements (intermediates), by (base, accent, primes)
        self.referenced: list[set[tuple[str, str, int, str]]] = []
        for _ in self.statements:
            used: set[tuple[str, str, int, str]] = set()
            for other in self.statements:
                for side in other.sides[1:]:
                    for node in walk(side):
                        if isinstance(node, tex.Atom):
                            used.add(_ref(node))
                        elif isinstance(node, tex.Seq):
                            used.add(_ref(node.first.without_sub()))
            self.referenced.append(used)

    def run(self, call: _Call, functions: Mapping[str, Callable[..., Any]], used: set[str]) -> int:
        result = call.result
        returns: dict[str, Any] = {}
        if self.block.returns:
            if not isinstance(result, tuple) or len(result) != len(self.block.returns):
                count = len(result) if isinstance(result, tuple) else 1
                raise _Failure(f"check: returns names {len(self.block.returns)} values, but {call.text} returns "
                               f"{count}", "name every returned value, in order")
            returns = dict(zip(self.block.returns, result, strict=True))
        elif isinstance(result, tuple):
            raise _Failure(f"{call.text} returns a tuple of {len(result)} values",
                           "name them in the entry's check block: check: {returns: [a, b]}")
        names = {**functions, **{k: _arrayish(v) for k, v in {**call.arguments, **returns}.items()},
                 "result": _arrayish(result)}
        scope = Scope(call.arguments, returns, functions, self.simple, self.compound_trees, names)
        single = None if returns else _result_value(result, call)
        pending = [s for s in range(len(self.statements)) if (s, -1) not in self.skip_sides]
        compared = 0
        self.coverage = {}
        while pending:
            deferred: list[int] = []
            first_error: Unbound | None = None
            for s in pending:
                try:
                    compared += self.statement(s, scope, single, call)
                except Unbound as err:
                    deferred.append(s)
                    first_error = first_error or err
            if len(deferred) == len(pending):
                assert first_error is not None
                raise first_error
            pending = deferred
        used.update(scope.used)
        self.gaps.extend(_gap(name, mask, call) for name, mask in self.coverage.items() if not mask.all())
        return compared

    def cover(self, name: str | None, target: LArr, free: list[tex.Node] | None, scope: Scope) -> None:
        """Mark the elements of `target` (the result, or the returned `name`) that one statement defines.

        With free indices the element ids are indexed exactly as the target was (`scope.index`), so
        `PE_{(pos, 2i+1)}` marks the odd columns; without, the statement covers the whole value.
        """
        if name is None or target.labels:
            return
        shape = target.arr.shape
        mask = self.coverage.setdefault(name, np.zeros(shape, dtype=bool))
        if mask.shape != shape:  # not the same array (cannot happen for a name): no claim either way
            return
        if not free:
            mask[...] = True
            return
        ids = scope.index(LArr(np.arange(mask.size).reshape(shape)), free).arr
        np.put(mask, ids, True)

    def statement(self, s: int, scope: Scope, single: LArr | None, call: _Call) -> int:
        st = self.statements[s]
        head = st.sides[0]
        relation = st.relations[0] if st.relations else "="
        if relation == "in":  # a domain such as y_i \in \{-1, +1\}: nothing to compute
            return 0
        with np.errstate(all="ignore"):
            self.bind_limits(s, scope)
            if relation == "sim":
                return self.distribution(st, scope, single)
            if relation == "leftarrow":
                return self.update(s, scope, single, call)
            core = _head_core(head)
            target: LArr | None = None
            head_value: LArr | None = None
            scope.head_mode = True
            scope.returned_hits.clear()
            try:
                value = scope.eval(head) if (s, 0) not in self.skip_sides else None
                head_value = as_larr(value) if value is not None else None
            except Unbound:
                head_value = None
            finally:
                scope.head_mode = False
            hits = set(scope.returned_hits)
            free: list[tex.Node] = []
            local_key = None
            named_part = False  # the target is a returned array of a tuple that the left side names
            if core is not None and not isinstance(head, tex.App):
                local_key = core[0].key
            if head_value is None and core is not None:
                atom, free = core
                referenced = not isinstance(head, tex.App) and _ref(atom) in self.referenced[s]
                if single is not None and not referenced:
                    target = single
                elif single is None and not referenced and free:  # `y_{o,h}` naming one returned array
                    target, hits = self.returned_part(atom, scope)
                    named_part = target is not None
            elif head_value is not None and single is not None and (
                    core is None or _ref(core[0]) not in self.referenced[s]):
                target = single
            elif head_value is not None:
                target = head_value
                if core is not None and core[1] and head_value.data_ndim >= len(core[1]):
                    free = core[1]  # `\mu_k` bound to a returned array: k runs over its first axis
            elif core is None and single is not None:
                target = single
            sides = list(range(1, len(st.sides))) if len(st.sides) > 1 else [0]
            if head_value is not None and target is single and len(st.sides) > 1:
                sides = [0, *sides]
            saved = dict(scope.indices)
            try:
                variables = self.bind_free(free, target, st, scope)
                indexed_target = scope.index(target, free) if target is not None and free else target
                compared = 0
                defines = False  # a printed side gives the target's elements (equal, or undefined there)
                first: tuple[LArr, str] | None = None
                for k in sides:
                    if (s, k) in self.skip_sides:
                        defines = defines or k > 0  # printed, with its reason for not being evaluated
                        continue
                    printed = as_larr(scope.num(st.sides[k]))
                    if first is None:
                        first = (printed, st.texts[k])
                    if indexed_target is not None:
                        outcome = _compare(printed, indexed_target)
                        if outcome is not None and outcome != "undefined":
                            raise _Failure(_mismatch(st.texts[k], outcome, call))
                        compared += outcome is None
                        defines = True
                    elif first[0] is not printed:  # two printed sides of an intermediate: they must agree,
                        outcome = _compare(printed, first[0])  # but that does not check the code
                        if outcome is not None and outcome != "undefined":
                            raise _Failure(f"`{st.texts[k]}` and `{first[1]}` differ for {call.text}: {outcome}")
                if defines and target is not None and indexed_target is not None:
                    self.cover(_owner(target, single, hits), target, free, scope)
                if compared and (head_value is not None or named_part):
                    self.compared_returns |= hits
                if local_key is not None:
                    value = first[0] if first is not None else indexed_target
                    if value is not None and variables:
                        value = LArr(value.order(tuple(variables)), ())
                    elif value is not None and value.labels:
                        raise EvalError(f"index {', '.join(value.labels)} of `{st.texts[-1]}` is not summed")
                    if value is not None:
                        scope.locals[local_key] = value
            finally:
                scope.indices = saved
            return compared

    def returned_part(self, atom: tex.Atom, scope: Scope) -> tuple[LArr | None, set[str]]:
        """The returned array (of a tuple) that a left side with free indices names, and its name."""
        scope.head_mode = True
        scope.returned_hits.clear()
        try:
            value = scope.named(atom, True, "returns")
        except Unbound:
            value = None
        finally:
            scope.head_mode = False
        hits = set(scope.returned_hits)
        if not isinstance(value, LArr) or len(hits) != 1:
            return None, set()
        return value, hits

    def bind_limits(self, s: int, scope: Scope) -> None:
        """`\\frac{1}{n} \\sum_{i=1}^{n}`: an unbound upper limit is the length of the axis the index names."""
        for node in self.limits[s]:
            assert isinstance(node.upper, tex.Atom)
            try:
                scope.eval(node.upper)
            except Unbound:
                size = scope.infer_size(node.var, node.body)
                scope.locals[node.upper.key] = LArr(np.asarray(float(size)))
        counts, open_sums = self.counts[s]
        for atom in counts:  # `\frac{1}{n} \sum_i x_i`: n, if no argument, is the length the sums run over
            try:
                scope.eval(atom)
            except Unbound:
                sizes = set()
                for node in open_sums:
                    try:
                        sizes.add(scope.infer_size(node.var, node.body))
                    except (EvalError, Unbound):
                        continue
                if len(sizes) == 1:
                    scope.locals[atom.key] = LArr(np.asarray(float(sizes.pop())))

    def bind_free(self, free: list[tex.Node], target: LArr | None, st: tex.Statement, scope: Scope) -> list[str]:
        variables: list[str] = []
        for k, item in enumerate(free):
            for node in walk(item):
                if isinstance(node, tex.Atom) and node.kind == "letters" and node.base not in variables:
                    variables.append(node.base)
                    if target is not None:
                        size = _range_for(node.base, item, target.arr.shape[len(target.labels) + k]
                                          if target.data_ndim > k else 0, scope)
                    else:
                        size = max(scope.infer_size(node.base, side) for side in st.sides[1:])
                    positions = np.arange(size)
                    scope.indices[node.base] = IndexVar(positions, positions.astype(float))
        return variables

    def update(self, s: int, scope: Scope, single: LArr | None, call: _Call) -> int:
        st = self.statements[s]
        head = st.sides[0]
        if not isinstance(head, tex.Atom):
            raise EvalError(f"the left of \\leftarrow must be a symbol, not `{st.texts[0]}`")
        new = as_larr(scope.num(st.sides[1]))
        scope.head_mode = True
        scope.returned_hits.clear()
        try:
            returned = scope.named(head, True)
        finally:
            scope.head_mode = False
        hits = set(scope.returned_hits)
        target = as_larr(returned) if returned is not None else single
        if target is None:
            raise _Failure(f"{atom_tex(head)} is not one of the returned values for {call.text}",
                           "name the returned values in check: returns")
        outcome = _compare(new, target)
        if outcome is not None and outcome != "undefined":
            raise _Failure(_mismatch(st.texts[1], outcome, call))
        scope.locals[head.key] = new
        if outcome is None:
            self.compared_returns |= hits
        self.cover(_owner(target, single, hits), target, None, scope)
        return int(outcome is None)

    def distribution(self, st: tex.Statement, scope: Scope, single: LArr | None) -> int:
        head, dist = st.sides[0], st.sides[1]
        atom = head.without_sub() if isinstance(head, tex.Atom) else head
        scope.head_mode = True
        try:
            try:
                sample = as_larr(scope.eval(atom))
            except Unbound:
                if single is None:
                    raise
                sample = single
        finally:
            scope.head_mode = False
        if sample is single:  # every draw follows the printed distribution
            self.cover("result", sample, None, scope)
        values = np.asarray(sample.arr, dtype=float).ravel()
        if values.size < MIN_SAMPLES:
            return 0
        if not isinstance(dist, tex.App) or not isinstance(dist.func, tex.Atom):
            raise EvalError(f"cannot read the distribution `{st.texts[1]}`")
        name = dist.func.base
        params = [float(np.asarray(scope.num(a).arr)) for a in dist.args]
        n = values.size
        if name in ("N", "Normal") and len(params) == 2:
            mean, var = params
            sd = np.sqrt(var)
            ok_mean = abs(values.mean() - mean) <= 5 * sd / np.sqrt(n) + 1e-12
            ok_var = abs(values.var() - var) <= 5 * var * np.sqrt(2 / (n - 1)) + 1e-12
            if not (ok_mean and ok_var):
                raise _Failure(f"the printed distribution {st.texts[1]} has mean {mean:.6g} and variance {var:.6g}; "
                               f"the implementation's {n} draws have mean {values.mean():.6g} and variance "
                               f"{values.var():.6g}")
            return 1
        if name == "Bernoulli" and len(params) == 1:
            p = params[0]
            if not np.all((values == 0) | (values == 1)):
                raise _Failure(f"draws of {st.texts[1]} must be 0 or 1")
            if abs(values.mean() - p) > 5 * np.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-12:
                raise _Failure(f"the printed distribution {st.texts[1]} has mean {p:.6g}; the implementation's "
                               f"{n} draws have mean {values.mean():.6g}")
            return 1
        raise EvalError(f"distribution {name} is not supported (N, Bernoulli)")


def _owner(target: LArr, single: LArr | None, hits: set[str]) -> str | None:
    """Whose elements a statement defines: the single result, one returned name, or (unknown) nobody."""
    if target is single:
        return "result"
    return next(iter(hits)) if len(hits) == 1 else None


def _gap(name: str, mask: np.ndarray, call: _Call) -> tuple[str, str]:
    """The coverage problem of one result: how much is printed, one element that is not, what is missing."""
    what = "the result" if name == "result" else f"the returned {name}"
    example = [int(i) for i in np.argwhere(~mask)[0]]
    message = (f"the printed formula defines only {int(mask.sum())} of {mask.size} elements of {what} for "
               f"{call.text} (e.g. {example} is never given)")
    return message, (f"print the missing case (e.g. {_missing_part(mask)}) or mark it unchecked in check:"
                     " (its left side printed, the right side unchecked with the reason)")


def _missing_part(mask: np.ndarray) -> str:
    """`the odd columns`, `rows 2, 3`, `the off-diagonal elements`: the shape of what no statement defines."""
    missing = ~mask
    if mask.ndim == 2 and mask.shape[0] == mask.shape[1] > 1:
        eye = np.eye(mask.shape[0], dtype=bool)
        if np.array_equal(missing, ~eye):
            return "the off-diagonal elements"
        if np.array_equal(missing, eye):
            return "the diagonal"
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        along = missing.any(axis=others) if others else missing
        if not np.array_equal(missing, np.broadcast_to(np.expand_dims(along, others), missing.shape)):
            continue  # what is missing depends on more than this axis
        where = np.flatnonzero(along)
        length = along.size
        plural, singular = _axis_words(mask.ndim, axis)
        on = f" on axis {axis}" if mask.ndim > 2 else ""
        if length > 2 and np.array_equal(where, np.arange(1, length, 2)):
            return f"the odd {plural}{on}"
        if length > 2 and np.array_equal(where, np.arange(0, length, 2)):
            return f"the even {plural}{on}"
        shown = ", ".join(str(int(i)) for i in where[:4]) + (", …" if where.size > 4 else "")
        return f"{plural if where.size > 1 else singular} {shown}{on}"
    return "the elements no statement gives"


def _axis_words(ndim: int, axis: int) -> tuple[str, str]:
    if ndim == 1:
        return "entries", "entry"
    if ndim == 2:
        return ("rows", "row") if axis == 0 else ("columns", "column")
    return "indices", "index"


def _arrayish(value: Any) -> Any:
    """Lists in block expressions are arrays: `y_true == 1` compares elementwise."""
    if isinstance(value, (list, tuple)):
        try:
            return np.asarray(value)
        except ValueError:
            return value
    return value


def _ref(atom: tex.Atom) -> tuple[str, str, int, str]:
    r"""What a definition is known by: `\hat m_t` ≠ `m_t`, `h_t` ≠ `h_{t-1}`; other subscripts are indices."""
    time = atom.sub_text if atom.sub_text in ("t", "t-1", "t+1") else ""
    return (atom.base, atom.accent, atom.primes, time)


def _result_value(result: Any, call: _Call) -> LArr:
    try:
        return as_larr(np.asarray(result, dtype=float))
    except (TypeError, ValueError):
        raise _Failure(f"{call.text} returns {type(result).__name__}, not numbers",
                       "return an array, or name the parts of a tuple in check: returns") from None


def _head_core(head: tex.Node) -> tuple[tex.Atom, list[tex.Node]] | None:
    """The symbol a left side defines, and its free indices: `y_{o,h,w}` → (y, [o, h, w])."""
    if isinstance(head, tex.Atom):
        if head.sub and head.sub_text not in ("t", "t-1", "t+1") and _indexlike(head.sub):
            return head.without_sub(), index_items(head.sub)
        return head, []
    if isinstance(head, tex.App) and isinstance(head.func, tex.Atom):
        return head.func, []
    if isinstance(head, tex.Index):
        inner = _head_core(head.base)
        if inner is not None:
            return inner[0], index_items(head.items)
    return None


def _indexlike(items: tuple[tex.Node, ...]) -> bool:
    for item in items:
        atoms = [n for n in walk(item) if isinstance(n, tex.Atom)]
        if not atoms or any(a.kind != "letters" for a in atoms):
            return False
    return True


def _range_for(var: str, item: tex.Node, length: int, scope: Scope) -> int:
    if isinstance(item, tex.Atom) and item.base == var:
        return length
    candidates = np.arange(length)
    scope.indices[var] = IndexVar(candidates, candidates.astype(float))
    values = as_larr(scope.eval(item)).arr
    valid = (values >= 0) & (values < length)
    return int(np.argmin(valid)) if not valid.all() else length


def _compare(printed: LArr, expected: LArr) -> str | None:
    """None when equal; "undefined" when the printed value is nan/inf everywhere; else a description."""
    extra = [lab for lab in printed.labels if lab not in expected.labels]
    if extra:
        return f"index {', '.join(extra)} is left over (not summed and not on the left side)"
    if printed.arr.dtype == object or expected.arr.dtype == object:
        return "undefined"
    (p, q), labels = align(printed, expected)
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    try:
        p, q = np.broadcast_arrays(p, q)
    except ValueError:
        ps, qs = np.squeeze(p), np.squeeze(q)
        if ps.shape != qs.shape:
            return f"shape {printed.arr.shape} ≠ {expected.arr.shape}"
        p, q = ps, qs
    if p.shape != q.shape:
        return f"shape {printed.arr.shape} ≠ {expected.arr.shape}"
    defined = np.isfinite(p)
    if not defined.any():
        return "undefined"
    close = np.isclose(p, q, rtol=RTOL, atol=ATOL) | ~defined
    if close.all():
        return None
    if p.size == 1:
        return f"gives {_fmt(p.item())}|{_fmt(q.item())}"
    if p.size <= 6:
        return f"gives {_fmt_array(p)}|{_fmt_array(q)}"
    at = tuple(int(i) for i in np.argwhere(~close)[0])
    names = list(labels) + [f"axis {k}" for k in range(len(at) - len(labels))]
    where = ", ".join(f"{n}={i}" for n, i in zip(names, at, strict=False))
    return f"gives {_fmt(p[at])}|{_fmt(q[at])} at {where}"


def _mismatch(side: str, outcome: str, call: _Call) -> str:
    if outcome.startswith("gives ") and "|" in outcome:
        body = outcome[len("gives "):]
        mine, rest = body.split("|", 1)
        theirs, _, at = rest.partition(" at ")
        at_text = f" (at {at})" if at else ""
        return (f"the printed formula gives {mine}, the implementation gives {theirs}{at_text} for {call.text}"
                f" — in `{side}`")
    return f"the printed formula `{side}` does not match the implementation for {call.text}: {outcome}"


def _fmt(x: Any) -> str:
    value = float(x)
    if value == int(value) and abs(value) < 1e15:
        return f"{value:.1f}"
    return f"{value:.6g}"


def _fmt_array(a: np.ndarray) -> str:
    return "[" + ", ".join(_fmt(x) for x in a.ravel()) + "]"


# --- the doctest calls --------------------------------------------------------------------------------


def _record_calls(formula: Formula, module: types.ModuleType, function: Callable[..., Any]) -> list[_Call]:
    """Run the entry's examples with the function wrapped, keeping each call's arguments and result."""
    signature = inspect.signature(function)
    calls: list[_Call] = []

    def recorder(*args: Any, **kwargs: Any) -> Any:
        try:
            snapshot = copy.deepcopy((args, kwargs))
        except Exception:
            snapshot = (args, kwargs)
        out = function(*args, **kwargs)
        try:
            bound = signature.bind(*snapshot[0], **snapshot[1])
        except TypeError:
            return out
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        text = f"{formula.id}({', '.join(f'{k}={_short(v)}' for k, v in arguments.items())})"
        calls.append(_Call(arguments, out, text))
        return out

    namespace = dict(module.__dict__)
    namespace[formula.id] = recorder
    parser = doctest.DocTestParser()
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for example in parser.get_examples(formula.examples):
            with contextlib.suppress(Exception):  # an example may raise on purpose (its doctest checks that)
                exec(compile(example.source, f"<{formula.id} examples>", "exec"), namespace)
    return calls


def _short(value: Any) -> str:
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return repr(value.item() if isinstance(value, np.generic) else value)
    if isinstance(value, np.random.Generator):
        return "rng"
    if callable(value):
        name = getattr(value, "__name__", "function")
        return "lambda" if name == "<lambda>" else name
    if value is None or isinstance(value, str):
        return repr(value)
    try:
        array = np.asarray(value)
    except ValueError:
        return "[…]"
    if array.dtype.kind in "biuf" and array.size <= 8:
        return repr(np.round(array.astype(float), 6).tolist()) if array.dtype.kind == "f" else repr(array.tolist())
    if array.dtype.kind in "U" and array.size <= 8:
        return repr(array.tolist())
    return f"<array {array.shape}>"
