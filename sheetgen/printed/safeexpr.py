"""The small expression language of `check:` blocks, interpreted from its syntax tree (never `eval`).

Allowed: names given by the caller (arguments, returned names, `result`, the sheet's functions), numbers,
strings, None/True/False, + - * / // % ** @, comparisons, and/or/not, `a if c else b`, [..] indexing and
slicing, lists/tuples, the attributes in `_ATTRIBUTES`, `np.<name>` for the names in `_NUMPY`, calls of
those, and `lambda x: ...`. No builtins, no other attribute, nothing else.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["ExpressionError", "compile_expression", "evaluate"]


class ExpressionError(ValueError):
    pass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_NUMPY = _words(r"""abs sum mean var std sqrt exp log log2 log10 stack split concatenate hstack vstack unique
flatnonzero asarray array arange ones zeros eye maximum minimum where cumsum sort argsort tanh cos
sin dot einsum transpose swapaxes reshape count_nonzero isclose prod float64 newaxis pi e diag outer
sign clip max min argmax argmin isin cumprod take full linspace nan inf bincount repeat tile
expand_dims squeeze moveaxis size ndim shape add subtract multiply divide power square log1p expm1
matmul floor ceil round""")
_ATTRIBUTES = _words(r"""T shape ndim size mean sum std var reshape transpose swapaxes max min ravel argmax argmin
cumsum prod""")
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow, ast.MatMult: operator.matmul,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}


class _Numpy:
    """Stands for `np` inside expressions: only whitelisted names are reachable."""


_NP = _Numpy()


def compile_expression(source: str) -> ast.expr:
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"cannot read {source!r}: {err.msg}") from None
    for node in ast.walk(tree):
        allowed = (ast.Expression, ast.Name, ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
                   ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Attribute, ast.Call, ast.keyword,
                   ast.Lambda, ast.arguments, ast.arg, ast.IfExp, ast.Load, ast.operator, ast.unaryop,
                   ast.boolop, ast.cmpop, ast.expr_context)
        if not isinstance(node, allowed):
            raise ExpressionError(f"{type(node).__name__} is not allowed in {source!r}")
        if isinstance(node, ast.Attribute) and node.attr not in _ATTRIBUTES | _NUMPY:
            raise ExpressionError(f"attribute .{node.attr} is not allowed in {source!r}")
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise ExpressionError(f"name {node.id} is not allowed in {source!r}")
    return tree.body


def evaluate(tree: ast.expr, names: Mapping[str, Any]) -> Any:
    return _Interpreter(names).run(tree)


class _Lambda:
    def __init__(self, interpreter: _Interpreter, node: ast.Lambda) -> None:
        self.interpreter = interpreter
        self.node = node

    def __call__(self, *args: Any) -> Any:
        params = [a.arg for a in self.node.args.args]
        if len(params) != len(args):
            raise ExpressionError(f"lambda takes {len(params)} arguments, got {len(args)}")
        inner = _Interpreter({**self.interpreter.names, **dict(zip(params, args, strict=True))})
        return inner.run(self.node.body)


class _Interpreter:
    def __init__(self, names: Mapping[str, Any]) -> None:
        self.names = names

    def run(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id == "np":
                return _NP
            if node.id not in self.names:
                raise ExpressionError(f"name {node.id!r} is not an argument, a returned name or `result`")
            return self.names[node.id]
        if isinstance(node, ast.BinOp):
            left, right = self.run(node.left), self.run(node.right)
            if isinstance(node.op, ast.Pow) and isinstance(right, int) and abs(right) > 64:
                raise ExpressionError("exponent too large")
            return _BINARY[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            value = self.run(node.operand)
            if isinstance(node.op, ast.USub):
                return -value
            if isinstance(node.op, ast.UAdd):
                return +value
            if isinstance(node.op, ast.Not):
                return not value
            return ~value
        if isinstance(node, ast.BoolOp):
            if isinstance(node.op, ast.And):
                result: Any = True
                for value_node in node.values:
                    result = self.run(value_node)
                    if not result:
                        return result
                return result
            result = False
            for value_node in node.values:
                result = self.run(value_node)
                if result:
                    return result
            return result
        if isinstance(node, ast.Compare):
            left = self.run(node.left)
            outcome: Any = True
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                right = self.run(comparator)
                outcome = _COMPARE[type(op)](left, right)
                if outcome is False:
                    return False
                left = right
            return outcome
        if isinstance(node, ast.IfExp):
            return self.run(node.body) if self.run(node.test) else self.run(node.orelse)
        if isinstance(node, ast.Subscript):
            return self.run(node.value)[self.index(node.slice)]
        if isinstance(node, ast.Tuple):
            return tuple(self.run(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [self.run(e) for e in node.elts]
        if isinstance(node, ast.Attribute):
            owner = self.run(node.value)
            if owner is _NP:
                if node.attr not in _NUMPY:
                    raise ExpressionError(f"np.{node.attr} is not allowed")
                return getattr(np, node.attr)
            if node.attr not in _ATTRIBUTES:
                raise ExpressionError(f".{node.attr} is not allowed")
            return getattr(np.asarray(owner) if isinstance(owner, list) else owner, node.attr)
        if isinstance(node, ast.Call):
            func = self.run(node.func)
            if not callable(func):
                raise ExpressionError("only functions can be called")
            args = [self.run(a) for a in node.args]
            kwargs = {k.arg: self.run(k.value) for k in node.keywords if k.arg}
            return func(*args, **kwargs)
        if isinstance(node, ast.Lambda):
            return _Lambda(self, node)
        raise ExpressionError(f"{type(node).__name__} is not allowed")

    def index(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Slice):
            return slice(*(None if part is None else self.run(part) for part in (node.lower, node.upper, node.step)))
        if isinstance(node, ast.Tuple):
            return tuple(self.index(e) for e in node.elts)
        return self.run(node)
