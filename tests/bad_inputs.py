"""The bad-input table of issue 5: each row is one small mistake in the shipped formulas.yaml.

Shared by tests/test_bad_input.py (each row must fail with one located, fixable message and leave
every output untouched) and scripts/troubleshooting.py (the README's troubleshooting table).

A row replaces the first occurrence of `old` in the shipped file with `new` (`old=None`: `new` is
the whole file). `line` is where the message must point, counted from the first line of `old`
(0 = that line), so editing formulas.yaml elsewhere does not break the table; for whole-file rows
it is the absolute line.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    situation: str = ""
    """Not (only) a mistake in the text: a name in SITUATIONS, the file-system state the row sets up
    with `arranged` (a folder passed as the file, a FIFO, a read-only output folder, a full disk...)."""

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
# The start of the fact's text only, so that rewording the fact does not break the rows.
_FACT_TEXT = "        name: ROC vs PR curves\n        text: '"
# The whole `answer:` list (however many items it has): replaced by one line of text.
_ANSWER_LIST = re.compile(r"(?<=        question: Bias vs variance\?\n)        answer:\n(?:          - .*\n)+")
_BIAS_ANSWER = next(iter(_ANSWER_LIST.findall(SHIPPED_PATH.read_text(encoding="utf-8"))), "no bias_vs_variance list")

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
             _FACT_TEXT + "<img src=x onerror=alert(1)> ", 1, "roc_vs_pr", "HTML"),
    BadInput("a `javascript:` link in prose", _DOT_MEANING, _DOT_MEANING + " [more](javascript:alert(1))", 0,
             "dot_product", "'javascript:'"),
    BadInput("a `file://` reference (`source: file:///etc/passwd`)", _DOT_SOURCE,
             "        source: file:///etc/passwd\n", 0, "dot_product", "'file:'"),
    BadInput("an `http://` reference (`source: http://example.com/paper.pdf`)", _DOT_SOURCE,
             "        source: http://example.com/paper.pdf\n", 0, "dot_product", "'http://'"),
    BadInput("a Python tag (`!!python/object/apply:os.system ['touch …']`)", "        name: ROC vs PR curves\n",
             f"        name: !!python/object/apply:os.system ['touch {MARKER}']\n", 0,
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
    # Issue 9, section 3: values YAML types wrongly, nesting, and the file system (SITUATIONS below).
    BadInput("a tagged non-number (`latex: !!int abc`)", _DOT_LATEX, "        latex: !!int abc", 0, "dot_product",
             "'abc' is not a whole number"),
    BadInput("a tagged non-number (`latex: !!float abc`)", _DOT_LATEX, "        latex: !!float abc", 0,
             "dot_product", "'abc' is not a number"),
    BadInput("a number YAML cannot read (`minutes: 0x_`)", "            minutes: 5\n", "            minutes: 0x_\n",
             0, "design_framework", "'0x_' looks like a whole number"),
    BadInput("a 5,000-digit number (`minutes: 99…9`)", "            minutes: 5\n",
             "            minutes: " + "9" * 5000 + "\n", 0, "design_framework", "5,000 characters"),
    BadInput("lists nested 3,000 deep (`latex: [[[…]]]`)", _DOT_LATEX, "        latex: " + "[" * 3000 + "]" * 3000,
             0, "dot_product", "nested more than 40 levels"),
    BadInput("a boolean that is neither (`print: !!bool maybe`)", _DOT, _DOT + "        print: !!bool maybe\n", 1,
             "dot_product", "'maybe' is not a boolean"),
    BadInput("an unknown key holding a link (`sheet:` → `extra_css: https://…`)", "  print:\n",
             "  extra_css: https://example.com/x.css\n  print:\n", 0, None, "unknown key 'extra_css'"),
    BadInput("a tag that is not an id (`tags: [Linear-Algebra]`)", "        tags: [linear_algebra]\n",
             "        tags: [Linear-Algebra]\n", 0, "dot_product", "not a valid tag"),
    BadInput("`-f` pointing at a folder", None, "", 0, None, "is a folder", "folder"),
    BadInput("`-f` pointing at a symlink to a folder", None, "", 0, None, "is a folder", "symlink-to-folder"),
    BadInput("an unreadable file (`chmod 000 formulas.yaml`)", None, "", 0, None, "Permission denied",
             "unreadable"),
    BadInput("a symlink to /dev/zero (endless input)", None, "", 0, None, "is a device", "dev-zero"),
    BadInput("a named pipe (FIFO) as the file", None, "", 0, None, "is a named pipe", "fifo"),
    # A valid edit that brings new math, so that even `check` has something to write (its KaTeX cache).
    BadInput("a read-only output folder (build/ on a read-only file system)", _DOT_MEANING,
             _DOT_MEANING + r" ($a \perp b$ gives 0.)", 0, None, "Read-only file system", "read-only-output"),
    BadInput("a full disk (ENOSPC while writing build/)", _DOT_MEANING,
             _DOT_MEANING + r" ($a \perp b$ gives 0.)", 0, None, "No space left on device", "disk-full"),
    BadInput("`sheetgen serve` on a port that is taken", None, "", 0, None, "Address already in use",
             "port-taken"),
)


# --- file-system situations (issue 9): set up for real where we can, simulated where we cannot ----

SITUATIONS = ("folder", "symlink-to-folder", "unreadable", "dev-zero", "fifo", "read-only-output", "disk-full",
              "port-taken")
OUTPUT_SITUATIONS = ("read-only-output", "disk-full")
"""The message names a file in the output folder, not the input."""
TAKEN_PORT = 18765
"""`serve` is pointed here while a socket holds it (a fixed port keeps the README table stable)."""


@dataclass(frozen=True)
class Arranged:
    path: Path
    """What to pass as `-f`."""
    extra: tuple[str, ...] = ()
    """Extra arguments the situation needs (e.g. `-a HOST:PORT` for serve)."""
    command: str | None = None
    """The command that meets the situation (None: the caller's usual one)."""


@contextlib.contextmanager
def arranged(case: BadInput, folder: Path, shipped: str, outputs: Path,
             marker: Path | str = "/tmp/sheetgen-was-here") -> Iterator[Arranged]:
    """The bad file of `case` in `folder`, with its situation set up (and undone on exit).

    `outputs` is the folder the command writes into: the output situations make it read-only or full.
    """
    bad = folder / "formulas.yaml"
    situation = case.situation
    if situation not in ("folder", "symlink-to-folder", "dev-zero", "fifo"):
        text = shipped if situation and case.old is None else case.apply(shipped, marker)
        bad.write_text(text, encoding="utf-8")
    if situation == "folder":
        bad.mkdir()
    elif situation == "symlink-to-folder":
        (folder / "a-folder").mkdir()
        bad.symlink_to(folder / "a-folder")
    elif situation == "dev-zero":
        bad.symlink_to("/dev/zero")
    elif situation == "fifo":
        os.mkfifo(bad)
    if situation == "unreadable":
        bad.chmod(0)
        try:
            if os.geteuid() == 0:  # root reads any file whatever its mode: the kernel's answer, simulated
                with _patched_open(bad, errno.EACCES, reads=True):
                    yield Arranged(bad)
            else:
                yield Arranged(bad)
        finally:
            bad.chmod(0o644)
    elif situation in OUTPUT_SITUATIONS:
        with _patched_open(outputs, errno.EROFS if situation == "read-only-output" else errno.ENOSPC):
            yield Arranged(bad)
    elif situation == "port-taken":
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with contextlib.suppress(OSError):  # already taken by someone else: taken all the same
                holder.bind(("127.0.0.1", TAKEN_PORT))
                holder.listen()
            yield Arranged(bad, ("-a", f"127.0.0.1:{TAKEN_PORT}"), "serve")
    else:
        yield Arranged(bad)
    if bad.is_symlink() or bad.is_fifo():
        bad.unlink()


@contextlib.contextmanager
def _patched_open(under: Path, code: int, reads: bool = False) -> Iterator[None]:
    """Make opening files under `under` fail as the kernel would, where the tests cannot make it real
    (tests run as root, and without a tiny file system to fill): EROFS or EACCES when the file is
    opened (for writing; with `reads`, for reading too), and ENOSPC when data is written, by handing
    out /dev/full, on which every write fails with ENOSPC."""
    root = os.path.abspath(under)
    real_os_open, real_open, real_mkdir, real_replace = os.open, builtins.open, os.mkdir, os.replace
    handle, scratch = tempfile.mkstemp(prefix="sheetgen-full-disk-")
    os.close(handle)
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def inside(path: object) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False  # a file descriptor
        name = os.path.abspath(os.fsdecode(path))
        return name == root or name.startswith(root + os.sep)

    def refuse(path: object) -> OSError:
        return OSError(code, os.strerror(code), os.fsdecode(path))  # type: ignore[arg-type]

    def os_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if dir_fd is None and inside(path) and (reads or flags & writing):
            if code != errno.ENOSPC:
                raise refuse(path)
            return real_os_open("/dev/full", os.O_WRONLY | (flags & os.O_CLOEXEC))
        return real_os_open(path, flags, mode, dir_fd=dir_fd)

    def open_(file: Any, mode: str = "r", buffering: int = -1, encoding: str | None = None,
              *args: Any, **kwargs: Any) -> Any:
        if inside(file) and (reads or any(c in mode for c in "wax+")):
            if code != errno.ENOSPC:
                raise refuse(file)
            # A real file (seek, truncate and locks work) whose writes fail as on a full disk.
            raw = _FullDisk(scratch, mode.replace("b", "").replace("t", "").replace("x", "w"))
            buffered = io.BufferedRandom(raw) if "+" in mode else io.BufferedWriter(raw)
            return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding=encoding or "utf-8")
        return real_open(file, mode, buffering, encoding, *args, **kwargs)

    def mkdir(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if code == errno.EROFS and inside(path):
            raise refuse(path)
        real_mkdir(path, mode, dir_fd=dir_fd)

    def replace(src: Any, dst: Any, **kwargs: Any) -> None:
        if code == errno.EROFS and (inside(src) or inside(dst)):
            raise refuse(dst)
        real_replace(src, dst, **kwargs)

    patches = [(os, "open", os_open), (builtins, "open", open_), (io, "open", open_), (os, "mkdir", mkdir),
               (os, "replace", replace), (os, "rename", replace)]
    saved = [(module, name, getattr(module, name)) for module, name, _ in patches]
    try:
        for module, name, value in patches:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        os.unlink(scratch)


class _FullDisk(io.FileIO):
    """A file on a full disk: every write fails with ENOSPC, as the kernel reports it."""

    def write(self, data: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
