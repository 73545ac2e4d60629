"""The site: generated Markdown (fast, with a fake KaTeX) and the real `mkdocs build --strict` (slow)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import markdown  # type: ignore[import-untyped]
import pytest

from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet_text
from sheetgen.model import QA, Fact, Formula, Sheet, Snippet, Steps
from sheetgen.render import site
from sheetgen.sitebuild import SiteBuildError, build_site, load_site_config
from tests.sitehelpers import ROOT, VisibleText, built_site

needs_node = pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "katex").is_dir(),
                                reason="KaTeX (node and node_modules/katex) is not installed")


class FakeMath(dict[tuple[str, bool], str]):
    """Stands in for KaTeX: every TeX becomes a marked span, with characters Markdown would act on."""

    def __missing__(self, key: tuple[str, bool]) -> str:
        tex, display = key
        inner = f'<span class="katex"><span class="fake">{tex.replace("<", "&lt;")}*_x_*</span></span>'
        return f'<span class="katex-display">{inner}</span>' if display else inner


TINY = """\
sheet:
  title: Tiny sheet
sections:
  - id: basics
    title: Basics & more
    entries:
      - kind: formula
        id: twice
        name: Twice *not emphasis*
        latex: 'y = 2 x'
        meaning: 'Doubles $x$; x<1 & *stars* stay text, #1 too.'
        source: Nobody (2024), §1
        conventions:
          - 'NumPy [broadcasts] _as usual_'
        implementation: |
          def twice(x):
              return 2 * np.asarray(x)
        examples: |
          >>> int(twice(2))
          4
      - kind: fact
        id: a_fact
        name: A fact
        text: 'Facts have text and an optional formula.'
        latex: 'a^2 + b^2 = c^2'
      - kind: qa
        id: a_question
        question: Why "quotes"?
        answer: ['Because $q$.', 'Second answer']
      - kind: steps
        id: a_plan
        name: A plan
        steps:
          - title: First
            minutes: 5
            points: ['Think']
          - title: Second
            minutes: 10
            points: ['Do', 'Check']
      - kind: snippet
        id: a_snippet
        name: The code
        function: twice
"""


def tiny_sheet(text: str = TINY) -> Sheet:
    return load_sheet_text(text, "tiny.yaml")


def to_html(page: str) -> str:
    """Render generated Markdown with the site's extensions (as mkdocs.yml lists them)."""
    extensions: list[Any] = ["admonition", "attr_list", "md_in_html", "toc", "pymdownx.details",
                             "pymdownx.superfences", "pymdownx.tabbed", "pymdownx.highlight"]
    html: str = markdown.markdown(page, extensions=extensions,
                                  extension_configs={"pymdownx.tabbed": {"alternate_style": True}})
    return html


# --- generated Markdown (no KaTeX, no MkDocs) --------------------------------------------------


def test_pages_are_one_per_section_plus_errata() -> None:
    pages = site.render_pages(tiny_sheet(), FakeMath(), site.Links())
    assert sorted(pages) == ["errata.md", "sections/basics.md"]


def test_formula_card_layout() -> None:
    page = site.render_pages(tiny_sheet(), FakeMath(), site.Links())["sections/basics.md"]
    html = to_html(page)
    assert '<h2 id="twice">' in html
    assert '<div class="sg-math"' in html and 'class="katex-display"' in html
    assert 'class="admonition note"' in html and "Framework conventions" in html
    assert html.count('class="tabbed-set') == 1
    assert "NumPy" in html and "Example" in html
    assert 'class="language-python highlight"' in html or 'class="highlight"' in html
    assert "def twice(x):" in unescape(re.sub(r"<[^>]+>", "", html))
    assert ">>> int(twice(2))\n4" in unescape(re.sub(r"<[^>]+>", "", html))


def test_prose_is_escaped_not_interpreted() -> None:
    html = to_html(site.render_pages(tiny_sheet(), FakeMath(), site.Links())["sections/basics.md"])
    text = VisibleText.of(html)
    assert "x&lt;1 &amp;" in html
    assert "<em>" not in html and "<strong>not" not in html
    assert "Twice *not emphasis*" in text
    assert "x<1 & *stars* stay text, #1 too." in text
    assert "NumPy [broadcasts] _as usual_" in text
    # The math HTML arrives intact: Markdown did not turn its characters into emphasis.
    assert unescape(html).count("*_x_*") >= 3


