"""Give the parsed LaTeX meaning with NumPy, for one doctest call of one formula.

Conventions (documented for authors in the README, "Printed-formula check"):
- symbols bind by name to the call's arguments (`\\hat y`→y_hat, `\\beta_1`→beta1, `C_\\text{in}`→c_in, `TP`→tp),
  to the entry's `check: symbols`, or to what an earlier statement defined;
- an index names an axis: `a_i` is axis 0 of a labelled by i, `y_{nk}` axes 0 and 1; sums reduce that label;
- juxtaposition is a matrix product when a factor is a transpose or an upper-case symbol, else elementwise;
- subscript `t-1` is the input value, `t` the new one.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import tex
from .safeexpr import ExpressionError
from .safeexpr import evaluate as run_expression
from .values import EvalError, LArr, align, as_larr, to_float

__all__ = ["IndexVar", "Scope", "Unbound", "atom_tex", "python_names", "to_value", "walk"]

_ALIASES = {"lambda": ("lam", "lmbda", "reg"), "epsilon": ("eps",), "eta": ("lr",)}
_EXACT_FUNCS: dict[str, Callable[..., Any]] = {
    "log": np.log, "exp": np.exp, "sin": np.sin, "cos": np.cos, "tan": np.tan, "tanh": np.tanh,
    "sinh": np.sinh, "cosh": np.cosh,
}


class Unbound(Exception):
    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.symbol = symbol


@dataclass(frozen=True)
class IndexVar:
    positions: np.ndarray  # which entries of the axis it runs over
    values: np.ndarray  # the value the index takes there (1-based sums: position + 1)
    offset: float = 0.0


def to_value(value: Any) -> Any:
    """A call's argument or a block value as the evaluator sees it: callables stay, the rest are arrays."""
    if callable(value) and not isinstance(value, np.ndarray):
        return value
    if isinstance(value, LArr):
        return value
    try:
        array = np.asarray(value)
    except ValueError:  # ragged: a list of sets of different sizes
        array = np.empty(len(value), dtype=object)
        for i, item in enumerate(value):
            array[i] = np.asarray(item)
        return LArr(array)
    if array.dtype == object and array.ndim == 0:
        return value  # an rng or another object
    return LArr(to_float(array))


def atom_tex(atom: tex.Atom) -> str:
    base = atom.base if atom.kind != "greek" else "\\" + atom.base
    if atom.kind == "name":
        base = f"\\{atom.style or 'text'}{{{atom.base}}}"
    if atom.accent:
        base = f"\\{atom.accent} {base}"
    if atom.sub_text:
        base += f"_{{{atom.sub_text}}}" if len(atom.sub_text) > 1 else f"_{atom.sub_text}"
    base += "'" * atom.primes
    if atom.sup_text:
        base += f"^{{{atom.sup_text}}}" if len(atom.sup_text) > 1 else f"^{atom.sup_text}"
    return base


def _ident(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.replace("\\", "")).strip("_")


def python_names(atom: tex.Atom, with_sup: bool = True) -> list[str]:
    """Argument names an atom may stand for, most specific first."""
    base = _ident(atom.base) if atom.kind == "name" else atom.base
    if atom.base in ("+", "-"):
        return []
    stems = [base]
    if atom.accent:
        stems = [f"{base}_{atom.accent}"]
    if atom.primes:
        stems = [f"{s}_{'prime' * atom.primes}" for s in stems] + [f"{s}{'_prime' * atom.primes}" for s in stems]
    names: list[str] = []
    sub = _ident(atom.sub_text)
    sup = _ident(atom.sup_text) if with_sup else ""
    for stem in stems:
        variants = [stem] + [alias for alias in _ALIASES.get(stem, ())]
        for variant in variants:
            if sub and sup:
                names += [f"{variant}_{sub}_{sup}", f"{variant}{sub}{sup}"]
            elif sub:
                names += [f"{variant}_{sub}"] + ([f"{variant}{sub}"] if sub.isdigit() else [])
            elif sup:
                names += [f"{variant}_{sup}", f"{variant}{sup}"]
            else:
                names.append(variant)
    return names


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, tex.Node):
        for name in node.__dataclass_fields__:
            value = getattr(node, name)
            if isinstance(value, tex.Node):
                yield from walk(value)
            elif isinstance(value, tuple):
                for item in value:
                    if isinstance(item, tex.Node):
                        yield from walk(item)
                    elif isinstance(item, tuple):
                        for inner in item:
                            if isinstance(inner, tex.Node):
                                yield from walk(inner)


