"""Lexer and parser for the KaTeX subset the sheet prints: LaTeX text → statements of expression trees.

The trees are plain data (frozen dataclasses); `evaluate.py` gives them meaning with NumPy. Spacing and
sizing commands (`\\,`, `\\!`, `\\left`, `\\big`, `\\textstyle`) carry no meaning and are dropped here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "GREEK",
    "Abs",
    "App",
    "Atom",
    "Bin",
    "Bound",
    "Cases",
    "Ceil",
    "Cmp",
    "Concat",
    "Expect",
    "Floor",
    "Frac",
    "Func",
    "Group",
    "Index",
    "Indicator",
    "Inner",
    "Jux",
    "Neg",
    "Node",
    "Norm",
    "Num",
    "Power",
    "Reduce",
    "Seq",
    "Sqrt",
    "Statement",
    "TexError",
    "Tok",
    "Transpose",
    "normalize",
    "parse_expression",
    "parse_statements",
    "tokenize",
]


class TexError(ValueError):
    """The LaTeX uses something the evaluator does not read."""


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


GREEK = _words(r"""alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi pi rho
sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Pi Sigma Phi Psi Omega""")
_DROP = _words(r"""\left \right \big \Big \bigg \Bigg \bigl \bigr \Bigl \Bigr \biggl \biggr \textstyle \displaystyle
\scriptstyle \! \, \; \: \> \limits \nolimits \enspace \thinspace \medspace \thickspace""") | {"\\ "}
_SEPARATORS = frozenset([r"\\", r"\quad", r"\qquad"])
_NAME_COMMANDS = _words(r"""\text \textrm \textit \operatorname \mathrm \mathit \mathbb \mathcal \mathbf""")
_SAME = {r"\tfrac": r"\frac", r"\dfrac": r"\frac", r"\cfrac": r"\frac", r"\vert": "|", r"\|": r"\Vert",
         r"\ln": r"\log", r"\gets": r"\leftarrow", r"\to": r"\rightarrow", r"\leq": r"\le", r"\geq": r"\ge",
         r"\neq": r"\ne", r"\ldots": r"\dots", r"\cdots": r"\dots", r"\varepsilon": r"\epsilon",
         r"\intercal": r"\top", r"\widehat": r"\hat", r"\widetilde": r"\tilde", r"\overline": r"\bar"}


@dataclass(frozen=True)
class Tok:
    kind: str  # letter, num, cmd, name, sym, sep
    text: str
    start: int
    end: int
    joined: bool = False  # a letter written directly after another letter (no space): `TP`, `pos`
    style: str = ""  # for names: text, operatorname, mathbb, ...

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.text)


_COMMAND = re.compile(r"\\([A-Za-z]+|.)")


def _brace_content(text: str, i: int) -> tuple[str, int]:
    """`{...}` starting at text[i] (after spaces) → (content, index after the closing brace)."""
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != "{":
        raise TexError(f"expected '{{' at position {i}")
    depth, j = 0, i
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j], j + 1
        j += 1
    raise TexError("unbalanced braces")


def tokenize(text: str) -> list[Tok]:
    tokens: list[Tok] = []
    i = 0
    previous_letter = False
    while i < len(text):
        char = text[i]
        if char.isspace() or char == "~":  # `~` is a non-breaking space
            i += 1
            previous_letter = False
            continue
        if char == "\\":
            match = _COMMAND.match(text, i)
            assert match is not None
            command = "\\" + match.group(1)
            end = match.end()
            command = _SAME.get(command, command)
            if command in _DROP:
                i = end
                continue
            if command in _SEPARATORS:
                tokens.append(Tok("sep", command, i, end))
            elif command in _NAME_COMMANDS:
                content, end = _brace_content(text, end)
                tokens.append(Tok("name", " ".join(content.split()), i, end, style=command[1:]))
            elif command in (r"\begin", r"\end"):
                env, end = _brace_content(text, end)
                env = env.rstrip("*")
                if env == "cases":
                    tokens.append(Tok("cmd", f"{command}{{cases}}", i, end))
                elif env not in ("gathered", "aligned", "align", "gather", "split"):
                    raise TexError(f"environment {env} is not supported")
            elif command in (r"\{", r"\}"):
                tokens.append(Tok("sym", "(" if command == r"\{" else ")", i, end))
            else:
                tokens.append(Tok("cmd", command, i, end))
            previous_letter = False
            i = end
            continue
        if char.isalpha():
            tokens.append(Tok("letter", char, i, i + 1, joined=previous_letter))
            previous_letter = True
            i += 1
            continue
        previous_letter = False
        if char.isdigit() or (char == "." and i + 1 < len(text) and text[i + 1].isdigit()):
            match = re.compile(r"\d*\.?\d+|\d+").match(text, i)
            assert match is not None
            tokens.append(Tok("num", match.group(0), i, match.end()))
            i = match.end()
            continue
        if char in "{}()[]_^+-=<>/,|'&!*:;.":
            tokens.append(Tok("sym", char, i, i + 1))
            i += 1
            continue
        raise TexError(f"character {char!r} is not supported")
    return tokens


def normalize(tokens: list[Tok]) -> tuple[tuple[str, str], ...]:
    """Token keys for matching written fragments: `\\hat{y}` and `\\hat y` are the same."""
    keys = [t.key for t in tokens]
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(keys):
        if (keys[i] == ("sym", "{") and i + 2 < len(keys) and keys[i + 2] == ("sym", "}")
                and keys[i + 1][0] in ("letter", "num", "cmd", "name")):
            out.append(keys[i + 1])
            i += 3
            continue
        out.append(keys[i])
        i += 1
    return tuple(out)


# --- trees --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    start: int = field(default=0, compare=False, kw_only=True)
    end: int = field(default=0, compare=False, kw_only=True)


@dataclass(frozen=True)
class Num(Node):
    value: float


@dataclass(frozen=True)
class Atom(Node):
    """A symbol: base (letters, a greek letter or a named text), accent, subscript, superscript, primes."""

    base: str
    kind: str  # letters | greek | name
    style: str = ""
    accent: str = ""
    sub: tuple[Node, ...] | None = None  # parsed subscript items (split on top-level commas)
    sub_text: str = ""
    sup: Node | None = None
    sup_text: str = ""
    primes: int = 0
    transposed: bool = False

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.base, self.accent, self.sub_text, self.sup_text, self.primes)

    def without_sub(self) -> Atom:
        return Atom(self.base, self.kind, self.style, self.accent, None, "", self.sup, self.sup_text,
                    self.primes, self.transposed, start=self.start, end=self.end)

    def without_sup(self) -> Atom:
        return Atom(self.base, self.kind, self.style, self.accent, self.sub, self.sub_text, None, "",
                    self.primes, False, start=self.start, end=self.end)


@dataclass(frozen=True)
class Bound(Node):
    """A fragment written as a key of the entry's `check: symbols` block (e.g. `\\nabla_\\theta L`)."""

    key: str
    letters: tuple[str, ...]  # single letters inside it, which index the value when they are indices


