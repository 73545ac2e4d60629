"""The site's generated pages: a `Sheet` plus its typeset math → `{path: Markdown}`.

Pure: no file I/O, no MkDocs. `sheetgen.mkdocs_plugin` renders the math (`math_requests` →
`KatexRenderer.render_map`) and hands the pages to MkDocs.

Everything from the YAML is escaped on its way into Markdown: templates autoescape, and the
only ways to emit markup are the helpers below (`prose`, `display`, `fence`, ...), which escape
HTML *and* the characters Markdown would act on. KaTeX HTML is spliced in as finished markup.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from ..errors import SheetError
from ..katex import MathRequest
from ..mathtext import sheet_math_requests, split_inline_math
from ..model import Formula, Section, Sheet, Snippet
from .code import function_source

__all__ = [
    "MATERIAL_WORKER",
    "NOTEBOOK_SEARCH_BOOST",
    "NOTEBOOK_TITLE_SUFFIX",
    "Erratum",
    "Links",
    "MathHtml",
    "NotebookPage",
    "compact_preview",
    "edit_url",
    "mark_ui_for_search",
    "math_requests",
    "nav",
    "notebook_page",
    "plain_forms",
    "render_pages",
    "search_worker",
    "section_path",
    "tex_to_plain",
    "typeset_notebook_html",
    "use_search_worker",
]

MathHtml = Mapping[tuple[str, bool], str]
"""KaTeX HTML by (TeX, display), as `KatexRenderer.render_map` returns it."""



@dataclass(frozen=True)
class Erratum:
    """What the seed cheat sheet printed for a formula, and the tests that keep it fixed: the view of a
    formula's `seed_error:` block that the errata page shows."""

    problem: str
    """What was wrong, as prose (inline `$math$` allowed)."""
    tests: tuple[str, ...]
    """pytest node ids of the tests that fail if the error comes back."""
    wrong: str = ""
    """The seed's formula, as TeX (empty when only its code was wrong)."""
    wrong_code: str = ""
    """The seed's code, when that is where the error was."""


_ERRATA_TESTS = "tests/test_seed_errata.py::"

@dataclass(frozen=True)
class Links:
    """Where the downloads are, as paths relative to the docs root (what MkDocs resolves)."""

    pdf: str | None = "downloads/cheatsheet.pdf"
    pdf_full: str | None = "downloads/cheatsheet-full.pdf"
    """The full edition (every printed entry, at most two pages)."""
    module: str | None = "downloads/formulas.py"
    notebook_pages: Mapping[str, str] = field(default_factory=dict)
    """Section id → the rendered notebook page (`notebooks/<id>.ipynb`)."""
    notebook_files: Mapping[str, str] = field(default_factory=dict)
    """Section id → the raw notebook to download (`downloads/notebooks/<id>.ipynb`)."""
    figures: Mapping[str, str] = field(default_factory=dict)
    """Entry id → its figure (`assets/figures/<id>.svg`, drawn by `sheetgen.figures`)."""


def section_path(section: Section) -> str:
    return f"sections/{section.id}.md"


ERRATA_PAGE = "errata.md"

# Search ranking (Material's `search.boost` page setting, a factor on every match in the page): a
# formula's own card comes before the errata card and the notebook cell with the same name.
SECTION_SEARCH_BOOST = 2.0
ERRATA_SEARCH_BOOST = 0.5
NOTEBOOK_SEARCH_BOOST = 0.2
NOTEBOOK_TITLE_SUFFIX = " — notebook"


# --- math -----------------------------------------------------------------------------------


def _errata_entries(sheet: Sheet) -> list[tuple[Formula, Erratum]]:
    """The formulas the seed sheet got wrong (their `seed_error:` blocks in the YAML), in sheet order."""
    return [(f, Erratum(problem=f.seed_error.problem, tests=tuple(_ERRATA_TESTS + t for t in f.seed_error.tests),
                        wrong=f.seed_error.printed or "", wrong_code=f.seed_error.code or ""))
            for f in sheet.formulas() if f.seed_error is not None]


