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


def _site_config(args: argparse.Namespace, folder: str) -> Path:
    """mkdocs.yml, or with `-f` a copy of it (in `folder`) whose sheetgen plugin reads that file."""
    from .sitebuild import derived_config

    if args.file is None:
        return Path(args.config)
    return derived_config(Path(args.config), Path(folder) / "mkdocs.yml",
                          sheetgen={"yaml": str(Path(args.file).resolve())})


def cmd_site(args: argparse.Namespace) -> int:
    """Build the site with `mkdocs build --strict` (swapped into place only if the build succeeds)."""
    import tempfile

    from .sitebuild import build_site

    site_dir = args.site_dir or Path(args.config).resolve().parent / "site"
    with tempfile.TemporaryDirectory(prefix="sheetgen-site-") as folder:
        built = build_site(_site_config(args, folder), site_dir, strict=True, verbose=args.verbose)
    generated = built.generated
    detail = (f": {len(generated.pages)} pages, {len(generated.notebook_pages)} notebooks "
              f"({generated.notebooks_executed} executed)" if generated else "")
    _say(f"{args.site_dir or 'site'}/: built in {built.seconds:.2f} s{detail}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Preview the site; saving formulas.yaml rebuilds the pages, notebooks and PDF."""
    import logging
    import os

    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    from mkdocs.commands.serve import serve

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)-7s -  %(message)s"))
    logging.getLogger("mkdocs").addHandler(handler)
    logging.getLogger("mkdocs").setLevel(logging.INFO)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sheetgen-serve-") as folder:
        serve(config_file=str(_site_config(args, folder)), dev_addr=args.dev_addr, livereload=True)
    return 0


def cmd_notebooks(args: argparse.Namespace) -> int:
    """Write one executed notebook per section (outputs cached by content hash)."""
    from .render.notebooks import dumps, execute_notebooks, render_notebooks

    sheet = load_sheet(args.file)
    notebooks = render_notebooks(sheet)
    executed = 0
    if args.execute:
        results = execute_notebooks(notebooks, args.cache, sheet=sheet)
        executed = sum(not r.cached for r in results.values())
        notebooks = {path: r.notebook for path, r in results.items()}
    for path, notebook in notebooks.items():
        write_atomic(args.output / Path(path).name, dumps(notebook))
    _say(f"{args.output}/: {len(notebooks)} notebooks, {executed} executed"
         + (f", {len(notebooks) - executed} from the cache" if args.execute else ", not executed"))
    return 0


def cmd_pdf(args: argparse.Namespace) -> int:
    """Build the one-page PDF (KaTeX math, fitted to one page); skipped when nothing changed."""
    import hashlib
    import json

    from .katex import KatexRenderer
    from .render.pdf import build_key, render_pdf

    started = time.perf_counter()
    # The stamp holds the key of everything the PDF depends on and the PDF's hash: when both
    # match, the build would write the same bytes, so it is skipped (no KaTeX, no WeasyPrint).
    stamp = args.output.with_name(f".{args.output.name}.stamp")
    key = build_key(args.file.read_text(encoding="utf-8") if args.file.is_file() else "", args.paper, args.tags)
    try:
        previous = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        previous = {}
    if previous.get("key") == key and args.output.is_file() \
            and hashlib.sha256(args.output.read_bytes()).hexdigest() == previous.get("pdf"):
        if args.preview and not args.preview.is_file():
            _write_preview(args.preview, args.output.read_bytes())
        _say(f"{args.output}: up to date ({time.perf_counter() - started:.2f} s)")
        return 0

    sheet = load_sheet(args.file)
    renderer = KatexRenderer(cache_path=args.cache_dir / "katex.json")
    result = render_pdf(sheet, renderer, paper=args.paper, tags=tuple(args.tags),
                        fit_cache_path=args.cache_dir / "pdf-fit.json",
                        math_cache_path=args.cache_dir / "pdf-math.json")
    timings = result.timings
    if renderer.stats:  # seconds: what KaTeX added, beyond what overlapped with other work
        _say(f"katex: {renderer.stats.unique} formulas ({renderer.stats.cached} cached) {timings['katex']:.2f} s")
    _say(f"math: {result.math_images} images ({result.math_new} new) {timings['math']:.2f} s")
    _say(f"fit: {result.font_size_pt:g} pt in {result.renders} render{'s' * (result.renders != 1)} "
         f"{timings['fit']:.2f} s")
    write_atomic(args.output, result.pdf)
    write_atomic(stamp, json.dumps({"key": key, "pdf": hashlib.sha256(result.pdf).hexdigest(),
                                    "font_size_pt": result.font_size_pt}))
    if args.preview:
        _write_preview(args.preview, result.pdf)
    _say(f"wrote {args.output} ({result.pages} page, {len(result.pdf) / 1024:.0f} KB, "
         f"{time.perf_counter() - started:.2f} s)")
    return 0


def _write_preview(path: Path, pdf: bytes) -> None:
    from .render.pdf import preview_png

    png = preview_png(pdf)
    if png is None:
        _say(f"{path}: skipped, pdftoppm is not installed (apt-get install poppler-utils)")
    else:
        write_atomic(path, png)
        _say(f"wrote {path} ({len(png) / 1024:.0f} KB)")


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


def _site_args(parser: argparse.ArgumentParser) -> None:
    _serve_args(parser, dev_addr=False)
    parser.add_argument("-d", "--site-dir", type=Path, default=None, help="where to build (default: site)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show MkDocs' progress lines")


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
    parser.add_argument("--cache", type=Path, default=Path("build/.cache/notebooks"),
                        help="executed notebooks by content hash (default: build/.cache/notebooks)")


_register("site", cmd_site, _site_args)
_register("serve", cmd_serve, _serve_args)
_register("notebooks", cmd_notebooks, _notebooks_args)


def _pdf_args(parser: argparse.ArgumentParser) -> None:
    _output_arg("build/cheatsheet.pdf")(parser)
    parser.add_argument("--paper", choices=("a4", "letter"), help="override the paper set in the YAML")
    parser.add_argument("--tags", nargs="+", default=[], metavar="TAG",
                        help="print only entries having any of these tags")
    parser.add_argument("--preview", type=Path, metavar="PNG", help="also write a small PNG of the page")
    parser.add_argument("--cache-dir", type=Path, default=Path("build/.cache"),
                        help="KaTeX, formula-image and fit caches (default: build/.cache)")


_register("pdf", cmd_pdf, _pdf_args)


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
