"""Server-side KaTeX: rendering, refusals with located messages, batching and the disk cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sheetgen.errors import SheetError
from sheetgen.katex import KatexRenderer, MathRequest, katex_dist_dir
from sheetgen.loader import load_sheet_text
from sheetgen.mathtext import sheet_math_requests, split_inline_math
from sheetgen.model import Fact, Formula, Sheet
from tests.conftest import ROOT, needs_katex

pytestmark = needs_katex


def request(tex: str, line: int = 12, entry_id: str = "bad_one", display: bool = True) -> MathRequest:
    return MathRequest(tex, display, f"formulas.yaml:{line} [{entry_id}] latex", "formulas.yaml", line,
                       entry_id, "latex")


@pytest.fixture
def renderer(tmp_path: Path) -> KatexRenderer:
    return KatexRenderer(cache_path=tmp_path / "katex.json")


def test_renders_html_only_with_the_pinned_version(renderer: KatexRenderer) -> None:
    pinned = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["dependencies"]["katex"]
    assert renderer.version == pinned == "0.19.1"
    [html] = renderer.render([request(r"\frac{a}{b}")])
    assert 'class="mfrac"' in html and "katex-display" in html
    assert "<math" not in html  # output: 'html' keeps MathML out of the PDF's text layer


@pytest.mark.parametrize(("tex", "message"), [
    (r"\href{javascript:alert(1)}{x}", r"refused \href{javascript:alert(1)}"),
    (r"\includegraphics{/etc/passwd}", r"refused \includegraphics{/etc/passwd}"),
    (r"\url{http://example.com}", r"refused \url{http://example.com}"),
    (r"\def\a{\a\a}\a", "Too many expansions"),
    (r"\rule{1e5em}{1e5em}", "invalid TeX size '1e5em"),
    (r"\rule{100000em}{1em}", "exceeds the limit of 10em"),
    (r"\kern 50em x", "exceeds the limit of 10em"),
    (r"\unknowncommand x", r"KaTeX parse error: Undefined control sequence: \unknowncommand at position 1"),
    (r"\frac{1}{", "KaTeX parse error: Unexpected end of input"),
    ("é", "strict mode"),
])
def test_refuses_with_katex_message_entry_and_line(renderer: KatexRenderer, tex: str, message: str) -> None:
    with pytest.raises(SheetError) as raised:
        renderer.render([request(r"x^2"), request(tex, line=41, entry_id="bad_one")])
    [problem] = raised.value.problems
    assert (problem.path, problem.line, problem.entry_id, problem.field) == ("formulas.yaml", 41, "bad_one", "latex")
    assert message in problem.problem
    assert str(raised.value).startswith("formulas.yaml:41 [bad_one] latex: ")
    assert problem.fix


def test_error_located_through_the_loader(renderer: KatexRenderer) -> None:
    text = MINIMAL.replace(r"latex: 'a \cdot b'", r"latex: 'a \cdott b'")
    sheet = load_sheet_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "cdott" in row)
    with pytest.raises(SheetError) as raised:
        renderer.render(sheet_math_requests(sheet))
    assert str(raised.value).startswith(f"formulas.yaml:{line} [dot] latex: KaTeX parse error: "
                                        r"Undefined control sequence: \cdott")


def test_where_string_alone_is_enough() -> None:
    renderer = KatexRenderer(cache_path=None)
    with pytest.raises(SheetError) as raised:
        renderer.render([MathRequest(r"\nope", False, "errata.yaml:7 [e1] problem")])
    [problem] = raised.value.problems
    assert (problem.path, problem.line, problem.entry_id, problem.field) == ("errata.yaml", 7, "e1", "problem")


def test_every_failure_is_reported_in_one_run(renderer: KatexRenderer) -> None:
    with pytest.raises(SheetError) as raised:
        renderer.render([request(r"\nope", 3, "a"), request("x", 4, "b"), request(r"\frac{", 5, "c")])
    assert [p.entry_id for p in raised.value.problems] == ["a", "c"]
    assert renderer.node_runs == 1


def test_one_node_process_per_batch_then_disk_cache(tmp_path: Path) -> None:
    requests = [request(rf"x_{{{i}}} + \frac{{{i}}}{{2}}", i) for i in range(40)]
    first = KatexRenderer(cache_path=tmp_path / "katex.json")
    html = first.render(requests)
    assert first.node_runs == 1 and first.stats is not None and first.stats.cached == 0
    again = KatexRenderer(cache_path=tmp_path / "katex.json")  # a new build: only the disk cache
    assert again.render(requests) == html
    assert again.node_runs == 0 and again.stats is not None and again.stats.cached == 40
    more = again.render([*requests, request("y^3")])
    assert again.node_runs == 1 and more[:40] == html


def test_duplicate_formulas_are_rendered_once(renderer: KatexRenderer) -> None:
    html = renderer.render([request("a+b", 1), request("a+b", 2), request("a+b", 3, display=False)])
    assert html[0] == html[1] != html[2]
    assert renderer.stats is not None and renderer.stats.unique == 2


def test_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "katex.json"
    cache.write_text("{not json", encoding="utf-8")
    renderer = KatexRenderer(cache_path=cache)
    assert "mfrac" in renderer.render([request(r"\frac12")])[0]
    assert json.loads(cache.read_text(encoding="utf-8"))["format"] == 1


def test_missing_node_or_katex_says_run_make(tmp_path: Path) -> None:
    with pytest.raises(SheetError, match=r"node .*not installed.*run `make` \(it runs npm ci\)"):
        KatexRenderer(cache_path=None, node=str(tmp_path / "no-node")).render([request("x")])
    with pytest.raises(SheetError, match=r"KaTeX.*run `make` \(it runs npm ci\)"):
        KatexRenderer(cache_path=None, katex_dir=tmp_path / "node_modules" / "katex").render([request("x")])


def test_dist_dir_has_css_and_ttf_fonts() -> None:
    dist = katex_dist_dir()
    assert (dist / "katex.css").is_file() and (dist / "fonts" / "KaTeX_Main-Regular.ttf").is_file()


@pytest.mark.parametrize(("text", "pieces"), [
    ("plain", [(False, "plain")]),
    (r"scale by $\sqrt{d_k}$ here", [(False, "scale by "), (True, r"\sqrt{d_k}"), (False, " here")]),
    (r"costs \$5 and $x$", [(False, "costs $5 and "), (True, "x")]),
    (r"$a\$b$", [(True, r"a\$b")]),
    ("$a$$b$", [(True, "a"), (True, "b")]),
])
def test_split_inline_math(text: str, pieces: list[tuple[bool, str]]) -> None:
    assert split_inline_math(text) == pieces


@pytest.mark.parametrize("text", ["open $x", "empty $ $ math", "$"])
def test_split_inline_math_refuses_unbalanced(text: str) -> None:
    with pytest.raises(ValueError):
        split_inline_math(text)


def test_sheet_requests_cover_every_display_formula_and_inline_math(sheet: Sheet) -> None:
    requests = sheet_math_requests(sheet)
    display = {r.tex for r in requests if r.display}
    for entry in sheet.entries():
        if isinstance(entry, Formula | Fact) and entry.latex:
            assert entry.latex in display
    assert all(r.where.startswith(f"{sheet.source_path}:") for r in requests)


def test_shipped_sheet_renders(sheet: Sheet, tmp_path: Path) -> None:
    renderer = KatexRenderer(cache_path=tmp_path / "katex.json")
    html = renderer.render(sheet_math_requests(sheet))
    assert all('class="katex' in h for h in html)
    assert renderer.node_runs == 1


MINIMAL = r"""sheet:
  title: Tiny
sections:
  - id: basics
    title: Basics
    entries:
      - kind: formula
        id: dot
        name: Dot product
        latex: 'a \cdot b'
        meaning: Sum of products, $\sum_i a_i b_i$.
        source: Strang (2016), §1.2
        implementation: |
          def dot(a, b):
              return np.sum(np.asarray(a) * np.asarray(b))
        examples: |
          >>> int(dot([1, 2], [3, 4]))
          11
"""
