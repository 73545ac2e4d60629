"""The PDF's HTML, pure: Sheet (+ formula images, a font size, a paper) → an HTML string for WeasyPrint.

Also what goes on paper (`printed_sections`, by edition and tags), the short citations and the math
the printed entries need. No I/O, no environment, no WeasyPrint here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from ..errors import SheetError
from ..katex import MathRequest
from ..mathtext import sheet_math_requests, split_inline_math
from ..model import Edition, EntryBase, Formula, Sheet
from .code import function_source
from .pdf_math import KATEX_EM, MathImage

__all__ = [
    "Footer",
    "PrintedSection",
    "all_pdf_math_requests",
    "column_em",
    "display_pieces",
    "display_tex",
    "formulas_to_split",
    "overhanging_formulas",
    "page_mm",
    "pdf_math_requests",
    "printed_sections",
    "qr_svg",
    "render_pdf_html",
    "short_citation",
]

PACKAGE_DIR = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE_DIR / "templates"
ASSETS = PACKAGE_DIR / "assets"
TEMPLATE = "pdf_sheet.html.j2"
STYLESHEET = TEMPLATES / "pdf_sheet.css"
PAPER_MM = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}
COLUMN_GAP_REM = 0.9  # keep in step with `.cols { column-gap }` in pdf_sheet.css
SMALL_EM = 0.86
"""Secondary text (meanings, sources, code, labels) relative to the body, but never below the
configured minimum size: at the usual fitted sizes it is the minimum, so nothing is printed smaller."""
_PT_PER_MM = 72 / 25.4
_NAME_EM_PER_CHAR = 0.56  # bold DejaVu Sans Condensed, measured on the shipped names


@dataclass(frozen=True)
class PrintedSection:
    id: str
    title: str
    entries: tuple[EntryBase, ...]


def printed_sections(sheet: Sheet, tags: Sequence[str] = (), edition: Edition = "core") -> list[PrintedSection]:
    """Sections and entries that go on paper: in the `edition` (see `EntryBase.in_edition`) and,
    with tags, having any of them."""
    wanted = set(tags)
    sections = []
    for section in sheet.sections:
        entries = tuple(e for e in section.entries
                        if e.in_edition(edition) and (not wanted or wanted & set(e.tags)))
        if entries:
            sections.append(PrintedSection(section.id, section.title, entries))
    if not sections:
        known = sorted({t for e in sheet.entries() if e.in_edition(edition) for t in e.tags})
        what = (f"no entry of the {edition} edition has any of the tags {', '.join(tags)}" if tags
                else f"no entry is printed in the {edition} edition")
        raise SheetError.single(sheet.source_path, 1, what,
                                f"known tags: {', '.join(known)}" if known else "set `print: core` on some entries")
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


def display_tex(latex: str) -> str:
    # Display formulas are typeset in display style but as inline math: the same glyphs, without
    # KaTeX's display block wrapper, so they can sit beside an entry's name.
    return "\\displaystyle " + latex


_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|.", re.S)
_SEPARATORS = {"\\quad", "\\qquad"}
_THIN = {"\\;", "\\,", "\\ ", "\\:"}  # separate statements only after a comma
_RELATIONS = {"=", "\\approx", "\\leftarrow", "\\gets", "\\le", "\\leq", "\\ge", "\\geq", "\\sim",
              "\\propto", "\\equiv"}
_OPEN = {"{": "}", "(": ")", "[": "]"}


def display_pieces(latex: str) -> tuple[str, ...]:
    """A display formula cut where a line may break, for formulas too wide for a column even at the
    smallest size: after each top-level `\\quad` or `, \\;` (statements side by side; the comma stays
    on the left) and before each top-level relation of a chain (`a = b \\approx c` → `a = b`,
    `{}\\approx c`). "Top-level": outside braces, brackets, parentheses, `\\left…\\right` and
    environments. One piece when there is nowhere to cut."""
    pieces: list[str] = []
    current: list[str] = []
    depth = 0
    seen_relation = False
    for token in _TOKEN.findall(latex):
        if token in ("\\left", "\\begin") or token in _OPEN:
            depth += 1
        elif token in ("\\right", "\\end") or token in _OPEN.values():
            depth = max(0, depth - 1)
        elif depth == 0 and (token in _SEPARATORS or (token in _THIN and "".join(current).rstrip().endswith(","))):
            pieces.append("".join(current).strip())
            current, seen_relation = [], False
            continue
        elif depth == 0 and token in _RELATIONS:
            if seen_relation and "".join(current).strip():
                pieces.append("".join(current).strip())
                current = ["{}"]
            seen_relation = True
        current.append(token)
    pieces.append("".join(current).strip())
    pieces = [p for p in pieces if p and p != "{}"]
    return tuple(pieces) if len(pieces) > 1 else (latex,)


def formulas_to_split(sheet: Sheet, sections: Sequence[PrintedSection],
                      images: Mapping[tuple[str, bool], str | MathImage], paper: str, size_pt: float,
                      columns: int) -> frozenset[str]:
    """Formulas that can be cut (`display_pieces`) and are wider than a column at `size_pt` even
    shrunk to the smallest size: their pieces are typeset too, so they can wrap."""
    settings = sheet.sheet.print_settings
    fit_em = column_em(sheet, paper, size_pt, columns) * 0.98
    min_scale = min(1.0, settings.font_min_pt / (KATEX_EM * size_pt))
    wide = set()
    for entry in (e for s in sections for e in s.entries):
        if isinstance(entry, Formula) and len(display_pieces(entry.latex)) > 1:
            found = images.get((display_tex(entry.latex), False))
            if isinstance(found, MathImage) and found.width_em * min_scale > fit_em:
                wide.add(entry.id)
    return frozenset(wide)


def overhanging_formulas(sheet: Sheet, sections: Sequence[PrintedSection],
                         images: Mapping[tuple[str, bool], str | MathImage], paper: str, size_pt: float,
                         columns: int) -> tuple[str, ...]:
    """Formulas with a piece (see `display_pieces`; typeset ones only) wider than a column at
    `size_pt` even shrunk to the smallest size: they overhang into the column gap."""
    settings = sheet.sheet.print_settings
    fit_em = column_em(sheet, paper, size_pt, columns) * 0.98
    min_scale = min(1.0, settings.font_min_pt / (KATEX_EM * size_pt))
    wide = []
    for entry in (e for s in sections for e in s.entries):
        if isinstance(entry, Formula):
            pieces = [images.get((display_tex(p), False)) for p in display_pieces(entry.latex)]
            if not all(isinstance(p, MathImage) for p in pieces):
                pieces = [images.get((display_tex(entry.latex), False))]
            if any(isinstance(p, MathImage) and p.width_em * min_scale > fit_em for p in pieces):
                wide.append(entry.id)
    return tuple(wide)


def pdf_math_requests(sheet: Sheet, sections: Sequence[PrintedSection], split: Collection[str] = ()
                      ) -> list[MathRequest]:
    """All math the printed entries need, for one KaTeX batch; all inline-mode (see display_tex).
    Formulas whose id is in `split` are requested as their `display_pieces` instead."""
    def display(entry: EntryBase, latex: str) -> tuple[str, bool]:
        return (display_tex(latex) if isinstance(entry, Formula) else latex), False

    entries = [e for s in sections for e in s.entries]
    requests = sheet_math_requests(sheet, [e for e in entries if e.id not in split], display)
    for entry in entries:
        if isinstance(entry, Formula) and entry.id in split:
            requests.extend(MathRequest.at(sheet, entry.id, "latex", display_tex(piece), False)
                            for piece in display_pieces(entry.latex))
    return requests


def all_pdf_math_requests(sheet: Sheet) -> list[MathRequest]:
    """Everything any PDF of the sheet may typeset (the full edition's entries, and each formula's
    pieces in case the fitter must wrap it), so that a build typesets all its math in one KaTeX batch."""
    sections = printed_sections(sheet, (), "full")
    formulas = {e.id for s in sections for e in s.entries if isinstance(e, Formula)}
    return pdf_math_requests(sheet, sections) + pdf_math_requests(sheet, sections, formulas)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


_CODE_HANG_CH = 4
"""A wrapped code line continues this many characters right of the line's own indentation."""
MONO_EM_PER_CHAR = 0.602
"""Advance width of DejaVu Sans Mono (1233/2048 em): the code font, so line lengths are known."""
_QUOTED = {"s", "s1", "s2", "sa", "sd", "c", "c1", "cm"}  # strings and comments: their brackets don't nest


