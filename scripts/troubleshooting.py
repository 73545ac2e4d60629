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
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `sheetgen` and `tests` importable
    sys.path.insert(0, str(ROOT))

from sheetgen.cli import build_parser, main  # noqa: E402
from tests.bad_inputs import CASES, BadInput, arranged, shipped_text  # noqa: E402

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


def message(case: BadInput, shipped: str, folder: Path, top: Path) -> str:
    """The exact stderr of `sheetgen check` (of `serve` for a taken port) for `case` in `folder`, with the
    file shown as `formulas.yaml` and the cache (shared by all cases, in `top`) as `build/.cache`."""
    cache = top / "build" / ".cache"
    with arranged(case, folder, shipped, cache, folder / "executed") as bad:
        argv = [bad.command or "check", "-f", str(bad.path), *bad.extra]
        if bad.command == "serve":
            argv += ["-c", str(ROOT / "mkdocs.yml")]
        elif "--cache-dir" in _check_options():  # keep the repository's KaTeX cache out of it
            argv += ["--cache-dir", str(cache)]
        err, out = io.StringIO(), io.StringIO()
        environ = dict(os.environ)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = main(argv)
        finally:  # `serve -f` tells its plugin the file through the environment
            os.environ.clear()
            os.environ.update(environ)
    if code != 1:
        raise SystemExit(f"{case.wrote}: `sheetgen {argv[0]}` exited {code}, not 1:\n{out.getvalue()}{err.getvalue()}")
    got = err.getvalue().strip().replace(str(bad.path), "formulas.yaml").replace(f"{top}/", "")
    if case.needle not in got:  # the row no longer shows its mistake: something else failed first
        print(f"warning: {case.wrote}: the message lacks {case.needle!r}: {got[:200]}", file=sys.stderr)
    return got


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
    with tempfile.TemporaryDirectory(prefix="sheetgen-troubleshooting-") as top:
        for number, case in enumerate(CASES):
            folder = Path(top) / str(number)  # a folder per case: some make the file a folder or a FIFO
            folder.mkdir()
            got = message(case, shipped, folder, Path(top))
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
