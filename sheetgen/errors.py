"""The one error type users see: `file:line:col [entry id] field: problem — how to fix`.

Problems that have no line (a file that cannot be read or written) print as `path: problem — how to fix`.
"""

from __future__ import annotations

import doctest
import errno
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MessageError", "Problem", "SheetError", "float_hint", "os_problem"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located in the YAML file."""

    path: str
    line: int
    problem: str
    fix: str = ""
    column: int | None = None
    entry_id: str | None = None
    field: str | None = None

    def __str__(self) -> str:
        if self.line <= 0:  # about the whole file (or an output path): there is no line to point at
            where = f"{self.path}:"
        else:
            where = f"{self.path}:{self.line}" + (f":{self.column}" if self.column else "")
        who = f" [{_printable(self.entry_id)}]" if self.entry_id else ""
        what = f" {_printable(self.field)}:" if self.field else ""
        fix = f" — {self.fix}" if self.fix else ""
        return f"{where}{who}{what} {self.problem}{fix}"


def _printable(name: str) -> str:
    """Names come from the user's file: keep each message on one line, whatever they contain."""
    shown = name if name.isprintable() and "]" not in name else repr(name)
    return shown if len(shown) <= 60 else shown[:59] + "…"  # a 5,000-character id is named, not printed


class SheetError(Exception):
    """Raised for anything wrong with the user's input; the CLI prints it and exits 1."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.path, p.line, p.column or 0)))
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, path: str, line: int, problem: str, fix: str = "", **where: object) -> SheetError:
        return cls([Problem(path, line, problem, fix, **where)])  # type: ignore[arg-type]


# What to do about an OS error, by errno; the message itself names the path and the cause.
_OS_FIXES = {
    errno.ENOSPC: "free some disk space (or pass another folder) and run again",
    errno.EDQUOT: "free some space in your quota (or pass another folder) and run again",
    errno.EROFS: "pass a folder on a writable file system (--build-dir, --site-dir or -o)",
    errno.EACCES: "check the permissions of this path and its folder, or pass another folder",
    errno.EPERM: "check the permissions of this path and its folder, or pass another folder",
    errno.EISDIR: "this path is a folder: pass a file path",
    errno.ENOTDIR: "a part of this path is a file, not a folder: pass another path",
    errno.EEXIST: "a file stands where this path needs a folder: pass another path",
    errno.ENOENT: "check the path",
    errno.EBUSY: "the path is in use (a mount point, or open elsewhere): pass another folder",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and run again",
    errno.ENAMETOOLONG: "use a shorter path",
}


def os_problem(err: OSError, doing: str = "", path: object = None) -> Problem:
    """One line for an OS error: the path, what failed and why, and what to do.

    `path` overrides the error's own file name (an `os.write` that fails has none); without either,
    the message says so instead of pointing at a wrong file.
    """
    where = path if path is not None else err.filename
    cause = err.strerror or type(err).__name__
    if err.filename2 is not None and path is None:
        cause = f"{cause} (→ {err.filename2})"
    what = f"cannot {doing}: {cause}" if doing else cause
    fix = _OS_FIXES.get(err.errno or 0, "check the path and run again")
    return Problem(str(where) if where is not None else "sheetgen", 0, what, fix)


_NUMPY_SCALAR = re.compile(r"^np\.(?P<type>float|int|uint|complex|bool)_?\d*\((?P<value>[^()]*)\)$")
_KIND = {"float": "float", "int": "int", "uint": "int", "complex": "complex", "bool": "bool"}


def float_hint(source: str, want: str, got: str) -> str | None:
    """The fix for a doctest that printed a NumPy scalar's repr where a plain number was expected.

    Under NumPy 2, `>>> f(x)` returning a NumPy scalar prints `np.float64(0.0)`, not `0.0`. When that
    is the only difference, say to wrap the call: `>>> float(f(x))`. None when it is something else.
    """
    got = got.strip()
    match = _NUMPY_SCALAR.match(got)
    if got in ("np.True_", "np.False_"):
        kind, value = "bool", got[3:-1]
    elif match is not None:
        kind, value = _KIND[match["type"]], match["value"].strip()
    else:
        return None
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE  # as sheetgen runs the examples
    if not doctest.OutputChecker().check_output(want.strip() + "\n", value + "\n", flags):
        return None  # the number itself is wrong: wrapping would not help
    call = source.strip()
    example = f">>> {kind}({call})" if call and "\n" not in call else f">>> {kind}(…)"
    return (f"the value is right but it is a NumPy scalar, shown as {got}; "
            f"wrap the call: {example}")


class MessageError(SheetError):
    """A problem that is one message rather than located YAML problems: a failed site build (MkDocs'
    own words), an output that cannot be published, another build holding the lock."""

    def __init__(self, message: str) -> None:
        super().__init__([])
        self.message = message

    def __str__(self) -> str:
        return self.message