@dataclass(frozen=True)
class Neg(Node):
    arg: Node


@dataclass(frozen=True)
class Bin(Node):
    op: str  # + - / cdot odot times
    left: Node
    right: Node


@dataclass(frozen=True)
class Jux(Node):
    """Juxtaposition `a b`: elementwise, or a matrix product when a factor is a transpose or upper-case."""

    left: Node
    right: Node


@dataclass(frozen=True)
class Frac(Node):
    num: Node
    den: Node


@dataclass(frozen=True)
class Sqrt(Node):
    arg: Node
    degree: Node | None = None


@dataclass(frozen=True)
class App(Node):
    """`f(a, b)`: a call when f is a function, else a product with the parenthesised factor."""

    func: Node
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Func(Node):
    name: str  # log exp sin cos tan tanh
    arg: Node
    base: Node | None = None  # \log_2
    power: Node | None = None  # \sin^2 x


@dataclass(frozen=True)
class Reduce(Node):
    """`\\sum`, `\\prod`, `\\max`, `\\min` over an index: `\\sum_{i=1}^{n}`, `\\sum_{i \\in +}`, `\\max_j`."""

    op: str
    var: str
    body: Node
    lower: Node | None = None
    upper: Node | None = None
    within: Node | None = None


@dataclass(frozen=True)
class Abs(Node):
    arg: Node


