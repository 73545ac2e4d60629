"""The PDF step of the pipeline: `build_pdf` renders through a cache keyed by everything the bytes
depend on, so an unchanged sheet is never rendered twice (`sheetgen pdf`, `sheetgen build` and the
MkDocs plugin share it). The whole build lives in `sheetgen.pipeline`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .katex import KatexRenderer
from .loader import load_sheet_text
from .model import Edition, Sheet
from .outputs import write_atomic

__all__ = ["PdfBuild", "build_pdf", "pdf_preview"]

PDF_CACHE_SIZE = 12  # PDFs kept: both editions, a few papers/tag sets, with and without SOURCE_DATE_EPOCH
Say = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class PdfBuild:
    pdf: bytes
    key: str
    """Hash of everything the bytes depend on (`pdf.make.build_key`)."""
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
    from .pdf.make import Footer, build_key, render_pdf, sheet_version, source_date

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
    smallest = sheet.sheet.print_settings.font_min_pt
    for formula_id in result.overhanging:  # a warning: the PDF is still made
        say(f"{sheet.where(formula_id, 'latex')} latex: wider than a column even at {smallest:g} pt, it "
            f"overhangs into the gap — cut it into statements with `, \\quad` or shorten it")
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
    from .pdf.make import preview_png

    png_file = _pdf_cache_file(cache_dir, build.key).with_suffix(f".{dpi}.png")
    if png_file.is_file():
        return png_file.read_bytes()
    png = preview_png(build.pdf, dpi=dpi)
    if png is not None:
        write_atomic(png_file, png)
    return png


def _pdf_cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / "pdf" / f"{key[:32]}.pdf"