def wrap_code_line(pieces: Sequence[tuple[str, str]], width: int) -> list[list[tuple[str, str]]]:
    """One source line (Pygments (class, text) pieces) cut into lines of at most `width` characters,
    by tokens: only at a space outside strings and comments. Among the cuts that give the fewest
    lines it takes those with the least raggedness (squared slack, as TeX does) plus a penalty per
    open bracket at the cut (about a half-empty line each), so `np.max(z, axis=-1, keepdims=True)`
    stays whole rather than leaving
    `keepdims=True)` alone. Continuations hang `_CODE_HANG_CH` right of the line's indentation. A
    line that cannot be cut stays long (it overhangs rather than breaks inside a token: `-np.inf`)."""
    chars: list[tuple[str, str]] = [(css, ch) for css, text in pieces for ch in text]
    text = "".join(ch for _, ch in chars)
    indent = len(text) - len(text.lstrip(" "))
    hang = indent + _CODE_HANG_CH
    depth_at: list[int] = []
    depth = 0
    for css, ch in chars:
        depth_at.append(depth)
        if css not in _QUOTED:
            depth += ch in "([{"
            depth -= ch in ")]}"
    cuts = [i for i in range(indent + 1, len(chars)) if text[i] == " " and text[i - 1] != " "
            and chars[i][0] not in _QUOTED]
    bracket = width ** 2 / 2  # a cut inside brackets costs about as much as a half-empty line

    @cache
    def best(start: int) -> tuple[tuple[int, float], tuple[int, ...]]:
        """((lines, cost), cuts) for the rest of the line from `start` (0: the first line)."""
        lead = 0 if start == 0 else hang
        if lead + len(chars) - start <= width:  # the last line: its slack counts too (balanced lines)
            return (1, float(width - (lead + len(chars) - start)) ** 2 if start else 0.0), ()
        options = []
        for cut in cuts:
            if start < cut and lead + cut - start <= width:
                (lines, cost), rest = best(cut + 1)
                slack = width - (lead + cut - start)
                options.append(((lines + 1, cost + slack ** 2 + bracket * depth_at[cut]), (cut, *rest)))
        return min(options) if options else ((1, 0.0), ())

    out: list[list[tuple[str, str]]] = []
    start = 0
    for cut in best(0)[1]:
        out.append(([("", " " * hang)] if start else []) + chars[start:cut])
        start = cut + 1
    out.append(([("", " " * hang)] if start else []) + chars[start:])

    def merged(line: list[tuple[str, str]]) -> list[tuple[str, str]]:
        runs: list[tuple[str, str]] = []
        for css, chunk in line:
            if runs and runs[-1][0] == css:
                runs[-1] = (css, runs[-1][1] + chunk)
            else:
                runs.append((css, chunk))
        return runs

    return [merged(line) for line in out]


