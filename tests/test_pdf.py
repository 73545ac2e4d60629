"""The PDFs: the core edition is exactly one page and the full one at most two, on A4 and Letter; they
hold every title and name, no raw TeX, the footer (URL, version) and "(cont.)" headings where a section
continues; no text below the stated floors; deterministic whatever the caches hold; clean failures
when the content is too long; nothing fetched outside the assets."""

from __future__ import annotations

import datetime
import io
import math
import os
import re
import shutil
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import pytest

from sheetgen.cli import main
from sheetgen.katex import KatexRenderer, katex_dist_dir
from sheetgen.model import Formula, Sheet
from sheetgen.pdf import atlas as pdf_atlas
from sheetgen.pdf import engine as pdf_engine
from sheetgen.pdf import fit as pdf_fit
from sheetgen.pdf.make import (
    FetchRefusedError,
    RenderedPdf,
    asset_fetcher,
    pdf_math_requests,
    printed_sections,
    render_pdf,
    render_pdf_html,
    short_citation,
)
from sheetgen.render import pdf_html, pdf_math
from tests.conftest import SHEET_PATH, needs_katex

pytestmark = needs_katex
slow = pytest.mark.slow


def build(sheet: Sheet, cache: Path, paper: str, **options: object) -> RenderedPdf:
    return render_pdf(sheet, KatexRenderer(cache_path=cache / "katex.json"), paper=paper,
                      fit_cache_path=cache / "fit.json", math_cache_path=cache / "math.json", **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KaTeX, formula-image and fit caches warmed by the shipped build: `built` is then a warm build
    (test_same_bytes_whatever_the_caches_hold compares it with a cold one, byte for byte)."""
    from tests.sitehelpers import shipped_build

    folder = tmp_path_factory.mktemp("pdf-cache")
    warm = shipped_build() / "build" / ".cache"
    for name, copy in (("katex.json", "katex.json"), ("pdf-fit.json", "fit.json"), ("pdf-math.json", "math.json")):
        if (warm / name).is_file():
            shutil.copyfile(warm / name, folder / copy)
    return folder


@pytest.fixture(scope="module")
def built(sheet: Sheet, cache: Path) -> dict[str, RenderedPdf]:
    """Both editions on both papers: "a4", "letter" (core) and "a4-full", "letter-full"."""
    core = {paper: build(sheet, cache, paper) for paper in ("a4", "letter")}
    return core | {f"{paper}-full": build(sheet, cache, paper, edition="full") for paper in ("a4", "letter")}


def text_of(pdf: bytes) -> str:
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return " ".join(unicodedata.normalize("NFKC", text).split())  # ligatures, line breaks


@slow
@pytest.mark.parametrize("paper", ["a4", "letter", "a4-full", "letter-full"])
def test_pages_at_a_readable_size(built: dict[str, RenderedPdf], paper: str) -> None:
    """Core: exactly one page; full: at most two (one sheet, both sides); both at ≥ 6.5 pt."""
    from pypdf import PdfReader

    result = built[paper]
    pages = PdfReader(io.BytesIO(result.pdf)).pages
    if paper.endswith("-full"):
        assert result.pages == len(pages) <= 2
    else:
        assert result.pages == len(pages) == 1
    assert result.font_size_pt >= 6.5
    for page in pages:
        width, height = (float(v) for v in page.mediabox[2:])
        expected = {"a4": (841.9, 595.3), "letter": (792.0, 612.0)}[paper.split("-")[0]]  # landscape, in points
        assert (round(width, 1), round(height, 1)) == expected


@slow
@pytest.mark.parametrize("paper", ["a4", "letter", "a4-full", "letter-full"])
def test_the_fit_uses_the_page(built: dict[str, RenderedPdf], paper: str) -> None:
    """The largest size that fits: the columns are nearly full (the last one is not left a sixth
    empty), and one step up would not fit (the search found the edge, not a size below it)."""
    result = built[paper]
    pages = 2 if paper.endswith("-full") else 1
    assert result.fill > 0.9 * min(pages, result.pages), result.fill


def text_sizes(pdf: bytes) -> list[tuple[float, str, str, int]]:
    """(size in pt, font, text, script level) of every text run a reader has to read, measured in the PDF itself.

    How: pypdf's text visitor reports, for each text-showing operator, the font, the `Tf` size and
    the text and current transformation matrices (form XObjects included). The printed size is
    Tf × the vertical scale of Tm × CTM: WeasyPrint sets text in px under a px→pt CTM, and draws
    each formula image (an SVG of KaTeX's layout, see sheetgen/pdf/atlas.py) under one more scaling CTM.
    Glyph boxes (`pdftotext -bbox`) would measure ascent + descent instead, which varies by font.

    Every run counts: the sheet's own fonts (names, body, meanings, sources, code, step points,
    headings, title, footer) and every math run, sub/superscripts included. A math run is
    recognisable by its KaTeX font; its script level comes from its size in the formula image, which
    keeps the atlas's px sizes: the base size is REFERENCE_PX × KATEX_EM (level 0; big operators and
    delimiters are larger), first-level scripts 0.7 of it (level 1), second-level 0.5 (level 2).
    """
    from pypdf import PdfReader

    math_base = pdf_atlas.REFERENCE_PX * pdf_math.KATEX_EM
    first, second = pdf_atlas.SCRIPT_RATIOS
    runs: list[tuple[float, str, str, int]] = []

    def visit(text: str, cm: Sequence[float], tm: Sequence[float], font: dict[str, object] | None,
              size: float) -> None:
        if not text.strip() or font is None:
            return
        name = str(font.get("/BaseFont", "")).split("+")[-1]
        level = 0
        if "KaTeX_" in name and size < math_base - 0.01:
            level = 1 if size > (first + second) / 2 * math_base else 2
        # vertical scale of Tm × CTM: the length of its second row (x-scale can differ: condensed fonts)
        c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
        runs.append((size * math.hypot(c, d), name, text, level))

    for page in PdfReader(io.BytesIO(pdf)).pages:
        page.extract_text(visitor_text=visit)
    return runs


@slow
@pytest.mark.parametrize("paper", ["a4", "letter", "a4-full"])
def test_smallest_text_is_at_least_the_stated_floors(built: dict[str, RenderedPdf], sheet: Sheet,
                                                     paper: str) -> None:
    """What the README states, measured on every text run of the PDF: text and each formula's base
    size are at least `font_min_pt` (6.5 pt); KaTeX's sub/superscripts at least 0.7 (first level) and
    0.5 (second level) of it: 4.55 and 3.25 pt."""
    runs = text_sizes(built[paper].pdf)
    assert sum("KaTeX_" in name for _, name, _, _ in runs) > 100, "no math found: is the measure still right?"
    assert sum("KaTeX_" not in name for _, name, _, _ in runs) > 300, "too little text found"
    assert {level for *_, level in runs} == {0, 1, 2}, "no scripts of both levels: is the measure still right?"
    floor = max(6.5, sheet.sheet.print_settings.font_min_pt)
    floors = {0: floor, 1: pdf_atlas.SCRIPT_RATIOS[0] * floor, 2: pdf_atlas.SCRIPT_RATIOS[1] * floor}
    small = sorted({(level, round(size, 2), name, t[:40]) for size, name, t, level in runs
                    if size < floors[level] - 0.01})
    assert not small, f"{len(small)} runs below their floor (level, size, font, text), e.g. {small[:5]}"


@slow
@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_text_layer_has_every_title_and_name_and_no_tex(built: dict[str, RenderedPdf], sheet: Sheet,
                                                        paper: str) -> None:
    text = text_of(built[paper].pdf)
    assert sheet.sheet.title in text
    for section in printed_sections(sheet):
        assert section.title in text, section.title
        for entry in section.entries:
            if isinstance(entry, Formula):
                assert " ".join(entry.name.split()) in text, entry.name
                # a line may break after a hyphen in a citation ("scikit-" / "learn")
                assert short_citation(entry.source) in text.replace("- ", "-"), entry.source
    for raw in ("\\frac", "\\sum", "$", "\\sqrt", "\\hat"):
        assert raw not in text, f"raw TeX {raw!r} in the PDF text"


@slow
def test_metadata_comes_from_the_yaml(built: dict[str, RenderedPdf], sheet: Sheet) -> None:
    from pypdf import PdfReader

    meta = PdfReader(io.BytesIO(built["a4"].pdf)).metadata
    assert meta is not None and meta.title == sheet.sheet.title
    assert meta.author == sheet.sheet.author and meta.subject == sheet.sheet.subtitle
    # No clock in the file: no date at all, or exactly the one SOURCE_DATE_EPOCH gives (make sets it).
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        assert "/CreationDate" not in meta
    else:
        stamp = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("D:%Y%m%d%H%M%S")
        assert str(meta["/CreationDate"]).startswith(stamp)


@slow
def test_same_yaml_same_bytes_cold_or_cached(built: dict[str, RenderedPdf], sheet: Sheet, cache: Path,
                                             tmp_path: Path) -> None:
    cached = build(sheet, cache, "a4")
    assert cached.renders == 1  # the fit cache knows the answer for unchanged content
    assert cached.pdf == built["a4"].pdf
    # cold: test_same_bytes_whatever_the_caches_hold starts with a cold build and compares it too


@slow
def test_same_bytes_whatever_the_caches_hold(sheet: Sheet, tmp_path: Path, built: dict[str, RenderedPdf]) -> None:
    """Issue 9 §5, exactly: cold build → PDF A; build an edited sheet with the same cache; clear only
    the PDF cache; build the original again → PDF B == A. And a cache hit refreshes its entry's age."""
    from sheetgen.build import build_pdf

    cache = tmp_path / "cache"
    text = SHEET_PATH.read_text(encoding="utf-8")
    formula = next(f for f in sheet.formulas() if f.in_edition("core"))
    edited = text.replace(f"latex: '{formula.latex}'", f"latex: '{formula.latex} + 1'", 1)
    assert edited != text

    def pdf(yaml_text: str) -> bytes:
        return build_pdf(yaml_text, str(SHEET_PATH), renderer=KatexRenderer(cache / "katex.json"),
                         cache_dir=cache).pdf

    first = pdf(text)
    assert first == built["a4"].pdf  # cold (through build_pdf) or warm (the module's caches): the same bytes
    assert pdf(edited) != first
    shutil.rmtree(cache / "pdf")
    assert pdf(text) == first

    cached = sorted((cache / "pdf").glob("*.pdf"))
    assert len(cached) == 1
    os.utime(cached[0], (1_000_000_000, 1_000_000_000))
    assert pdf(text) == first  # a hit …
    assert cached[0].stat().st_mtime > 1_000_000_000  # … counts as a use (LRU by last use)


