"""The PDFs: Sheet → HTML (render.pdf_html) → WeasyPrint (engine), fitted to its pages (fit).

Two editions: `core`, exactly one page, and `full`, every printed entry on at most two pages (one
sheet, both sides). Both use the same fit: the largest body size, in steps of `STEP_PT` between
`font_min_pt` and `font_max_pt`, at which the sheet fits. A `--tags` subset may go up to
`subset_font_max_pt` and use fewer columns, so that it fills its page instead of one column of it.

No argument parsing and no output files here (the CLI does that); the only files touched are
caches: KaTeX HTML (through the renderer), the formula images and the last fit.

Where the time goes, and why it is arranged like this:
- WeasyPrint costs ~0.5 ms per element and KaTeX's HTML has ~100 elements per formula, so math
  is laid out once into SVG images (see atlas.py) and cached; a sheet layout then takes ~0.5 s.
- The fit needs at least two layouts (size s fits, s + step does not). Layouts are independent,
  so probes run in pairs: one here, one in a forked child (the machine has 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import SheetError
from ..katex import KatexRenderer, katex_dist_dir
from ..model import EDITIONS, Edition, Sheet
from ..render.pdf_html import (
    ASSETS,
    PAPER_MM,
    TEMPLATES,
    Footer,
    PrintedSection,
    formulas_to_split,
    overhanging_formulas,
    pdf_math_requests,
    printed_sections,
    render_pdf_html,
    short_citation,
)
from .atlas import math_images
from .engine import FetchRefusedError, asset_fetcher, engine, preview_png, style_digest, svg_font_families
from .fit import (
    STEP_PT,
    Fit,
    FitCache,
    Probe,
    estimate,
    nearest,
    overflow_error,
    read_columns,
    search,
    size_steps,
)

__all__ = [
    "EDITION_PAGES",
    "STEP_PT",
    "FetchRefusedError",
    "Footer",
    "PrintedSection",
    "RenderedPdf",
    "asset_fetcher",
    "build_key",
    "pdf_math_requests",
    "preview_png",
    "printed_sections",
    "render_pdf",
    "render_pdf_html",
    "sheet_version",
    "short_citation",
    "source_date",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
EDITION_PAGES: dict[str, int] = {"core": 1, "full": 2}
"""The most pages each edition may have (the core sheet must be exactly one)."""
_CONTINUATION_ROUNDS = 4
"""Layouts per probe at most while placing "(cont.)" headings (each can move later entries)."""


@dataclass(frozen=True)
class RenderedPdf:
    pdf: bytes
    font_size_pt: float
    pages: int
    renders: int
    """Sheet layouts the fit needed (parallel probes count one each)."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage: katex, setup, math (formula images), html, weasyprint (layouts + writing),
    fit (the whole size search, layouts included), write."""
    math_images: int = 0
    math_new: int = 0
    """Formula images laid out by this build (the others came from the cache)."""
    columns: int = 0
    fill: float = 0.0
    """Content height over the columns' height, in pages (see `fit.read_columns`)."""
    continued: tuple[str, ...] = ()
    """Entries that carry a "(cont.)" heading."""
    edition: str = "core"
    overhanging: tuple[str, ...] = ()
    """Formulas wider than their column even at the smallest size (they overhang into the gap)."""