def math_requests(sheet: Sheet) -> list[MathRequest]:
    """Every piece of TeX the pages show: the sheet's own, then the errata's seed forms."""
    requests = sheet_math_requests(sheet)
    for formula, erratum in _errata_entries(sheet):
        if erratum.wrong:
            requests.append(MathRequest.at(sheet, formula.id, "seed_error", erratum.wrong, True))
        try:
            pieces = split_inline_math(erratum.problem)
        except ValueError as err:
            raise SheetError.single(sheet.source_path, sheet.line_of(formula.id, "seed_error"), str(err),
                                    "close it with a `$`, or write `\\$` for a dollar sign",
                                    entry_id=formula.id, field="seed_error") from None
        requests.extend(MathRequest.at(sheet, formula.id, "seed_error", tex, False) for is_math, tex in pieces
                        if is_math)
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


# --- plain text of TeX, for the search index and screen readers ------------------------------

_TEX_WORDS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν", "xi": "ξ", "pi": "π",
    "rho": "ρ", "sigma": "σ", "tau": "τ", "phi": "φ", "varphi": "φ", "chi": "χ", "psi": "ψ", "omega": "ω",
    "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ",
    "Omega": "Ω", "sum": "Σ", "prod": "Π", "int": "∫", "partial": "∂", "nabla": "∇", "infty": "∞",
    "cdot": "·", "times": "×", "odot": "⊙", "otimes": "⊗", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "ne": "≠", "neq": "≠", "approx": "≈", "sim": "~", "propto": "∝", "in": "∈", "to": "→",
    "rightarrow": "→", "leftarrow": "←", "gets": "←", "mid": "|", "parallel": "‖", "lVert": "‖",
    "rVert": "‖", "lvert": "|", "rvert": "|", "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉",
    "langle": "⟨", "rangle": "⟩", "top": "ᵀ", "prime": "′", "sqrt": "√", "pm": "±", "dots": "…",
    "ldots": "…", "cdots": "⋯",
}
# Sizing commands: no text of their own.
_TEX_SILENT = {"left", "right", "big", "Big", "bigg", "Bigg", "textstyle", "displaystyle", "limits", "nolimits"}
_TEX_TOKEN = re.compile(r"\\([a-zA-Z]+|.)|([{}])|(\S)|\s+")
_SUBSCRIPTS = dict(zip("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ", strict=True))
_SUPERSCRIPTS = dict(zip("0123456789+-=()nitTᵀ′", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵗᵀᵀ′", strict=True))
_TEX_ACCENTS = {"hat": "\u0302", "tilde": "\u0303", "bar": "\u0304"}


def tex_to_plain(tex: str) -> str:
    """A readable Unicode approximation of TeX (`\\frac{a}{b}` → `a/b`, `\\beta_1` → `β_1`), for
    what search indexes and screen readers read; the page shows KaTeX's rendering."""
    tokens = [(m[1], m[2], m[3]) for m in _TEX_TOKEN.finditer(tex)]
    position = 0

    def argument() -> str:
        """The next group or single token, as plain text."""
        nonlocal position
        while position < len(tokens) and tokens[position] == (None, None, None):
            position += 1  # whitespace between a command and its argument
        if position >= len(tokens):
            return ""
        if tokens[position][1] == "{":
            position += 1
            return sequence(closing=True)
        return one()

    def one() -> str:
        nonlocal position
        name, brace, char = tokens[position]
        position += 1
        if brace:
            return sequence(closing=True) if brace == "{" else ""
        if char is not None:
            if char in "^_":
                script = argument()
                table = _SUPERSCRIPTS if char == "^" else _SUBSCRIPTS
                if script and all(c in table for c in script):
                    return "".join(table[c] for c in script)
                return char + _group(script)
            return char
        if name is None:
            return " "
        if name in ("frac", "dfrac", "tfrac"):
            return f"{_group(argument())}/{_group(argument())}"
        if name == "sqrt":
            return "√" + _group(argument())
        if name in _TEX_ACCENTS:
            return argument() + _TEX_ACCENTS[name]
        if name in ("text", "operatorname", "mathrm", "mathbf", "mathbb", "mathcal"):
            return argument()
        if name in _TEX_WORDS:
            return _TEX_WORDS[name]
        if name in _TEX_SILENT:
            return ""
        if name in ("begin", "end"):
            argument()  # the environment's name
            return " "
        if name in ",;: " or name in ("quad", "qquad"):
            return " "
        if name in "!":
            return ""
        if name == "\\":
            return "; "
        return name  # \log, \max, \{, \%: the name or the character

    def sequence(closing: bool = False) -> str:
        nonlocal position
        parts: list[str] = []
        while position < len(tokens):
            if closing and tokens[position][1] == "}":
                position += 1
                break
            parts.append(one())
        return "".join(parts)

    return " ".join(sequence().replace("&", "").split())


def _group(text: str) -> str:
    """`a+b` → `(a+b)`; one symbol, or text already in brackets, stays bare."""
    text = text.strip()
    if len(text) <= 1 or (text[0] in "([" and text[-1] in ")]") or text.isalnum():
        return text
    return f"({text})"


def plain_forms(sheet: Sheet) -> dict[str, str]:
    """Display TeX (stripped) → its plain form: the YAML's `plain` where given, else `tex_to_plain`."""
    forms: dict[str, str] = {}
    for entry in sheet.entries():
        latex = getattr(entry, "latex", None)
        if isinstance(latex, str):
            plain = getattr(entry, "plain", "") or ""
            forms[latex.strip()] = plain.strip() or tex_to_plain(latex)
    return forms


def _lookup(math: MathHtml, tex: str, display: bool) -> str:
    try:
        return math[(tex, display)]
    except KeyError:
        raise KeyError(f"no typeset math for {tex!r} (display={display}); pass math_requests(sheet) to "
                       "the renderer") from None


# Material's search skips an element with this attribute, and everything in it until an element of
# the same tag closes (its parser compares elements by tag name). KaTeX's HTML is spans and SVG
# only, so a <div> or a custom <sg-m> element around it is skipped whole. The plain form goes
# next to it in a `hidden` span: indexed, never shown (the math's aria-label reads the same).
_NO_SEARCH = "data-search-exclude"


def _inline_math(katex_html: str, plain: str) -> str:
    label = escape_text(plain)
    return (f'<sg-m role="math" aria-label="{label}" {_NO_SEARCH}>{katex_html}</sg-m>'
            f'<span class="sg-plain" hidden>{label}</span>')


class _Helpers:
    """The functions templates call; the only sources of unescaped markup."""

    def __init__(self, math: MathHtml, page: str) -> None:
        self.math = math
        self.page = page

    def prose(self, text: str) -> Markup:
        """Text with inline `$math$`, escaped, math typeset."""
        parts = [
            _inline_math(_protect_markup(_lookup(self.math, chunk, False)), tex_to_plain(chunk))
            if is_math else _escape_chunk(chunk)
            for is_math, chunk in split_inline_math(text)
        ]
        return Markup(_escape_line_start("".join(parts).strip()))

    def plain(self, text: str) -> str:
        """Prose without math markup, the math as `tex_to_plain` reads it (for labels)."""
        return " ".join("".join(tex_to_plain(chunk) if is_math else chunk
                                for is_math, chunk in split_inline_math(text)).split())

    def display(self, tex: str, label: str = "", indent: int = 0, index: bool = True) -> Markup:
        """A display formula. At the top level a raw HTML block, which Markdown leaves alone; indented
        (in an admonition or a tab, where raw blocks are not recognised) protected inline markup.

        Search indexes `label` (the plain form; `tex_to_plain` when empty) instead of KaTeX's spans;
        `index=False` keeps the formula out of the index (the errata's wrong forms)."""
        html = _lookup(self.math, tex, True)
        label = label or tex_to_plain(tex)
        aria = f' role="math" aria-label="{escape_text(label)}"'
        plain = f'<span class="sg-plain" hidden>{escape_text(label)}</span>' if index else ""
        if indent:
            return Markup(f'<sg-m class="sg-math"{aria} {_NO_SEARCH}>{_protect_markup(html)}</sg-m>{plain}')
        return Markup(f'<div class="sg-formula"><div class="sg-math"{aria} {_NO_SEARCH}>'
                      f'{html.replace(chr(10), " ")}</div>{plain}</div>')

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


def edit_url(sheet: Sheet, entry_id: str) -> str:
    """The entry's line in formulas.yaml on the repository's default branch (`sheet.repo_url`), or ""."""
    repo = sheet.sheet.repo_url.rstrip("/")
    line = sheet.line_of(entry_id)
    if not repo or not line:
        return ""
    # GitHub and GitLab resolve HEAD to the default branch.
    return f"{repo}/blob/HEAD/{posixpath.basename(sheet.source_path.replace(chr(92), '/'))}#L{line}"


def _tab_code(formula: Formula, formulas: Mapping[str, tuple[Section, Formula]]) -> str:
    """The NumPy tab: the implementation with the imports it needs, so copied code runs."""
    code = function_source(formula, with_docstring=False)
    helpers = sorted(other for other in formulas
                     if other != formula.id and re.search(rf"\b{re.escape(other)}\s*\(", code))
    imports = ["import numpy as np"]
    if helpers:
        imports.append(f"from formulas import {', '.join(helpers)}  # this site's NumPy module")
    return "\n".join(imports) + "\n\n" + code


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
                "code": _tab_code(entry, formulas) if isinstance(entry, Formula) else
                        function_source(formulas[entry.function][1], with_docstring=False)
                        if isinstance(entry, Snippet) else "",
                "target": (section_path(formulas[entry.function][0]), entry.function)
                          if isinstance(entry, Snippet) else None,
                "target_name": formulas[entry.function][1].name if isinstance(entry, Snippet) else "",
                "erratum": isinstance(entry, Formula) and entry.id in errata_ids,
                "edit": edit_url(sheet, entry.id),
            }
            for entry in section.entries
        ]
        has_code = any(isinstance(entry, Formula | Snippet) for entry in section.entries)
        pages[path] = _render("site_section.md.j2", path, math, sheet=sheet, section=section,
                              entries=entries, links=links, errata_page=ERRATA_PAGE, has_code=has_code,
                              search_boost=SECTION_SEARCH_BOOST)
    errata = [
        {"formula": formula, "erratum": erratum,
         "card": section_path(formulas[formula.id][0])}
        for formula, erratum in errata_entries
    ]
    pages[ERRATA_PAGE] = _render("site_errata.md.j2", ERRATA_PAGE, math, sheet=sheet, errata=errata,
                                 search_boost=ERRATA_SEARCH_BOOST)
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


