"""A real browser (headless Debian chromium via playwright) on the built site: math layout, search order,
contrast, the phone layout and quiz mode. One site build for the whole file (tests/sitehelpers.py)."""

from __future__ import annotations

import io
import json
import re
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from html import unescape
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sheetgen.model import QA, Formula, Sheet
from tests.sitehelpers import ROOT, built_site

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed"),
    pytest.mark.skipif(shutil.which("node") is None or not (ROOT / "node_modules" / "katex").is_dir(),
                       reason="KaTeX (node and node_modules/katex) is not installed"),
]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no request lines in the test output


@pytest.fixture(scope="module")
def server(sheet: Sheet) -> Iterator[str]:
    site = built_site(sheet.source_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def first_section_with_formulas(sheet: Sheet) -> tuple[str, int]:
    for section in sheet.sections:
        count = sum(isinstance(e, Formula) for e in section.entries)
        if count:
            return section.id, count
    pytest.skip("the sheet has no formulas")


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_math_boxes_have_size(server: str, browser: Any, sheet: Sheet, javascript: bool) -> None:
    section_id, formulas = first_section_with_formulas(sheet)
    context = browser.new_context(java_script_enabled=javascript, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        offsite: list[str] = []
        page.on("request", lambda request: offsite.append(request.url)
                if not request.url.startswith(server) and not request.url.startswith("data:") else None)
        page.goto(f"{server}/sections/{section_id}/", wait_until="load")
        page.evaluate("document.fonts.ready")
        displays = page.locator(".sg-math .katex-html")
        assert displays.count() >= formulas
        for index in range(displays.count()):
            box = displays.nth(index).bounding_box()
            assert box is not None and box["width"] > 10 and box["height"] > 10, (index, box)
        # KaTeX's own fonts were loaded from the site, and nothing was fetched from elsewhere.
        families = page.evaluate("[...document.fonts].filter(f => f.status === 'loaded').map(f => f.family)")
        assert "KaTeX_Main" in families and "KaTeX_Math" in families
        assert offsite == []
        # A fraction is drawn as a stacked box: taller than a line of text.
        fraction = page.locator(".katex .mfrac").first
        if fraction.count():
            frac_box = fraction.bounding_box()
            assert frac_box is not None and frac_box["height"] > 20
    finally:
        context.close()


def test_dark_palette_math_is_readable(server: str, browser: Any, sheet: Sheet) -> None:
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(color_scheme="dark")
    try:
        page = context.new_page()
        page.goto(f"{server}/sections/{section_id}/", wait_until="load")
        scheme = page.evaluate("document.body.getAttribute('data-md-color-scheme')")
        assert scheme == "slate"
        colour = page.evaluate("getComputedStyle(document.querySelector('.sg-math .katex')).color")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert luminance(colour) - luminance(background) > 0.4, (colour, background)
    finally:
        context.close()


def luminance(css_colour: str) -> float:
    """Relative luminance of an `rgb(...)`/`rgba(...)` colour, 0 (black) to 1 (white)."""
    parts = css_colour[css_colour.index("(") + 1: css_colour.index(")")].replace("/", ",").split(",")
    channels = [float(p) / 255 for p in parts[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_notebook_page_math_has_size(server: str, browser: Any, sheet: Sheet) -> None:
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server}/notebooks/{section_id}/", wait_until="load")
        displays = page.locator(".jp-RenderedMarkdown .katex-display .katex-html")
        assert displays.count() >= 1
        box = displays.first.bounding_box()
        assert box is not None and box["width"] > 10 and box["height"] > 10
    finally:
        context.close()


# --- search, weight, contrast, mobile, quiz (issue 11, issue 13) --------------------------------------


def section_of(sheet: Sheet, entry_id: str) -> str | None:
    return next((s.id for s in sheet.sections for e in s.entries if e.id == entry_id), None)


def search_groups(page: Any, query: str, *, folded: bool = True) -> list[list[str]]:
    """Material's search box, as a reader types: result groups (one per page), each a list of
    site-relative links, in the order shown; `folded=False`: without those folded under "n more on
    this page"."""
    box = page.locator("input.md-search__input")
    box.click()
    box.press_sequentially(query, delay=30)
    # Results for the whole query (not a prefix typed so far): their links highlight the query's terms.
    page.wait_for_function(
        "q => [...document.querySelectorAll('a.md-search-result__link')]"
        ".some(a => new URL(a.href).searchParams.get('h') === q)", arg=query, timeout=15000)
    groups: list[list[str]] = page.eval_on_selector_all(
        ".md-search-result__item",
        "(items, folded) => items.map(item => [...item.querySelectorAll("
        "folded ? 'a.md-search-result__link' : ':scope > a.md-search-result__link')]"
        ".map(a => new URL(a.href).pathname + new URL(a.href).hash))", folded)
    box.fill("")
    return groups


@pytest.mark.parametrize(("query", "card"), [("adam", "adam_step"), ("softmax", "softmax"), ("ndcg", "ndcg_at_k")])
def test_search_finds_the_card_first(server: str, browser: Any, sheet: Sheet, query: str, card: str) -> None:
    section = section_of(sheet, card)
    if section is None:
        pytest.skip(f"the sheet has no {card}")
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server}/", wait_until="load")
        groups = search_groups(page, query)
        shown = search_groups(page, query, folded=False)
        # The card's section page is the first result (not its notebook, not the errata) ...
        assert groups[0][0] == f"/sections/{section}/", groups[:3]
        # ... and the card is its first hit (before AdamW, which Material's prefix search ranks higher).
        assert groups[0][1] == f"/sections/{section}/#{card}", groups[0]
        assert shown[0][:2] == groups[0][:2], shown[0]  # shown, not folded under "n more on this page"
        notebook = [i for i, g in enumerate(groups) if g[0].startswith("/notebooks/")]
        assert not notebook or notebook[0] > 0
    finally:
        context.close()


def test_search_index_is_clean(server: str, sheet: Sheet) -> None:
    site = built_site(sheet.source_path)
    docs = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))["docs"]
    for doc in docs:
        words = unescape(re.sub(r"<[^>]+>", " ", doc["title"] + " " + doc["text"]))
        for noise in ("¶", "Copied!", "In [", "NumPyExample", "\u200b"):  # U+200B: KaTeX's spans as text
            assert noise not in words, (noise, doc["location"])
    by_location = {doc["location"]: unescape(doc["text"]) for doc in docs}
    for section in sheet.sections:
        for entry in section.entries:
            if isinstance(entry, Formula) and entry.plain:
                text = by_location[f"sections/{section.id}/#{entry.id}"]
                assert " ".join(entry.plain.split()) in " ".join(text.split()), entry.id
    notebook_titles = [d["title"] for d in docs if d["location"].startswith("notebooks/") and "#" not in d["location"]]
    assert notebook_titles and all(title.endswith(" — notebook") for title in notebook_titles)