def test_other_entry_layouts() -> None:
    html = to_html(site.render_pages(tiny_sheet(), FakeMath(), site.Links())["sections/basics.md"])
    assert '<h2 id="a_fact">' in html and "a^2 + b^2 = c^2" in html
    assert '<details class="question">' in html and "Why &quot;quotes&quot;?" in html
    assert re.search(r"<ol>\s*<li>(<p>)?<strong>First</strong> · 5 min", html)
    assert "2 steps, 15 minutes." in html
    assert '<h2 id="a_snippet">' in html and 'href="basics.md#twice"' in html


def test_download_links_are_relative_to_the_page() -> None:
    links = site.Links(notebook_pages={"basics": "notebooks/basics.ipynb"},
                       notebook_files={"basics": "downloads/notebooks/basics.ipynb"})
    page = site.render_pages(tiny_sheet(), FakeMath(), links)["sections/basics.md"]
    for target in ("../downloads/cheatsheet.pdf", "../downloads/formulas.py", "../notebooks/basics.ipynb",
                   "../downloads/notebooks/basics.ipynb"):
        assert f"]({target})" in page


def test_math_requests_cover_every_formula_and_inline_math() -> None:
    requests = site.math_requests(tiny_sheet())
    keys = {(r.tex, r.display) for r in requests}
    assert ("y = 2 x", True) in keys and ("a^2 + b^2 = c^2", True) in keys
    assert ("x", False) in keys and ("q", False) in keys
    twice = next(r for r in requests if r.tex == "y = 2 x")
    assert twice.where.startswith("tiny.yaml:") and "[twice]" in twice.where


def test_missing_math_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="math_requests"):
        site.render_pages(tiny_sheet(), {}, site.Links())


def test_escape_text() -> None:
    assert site.escape_text("- a <b> & *c*") == "&#45; a &lt;b&gt; &amp; &#42;c&#42;"
    assert site.escape_text("1. first") == "1&#46; first"
    assert to_html(site.escape_text("# [x](y) `z` _w_ | ~~v~~")).count("<") == 2  # just <p></p>


def test_errata_come_from_the_seed_error_blocks_of_the_sheet(sheet: Sheet) -> None:
    pages = site.render_pages(sheet, FakeMath(), site.Links())
    errata = pages["errata.md"]
    present = [f for f in sheet.formulas() if f.seed_error is not None]
    assert len(present) >= 8, "the shipped sheet lost its seed errors"
    for formula in present:
        assert formula.seed_error is not None
        assert f"{{ #{formula.id} }}" in errata
        corrected = errata.split(f"{{ #{formula.id} }}", 1)[1].split("Guarded by", 1)[0]
        assert "Correct" in corrected and "formula card](sections/" in corrected
        seed_part = corrected.split("!!! success", 1)[0]
        assert ('class="sg-math"' in seed_part) == bool(formula.seed_error.printed)  # the seed's printed form
        assert ("``` python" in seed_part) == bool(formula.seed_error.code)  # or its code
        for test in formula.seed_error.tests:
            assert f"tests/test_seed_errata.py::{test}" in errata
    without = sheet.model_copy(update={"sections": tuple(
        s.model_copy(update={"entries": tuple(e.model_copy(update={"seed_error": None}) if e.kind == "formula" else e
                                             for e in s.entries)}) for s in sheet.sections)})
    assert "tests/test_seed_errata.py::" not in site.render_pages(without, FakeMath(), site.Links())["errata.md"]


def test_nav_lists_sections_in_yaml_order(sheet: Sheet) -> None:
    nav = site.nav(sheet, site.Links())
    sections = next(item["Sections"] for item in nav if "Sections" in item)
    assert [next(iter(s.values())) for s in sections] == [f"sections/{s.id}.md" for s in sheet.sections]


