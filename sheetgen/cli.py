"""`sheetgen` command line: thin argument parsing over the library; the only place that exits."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SheetError, os_problem
from .loader import check_input_file
from .outputs import source_date_epoch, write_atomic
from .publish import BuildLock

if TYPE_CHECKING:
    from .katex import KatexRenderer
    from .model import Sheet
    from .verify import Verified

DEFAULT_YAML = Path("formulas.yaml")


def _say(message: str) -> None:
    """Progress goes to stdout, so that stderr holds exactly the problems (one line each)."""
    print(message, flush=True)


def _complain(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate formulas.yaml, typeset all its math, run every doctest and check every printed formula."""
    from .katex import KatexRenderer
    from .loader import load_sheet_text, read_source
    from .verify import verify

    started = time.perf_counter()
    text = read_source(args.file)
    sheet = load_sheet_text(text, str(args.file))
    # The same check every publishing command runs, in the same order (math first, so malformed TeX is
    # reported by KaTeX); never from the cache here: `check` is asked to check.
    report = verify(sheet, text, renderer=KatexRenderer(cache_path=args.cache_dir / "katex.json"), cache_dir=None)
    entries = sum(1 for _ in sheet.entries())
    print(f"{args.file}: ok — {entries} entries in {len(sheet.sections)} sections, "
          f"{report.formulas} formulas, {report.doctests} doctests passed, "
          f"{report.math} math expressions typeset ({time.perf_counter() - started:.2f} s)")
    print(f"printed formulas checked: {report.printed_checked}/{report.printed_total}")
    for ident, reason in report.printed_skipped:
        print(f"  skipped {ident}: {reason}")
    return 0


def _verified(path: Path, cache_dir: Path) -> tuple[Sheet, str, KatexRenderer, Verified]:
    """Load and run the whole check (cached by content): every command that writes an output calls this."""
    from .katex import KatexRenderer
    from .loader import load_sheet_text, read_source
    from .verify import verify

    text = read_source(path)
    sheet = load_sheet_text(text, str(path))
    renderer = KatexRenderer(cache_path=cache_dir / "katex.json")
    return sheet, text, renderer, verify(sheet, text, renderer=renderer, cache_dir=cache_dir, say=_say)


def cmd_code(args: argparse.Namespace) -> int:
    """Write the NumPy module, after the whole check passed (doctests, printed formulas, math)."""
    from .render.code import render_module

    with BuildLock(args.cache_dir.parent, wait=args.wait):
        sheet, _, _, verified = _verified(args.file, args.cache_dir)
        source = render_module(sheet)
        changed = write_atomic(args.output, source)
    _say(f"{args.output}: {verified.formulas} functions, {verified.doctests} doctests passed"
         + ("" if changed else " (unchanged)"))
    return 0