@slow
def test_source_date_epoch_sets_the_dates(sheet: Sheet, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypdf import PdfReader

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    meta = PdfReader(io.BytesIO(build(sheet, cache, "a4").pdf)).metadata
    assert meta is not None and str(meta["/CreationDate"]).startswith("D:20231114")


@slow
def test_tags_keep_only_tagged_entries(sheet: Sheet, cache: Path, built: dict[str, RenderedPdf]) -> None:
    tag = next(t for e in sheet.entries() for t in e.tags)
    result = build(sheet, cache, "a4", tags=(tag,))
    text = text_of(result.pdf)
    formulas = [e for e in sheet.entries() if isinstance(e, Formula) and e.in_edition("core")]
    kept = [e.name for e in formulas if tag in e.tags]
    dropped = [e.name for e in formulas if tag not in e.tags and not any(e.name in k for k in kept)]
    assert kept and dropped
    assert all(name in text for name in kept) and not any(name in text for name in dropped)
    assert f"entries tagged {tag}" in text
    assert result.font_size_pt >= built["a4"].font_size_pt  # less content, no smaller type


@slow
def test_a_subset_sheet_fills_its_page(sheet: Sheet, cache: Path, built: dict[str, RenderedPdf]) -> None:
    """Issue 11: `--tags attention optimizer` filled one column at the 9 pt cap and left three
    quarters of the page blank. A subset may go up to subset_font_max_pt and use fewer columns."""
    result = build(sheet, cache, "a4", tags=("attention", "optimizer"))
    assert result.pages == 1 and result.fill >= 0.8, (result.fill, result.columns, result.font_size_pt)
    assert result.font_size_pt > built["a4"].font_size_pt
    assert result.font_size_pt <= sheet.sheet.print_settings.subset_font_max_pt


@slow
@pytest.mark.parametrize("paper", ["a4", "letter", "a4-full"])
def test_footer_and_continued_sections(built: dict[str, RenderedPdf], sheet: Sheet, paper: str) -> None:
    """The footer prints the site's URL, the version and (with SOURCE_DATE_EPOCH) the day; a section
    that continues at the top of a column repeats its heading with "(cont.)", and only there."""
    from sheetgen.pdf.make import default_footer

    result = built[paper]
    text = text_of(result.pdf)
    footer = default_footer(sheet)
    assert sheet.sheet.url and sheet.sheet.url in text
    assert f"version {footer.version}" in text and footer.version
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        assert datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).strftime("%Y-%m-%d") in text
    titles = {e.id: s.title for s in printed_sections(sheet, edition=result.edition) for e in s.entries}  # type: ignore[arg-type]
    assert result.continued, "no section continues in another column: is the layout still 4 columns?"
    for entry_id in result.continued:
        assert f"{titles[entry_id]} (cont.)" in text
    assert text.count("(cont.)") == len(result.continued)