def test_notebook_html_gets_katex_and_loses_cdn_scripts() -> None:
    html = ('<script src="https://cdnjs.cloudflare.com/mathjax.js"> </script>'
            '<script type="module">const m = await import("https://cdn/mermaid.esm.min.mjs");</script>'
            '<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput"><h1>T</h1>'
            "<p>$$\na &lt; b\n$$</p><p>inline $x$ here</p></div>"
            '<div class="jp-OutputArea-output"><pre>$5 and $6</pre></div>')
    math = {("a < b", True): "<DISPLAY>", ("x", False): "<INLINE>"}
    out = site.typeset_notebook_html(html, math, "../../downloads/notebooks/t.ipynb")
    assert "https://" not in out
    assert "<DISPLAY>" in out and "<INLINE>" in out and "$5 and $6" in out
    assert out.index("</h1>") < out.index("downloads/notebooks/t.ipynb")


# --- the plugin's hooks -------------------------------------------------------------------------


class FakeServer:
    def __init__(self) -> None:
        self.watched: list[str] = []

    def watch(self, path: str, *args: object, **kwargs: object) -> None:
        self.watched.append(path)


@pytest.fixture
def plugin_config(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    yaml = tmp_path / "sheet.yaml"
    yaml.write_text(TINY, encoding="utf-8")
    yield load_site_config(ROOT / "mkdocs.yml", tmp_path / "site", yaml_path=yaml, build_dir=tmp_path / "build",
                           plugin_options={"pdf": False, "notebooks": False}), yaml


@needs_node
def test_hooks_regenerate_when_the_yaml_changes(plugin_config: tuple[Any, Path]) -> None:
    """What `mkdocs serve` does on save: each build reloads the YAML and regenerates the pages."""
    from mkdocs.structure.files import Files

    config, yaml = plugin_config
    config = config.plugins.on_config(config)
    plugin = config.plugins["sheetgen"]
    assert config.site_name == "Tiny sheet"
    first = plugin.on_files(Files([]), config=config)
    page = first.get_file_from_path("sections/basics.md")
    assert page is not None and page.generated_by == "sheetgen"
    assert "Doubles" in page.content_string

    yaml.write_text(TINY.replace("Doubles", "Multiplies by two"), encoding="utf-8")
    second = plugin.on_files(Files([]), config=config)
    changed = second.get_file_from_path("sections/basics.md")
    assert changed is not None
    assert "Multiplies by two" in changed.content_string and "Doubles" not in changed.content_string

    server = FakeServer()
    plugin.on_serve(server, config=config, builder=None)
    assert str(yaml) in server.watched
    assert any(path.endswith("templates") for path in server.watched)


def test_disabled_plugin_does_nothing(plugin_config: tuple[Any, Path]) -> None:
    from mkdocs.structure.files import Files

    config, _ = plugin_config
    plugin = config.plugins["sheetgen"]
    plugin.config.enabled = False
    files = Files([])
    assert plugin.on_files(files, config=config) is files
    assert len(files) == 0


@needs_node
def test_bad_latex_fails_the_build_naming_line_and_id(tmp_path: Path) -> None:
    yaml = tmp_path / "bad.yaml"
    yaml.write_text(TINY.replace("'a^2 + b^2 = c^2'", "'a^2 + \\frac{b^2'"), encoding="utf-8")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "keep.html").write_text("old site")
    with pytest.raises(SheetError) as raised:
        build_site(ROOT / "mkdocs.yml", tmp_path / "site", yaml_path=yaml, build_dir=tmp_path / "build",
                   plugin_options={"pdf": False, "notebooks": False})
    assert isinstance(raised.value, SiteBuildError)
    line = next(i for i, text in enumerate(TINY.splitlines(), 1) if "a^2 + b^2" in text)
    assert f"bad.yaml:{line} [a_fact] latex: KaTeX parse error" in str(raised.value)
    assert (tmp_path / "site" / "keep.html").read_text() == "old site"  # the old site survives


# --- the real build (slow) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site_dir(sheet: Sheet) -> Path:
    if shutil.which("node") is None or not (ROOT / "node_modules" / "katex").is_dir():
        pytest.skip("KaTeX (node and node_modules/katex) is not installed")
    return built_site(sheet.source_path)


def section_html(site_dir: Path, section_id: str) -> str:
    return (site_dir / "sections" / section_id / "index.html").read_text(encoding="utf-8")


def cards(html: str) -> dict[str, str]:
    """The HTML of each card, by the id of its heading."""
    parts = re.split(r'(?=<h2 id="[a-z0-9_]+")', html)
    return {m[1]: part for part in parts if (m := re.match(r'<h2 id="([a-z0-9_]+)"', part))}