def cmd_anki(args: argparse.Namespace) -> int:
    """Write the Anki deck (.apkg: formulas, rapid-fire questions, facts), after the whole check passed."""
    from .render.anki import note_count, render_deck

    with BuildLock(args.cache_dir.parent, wait=args.wait):
        sheet, _, _, _ = _verified(args.file, args.cache_dir)
        deck = render_deck(sheet, timestamp=source_date_epoch())
        changed = write_atomic(args.output, deck)
    _say(f"{args.output}: {note_count(sheet)} notes ({len(deck) / 1024:.0f} KB)"
         + ("" if changed else " (unchanged)"))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the JSON Schema of formulas.yaml."""
    from .schema import json_schema

    changed = write_atomic(args.output, json_schema())
    _say(f"{args.output}: written" if changed else f"{args.output}: unchanged")
    return 0


def cmd_site(args: argparse.Namespace) -> int:
    """Build the site with `mkdocs build --strict`, after the whole check; published only on success."""
    from .sitebuild import build_site

    site_dir = args.site_dir or Path(args.config).resolve().parent / "site"
    built = build_site(Path(args.config), site_dir, strict=True, verbose=args.verbose, yaml_path=args.file,
                       wait=args.wait)
    generated = built.generated
    detail = (f": {len(generated.pages)} pages, {len(generated.notebook_pages)} notebooks "
              f"({generated.notebooks_executed} executed)" if generated else "")
    _say(f"{args.site_dir or 'site'}/: built in {built.seconds:.2f} s{detail}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Preview the site; saving formulas.yaml rebuilds it, and a problem is shown in the browser."""
    import logging
    import os

    from .mkdocs_plugin import ENV_YAML

    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    from mkdocs.commands.serve import serve

    if args.file is not None:
        os.environ[ENV_YAML] = str(Path(args.file).resolve())
    _check_port(args.dev_addr)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-7s -  %(message)s"))
    logging.getLogger("mkdocs").addHandler(handler)
    logging.getLogger("mkdocs").setLevel(logging.INFO)
    # mkdocs-jupyter reports every notebook conversion and cache hit; keep its warnings only.
    for chatty in ("mkdocs.plugins.mkdocs_jupyter", "mkdocs.mkdocs-jupyter"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    serve(config_file=str(args.config), dev_addr=args.dev_addr, livereload=True)
    return 0


def _check_port(dev_addr: str) -> None:
    """A clear message instead of MkDocs' traceback when the port is taken."""
    import errno
    import socket

    host, _, port = dev_addr.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SheetError.single("--dev-addr", 0, f"{dev_addr!r} is not HOST:PORT (a port is 1 to 65535)",
                                "e.g. 127.0.0.1:8000")
    with socket.socket() as probe:
        # As MkDocs' server binds (SO_REUSEADDR): connections of a server stopped a moment ago, still
        # in TIME_WAIT, do not make the port look taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host or "127.0.0.1", int(port)))
        except OSError as err:
            taken = err.errno == errno.EADDRINUSE
            raise SheetError.single(
                "--dev-addr", 0, f"cannot serve on {dev_addr}: {err.strerror or err}",
                "another program uses that port: stop it, or pick another one (PORT=8001 make serve, "
                "or sheetgen serve -a 127.0.0.1:8001)" if taken
                else "check the address: -a HOST:PORT, e.g. 127.0.0.1:8000") from None


def cmd_notebooks(args: argparse.Namespace) -> int:
    """Write one executed notebook per section, after the whole check (outputs cached by content hash)."""
    from .notebook_run import execute_notebooks
    from .render.notebooks import dumps, render_notebooks

    with BuildLock(args.cache_dir.parent, wait=args.wait):
        sheet, _, _, _ = _verified(args.file, args.cache_dir)
        notebooks = render_notebooks(sheet)
        executed = 0
        if args.execute:
            results = execute_notebooks(notebooks, args.cache_dir / "notebooks", sheet=sheet)
            executed = sum(not r.cached for r in results.values())
            notebooks = {path: r.notebook for path, r in results.items()}
        for path, notebook in notebooks.items():
            write_atomic(args.output / Path(path).name, dumps(notebook))
    _say(f"{args.output}/: {len(notebooks)} notebooks, {executed} executed"
         + (f", {len(notebooks) - executed} from the cache" if args.execute else ", not executed"))
    return 0


def cmd_pdf(args: argparse.Namespace) -> int:
    """Build a PDF (KaTeX math, fitted: the core edition to one page, the full one to two), after the
    whole check passed."""
    from .build import build_pdf, pdf_preview

    started = time.perf_counter()
    with BuildLock(args.cache_dir.parent, wait=args.wait):
        sheet, text, renderer, _ = _verified(args.file, args.cache_dir)
        built = build_pdf(text, str(args.file), renderer=renderer, cache_dir=args.cache_dir, paper=args.paper,
                          tags=args.tags, sheet=sheet, edition=args.edition, say=_say)
        changed = write_atomic(args.output, built.pdf)
        if args.preview:
            png = pdf_preview(built, args.cache_dir)
            if png is None:
                _say(f"{args.preview}: skipped, pdftoppm is not installed (apt-get install poppler-utils)")
            elif write_atomic(args.preview, png):
                _say(f"wrote {args.preview} ({len(png) / 1024:.0f} KB)")
    seconds = time.perf_counter() - started
    if changed:
        pages = "" if built.pages is None else f"{built.pages} page{'s' * (built.pages != 1)}, "
        _say(f"wrote {args.output} ({pages}{len(built.pdf) / 1024:.0f} KB, {seconds:.2f} s)")
    else:
        _say(f"{args.output}: up to date ({seconds:.2f} s)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Check everything, build module, PDF, notebooks and site, then publish them as one set."""
    from .pipeline import build_all

    report = build_all(args.file, build_dir=args.build_dir, site_dir=None if args.no_site else args.site_dir,
                       config_file=args.config, preview_path=args.preview, paper=args.paper, tags=args.tags,
                       wait=args.wait, say=_say)
    changed = ", ".join(report.written) if report.written else "nothing changed"
    _say(f"built in {report.seconds:.2f} s: {report.entries} entries, {report.formulas} formulas, "
         f"{report.doctests} doctests, printed formulas checked: {report.verified.printed_checked}/"
         f"{report.verified.printed_total}; {changed}")
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


def _check_args(parser: argparse.ArgumentParser) -> None:
    _file_arg(parser)
    parser.add_argument("--cache-dir", type=Path, default=Path("build/.cache"),
                        help="KaTeX cache (default: build/.cache)")


_register("check", cmd_check, _check_args)
def _wait_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true",
                        help="if another sheetgen build holds the build folder, wait for it instead of stopping")


def _code_args(parser: argparse.ArgumentParser) -> None:
    _output_arg("build/formulas.py")(parser)
    parser.add_argument("--cache-dir", type=Path, default=Path("build/.cache"),
                        help="where the passed check is remembered (default: build/.cache)")
    _wait_arg(parser)


_register("code", cmd_code, _code_args)


def _anki_args(parser: argparse.ArgumentParser) -> None:
    _output_arg("build/cheatsheet.apkg")(parser)
    parser.add_argument("--cache-dir", type=Path, default=Path("build/.cache"),
                        help="where the passed check is remembered (default: build/.cache)")
    _wait_arg(parser)


_register("anki", cmd_anki, _anki_args)


def _schema_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("docs/formulas.schema.json"),
                        help="where to write (default: docs/formulas.schema.json)")


