"""The site's generated pages: a `Sheet` plus its typeset math → `{path: Markdown}`.

Pure: no file I/O, no MkDocs. `sheetgen.mkdocs_plugin` renders the math (`math_requests` →
`KatexRenderer.render_map`) and hands the pages to MkDocs.

Everything from the YAML is escaped on its way into Markdown: templates autoescape, and the
only ways to emit markup are the helpers below (`prose`, `display`, `fence`, ...), which escape
HTML *and* the characters Markdown would act on. KaTeX HTML is spliced in as finished markup.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from html import unescape as html_unescape
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from ..katex import MathRequest, sheet_math_requests, split_inline_math
from ..model import Formula, Section, Sheet, Snippet
from .code import function_source

__all__ = [
    "ERRATA",
    "Erratum",
    "Links",
    "MathHtml",
    "math_requests",
    "nav",
    "render_pages",
    "section_path",
    "typeset_notebook_html",
]

MathHtml = Mapping[tuple[str, bool], str]
"""KaTeX HTML by (TeX, display), as `KatexRenderer.render_map` returns it."""

ERRATA_PATH = "sheetgen/render/site.py"


@dataclass(frozen=True)
class Erratum:
    """What the seed cheat sheet printed for a formula, and the tests that keep it fixed."""

    problem: str
    """What was wrong, as prose (inline `$math$` allowed)."""
    tests: tuple[str, ...]
    """pytest node ids of the tests that fail if the error comes back."""
    wrong: str = ""
    """The seed's formula, as TeX (empty when only its code was wrong)."""
    wrong_code: str = ""
    """The seed's code, when that is where the error was."""


_ERRATA_TESTS = "tests/test_seed_errata.py::"

# The seed's mistakes, keyed by formula id. The correct form, source and name come from the YAML;
# an id that is not in the sheet is left off the page.
ERRATA: Mapping[str, Erratum] = {
    "adam_step": Erratum(
        problem="ε inside the square root, and $\\hat m$, $\\hat v$ used but never defined: the bias "
                "correction $m_t/(1-\\beta_1^t)$, $v_t/(1-\\beta_2^t)$ was missing, without which the first "
                "steps are far too small.",
        wrong=r"\theta = \theta - \eta \cdot \hat m / \sqrt{\hat v + \epsilon}",
        tests=(_ERRATA_TESTS + "test_adam_eps_outside_sqrt", _ERRATA_TESTS + "test_adam_bias_correction"),
    ),
    "lstm_cell": Erratum(
        problem="The cell update used a candidate $\\tilde C_t$ that was never defined, the hidden state "
                "$h_t = o_t \\odot \\tanh(C_t)$ was missing, and no gate had a bias.",
        wrong=r"f_t = \sigma(W_f[h_{t-1}, x_t]), \quad i_t = \sigma(W_i[h_{t-1}, x_t]), \quad "
              r"o_t = \sigma(W_o[h_{t-1}, x_t]), \quad C_t = f_t \odot C_{t-1} + i_t \odot \tilde C_t",
        tests=(_ERRATA_TESTS + "test_lstm_has_candidate_and_hidden",),
    ),
    "positional_encoding": Erratum(
        problem="Only the even dimensions were given; the odd ones use the cosine, "
                "$PE_{(pos, 2i+1)} = \\cos(pos/10000^{2i/d})$.",
        wrong=r"PE_{(pos, 2i)} = \sin\!\left(pos / 10000^{2i/d}\right)",
        tests=(_ERRATA_TESTS + "test_positional_encoding_cos_on_odd",),
    ),
    "attention": Erratum(
        problem="The snippet's softmax normalised the whole score matrix instead of each query's scores over "
                "the keys, and K.T reverses every axis of a batched $K$ instead of swapping the last two.",
        wrong_code="def softmax(x):\n"
                   "    e_x = np.exp(x - np.max(x))\n"
                   "    return e_x / e_x.sum()\n\n"
                   "scores = Q @ K.T / np.sqrt(d_k)\n"
                   "weights = softmax(scores)\n"
                   "return weights @ V",
        tests=(_ERRATA_TESTS + "test_attention_softmax_over_keys",),
    ),
    "dropout": Erratum(
        problem="“Zero p% of activations during training” without the $1/(1-p)$ scaling of the kept units: "
                "activations would shrink by $1-p$ in training and be larger at test time.",
        wrong=r"\text{zero } p\% \text{ of activations during training}",
        tests=(_ERRATA_TESTS + "test_dropout_inverted_scaling",),
    ),
    "conv_output_size": Erratum(
        problem="No floor: fractional sizes whenever the stride does not divide $W - K + 2P$.",
        wrong=r"\frac{W - K + 2P}{S} + 1",
        tests=(_ERRATA_TESTS + "test_conv_output_size_floor",),
    ),
    "cross_entropy": Erratum(
        problem="The code summed $-y \\log \\hat y$ over every element, so a batch's loss grew with the batch "
                "size, and it did not match the printed (binary) formula. Here one sample sums over classes "
                "and a batch takes the mean of the rows, as the formula says.",
        wrong_code="def cross_entropy(y, y_hat):\n    return -np.sum(y * np.log(y_hat + 1e-9))",
        tests=(_ERRATA_TESTS + "test_cross_entropy_sum_vs_mean",),
    ),
    "binary_cross_entropy": Erratum(
        problem="Printed as a sum over samples, while scikit-learn's log_loss, PyTorch's BCELoss and this "
                "sheet's code take the mean: the values differed by a factor of $n$.",
        wrong=r"L = -\sum \big[ y \log \hat y + (1 - y) \log (1 - \hat y) \big]",
        tests=(_ERRATA_TESTS + "test_cross_entropy_sum_vs_mean",),
    ),
}