@pytest.mark.slow
def test_every_section_has_a_page(site_dir: Path, sheet: Sheet) -> None:
    for section in sheet.sections:
        assert (site_dir / "sections" / section.id / "index.html").is_file(), section.id
    assert (site_dir / "errata" / "index.html").is_file()


@pytest.mark.slow
def test_every_formula_is_typeset(site_dir: Path, sheet: Sheet) -> None:
    for section in sheet.sections:
        by_id = cards(section_html(site_dir, section.id))
        for entry in section.entries:
            if isinstance(entry, Formula) or (isinstance(entry, Fact) and entry.latex):
                assert entry.id in by_id, f"{section.id}: no card for {entry.id}"
                assert 'class="katex' in by_id[entry.id], f"{entry.id} has no KaTeX markup"


@pytest.mark.slow
def test_no_raw_tex_in_visible_text(site_dir: Path, sheet: Sheet) -> None:
    pages = [site_dir / "sections" / s.id / "index.html" for s in sheet.sections]
    pages += [site_dir / "errata" / "index.html", site_dir / "index.html"]
    pages += sorted((site_dir / "notebooks").glob("*/index.html"))
    for page in pages:
        text = VisibleText.of(page.read_text(encoding="utf-8"))
        for raw in ("$$", "\\(", "\\frac", "\\sum", "\\begin"):
            assert raw not in text, f"{page.relative_to(site_dir)} shows {raw!r}"


@pytest.mark.slow
def test_search_index_lists_every_formula_name(site_dir: Path, sheet: Sheet) -> None:
    index = json.loads((site_dir / "search" / "search_index.json").read_text(encoding="utf-8"))
    titles = {unescape(re.sub(r"<[^>]+>", "", doc["title"])).strip() for doc in index["docs"]}
    for formula in sheet.formulas():
        assert formula.name in titles, formula.name
    text = " ".join(unescape(doc["text"]) for doc in index["docs"])
    for entry in sheet.entries():
        if isinstance(entry, QA):
            assert entry.question in text
        elif isinstance(entry, Steps | Snippet | Fact):
            assert entry.name in titles


@pytest.mark.slow
def test_downloads_are_built_and_linked(site_dir: Path, sheet: Sheet) -> None:
    pdf = site_dir / "downloads" / "cheatsheet.pdf"
    assert pdf.read_bytes().startswith(b"%PDF")
    module = (site_dir / "downloads" / "formulas.py").read_text(encoding="utf-8")
    compile(module, "formulas.py", "exec")
    with zipfile.ZipFile(site_dir / "downloads" / "notebooks.zip") as archive:
        names = archive.namelist()
    with_formulas = [s.id for s in sheet.sections if any(isinstance(e, Formula) for e in s.entries)]
    assert names == sorted(f"notebooks/{sid}.ipynb" for sid in with_formulas)
    home = (site_dir / "index.html").read_text(encoding="utf-8")
    for link in ("downloads/cheatsheet.pdf", "downloads/formulas.py", "downloads/notebooks.zip",
                 "assets/sheet-preview.png"):
        assert f'"{link}"' in home, link
        assert (site_dir / link).is_file(), link
    for sid in with_formulas:
        page = section_html(site_dir, sid)
        assert '"../../downloads/cheatsheet.pdf"' in page and '"../../downloads/formulas.py"' in page
        assert f'"../../notebooks/{sid}/"' in page and f'"../../downloads/notebooks/{sid}.ipynb"' in page
        notebook = (site_dir / "notebooks" / sid / "index.html").read_text(encoding="utf-8")
        assert f'"../../downloads/notebooks/{sid}.ipynb"' in notebook


@pytest.mark.slow
def test_nothing_loads_from_other_hosts(site_dir: Path) -> None:
    pattern = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=\"(?:https?:)?//[^>]*>", re.I)
    imports = re.compile(r"import\(\s*[\"'](?:https?:)?//|url\(\s*[\"']?(?:https?:)?//", re.I)
    for page in site_dir.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        # `<link rel="canonical">` (from site_url) names the page's address; browsers fetch nothing for it.
        fetched = [tag for tag in pattern.findall(html) if 'rel="canonical"' not in tag]
        assert not fetched, (page, fetched)
        assert not imports.search(html), page
    for css in site_dir.rglob("*.css"):
        assert not imports.search(css.read_text(encoding="utf-8")), css
    katex_css = (site_dir / "assets" / "katex" / "katex.min.css").read_text(encoding="utf-8")
    for font in re.findall(r"url\((fonts/[^)]+\.woff2)\)", katex_css):
        assert (site_dir / "assets" / "katex" / font).is_file(), font


