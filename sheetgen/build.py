"""Build every output together: all of it is made and checked first, then moved into place.

`build_all` is what `make` (via `sheetgen build`) runs. The order is chosen so that the cheap checks
fail first: load → doctests → KaTeX → one-page fit → notebooks → `mkdocs build --strict` into a
staging folder. Only when all of that passed are the module, the PDF, the notebooks, the preview and
the site moved into place (`os.replace` per file, a rename swap for the site folder). A failure or a
kill at any stage leaves every previous output as it was.

`build_pdf` is shared by `sheetgen pdf`, `build_all` and the MkDocs plugin: PDFs are cached by a key
of everything their bytes depend on, so an unchanged sheet is never rendered twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .doctests import import_module, run_doctests
from .katex import KatexRenderer
from .loader import load_sheet_text, read_source
from .model import Edition, Sheet
from .outputs import write_atomic
from .render.code import render_module

__all__ = ["BuildReport", "PdfBuild", "build_all", "build_pdf", "pdf_preview"]

PDF_CACHE_SIZE = 12  # PDFs kept: both editions, a few papers/tag sets, with and without SOURCE_DATE_EPOCH
Say = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class PdfBuild:
    pdf: bytes
    key: str
    """Hash of everything the bytes depend on (`render.pdf.build_key`)."""
    cached: bool
    font_size_pt: float | None = None
    renders: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    edition: str = "core"
    pages: int | None = None
    """Pages of a fresh render (None from the cache)."""


def build_pdf(yaml_text: str, source_path: str, *, renderer: KatexRenderer, cache_dir: Path,
              paper: str | None = None, tags: Sequence[str] = (), sheet: Sheet | None = None,
              edition: Edition = "core", say: Say = _quiet) -> PdfBuild:
    """The `edition` PDF of `yaml_text` (core: one page; full: at most two), from the cache when
    nothing it depends on changed."""
    from .render.pdf import Footer, build_key, render_pdf, sheet_version, source_date

    version = sheet_version(Path(source_path).resolve().parent)
    key = build_key(yaml_text, paper, tags, edition, version)
    cached = _pdf_cache_file(cache_dir, key)
    if cached.is_file():
        os.utime(cached)  # a hit counts as a use: the cache evicts the least recently used
        return PdfBuild(cached.read_bytes(), key, cached=True, edition=edition)
    sheet = sheet or load_sheet_text(yaml_text, source_path)
    footer = Footer(url=sheet.sheet.url, version=version, date=source_date())
    result = render_pdf(sheet, renderer, paper=paper, tags=tuple(tags), edition=edition, footer=footer,
                        fit_cache_path=cache_dir / "pdf-fit.json", math_cache_path=cache_dir / "pdf-math.json")
    timings = result.timings
    if renderer.stats:
        say(f"katex: {renderer.stats.unique} formulas ({renderer.stats.cached} cached) {timings['katex']:.2f} s")
    say(f"math: {result.math_images} images ({result.math_new} new) {timings['math']:.2f} s")
    say(f"fit{'' if edition == 'core' else f' ({edition})'}: {result.font_size_pt:g} pt, {result.columns} columns, "
        f"{result.pages} page{'s' * (result.pages != 1)} in {result.renders} render{'s' * (result.renders != 1)} "
        f"{timings['fit']:.2f} s")
    write_atomic(cached, result.pdf)
    # The most recently used few stay, so the cache cannot grow without bound as the sheet is edited.
    for old in sorted(cached.parent.glob("*.pdf"), key=lambda f: f.stat().st_mtime, reverse=True)[PDF_CACHE_SIZE:]:
        old.unlink(missing_ok=True)
        for png in old.parent.glob(f"{old.stem}.*.png"):
            png.unlink(missing_ok=True)
    return PdfBuild(result.pdf, key, cached=False, font_size_pt=result.font_size_pt, renders=result.renders,
                    timings=dict(timings), edition=edition, pages=result.pages)


def pdf_preview(build: PdfBuild, cache_dir: Path, dpi: int = 60) -> bytes | None:
    """A PNG of the page (cached next to the PDF), or None where pdftoppm is not installed."""
    from .render.pdf import preview_png

    png_file = _pdf_cache_file(cache_dir, build.key).with_suffix(f".{dpi}.png")
    if png_file.is_file():
        return png_file.read_bytes()
    png = preview_png(build.pdf, dpi=dpi)
    if png is not None:
        write_atomic(png_file, png)
    return png


def _pdf_cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / "pdf" / f"{key[:32]}.pdf"


@dataclass(frozen=True)
class BuildReport:
    entries: int
    formulas: int
    doctests: int
    pdf_cached: bool
    notebooks: int
    notebooks_executed: int
    site_seconds: float | None
    written: tuple[str, ...]
    """Outputs whose bytes changed."""
    seconds: float


def build_all(yaml_path: Path, *, build_dir: Path = Path("build"), site_dir: Path | None = Path("site"),
              config_file: Path = Path("mkdocs.yml"), preview_path: Path | None = None,
              paper: str | None = None, tags: Sequence[str] = (), say: Say = _quiet) -> BuildReport:
    """Make and check every output, then move them all into place. `site_dir=None` skips the site.

    Raises `SheetError` (nothing was moved) on any problem.
    """
    from .render import site as site_pages
    from .render.notebooks import dumps, execute_notebooks, render_notebooks

    started = time.perf_counter()
    cache_dir = build_dir / ".cache"
    text = read_source(yaml_path)
    sheet = load_sheet_text(text, str(yaml_path))

    module = render_module(sheet)
    report = run_doctests(sheet, import_module(module))
    say(f"check: {report.formulas} formulas, {report.examples} doctests passed")

    renderer = KatexRenderer(cache_dir / "katex.json")
    renderer.render(site_pages.math_requests(sheet))  # every formula typesets, before anything slow
    pdf = build_pdf(text, str(yaml_path), renderer=renderer, cache_dir=cache_dir, paper=paper, tags=tags,
                    sheet=sheet, say=say)
    say(f"pdf: {'unchanged, from the cache' if pdf.cached else f'fitted at {pdf.font_size_pt:g} pt'}")
    preview = pdf_preview(pdf, cache_dir) if preview_path else None

    results = execute_notebooks(render_notebooks(sheet), cache_dir / "notebooks", sheet=sheet)
    notebooks = {Path(path).name: dumps(result.notebook) for path, result in results.items()}
    executed = sum(not result.cached for result in results.values())
    say(f"notebooks: {len(notebooks)} ({executed} executed)")

    staged_site: Path | None = None
    site_seconds: float | None = None
    if site_dir is not None:
        from .sitebuild import derived_config, stage_site

        with tempfile.TemporaryDirectory(prefix="sheetgen-build-") as folder:
            config = derived_config(config_file, Path(folder) / "mkdocs.yml",
                                    sheetgen={"yaml": str(yaml_path.resolve()), "build_dir": str(build_dir.resolve())})
            staged_site, built = stage_site(config, site_dir)
        site_seconds = built.seconds
        say(f"site: built in {built.seconds:.2f} s (staged)")

    # Everything passed: move the outputs into place.
    written: list[str] = []
    outputs: dict[Path, str | bytes] = {build_dir / "formulas.py": module, build_dir / "cheatsheet.pdf": pdf.pdf}
    outputs.update({build_dir / "notebooks" / name: text for name, text in notebooks.items()})
    if preview_path is not None and preview is not None:
        outputs[preview_path] = preview
    for path, content in outputs.items():
        if write_atomic(path, content):
            written.append(str(path))
    for stale in sorted((build_dir / "notebooks").glob("*.ipynb")):
        if stale.name not in notebooks:  # a section that no longer exists (or lost its formulas)
            stale.unlink()
            written.append(f"{stale} (removed)")
    if staged_site is not None and site_dir is not None:
        from .sitebuild import swap_into_place

        if _tree_digest(staged_site) == _tree_digest(site_dir):
            shutil.rmtree(staged_site, ignore_errors=True)
        else:
            swap_into_place(staged_site, site_dir)
            written.append(f"{site_dir}/")
    return BuildReport(entries=sum(1 for _ in sheet.entries()), formulas=report.formulas,
                       doctests=report.examples, pdf_cached=pdf.cached, notebooks=len(notebooks),
                       notebooks_executed=executed, site_seconds=site_seconds, written=tuple(written),
                       seconds=time.perf_counter() - started)


def _tree_digest(folder: Path) -> str:
    """Hash of every file's path and bytes: an unchanged site is not swapped (its mtimes stay)."""
    if not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
