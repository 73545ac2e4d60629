"""Generate the README's troubleshooting table: each bad input of tests/bad_inputs.py and its message.

    .venv/bin/python scripts/troubleshooting.py           # print the table
    .venv/bin/python scripts/troubleshooting.py --write   # put it into README.md, between the markers

Every case runs through `sheetgen check` (in-process), exactly as a user would get it; the path is
shown as `formulas.yaml`. tests/test_troubleshooting.py fails while README.md differs from this output.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `sheetgen` and `tests` importable
    sys.path.insert(0, str(ROOT))

from sheetgen.cli import build_parser, main  # noqa: E402
from tests.bad_inputs import CASES, BadInput, shipped_text  # noqa: E402

README = ROOT / "README.md"
START = "<!-- troubleshooting:start -->"
END = "<!-- troubleshooting:end -->"
INTRO = (
    "What each mistake gets from `sheetgen check` (and `sheetgen build`), one row per case of\n"
    "[`tests/bad_inputs.py`](tests/bad_inputs.py). The table is generated: after changing a message,\n"
    "run `.venv/bin/python scripts/troubleshooting.py --write` (a test fails while it is stale; line numbers\n"
    "are those of the shipped `formulas.yaml` when the table was made)."
)


@functools.cache
def _check_options() -> set[str]:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return set(commands.choices["check"]._option_string_actions)  # type: ignore[index]


def message(case: BadInput, shipped: str, folder: Path) -> str:
    """The exact stderr of `sheetgen check` for `case`, with the file shown as `formulas.yaml`."""
    bad = folder / "formulas.yaml"
    bad.write_text(case.apply(shipped, folder / "executed"), encoding="utf-8")
    argv = ["check", "-f", str(bad)]
    if "--cache-dir" in _check_options():  # keep the repository's KaTeX cache out of it
        argv += ["--cache-dir", str(folder / "cache")]
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    if code != 1:
        raise SystemExit(f"{case.wrote}: `sheetgen check` exited {code}, not 1:\n{out.getvalue()}{err.getvalue()}")
    return err.getvalue().strip().replace(str(bad), "formulas.yaml")


def _code(text: str) -> str:
    """`text` as a Markdown code span inside a table cell."""
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def table() -> str:
    """The block that goes between the markers: intro line and table."""
    shipped = shipped_text()
    rows = ["| you wrote | you get |", "|---|---|"]
    with tempfile.TemporaryDirectory(prefix="sheetgen-troubleshooting-") as folder:
        for case in CASES:
            got = message(case, shipped, Path(folder))
            cell = "<br>".join(_code(line) for line in got.splitlines())
            rows.append(f"| {_cell(case.wrote)} | {_cell(cell)} |")
    return f"{INTRO}\n\n" + "\n".join(rows) + "\n"


def readme_block(readme: str) -> str:
    """What README.md has between the markers."""
    start, end = readme.index(START) + len(START), readme.index(END)
    return readme[start:end].strip("\n") + "\n"


def write(readme_path: Path, block: str) -> bool:
    readme = readme_path.read_text(encoding="utf-8")
    start, end = readme.index(START) + len(START), readme.index(END)
    updated = f"{readme[:start]}\n{block}{readme[end:]}"
    if updated == readme:
        return False
    readme_path.write_text(updated, encoding="utf-8")
    return True


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    args = parser.parse_args(argv)
    block = table()
    if args.write:
        print(f"README.md: {'updated' if write(README, block) else 'unchanged'}")
    else:
        print(block, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main_())