@pytest.mark.slow
def test_notebook_pages_are_typeset(site_dir: Path, sheet: Sheet) -> None:
    section = next(s for s in sheet.sections if any(isinstance(e, Formula) for e in s.entries))
    html = (site_dir / "notebooks" / section.id / "index.html").read_text(encoding="utf-8")
    formulas = [e for e in section.entries if isinstance(e, Formula)]
    assert html.count('class="katex-display"') >= len(formulas)
    assert "MathJax" not in html and "mermaid.esm" not in html
    assert "jp-OutputArea-output" in html  # executed: outputs are shown


# --- search, notebook pages, small things (fast; Material's own search parser) -------------------


def search_index(html: str, title: str = "Page") -> list[dict[str, str]]:
    """What Material's search plugin indexes for `html` (its own parser), as (title, text) entries."""
    from material.plugins.search.plugin import Parser  # type: ignore[import-untyped]

    parser = Parser()
    parser.feed(html)
    parser.close()
    return [{"title": "".join(s.title) or title, "text": unescape(re.sub(r"<[^>]+>", "", "".join(s.text)))}
            for s in parser.data if not s.is_excluded()]


def test_tex_to_plain() -> None:
    # Expected strings written out by hand from the TeX.
    assert site.tex_to_plain(r"m_t/(1-\beta_1^t)") == "mₜ/(1-β₁ᵗ)"
    assert site.tex_to_plain(r"\frac{W - K + 2P}{S} + 1") == "(W - K + 2P)/S + 1"
    assert site.tex_to_plain(r"\sqrt{d_k}") == "√dₖ"
    assert site.tex_to_plain(r"\lVert y - X w \rVert^2") == "‖ y - X w ‖²"
    assert site.tex_to_plain(r"\text{zero } p\% \text{ of}") == "zero p% of"
    assert site.tex_to_plain(r"\operatorname{softmax}(z)_i") == "softmax(z)ᵢ"
    assert site.tex_to_plain(r"\hat m") == "m\u0302"


def test_search_indexes_plain_formulas_not_katex() -> None:
    html = to_html(site.render_pages(tiny_sheet(), FakeMath(), site.Links())["sections/basics.md"])
    entries = search_index(site.mark_ui_for_search(html))
    text = " ".join(e["text"] for e in entries)
    assert "*_x_*" not in text  # FakeMath's KaTeX stand-in is skipped, display and inline
    assert "y = 2 x" in text and "a² + b² = c²" in text  # plain forms (tex_to_plain: no `plain` in TINY)
    assert "Doubles x;" in text  # inline math: its plain form in place
    assert "NumPyExample" not in text.replace(" ", "") and "Framework conventions" not in text
    assert "One-page PDF" not in text  # the download buttons
    assert "Twice *not emphasis*" in [e["title"] for e in entries]


def test_section_pages_outrank_notebooks_and_errata_in_search() -> None:
    pages = site.render_pages(tiny_sheet(), FakeMath(), site.Links())
    boost = re.compile(r"\A---\nsearch:\n  boost: ([0-9.]+)\n---\n")
    section, errata = boost.match(pages["sections/basics.md"]), boost.match(pages["errata.md"])
    assert section and errata
    assert float(section[1]) > 1 > float(errata[1]) > site.NOTEBOOK_SEARCH_BOOST


def test_module_button_only_where_there_is_code() -> None:
    text = TINY + """\
  - id: talk
    title: Talk only
    entries:
      - kind: qa
        id: why
        question: Why?
        answer: ['Because.']
"""
    pages = site.render_pages(tiny_sheet(text), FakeMath(), site.Links())
    assert "NumPy module" in pages["sections/basics.md"]
    assert "NumPy module" not in pages["sections/talk.md"] and "One-page PDF" in pages["sections/talk.md"]


