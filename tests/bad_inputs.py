"""The bad-input table of issue 5: each row is one small mistake in the shipped formulas.yaml.

Shared by tests/test_bad_input.py (each row must fail with one located, fixable message and leave
every output untouched) and scripts/troubleshooting.py (the README's troubleshooting table).

A row replaces the first occurrence of `old` in the shipped file with `new` (`old=None`: `new` is
the whole file). `line` is where the message must point, counted from the first line of `old`
(0 = that line), so editing formulas.yaml elsewhere does not break the table; for whole-file rows
it is the absolute line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_PATH = ROOT / "formulas.yaml"
MARKER = "@MARKER@"
"""Stands for a file path in `new`: the `!!python` row would create it if the tag were executed."""


@dataclass(frozen=True)
class BadInput:
    wrote: str
    """What the user wrote (Markdown): the "you wrote" column of the README."""
    old: str | None
    new: str
    line: int
    entry_id: str | None
    needle: str
    """A part of the message that says what is wrong (the test also requires a `— how to fix`)."""

    def apply(self, shipped: str, marker: Path | str = "/tmp/sheetgen-was-here") -> str:
        """The bad file's text."""
        new = self.new.replace(MARKER, str(marker))
        if self.old is None:
            return new
        assert self.old in shipped, f"{self.wrote}: {self.old!r} is no longer in formulas.yaml; update the row"
        return shipped.replace(self.old, new, 1)

    def expected_line(self, shipped: str) -> int:
        if self.old is None:
            return self.line
        return shipped[: shipped.index(self.old)].count("\n") + 1 + self.line


def shipped_text() -> str:
    return SHIPPED_PATH.read_text(encoding="utf-8")


_BOMB = "a: &a ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol', 'lol']\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)
_DOT = "        id: dot_product\n"
_DOT_LATEX = r"        latex: 'a \cdot b = \sum_i a_i b_i = \lVert a \rVert \, \lVert b \rVert \cos\theta'"
_DOT_MEANING = "        meaning: Sum of elementwise products; large when the vectors point the same way."
_DOT_SOURCE = "        source: Strang, Introduction to Linear Algebra (5th ed., 2016), §1.2\n"
_DOT_RETURN = "              return np.sum(np.asarray(a, dtype=float) * np.asarray(b, dtype=float), axis=-1)"
_DOT_DOCTEST = "          >>> float(dot_product([1, 2, 3], [4, 5, 6]))\n          32.0\n"
_COSINE = "        id: cosine_similarity\n"
_FACT_TEXT = ("        text: 'ROC (TPR vs FPR) ignores class balance: fine when balanced. "
              "Rare positives: use PR (precision vs recall) and AP.'\n")
_BIAS_ANSWER = ("        answer:\n          - 'Bias: wrong assumptions (underfit)'\n"
                "          - 'Variance: sensitive to the training data (overfit)'\n")

