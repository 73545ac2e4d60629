"""Notebook pages of the site weigh at most 150 KB (issue 11) and still show what they showed: typeset
math, highlighted and copyable code, text outputs."""

# ruff: noqa: E501  (the HTML below is mkdocs-jupyter's, one element a line, as it writes it)
from __future__ import annotations

import re
import shutil
from html import unescape
from pathlib import Path

import pytest

from sheetgen.model import Sheet
from sheetgen.render import site
from tests.sitehelpers import ROOT, built_site

CELL = """<div class="jp-Cell jp-CodeCell jp-Notebook-cell" id="cell-id=relu-code">
<div class="jp-Cell-inputWrapper" tabindex="0">
<div class="jp-Collapser jp-InputCollapser jp-Cell-inputCollapser">
</div>
<div class="jp-InputArea jp-Cell-inputArea">
<div class="jp-InputPrompt jp-InputArea-prompt">In [4]:</div><div class="jp-CodeMirrorEditor jp-Editor jp-InputArea-editor" data-type="inline">
<div class="CodeMirror cm-s-jupyter">
<div class="zeroclipboard-container">
<clipboard-copy ,="" aria-label="Copy to Clipboard" for="cell-4">
<div>
<span class="notice" hidden="">Copied!</span>
<svg aria-hidden="true" class="clipboard-copy-icon" height="16" viewbox="0 0 16 16" width="16"><path d="M0"></path></svg>
</div>
</clipboard-copy>
</div>
<div class="highlight-ipynb hl-python"><pre><span></span><span class="k">def</span> <span class="nf">relu</span><span class="p">(</span><span class="n">z</span><span class="p">):</span>
    <span class="c1"># keeps positives</span>
<span class="n">display</span><span class="p">(</span><span class="n">relu</span><span class="p">(</span><span class="o">-</span><span class="mi">2</span><span class="p">))</span>
</pre></div>
<div class="clipboard-copy-txt" id="cell-4">def relu(z):
    # keeps positives
display(relu(-2))</div>
</div>
</div>
</div>
</div>
<div class="jp-Cell-outputWrapper">
<div class="jp-Collapser jp-OutputCollapser jp-Cell-outputCollapser">
</div>
<div class="jp-OutputArea jp-Cell-outputArea">
<div class="jp-OutputArea-child">
<div class="jp-OutputPrompt jp-OutputArea-prompt"></div>
<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="text/plain" tabindex="0">
<pre>0.0</pre>
</div>
</div>
<div class="jp-OutputArea-child">
<div class="jp-OutputPrompt jp-OutputArea-prompt"></div>
<div class="jp-RenderedText jp-OutputArea-output" data-mime-type="text/plain" tabindex="0">
<pre>[0.0, 3.0] &lt;script&gt;</pre>
</div>
</div>
</div>
</div>
</div>
"""
MARKDOWN = """<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell" id="cell-id=relu-md">
<div class="jp-Cell-inputWrapper" tabindex="0">
<div class="jp-Collapser jp-InputCollapser jp-Cell-inputCollapser">
</div>
<div class="jp-InputArea jp-Cell-inputArea"><div class="jp-InputPrompt jp-InputArea-prompt">
</div><div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput" data-mime-type="text/markdown">
<h2 id="relu">ReLU<a class="anchor-link" href="#relu">¶</a></h2><p>$$
\\max(0, z)
$$</p>
<p>Zero when $z&lt;0$.</p>
</div>
</div>
</div>
</div>
"""
PAGE = ("""<script>
(function (global, factory) { global.ClipboardCopyElement = factory(); })</script>
<style type="text/css">.jupyter-wrapper{--big:1}</style>
<div class="jupyter-wrapper"><div class="jp-Notebook">
<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell" id="cell-id=intro"><div class="jp-RenderedHTMLCommon jp-RenderedMarkdown jp-MarkdownOutput" data-mime-type="text/markdown">
<h1 id="Basics">Basics<a class="anchor-link" href="#Basics">¶</a></h1></div></div>
""" + MARKDOWN + CELL + "</div></div>")
MATH = {(r"\max(0, z)", True): '<span class="katex-display"><span class="katex">DISPLAY</span></span>',
        ("z<0", False): '<span class="katex">INLINE</span>'}