def test_numpy_tab_code_runs_when_copied() -> None:
    page = site.render_pages(tiny_sheet(), FakeMath(), site.Links())["sections/basics.md"]
    tab = page[page.index('=== "NumPy"'):page.index('=== "Example"')]
    code = textwrap_dedent_fence(tab)
    assert code.startswith("import numpy as np\n")
    namespace: dict[str, Any] = {}
    exec(compile(code, "tab", "exec"), namespace)  # the sheet's own tested code
    assert int(namespace["twice"](2)) == 4


def textwrap_dedent_fence(tab: str) -> str:
    import textwrap

    body = tab.split("```", 2)[1].split("\n", 1)[1]
    return textwrap.dedent(body).rstrip() + "\n"


def test_edit_links_point_at_the_entry_line() -> None:
    text = TINY.replace("  title: Tiny sheet\n", "  title: Tiny sheet\n  repo_url: https://example.org/o/r\n")
    sheet = tiny_sheet(text)
    line = text.splitlines().index("        id: a_fact")  # 0-based index of the id line; the entry starts above
    url = site.edit_url(sheet, "a_fact")
    assert url == f"https://example.org/o/r/blob/HEAD/tiny.yaml#L{line}"
    html = to_html(site.render_pages(sheet, FakeMath(), site.Links())["sections/basics.md"])
    assert f'href="{url}"' in html
    assert "edit" not in " ".join(e["text"] for e in search_index(html))
    assert site.edit_url(tiny_sheet(), "a_fact") == ""  # no repo_url, no link


NOTEBOOK_HTML = """<script>
(function (global, factory) { global.ClipboardCopyElement = factory(); })</script>
<style type="text/css">.jupyter-wrapper{--big:1}</style>
<style>.jp-Mermaid{display:none}</style>
<div class="jupyter-wrapper"><div class="jp-Cell">
<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput" data-mime-type="text/markdown">
<h1 id="basics">Basics<a class="anchor-link" href="#basics">¶</a></h1><p>intro</p></div>
<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput" data-mime-type="text/markdown">
<h2 id="twice">Twice<a class="anchor-link" href="#twice">¶</a></h2><p>$$
y = 2 x
$$</p></div>
<div class="jp-InputPrompt jp-InputArea-prompt">In [1]:</div><div class="zeroclipboard-container">
<clipboard-copy for="cell-1"><div><span class="notice" hidden="">Copied!</span>
<svg aria-hidden="true" class="clipboard-copy-icon" viewbox="0 0 16 16"><path d="M0 0"></path></svg></div>
</clipboard-copy></div>
<div class="highlight-ipynb hl-python"><pre><span></span><span class="n">twice</span><span class="p">(</span>\
<span class="mi">2</span><span class="p">)</span>
</pre></div>
<div class="clipboard-copy-txt" id="cell-1">twice(2)</div>
<div class="jp-OutputPrompt jp-OutputArea-prompt">Out[1]:</div>
<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="text/plain" tabindex="0"><pre>4</pre></div>
</div></div>"""


def test_notebook_page_shares_its_css_and_keeps_ui_out_of_search() -> None:
    math = {("y = 2 x", True): '<span class="katex-display"><span class="katex">KATEX</span></span>'}
    out = site.notebook_page(NOTEBOOK_HTML, math, lambda path: "../../" + path,
                             download="downloads/notebooks/basics.ipynb", plain={"y = 2 x": "y = 2·x"})
    css_path = next(p for p in out.assets if p.endswith(".css"))
    js_path = next(p for p in out.assets if p.endswith(".js"))
    assert "<style" not in out.html and "--big:1" in out.assets[css_path] and "jp-Mermaid" in out.assets[css_path]
    assert f'<link rel="stylesheet" href="../../{css_path}">' in out.html
    assert "ClipboardCopyElement" in out.assets[js_path] and f'src="../../{js_path}"' in out.html
    assert "ClipboardCopyElement" not in out.html
    # The copy button copies the <pre> (same text), the hidden duplicate and the per-cell SVG are gone.
    assert '<pre id="cell-1">' in out.html and "clipboard-copy-txt" not in out.html and "<svg" not in out.html
    assert re.sub(r"<[^>]+>", "", out.html).count("twice(2)") == 1  # the highlighted code, shown once
    assert '<a class="headerlink" title="Permanent link" href="#twice">' in out.html
    entries = search_index(out.html, title="Basics")
    assert entries[0]["title"] == "Basics" and any(e["title"] == "Basics — notebook" for e in entries)
    text = " ".join(e["text"] + e["title"] for e in entries)
    for noise in ("¶", "Copied!", "In [1]", "Out[1]", "KATEX", "twice(2)", "Download this notebook"):
        assert noise not in text, noise
    assert "y = 2·x" in text and "intro" in text
    # Same CSS, same file name: one stylesheet for every notebook page.
    again = site.notebook_page(NOTEBOOK_HTML.replace("Basics", "Other"), math, lambda path: path)
    assert set(again.assets) == set(out.assets)