def test_html_escapes_prose_and_honours_print_and_mono(sheet: Sheet) -> None:
    renderer = KatexRenderer(cache_path=None)
    sections = printed_sections(sheet)
    math = renderer.render_map(pdf_math_requests(sheet, sections))
    html = render_pdf_html(sheet, math, 7.0, "a4")
    assert "<script" not in html and "font-size: 7pt" in html
    mono = sheet.model_copy(update={"sheet": sheet.sheet.model_copy(update={
        "print_settings": sheet.sheet.print_settings.model_copy(update={"color": "mono"})})})
    assert '<body class="mono">' in render_pdf_html(mono, math, 7.0, "a4")
    hidden = sections[0].entries[0]
    flags = sheet.model_copy(update={"sections": tuple(
        s.model_copy(update={"entries": tuple((e.model_copy(update={"print_edition": False}) if e is hidden else e)
                                              for e in s.entries)}) for s in sheet.sections)})
    assert f'id="{hidden.id}"' in html and f'id="{hidden.id}"' not in render_pdf_html(flags, math, 7.0, "a4")


def test_facts_cite_like_formulas(sheet: Sheet) -> None:
    """Issue 11: NLP facts cited inline in black "(Mikolov et al., 2013)" while formulas carry a grey
    short citation. Every "(Authors, year)" in a fact is now grey; a closing one goes after the text."""
    from sheetgen.model import Fact

    renderer = KatexRenderer(cache_path=None)
    sections = printed_sections(sheet, edition="full")
    html = render_pdf_html(sheet, renderer.render_map(pdf_math_requests(sheet, sections)), 7.0, "a4", edition="full")
    cited = [e for s in sections for e in s.entries
             if isinstance(e, Fact) and re.search(r"\([A-Z][^()]*\b(?:19|20)\d\d\)", e.text)]
    assert cited, "no fact cites a work: the test has nothing to check"
    work = re.compile(r"\(([A-Z][\w'’-]+(?: et al\.| & [A-Z][\w'’-]+)?),? ((?:19|20)\d\d)\)")
    for fact in cited:
        card = html[html.index(f'id="{fact.id}"'):].split("</div>", 1)[0].replace("\N{NO-BREAK SPACE}", " ")
        for names, year in work.findall(fact.text):
            assert f"{names}, {year}" not in card, fact.id
            assert re.search(rf'<span class="source">\(?{re.escape(names)} {year}\)?</span>', card), (fact.id, card)


