"""One pipeline: a `Sheet` → every output, in memory, once per build.

    formulas.yaml ─ loader ─► Sheet ─ verify ─► build_outputs ─► Outputs ─ publish ─► build/, site/
                                                  ├─ render.code       → build/formulas.py
                                                  ├─ build.build_pdf   → build/cheatsheet.pdf (cached)
                                                  ├─ render.notebooks  → build/notebooks/*.ipynb (run by notebook_run)
                                                  ├─ render.anki       → build/cheatsheet.apkg
                                                  ├─ figures           → the site's assets/figures/*.svg (cached)
                                                  └─ render.site       → the site's pages and downloads

`build_all` (what `sheetgen build` and `make` run) verifies, builds the outputs, runs MkDocs once with
those outputs handed to the plugin (which then computes nothing), and publishes the whole set under
the build lock (`sheetgen.publish`). Under plain `mkdocs build`/`serve` the plugin calls
`build_outputs` itself. Nothing here writes an output except through a `Publication`.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build import PdfBuild, build_pdf, pdf_preview
from .errors import Problem, SheetError
from .figures import figure_entries, render_figures
from .katex import KatexRenderer, katex_dist_dir
from .loader import load_sheet_text, read_source
from .model import EDITIONS, Sheet
from .notebook_run import execute_notebooks
from .outputs import source_date_epoch, write_atomic
from .publish import BuildLock, Publication, owned_temp_dir, recover
from .render import site as site_pages
from .render.anki import render_deck
from .render.code import render_module
from .render.notebooks import dumps, notebook_path, render_notebooks
from .render.pdf_html import all_pdf_math_requests
from .verify import Verified, verify

__all__ = ["BuildReport", "Generated", "Outputs", "SiteOptions", "build_all", "build_outputs"]

Say = Callable[[str], None]

PDF_PATH = "downloads/cheatsheet.pdf"
PDF_PATHS = {"core": PDF_PATH, "full": "downloads/cheatsheet-full.pdf"}
MODULE_PATH = "downloads/formulas.py"
DECK_PATH = "downloads/cheatsheet.apkg"
FIGURES_DIR = "assets/figures"
"""Each figure is `assets/figures/<entry id>.svg` on the site."""
NOTEBOOK_ZIP_PATH = "downloads/notebooks.zip"
PREVIEW_PATH = "assets/sheet-preview.png"
KATEX_CSS_PATH = "assets/katex/katex.min.css"
PREVIEW_DPI = 60
NOTEBOOK_SOURCE_DIR = Path(".cache") / "site"
"""Where, under the build dir, the site's notebook pages are rendered from (mkdocs-jupyter reads files)."""


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class SiteOptions:
    """What the site offers; the MkDocs plugin's options of the same names."""

    pdf: bool = True
    notebooks: bool = True
    execute: bool = True
    timeout: int = 120


@dataclass
class Generated:
    """The site's share of one build, by docs-relative path."""

    pages: dict[str, str] = field(default_factory=dict)
    """Markdown pages."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Static files made in memory (downloads, preview)."""
    linked: dict[str, Path] = field(default_factory=dict)
    """Files served as they are on disk: executed notebooks (rendered by mkdocs-jupyter), KaTeX assets."""
    notebook_pages: dict[str, str] = field(default_factory=dict)
    """Notebook page path → its raw download path."""
    math: site_pages.MathHtml = field(default_factory=dict)
    nav: list[Any] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notebooks_executed: int = 0
    """Notebooks run by a kernel in this build (0 when every one came from the cache)."""
    katex_node_runs: int = 0
    """KaTeX processes started in this build (0 when every formula came from the cache)."""


@dataclass(frozen=True)
class SlowOutputs:
    """The expensive outputs (PDFs, executed notebooks). Under `serve` they are made in the background
    while the pages are rebuilt with the previous ones."""

    pdfs: dict[str, PdfBuild]
    """Edition (`core`, `full`) → its PDF."""
    preview: bytes | None
    notebooks: dict[str, str]
    """Docs-relative path (e.g. `notebooks/math.ipynb`) → executed notebook JSON."""
    executed: int
    """Notebooks run by a kernel (0 when every one came from the cache)."""
    figures: dict[str, str] = field(default_factory=dict)
    """Entry id → its figure's SVG (drawn by the module's functions, see `sheetgen.figures`)."""


@dataclass(frozen=True)
class Outputs:
    """Everything one build makes, in memory."""

    sheet: Sheet
    verified: Verified
    module: str
    slow: SlowOutputs
    site: Generated

    @property
    def deck(self) -> bytes:
        """The Anki deck (made with the pages: it is a pure function of the sheet, ~15 ms)."""
        return self.site.files[DECK_PATH]

    @property
    def pdf(self) -> PdfBuild | None:
        return self.slow.pdfs.get("core")

    @property
    def notebooks(self) -> dict[str, str]:
        """File name (e.g. `math.ipynb`) → executed notebook JSON."""
        return {Path(path).name: text for path, text in self.slow.notebooks.items()}