@dataclass
class Scope:
    """Everything one doctest call binds: arguments, results, the check block, definitions so far."""

    args: Mapping[str, Any]  # python values, as the function received them
    returns: Mapping[str, Any]  # returned values by name
    functions: Mapping[str, Callable[..., Any]]  # the sheet's other formulas
    symbols: Mapping[tuple[str, str, str, str, int], tuple[ast.expr, str]]  # simple keys of the block
    compound: Mapping[str, ast.expr]  # written keys of the block that are not one symbol
    expression_names: Mapping[str, Any]
    locals: dict[tuple[str, str, str, str, int], Any] = field(default_factory=dict)
    indices: dict[str, IndexVar] = field(default_factory=dict)
    head_mode: bool = False
    used: set[str] = field(default_factory=set)
    returned_hits: set[str] = field(default_factory=set)  # returned names a left side resolved to
    _cache: dict[str, Any] = field(default_factory=dict)

    # --- names ------------------------------------------------------------------------------------------

    def block_value(self, written: str, tree: ast.expr) -> Any:
        self.used.add(written)
        if self.head_mode and isinstance(tree, ast.Name) and tree.id in self.returns:
            self.returned_hits.add(tree.id)
        if written not in self._cache:
            try:
                self._cache[written] = to_value(run_expression(tree, self.expression_names))
            except ExpressionError:
                raise
            except Exception as err:  # the expression failed on this call's values
                raise EvalError(f"check: symbols {written!r}: {type(err).__name__}: {err}") from None
        return self._cache[written]

    def pool(self, where: str) -> dict[str, Any]:
        if where == "inputs":
            return dict(self.args)
        if where == "returns":
            return dict(self.returns)
        return {**self.returns, **self.args}  # an input wins: `v` on a right side is the old v

    def by_name(self, atom: tex.Atom, with_sup: bool, where: str) -> Any:
        pool = self.pool(where)
        lowered: dict[str, list[str]] = {}
        for name in pool:
            lowered.setdefault(name.lower(), []).append(name)
        for candidate in python_names(atom, with_sup):
            if candidate in pool:
                return self.hit(candidate, pool[candidate])
        for candidate in python_names(atom, with_sup):
            found = lowered.get(candidate.lower(), [])
            if len(found) == 1:
                return self.hit(found[0], pool[found[0]])
        return None

    def hit(self, name: str, value: Any) -> Any:
        if self.head_mode and name in self.returns:
            self.returned_hits.add(name)
        return to_value(value)

    def named(self, atom: tex.Atom, with_sup: bool, where: str = "any") -> Any:
        key = (atom.base, atom.accent, atom.sub_text, atom.sup_text if with_sup else "", atom.primes)
        if key in self.symbols:
            tree, written = self.symbols[key]
            value = self.block_value(written, tree)
            letters = [it for it in (atom.sub or ()) if isinstance(it, tex.Atom)]
            active = [lt for it in letters for lt in _letters(it) if lt in self.indices]
            return self.index(value, [tex.Atom(lt, "letters") for lt in active]) if active else value
        if key in self.locals:
            return self.locals[key]
        if (not atom.sub and not atom.accent and not atom.primes and not (with_sup and atom.sup_text)
                and atom.base in self.indices):
            var = self.indices[atom.base]
            return LArr(var.values.astype(float), (atom.base,))
        if where == "any" and self.head_mode:
            where = "returns"
        if atom.sub_text in ("t", "t-1", "t+1"):
            plain = atom.without_sub()
            if self.head_mode:
                return self.named(plain, with_sup, "returns") if atom.sub_text == "t" else None
            return self.named(plain, with_sup, "inputs" if where == "any" else where)
        found = self.by_name(atom, with_sup, where)
        if found is not None:
            return found
        if atom.sub:
            items = index_items(atom.sub)
            variables = {a.base for item in items for a in walk(item) if isinstance(a, tex.Atom)}
            if variables and all(v in self.indices for v in variables):
                base = self.named(atom.without_sub(), with_sup, where)
                if base is None:
                    return None
                return self.index(base, items)
        return None

    def index(self, value: Any, items: list[tex.Node]) -> LArr:
        if not isinstance(value, LArr):
            raise EvalError("only arrays can be indexed")
        positions: list[LArr] = []
        for item in items:
            variables = [a.base for a in walk(item) if isinstance(a, tex.Atom) and a.base in self.indices]
            if isinstance(item, tex.Atom) and item.base in self.indices and not item.sub:
                var = self.indices[item.base]
                positions.append(LArr(var.positions.astype(int), (item.base,)))
                continue
            computed = as_larr(self.eval(item))
            offset = self.indices[variables[0]].offset if len(variables) == 1 else 0.0
            positions.append(LArr(np.rint(computed.arr - offset).astype(int), computed.labels))
        arr = value.arr
        if value.data_ndim < len(positions):
            raise EvalError(f"a {value.data_ndim}-D value cannot take {len(positions)} indices")
        labels: list[str] = list(value.labels)
        for pos in positions:
            labels.extend(lab for lab in pos.labels if lab not in labels)
        union = tuple(labels)
        grids: list[np.ndarray] = []
        for p, lab in enumerate(value.labels):
            shape = [1] * len(union)
            shape[union.index(lab)] = arr.shape[p]
            grids.append(np.arange(arr.shape[p]).reshape(shape))
        for k, pos in enumerate(positions):
            index = pos.order(union)
            size = arr.shape[len(value.labels) + k]
            if index.size and (index.min() < 0 or index.max() >= size):
                raise EvalError(f"index out of range (axis of length {size})")
            grids.append(index)
        return LArr(arr[tuple(grids)], union)

    # --- evaluation -------------------------------------------------------------------------------------

    def eval(self, node: tex.Node) -> Any:
        if isinstance(node, tex.Num):
            return LArr(np.asarray(node.value))
        if isinstance(node, tex.Atom):
            return self.atom(node)
        if isinstance(node, tex.Bound):
            tree = self.compound[node.key]
            value = self.block_value(node.key, tree)
            active = [lt for lt in node.letters if lt in self.indices]
            return self.index(value, [tex.Atom(lt, "letters") for lt in active]) if active else value
        if isinstance(node, tex.Group):
            return self.eval(node.arg)
        if isinstance(node, tex.Neg):
            return _unary(np.negative, self.num(node.arg))
        if isinstance(node, tex.Bin):
            left, right = self.num(node.left), self.num(node.right)
            if node.op == "+":
                return _binary(np.add, left, right)
            if node.op == "-":
                return _binary(np.subtract, left, right)
            if node.op == "/":
                return _binary(np.divide, left, right)
            if node.op == "cdot" and left.data_ndim >= 1 and right.data_ndim >= 1:
                return _reduce_last(_binary(np.multiply, left, right), np.sum)
            return _binary(np.multiply, left, right)
        if isinstance(node, tex.Jux):
            left = self.eval(node.left)
            if callable(left) and not isinstance(left, LArr):
                return self.call(left, [node.right])
            left = as_larr(left)
            right = self.num(node.right)
            if (_matrixish(node.left) or _matrixish(node.right)) and left.data_ndim >= 1 and right.data_ndim >= 1:
                return _matmul(left, right)
            return _binary(np.multiply, left, right)
        if isinstance(node, tex.Frac):
            return _binary(np.divide, self.num(node.num), self.num(node.den))
        if isinstance(node, tex.Sqrt):
            value = self.num(node.arg)
            if node.degree is None:
                return _unary(np.sqrt, value)
            return _binary(np.power, value, _unary(np.reciprocal, self.num(node.degree)))
        if isinstance(node, tex.App):
            return self.apply(node)
        if isinstance(node, tex.Func):
            value = self.num(node.arg)
            out = _unary(_EXACT_FUNCS[node.name], value)
            if node.base is not None:
                out = _binary(np.divide, out, _unary(np.log, self.num(node.base)))
            if node.power is not None:
                out = _binary(np.power, out, self.num(node.power))
            return out
        if isinstance(node, tex.Reduce):
            return self.reduce(node)
        if isinstance(node, tex.Abs):
            value = as_larr(self.eval(node.arg))
            if value.arr.dtype == object:
                return LArr(np.vectorize(len, otypes=[float])(value.arr), value.labels)
            if _is_set(node.arg) and value.data_ndim >= 1:
                return LArr(np.asarray(float(value.arr.shape[-1])) * np.ones(value.arr.shape[:len(value.labels)]),
                            value.labels)
            return _unary(np.abs, value)
        if isinstance(node, tex.Norm):
            value = self.num(node.arg)
            if value.data_ndim == 0:
                return _unary(np.abs, value)
            if node.p == 2.0:
                return _unary(np.sqrt, _reduce_last(_unary(np.square, value), np.sum))
            p = node.p
            total = _reduce_last(_unary(lambda a: np.abs(a) ** p, value), np.sum)
            return _unary(lambda a: a ** (1 / p), total)
        if isinstance(node, tex.Floor):
            return _unary(np.floor, self.num(node.arg))
        if isinstance(node, tex.Ceil):
            return _unary(np.ceil, self.num(node.arg))
        if isinstance(node, tex.Inner):
            return _reduce_last(_binary(np.multiply, self.num(node.left), self.num(node.right)), np.sum)
        if isinstance(node, tex.Expect):
            value = self.num(node.arg)
            axes = tuple(range(len(value.labels), value.arr.ndim))
            return LArr(np.asarray(np.mean(value.arr, axis=axes)), value.labels)
        if isinstance(node, tex.Indicator):
            return _unary(lambda a: a.astype(float), self.num(node.arg))
        if isinstance(node, tex.Cmp):
            ops: dict[str, Callable[..., Any]] = {"<": np.less, ">": np.greater, "<=": np.less_equal,
                                                  ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal,
                                                  "and": np.logical_and}
            if node.op not in ops:
                raise EvalError(f"relation {node.op} cannot be evaluated here")
            return _unary(lambda a: a.astype(float), _binary(ops[node.op], self.num(node.left), self.num(node.right)))
        if isinstance(node, tex.Cases):
            values = [self.num(v) for v, _ in node.branches]
            conditions = [self.num(c) for _, c in node.branches]
            arrays, labels = align(*values, *conditions)
            shape = np.broadcast_shapes(*(a.shape for a in arrays))
            n = len(values)
            chosen = np.select([np.broadcast_to(c, shape) != 0 for c in arrays[n:]],
                               [np.broadcast_to(v, shape) for v in arrays[:n]], np.nan)
            return LArr(chosen, labels)
        if isinstance(node, tex.Concat):
            return _concat([self.num(item) for item in node.items])
        if isinstance(node, tex.Index):
            base = self.eval(node.base)
            return self.index(base, index_items(node.items))
        if isinstance(node, tex.Power):
            base = self.eval(node.base)
            return self.power(node.base, base, node.exponent)
        if isinstance(node, tex.Transpose):
            arg = node.arg
            if (isinstance(arg, tex.Atom) and arg.kind == "letters" and len(arg.base) > 1
                    and self.named(arg, True) is None and not _bound_run(self, arg)):
                head: tex.Node = tex.Atom(arg.base[0], "letters")
                for letter in arg.base[1:-1]:
                    head = tex.Jux(head, tex.Atom(letter, "letters"))
                last = tex.Atom(arg.base[-1], "letters", "", arg.accent, arg.sub, arg.sub_text, arg.sup,
                                arg.sup_text, arg.primes)
                return self.eval(tex.Jux(head, tex.Transpose(last)))
            value = self.num(arg)
            if value.data_ndim < 2:
                return value
            return LArr(np.swapaxes(value.arr, -1, -2), value.labels)
        if isinstance(node, tex.Seq):
            raise EvalError("`a_1, \\dots, a_n` can only be an argument of a function such as Concat")
        raise EvalError(f"{type(node).__name__} cannot be evaluated")

    def num(self, node: tex.Node) -> LArr:
        value = self.eval(node)
        if isinstance(value, LArr):
            return value
        if callable(value):
            raise EvalError(f"{_node_text(node)} is a function; call it with arguments")
        raise EvalError(f"{_node_text(node)} is not a number or an array")

    def power(self, base_node: tex.Node, base: Any, exponent: tex.Node) -> LArr:
        value = as_larr(base)
        exp = self.num(exponent)
        if _matrixish(base_node) and value.data_ndim >= 2 and exp.arr.ndim == 0 and float(exp.arr) == -1.0:
            return LArr(np.linalg.inv(value.arr), value.labels)
        return _binary(np.power, value, exp)

    def atom(self, atom: tex.Atom) -> Any:
        if (atom.kind == "letters" and len(atom.base) > 1 and (atom.sub or atom.sup is not None or atom.accent)
                and self.named(atom, True) is None and self.named(atom, False) is None
                and not _bound_run(self, atom)):
            # `QK^\top`, `ab^2`: the script belongs to the last letter
            last = tex.Atom(atom.base[-1], "letters", "", atom.accent, atom.sub, atom.sub_text, atom.sup,
                            atom.sup_text, atom.primes)
            node: tex.Node = tex.Atom(atom.base[0], "letters")
            for letter in atom.base[1:-1]:
                node = tex.Jux(node, tex.Atom(letter, "letters"))
            return self.eval(tex.Jux(node, last))
        if atom.sup is not None:
            found = self.named(atom, True)
            if found is not None:
                return found
            plain = atom.without_sup()
            if plain.base == "e" and plain.kind in ("letters", "name") and not plain.sub \
                    and self.named(plain, False) is None:  # e^{x}, \mathrm{e}^{x}
                return _unary(np.exp, self.num(atom.sup))
            return self.power(plain, self.atom(plain), atom.sup)
        found = self.named(atom, False)
        if found is not None:
            return found
        if (atom.kind == "letters" and len(atom.base) > 1 and not atom.sub and not atom.accent
                and not atom.primes):  # `QK` is Q times K unless QK is bound
            product: tex.Node = tex.Atom(atom.base[0], "letters")
            for letter in atom.base[1:]:
                product = tex.Jux(product, tex.Atom(letter, "letters"))
            try:
                return self.eval(product)
            except Unbound:
                raise Unbound(atom_tex(atom)) from None  # name `FN`, not its first letter
        if atom.kind == "name" and atom.base.isdigit():
            return LArr(np.asarray(float(atom.base)))
        if atom.sub and all(v in self.indices for item in index_items(atom.sub) for v in _variables(item)):
            raise Unbound(atom_tex(atom.without_sub()))  # `s_i` with i an index: it is s that is unbound
        raise Unbound(atom_tex(atom))

    def function(self, node: tex.Node) -> Any:
        """What a name in `f(...)` calls: a bound symbol, another formula, or a built-in."""
        if isinstance(node, tex.Atom):
            try:
                found = self.named(node, True)
            except EvalError:
                found = None
            if found is not None:
                return found
            name = node.base.lower() if node.kind == "name" else node.base
            if node.kind == "name" and not node.sub and not node.primes and name in self.functions:
                return self.functions[name]
            if node.base == "sigma" and node.kind == "greek" and not node.sub and not node.primes:
                return _sigmoid
            if node.kind == "name" and name in ("max", "min"):
                return np.maximum if name == "max" else np.minimum
            if node.kind == "name" and name == "concat":
                return "concat"
            raise Unbound(atom_tex(node))
        return self.eval(node)

    def apply(self, node: tex.App) -> Any:
        probability = self.probability(node)
        if probability is not None:
            return probability
        func = self.function(node.func)
        if func == "concat":
            parts: list[LArr] = []
            for arg in node.args:
                parts.extend(self.sequence(arg) if isinstance(arg, tex.Seq) else [self.num(arg)])
            return _concat(parts)
        if isinstance(func, LArr):  # `\sigma(z)(1 - \sigma(z))`: a product
            if len(node.args) != 1:
                raise EvalError(f"{_node_text(node.func)} is not a function")
            right = self.num(node.args[0])
            if _matrixish(node.func) and func.data_ndim >= 1 and right.data_ndim >= 1:
                return _matmul(func, right)
            return _binary(np.multiply, func, right)
        if func in (np.maximum, np.minimum):
            values = [self.num(a) for a in node.args]
            arrays, labels = align(*values)
            return LArr(np.asarray(func.reduce(np.broadcast_arrays(*arrays))), labels)
        return self.call(func, list(node.args))

    def probability(self, node: tex.App) -> Any:
        r"""`P(A)` → p_a, `P(B \mid A)` → p_b_given_a, when P itself is not bound."""
        func = node.func
        if not (isinstance(func, tex.Atom) and func.base == "P" and func.kind == "letters" and not func.sub
                and all(isinstance(a, tex.Atom) and not a.sub for a in node.args) and 1 <= len(node.args) <= 2):
            return None
        if self.named(func, True) is not None:
            return None
        names = [a.base.lower() for a in node.args if isinstance(a, tex.Atom)]
        wanted = "p_" + "_given_".join(names)
        pool = self.pool("returns" if self.head_mode else "any")
        return to_value(pool[wanted]) if wanted in pool else None

    def call(self, func: Callable[..., Any], arg_nodes: list[tex.Node]) -> LArr:
        values = [self.num(a) for a in arg_nodes]
        arrays, labels = align(*values, pad_data=False) if values else ((), ())
        if labels:
            shape = tuple(max(a.shape[i] for a in arrays) for i in range(len(labels)))
            arrays = tuple(np.broadcast_to(a, shape + a.shape[len(labels):]) for a in arrays)
        try:
            if labels and (any(a.dtype == object for a in arrays) or type(func).__name__ == "_Lambda"):
                # a function written in the check block sees one item at a time (`H(S_v)`: one child set)
                shape = tuple(max(a.shape[i] for a in arrays) for i in range(len(labels)))
                items = [np.asarray(func(*[_item(a[idx]) for a in arrays]), dtype=float)
                         for idx in np.ndindex(*shape)]
                out = np.stack(items).reshape(shape + items[0].shape) if items else np.zeros(shape)
            elif any(a.dtype == object for a in arrays):
                out = np.vectorize(func, otypes=[float])(*arrays)
            else:
                out = func(*[a if a.ndim else a[()] for a in arrays])
        except (Unbound, EvalError):
            raise
        except Exception as err:
            name = getattr(func, "__name__", "a function")
            raise EvalError(f"calling {name} failed: {type(err).__name__}: {err}") from None
        return LArr(to_float(out), labels)

    def sequence(self, seq: tex.Seq) -> list[LArr]:
        first, last = seq.first, seq.last
        if first.base != last.base or not first.sub or not last.sub:
            raise EvalError("write `a_1, \\dots, a_n` with the same symbol on both ends")
        stacked = self.named(first.without_sub(), True)
        if stacked is None:
            raise Unbound(atom_tex(first.without_sub()))
        stacked = as_larr(stacked)
        low = int(self.num(first.sub[0]).arr)
        high = int(self.num(last.sub[0]).arr)
        if high - low + 1 != stacked.arr.shape[len(stacked.labels)]:
            raise EvalError(f"{atom_tex(first)} … {atom_tex(last)} is {high - low + 1} items, "
                            f"but {stacked.arr.shape[len(stacked.labels)]} were defined")
        axis = len(stacked.labels)
        return [LArr(np.take(stacked.arr, k, axis=axis), stacked.labels) for k in range(high - low + 1)]

    def reduce(self, node: tex.Reduce) -> LArr:
        saved = self.indices.get(node.var)
        self.indices[node.var] = self.index_var(node)
        try:
            body = self.num(node.body)
        finally:
            if saved is None:
                self.indices.pop(node.var, None)
            else:
                self.indices[node.var] = saved
        if node.op in ("argmin", "argmax"):  # `\arg\min_k`: the value of k where the body is smallest
            if node.var not in body.labels:
                raise EvalError(f"\\arg\\{node.op[3:]}_{node.var}: the body does not depend on {node.var}")
            axis = body.labels.index(node.var)
            where = (np.argmin if node.op == "argmin" else np.argmax)(body.arr, axis=axis)
            values = self.index_var(node).values
            return LArr(np.asarray(values[where]), body.labels[:axis] + body.labels[axis + 1:])
        if node.var not in body.labels:
            if node.op != "sum":
                return body
            count = len(self.index_var(node).positions)
            return _binary(np.multiply, body, LArr(np.asarray(float(count))))
        return body.reduce(node.var, node.op)

    def index_var(self, node: tex.Reduce) -> IndexVar:
        if node.within is not None:
            mask = self.num(node.within).arr
            positions = np.flatnonzero(mask)
            return IndexVar(positions, positions.astype(float))
        low = 0.0
        if node.lower is not None:
            low = float(self.num(node.lower).arr)
        if node.upper is not None:
            try:
                high = float(self.num(node.upper).arr)
                size = round(high - low + 1)
            except Unbound:
                size = self.infer_size(node.var, node.body)
        else:
            size = self.infer_size(node.var, node.body)
        positions = np.arange(size)
        return IndexVar(positions, positions + low, low)

    def infer_size(self, var: str, body: tex.Node) -> int:
        """The length of the axis that `var` names somewhere in `body` (`y_i` → len(y))."""
        unbound: Unbound | None = None
        for node in walk(body):
            items: list[tex.Node] = []
            base: tex.Node | None = None
            if isinstance(node, tex.Atom) and node.sub:
                items, base = index_items(node.sub), node.without_sub()
            elif isinstance(node, tex.Index):
                items, base = index_items(node.items), node.base
            elif isinstance(node, tex.Bound) and var in node.letters:
                value = as_larr(self.block_value(node.key, self.compound[node.key]))
                active = [lt for lt in node.letters if lt in self.indices or lt == var]
                return int(value.arr.shape[len(value.labels) + active.index(var)])
            if isinstance(node, tex.Atom) and node.sub and node.key in self.symbols:  # `S_v: children`
                letters = [lt for it in node.sub if isinstance(it, tex.Atom) for lt in _letters(it)]
                if var in letters:
                    tree, written = self.symbols[node.key]
                    value = as_larr(self.block_value(written, tree))
                    active = [lt for lt in letters if lt in self.indices or lt == var]
                    return int(value.arr.shape[len(value.labels) + active.index(var)])
            for k, item in enumerate(items):
                if isinstance(item, tex.Atom) and item.base == var and not item.sub and base is not None:
                    try:
                        value = self.eval(base)
                    except Unbound as err:
                        unbound = unbound or err
                        continue
                    except EvalError:
                        continue
                    if isinstance(value, LArr) and value.data_ndim > k:
                        return int(value.arr.shape[len(value.labels) + k])
        if unbound is not None:
            raise unbound
        raise EvalError(f"cannot tell how far index {var} runs: subscript an array with it or give the limits")