def _code_html(sheet: Sheet, function: str, width: int = 60) -> Markup:
    """The formula's tested implementation, highlighted, one block per printed line: a source line
    longer than `width` characters is cut by `wrap_code_line` (here, not by the browser, which
    would break at any space and leave `keepdims=True)` alone on a line)."""
    from pygments import lex
    from pygments.lexers import PythonLexer
    from pygments.token import STANDARD_TYPES

    code = function_source(sheet.formula(function), with_docstring=False)
    lines: list[list[tuple[str, str]]] = [[]]
    for token, value in lex(code, PythonLexer()):
        while token not in STANDARD_TYPES:
            token = token.parent
        css = STANDARD_TYPES[token]
        for i, piece in enumerate(value.split("\n")):
            if i:
                lines.append([])
            if piece:
                lines[-1].append((css, piece))
    while lines and not lines[-1]:
        lines.pop()

    def line_html(pieces: list[tuple[str, str]], continued: bool) -> str:
        html = "".join(f'<span class="{css}">{escape(text)}</span>' if css else str(escape(text))
                       for css, text in pieces)
        return f'<div class="cl{" more" if continued else ""}">{html or " "}</div>'

    # Class names are Pygments' short ones; colours (and greys for mono) live in pdf_sheet.css.
    return Markup("".join(line_html(part, n > 0) for pieces in lines
                          for n, part in enumerate(wrap_code_line(pieces, width))))