CASES: tuple[BadInput, ...] = (
    BadInput("a YAML syntax error (`title: [Math essentials`, unclosed bracket)",
             "    title: Math essentials", "    title: [Math essentials", 0, "math", "YAML syntax error"),
    BadInput("an unclosed quote (`title: 'Math essentials`)", "    title: Math essentials",
             "    title: 'Math essentials", 0, "math", "the quote opened here is not closed"),
    BadInput("a tab in the indentation", "    title: Math essentials", "\ttitle: Math essentials", 0, "math",
             "tab character in indentation"),
    BadInput("the same key twice in one entry", _DOT_SOURCE, _DOT_SOURCE + "        name: Dot product again\n",
             1, "dot_product", "duplicate key 'name'"),
    BadInput("two entries with the same id", _COSINE, "        id: dot_product\n", 0, "dot_product",
             "duplicate entry id 'dot_product'"),
    BadInput("ids that differ only in case (`id: Dot_product`)", _COSINE, "        id: Dot_product\n", 0,
             "Dot_product", "'dot_product'"),
    BadInput("an id that is a path (`id: ../x`)", _DOT, "        id: ../x\n", 0, "../x", "not a valid id"),
    BadInput("an id that is an absolute path (`id: /tmp/x`)", _DOT, "        id: /tmp/x\n", 0, "/tmp/x",
             "not a valid id"),
    BadInput("a reserved name as id (`id: con`)", _DOT, "        id: con\n", 0, "con", "reserved name"),
    BadInput("a misspelt key (`meening:`)", _DOT_MEANING, _DOT_MEANING.replace("meaning:", "meening:"), 0,
             "dot_product", "did you mean 'meaning'?"),
    BadInput("a required key left out (no `name:`)", _DOT + "        name: Dot product\n", _DOT, -1, "dot_product",
             "required key is missing"),
    BadInput("text where a list is due (`answer: Because`)", _BIAS_ANSWER, "        answer: Because\n", 0,
             "bias_vs_variance", "expected a list"),
    BadInput("an unquoted YAML 1.1 boolean (`answer:` item `- no`)", "          - 'Computationally simple'",
             "          - no", 0, "why_relu", "quote it: 'no'"),
    BadInput(r'LaTeX in double quotes (`latex: "\frac{a}{b}"`)', _DOT_LATEX,
             '        latex: "\\frac{a}{b}"', 0, "dot_product", "form feed"),
    BadInput(r"invalid LaTeX (`\frac{1}{`)", _DOT_LATEX, r"        latex: '\frac{1}{'", 0, "dot_product",
             "KaTeX parse error"),
    BadInput(r"an unknown LaTeX command (`\cdott`)", _DOT_LATEX, _DOT_LATEX.replace(r"\cdot", r"\cdott"), 0,
             "dot_product", r"Undefined control sequence: \cdott"),
    BadInput(r"`\href{javascript:alert(1)}{x}` in LaTeX", _DOT_LATEX,
             r"        latex: '\href{javascript:alert(1)}{x}'", 0, "dot_product", r"\href"),
    BadInput(r"`\includegraphics{x}` in LaTeX", _DOT_LATEX, r"        latex: '\includegraphics{x}'", 0,
             "dot_product", r"\includegraphics"),
    BadInput(r"`\url{x}` in LaTeX", _DOT_LATEX, r"        latex: '\url{x}'", 0, "dot_product", r"\url"),
    BadInput(r"a macro bomb (`\def\a{\a\a}\a`)", _DOT_LATEX, r"        latex: '\def\a{\a\a}\a'", 0,
             "dot_product", r"\def"),
    BadInput(r"a huge size (`\rule{1e5em}{1e5em}`)", _DOT_LATEX, r"        latex: '\rule{1e5em}{1e5em}'", 0,
             "dot_product", "1e5em"),
    BadInput("a field over its length limit (`meaning:` of 500 characters)", _DOT_MEANING,
             "        meaning: " + "x" * 500, 0, "dot_product", "the limit is 400"),
    BadInput("raw HTML in prose (`text: '<img src=x onerror=alert(1)>'`)", _FACT_TEXT,
             _FACT_TEXT.replace("'ROC", "'<img src=x onerror=alert(1)> ROC"), 0, "roc_vs_pr", "HTML"),
    BadInput("a `javascript:` link in prose", _DOT_MEANING, _DOT_MEANING + " [more](javascript:alert(1))", 0,
             "dot_product", "'javascript:'"),
    BadInput("a `file://` reference (`source: file:///etc/passwd`)", _DOT_SOURCE,
             "        source: file:///etc/passwd\n", 0, "dot_product", "'file:'"),
    BadInput("an `http://` reference (`source: http://example.com/paper.pdf`)", _DOT_SOURCE,
             "        source: http://example.com/paper.pdf\n", 0, "dot_product", "'http://'"),
    BadInput("a Python tag (`!!python/object/apply:os.system ['touch …']`)", _FACT_TEXT,
             f"        text: !!python/object/apply:os.system ['touch {MARKER}']\n", 0,
             "roc_vs_pr", "never executed"),
    BadInput("a YAML alias bomb (billion laughs)", None, _BOMB, 1, None, "anchors and aliases"),
    BadInput("an empty file", None, "", 1, None, "the file is empty"),
    BadInput("a list at the top level", None, "- kind: formula\n  id: dot_product\n", 1, None,
             "the top level must be a mapping"),
    BadInput("a Python syntax error in `implementation:`", _DOT_RETURN, _DOT_RETURN.replace("axis=-1)", "axis=-1"),
             0, "dot_product", "Python syntax error"),
    BadInput("a failing doctest (`33.0` expected where the function returns 32.0)", _DOT_DOCTEST,
             _DOT_DOCTEST.replace("32.0", "33.0"), 0, "dot_product", "expected '33.0' but got '32.0'"),
    BadInput("two entries defining one function (`def dot_product` under `cosine_similarity`)",
             "          def cosine_similarity(a, b):", "          def dot_product(a, b):", 0, "cosine_similarity",
             "defines 'dot_product'"),
    BadInput("an invisible Unicode bidi control (U+202E) in `name:`", "        name: Dot product\n",
             "        name: Dot \u202eproduct\n", 0, "dot_product", "U+202E"),
    BadInput("a snippet of a formula that does not exist (`function: softmaxx`)", "        function: softmax\n",
             "        function: softmaxx\n", 0, "softmax_snippet", "did you mean 'softmax'?"),
    BadInput("a file over 1 MB", None, "# padding\n" * 110_000, 1, None, "the limit is 1,048,576"),
    # Issue 9: YAML code that misbehaves runs in a limited child process (sheetgen/sandbox.py).
    BadInput("an endless loop in `implementation:` (`while True: pass`)", _DOT_RETURN,
             "              while True: pass", 2, "dot_product", "ran longer than 10 s"),
    BadInput("an example that ends the interpreter (`>>> __import__('os')._exit(0)`)", _DOT_DOCTEST,
             "          >>> __import__('os')._exit(0)\n" + _DOT_DOCTEST, 0, "dot_product", "exit code 0"),
    BadInput("an example that raises KeyboardInterrupt", _DOT_DOCTEST,
             "          >>> raise KeyboardInterrupt\n" + _DOT_DOCTEST, 0, "dot_product", "raised KeyboardInterrupt"),
    BadInput("a memory bomb in an example (`>>> x = bytearray(10**11)`)", _DOT_DOCTEST,
             "          >>> x = bytearray(10**11)\n" + _DOT_DOCTEST, 0, "dot_product", "raised MemoryError"),
    BadInput("a default argument that fails at definition (`def dot_product(a, b=np.nonexistent_attr)`)",
             "          def dot_product(a, b):\n", "          def dot_product(a, b=np.nonexistent_attr):\n", 0,
             "dot_product", "defining dot_product raised AttributeError"),
    BadInput("an example that prints 300 KB (`>>> print('x' * 300_000)`)", _DOT_DOCTEST,
             "          >>> print('x' * 300_000)\n          x\n" + _DOT_DOCTEST, 0, "dot_product", "(300,000 chars)"),
)