def typeset_notebook_html(html: str, math: MathHtml, download_url: str | None = None,
                          plain: Mapping[str, str] | None = None) -> str:
    """mkdocs-jupyter's page HTML with KaTeX instead of TeX, without CDN scripts, and with a
    download button under the title when `download_url` is given.

    The math is kept out of the search index; its plain form (`plain`, by display TeX, as
    `plain_forms` gives it; else `tex_to_plain`) is indexed instead."""

    # The notebooks' Markdown trims the TeX of block scalars; so does the lookup.
    typeset = {(tex.strip(), display): markup for (tex, display), markup in math.items()}
    plain = plain or {}

    def replace(match: re.Match[str], display: bool) -> str:
        tex = html_unescape(match[1]).strip()
        markup = typeset.get((tex, display))
        if markup is None:
            return match[0]
        label = escape(plain.get(tex) or tex_to_plain(tex) if display else tex_to_plain(tex))
        css = ' class="sg-math"' if display else ""
        return (f'<sg-m{css} role="math" aria-label="{label}" {_NO_SEARCH}>{markup}</sg-m>'
                f'<span class="sg-plain" hidden>{label}</span>')

    def cell(match: re.Match[str]) -> str:
        body = _DISPLAY_TEX.sub(lambda m: replace(m, True), match[2])
        body = _INLINE_TEX.sub(lambda m: replace(m, False), body)
        return match[1] + body + match[3]

    html = _CDN_SCRIPTS.sub("", _MARKDOWN_CELL.sub(cell, html))
    if download_url:
        button = (f'<p class="sg-downloads" {_NO_SEARCH}><a class="md-button" href="{escape(download_url)}" '
                  "download>Download this notebook (.ipynb)</a></p>")
        end = html.find("</h1>")
        html = html[:end + 5] + button + html[end + 5:] if end >= 0 else button + html
    return html