@dataclass(frozen=True)
class Norm(Node):
    arg: Node
    p: float = 2.0


@dataclass(frozen=True)
class Floor(Node):
    arg: Node


@dataclass(frozen=True)
class Ceil(Node):
    arg: Node


@dataclass(frozen=True)
class Inner(Node):
    left: Node
    right: Node


@dataclass(frozen=True)
class Expect(Node):
    arg: Node


@dataclass(frozen=True)
class Indicator(Node):
    arg: Node


@dataclass(frozen=True)
class Cases(Node):
    branches: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True)
class Concat(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Seq(Node):
    """`a_1, \\dots, a_h` inside a call: the a_i for i = 1 … h."""

    first: Atom
    last: Atom


@dataclass(frozen=True)
class Cmp(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Index(Node):
    base: Node
    items: tuple[Node, ...]
    text: str


@dataclass(frozen=True)
class Power(Node):
    base: Node
    exponent: Node


@dataclass(frozen=True)
class Transpose(Node):
    arg: Node


@dataclass(frozen=True)
class Group(Node):
    """Parentheses or braces; kept so that `(\\mathbb{E}[X])^2` and `\\mathbb{E}[X]^2` read the same."""

    arg: Node


@dataclass(frozen=True)
class Statement:
    sides: tuple[Node, ...]
    relations: tuple[str, ...]  # = approx leftarrow sim
    texts: tuple[str, ...]  # the LaTeX of each side, for messages
    text: str
    keys: tuple[tuple[tuple[str, str], ...], ...]  # normalised tokens of each side
    all_keys: tuple[tuple[str, str], ...]


# --- parser -------------------------------------------------------------------------------------------

_RELATIONS = {"=": "=", r"\approx": "approx", r"\leftarrow": "leftarrow", r"\sim": "sim", r"\equiv": "=",
              r"\in": "in"}
_COMPARE = {"<": "<", ">": ">", r"\le": "<=", r"\ge": ">=", r"\ne": "!=", "=": "=="}
_FUNCS = {r"\log": "log", r"\exp": "exp", r"\sin": "sin", r"\cos": "cos", r"\tan": "tan", r"\tanh": "tanh",
          r"\sinh": "sinh", r"\cosh": "cosh"}
_REDUCE = {r"\sum": "sum", r"\prod": "prod", r"\max": "max", r"\min": "min"}
_ACCENTS = {r"\hat": "hat", r"\tilde": "tilde", r"\bar": "bar", r"\vec": "", r"\mathbf": "", r"\boldsymbol": ""}
_STOP = frozenset([("sym", "+"), ("sym", "-"), ("sym", "="), ("sym", ","), ("sym", ")"), ("sym", "]"),
                   ("sym", "}"), ("sym", "&"), ("sym", "<"), ("sym", ">"), ("sym", "|"), ("sym", ";"),
                   ("cmd", r"\rvert"), ("cmd", r"\rVert"), ("cmd", r"\Vert"), ("cmd", r"\rfloor"),
                   ("cmd", r"\rceil"), ("cmd", r"\rangle"), ("cmd", r"\mid"), ("cmd", r"\parallel"), ("cmd", r"\cdot"),
                   ("cmd", r"\odot"), ("cmd", r"\times"), ("sym", "/"), ("cmd", r"\le"), ("cmd", r"\ge"),
                   ("cmd", r"\ne"), ("cmd", r"\in"), ("cmd", r"\end{cases}"), ("cmd", r"\dots"),
                   ("sym", "&"), ("sep", r"\\"), ("sym", ":"), ("cmd", r"\approx"), ("cmd", r"\leftarrow"),
                   ("cmd", r"\sim"), ("cmd", r"\equiv"), ("cmd", r"\rightarrow")])


class _Parser:
    def __init__(self, tokens: list[Tok], text: str, compound: dict[tuple[tuple[str, str], ...], str]) -> None:
        self.toks = tokens
        self.text = text
        self.i = 0
        # written keys of the check block that are not plain symbols, longest first
        self.compound_dict = compound
        self.compound = sorted(compound.items(), key=lambda kv: -len(kv[0]))

    # helpers
    def peek(self, offset: int = 0) -> Tok | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def at(self, kind: str, text: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == kind and tok.text == text

    def take(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise TexError("unexpected end of the formula")
        self.i += 1
        return tok

    def expect(self, kind: str, text: str) -> Tok:
        tok = self.peek()
        if tok is None or tok.kind != kind or tok.text != text:
            found = "the end" if tok is None else repr(tok.text)
            raise TexError(f"expected {text!r}, found {found}")
        return self.take()

    def span(self, start: int) -> tuple[int, int]:
        first = self.toks[start].start if start < len(self.toks) else len(self.text)
        last = self.toks[self.i - 1].end if self.i > start else first
        return first, last

    # grammar
    def relation_chain(self) -> tuple[list[Node], list[str], list[tuple[int, int]]]:
        sides: list[Node] = []
        relations: list[str] = []
        spans: list[tuple[int, int]] = []
        while True:
            start = self.i
            sides.append(self.expression())
            spans.append((start, self.i))
            tok = self.peek()
            if tok is None:
                break
            relation = _RELATIONS.get(tok.text) if tok.kind in ("sym", "cmd") else None
            if relation is None:
                raise TexError(f"unexpected {tok.text!r}")
            self.take()
            relations.append(relation)
        return sides, relations, spans

    def expression(self) -> Node:
        start = self.i
        if self.at("sym", "-"):
            self.take()
            node: Node = Neg(self.term(), start=self.toks[start].start)
        else:
            if self.at("sym", "+"):
                self.take()
            node = self.term()
        while self.peek() is not None and self.peek().key in (("sym", "+"), ("sym", "-")):  # type: ignore[union-attr]
            op = self.take().text
            right = self.term()
            node = Bin(op, node, right, start=node.start, end=right.end)
        return node

    def condition(self) -> Node:
        left = self.expression()
        node: Node = left
        tok = self.peek()
        while tok is not None and tok.kind in ("sym", "cmd") and tok.text in _COMPARE:
            self.take()
            right = self.expression()
            compare = Cmp(_COMPARE[tok.text], left, right, start=left.start, end=right.end)
            node = compare if node is left else Cmp("and", node, compare, start=node.start, end=right.end)
            left = right  # `W \le t < T`: both comparisons hold
            tok = self.peek()
        return node

    def term(self) -> Node:
        node = self.juxtaposition()
        while True:
            tok = self.peek()
            if tok is None:
                return node
            if tok.key == ("sym", "/"):
                op = "/"
            elif tok.kind == "cmd" and tok.text in (r"\cdot", r"\odot", r"\times"):
                op = tok.text[1:]
            else:
                return node
            self.take()
            right = self.juxtaposition()
            node = Bin(op, node, right, start=node.start, end=right.end)

    def starts_factor(self) -> bool:
        tok = self.peek()
        if tok is None or tok.key in _STOP or tok.kind == "sep":
            return False
        if tok.kind == "cmd" and tok.text in _RELATIONS:
            return False
        return not (tok.kind == "sym" and tok.text in "^_'")

    def juxtaposition(self) -> Node:
        node = self.postfix()
        while self.starts_factor():
            right = self.postfix()
            node = Jux(node, right, start=node.start, end=right.end)
        return node

    def script(self) -> tuple[Node, str, list[Tok]]:
        """The argument of `_` or `^`: a braced group or one token."""
        start = self.i
        if self.at("sym", "{"):
            self.take()
            inner_start = self.i
            depth = 1
            j = self.i
            while j < len(self.toks):
                if self.toks[j].key == ("sym", "{"):
                    depth += 1
                elif self.toks[j].key == ("sym", "}"):
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = self.toks[inner_start:j]
            sub = _Parser(inner, self.text, self.compound_dict)
            if len(inner) == 1 and inner[0].kind == "cmd" and inner[0].text in (r"\top", r"\prime"):
                node: Node = Atom(inner[0].text[1:], "cmd")
            elif len(inner) == 1 and inner[0].kind == "cmd" and inner[0].text in _REDUCE:
                node = Atom(inner[0].text[1:], "name", "operatorname")
            elif len(inner) == 1 and inner[0].key == ("sym", "*"):
                node = Atom("*", "letters")
            elif len(inner) == 1 and inner[0].key in (("sym", "+"), ("sym", "-")):
                node = Atom(inner[0].text, "letters")
            else:
                node = sub.script_items() if inner else Num(0.0)
            self.i = j + 1
            return node, _tokens_text(inner), inner
        tok = self.take()
        if tok.kind == "cmd" and tok.text in (r"\top", r"\prime"):
            return Atom(tok.text[1:], "cmd"), tok.text, [tok]
        if tok.key in (("sym", "+"), ("sym", "-"), ("sym", "*")):
            return Atom(tok.text, "letters"), tok.text, [tok]
        if tok.kind == "cmd" and tok.text in _REDUCE:
            return Atom(tok.text[1:], "name", "operatorname"), tok.text, [tok]
        sub = _Parser([tok], self.text, {})
        node = sub.primary()
        return node, _tokens_text(self.toks[start:self.i]), [tok]

    def script_items(self) -> Node:
        items = [self.condition_or_set()]
        while self.at("sym", ","):
            self.take()
            items.append(self.condition_or_set())
        if len(items) == 1 and isinstance(items[0], Concat):  # PE_{(pos, 2i)}
            items = list(items[0].items)
        if self.peek() is not None:
            raise TexError(f"unexpected {self.peek().text!r} in a sub- or superscript")  # type: ignore[union-attr]
        return items[0] if len(items) == 1 else Concat(tuple(items))

    def condition_or_set(self) -> Node:
        tok = self.peek()
        if tok is not None and tok.key in (("sym", "+"), ("sym", "-")) and self.peek(1) is None:
            self.take()
            return Atom(tok.text, "letters")
        if tok is not None and tok.key == ("sym", "<"):
            self.take()
            return Cmp("<", Num(0.0), self.expression())
        left = self.condition()
        if self.at("cmd", r"\in"):
            self.take()
            within = self.condition_or_set()
            return Cmp("in", left, within)
        return left

    def postfix(self) -> Node:
        node = self.primary()
        while True:
            tok = self.peek()
            if tok is None:
                return node
            if tok.key == ("sym", "_"):
                self.take()
                sub, text, _ = self.script()
                items = sub.items if isinstance(sub, Concat) else (sub,)
                if isinstance(node, Atom) and node.sub is None and node.sup is None:
                    node = Atom(node.base, node.kind, node.style, node.accent, items, text, None, "", node.primes,
                                start=node.start, end=self.toks[self.i - 1].end)
                else:
                    node = Index(node, items, text, start=node.start, end=self.toks[self.i - 1].end)
            elif tok.key == ("sym", "^"):
                self.take()
                sup, text, _ = self.script()
                end = self.toks[self.i - 1].end
                if (isinstance(sup, Atom) and sup.kind == "cmd" and sup.base == "top") or text in ("T", r"\top"):
                    node = Transpose(node, start=node.start, end=end)
                elif isinstance(sup, Atom) and sup.kind == "cmd" and sup.base == "prime":
                    node = _primed(node, end)
                elif isinstance(node, Atom) and node.sup is None and not node.transposed:
                    node = Atom(node.base, node.kind, node.style, node.accent, node.sub, node.sub_text, sup, text,
                                node.primes, start=node.start, end=end)
                else:
                    node = Power(node, sup, start=node.start, end=end)
            elif tok.key == ("sym", "'"):
                self.take()
                node = _primed(node, tok.end)
            elif tok.key == ("sym", "(") and isinstance(node, (Atom, Bound, App, Index)):
                node = self.call(node)
            elif tok.key == ("sym", "[") and isinstance(node, Atom) and node.kind == "name" and node.base == "E":
                self.take()
                arg = self.expression()
                self.expect("sym", "]")
                node = Expect(arg, start=node.start, end=self.toks[self.i - 1].end)
            else:
                return node

    def call(self, func: Node) -> Node:
        self.expect("sym", "(")
        args: list[Node] = []
        if not self.at("sym", ")"):
            while True:
                args.append(self.argument())
                if self.at("sym", ","):
                    self.take()
                    if self.at("cmd", r"\dots") and args and isinstance(args[-1], Atom):
                        self.take()
                        self.expect("sym", ",")
                        last = self.argument()
                        if not isinstance(last, Atom):
                            raise TexError("write `a_1, \\dots, a_n` with a symbol on both ends")
                        first = args[-1]
                        assert isinstance(first, Atom)
                        args[-1] = Seq(first, last, start=first.start, end=last.end)
                        if self.at("sym", ","):
                            self.take()
                            continue
                        break
                    continue
                if self.at("cmd", r"\mid") or self.at("cmd", r"\parallel"):
                    self.take()
                    continue
                break
        self.expect("sym", ")")
        return App(func, tuple(args), start=func.start, end=self.toks[self.i - 1].end)

    def argument(self) -> Node:
        return self.condition()

    def group(self, close: str) -> Node:
        start = self.i
        node = self.condition()
        if close in ")]" and self.at("sym", ","):
            items = [node]
            while self.at("sym", ","):
                self.take()
                items.append(self.condition())
            self.expect("sym", close)
            return Concat(tuple(items), start=self.toks[start].start, end=self.toks[self.i - 1].end)
        self.expect("sym", close)
        return Group(node, start=self.toks[start - 1].start, end=self.toks[self.i - 1].end)

    def match_compound(self) -> Bound | None:
        if not self.compound:
            return None
        keys = normalize(self.toks[self.i:self.i + 64])
        for key, written in self.compound:
            if keys[:len(key)] == key:
                # consume tokens: normalisation may have shortened braces, so count forward
                consumed, j = 0, self.i
                while normalize(self.toks[self.i:j]) != key and j < len(self.toks):
                    j += 1
                if normalize(self.toks[self.i:j]) != key:
                    continue
                del consumed
                following = self.toks[j] if j < len(self.toks) else None
                if following is not None and (following.key == ("sym", "_")
                                              or (following.kind == "letter" and following.joined)):
                    continue
                letters = tuple(dict.fromkeys(t.text for t in self.toks[self.i:j] if t.kind == "letter"))
                start = self.toks[self.i].start
                self.i = j
                return Bound(written, letters, start=start, end=self.toks[j - 1].end)
        return None

    def primary(self) -> Node:
        bound = self.match_compound()
        if bound is not None:
            return bound
        start = self.i
        tok = self.take()
        begin = tok.start
        if tok.kind == "num":
            return Num(float(tok.text), start=begin, end=tok.end)
        if tok.kind == "letter":
            letters = tok.text
            while self.peek() is not None and self.peek().kind == "letter" and self.peek().joined:  # type: ignore[union-attr]
                letters += self.take().text
            return Atom(letters, "letters", start=begin, end=self.toks[self.i - 1].end)
        if tok.kind == "name":
            if tok.style == "mathbb" and tok.text == "1" and self.at("sym", "("):
                self.take()
                arg = self.condition()
                self.expect("sym", ")")
                return Indicator(arg, start=begin, end=self.toks[self.i - 1].end)
            return Atom(tok.text, "name", tok.style, start=begin, end=tok.end)
        if tok.kind == "sym":
            if tok.text in "({":
                return self.group(")" if tok.text == "(" else "}")
            if tok.text == "[":
                return self.group("]")
            if tok.text == "|":
                arg = self.expression()
                self.expect("sym", "|")
                return Abs(arg, start=begin, end=self.toks[self.i - 1].end)
            raise TexError(f"unexpected {tok.text!r}")
        # commands
        text = tok.text
        if text[1:] in GREEK:
            return Atom(text[1:], "greek", start=begin, end=tok.end)
        if text in (r"\partial", r"\nabla", r"\ell"):
            return Atom(text[1:], "greek", start=begin, end=tok.end)
        if text == r"\infty":
            return Num(float("inf"), start=begin, end=tok.end)
        if text in _ACCENTS:
            inner, _, _ = self.script()
            if not isinstance(inner, Atom):
                raise TexError(f"{text} must be on a symbol")
            accent = _ACCENTS[text]
            return Atom(inner.base, inner.kind, inner.style, accent or inner.accent, inner.sub, inner.sub_text,
                        inner.sup, inner.sup_text, inner.primes, start=begin, end=self.toks[self.i - 1].end)
        if text == r"\frac":
            num, _, _ = self.script()
            den, _, _ = self.script()
            return Frac(num, den, start=begin, end=self.toks[self.i - 1].end)
        if text == r"\sqrt":
            degree = None
            if self.at("sym", "["):
                self.take()
                degree = self.expression()
                self.expect("sym", "]")
            arg, _, _ = self.script()
            return Sqrt(arg, degree, start=begin, end=self.toks[self.i - 1].end)
        if text in _FUNCS:
            base = power = None
            while self.peek() is not None and self.peek().key in (("sym", "_"), ("sym", "^")):  # type: ignore[union-attr]
                which = self.take().text
                script, _, _ = self.script()
                if which == "_":
                    base = script
                else:
                    power = script
            arg = self.postfix()
            return Func(_FUNCS[text], arg, base, power, start=begin, end=self.toks[self.i - 1].end)
        if text in _REDUCE:
            return self.reduce(_REDUCE[text], begin)
        if text == r"\arg" and self.peek() is not None and self.peek().text in (r"\min", r"\max"):  # type: ignore[union-attr]
            return self.reduce("arg" + _REDUCE[self.take().text], begin)
        if text in (r"\lvert", r"\lVert", r"\Vert", r"\lfloor", r"\lceil", r"\langle"):
            return self.delimited(text, begin)
        if text == r"\begin{cases}":
            return self.cases(begin)
        if text == r"\sigma":
            return Atom("sigma", "greek", start=begin, end=tok.end)
        del start
        raise TexError(f"{text} is not supported")

    def reduce(self, op: str, begin: int) -> Node:
        var = ""
        lower = upper = within = None
        if op in ("max", "min") and self.at("sym", "("):
            call = self.call(Atom(op, "name", "operatorname", start=begin, end=begin))
            return call
        while self.peek() is not None and self.peek().key in (("sym", "_"), ("sym", "^")):  # type: ignore[union-attr]
            which = self.take().text
            script, text, _ = self.script()
            if which == "^":
                upper = script
                continue
            if isinstance(script, Cmp) and script.op == "in" and isinstance(script.left, Atom):
                var, within = script.left.base, script.right
            elif isinstance(script, Cmp) and script.op == "==" and isinstance(script.left, Atom):
                var, lower = script.left.base, script.right
            elif isinstance(script, Atom) and script.kind in ("letters", "greek") and script.sub is None:
                var = script.base
            else:
                raise TexError(f"cannot read the index of \\{op}_{{{text}}}")
        if not var:
            raise TexError(f"\\{op} needs an index: write \\{op}_i")
        body = self.term() if op in ("sum", "prod", "argmin", "argmax") else self.postfix()
        return Reduce(op, var, body, lower, upper, within, start=begin, end=self.toks[self.i - 1].end)

    def delimited(self, opening: str, begin: int) -> Node:
        closing = {r"\lvert": r"\rvert", r"\lVert": r"\rVert", r"\Vert": r"\Vert", r"\lfloor": r"\rfloor",
                   r"\lceil": r"\rceil", r"\langle": r"\rangle"}[opening]
        if opening == r"\langle":
            left = self.expression()
            self.expect("sym", ",")
            right = self.expression()
            self.expect("cmd", closing)
            return Inner(left, right, start=begin, end=self.toks[self.i - 1].end)
        arg = self.expression()
        if closing == r"\rVert" and self.at("cmd", r"\Vert"):
            closing = r"\Vert"
        self.expect("cmd", closing)
        if opening in (r"\lVert", r"\Vert"):
            p = 2.0
            if self.at("sym", "_"):
                self.take()
                script, text, _ = self.script()
                if not isinstance(script, Num):
                    raise TexError(f"norm subscript {text} is not a number")
                p = script.value
            return Norm(arg, p, start=begin, end=self.toks[self.i - 1].end)
        node = {r"\lvert": Abs, r"\lfloor": Floor, r"\lceil": Ceil}[opening]
        return node(arg, start=begin, end=self.toks[self.i - 1].end)

    def cases(self, begin: int) -> Node:
        branches: list[tuple[Node, Node]] = []
        while not self.at("cmd", r"\end{cases}"):
            value = self.expression()
            self.expect("sym", "&")
            if self.peek() is not None and self.peek().kind == "name":  # type: ignore[union-attr]
                self.take()  # "if", "otherwise"
            condition: Node = Num(1.0) if self.at("sep", r"\\") or self.at("cmd", r"\end{cases}") else self.condition()
            branches.append((value, condition))
            if self.at("sep", r"\\"):
                self.take()
        self.take()
        return Cases(tuple(branches), start=begin, end=self.toks[self.i - 1].end)


def _primed(node: Node, end: int) -> Node:
    if isinstance(node, Atom):
        return Atom(node.base, node.kind, node.style, node.accent, node.sub, node.sub_text, node.sup,
                    node.sup_text, node.primes + 1, start=node.start, end=end)
    raise TexError("a prime must follow a symbol")


def _tokens_text(tokens: list[Tok]) -> str:
    return "".join(t.text for t in tokens if t.key not in (("sym", "{"), ("sym", "}")))


def _split_statements(tokens: list[Tok]) -> list[list[Tok]]:
    """Split at `\\\\`, `\\quad` and commas outside any bracket."""
    pieces: list[list[Tok]] = [[]]
    depth = 0
    in_cases = 0
    openers = {"(", "[", "{", r"\lvert", r"\lVert", r"\lfloor", r"\lceil", r"\langle"}
    closers = {")", "]", "}", r"\rvert", r"\rVert", r"\rfloor", r"\rceil", r"\rangle"}
    for tok in tokens:
        if tok.text == r"\begin{cases}":
            in_cases += 1
        elif tok.text == r"\end{cases}":
            in_cases -= 1
        if tok.kind in ("sym", "cmd") and tok.text in openers:
            depth += 1
        elif tok.kind in ("sym", "cmd") and tok.text in closers:
            depth -= 1
        if depth <= 0 and not in_cases and (tok.kind == "sep" or tok.key == ("sym", ",")):
            pieces.append([])
            continue
        pieces[-1].append(tok)
    statements: list[list[Tok]] = []
    for piece in pieces:
        # a leading text label such as `\text{(batch: }` introduces the statement; it is no part of it
        if piece and piece[0].kind == "name" and piece[0].style == "text" and len(piece) > 1 and (
                piece[0].text.rstrip().endswith(":") or piece[0].text.startswith("(")):
            opened = piece[0].text.count("(") - piece[0].text.count(")")
            piece = piece[1:]
            if opened > 0 and piece and piece[-1].key == ("sym", ")"):
                piece = piece[:-1]
        if piece:
            statements.append(piece)
    return statements


def parse_statements(text: str, compound: dict[tuple[tuple[str, str], ...], str] | None = None,
                     skip: frozenset[tuple[tuple[str, str], ...]] = frozenset()) -> list[Statement]:
    """The statements of a formula; those whose tokens are in `skip` (unchecked) are kept unparsed."""
    tokens = tokenize(text)
    statements: list[Statement] = []
    for piece in _split_statements(tokens):
        if normalize(piece) in skip:
            statements.append(Statement((), (), (), " ".join(text[piece[0].start:piece[-1].end].split()), (),
                                        normalize(piece)))
            continue
        parser = _Parser(piece, text, compound or {})
        sides, relations, spans = parser.relation_chain()
        texts = tuple(" ".join(text[piece[a].start:piece[b - 1].end].split()) if b > a else "" for a, b in spans)
        keys = tuple(normalize(piece[a:b]) for a, b in spans)
        statements.append(Statement(tuple(sides), tuple(relations), texts,
                                    " ".join(text[piece[0].start:piece[-1].end].split()), keys, normalize(piece)))
    return statements


def parse_expression(text: str) -> Node:
    tokens = tokenize(text)
    parser = _Parser(tokens, text, {})
    node = parser.condition()
    if parser.peek() is not None:
        raise TexError(f"unexpected {parser.peek().text!r}")  # type: ignore[union-attr]
    return node