CONTRAST_JS = """
els => els.filter(el => el.offsetParent !== null).map(el => {
  const rgb = c => c.match(/[\\d.]+/g).map(Number);
  const lum = c => { const [r, g, b] = rgb(c).slice(0, 3).map(v => v / 255)
      .map(v => v <= 0.04045 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  let node = el, bg = 'rgba(0, 0, 0, 0)';
  while (node && (rgb(bg)[3] === 0)) {
    bg = getComputedStyle(node).backgroundColor; node = node.parentElement;
  }
  const [a, b] = [lum(getComputedStyle(el).color), lum(bg)];
  return {text: el.textContent.trim(), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)};
})"""


@pytest.mark.parametrize(("scheme", "palette"), [("dark", "slate"), ("light", "default")])
def test_buttons_have_contrast(server: str, browser: Any, sheet: Sheet, scheme: str, palette: str) -> None:
    """WCAG AA (4.5:1) for the download and quiz buttons, at rest and hovered, computed in the page."""
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server}/sections/{section_id}/", wait_until="load")
        assert page.evaluate("document.body.getAttribute('data-md-color-scheme')") == palette
        buttons = page.locator(".md-typeset .md-button")
        measured = page.eval_on_selector_all(".md-typeset .md-button", CONTRAST_JS)
        assert len(measured) >= 3  # PDF, module, notebook, quiz
        for item in measured:
            assert item["ratio"] >= 4.5, item
        buttons.first.hover()  # hovered: filled, once Material's colour transition has ended
        buttons.first.evaluate("el => Promise.all(el.getAnimations().map(a => a.finished))")
        hovered = page.eval_on_selector_all(".md-typeset .md-button:hover", CONTRAST_JS)
        assert hovered and hovered[0]["ratio"] >= 4.5, hovered
    finally:
        context.close()