def build_outputs(sheet: Sheet, yaml_text: str, *, build_dir: Path, renderer: KatexRenderer,
                  options: SiteOptions = SiteOptions(), paper: str | None = None, tags: Sequence[str] = (),
                  say: Say = _quiet) -> Outputs:
    """Verify the sheet, then make every output once. Raises `SheetError` before making anything
    when the check fails. Caches live under `build_dir/.cache`; outputs are returned, not written."""
    started = time.perf_counter()
    module = render_module(sheet)
    # All the math of the pages and of every PDF in one KaTeX batch: one node process per build.
    try:
        renderer.render([*site_pages.math_requests(sheet), *(all_pdf_math_requests(sheet) if options.pdf else [])])
    except SheetError as err:  # the same TeX may be asked for in several forms: say each problem once
        raise SheetError(_first_per_place(err.problems)) from None
    verified = verify(sheet, yaml_text, renderer=renderer, cache_dir=build_dir / ".cache", module_source=module,
                      say=say)
    checked = time.perf_counter() - started
    slow = build_slow(sheet, yaml_text, build_dir=build_dir, renderer=renderer, options=options, paper=paper,
                      tags=tags, say=say, module=module)
    site = build_pages(sheet, module, slow, build_dir=build_dir, renderer=renderer, options=options)
    site.timings = {"check": checked, **site.timings}
    return Outputs(sheet=sheet, verified=verified, module=module, slow=slow, site=site)


def build_slow(sheet: Sheet, yaml_text: str, *, build_dir: Path, renderer: KatexRenderer,
               options: SiteOptions = SiteOptions(), paper: str | None = None, tags: Sequence[str] = (),
               say: Say = _quiet, module: str | None = None) -> SlowOutputs:
    """The PDFs (both editions), the executed notebooks and the figures, through their caches. Call after
    `verify`; `module` is the generated module's source when the caller has it."""
    cache_dir = build_dir / ".cache"
    figures = render_figures(sheet, module if module is not None else render_module(sheet), cache_dir=cache_dir) \
        if figure_entries(sheet) else None
    if figures is not None:
        say(f"figures: {len(figures.svgs)} ({figures.drawn} drawn, {figures.seconds:.2f} s)")
    pdfs: dict[str, PdfBuild] = {}
    preview: bytes | None = None
    if options.pdf:
        for edition in EDITIONS:
            pdf = build_pdf(yaml_text, sheet.source_path, renderer=renderer, cache_dir=cache_dir, paper=paper,
                            tags=tags, sheet=sheet, edition=edition, say=say)
            say(f"pdf ({edition}): " + ("unchanged, from the cache" if pdf.cached else
                                        f"fitted at {pdf.font_size_pt:g} pt, {pdf.pages} page(s)"))
            pdfs[edition] = pdf
        preview = pdf_preview(pdfs["core"], cache_dir, dpi=PREVIEW_DPI)
    texts: dict[str, str] = {}
    executed = 0
    if options.notebooks:
        rendered = render_notebooks(sheet)
        if options.execute:
            results = execute_notebooks(rendered, cache_dir / "notebooks", sheet=sheet, timeout=options.timeout)
            executed = sum(not r.cached for r in results.values())
            rendered = {path: r.notebook for path, r in results.items()}
        texts = {path: dumps(nb) for path, nb in rendered.items()}
        say(f"notebooks: {len(texts)} ({executed} executed)")
    return SlowOutputs(pdfs=pdfs, preview=preview, notebooks=texts, executed=executed,
                       figures=figures.svgs if figures is not None else {})


def build_pages(sheet: Sheet, module: str, slow: SlowOutputs, *, build_dir: Path, renderer: KatexRenderer,
                options: SiteOptions = SiteOptions()) -> Generated:
    """The site's pages and downloads, given the (possibly previous build's) slow outputs."""
    out = Generated(notebooks_executed=slow.executed)
    clock = _Clock(out.timings)
    with clock("katex"):
        out.math = renderer.render_map(site_pages.math_requests(sheet))
        out.katex_node_runs = renderer.stats.node_runs if renderer.stats else 0
    for edition, pdf in slow.pdfs.items():
        out.files[PDF_PATHS[edition]] = pdf.pdf
    if slow.preview is not None:
        out.files[PREVIEW_PATH] = site_pages.compact_preview(slow.preview)  # 32 colours: ~70 KB, not ~250
    for entry_id, svg in slow.figures.items():
        out.files[f"{FIGURES_DIR}/{entry_id}.svg"] = svg.encode("utf-8")
    notebook_pages: dict[str, str] = {}  # section id → notebook page
    if options.notebooks:
        notebook_pages = {s.id: notebook_path(s) for s in sheet.sections if notebook_path(s) in slow.notebooks}
        for path, text in slow.notebooks.items():
            # mkdocs-jupyter renders notebook pages from files: a cache copy, never build/notebooks,
            # which only a finished build replaces.
            on_disk = build_dir / NOTEBOOK_SOURCE_DIR / path
            write_atomic(on_disk, text)  # unchanged notebooks keep their mtime
            download = "downloads/" + path
            out.linked[path] = on_disk
            out.files[download] = text.encode("utf-8")
            out.notebook_pages[path] = download
        out.files[NOTEBOOK_ZIP_PATH] = _zip(slow.notebooks)
    links = site_pages.Links(pdf=PDF_PATH if options.pdf else None,
                             pdf_full=PDF_PATHS["full"] if options.pdf else None, module=MODULE_PATH,
                             notebook_pages=notebook_pages,
                             notebook_files={ident: out.notebook_pages[p] for ident, p in notebook_pages.items()},
                             figures={ident: f"{FIGURES_DIR}/{ident}.svg" for ident in slow.figures})
    with clock("pages"):
        out.pages = site_pages.render_pages(sheet, out.math, links)
        out.files[MODULE_PATH] = module.encode("utf-8")
        out.files[DECK_PATH] = render_deck(sheet, timestamp=source_date_epoch())
        out.nav = site_pages.nav(sheet, links)
    dist = katex_dist_dir()
    out.linked[KATEX_CSS_PATH] = dist / "katex.min.css"
    # Browsers that can show this site all read WOFF2, the first format katex.min.css offers.
    for font in sorted((dist / "fonts").glob("*.woff2")):
        out.linked[f"assets/katex/fonts/{font.name}"] = font
    return out


