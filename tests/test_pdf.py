"""The one-page PDF: fits on A4 and Letter, holds every title and name, no raw TeX, deterministic,
fails cleanly when the content is too long, and fetches nothing outside its assets."""

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
from sheetgen.render import pdf_atlas, pdf_engine, pdf_fit, pdf_html
from sheetgen.render.pdf import (
    FetchRefusedError,
    RenderedPdf,
    asset_fetcher,
    pdf_math_requests,
    printed_sections,
    render_pdf,
    render_pdf_html,
    short_citation,
)
from tests.conftest import SHEET_PATH, needs_katex

pytestmark = needs_katex
slow = pytest.mark.slow


def build(sheet: Sheet, cache: Path, paper: str, **options: object) -> RenderedPdf:
    return render_pdf(sheet, KatexRenderer(cache_path=cache / "katex.json"), paper=paper,
                      fit_cache_path=cache / "fit.json", math_cache_path=cache / "math.json", **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pdf-cache")


@pytest.fixture(scope="module")
def built(sheet: Sheet, cache: Path) -> dict[str, RenderedPdf]:
    return {paper: build(sheet, cache, paper) for paper in ("a4", "letter")}


def text_of(pdf: bytes) -> str:
    from pypdf import PdfReader

    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    return " ".join(unicodedata.normalize("NFKC", text).split())  # ligatures, line breaks


@slow
@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_one_page_at_a_readable_size(built: dict[str, RenderedPdf], paper: str) -> None:
    from pypdf import PdfReader

    result = built[paper]
    assert result.pages == 1 and len(PdfReader(io.BytesIO(result.pdf)).pages) == 1
    assert result.font_size_pt >= 6.5
    width, height = (float(v) for v in PdfReader(io.BytesIO(result.pdf)).pages[0].mediabox[2:])
    expected = {"a4": (841.9, 595.3), "letter": (792.0, 612.0)}[paper]  # landscape, in points
    assert (round(width, 1), round(height, 1)) == expected


def text_sizes(pdf: bytes) -> list[tuple[float, str, str]]:
    """(size in pt, font, text) of every text run a reader has to read, measured in the PDF itself.

    How: pypdf's text visitor reports, for each text-showing operator, the font, the `Tf` size and
    the text and current transformation matrices (form XObjects included). The printed size is
    Tf × the vertical scale of Tm × CTM: WeasyPrint sets text in px under a px→pt CTM, and draws
    each formula image (an SVG of KaTeX's layout, see pdf_atlas.py) under one more scaling CTM.
    Glyph boxes (`pdftotext -bbox`) would measure ascent + descent instead, which varies by font.

    What counts: every run in the sheet's own fonts (names, body, meanings, sources, code, step
    points, headings, title) and every math run set at its formula's base size. KaTeX sets
    sub/superscripts at 0.7 and 0.5 of the formula's size by design; they are left out. They are
    recognisable: a formula image keeps the atlas's px sizes, where the base size is
    REFERENCE_PX × KATEX_EM and scripts are smaller (big operators and delimiters are not).
    """
    from pypdf import PdfReader

    math_base = pdf_atlas.REFERENCE_PX * pdf_atlas.KATEX_EM
    runs: list[tuple[float, str, str]] = []

    def visit(text: str, cm: Sequence[float], tm: Sequence[float], font: dict[str, object] | None,
              size: float) -> None:
        if not text.strip() or font is None:
            return
        name = str(font.get("/BaseFont", "")).split("+")[-1]
        if "KaTeX_" in name and size < math_base - 0.01:
            return  # a KaTeX sub/superscript (scriptstyle)
        # vertical scale of Tm × CTM: the length of its second row (x-scale can differ: condensed fonts)
        c, d = tm[2] * cm[0] + tm[3] * cm[2], tm[2] * cm[1] + tm[3] * cm[3]
        runs.append((size * math.hypot(c, d), name, text))

    for page in PdfReader(io.BytesIO(pdf)).pages:
        page.extract_text(visitor_text=visit)
    return runs


@slow
@pytest.mark.parametrize("paper", ["a4", "letter"])
def test_smallest_text_is_at_least_the_minimum_size(built: dict[str, RenderedPdf], sheet: Sheet,
                                                    paper: str) -> None:
    """The issue's acceptance: the smallest font used is ≥ 6.5 pt (`font_min_pt`), for every piece
    of text, not only the fitted body size (secondary text used to be scaled down from it)."""
    runs = text_sizes(built[paper].pdf)
    assert sum("KaTeX_" in name for _, name, _ in runs) > 100, "no math found: is the measure still right?"
    assert sum("KaTeX_" not in name for _, name, _ in runs) > 300, "too little text found"
    floor = max(6.5, sheet.sheet.print_settings.font_min_pt)
    small = sorted({(round(size, 2), name, text[:40]) for size, name, text in runs if size < floor - 0.01})
    assert not small, f"{len(small)} text runs below {floor:g} pt, e.g. {small[:5]}"


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
    cold = build(sheet, tmp_path, "a4")
    assert cold.pdf == built["a4"].pdf


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
    formulas = [e for e in sheet.entries() if isinstance(e, Formula) and e.print_on_sheet]
    kept = [e.name for e in formulas if tag in e.tags]
    dropped = [e.name for e in formulas if tag not in e.tags and not any(e.name in k for k in kept)]
    assert kept and dropped
    assert all(name in text for name in kept) and not any(name in text for name in dropped)
    assert f"entries tagged {tag}" in text
    assert result.font_size_pt >= built["a4"].font_size_pt  # less content, no smaller type


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
    """Each space-free run of a code line is one unbreakable span (a break after the minus of
    `-np.inf` would read as two lines), and a wrapped line hangs under its own indentation."""
    from xml.etree import ElementTree

    from sheetgen.render.code import function_source

    function = next(e.function for e in sheet.entries() if e.kind == "snippet")
    code = function_source(sheet.formula(function), with_docstring=False)
    root = ElementTree.fromstring(f"<root>{pdf_html._code_html(sheet, function)}</root>")
    words = ["".join(span.itertext()) for span in root.iter("span") if span.get("class") == "nobr"]
    assert words == [w for line in code.splitlines() for w in line.split()]
    lines = root.findall("div")
    assert len(lines) == len(code.rstrip("\n").splitlines())
    assert lines[1].get("style") == "padding-left:8ch;text-indent:-8ch"  # 4 spaces of indentation + 4


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
        copies.append(copy)
    return head + "\nsections:\n" + "\n".join(c.rstrip("\n") + "\n" for c in copies)


@slow
def test_cli_builds_skips_when_unchanged_and_keeps_pdf_on_overflow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, cache, preview = tmp_path / "out" / "sheet.pdf", tmp_path / "cache", tmp_path / "out" / "sheet.png"
    args = ["-o", str(out), "--cache-dir", str(cache)]
    assert main(["pdf", "-f", str(SHEET_PATH), *args, "--preview", str(preview)]) == 0
    progress = capsys.readouterr().out  # progress on stdout; stderr is kept for problems
    assert re.search(r"katex: \d+ formulas \(0 cached\)", progress)
    assert re.search(r"fit: [\d.]+ pt in \d+ render", progress)
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
