"""The one-page PDF: Sheet → HTML (Jinja2, KaTeX, Pygments) → WeasyPrint, fitted to one page.

No argument parsing and no output files here (the CLI does that); the only files touched are
caches: KaTeX HTML (through the renderer), the math images and the last fitted font size.

Where the time goes, and why it is arranged like this:
- WeasyPrint costs ~0.5 ms per element and KaTeX's HTML has ~100 elements per formula, so math
  is laid out once into SVG images (see pdf_math.py) and cached; a sheet layout then takes ~0.5 s.
- The fit needs at least two layouts (size s fits, s + step does not). Layouts are independent,
  so probes run in pairs: one here, one in a forked child (the machine has 2 cores).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import mimetypes
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

import jinja2
from markupsafe import Markup, escape

from ..errors import SheetError
from ..katex import (
    KatexRenderer,
    MathRequest,
    entry_texts,
    katex_dist_dir,
    read_json_cache,
    sheet_math_requests,
    split_inline_math,
    write_json_atomic,
)
from ..model import EntryBase, Formula, Sheet, Snippet
from . import pdf_math
from .code import function_source
from .pdf_math import MathImage

__all__ = [
    "FetchRefusedError",
    "PrintedSection",
    "RenderedPdf",
    "asset_fetcher",
    "build_key",
    "pdf_math_requests",
    "preview_png",
    "printed_sections",
    "render_pdf",
    "render_pdf_html",
    "short_citation",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE_DIR / "templates"
ASSETS = PACKAGE_DIR / "assets"
TEMPLATE = "pdf_sheet.html.j2"
STYLESHEET = TEMPLATES / "pdf_sheet.css"
STEP_PT = 0.25
"""Font sizes the fitter tries are multiples of this (plus the configured bounds)."""
PAPER_MM = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}
COLUMN_GAP_REM = 0.9  # keep in step with `.cols { column-gap }` in pdf_sheet.css
SMALL_EM = 0.86
"""Secondary text (meanings, sources, code, labels) relative to the body, but never below the
configured minimum size: at the usual fitted sizes it is the minimum, so nothing is printed smaller."""
_PT_PER_MM = 72 / 25.4
_NAME_EM_PER_CHAR = 0.56  # bold DejaVu Sans Condensed, measured on the shipped names

T = TypeVar("T")


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


@dataclass(frozen=True)
class PrintedSection:
    id: str
    title: str
    entries: tuple[EntryBase, ...]


def printed_sections(sheet: Sheet, tags: Sequence[str] = ()) -> list[PrintedSection]:
    """Sections and entries that go on paper: `print` not false and, with tags, having any of them."""
    wanted = set(tags)
    sections = []
    for section in sheet.sections:
        entries = tuple(e for e in section.entries
                        if e.print_on_sheet and (not wanted or wanted & set(e.tags)))
        if entries:
            sections.append(PrintedSection(section.id, section.title, entries))
    if not sections:
        known = sorted({t for e in sheet.entries() for t in e.tags})
        what = f"no printed entry has any of the tags {', '.join(tags)}" if tags else "no entry is printed"
        raise SheetError.single(sheet.source_path, 1, what,
                                f"known tags: {', '.join(known)}" if known else "set `print: true` on some entries")
    return sections


_NAME = r"[A-Z][\w'’-]+"  # one capitalised surname (\w takes accents: Schütze)
_AUTHORS = re.compile(rf"({_NAME})((?: et al\.)|(?:, {_NAME})* & {_NAME})?(?=,| \(|$)")
_CITED = re.compile(rf"({_NAME})((?: et al\.)| & {_NAME})? \([^()]*?\b(?:1[89]|20)\d\d\)")
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d\b")
_LOCATOR = re.compile(r"§\s?\d+(?:\.\d+)*|\bch\. \d+")


def short_citation(source: str, *, locator: bool = False) -> str:
    """The sheet's form of a `source`: authors and year, e.g. "Kingma & Ba 2015" (with the first
    section, "Goodfellow et al. 2016 §6.5.2", when `locator`). Deterministic, from the text alone.

    Works of a source are separated by ";". Authors are the leading surnames ("A", "A & B",
    "A, B & C", "A et al.") before a comma or a parenthesis; three or more become "A et al.". A
    later work without leading authors counts only if it cites "Name (… year)" somewhere (else it
    is a note such as "as in PyTorch nn.RNNCell"); a first one without them is kept up to its
    first comma ("scikit-learn User Guide").
    """
    cites: list[str] = []
    for n, part in enumerate(p.strip() for p in source.split(";")):
        found = _AUTHORS.match(part) or _CITED.search(part)
        if found is None:
            if n == 0:
                cites.append(part.split(",")[0].strip())
            continue
        first, more = found.group(1), found.group(2) or ""
        names = first + more if more.count(",") == 0 else f"{first} et al."
        rest = part[found.start():]
        year = _YEAR.search(rest)
        place = _LOCATOR.search(rest) if locator else None
        cites.append(" ".join(x for x in (names, year and year.group(), place and place.group()) if x))
    return "; ".join(cites) or source


def _display_tex(latex: str) -> str:
    # Display formulas are typeset in display style but as inline math: the same glyphs, without
    # KaTeX's display block wrapper, so they can sit beside an entry's name.
    return "\\displaystyle " + latex


def pdf_math_requests(sheet: Sheet, sections: Sequence[PrintedSection]) -> list[MathRequest]:
    """All math the printed entries need, for one KaTeX batch; all inline-mode (see _display_tex)."""
    def display(entry: EntryBase, latex: str) -> tuple[str, bool]:
        return (_display_tex(latex) if isinstance(entry, Formula) else latex), False

    return sheet_math_requests(sheet, [e for s in sections for e in s.entries], display)


# --- HTML -----------------------------------------------------------------------------------------

@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


_CODE_HANG_CH = 4
"""A wrapped code line continues this many characters right of the line's own indentation."""
_CODE_WORD_MAX = 32
"""Longer runs without spaces may break inside (else they would overflow a narrow column)."""