def test_compact_preview_is_smaller_and_looks_the_same() -> None:
    from PIL import Image, ImageChops, ImageDraw, ImageStat

    image = Image.new("RGB", (700, 500), "white")
    draw = ImageDraw.Draw(image)
    for row in range(0, 500, 12):  # text-like strokes in a few colours, anti-aliased edges
        draw.text((10, row), "softmax(z) = exp(z) / sum exp(z)   " * 3, fill=(20, 20, 20 + row % 80))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    png = buffer.getvalue()
    small = site.compact_preview(png)
    assert small.startswith(b"\x89PNG") and len(small) < len(png)
    with Image.open(io.BytesIO(small)) as out:
        assert out.size == image.size
        difference = ImageStat.Stat(ImageChops.difference(out.convert("RGB"), image)).mean
    assert max(difference) < 3  # of 255 per channel: the same picture to the eye
    assert site.compact_preview(png) == small  # deterministic


def test_cards_say_whether_the_printed_formula_was_checked(sheet: Sheet) -> None:
    pages = site.render_pages(sheet, FakeMath(), site.Links())
    for section in sheet.sections:
        page = pages[site.section_path(section)]
        for entry in section.entries:
            if entry.kind != "formula":
                continue
            card = page.split(f"{{ #{entry.id} }}", 1)[1].split("{: .sg-source }", 1)[0]
            skipped = entry.check is not None and entry.check.skip
            assert ("printed formula not checked" in card) == bool(skipped), entry.id
            assert ("✓ printed formula checked" in card) == (not skipped), entry.id
    assert any(f.check is not None and f.check.skip for f in sheet.formulas()), "no skipped formula to show"
    html = to_html(pages[site.section_path(sheet.sections[0])])
    # Both editions are offered: on every section page, and on the hand-written home page.
    assert 'href="../downloads/cheatsheet.pdf"' in html or "downloads/cheatsheet.pdf" in html
    assert "downloads/cheatsheet-full.pdf" in html
    home = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert "(downloads/cheatsheet.pdf)" in home and "(downloads/cheatsheet-full.pdf)" in home
    assert "{:" not in html and 'class="sg-source"' in html  # the attribute list still applies to the line
    indexed = " ".join(e["text"] for e in search_index(html))
    assert "printed formula" not in indexed and " edit" not in indexed  # UI, not content
    # A reason is text in an attribute: escaped, never markup.
    formula = next(f for f in sheet.formulas() if f.check is not None and f.check.skip)
    hostile = formula.model_copy(update={"check": formula.check.model_copy(  # type: ignore[union-attr]
        update={"skip": 'x" onmouseover="alert(1)'})})
    one = sheet.model_copy(update={"sections": tuple(
        s.model_copy(update={"entries": tuple(hostile if e.id == formula.id else e for e in s.entries)})
        for s in sheet.sections)})
    rendered = "".join(site.render_pages(one, FakeMath(), site.Links()).values())
    assert 'onmouseover="alert(1)' not in rendered and "x&#34; onmouseover=&#34;alert(1)" in rendered


def test_a_section_page_matches_its_golden_file(sheet: Sheet, golden) -> None:  # type: ignore[no-untyped-def]
    """The generated Markdown of one section (math shown by FakeMath): `make golden` after a deliberate change."""
    golden("site_sections_math.md", site.render_pages(sheet, FakeMath(), site.Links())["sections/math.md"])