@dataclass(frozen=True)
class NotebookPage:
    html: str
    """The page content, linking the shared assets instead of carrying them inline."""
    assets: Mapping[str, str]
    """Site path → text of what every notebook page shares: mkdocs-jupyter's inline CSS (JupyterLab's
    theme, ~0.6 MB) and its copy-button script, each named by a hash of its content."""


_STYLE = re.compile(r"<style[^>]*>(.*?)</style>\s*", re.DOTALL)
_CLIPBOARD_SCRIPT = re.compile(r"<script>(\s*\(function \(global, factory\).*?ClipboardCopyElement.*?)</script>\s*",
                               re.DOTALL)
_H1 = re.compile(r"(<h1\b[^>]*>)(.*?)(<a class=\"anchor-link\"[^>]*>¶</a>)?(</h1>)", re.DOTALL)
# Markup that is UI, not content, kept out of the search index. Each element named here holds no
# element of its own tag (see _NO_SEARCH): prompts hold text, the copy button a <div>, the
# highlighted input a <pre> (the card on the section page shows the same code, indexed there), a
# text output a <pre> (numbers, which only add noise to results).
_NOTEBOOK_UI = re.compile(
    r'<(div class="(?:jp-InputPrompt|jp-OutputPrompt|highlight-ipynb)\b[^"]*")|<(clipboard-copy)\b'
    r'|<(div class="jp-RenderedText jp-OutputArea-output" data-mime-type="text/plain")')