def _code_html(sheet: Sheet, function: str) -> Markup:
    """The formula's tested implementation, highlighted, one block per source line: a line too
    long for the column wraps at a space, with a hanging indent under its own first character
    (never inside a word such as `-np.inf`, where a line break after the minus would misread)."""
    from pygments import lex
    from pygments.lexers import PythonLexer
    from pygments.token import STANDARD_TYPES

    code = function_source(sheet.formula(function), with_docstring=False)
    lines: list[list[tuple[str, str]]] = [[]]  # (Pygments class, text): spaces apart from the rest
    for token, value in lex(code, PythonLexer()):
        while token not in STANDARD_TYPES:
            token = token.parent
        css = STANDARD_TYPES[token]
        for i, piece in enumerate(value.split("\n")):
            if i:
                lines.append([])
            lines[-1].extend((css, chunk) for chunk in re.split(r"( +)", piece) if chunk)
    while lines and not lines[-1]:
        lines.pop()

    def line_html(pieces: list[tuple[str, str]]) -> str:
        out: list[str] = []
        word: list[tuple[str, str]] = []

        def end_word() -> None:
            html = "".join(f'<span class="{css}">{escape(text)}</span>' if css else str(escape(text))
                           for css, text in word)
            short = sum(len(text) for _, text in word) <= _CODE_WORD_MAX
            out.append(f'<span class="nobr">{html}</span>' if word and short else html)
            word.clear()

        for css, text in pieces:
            if text.startswith(" "):
                end_word()
                out.append(text)
            else:
                word.append((css, text))
        end_word()
        indent = len(pieces[0][1]) if pieces and pieces[0][1].startswith(" ") else 0
        hang = indent + _CODE_HANG_CH
        return f'<div class="cl" style="padding-left:{hang}ch;text-indent:-{hang}ch">{"".join(out) or " "}</div>'

    # Class names are Pygments' short ones; colours (and greys for mono) live in pdf_sheet.css.
    return Markup("".join(line_html(pieces) for pieces in lines))


def _source_date() -> str | None:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None  # no date at all keeps builds reproducible
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _page_mm(sheet: Sheet, paper: str) -> tuple[float, float]:
    """Width and height of the page as printed (landscape turns the paper)."""
    short, long = PAPER_MM[paper]
    return (long, short) if sheet.sheet.print_settings.orientation == "landscape" else (short, long)