@dataclass(frozen=True)
class BuildReport:
    entries: int
    formulas: int
    doctests: int
    verified: Verified
    pdf_cached: bool
    notebooks: int
    notebooks_executed: int
    site_seconds: float | None
    written: tuple[str, ...]
    """Outputs whose bytes changed."""
    recovered: str | None
    seconds: float


def build_all(yaml_path: Path, *, build_dir: Path = Path("build"), site_dir: Path | None = Path("site"),
              config_file: Path = Path("mkdocs.yml"), preview_path: Path | None = None,
              paper: str | None = None, tags: Sequence[str] = (), wait: bool = False,
              say: Say = _quiet) -> BuildReport:
    """Make and check every output, then publish them as one set. `site_dir=None` skips the site.

    Raises `SheetError` (nothing was published) on any problem, `BuildBusy` when another build holds
    the lock (unless `wait`).
    """
    started = time.perf_counter()
    with BuildLock(build_dir, wait=wait, say=say), owned_temp_dir(build_dir):
        recovered = recover(build_dir, (site_dir,) if site_dir is not None else ())
        if recovered:
            say(f"recovered: {recovered}")
        text = read_source(yaml_path)
        sheet = load_sheet_text(text, str(yaml_path))
        renderer = KatexRenderer(build_dir / ".cache" / "katex.json")
        outputs = build_outputs(sheet, text, build_dir=build_dir, renderer=renderer, paper=paper, tags=tags, say=say)
        publication = Publication(build_dir)
        try:
            site_seconds: float | None = None
            if site_dir is not None:
                from .sitebuild import build_into

                staged = publication.new_tree(site_dir)
                built = build_into(config_file, staged, prebuilt=outputs, yaml_path=yaml_path, build_dir=build_dir)
                site_seconds = built.seconds
                say(f"site: built in {built.seconds:.2f} s (staged)")
                publication.add_tree(site_dir, staged)
            publication.add_file(build_dir / "formulas.py", outputs.module)
            publication.add_file(build_dir / Path(DECK_PATH).name, outputs.deck)
            for edition, pdf in outputs.slow.pdfs.items():
                publication.add_file(build_dir / Path(PDF_PATHS[edition]).name, pdf.pdf)
            if preview_path is not None and outputs.slow.preview is not None:
                publication.add_file(preview_path, outputs.slow.preview)
            for name, notebook in outputs.notebooks.items():
                publication.add_file(build_dir / "notebooks" / name, notebook)
            for stale in sorted((build_dir / "notebooks").glob("*.ipynb")):
                if stale.name not in outputs.notebooks:  # a section that no longer exists (or lost its formulas)
                    publication.remove(stale)
            written = publication.commit()
        except BaseException:
            publication.discard()
            raise
    return BuildReport(entries=sum(1 for _ in sheet.entries()), formulas=outputs.verified.formulas,
                       doctests=outputs.verified.doctests, verified=outputs.verified,
                       pdf_cached=outputs.pdf.cached if outputs.pdf else True, notebooks=len(outputs.notebooks),
                       notebooks_executed=outputs.site.notebooks_executed, site_seconds=site_seconds,
                       written=tuple(written), recovered=recovered, seconds=time.perf_counter() - started)


class _Clock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started


def _first_per_place(problems: Sequence[Problem]) -> list[Problem]:
    seen: set[tuple[str, int, str | None, str | None]] = set()
    first: list[Problem] = []
    for problem in problems:
        place = (problem.path, problem.line, problem.entry_id, problem.field)
        if place not in seen:
            seen.add(place)
            first.append(problem)
    return first


def _zip(texts: Mapping[str, str]) -> bytes:
    """All notebooks in one archive, byte-identical for identical notebooks (fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in sorted(texts.items()):
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)
    return buffer.getvalue()