@dataclass(frozen=True)
class Links:
    """Where the downloads are, as paths relative to the docs root (what MkDocs resolves)."""

    pdf: str | None = "downloads/cheatsheet.pdf"
    module: str | None = "downloads/formulas.py"
    notebook_pages: Mapping[str, str] = field(default_factory=dict)
    """Section id → the rendered notebook page (`notebooks/<id>.ipynb`)."""
    notebook_files: Mapping[str, str] = field(default_factory=dict)
    """Section id → the raw notebook to download (`downloads/notebooks/<id>.ipynb`)."""


def section_path(section: Section) -> str:
    return f"sections/{section.id}.md"


ERRATA_PAGE = "errata.md"


# --- math -----------------------------------------------------------------------------------


def _errata_entries(sheet: Sheet) -> list[tuple[Formula, Erratum]]:
    ids = {f.id: f for f in sheet.formulas()}
    return [(ids[key], erratum) for key, erratum in ERRATA.items() if key in ids]


def math_requests(sheet: Sheet) -> list[MathRequest]:
    """Every piece of TeX the pages show: the sheet's own, then the errata's seed forms."""
    requests = sheet_math_requests(sheet)
    for formula, erratum in _errata_entries(sheet):
        where = f"{ERRATA_PATH}:0 [{formula.id}]"
        if erratum.wrong:
            requests.append(MathRequest(tex=erratum.wrong, display=True, where=f"{where} wrong",
                                        path=ERRATA_PATH, entry_id=formula.id, field="wrong"))
        requests.extend(MathRequest(tex=tex, display=False, where=f"{where} problem", path=ERRATA_PATH,
                                    entry_id=formula.id, field="problem")
                        for is_math, tex in split_inline_math(erratum.problem) if is_math)
    return requests


# --- escaping -------------------------------------------------------------------------------

# HTML's five plus every character that Markdown or an enabled extension gives a meaning to.
_TEXT_ESCAPES = {ord(c): f"&#{ord(c)};" for c in "\\`*_{}[]#|!~^$=+:"}
_TEXT_ESCAPES.update({ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;",
                      ord("'"): "&#39;"})
# Inside KaTeX's HTML only the text between tags needs the Markdown escapes.
_MARKUP_TEXT_ESCAPES = {k: v for k, v in _TEXT_ESCAPES.items() if chr(k) not in "&<>\"'"}
_TEXT_NODE = re.compile(r">([^<]+)<")
_LIST_START = re.compile(r"^(\d+)([.)])")


def escape_text(text: str) -> str:
    """Plain text → Markdown that shows exactly that text (one line; whitespace collapsed)."""
    return _escape_line_start(_escape_chunk(" ".join(text.split())))


def _escape_chunk(text: str) -> str:
    return re.sub(r"\s+", " ", text).translate(_TEXT_ESCAPES)