def _column_em(sheet: Sheet, paper: str, font_size_pt: float) -> float:
    """Width of one text column in em of the body font."""
    settings = sheet.sheet.print_settings
    content_pt = (_page_mm(sheet, paper)[0] - 2 * settings.margin_mm) * _PT_PER_MM
    gaps_pt = (settings.columns - 1) * COLUMN_GAP_REM * font_size_pt
    return (content_pt - gaps_pt) / settings.columns / font_size_pt


def render_pdf_html(sheet: Sheet, math_html: Mapping[tuple[str, bool], str | MathImage], font_size_pt: float,
                    paper: str, tags: Sequence[str] = ()) -> str:
    """The sheet as HTML for WeasyPrint (stylesheets are passed separately, see `render_pdf`).

    `math_html` maps (tex, display) of every `pdf_math_requests` item to KaTeX HTML or to its
    image; images let wide formulas shrink to the column and short ones sit beside their name.
    """
    settings = sheet.sheet.print_settings
    sections = printed_sections(sheet, tags)
    column_em = _column_em(sheet, paper, font_size_pt)
    # A formula wider than the column shrinks to fit it, but its base size (KATEX_EM of the body)
    # stays at least the minimum font size: past that it may overhang into the column gap.
    min_scale = min(1.0, settings.font_min_pt / (pdf_math.KATEX_EM * font_size_pt))

    def math(tex: str, fit_em: float | None = None) -> Markup:
        found = math_html[(tex, False)]
        if isinstance(found, str):
            return Markup(found)
        scale = 1.0 if fit_em is None else max(min_scale, min(1.0, fit_em / found.width_em))
        return Markup(found.img_html(scale))

    def prose(text: str) -> Markup:
        return Markup("").join(math(chunk) if is_math else escape(chunk)
                               for is_math, chunk in split_inline_math(text))

    def formula_width(entry: Formula) -> float:
        found = math_html[(_display_tex(entry.latex), False)]
        return found.width_em if isinstance(found, MathImage) else column_em

    def formula_beside_name(entry: Formula) -> bool:
        """Short formulas go right of the name: one line instead of two."""
        return len(entry.name) * _NAME_EM_PER_CHAR + 1.5 + formula_width(entry) <= column_em

    def room_beside(entry: Formula) -> bool:
        """Whether the meaning may flow beside the formula (else it starts below it)."""
        return not formula_beside_name(entry) or formula_width(entry) <= 0.6 * column_em

    def cite(source: str) -> Markup:
        """The short citation, after the meaning: an en space, then each work unbreakable (no-break
        spaces). Not a `white-space: nowrap` span, nor a spacer span: beside a float, WeasyPrint 70
        then pushes the line before them below the float, leaving a hole."""
        works = "; ".join(work.replace(" ", "\N{NO-BREAK SPACE}") for work in short_citation(source).split("; "))
        return Markup('\N{EN SPACE}<span class="source">{}</span>').format(works)

    keywords = sorted({t for s in sections for e in s.entries for t in e.tags})
    return _environment().get_template(TEMPLATE).render(
        info=sheet.sheet,
        sections=sections,
        page_size=f"{'A4' if paper == 'a4' else 'letter'} {settings.orientation}",
        margin_mm=f"{settings.margin_mm:g}",
        font_size_pt=f"{font_size_pt:g}",
        small_pt=f"{max(SMALL_EM * font_size_pt, settings.font_min_pt):.4g}",
        columns=settings.columns,
        color=settings.color,
        keywords=", ".join(keywords),
        date=_source_date(),
        filter_note=f"entries tagged {', '.join(tags)}" if tags else "",
        prose=prose,
        display=lambda latex: math(_display_tex(latex), column_em * 0.98),
        beside=formula_beside_name,
        roomy=room_beside,
        inline=math,
        cite=cite,
        code=lambda function: _code_html(sheet, function),
    )



# --- WeasyPrint -----------------------------------------------------------------------------------

class FetchRefusedError(RuntimeError):
    """The HTML or CSS asked for a resource outside the allowed folders (a bug, never user input)."""