_register("schema", cmd_schema, _schema_args)


def _site_args(parser: argparse.ArgumentParser) -> None:
    _serve_args(parser, dev_addr=False)
    parser.add_argument("-d", "--site-dir", type=Path, default=None, help="where to build (default: site)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show MkDocs' progress lines")
    _wait_arg(parser)


def _serve_args(parser: argparse.ArgumentParser, dev_addr: bool = True) -> None:
    parser.add_argument("-f", "--file", type=Path, default=None,
                        help="the sheet source (default: the `yaml` option of the sheetgen plugin in mkdocs.yml)")
    parser.add_argument("-c", "--config", type=Path, default=Path("mkdocs.yml"),
                        help="the MkDocs configuration (default: mkdocs.yml)")
    if dev_addr:
        parser.add_argument("-a", "--dev-addr", default="127.0.0.1:8000",
                            help="address to serve on (default: 127.0.0.1:8000)")


def _notebooks_args(parser: argparse.ArgumentParser) -> None:
    _output_arg("build/notebooks")(parser)
    parser.add_argument("--no-execute", dest="execute", action="store_false",
                        help="write the notebooks without running them")
    parser.add_argument("--cache-dir", type=Path, default=Path("build/.cache"),
                        help="executed notebooks by content hash, the passed check (default: build/.cache)")
    _wait_arg(parser)


_register("site", cmd_site, _site_args)
_register("serve", cmd_serve, _serve_args)
_register("notebooks", cmd_notebooks, _notebooks_args)


def _pdf_args(parser: argparse.ArgumentParser) -> None:
    _output_arg("build/cheatsheet.pdf")(parser)
    parser.add_argument("--paper", choices=("a4", "letter"), help="override the paper set in the YAML")
    parser.add_argument("--edition", choices=("core", "full"), default="core",
                        help="core: the one-page sheet (entries with `print: core`, the default); full: every "
                             "printed entry on at most two pages (default: core)")
    parser.add_argument("--tags", nargs="+", default=[], metavar="TAG",
                        help="print only entries having any of these tags")
    parser.add_argument("--preview", type=Path, metavar="PNG", help="also write a small PNG of the page")
    parser.add_argument("--cache-dir", type=Path, default=Path("build/.cache"),
                        help="KaTeX, formula-image and fit caches (default: build/.cache)")
    _wait_arg(parser)


_register("pdf", cmd_pdf, _pdf_args)


def _build_args(parser: argparse.ArgumentParser) -> None:
    _file_arg(parser)
    parser.add_argument("--build-dir", type=Path, default=Path("build"),
                        help="module, PDF, notebooks and caches (default: build)")
    parser.add_argument("--site-dir", type=Path, default=Path("site"), help="the site (default: site)")
    parser.add_argument("--no-site", action="store_true", help="skip the site")
    parser.add_argument("-c", "--config", type=Path, default=Path("mkdocs.yml"),
                        help="the MkDocs configuration (default: mkdocs.yml)")
    parser.add_argument("--paper", choices=("a4", "letter"), help="override the paper set in the YAML")
    parser.add_argument("--tags", nargs="+", default=[], metavar="TAG",
                        help="print only entries having any of these tags")
    parser.add_argument("--preview", type=Path, metavar="PNG", help="also write a small PNG of the PDF page")
    _wait_arg(parser)


_register("build", cmd_build, _build_args)


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
    """Entry point; returns the exit code (0 ok, 1 failed, 2 bad usage, 130 interrupted).

    Every failure is reported in one line per problem, never a traceback: problems in the input
    at their YAML line, file errors (unreadable input, read-only or full output folder) with the
    path and the cause. Anything else is a bug in sheetgen: one line says so. SHEETGEN_DEBUG=1
    shows the traceback of both.
    """
    import os

    args = build_parser().parse_args(argv)
    try:
        config = getattr(args, "config", None)
        if config is not None and os.path.lexists(config):  # a missing one: MkDocs names it itself
            check_input_file(Path(config), "-c", "mkdocs.yml")  # read by MkDocs: no FIFO or folder reaches it
        return int(args.handler(args))
    except SheetError as err:
        _complain(str(err))
        return 1
    except OSError as err:
        if os.environ.get("SHEETGEN_DEBUG"):
            raise
        _complain(str(os_problem(err)))
        return 1
    except KeyboardInterrupt:
        _complain("interrupted; outputs were left as they were")
        return 130
    except Exception as err:  # the last resort: one line instead of a traceback
        if os.environ.get("SHEETGEN_DEBUG"):
            raise
        _complain(internal_error(err))
        return 1


def internal_error(err: BaseException) -> str:
    """The one line for an exception sheetgen did not expect: a bug, named as such."""
    detail = " ".join(str(err).split())
    detail = f"{type(err).__name__}: {detail[:300]}" if detail else type(err).__name__
    return (f"sheetgen: internal error ({detail}) — this is a bug in sheetgen, not in your file; "
            "run again with SHEETGEN_DEBUG=1 for the traceback and report it")