def _escape_line_start(escaped: str) -> str:
    """A line must not start a list item (`- `, `+ `, `1. `); `+` is already escaped."""
    if escaped.startswith("-"):
        escaped = "&#45;" + escaped[1:]
    return _LIST_START.sub(lambda m: f"{m[1]}&#{ord(m[2])};", escaped)


def _protect_markup(html: str) -> str:
    """KaTeX HTML that Markdown's inline processing leaves alone (its text nodes escaped)."""
    # Newlines (inside SVG path data) would end an indented block; in SVG they are just spaces.
    html = html.replace("\n", " ")
    return _TEXT_NODE.sub(lambda m: ">" + m[1].translate(_MARKUP_TEXT_ESCAPES) + "<", html)


def _lookup(math: MathHtml, tex: str, display: bool) -> str:
    try:
        return math[(tex, display)]
    except KeyError:
        raise KeyError(f"no typeset math for {tex!r} (display={display}); pass math_requests(sheet) to "
                       "the renderer") from None


class _Helpers:
    """The functions templates call; the only sources of unescaped markup."""

    def __init__(self, math: MathHtml, page: str) -> None:
        self.math = math
        self.page = page

    def prose(self, text: str) -> Markup:
        """Text with inline `$math$`, escaped, math typeset."""
        parts = [
            _protect_markup(_lookup(self.math, chunk, False)) if is_math else _escape_chunk(chunk)
            for is_math, chunk in split_inline_math(text)
        ]
        return Markup(_escape_line_start("".join(parts).strip()))

    def plain(self, text: str) -> str:
        """Prose without math markup: the TeX between dollars shown as written (for labels)."""
        return " ".join("".join(chunk for _, chunk in split_inline_math(text)).split())

    def display(self, tex: str, label: str = "", indent: int = 0) -> Markup:
        """A display formula. At the top level a raw HTML block, which Markdown leaves alone; indented
        (in an admonition or a tab, where raw blocks are not recognised) a protected inline span."""
        html = _lookup(self.math, tex, True)
        aria = f' role="math" aria-label="{escape_text(label)}"' if label else ""
        if indent:
            return Markup(f'<span class="sg-math"{aria}>{_protect_markup(html)}</span>')
        return Markup(f'<div class="sg-math"{aria}>{html.replace(chr(10), " ")}</div>')

    def heading(self, level: int, text: str, anchor: str) -> Markup:
        """A heading with a fixed anchor (the entry id); headings with math get a plain TOC label."""
        attrs = f"#{anchor}"
        if "$" in text:
            attrs += f' data-toc-label="{escape_text(self.plain(text))}"'
        return Markup(f"{'#' * level} {self.prose(text)} {{ {attrs} }}")

    def fence(self, code: str, language: str, indent: int = 0) -> Markup:
        """A fenced code block, longer than any backtick run in the code, indented for tabs."""
        code = code.strip("\n")
        ticks = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", code)), default=0))
        lines = [f"{ticks} {language}", *code.splitlines(), ticks]
        pad = " " * indent
        return Markup("\n".join((pad + line).rstrip() for line in lines))

    def code(self, text: str) -> Markup:
        """An inline code span."""
        ticks = "``" if "`" in text else "`"
        return Markup(f"{ticks}{text.replace(chr(10), ' ')}{ticks}")

    def link(self, target: str, anchor: str = "") -> str:
        """A link from the current page to `target` (a docs-relative path), as MkDocs resolves it."""
        relative = posixpath.relpath(target, posixpath.dirname(self.page) or ".")
        return relative + (f"#{anchor}" if anchor else "")


# --- pages ----------------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("sheetgen", "templates"),
        autoescape=True,  # anything not passed through a helper is HTML-escaped
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


def _render(template: str, page: str, math: MathHtml, **context: Any) -> str:
    helpers = _Helpers(math, page)
    text = _environment().get_template(template).render(
        prose=helpers.prose, display=helpers.display, heading=helpers.heading,
        fence=helpers.fence, code=helpers.code, link=helpers.link, **context)
    # Blank-line runs come from template conditionals; Markdown does not care, but diffs do.
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"


def _formula_index(sheet: Sheet) -> dict[str, tuple[Section, Formula]]:
    return {entry.id: (section, entry) for section in sheet.sections for entry in section.entries
            if isinstance(entry, Formula)}


