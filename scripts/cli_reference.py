"""Print (or, with --write, put into README.md) the usage of every sheetgen command, from argparse itself.

    .venv/bin/python scripts/cli_reference.py [--write]

tests/test_cli.py fails while README.md's block differs from this output.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sheetgen.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli:start -->", "<!-- cli:end -->"


def reference() -> str:
    """One usage line per command (as `sheetgen COMMAND --help` prints it), then its one-line help."""
    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width; the README needs one width
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    blocks = []
    for command in commands.choices.values():
        usage = command.format_usage().replace("usage: ", "", 1).rstrip()
        summary = (command.description or "").strip().splitlines()[0]
        blocks.append(f"{usage}\n    {summary}")
    return "```text\n" + "\n".join(blocks) + "\n```\n"


def readme_block(readme: str) -> str:
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[start:end].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the block in README.md")
    args = parser.parse_args(argv)
    block = reference()
    if not args.write:
        print(block, end="")
        return 0
    readme = README.read_text(encoding="utf-8")
    start, end = readme.index(START) + len(START), readme.index(END)
    updated = f"{readme[:start]}\n{block}{readme[end:]}"
    README.write_text(updated, encoding="utf-8")
    print("README.md: " + ("updated" if updated != readme else "unchanged"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
