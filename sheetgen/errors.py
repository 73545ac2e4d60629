"""The one error type users see: `file:line:col [entry id] field: problem — how to fix`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
        where = f"{self.path}:{self.line}" + (f":{self.column}" if self.column else "")
        who = f" [{_printable(self.entry_id)}]" if self.entry_id else ""
        what = f" {_printable(self.field)}:" if self.field else ""
        fix = f" — {self.fix}" if self.fix else ""
        return f"{where}{who}{what} {self.problem}{fix}"


def _printable(name: str) -> str:
    """Names come from the user's file: keep each message on one line, whatever they contain."""
    return name if name.isprintable() and "]" not in name else repr(name)


class SheetError(Exception):
    """Raised for anything wrong with the user's input; the CLI prints it and exits 1."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.path, p.line, p.column or 0)))
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def single(cls, path: str, line: int, problem: str, fix: str = "", **where: object) -> SheetError:
        return cls([Problem(path, line, problem, fix, **where)])  # type: ignore[arg-type]