def page(budget: int = site.NOTEBOOK_CONTENT_BUDGET, plain: str = "max(0, z)") -> site.NotebookPage:
    return site.notebook_page(PAGE, MATH, lambda path: "../../" + path, download="downloads/notebooks/basics.ipynb",
                              plain={r"\max(0, z)": plain}, budget=budget)


def text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_compaction_keeps_the_code_the_outputs_and_the_math() -> None:
    out = page()
    pre = re.search(r'<pre id="cell-4">(.*?)</pre>', out.html, re.DOTALL)
    assert pre is not None
    # The same code, still highlighted by the same token classes (now on shorter elements).
    assert text(pre[1]) == "def relu(z):\n    # keeps positives\ndisplay(relu(-2))\n"
    assert "<i class=k>def</i>" in pre[1] and "<i class=c1># keeps positives</i>" in pre[1] and "<span" not in pre[1]
    js = next(v for k, v in out.assets.items() if k.endswith(".js"))
    css = next(v for k, v in out.assets.items() if k.endswith(".css"))
    assert ":where(.highlight-ipynb pre i)" in css and "font-style: normal" in css  # comments stay italic
    # Copy buttons: added by the shared script (they need it to work), for each cell's <pre>.
    assert "clipboard-copy" not in out.html and "<clipboard-copy" in js and "pre[id]" in js
    # The two outputs: one block, text only (escaped as before), nothing active.
    assert out.html.count("jp-OutputArea-child") == 1
    assert "<pre>0.0\n[0.0, 3.0] &lt;script&gt;</pre>" in out.html
    assert "<script>" not in out.html.split("jupyter-wrapper")[1]
    # What the shared CSS hides is gone; the math is typeset.
    assert "jp-Collapser" not in out.html and ',=""' not in out.html and "DISPLAY" in out.html and "INLINE" in out.html
    assert len(out.html) < len(PAGE)


def test_a_heavy_page_links_its_formulas_to_their_cards() -> None:
    out = page(budget=0)
    assert "DISPLAY" not in out.html and "INLINE" in out.html  # inline math stays typeset
    link = re.search(r'<span class="sg-nb-formula"><span class="sg-nb-plain">max\(0, z\)</span> '
                     r'<a class="sg-nb-card" href="([^"]+)" data-search-exclude>', out.html)
    assert link is not None and link[1] == "../../sections/basics/#relu"
    assert page().html.count("sg-nb-formula") == 0  # a light page keeps its formulas typeset


def test_a_linked_formula_shows_the_checked_latex_not_the_hand_written_plain_form() -> None:
    # `plain` is prose nobody checks against the formula: a wrong one may label the typeset formula
    # for search, but it must not stand in for the formula on the page.
    out = page(budget=0, plain="min(0, z)")
    assert "min(0, z)" not in out.html
    assert '<span class="sg-nb-plain">max(0, z)</span>' in out.html
    assert site.tex_to_plain(r"\max(0, z)") == "max(0, z)"


# --- the built site -------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_notebook_page_weighs_at_most_150_kb(sheet: Sheet) -> None:
    if shutil.which("node") is None or not (ROOT / "node_modules" / "katex").is_dir():
        pytest.skip("KaTeX (node and node_modules/katex) is not installed")
    site_dir: Path = built_site(sheet.source_path)  # the session's build, shared with test_site.py
    pages = sorted((site_dir / "notebooks").glob("*/index.html"))
    assert pages
    sizes = {p.parent.name: p.stat().st_size for p in pages}
    assert max(sizes.values()) <= site.NOTEBOOK_PAGE_BUDGET == 150_000, sizes
    for path in pages:
        html = path.read_text(encoding="utf-8")
        assert "highlight-ipynb" in html and "<i class=k>" in html  # code still highlighted
        assert "katex" in html  # math still typeset (inline math everywhere, display math on lighter pages)