# The copy button copies a hidden duplicate of each cell's source; the highlighted <pre> has the
# same text (textContent), so the button targets the <pre> and the duplicate goes.
_COPY_TEXT = re.compile(r'(<div class="highlight-ipynb[^"]*"[^>]*>)<pre>(.*?)</pre></div>\s*'
                        r'<div class="clipboard-copy-txt"[^>]*\bid="([^"]+)"[^>]*>.*?</div>', re.DOTALL)
# Its icon, the same 0.6 KB SVG in every cell, becomes one CSS mask (sheetgen.css).
_COPY_ICON = re.compile(r'<svg [^>]*class="clipboard-copy-icon"[^>]*>.*?</svg>', re.DOTALL)
# Pygments tokens the notebook theme gives no style of its own (names, whitespace): plain text.
_PLAIN_TOKEN = re.compile(r'<span class="(?:n|w)">([^<]*)</span>')


def _shared_asset(kind: str, text: str) -> tuple[str, str]:
    return f"assets/notebook-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]}.{kind}", text


# --- notebook page weight (issue 11: a built notebook page is at most NOTEBOOK_PAGE_BUDGET bytes) ---

NOTEBOOK_PAGE_BUDGET = 150_000
# The theme around the content (header, the nav with the page's table of contents, footer) weighs
# 25-33 KB; what the notebook itself may weigh before its formulas become links to their cards.
NOTEBOOK_CONTENT_BUDGET = 110_000
# nbconvert markup the shared CSS hides or never needs: the collapsers (`display: none`), Markdown
# cells' empty prompts (hidden: only code cells show theirs), a stray attribute, Pygments' empty
# first span, and the line breaks between block elements (none inside a <pre>: it holds spans only).
_HIDDEN_MARKUP = re.compile(
    r'<div class="jp-Collapser [^"]*">\s*</div>\s*'
    r'|<div class="jp-InputPrompt jp-InputArea-prompt"(?: data-search-exclude)?>\s*</div>'
    r'| ,=""(?=[ >])')