def asset_fetcher(roots: Sequence[Path] | None = None) -> Any:
    """A WeasyPrint URL fetcher for `data:` URLs and files under `roots` (default: our assets,
    templates and KaTeX's dist folder); anything else stops the render."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    allowed = [r.resolve() for r in (roots if roots is not None else (ASSETS, TEMPLATES, katex_dist_dir()))]

    class AssetFetcher(URLFetcher):  # type: ignore[misc]  # weasyprint is untyped
        def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
            scheme = url.split(":", 1)[0].lower()
            if scheme == "data":
                return super().fetch(url, headers)
            if scheme == "file":
                path = Path(url2pathname(urlsplit(url).path)).resolve()
                if path.is_file() and any(path.is_relative_to(root) for root in allowed):
                    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": kind})
            raise FetchRefusedError(f"refused to fetch {url}: only data: URLs and files under "
                                    f"{', '.join(map(str, allowed))} are allowed")

    # fail_on_errors: a refused or missing resource stops the render instead of being a warning.
    return AssetFetcher(allowed_protocols=("data", "file"), fail_on_errors=True)


_FONT_SRC = re.compile(r"src:\s*url\(fonts/[^)]+\.woff2\)[^;]*?url\((fonts/[^)]+\.ttf)\)\s*format\(\"truetype\"\)")


@cache
def _katex_css() -> str:
    """KaTeX's CSS with TrueType fonts only: WeasyPrint would decompress WOFF2 on every build (~0.3 s)."""
    css = (katex_dist_dir() / "katex.css").read_text(encoding="utf-8")
    rewritten, count = _FONT_SRC.subn(r'src: url(\1) format("truetype")', css)
    if count < 15:  # KaTeX 0.19 has 20 faces; fewer means the CSS changed shape
        raise RuntimeError(f"could not rewrite KaTeX's @font-face rules to TTF ({count} found)")
    return rewritten


_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")
_FAMILY = re.compile(r'font-family:\s*"?([\w-]+)"?')
_SVG_FAMILY = re.compile(r'font-family="([\w-]+)')


def _katex_font_faces(families: frozenset[str]) -> str:
    """KaTeX's @font-face rules for the given families (formula images draw their text with them)."""
    rules = _FONT_FACE.findall(_katex_css())
    return "\n".join(rule for rule in rules if (m := _FAMILY.search(rule)) and m.group(1) in families)


class _Engine:
    """WeasyPrint state shared by every layout in this process: fonts, parsed CSS, the fetcher."""

    def __init__(self) -> None:
        from weasyprint.text.fonts import FontConfiguration

        self.font_config = FontConfiguration()
        self.fetcher = asset_fetcher()
        self.image_cache: dict[str, Any] = {}  # decoded formula images, reused by every probe
        self._sheet_css: dict[frozenset[str], list[Any]] = {}
        self._atlas_css: list[Any] = []

    def _css(self, **source: Any) -> Any:
        from weasyprint import CSS

        return CSS(url_fetcher=self.fetcher, font_config=self.font_config, **source)

    def sheet_stylesheets(self, families: frozenset[str]) -> list[Any]:
        """pdf_sheet.css and only the KaTeX fonts the formula images use: the sheet itself holds
        no KaTeX HTML, and each @font-face costs a font load."""
        if families not in self._sheet_css:
            self._sheet_css[families] = [
                self._css(string=_katex_font_faces(families), base_url=katex_dist_dir().as_uri() + "/"),
                self._css(filename=str(STYLESHEET)),
            ]
        return self._sheet_css[families]

    def atlas_stylesheets(self) -> list[Any]:
        if not self._atlas_css:
            self._atlas_css = [self._css(string=_katex_css(), base_url=katex_dist_dir().as_uri() + "/")]
        return self._atlas_css

    def layout(self, html: str, stylesheets: Sequence[Any]) -> Any:
        from weasyprint import HTML
        from weasyprint.urls import FatalURLFetchingError

        try:
            return HTML(string=html, base_url=ASSETS.as_uri() + "/", url_fetcher=self.fetcher).render(
                font_config=self.font_config, stylesheets=list(stylesheets), cache=self.image_cache)
        except FatalURLFetchingError as err:  # a BaseException: make it an ordinary error
            raise FetchRefusedError(str(err.__cause__ or err)) from err


@cache
def _engine() -> _Engine:
    return _Engine()