def _item(value: Any) -> Any:
    return value.item() if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 0 else value


def _bound_run(scope: Scope, atom: tex.Atom) -> bool:
    """Is the run of letters itself a name (`TP`, a local `PE`), whatever its scripts?"""
    plain = tex.Atom(atom.base, atom.kind)
    return any(key[0] == atom.base for key in scope.locals) or scope.named(plain, False) is not None


def _variables(node: tex.Node) -> list[str]:
    return [a.base for a in walk(node) if isinstance(a, tex.Atom) and a.kind == "letters"]


def _letters(atom: tex.Atom) -> list[str]:
    return [atom.base] if len(atom.base) == 1 else list(atom.base)


def index_items(items: tuple[tex.Node, ...]) -> list[tex.Node]:
    """`y_{nk}` → [n, k]: a run of letters in a subscript is one index per letter."""
    if len(items) == 1 and isinstance(items[0], tex.Atom) and items[0].kind == "letters" and len(items[0].base) > 1 \
            and not items[0].sub and not items[0].sup:
        return [tex.Atom(letter, "letters") for letter in items[0].base]
    return list(items)


def _matrixish(node: tex.Node) -> bool:
    if isinstance(node, tex.Transpose):
        return True
    if isinstance(node, tex.Atom):  # `X`, `W_{ih}`, `\mathbf{W}`, `\Sigma`
        return node.kind in ("letters", "greek", "name") and node.base[:1].isupper()
    if isinstance(node, (tex.Group, tex.Power)):
        return _matrixish(node.arg if isinstance(node, tex.Group) else node.base)
    if isinstance(node, tex.Jux) or (isinstance(node, tex.Bin) and node.op in "+-"):
        return _matrixish(node.left) or _matrixish(node.right)  # (X^T X + λI)^{-1} is a matrix inverse
    if isinstance(node, tex.Neg):
        return _matrixish(node.arg)
    if isinstance(node, tex.App) and isinstance(node.func, tex.Atom):
        return node.func.kind == "name" and node.func.base[:1].isupper() and node.func.base.lower() != "max"
    return False