_PRE_START = re.compile(r"(<pre\b[^>]*>)<span></span>")
_BLOCK_GAP = re.compile(r"(</div>|<div\b[^>]*>|<(?:/p|/h[1-6]|/pre|/ul|/ol)>)\s+(?=<)|\s+(?=</?div\b)")
# A formula of a card, as `typeset_notebook_html` writes it, in the Markdown cell of its entry
# (notebooks.py names it `<entry id>-md`).
_MARKDOWN_CELL_START = re.compile(r'<div class="jp-Cell jp-MarkdownCell[^"]*" id="cell-id=([^"]+?)(?:-md)?">')
_DISPLAY_MATH = re.compile(r'<sg-m class="sg-math" role="math" aria-label="([^"]*)" ' + _NO_SEARCH
                           + r'>.*?</sg-m><span class="sg-plain" hidden>[^<]*</span>', re.DOTALL)
NOTEBOOK_CSS = Path(__file__).resolve().parent.parent / "assets" / "notebook.css"
"""The rules of the markup this module adds to notebook pages; joins the shared stylesheet."""


# Pygments' token spans, the most numerous elements of a page (~2,500 on the largest), as <i class=…>:
# 8 bytes less each; notebook.css keeps <i> upright in code, the token classes style it as before.
_TOKEN_SPAN = re.compile(r'<span class="([\w-]+)">([^<]*)</span>')
_CODE = re.compile(r'(<pre id="cell-[^"]*">)(.*?)(</pre>)', re.DOTALL)
# Consecutive text outputs of a cell without prompts (display() calls): one <pre>, one line each.
_TEXT_OUTPUT = (r'<div class="jp-OutputArea-child"><div class="jp-OutputPrompt jp-OutputArea-prompt" '
                + _NO_SEARCH + r'></div><div class="jp-RenderedText jp-OutputArea-output" data-mime-type="text/plain" '
                + _NO_SEARCH + r' tabindex="0"><pre>([^<]*)</pre></div></div>')
_TEXT_OUTPUTS = re.compile(f"(?:{_TEXT_OUTPUT}){{2,}}")
_ONE_TEXT_OUTPUT = re.compile(_TEXT_OUTPUT)
# The copy buttons only work with JavaScript (a custom element), so the shared script adds them
# (assets/notebook.js, the same markup) instead of ~250 bytes of it in every code cell.
_COPY_BUTTON = re.compile(r'<div class="zeroclipboard-container"><clipboard-copy [^>]*>.*?</clipboard-copy></div>',
                          re.DOTALL)
NOTEBOOK_JS = Path(__file__).resolve().parent.parent / "assets" / "notebook.js"


def compact_notebook_html(html: str, *, scripted_copy_buttons: bool = True) -> str:
    """nbconvert's markup without what is never seen (see `_HIDDEN_MARKUP`) and in fewer bytes: shorter
    token elements in code, a cell's text outputs in one block, and (`scripted_copy_buttons`: when the
    page loads notebook.js) no copy buttons, which the script adds. The page looks the same."""
    html = _HIDDEN_MARKUP.sub("", html)
    html = _PRE_START.sub(r"\1", html)
    html = _BLOCK_GAP.sub(lambda m: m[1] or "", html)
    html = _CODE.sub(lambda m: m[1] + _TOKEN_SPAN.sub(r"<i class=\1>\2</i>", m[2]) + m[3], html)
    if scripted_copy_buttons:
        html = _COPY_BUTTON.sub("", html)

    def merge(match: re.Match[str]) -> str:
        lines = [m[1].removesuffix("\n") for m in _ONE_TEXT_OUTPUT.finditer(match[0])]
        first = _ONE_TEXT_OUTPUT.match(match[0])
        assert first is not None
        return match[0][:first.start(1)] + "\n".join(lines) + match[0][first.end(1):first.end()]

    return _TEXT_OUTPUTS.sub(merge, html)