@cache
def style_digest() -> str:
    """What sheet layouts depend on besides the HTML: our CSS, KaTeX's CSS, WeasyPrint's version."""
    import weasyprint

    digest = hashlib.sha256()
    for part in (STYLESHEET.read_bytes(), _katex_css().encode(), weasyprint.__version__.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


@cache
def _atlas_digest() -> str:
    """What formula images depend on besides KaTeX's HTML (not pdf_sheet.css: restyling the sheet
    keeps them)."""
    import weasyprint

    return hashlib.sha256((_katex_css() + weasyprint.__version__).encode()).hexdigest()


def _parallel(here: Callable[[], T], elsewhere: Sequence[Callable[[], Any]]) -> tuple[T, list[Any]]:
    """Run `here` in this process and each of `elsewhere` in a forked child (its result comes back
    as JSON through a pipe). Sequential where fork is missing or SHEETGEN_JOBS=1."""
    if not elsewhere or not hasattr(os, "fork") or os.environ.get("SHEETGEN_JOBS") == "1" \
            or (os.cpu_count() or 1) < 2:
        return here(), [task() for task in elsewhere]
    children: list[tuple[int, int]] = []
    for task in elsewhere:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe and leaves at once
            os.close(read)
            try:
                payload = json.dumps({"result": task()})
            except BaseException as err:  # everything must reach the parent
                payload = json.dumps({"error": f"{type(err).__name__}: {err}"})
            with os.fdopen(write, "w", encoding="utf-8") as pipe:
                pipe.write(payload)
            os._exit(0)  # no atexit, no finalizers: they belong to the parent (e.g. font folders)
        os.close(write)
        children.append((pid, read))
    results: list[Any] = []
    try:
        mine = here()
    finally:
        for pid, read in children:
            with os.fdopen(read, encoding="utf-8") as pipe:
                answer = pipe.read()
            os.waitpid(pid, 0)
            results.append(json.loads(answer) if answer else {"error": "the worker process died"})
    for answer in results:
        if "error" in answer:
            raise RuntimeError(f"a parallel PDF worker failed: {answer['error']}")
    return mine, [answer["result"] for answer in results]


# --- math images ----------------------------------------------------------------------------------

def _math_images(katex_html: Mapping[tuple[str, bool], str], cache_path: Path | None,
                 engine: _Engine) -> tuple[dict[tuple[str, bool], MathImage], int]:
    """Images of every formula: from the cache, or laid out now (in two processes when many)."""
    stored = read_json_cache(cache_path, "images")
    digest = _atlas_digest()
    keys = {k: pdf_math.image_key(html, digest) for k, html in katex_html.items()}
    images: dict[str, MathImage] = {}
    for key in set(keys.values()):
        if key in stored:
            with contextlib.suppress(KeyError, TypeError, ValueError):  # a bad entry is redone
                images[key] = MathImage.from_json(stored[key])
    todo = sorted({key: html for (k, html) in katex_html.items() if (key := keys[k]) not in images}.items())

    def lay_out(batch: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        document = engine.layout(pdf_math.atlas_html([html for _, html in batch]), engine.atlas_stylesheets())
        return [image.to_json() for image in pdf_math.images_from_atlas(document, len(batch))]

    if todo:
        # Split in two halves by size: the atlas layout is the slowest step of a cold build.
        halves = [todo[0::2], todo[1::2]] if len(todo) >= 16 else [todo, []]
        first, others = _parallel(lambda: lay_out(halves[0]), [lambda: lay_out(halves[1])] if halves[1] else [])
        for batch, results in zip(halves, [first, *others], strict=False):
            for (key, _), data in zip(batch, results, strict=True):
                images[key] = MathImage.from_json(data)
        if cache_path is not None:
            used = {key: images[key].to_json() for key in sorted(set(keys.values()))}
            write_json_atomic(cache_path, {"format": 1, "images": used})
    return {k: images[key] for k, key in keys.items()}, len(todo)


# --- fit ------------------------------------------------------------------------------------------

def _sizes(low: float, high: float) -> list[float]:
    first = math.ceil(low / STEP_PT - 1e-9)
    last = math.floor(high / STEP_PT + 1e-9)
    sizes = [n * STEP_PT for n in range(first, last + 1)]
    if not sizes or sizes[0] > low + 1e-9:
        sizes.insert(0, low)
    if sizes[-1] < high - 1e-9:
        sizes.append(high)
    return sizes


class _FitCache:
    """Last fitted size per layout (paper, print settings, tags), with the content it was fitted to."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data = read_json_cache(path, "layouts")

    def get(self, layout_key: str) -> tuple[str, float] | None:
        found = self.data.get(layout_key)
        if isinstance(found, dict) and isinstance(found.get("size"), int | float):
            return str(found.get("content")), float(found["size"])
        return None

    def put(self, layout_key: str, content_key: str, size: float) -> None:
        if self.path is None or self.get(layout_key) == (content_key, size):
            return
        self.data[layout_key] = {"content": content_key, "size": size}
        write_json_atomic(self.path, {"format": 1, "layouts": self.data})


def _fill(document: Any, columns: int) -> float:
    """How full the layout is, in pages: content height over the height of `columns` columns.

    Reads WeasyPrint's box tree (no public API for it): the multi-column box's children are the
    laid-out columns.
    """
    used = 0.0
    available = 0.0
    for page in document.pages:
        stack = [page._page_box]
        while stack:
            box = stack.pop()
            element = box.element
            if element is not None and "cols" in (element.get("class") or "").split() \
                    and box.element_tag == "main":
                for column in box.children:
                    flow = [c for c in column.children if c.is_in_normal_flow()]
                    if flow:
                        used += flow[-1].position_y + flow[-1].margin_height() - column.position_y
                available = max(available, box.height)
                continue
            stack.extend(getattr(box, "children", ()))
    return used / (available * columns) if available else float(len(document.pages))


@dataclass
class _Probe:
    pages: int
    fill: float


def render_pdf(sheet: Sheet, renderer: KatexRenderer, *, paper: str | None = None, tags: Sequence[str] = (),
               fit_cache_path: Path | None = None, math_cache_path: Path | None = None) -> RenderedPdf:
    """The one-page PDF at the largest font size that fits; `SheetError` if even the smallest overflows.

    Caches (optional): `fit_cache_path` keeps the last fitted size, `math_cache_path` the formula
    images; both are plain JSON, rebuilt when missing or corrupt.
    """
    timings: dict[str, float] = {}
    settings = sheet.sheet.print_settings
    paper = paper or settings.paper
    if paper not in PAPER_MM:
        raise SheetError.single(sheet.source_path, 1, f"unknown paper {paper!r}",
                                "use a4 or letter")
    low, high = settings.font_min_pt, max(settings.font_max_pt, settings.font_min_pt)

    started = time.perf_counter()
    sections = printed_sections(sheet, tags)
    katex = renderer.start_map(pdf_math_requests(sheet, sections))
    timings["katex"] = time.perf_counter() - started
    started = time.perf_counter()
    engine = _engine()  # imports WeasyPrint while node typesets
    timings["setup"] = time.perf_counter() - started
    started = time.perf_counter()
    katex_html = katex()
    timings["katex"] += time.perf_counter() - started
    started = time.perf_counter()
    images, laid_out = _math_images(katex_html, math_cache_path, engine)
    timings["math"] = time.perf_counter() - started

    started = time.perf_counter()
    families = frozenset(f for image in images.values() for f in _SVG_FAMILY.findall(image.svg))
    stylesheets = engine.sheet_stylesheets(families)
    timings["setup"] += time.perf_counter() - started
    html_seconds = 0.0

    def html_at(size: float) -> str:
        nonlocal html_seconds
        began = time.perf_counter()
        html = render_pdf_html(sheet, images, size, paper, tags)
        html_seconds += time.perf_counter() - began
        return html

    layout_key = hashlib.sha256(json.dumps(
        [paper, settings.model_dump(mode="json"), list(tags)], sort_keys=True).encode()).hexdigest()
    sizes = _sizes(low, high)
    # The HTML at both ends of the range stands for every size (sizes only change numbers in it).
    content_key = hashlib.sha256(("".join(html_at(s) for s in (sizes[0], sizes[-1])) + style_digest())
                                 .encode()).hexdigest()
    fit_cache = _FitCache(fit_cache_path)
    cached = fit_cache.get(layout_key)

    layout_seconds = 0.0
    probes: dict[int, _Probe] = {}
    documents: dict[int, Any] = {}

    def probe_here(index: int) -> _Probe:
        nonlocal layout_seconds
        html = html_at(sizes[index])
        began = time.perf_counter()
        documents[index] = document = engine.layout(html, stylesheets)
        layout_seconds += time.perf_counter() - began
        return _Probe(len(document.pages), _fill(document, settings.columns))

    def probe_child(index: int) -> Callable[[], Any]:
        def run() -> Any:
            document = engine.layout(render_pdf_html(sheet, images, sizes[index], paper, tags), stylesheets)
            return [len(document.pages), _fill(document, settings.columns)]
        return run

    def run_probes(indices: Sequence[int]) -> None:
        """Lay out one size here (the one that may be kept) and the others in parallel."""
        indices = [i for i in indices if i not in probes]
        if not indices:
            return
        mine, others = _parallel(lambda: probe_here(indices[0]), [probe_child(i) for i in indices[1:]])
        probes[indices[0]] = mine
        for index, (pages, fill) in zip(indices[1:], others, strict=True):
            probes[index] = _Probe(pages, fill)

    fit_started = time.perf_counter()
    exact = cached is not None and cached[0] == content_key
    start = _nearest(sizes, cached[1]) if cached else _estimate(sheet, sections, images, paper, sizes)
    if exact:
        run_probes([start])  # same inputs as the last fit: its answer holds, one layout suffices
        if probes[start].pages != 1:
            exact = False
    best = start if exact else _search(sizes, start, probes, run_probes)
    timings["fit"] = time.perf_counter() - fit_started
    if best < 0:
        raise _overflow_error(sheet, sections, probes[0], low)
    if best not in documents:  # the answer was probed in a child: lay it out here too
        probe_here(best)
    fit_cache.put(layout_key, content_key, sizes[best])

    began = time.perf_counter()
    pdf = documents[best].write_pdf()
    timings["write"] = time.perf_counter() - began
    timings["html"] = html_seconds
    timings["weasyprint"] = layout_seconds + timings["write"]
    return RenderedPdf(pdf, sizes[best], len(documents[best].pages), len(probes) + (best not in probes), timings,
                       len(images), laid_out)


def _build_inputs() -> list[Path]:
    """sheetgen's files that shape the PDF (not the site's: editing those must not rebuild it)."""
    code = ["errors.py", "model.py", "loader.py", "katex.py", "render/code.py", "render/pdf.py",
            "render/pdf_math.py"]
    return sorted([*(PACKAGE_DIR / name for name in code), *TEMPLATES.glob("pdf_*"),
                   *(p for p in ASSETS.rglob("*") if p.is_file())])


def build_key(source_text: str, paper: str | None, tags: Sequence[str]) -> str:
    """Everything the PDF's bytes depend on, hashed: the YAML, sheetgen's code, templates and assets,
    the KaTeX, WeasyPrint and Pygments versions, the options and SOURCE_DATE_EPOCH.

    Cheap on purpose (no WeasyPrint import): an unchanged build is skipped on this key alone.
    """
    from importlib.metadata import version

    digest = hashlib.sha256()
    for path in _build_inputs():
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    try:
        katex_manifest = (katex_dist_dir().parent / "package.json").read_bytes()
    except (OSError, SheetError):
        katex_manifest = b"missing"
    digest.update(hashlib.sha256(katex_manifest).digest())
    options = [source_text, paper, sorted(tags), os.environ.get("SOURCE_DATE_EPOCH"),
               [version(name) for name in ("weasyprint", "pydyf", "pygments", "jinja2")]]
    digest.update(json.dumps(options, ensure_ascii=False).encode())
    return digest.hexdigest()


def preview_png(pdf: bytes, dpi: int = 60) -> bytes | None:
    """A PNG of the first page via poppler's pdftoppm, or None where pdftoppm is not installed."""
    import shutil
    import subprocess
    import tempfile

    tool = shutil.which("pdftoppm")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sheetgen-preview-") as folder:
        source = Path(folder) / "sheet.pdf"
        source.write_bytes(pdf)
        subprocess.run([tool, "-r", str(dpi), "-png", "-singlefile", str(source), str(Path(folder) / "preview")],
                       check=True, capture_output=True, timeout=60)
        return (Path(folder) / "preview.png").read_bytes()


_FILL_PER_UNIT = 0.80  # fill × capacity / units: 0.78–0.82 on the shipped sheet at 6.5–7 pt, A4 and Letter


def _content_units(sheet: Sheet, sections: Sequence[PrintedSection], images: Mapping[tuple[str, bool], MathImage]
                   ) -> float:
    """A size-free measure of how much there is to print, in em²: text, formula images, code."""
    units = 0.0
    for section in sections:
        units += 4.0  # the heading band
        for entry in section.entries:
            units += 3.0 + 0.62 * sum(len(text) for _, text in entry_texts(entry))
            if isinstance(entry, Formula):
                image = images[(_display_tex(entry.latex), False)]
                units += (image.width_em + 0.5) * (image.ascent_em + image.depth_em + 0.3)
            elif isinstance(entry, Snippet):
                units += 0.3 * len(function_source(sheet.formula(entry.function), with_docstring=False))
    return units


def _estimate(sheet: Sheet, sections: Sequence[PrintedSection], images: Mapping[tuple[str, bool], MathImage],
              paper: str, sizes: Sequence[float]) -> int:
    """Index of the first size to try without a cached fit: the largest whose predicted fill is
    below one page. Only a starting point; the search confirms it with real layouts."""
    settings = sheet.sheet.print_settings
    height_mm = _page_mm(sheet, paper)[1]
    units = _content_units(sheet, sections, images)

    def fill(size: float) -> float:
        title_pt = 2.4 * size  # the title bar, in em of the body
        height_em = ((height_mm - 2 * settings.margin_mm) * _PT_PER_MM - title_pt) / size
        return _FILL_PER_UNIT * units / (settings.columns * _column_em(sheet, paper, size) * height_em)

    return max((i for i, size in enumerate(sizes) if fill(size) <= 1.0), default=0)


def _nearest(sizes: Sequence[float], size: float) -> int:
    return min(range(len(sizes)), key=lambda i: (abs(sizes[i] - size), -i))


def _search(sizes: Sequence[float], start: int, probes: dict[int, _Probe],
            run_probes: Callable[[Sequence[int]], None]) -> int:
    """Index of the largest size that gives one page, or -1.

    Pages grow with the font size, so the answer is the edge where 1 page turns into 2. Each round
    probes two sizes at once: the current guess and the next step up. The guess is refined from
    how full the page was: content area grows about as the square of the font size.
    """
    guess = start
    last = len(sizes) - 1
    while True:
        fits = [i for i, p in probes.items() if p.pages == 1]
        overflows = [i for i, p in probes.items() if p.pages > 1]
        low = max(fits, default=-1)
        high = min(overflows, default=last + 1)
        if high == low + 1:
            return low
        if low == last:
            return last
        if high == 0:
            return -1
        if probes:
            guess = _refine(sizes, probes, low, high)
        candidates = [guess, guess + 1] if guess + 1 < high else [guess - 1, guess]
        run_probes([i for i in candidates if low < i < high] or [(low + high) // 2])


def _refine(sizes: Sequence[float], probes: Mapping[int, _Probe], low: int, high: int) -> int:
    """Next guess strictly between `low` and `high`, from the fill of the probe nearest the edge."""
    nearest = min(probes, key=lambda i: min(abs(i - low), abs(i - high)))
    probe = probes[nearest]
    target = 0.985  # aim just under full: break-inside leaves gaps at column ends
    size = sizes[nearest] * math.sqrt(target / probe.fill) if probe.fill > 0 else sizes[nearest]
    guess = max((i for i in range(len(sizes)) if sizes[i] <= size + 1e-9), default=0)
    return min(max(guess, low + 1), high - 1)


def _overflow_error(sheet: Sheet, sections: Sequence[PrintedSection], smallest: _Probe, low: float) -> SheetError:
    share = sorted(((sum(len(t) for e in s.entries for _, t in entry_texts(e)), s) for s in sections),
                   key=lambda pair: -pair[0])
    total = sum(size for size, _ in share) or 1
    names = ", ".join(f"{s.title} (line {sheet.line_of(s.id)}: {100 * size / total:.0f} % of the text, "
                      f"{len(s.entries)} entries)" for size, s in share[:3])
    over = max(0.0, smallest.fill - 1)
    return SheetError.single(
        sheet.source_path, 1,
        f"the sheet does not fit on one page even at the smallest font size ({low:g} pt): it fills "
        f"{smallest.pages} pages, about {100 * over:.0f} % more than one page holds",
        f"the largest sections are {names}; set `print: false` on some entries, or print a part with --tags")