@pytest.mark.parametrize(("source", "short"), [
    ("Kingma & Ba, Adam (ICLR 2015), Algorithm 1", "Kingma & Ba 2015"),
    ("Strang, Introduction to Linear Algebra (5th ed., 2016), §1.2", "Strang 2016"),
    ("Goodfellow, Bengio & Courville, Deep Learning (2016), §6.5.2", "Goodfellow et al. 2016"),
    ("Manning, Raghavan & Schütze, Introduction to Information Retrieval (2008), §6.3.1", "Manning et al. 2008"),
    ("Glorot & Bengio (2010), eq. 12 (its uniform form is eq. 16)", "Glorot & Bengio 2010"),
    ("He et al., Deep Residual Learning (2016), §3.2", "He et al. 2016"),
    ("Smith, Dropout (2014), §2", "Smith 2014"),  # a one-word title is not a second author
    ("Polyak (1964); Sutskever et al., On the importance of initialization and momentum (ICML 2013), §2",
     "Polyak 1964; Sutskever et al. 2013"),
    ("Hochreiter & Schmidhuber (1997); gate form of Gers et al. (2000) as in PyTorch LSTMCell",
     "Hochreiter & Schmidhuber 1997; Gers et al. 2000"),
    ("Elman, Finding Structure in Time (1990); as in PyTorch nn.RNNCell", "Elman 1990"),
    ("Jurafsky & Martin, Speech and Language Processing (3rd ed. draft), §3.3", "Jurafsky & Martin"),
    ("scikit-learn User Guide, Model evaluation, Precision, recall and F-measures", "scikit-learn User Guide"),
])
def test_short_citation_is_authors_and_year(source: str, short: str) -> None:
    assert short_citation(source) == short


