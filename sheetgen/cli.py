"""`sheetgen` command line: thin argument parsing over the library; the only place that exits."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .errors import SheetError
from .loader import load_sheet
from .outputs import write_atomic

DEFAULT_YAML = Path("formulas.yaml")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate formulas.yaml and run every formula's doctests."""
    from .doctests import run_doctests

    started = time.perf_counter()
    sheet = load_sheet(args.file)
    report = run_doctests(sheet)
    entries = sum(1 for _ in sheet.entries())
    print(f"{args.file}: ok — {entries} entries in {len(sheet.sections)} sections, "
          f"{report.formulas} formulas, {report.examples} doctests passed "
          f"({time.perf_counter() - started:.2f} s)")
    return 0


def cmd_code(args: argparse.Namespace) -> int:
    """Write the NumPy module (after its doctests pass)."""
    from .doctests import import_module, run_doctests
    from .render.code import render_module

    sheet = load_sheet(args.file)
    source = render_module(sheet)
    report = run_doctests(sheet, import_module(source))
    changed = write_atomic(args.output, source)
    _say(f"{args.output}: {report.formulas} functions, {report.examples} doctests passed"
         + ("" if changed else " (unchanged)"))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the JSON Schema of formulas.yaml."""
    from .schema import json_schema

    changed = write_atomic(args.output, json_schema())
    _say(f"{args.output}: written" if changed else f"{args.output}: unchanged")
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], Callable[[argparse.ArgumentParser], None]]] = {}


def _register(name: str, handler: Callable[[argparse.Namespace], int],
              add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    COMMANDS[name] = (handler, add_arguments)


def _file_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", type=Path, default=DEFAULT_YAML,
                        help="the sheet source (default: formulas.yaml)")


def _output_arg(default: str) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        _file_arg(parser)
        parser.add_argument("-o", "--output", type=Path, default=Path(default),
                            help=f"where to write (default: {default})")
    return add


_register("check", cmd_check, _file_arg)
_register("code", cmd_code, _output_arg("build/formulas.py"))


def _schema_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/formulas.schema.json"),
                        help="where to write (default: docs/formulas.schema.json)")


_register("schema", cmd_schema, _schema_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sheetgen",
        description="Build the ML cheat sheet (PDF, site, NumPy module, notebooks) from formulas.yaml.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, add_arguments) in COMMANDS.items():
        command = sub.add_parser(name, help=(handler.__doc__ or "").strip().splitlines()[0],
                                 description=(handler.__doc__ or "").strip())
        add_arguments(command)
        command.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 bad input, 2 bad usage)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SheetError as err:
        _say(str(err))
        return 1
    except KeyboardInterrupt:
        _say("interrupted; outputs were left as they were")
        return 130