def source_date() -> str:
    """SOURCE_DATE_EPOCH as an ISO 8601 UTC time, or "" (no date at all keeps builds reproducible)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return ""
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@cache
def sheet_version(folder: Path | None = None) -> str:
    """The version printed on the sheet: `git describe --tags` of the repository holding `folder`
    (the YAML's), "<package version>+g<commit>" in a repository without tags, else sheetgen's
    package version. Part of the PDF cache key (see `build_key`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("sheetgen")
    except PackageNotFoundError:  # pragma: no cover - run from a checkout that was never installed
        package = "0"
    where = str(folder or Path.cwd())

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=10,
                                  check=False)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    described = git("describe", "--tags", "--abbrev=7")
    if described:
        return described
    commit = git("rev-parse", "--short=7", "HEAD")
    return f"{package}+g{commit}" if commit else package


def default_footer(sheet: Sheet) -> Footer:
    """The footer a build prints: the sheet's `url`, its version (see `sheet_version`) and date."""
    return Footer(url=sheet.sheet.url, version=sheet_version(Path(sheet.source_path).resolve().parent),
                  date=source_date())


def render_pdf(sheet: Sheet, renderer: KatexRenderer, *, paper: str | None = None, tags: Sequence[str] = (),
               edition: Edition = "core", footer: Footer | None = None, fit_cache_path: Path | None = None,
               math_cache_path: Path | None = None) -> RenderedPdf:
    """The `edition` PDF at the largest font size that fits its pages (one for `core`, at most two for
    `full`); `SheetError` if even the smallest overflows.

    `footer` defaults to `default_footer(sheet)`. Caches (optional): `fit_cache_path` keeps the last
    fit, `math_cache_path` the formula images; both are plain JSON, rebuilt when missing or corrupt.
    """
    timings: dict[str, float] = {}
    settings = sheet.sheet.print_settings
    paper = paper or settings.paper
    if paper not in PAPER_MM:
        raise SheetError.single(sheet.source_path, 1, f"unknown paper {paper!r}", "use a4 or letter")
    if edition not in EDITIONS:
        raise SheetError.single(sheet.source_path, 1, f"unknown edition {edition!r}", "use core or full")
    footer = default_footer(sheet) if footer is None else footer
    max_pages = EDITION_PAGES[edition]
    subset = bool(tags)
    low = settings.font_min_pt
    high = max(settings.subset_font_max_pt if subset else settings.font_max_pt, low)

    started = time.perf_counter()
    sections = printed_sections(sheet, tags, edition)
    katex = renderer.start_map(pdf_math_requests(sheet, sections))
    timings["katex"] = time.perf_counter() - started
    started = time.perf_counter()
    eng = engine()  # imports WeasyPrint while node typesets
    timings["setup"] = time.perf_counter() - started
    started = time.perf_counter()
    katex_html = katex()
    timings["katex"] += time.perf_counter() - started
    started = time.perf_counter()
    images, laid_out = math_images(katex_html, math_cache_path, eng)
    # Formulas too wide for a column even at the smallest size are also typeset in pieces that wrap.
    split = formulas_to_split(sheet, sections, images, paper, high, settings.columns)
    if split:
        pieces = renderer.render_map([r for r in pdf_math_requests(sheet, sections, split)
                                      if (r.tex, r.display) not in katex_html])
        more, more_laid_out = math_images(pieces, math_cache_path, eng)
        images = {**images, **more}
        laid_out += more_laid_out
    timings["math"] = time.perf_counter() - started

    started = time.perf_counter()
    stylesheets = eng.sheet_stylesheets(svg_font_families(image.svg for image in images.values()))
    timings["setup"] += time.perf_counter() - started
    html_seconds = 0.0
    layout_seconds = 0.0

    def html_at(size: float, columns: int, continued: Sequence[str] = ()) -> str:
        nonlocal html_seconds
        began = time.perf_counter()
        html = render_pdf_html(sheet, images, size, paper, tags, edition=edition, columns=columns,
                               footer=footer, continued=continued)
        html_seconds += time.perf_counter() - began
        return html

    def lay_out(size: float, columns: int, continued: Sequence[str], rounds: int = _CONTINUATION_ROUNDS
                ) -> tuple[Any, Probe]:
        """A layout with "(cont.)" headings on the entries that start a column mid-section. Adding a
        heading moves only what follows it, so a few rounds settle it; a probe of the search takes
        one (its guess: the headings of the nearest size) and the answer is settled afterwards."""
        nonlocal layout_seconds
        wanted = tuple(sorted(continued))
        for _ in range(rounds):
            html = html_at(size, columns, wanted)
            began = time.perf_counter()
            document = eng.layout(html, stylesheets)
            layout_seconds += time.perf_counter() - began
            found = read_columns(document, columns)
            settled = found.needs_heading == frozenset() and found.headed == frozenset(wanted)
            probe = Probe(len(document.pages), found.fill, wanted, settled)
            if settled:
                break
            wanted = tuple(sorted(found.headed | found.needs_heading))
        return document, probe

    layout_key = hashlib.sha256(json.dumps(
        [paper, settings.model_dump(mode="json"), edition, list(tags)], sort_keys=True).encode()).hexdigest()
    # The HTML at both ends of the range stands for every size (sizes only change numbers in it).
    steps = size_steps(low, high)
    content_key = hashlib.sha256(("".join(html_at(s, settings.columns) for s in (steps[0], steps[-1]))
                                  + style_digest()).encode()).hexdigest()
    fit_cache = FitCache(fit_cache_path)
    cached = fit_cache.get(layout_key)
    renders = 0

    def fit_columns(columns: int, hint: Fit | None, exact: bool) -> tuple[int, dict[int, Probe], dict[int, Any]]:
        """The largest size that fits in `columns` columns: (index into steps or -1, probes, documents).
        `hint`: the last fit (a starting point); `exact`: of this very content (its answer holds)."""
        nonlocal renders
        probes: dict[int, Probe] = {}
        documents: dict[int, Any] = {}
        latest: list[tuple[str, ...]] = [hint.continued if hint else ()]

        def probe_here(index: int, rounds: int = 1) -> Probe:
            documents[index], probe = lay_out(steps[index], columns, latest[0], rounds)
            return probe

        def probe_child(index: int) -> Callable[[], Any]:
            def run() -> Any:
                _, probe = lay_out(steps[index], columns, latest[0], 1)
                return [probe.pages, probe.fill, list(probe.continued), probe.settled]
            return run

        def run_probes(indices: Sequence[int]) -> None:
            """Lay out one size here (the one that may be kept) and the others in parallel."""
            nonlocal renders
            indices = [i for i in indices if i not in probes]
            if not indices:
                return
            mine, others = eng.parallel(lambda: probe_here(indices[0]), [probe_child(i) for i in indices[1:]])
            renders += 1
            probes[indices[0]] = mine
            latest[0] = mine.continued
            for index, (pages, fill, continued, settled) in zip(indices[1:], others, strict=True):
                probes[index] = Probe(pages, fill, tuple(continued), settled)

        start = (nearest(steps, hint.size) if hint else
                 estimate(sheet, sections, images, paper, steps, columns=columns, max_pages=max_pages))
        if exact:
            run_probes([start])  # same inputs as the last fit: its answer holds, one layout suffices
            exact = probes[start].pages <= max_pages
        while True:
            best = start if exact else search(steps, start, probes, run_probes, max_pages)
            if best < 0 or (probes[best].settled and best in documents):
                break
            # The answer with its "(cont.)" headings settled, laid out here (it may have been a child's).
            latest[0] = probes[best].continued
            probes[best] = probe_here(best, _CONTINUATION_ROUNDS)
            renders += 1
            if probes[best].pages <= max_pages:
                break
            exact = False  # the headings pushed it over: search on below it
            start = max(0, best - 1)
        return best, probes, documents

    fit_started = time.perf_counter()
    hint = cached[1] if cached is not None else None  # an edit moves the edge only a little: start there
    exact = cached is not None and cached[0] == content_key
    order = list(range(settings.columns, 0, -1)) if subset else [settings.columns]
    if hint is not None and exact:  # the same content chose this many columns last time
        order = [c for c in order if c <= hint.columns] or order
    chosen: tuple[int, int, dict[int, Probe], dict[int, Any]] | None = None
    skipped: int | None = None
    for columns in order:
        if subset and columns > 1 and not exact:
            # One layout at the largest size tells whether this many columns can be filled at all.
            _, at_cap = lay_out(high, columns, (), 1)
            renders += 1
            if at_cap.pages <= max_pages and at_cap.fill < 0.8 * max_pages:
                skipped = columns
                continue
        same = hint is not None and hint.columns == columns
        best, probes, documents = fit_columns(columns, hint if same else None, exact and same)
        if best < 0 and chosen is None and skipped is not None:  # fewer columns overflow: back to those
            columns = skipped
            best, probes, documents = fit_columns(columns, None, False)
        if best < 0:
            if chosen is None:
                raise overflow_error(sheet, sections, probes[0], low, max_pages)
            break  # fewer columns overflow: keep the last that fit
        chosen = (columns, best, probes, documents)
        # A subset that reaches the largest size and still leaves a fifth of its columns empty tries
        # one column fewer (wider columns, fewer half-empty ones).
        if not (best == len(steps) - 1 and probes[best].fill < 0.8 * max_pages):
            break
    assert chosen is not None
    columns, best, probes, documents = chosen
    timings["fit"] = time.perf_counter() - fit_started
    fit_cache.put(layout_key, content_key, Fit(steps[best], columns, probes[best].continued))

    began = time.perf_counter()
    document = documents[best]
    pdf = document.write_pdf()
    timings["write"] = time.perf_counter() - began
    timings["html"] = html_seconds
    timings["weasyprint"] = layout_seconds + timings["write"]
    return RenderedPdf(pdf, steps[best], len(document.pages), renders, timings, len(images), laid_out,
                       columns=columns, fill=probes[best].fill, continued=probes[best].continued, edition=edition,
                       overhanging=overhanging_formulas(sheet, sections, images, paper, steps[best], columns))


def _build_inputs() -> list[Path]:
    """sheetgen's files that shape the PDF (not the site's: editing those must not rebuild it)."""
    code = ["errors.py", "model.py", "loader.py", "katex.py", "mathtext.py", "render/code.py",
            "render/texplain.py", *(f"render/{p.name}" for p in (PACKAGE_DIR / "render").glob("pdf*.py")),
            *(f"pdf/{p.name}" for p in (PACKAGE_DIR / "pdf").glob("*.py"))]
    return sorted([*(PACKAGE_DIR / name for name in code), *TEMPLATES.glob("pdf_*"),
                   *(p for p in ASSETS.rglob("*") if p.is_file())])


def build_key(source_text: str, paper: str | None, tags: Sequence[str], edition: str = "core",
              version: str = "") -> str:
    """Everything the PDF's bytes depend on, hashed: the YAML, sheetgen's code, templates and assets,
    the KaTeX, WeasyPrint, Pygments and segno versions, the options, the printed version and
    SOURCE_DATE_EPOCH.

    Cheap on purpose (no WeasyPrint import): an unchanged build is skipped on this key alone.
    """
    from importlib.metadata import version as installed

    digest = hashlib.sha256()
    for path in _build_inputs():
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        katex_manifest = (katex_dist_dir().parent / "package.json").read_bytes()
    except (OSError, SheetError):
        katex_manifest = b"missing"
    digest.update(hashlib.sha256(katex_manifest).digest())
    options = [source_text, paper, sorted(tags), edition, version, os.environ.get("SOURCE_DATE_EPOCH"),
               [installed(name) for name in ("weasyprint", "pydyf", "pygments", "jinja2", "segno")]]
    digest.update(json.dumps(options, ensure_ascii=False).encode())
    return digest.hexdigest()