def test_short_citations_of_the_shipped_sources_are_short(sheet: Sheet) -> None:
    assert short_citation("Goodfellow, Bengio & Courville, Deep Learning (2016), §6.5.2",
                          locator=True) == "Goodfellow et al. 2016 §6.5.2"
    for entry in sheet.entries():
        if isinstance(entry, Formula):
            short = short_citation(entry.source)
            assert len(short) <= 50, (entry.id, short)
            years = re.findall(r"\b(?:19|20)\d\d\b", entry.source)
            assert not years or years[0] in short, (entry.id, short)


def test_code_lines_wrap_only_between_words(sheet: Sheet) -> None:
    """Printed lines are the source lines cut at spaces (never inside a token such as `-np.inf`),
    continuations hang under their own indentation + 4, and a line fits the given width."""
    import html as html_module
    from xml.etree import ElementTree

    from sheetgen.render.code import function_source

    function = next(e.function for e in sheet.entries() if e.kind == "snippet")
    code = function_source(sheet.formula(function), with_docstring=False)
    for width in (30, 40, 48):
        root = ElementTree.fromstring(f"<root>{pdf_html._code_html(sheet, function, width)}</root>")
        printed = [html_module.unescape("".join(div.itertext())) for div in root.findall("div")]
        assert all(len(line) <= width or " " not in line.strip() for line in printed), (width, printed)
        rebuilt: list[str] = []
        for div, line in zip(root.findall("div"), printed, strict=True):
            if div.get("class") == "cl more":  # a continuation: hangs 4 right of its line's indentation
                hang = len(rebuilt[-1]) - len(rebuilt[-1].lstrip(" ")) + 4
                assert line.startswith(" " * hang) and line[hang] != " "
                rebuilt[-1] += " " + line[hang:]  # the cut was at one space
            else:
                rebuilt.append(line)
        assert rebuilt == code.rstrip("\n").splitlines()


@pytest.mark.parametrize(("line", "width", "expected"), [
    # the case: `keepdims=True)` alone; now the call stays whole and the break comes before it
    ("    e = np.exp(z - np.max(z, axis=axis, keepdims=True))", 48,
     ["    e = np.exp(z -", "        np.max(z, axis=axis, keepdims=True))"]),
    ("    return e / np.sum(e, axis=axis, keepdims=True)", 48,
     ["    return e /", "        np.sum(e, axis=axis, keepdims=True)"]),
    ("    return np.mean(per_sample)", 48, ["    return np.mean(per_sample)"]),  # fits: untouched
    ("    x = 'a b c d e f g h i j k l m n o p q r s t u v w x y z'", 20,  # no cut inside a string
     ["    x =", "        'a b c d e f g h i j k l m n o p q r s t u v w x y z'"]),
    # balanced lines: "…(mask," + "scores, -np.inf)" (squared slack 81 + 144) beats "…(mask, scores," +
    # "-np.inf)" (1 + 400); both cut at one open bracket. Never between - and np.inf.
    ("    scores = np.where(mask, scores, -np.inf)", 36,
     ["    scores = np.where(mask,", "        scores, -np.inf)"]),
])
def test_code_is_cut_by_tokens(line: str, width: int, expected: list[str]) -> None:
    from pygments import lex
    from pygments.lexers import PythonLexer
    from pygments.token import STANDARD_TYPES

    pieces = []
    for token, value in lex(line, PythonLexer()):
        while token not in STANDARD_TYPES:
            token = token.parent
        if value.strip("\n"):
            pieces.append((STANDARD_TYPES[token], value.strip("\n")))
    cut = ["".join(text for _, text in part) for part in pdf_html.wrap_code_line(pieces, width)]
    assert cut == expected