def link_formulas_to_cards(html: str, section_url: str) -> str:
    """Each display formula of the page as its plain form (its `aria-label`; `notebook_page` makes
    that `tex_to_plain` of the LaTeX) with a link to its card on the section page, where it is
    typeset; inline math stays typeset. For pages whose typeset formulas (KaTeX HTML, ~1-13 KB
    each) would make them too heavy."""

    def cell(start: int, end: int, entry: str) -> str:
        def link(match: re.Match[str]) -> str:
            href = escape(f"{section_url}#{entry}" if entry else section_url)
            return (f'<span class="sg-nb-formula"><span class="sg-nb-plain">{match[1]}</span> '
                    f'<a class="sg-nb-card" href="{href}" {_NO_SEARCH}>typeset on its card</a></span>')

        return _DISPLAY_MATH.sub(link, html[start:end])

    starts = [(m.start(), m[1]) for m in _MARKDOWN_CELL_START.finditer(html)]
    parts = [html[:starts[0][0]] if starts else html]
    for i, (start, entry) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(html)
        parts.append(cell(start, end, entry if entry not in ("intro", "setup") else ""))
    return "".join(parts)


def notebook_page(html: str, math: MathHtml, url_for: Callable[[str], str], *,
                  download: str | None = None, plain: Mapping[str, str] | None = None,
                  title_suffix: str = NOTEBOOK_TITLE_SUFFIX, section: str | None = None,
                  budget: int = NOTEBOOK_CONTENT_BUDGET) -> NotebookPage:
    """Everything the site does to a notebook page mkdocs-jupyter rendered: KaTeX (see
    `typeset_notebook_html`); its inline CSS and copy-button script moved to shared files, the
    per-cell copies of the code and of the copy icon dropped, markup nobody sees dropped
    (`compact_notebook_html`); the title marked as the notebook's (in the page and in search
    results); permalinks like the other pages' (not indexed); prompts, copy buttons and input code
    kept out of the search index.

    A page whose content would still weigh more than `budget` bytes shows its display formulas as
    text with a link to the typeset card (`link_formulas_to_cards`) on `section` (the site path of
    the section page; by default the one of the notebook `download`, `downloads/notebooks/<id>.ipynb`
    → `sections/<id>/`). That text is `tex_to_plain` of the checked LaTeX, never the YAML's
    hand-written `plain` (which no check compares with the formula): what a page shows as the
    formula comes from what the printed-formula check proved.

    `url_for` maps a site path to a URL relative to this page."""
    rendered = html
    html = typeset_notebook_html(html, math, url_for(download) if download else None, plain)
    assets: dict[str, str] = {}
    links: list[str] = []
    css = "\n".join(m[1].strip() for m in _STYLE.finditer(html))
    if css:
        css += "\n" + NOTEBOOK_CSS.read_text(encoding="utf-8").strip()
        path, _ = _shared_asset("css", css)
        assets[path] = css
        links.append(f'<link rel="stylesheet" href="{escape(url_for(path))}">')
        html = _STYLE.sub("", html)
    script = _CLIPBOARD_SCRIPT.search(html)
    if script:
        code = script[1].strip() + "\n" + NOTEBOOK_JS.read_text(encoding="utf-8")
        path, _ = _shared_asset("js", code)
        assets[path] = code
        links.append(f'<script src="{escape(url_for(path))}"></script>')
        html = html[:script.start()] + html[script.end():]
    html = "\n".join(links) + "\n" + html
    html = _COPY_TEXT.sub(lambda m: f'{m[1]}<pre id="{m[3]}">{m[2]}</pre></div>', html)
    html = _COPY_ICON.sub('<span class="clipboard-copy-icon sg-copy-icon" aria-hidden="true"></span>', html)
    html = _PLAIN_TOKEN.sub(r"\1", html)
    html = _H1.sub(lambda m: f"{m[1]}{m[2].rstrip()}{escape(title_suffix)}{m[4]}", html, count=1)
    html = html.replace('<a class="anchor-link"', '<a class="headerlink" title="Permanent link"')
    html = _NOTEBOOK_UI.sub(lambda m: f"<{m[1] or m[2] or m[3]} {_NO_SEARCH}", html)
    html = compact_notebook_html(html, scripted_copy_buttons=script is not None)
    if len(html.encode("utf-8")) > budget:
        if section is None and download and (m := re.fullmatch(r"downloads/notebooks/([\w-]+)\.ipynb", download)):
            section = f"sections/{m[1]}/"
        if section is not None:
            if plain:  # again with every label from the checked LaTeX (see above), then linked
                return notebook_page(rendered, math, url_for, download=download, plain=None,
                                     title_suffix=title_suffix, section=section, budget=0)
            html = link_formulas_to_cards(html, url_for(section))
    return NotebookPage(html=html, assets=assets)