def test_wide_formulas_show_that_they_scroll_on_a_phone(server: str, browser: Any, sheet: Sheet) -> None:
    from PIL import Image, ImageChops, ImageStat

    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    try:
        page = context.new_page()
        wide = None
        for section in sheet.sections:  # the first section page with a formula wider than the screen
            page.goto(f"{server}/sections/{section.id}/", wait_until="load")
            page.evaluate("document.fonts.ready")
            index = page.evaluate("[...document.querySelectorAll('.sg-math')]"
                                  ".findIndex(el => el.scrollWidth > el.clientWidth + 4)")
            if index >= 0:
                wide = page.locator(".sg-math").nth(index)
                break
        if wide is None:
            pytest.skip("no formula is wider than a 390 px screen")
        wide.scroll_into_view_if_needed()

        def edges() -> tuple[float, float]:
            """How much the hint darkens the box's leftmost and rightmost 8 px (mean, of 255)."""
            shot = Image.open(io.BytesIO(wide.screenshot())).convert("L")
            page.add_style_tag(content=".sg-math { background: none !important; }")
            bare = Image.open(io.BytesIO(wide.screenshot())).convert("L")
            page.evaluate("document.head.lastElementChild.remove()")
            diff = ImageChops.subtract(bare, shot)  # > 0 where the hint is darker
            w, h = diff.size
            return (ImageStat.Stat(diff.crop((0, 0, 8, h))).mean[0],
                    ImageStat.Stat(diff.crop((w - 8, 0, w, h))).mean[0])

        left, right = edges()
        assert right > 3 and left < 1, (left, right)  # more formula to the right, none to the left
        wide.evaluate("el => { el.scrollLeft = el.scrollWidth; }")
        left, right = edges()
        assert left > 3 and right < 1, (left, right)
    finally:
        context.close()


def test_notebook_pages_share_one_stylesheet(server: str, browser: Any, sheet: Sheet) -> None:
    site = built_site(sheet.source_path)
    pages = sorted((site / "notebooks").glob("*/index.html"))
    assert pages
    sheets = set()
    for page_file in pages:
        html = page_file.read_text(encoding="utf-8")
        article = html[html.index("<article"):html.index("</article>")]
        assert "<style" not in article, page_file
        sheets.update(re.findall(r'href="\.\./\.\./(assets/notebook-[0-9a-f]+\.css)"', article))
        # The JupyterLab CSS (~0.6 MB) was most of each page. Pages are now the weight of their content:
        # 150 KB at most, or about their section page's weight where the section is bigger than that
        # (both show the same typeset formulas and code).
        section = site / "sections" / page_file.parent.name / "index.html"
        limit = max(150_000, 1.1 * section.stat().st_size) if section.exists() else 150_000
        assert page_file.stat().st_size <= limit, (page_file.parent.name, page_file.stat().st_size)
    assert len(sheets) == 1 and (site / next(iter(sheets))).stat().st_size > 100_000
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{server}/notebooks/{section_id}/", wait_until="load")
        # JupyterLab's variables come from the shared file: the notebook is still styled.
        assert page.evaluate("getComputedStyle(document.querySelector('.jupyter-wrapper'))"
                             ".getPropertyValue('--jp-ui-font-size1')").strip()
        assert page.title().startswith(next(s.title for s in sheet.sections if s.id == section_id) + " — notebook")
    finally:
        context.close()