@pytest.mark.parametrize(("latex", "pieces"), [
    ("a = b", ["a = b"]),  # one relation: nowhere to cut
    (r"a = b \approx c", ["a = b", r"{}\approx c"]),
    (r"x, \quad y = f(a = b)", ["x,", "y = f(a = b)"]),  # `=` inside brackets is not top-level
    (r"\left( a = b \right) = c", [r"\left( a = b \right) = c"]),
    (r"\begin{cases} a = b \\ c = d \end{cases} = e", [r"\begin{cases} a = b \\ c = d \end{cases} = e"]),
    (r"\delta = u, \; v = w", [r"\delta = u,", "v = w"]),  # `, \;` separates statements
    (r"a \, b = c", [r"a \, b = c"]),  # a thin space without a comma does not
])
def test_wide_formulas_are_cut_between_statements_and_before_relations(latex: str, pieces: list[str]) -> None:
    assert list(pdf_html.display_pieces(latex)) == pieces


def test_editions_choose_entries_and_true_means_core(sheet: Sheet) -> None:
    from sheetgen.loader import load_sheet_text

    text = SHEET_PATH.read_text(encoding="utf-8")
    first = next(e for e in sheet.entries())
    marker = f"id: {first.id}\n"
    for value, core, full in (("core", True, True), ("full", False, True), ("false", False, False),
                              ("true", True, True)):
        edited = load_sheet_text(text.replace(marker, f"{marker}        print: {value}\n", 1), "f.yaml")
        entry = next(edited.entries())
        assert (entry.in_edition("core"), entry.in_edition("full")) == (core, full), value
        ids = {e.id for s in printed_sections(edited, edition="core") for e in s.entries}
        assert (entry.id in ids) == core
    full_only = [e for e in sheet.entries() if e.print_edition == "full"]
    core_ids = {e.id for s in printed_sections(sheet) for e in s.entries}
    full_ids = {e.id for s in printed_sections(sheet, edition="full") for e in s.entries}
    assert core_ids < full_ids and all(e.id in full_ids and e.id not in core_ids for e in full_only)
    assert full_ids == {e.id for e in sheet.entries() if e.print_on_sheet}


def test_read_columns_finds_sections_continued_at_a_column_top() -> None:
    """The box-tree reading behind "(cont.)": an entry at the top of a column mid-section needs a
    heading; an entry given one is reported as headed; a section's first entry needs none."""
    engine = pdf_engine.engine()
    style = ("<style>@page{size:200px 120px;margin:0} body{margin:0} .cols{column-count:2;column-fill:auto}"
             ".e,.keep{break-inside:avoid} h2{margin:0;font-size:10px} .e{height:50px}</style>")

    def html(headed: str = "") -> str:
        entries = "".join(f'<div class="keep" data-cont="a{i}"><h2>A (cont.)</h2><div class="e" id="a{i}"></div></div>'
                          if f"a{i}" == headed else f'<div class="e" id="a{i}"></div>' for i in range(2, 5))
        return (f'{style}<main class="cols"><section><div class="keep"><h2>A</h2><div class="e" id="a1"></div>'
                f'</div>{entries}</section></main>')

    plain = pdf_fit.read_columns(engine.layout(html(), []), 2)
    assert plain.needs_heading == {"a3"} and not plain.headed  # a1+a2 fill column 1
    headed = pdf_fit.read_columns(engine.layout(html("a3"), []), 2)
    assert headed.headed == {"a3"} and "a3" not in headed.needs_heading
    assert 0.8 < plain.fill <= 1.0  # 10 + 4 × 50 px of 2 × 120