def _is_set(node: tex.Node) -> bool:
    return isinstance(node, tex.Atom) and node.kind == "letters" and node.base[:1].isupper()


def _node_text(node: tex.Node) -> str:
    if isinstance(node, tex.Atom):
        return atom_tex(node)
    return type(node).__name__


def _sigmoid(z: Any) -> Any:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=float)))


def _unary(func: Callable[[Any], Any], value: LArr) -> LArr:
    return LArr(np.asarray(func(value.arr)), value.labels)


def _binary(func: Callable[[Any, Any], Any], left: LArr, right: LArr) -> LArr:
    (a, b), labels = align(left, right)
    try:
        return LArr(np.asarray(func(a, b)), labels)
    except ValueError as err:
        raise EvalError(f"shapes {left.arr.shape} and {right.arr.shape} do not combine ({err})") from None


def _reduce_last(value: LArr, func: Callable[..., Any]) -> LArr:
    if value.data_ndim == 0:
        return value
    return LArr(np.asarray(func(value.arr, axis=-1)), value.labels)


def _matmul(left: LArr, right: LArr) -> LArr:
    (a, b), labels = align(left, right, pad_data=False)
    n = len(labels)
    da, db = a.ndim - n, b.ndim - n
    if da == 1:
        a = a[..., None, :]
    if db == 1:
        b = b[..., :, None]
    # line up extra leading data axes (batches) before the matrix axes
    extra = (a.ndim - n) - (b.ndim - n)
    if extra > 0:
        b = b.reshape(b.shape[:n] + (1,) * extra + b.shape[n:])
    elif extra < 0:
        a = a.reshape(a.shape[:n] + (1,) * -extra + a.shape[n:])
    try:
        out = np.matmul(a, b)
    except ValueError as err:
        raise EvalError(f"matrix product of shapes {left.arr.shape[len(left.labels):]} and "
                        f"{right.arr.shape[len(right.labels):]} is undefined ({err})") from None
    if db == 1:
        out = out[..., 0]
    if da == 1:
        out = out[..., 0, :] if db != 1 else out[..., 0]
    return LArr(np.asarray(out), labels)


def _concat(parts: list[LArr]) -> LArr:
    parts = [p if p.data_ndim else LArr(p.arr[..., None], p.labels) for p in parts]
    arrays, labels = align(*parts)
    n = len(labels)
    lead = tuple(max(a.shape[i] for a in arrays) for i in range(n + max(a.ndim for a in arrays) - n - 1))
    try:
        out = np.concatenate([np.broadcast_to(a, lead + a.shape[-1:]) for a in arrays], axis=-1)
    except ValueError as err:
        raise EvalError(f"cannot concatenate: {err}") from None
    return LArr(out, labels)