def test_quiz_mode_hides_reveals_and_remembers(server: str, browser: Any, sheet: Sheet) -> None:
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        offsite: list[str] = []
        page.on("request", lambda request: offsite.append(request.url)
                if not request.url.startswith(server) and not request.url.startswith("data:") else None)
        page.goto(f"{server}/sections/{section_id}/", wait_until="load")
        formulas = page.locator(".md-content .sg-formula")
        count = formulas.count()
        assert count >= 1 and all(formulas.nth(i).is_visible() for i in range(count))
        page.get_by_role("button", name="Quiz me").click()
        assert not any(formulas.nth(i).is_visible() for i in range(count))
        covers = page.locator(".sg-quiz-cover")
        assert covers.count() == count and covers.first.is_visible()
        # Keyboard: Tab from the toggle reaches the first cover; Enter reveals that formula only.
        page.get_by_role("button", name="Quiz me").focus()
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('sg-quiz-cover')"):
                break
        else:
            pytest.fail("Tab never reached a hidden formula")
        page.keyboard.press("Enter")
        assert formulas.first.is_visible()
        assert count == 1 or not formulas.nth(1).is_visible()
        # Remembered: after a reload the mode is still on and the formulas hidden again.
        page.reload(wait_until="load")
        assert page.get_by_role("button", name="Quiz me").get_attribute("aria-pressed") == "true"
        assert not formulas.first.is_visible()
        page.get_by_role("button", name="Reveal all").click()
        assert all(formulas.nth(i).is_visible() for i in range(count))
        page.get_by_role("button", name="Hide all").click()
        assert not formulas.first.is_visible()
        page.get_by_role("button", name="Quiz me").click()  # off: everything shows, covers go
        assert all(formulas.nth(i).is_visible() for i in range(count)) and not covers.first.is_visible()
        assert offsite == []
    finally:
        context.close()


def test_quiz_mode_folds_rapid_fire_answers(server: str, browser: Any, sheet: Sheet) -> None:
    section = next((s for s in sheet.sections if any(isinstance(e, QA) for e in s.entries)), None)
    if section is None:
        pytest.skip("the sheet has no rapid-fire questions")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server}/sections/{section.id}/", wait_until="load")
        page.get_by_role("button", name="Quiz me").click()
        page.get_by_role("button", name="Reveal all").click()
        assert page.locator("details.question:not([open])").count() == 0
        page.get_by_role("button", name="Hide all").click()
        assert page.locator("details.question[open]").count() == 0
        summary = page.locator("details.question summary").first
        summary.focus()
        page.keyboard.press("Enter")  # the question opens by keyboard
        assert page.locator("details.question[open]").count() == 1
    finally:
        context.close()


def test_notebook_copy_button_clears_the_code_on_a_phone(server: str, browser: Any, sheet: Sheet) -> None:
    section_id, _ = first_section_with_formulas(sheet)
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(f"{server}/notebooks/{section_id}/", wait_until="load")
        overlaps = page.evaluate("""() => [...document.querySelectorAll('.jp-CodeCell')].map(cell => {
            const button = cell.querySelector('clipboard-copy'), pre = cell.querySelector('.highlight-ipynb pre');
            if (!button || !pre) return false;
            const b = button.getBoundingClientRect(), range = document.createRange();
            range.selectNodeContents(pre);
            return [...range.getClientRects()].some(r => r.width > 0 && r.left < b.right && r.right > b.left
                                                        && r.top < b.bottom && r.bottom > b.top);
        })""")
        assert overlaps and not any(overlaps), overlaps
    finally:
        context.close()