# The site's search worker (assets/search-worker.js) run in Node as a browser runs a worker: its
# message listener and postMessage, Material's worker replaced by a stub that answers each query with
# the groups Material's lunr ranking gave on the built site (AdamW's card scored above Adam's).
WORKER_HARNESS = r"""
const vm = require("vm"), fs = require("fs");
const [script, material, query, groups] = process.argv.slice(1);
const listeners = [], posted = [], imported = [];
const scope = {
  addEventListener: (type, fn) => listeners.push(fn),
  postMessage: message => posted.push(message),
  importScripts: (...urls) => { imported.push(...urls);
    listeners.push(event => scope.postMessage({type: 3, data: {items: JSON.parse(groups)}})); },
};
scope.self = scope;
vm.runInNewContext(fs.readFileSync(script, "utf8"), scope);
for (const fn of listeners) fn({data: {type: 2, data: query}});
console.log(JSON.stringify({imported, posted}));
"""


def run_search_worker(tmp_path: Path, query: str, groups: list[list[dict[str, Any]]]) -> list[list[str]]:
    name, text = site.search_worker("search.a7633da7.min.js")
    script = tmp_path / name
    script.write_text(text, encoding="utf-8")
    node = shutil.which("node")
    assert node is not None
    done = subprocess.run([node, "-e", WORKER_HARNESS, str(script), "search.a7633da7.min.js", query,
                           json.dumps(groups)], capture_output=True, text=True, check=True, timeout=60)
    out = json.loads(done.stdout)
    assert out["imported"] == ["search.a7633da7.min.js"]  # Material's worker runs, unchanged
    [result] = out["posted"]
    assert result["type"] == 3
    return [[item["location"] for item in group] for group in result["data"]["items"]]


def item(location: str, title: str, score: float) -> dict[str, Any]:
    return {"location": location, "title": title, "text": "", "score": score, "terms": {}}


def test_search_worker_puts_the_card_named_by_the_query_first(tmp_path: Path) -> None:
    # Material's order (scores from the built site's index): AdamW 5527 > Adam 4128 > Adam defaults 4098.
    optimization = [item("o/#adamw_step", "<mark>AdamW</mark>", 5527.29),
                    item("o/#adam_step", "<mark>Adam</mark>", 4128.18),
                    item("o/#adam_defaults", "<mark>Adam</mark> defaults", 4097.82),
                    item("o/", "Optimization", 0)]
    errata = [item("errata/#adam_step", "<mark>Adam</mark>", 1025.48), item("errata/", "Errata", 0)]
    assert run_search_worker(tmp_path, "adam", [optimization, errata]) == [
        ["o/#adam_step", "o/#adam_defaults", "o/#adamw_step", "o/"], ["errata/#adam_step", "errata/"]]
    # The exact name wins even when Material puts it on a later page ...
    temperature = [item("t/#temperature_softmax", "<mark>Softmax</mark> with temperature", 11416.14),
                   item("t/", "T", 0)]
    softmax = [item("n/#softmax", "<mark>Softmax</mark>", 11405.38), item("n/", "N", 0)]
    assert run_search_worker(tmp_path, "Softmax", [temperature, softmax])[0][0] == "n/#softmax"
    # ... a name that starts with the query comes before one that only mentions it ...
    metrics = [item("m/#map", "Mean average precision", 90), item("m/#ndcg_at_k", "NDCG@k", 80)]
    assert run_search_worker(tmp_path, "ndcg", [metrics]) == [["m/#ndcg_at_k", "m/#map"]]
    # ... and with no name matching, Material's order stays as it was.
    assert run_search_worker(tmp_path, "decay", [optimization, errata]) == [
        [i["location"] for i in optimization], [i["location"] for i in errata]]


def test_pages_use_the_site_search_worker() -> None:
    name, _ = site.search_worker("search.a7633da7.min.js")
    config = ('<script id="__config" type="application/json">{"base": "..", "search": '
              '"../assets/javascripts/workers/search.a7633da7.min.js", "tags": null}</script>')
    page = f'<a href="../assets/javascripts/workers/search.a7633da7.min.js">x</a>{config}'
    swapped = site.use_search_worker(page, "search.a7633da7.min.js", name)
    assert swapped == page.replace("workers/search.a7633da7.min.js\", \"tags", f"workers/{name}\", \"tags")
    assert swapped.count(name) == 1  # only the config names the worker; other text is left alone
    with pytest.raises(ValueError, match="not the file name"):
        site.search_worker('search.1.min.js"); fetch("//evil')