def test_weasyprint_internals_we_read() -> None:
    """WeasyPrint has no public box API; sheetgen/pdf/fit.py's read_columns and atlas.py read its box tree. This
    names what broke when a WeasyPrint upgrade changes it (pyproject pins weasyprint~=70.0 for it)."""
    import weasyprint
    from weasyprint.formatting_structure import boxes

    engine = pdf_engine.engine()
    document = engine.layout('<main class="cols" style="column-count:2"><section><p id="x">text '
                             '<span style="position:absolute">abs</span></p></section></main>', [])
    page = document.pages[0]
    assert hasattr(page, "_page_box"), f"weasyprint {weasyprint.__version__}: Page._page_box is gone"
    seen: list[object] = []
    stack = [page._page_box]
    while stack:
        box = stack.pop()
        seen.append(box)
        for name in ("element", "element_tag", "children", "position_x", "position_y"):
            assert hasattr(box, name) or name == "children", f"boxes have no `{name}` any more"
        stack.extend(getattr(box, "children", ()))
    mains = [b for b in seen if getattr(b, "element_tag", None) == "main"]
    assert len(mains) >= 2, "a multi-column box no longer holds one child box per column"
    for box in mains:
        assert callable(box.is_in_normal_flow) and callable(box.margin_height), "box geometry methods changed"
    assert any(hasattr(b, "_box") for b in seen), "absolutely positioned boxes lost their `_box` placeholder"
    assert issubclass(boxes.TextBox, boxes.Box) and any(isinstance(b, boxes.TextBox) for b in seen), \
        "weasyprint.formatting_structure.boxes.TextBox moved"


def test_atlas_image_does_not_depend_on_the_batch() -> None:
    """Issue 9 §5: a formula laid out alone gave other bytes than in a batch (the first atlas item
    sat lower by the body margin). Now each item is the same image wherever it lands."""
    renderer = KatexRenderer(cache_path=None)
    from sheetgen.katex import MathRequest

    a, b = renderer.render([MathRequest(r"\displaystyle \frac{a}{b_i}", False, "x"),
                            MathRequest(r"\displaystyle \sum_j x_j^2", False, "x")])
    engine = pdf_engine.engine()

    def images(batch: list[str]) -> list[pdf_math.MathImage]:
        document = engine.layout(pdf_atlas.atlas_html(batch), engine.atlas_stylesheets())
        return pdf_atlas.images_from_atlas(document, len(batch))

    alone = images([a])[0]
    assert images([b, a])[1] == alone and images([a, b])[0] == alone


# --- the command line -------------------------------------------------------------------------------

def tripled(text: str) -> str:
    """The sheet with every section three times (ids and function names renamed to stay unique)."""
    head, _, sections = text.partition("\nsections:\n")
    ids = re.findall(r"^\s*-?\s*id: ([a-z][a-z0-9_]*)\s*$", sections, flags=re.M)
    copies = [sections]
    for n in (2, 3):
        copy = sections
        for ident in ids:
            copy = re.sub(rf"(id: |function: |def ){ident}\b", rf"\g<1>{ident}_{n}", copy)
            copy = re.sub(rf"\b{ident}\(", f"{ident}_{n}(", copy)  # calls, in doctests and implementations
        copies.append(copy)
    return head + "\nsections:\n" + "\n".join(c.rstrip("\n") + "\n" for c in copies)