def render_pages(sheet: Sheet, math: MathHtml, links: Links) -> dict[str, str]:
    """`{docs-relative path: Markdown}`: one page per section and the errata page."""
    formulas = _formula_index(sheet)
    errata_entries = _errata_entries(sheet)
    errata_ids = {formula.id for formula, _ in errata_entries}
    pages: dict[str, str] = {}
    for section in sheet.sections:
        path = section_path(section)
        entries = [
            {
                "kind": entry.kind,
                "entry": entry,
                "code": function_source(entry, with_docstring=False) if isinstance(entry, Formula) else
                        function_source(formulas[entry.function][1], with_docstring=False)
                        if isinstance(entry, Snippet) else "",
                "target": (section_path(formulas[entry.function][0]), entry.function)
                          if isinstance(entry, Snippet) else None,
                "target_name": formulas[entry.function][1].name if isinstance(entry, Snippet) else "",
                "erratum": isinstance(entry, Formula) and entry.id in errata_ids,
            }
            for entry in section.entries
        ]
        pages[path] = _render("site_section.md.j2", path, math, sheet=sheet, section=section,
                              entries=entries, links=links, errata_page=ERRATA_PAGE)
    errata = [
        {"formula": formula, "erratum": erratum,
         "card": section_path(formulas[formula.id][0])}
        for formula, erratum in errata_entries
    ]
    pages[ERRATA_PAGE] = _render("site_errata.md.j2", ERRATA_PAGE, math, sheet=sheet, errata=errata)
    return pages


def nav(sheet: Sheet, links: Links, extra_pages: Sequence[str] = ()) -> list[Any]:
    """MkDocs `nav`: home, sections in YAML order, notebooks, errata, then any other pages."""
    items: list[Any] = [{"Home": "index.md"}]
    items.append({"Sections": [{s.title: section_path(s)} for s in sheet.sections]})
    notebooks = [{s.title: links.notebook_pages[s.id]} for s in sheet.sections if s.id in links.notebook_pages]
    if notebooks:
        items.append({"Notebooks": notebooks})
    items.append({"Errata": ERRATA_PAGE})
    items.extend(extra_pages)
    return items


# --- notebook pages -------------------------------------------------------------------------

# nbconvert leaves TeX in Markdown cells for MathJax; the site has no MathJax, so the TeX is
# replaced by KaTeX HTML from the same renderer. Only rendered Markdown cells are touched.
_MARKDOWN_CELL = re.compile(
    r'(<div class="jp-RenderedHTMLCommon jp-RenderedMarkdown[^"]*"[^>]*>)(.*?)(</div>)', re.DOTALL)
_DISPLAY_TEX = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE_TEX = re.compile(r"(?<![\\$])\$([^$]+?)\$")
# Scripts nbconvert adds for MathJax and mermaid: both load from a CDN, neither is needed.
_CDN_SCRIPTS = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->"
    r"|<script[^>]*>(?:(?!</script>).)*?(?:mermaid|MathJax)(?:(?!</script>).)*?</script>"
    r"|<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>",
    re.DOTALL,
)


def typeset_notebook_html(html: str, math: MathHtml, download_url: str | None = None) -> str:
    """mkdocs-jupyter's page HTML with KaTeX instead of TeX, without CDN scripts, and with a
    download button under the title when `download_url` is given."""

    # The notebooks' Markdown trims the TeX of block scalars; so does the lookup.
    typeset = {(tex.strip(), display): markup for (tex, display), markup in math.items()}

    def cell(match: re.Match[str]) -> str:
        body = _DISPLAY_TEX.sub(
            lambda m: typeset.get((html_unescape(m[1]).strip(), True), m[0]), match[2])
        body = _INLINE_TEX.sub(lambda m: typeset.get((html_unescape(m[1]).strip(), False), m[0]), body)
        return match[1] + body + match[3]

    html = _CDN_SCRIPTS.sub("", _MARKDOWN_CELL.sub(cell, html))
    if download_url:
        button = (f'<p class="sg-downloads"><a class="md-button" href="{escape(download_url)}" download>'
                  "Download this notebook (.ipynb)</a></p>")
        end = html.find("</h1>")
        html = html[:end + 5] + button + html[end + 5:] if end >= 0 else button + html
    return html