_UI_MARKUP = re.compile(r'<(div class="tabbed-labels"|p class="admonition-title")')


def mark_ui_for_search(html: str) -> str:
    """A generated page's tab labels and admonition titles ("NumPy", "Example", "Framework
    conventions") kept out of the search index, where they ran into the text ("NumPyExample")."""
    return _UI_MARKUP.sub(lambda m: f"<{m[1]} {_NO_SEARCH}", html)


# --- search: a card named by the typed word comes first -------------------------------------------

SEARCH_WORKER_JS = Path(__file__).resolve().parent.parent / "assets" / "search-worker.js"
MATERIAL_WORKER = re.compile(r"search\.[0-9a-f]+\.min\.js")
"""The file name of Material's search worker (in assets/javascripts/workers/, named by its hash)."""
_CONFIG_SCRIPT = re.compile(r'(<script id="__config" type="application/json">)(.*?)(</script>)', re.DOTALL)


def search_worker(material_worker: str) -> tuple[str, str]:
    """The site's search worker, next to Material's (`material_worker`, its file name), as (file name,
    text): Material's worker, run unchanged, whose results are reordered by name, so that the card
    named by the typed words comes first (see assets/search-worker.js). Without it "adam" found the
    AdamW card before the Adam card."""
    if not MATERIAL_WORKER.fullmatch(material_worker):
        raise ValueError(f"not the file name of Material's search worker: {material_worker!r}")
    template = SEARCH_WORKER_JS.read_text(encoding="utf-8")
    text = template.replace("importScripts(MATERIAL_WORKER);", f'importScripts("{material_worker}");')
    if text == template:
        raise ValueError(f"{SEARCH_WORKER_JS} has no `importScripts(MATERIAL_WORKER);` line")
    return f"sheetgen-search.{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}.js", text


def use_search_worker(page_html: str, material_worker: str, ours: str) -> str:
    """A built page whose search runs `ours` instead of Material's worker (both file names, in the same
    folder). The worker is named in the page's `__config` JSON; a page without it is returned as is."""
    def swap(match: re.Match[str]) -> str:
        return match[1] + match[2].replace(f'/{material_worker}"', f'/{ours}"') + match[3]
    return _CONFIG_SCRIPT.sub(swap, page_html, count=1)


@lru_cache(maxsize=2)  # `serve` rebuilds the pages on every save; the preview changes with the PDF only
def compact_preview(png: bytes, colours: int = 32) -> bytes:
    """The sheet preview as a palette PNG: the page is text and a few colours, so 32 colours look the
    same and weigh about a quarter (252 KB → ~70 KB at 60 dpi). Deterministic for the same input."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        palette = image.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT,
                                                dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, "PNG", optimize=True)
    return out.getvalue()