@dataclass(frozen=True)
class Footer:
    """What the printed sheet says about itself, at the end of its text: where to find it online
    (with a QR code of the address), which version and when. Empty parts are left out."""

    url: str = ""
    version: str = ""
    date: str = ""
    """A day (YYYY-MM-DD), from SOURCE_DATE_EPOCH; no clock, so builds stay reproducible."""

    def __bool__(self) -> bool:
        return bool(self.url or self.version or self.date)


def qr_svg(url: str) -> str:
    """A QR code of `url` as inline SVG (segno, pure Python): medium error correction, no quiet
    zone (the footer leaves room around it), sized by CSS."""
    import segno

    return str(segno.make(url, error="m", micro=False).svg_inline(border=0, omitsize=True, dark="#000"))


def page_mm(sheet: Sheet, paper: str) -> tuple[float, float]:
    """Width and height of the page as printed (landscape turns the paper)."""
    short, long = PAPER_MM[paper]
    return (long, short) if sheet.sheet.print_settings.orientation == "landscape" else (short, long)


def column_em(sheet: Sheet, paper: str, font_size_pt: float, columns: int | None = None) -> float:
    """Width of one text column in em of the body font."""
    settings = sheet.sheet.print_settings
    columns = columns or settings.columns
    content_pt = (page_mm(sheet, paper)[0] - 2 * settings.margin_mm) * _PT_PER_MM
    gaps_pt = (columns - 1) * COLUMN_GAP_REM * font_size_pt
    return (content_pt - gaps_pt) / columns / font_size_pt


_FACT_CITE = re.compile(r"\s*\((" + _NAME + r"(?: et al\.| & " + _NAME + r")?),? ((?:1[89]|20)\d\d)\)")