@slow
def test_cli_builds_skips_when_unchanged_and_keeps_pdf_on_overflow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, cache, preview = tmp_path / "out" / "sheet.pdf", tmp_path / "cache", tmp_path / "out" / "sheet.png"
    args = ["-o", str(out), "--cache-dir", str(cache)]
    assert main(["pdf", "-f", str(SHEET_PATH), *args, "--preview", str(preview)]) == 0
    progress = capsys.readouterr().out  # progress on stdout; stderr is kept for problems
    assert re.search(r"katex: \d+ formulas \(\d+ cached\)", progress)  # the check typesets all math first
    assert re.search(r"fit: [\d.]+ pt, 4 columns, 1 page in \d+ render", progress)
    assert re.search(r"wrote .*sheet\.pdf \(1 page, \d+ KB", progress)
    if shutil.which("pdftoppm"):
        assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = out.read_bytes()

    assert main(["pdf", "-f", str(SHEET_PATH), *args]) == 0
    assert "up to date" in capsys.readouterr().out

    big = tmp_path / "big.yaml"
    big.write_text(tripled(SHEET_PATH.read_text(encoding="utf-8")), encoding="utf-8")
    assert main(["pdf", "-f", str(big), *args]) == 1
    err = capsys.readouterr().err
    assert "does not fit on one page even at the smallest font size" in err
    assert "largest sections are" in err and "print: false" in err and "--tags" in err
    assert out.read_bytes() == first


@slow
def test_cli_edition_full_reaches_the_renderer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`sheetgen pdf --edition full` asks build_pdf for the full edition (rendering it is tested above)."""
    import sheetgen.build
    from sheetgen.build import PdfBuild

    asked: list[object] = []

    def fake_build_pdf(*args: object, **options: object) -> PdfBuild:
        asked.append(options.get("edition"))
        return PdfBuild(b"%PDF-1.7 fake", "key", cached=False, pages=2)

    monkeypatch.setattr(sheetgen.build, "build_pdf", fake_build_pdf)
    out = tmp_path / "full.pdf"
    assert main(["pdf", "-f", str(SHEET_PATH), "--edition", "full", "-o", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert asked == ["full"] and out.read_bytes() == b"%PDF-1.7 fake"
    assert "(2 pages" in capsys.readouterr().out


# --- fetching ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["file:///etc/passwd", "http://example.com/x.css", "https://example.com/f.ttf",
                                 "ftp://example.com/x", "file:///dev/zero"])
def test_fetcher_refuses_everything_outside_the_assets(url: str) -> None:
    with pytest.raises(FetchRefusedError):
        asset_fetcher().fetch(url)


def test_fetcher_allows_katex_fonts_and_data_urls() -> None:
    font = katex_dist_dir() / "fonts" / "KaTeX_Main-Regular.ttf"
    assert asset_fetcher().fetch(font.as_uri()).read()[:4] == b"\x00\x01\x00\x00"
    assert asset_fetcher().fetch("data:text/plain,hi").read() == b"hi"


@slow
def test_a_forbidden_url_stops_the_render() -> None:
    engine = pdf_engine.engine()
    with pytest.raises(FetchRefusedError, match="/etc/passwd"):
        engine.layout('<p>x<img src="file:///etc/passwd"></p>', [])
    with pytest.raises(FetchRefusedError, match=r"example\.com"):
        engine.layout('<style>@import url("http://example.com/a.css");</style><p>x</p>', [])


# --- the size search, without WeasyPrint ------------------------------------------------------------

@pytest.mark.parametrize("edge", [-1, 0, 1, 5, 9, 10])
@pytest.mark.parametrize("start", [0, 3, 5, 10])
def test_search_finds_the_last_size_that_fits(edge: int, start: int) -> None:
    """Sizes 0..10; sizes up to `edge` fit. Fill grows with the square of the size, as in a layout."""
    sizes = [6.5 + 0.25 * i for i in range(11)]
    fill_at_edge = {i: (sizes[i] / sizes[max(edge, 0)]) ** 2 * (0.97 if edge >= 0 else 1.2) for i in range(11)}
    probes: dict[int, pdf_fit.Probe] = {}
    rounds: list[list[int]] = []

    def run_probes(indices: Sequence[int]) -> None:
        rounds.append(list(indices))
        assert len(indices) <= 2
        for i in indices:
            assert i not in probes, "probed twice"
            probes[i] = pdf_fit.Probe(1 if i <= edge else 2, fill_at_edge[i])

    assert pdf_fit.search(sizes, start, probes, run_probes) == edge
    assert len(rounds) <= 4
    if abs(start - edge) <= 1:
        assert len(rounds) <= 2