def render_pdf_html(sheet: Sheet, math_html: Mapping[tuple[str, bool], str | MathImage], font_size_pt: float,
                    paper: str, tags: Sequence[str] = (), *, edition: Edition = "core", columns: int | None = None,
                    footer: Footer = Footer(), continued: Collection[str] = ()) -> str:
    """The sheet as HTML for WeasyPrint (stylesheets are passed separately, see `render_pdf`).

    `math_html` maps (tex, display) of every `pdf_math_requests` item to KaTeX HTML or to its
    image; images let wide formulas shrink to the column and short ones sit beside their name.
    `columns` overrides the configured count (subset sheets); `continued` names entries that start a
    column in the middle of their section: they get the section's heading again, "(cont.)".
    """
    settings = sheet.sheet.print_settings
    columns = columns or settings.columns
    sections = printed_sections(sheet, tags, edition)
    width_em = column_em(sheet, paper, font_size_pt, columns)
    # A formula wider than the column shrinks to fit it, but its base size (KATEX_EM of the body)
    # stays at least the minimum font size: past that it may overhang into the column gap.
    min_scale = min(1.0, settings.font_min_pt / (KATEX_EM * font_size_pt))

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
        found = math_html.get((display_tex(entry.latex), False))
        return found.width_em if isinstance(found, MathImage) else width_em

    def display(latex: str) -> Markup:
        """A display formula, shrunk to the column if wider; one too wide even at the smallest size
        is set as its `display_pieces`, which wrap like words (when they were typeset)."""
        fit_em = width_em * 0.98
        whole = math_html.get((display_tex(latex), False))
        pieces = display_pieces(latex)
        if whole is not None and not (isinstance(whole, MathImage) and len(pieces) > 1
                                      and whole.width_em * min_scale > fit_em):
            return math(display_tex(latex), fit_em)
        if not all((display_tex(p), False) in math_html for p in pieces):
            return math(display_tex(latex), fit_em)  # KeyError if the whole is missing too: a bug
        return Markup('<span class="piece"> </span>').join(math(display_tex(p), fit_em) for p in pieces)

    def formula_beside_name(entry: Formula) -> bool:
        """A short formula floats right of the name and the meaning flows beside and below it; else
        the formula goes below the text, centred (never the meaning below a formula: one order for
        every card)."""
        fits = len(entry.name) * _NAME_EM_PER_CHAR + 1.5 + formula_width(entry) <= width_em
        return fits and formula_width(entry) <= 0.6 * width_em

    def short_cite(works: str) -> Markup:
        """The short citation, after the meaning: an en space, then the works, with no-break spaces
        only in "et al." and before a year or section (a line may still break between authors: a
        whole unbreakable citation overflows onto a formula floated beside it in WeasyPrint 70).
        Not a `white-space: nowrap` span, nor a spacer span: beside a float, WeasyPrint 70 then
        pushes the line before them below the float, leaving a hole."""
        text = re.sub(r" (?=al\.|(?:1[89]|20)\d\d\b|§)", "\N{NO-BREAK SPACE}", works)
        return Markup('\N{EN SPACE}<span class="source">{}</span>').format(text)

    def fact_text(text: str) -> Markup:
        """A fact's text, citing like the formulas: a closing "(Mikolov et al., 2013)" becomes the grey
        short citation after the text ("… context. Mikolov et al. 2013"); one inside the text stays
        in place, grey, in parentheses."""
        out = Markup("")
        at = 0
        for found in _FACT_CITE.finditer(text):
            work = f"{found.group(1)} {found.group(2)}"
            tail = text[found.end():]
            out += prose(text[at:found.start()])
            if tail.strip() in ("", "."):
                return out + prose(tail.strip()) + short_cite(work)
            out += Markup(' <span class="source">({})</span>').format(work.replace(" ", "\N{NO-BREAK SPACE}"))
            at = found.end()
        return out + prose(text[at:]) if text[at:] else out

    small_pt = max(SMALL_EM * font_size_pt, settings.font_min_pt)
    # Characters per code line: the column less the code block's padding (0.25rem each side) and
    # rule (1.5pt), in advances of the mono font at the small size; one spare for rounding.
    code_chars = int((width_em * font_size_pt - 0.5 * font_size_pt - 1.5) / (MONO_EM_PER_CHAR * small_pt)) - 1
    keywords = sorted({t for s in sections for e in s.entries for t in e.tags})
    notes = [f"entries tagged {', '.join(tags)}" if tags else "",
             "full edition" if edition == "full" and not tags else ""]
    return _environment().get_template(TEMPLATE).render(
        info=sheet.sheet,
        sections=sections,
        page_size=f"{'A4' if paper == 'a4' else 'letter'} {settings.orientation}",
        margin_mm=f"{settings.margin_mm:g}",
        font_size_pt=f"{font_size_pt:g}",
        small_pt=f"{small_pt:.4g}",
        columns=columns,
        color=settings.color,
        keywords=", ".join(keywords),
        date=footer.date,
        footer=footer,
        qr=Markup(qr_svg(footer.url)) if footer.url else "",
        continued=frozenset(continued),
        filter_note=" · ".join(n for n in notes if n),
        prose=prose,
        fact_text=fact_text,
        display=display,
        beside=formula_beside_name,
        inline=math,
        cite=lambda source: short_cite(short_citation(source)),
        code=lambda function: _code_html(sheet, function, code_chars),
    )
