"""Figures: drawn by the module's functions in the sandbox, valid and deterministic SVG, on their cards.

The plotted data are checked against independent references (SciPy, scikit-learn, PyTorch or a formula
written out here), by running each figure's code in this process with matplotlib and reading the
artists' data back: values, not pixels.
"""

from __future__ import annotations

import html
import re
import types
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sheetgen import sandbox
from sheetgen.errors import SheetError
from sheetgen.figures import figure_entries, render_figures
from sheetgen.loader import load_sheet_text
from sheetgen.model import Formula, Sheet
from sheetgen.render.code import render_module
from tests.conftest import needs_katex
from tests.test_pipeline import SMALL

SVG = "{http://www.w3.org/2000/svg}"
WANTED = {"sigmoid_grad", "tanh_grad", "relu_grad", "gelu", "temperature_softmax", "entropy", "roc_vs_pr",
          "positional_encoding", "rope", "attention", "adam_step", "warmup_cosine_lr",
          "bias_variance_decomposition"}


@pytest.fixture(scope="module")
def drawn(sheet: Sheet) -> dict[str, str]:
    return render_figures(sheet, render_module(sheet), cache_dir=None).svgs


@pytest.mark.slow
def test_every_figure_is_valid_deterministic_svg(sheet: Sheet, drawn: dict[str, str], tmp_path: Path) -> None:
    assert {e.id for e in figure_entries(sheet)} >= WANTED and len(drawn) >= 10
    for entry_id, svg in drawn.items():
        root = ET.fromstring(svg.encode("utf-8"))
        assert root.tag == f"{SVG}svg", entry_id
        # Nothing that loads or runs: no script, no foreignObject, no link out of the file.
        assert not list(root.iter(f"{SVG}script")) and not list(root.iter(f"{SVG}foreignObject")), entry_id
        for element in root.iter():
            for name, value in element.attrib.items():
                assert not name.lower().startswith("on"), (entry_id, name)
                if name.endswith("href"):
                    assert value.startswith(("#", "data:image/png;base64,")), (entry_id, value)
        assert "<dc:date>" not in svg and "Matplotlib v" not in svg, entry_id  # no date, no creator
        assert len(root.findall(f".//{SVG}path")) > 5, entry_id  # axes and curves were drawn
    # A second, uncached drawing gives the same bytes; the cache answers without drawing.
    again = render_figures(sheet, render_module(sheet), cache_dir=tmp_path)
    assert again.svgs == drawn and again.drawn == len(drawn)
    cached = render_figures(sheet, render_module(sheet), cache_dir=tmp_path)
    assert cached.svgs == drawn and cached.drawn == 0


@pytest.mark.slow
def test_every_figure_is_on_its_card(sheet: Sheet, drawn: dict[str, str]) -> None:
    from sheetgen.pipeline import FIGURES_DIR
    from sheetgen.render import site

    links = site.Links(figures={i: f"{FIGURES_DIR}/{i}.svg" for i in drawn})
    pages = site.render_pages(sheet, _math_stub(sheet), links)
    for section in sheet.sections:
        page = pages[site.section_path(section)]
        for entry in section.entries:
            if entry.id in drawn:
                figure = getattr(entry, "figure", None)
                assert figure is not None
                # A Markdown image (MkDocs resolves its path), the caption as alt text and under it.
                path = re.escape(f"../{FIGURES_DIR}/{entry.id}.svg")
                image = re.search(rf"!\[([^\]]+)\]\({path}\)\{{ \.sg-figure loading=lazy }}", page)
                assert image is not None, entry.id
                assert html.unescape(image.group(1)) == figure.caption
                assert page.count(image.group(1)) == 2  # alt text and caption
    # Without a drawn SVG (under serve, before the background build drew it) there is no image.
    bare = site.render_pages(sheet, _math_stub(sheet), site.Links())
    assert not any("assets/figures/" in page for page in bare.values())


def _math_stub(sheet: Sheet) -> Any:
    """KaTeX HTML stand-ins for every math request (the cards' math is not what this test is about)."""
    from sheetgen.render import site

    return {(r.tex, r.display): "<span>m</span>" for r in site.math_requests(sheet)}


def _luminance(colour: str) -> float:
    """WCAG 2.1 relative luminance of `#rrggbb`."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.slow
def test_colours_read_on_the_light_and_the_dark_page(drawn: dict[str, str]) -> None:
    # The backgrounds are transparent: the page shows through. Material's default white and its slate
    # (hsl(225, 15%, 14%) = #1e2029). WCAG: 3:1 for graphics, text at least that too (it is small).
    pages = ("#ffffff", "#1e2029")
    for entry_id, svg in drawn.items():
        # The figure's own background rectangle is unfilled (transparent), and so is each axes'.
        assert re.search(r'<g id="patch_1">\s*<path d="[^"]*" style="fill: none"/>', svg), entry_id
        for kind, colour in re.findall(r"(fill|stroke): ?(#[0-9a-fA-F]{6})", svg):
            for page in pages:
                assert _contrast(colour, page) >= 3.0, (entry_id, kind, colour, page)
        for style in re.findall(r'<text style="([^"]*)"', svg):
            assert "fill: #808080" in style, (entry_id, style)  # the mid grey: about 4:1 on both pages


# --- the data come from the module --------------------------------------------------------------


class Drawn:
    """A figure's code run in this process on the real module, with its axes' data read back."""

    def __init__(self, sheet: Sheet, module: types.ModuleType, entry_id: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        entry = next(e for e in figure_entries(sheet) if e.id == entry_id)
        assert entry.figure is not None
        plt.close("all")
        plt.figure()
        self.scope: dict[str, Any] = {k: v for k, v in module.__dict__.items() if not k.startswith("__")}
        self.scope.update(np=np, plt=plt)
        exec(compile(entry.figure.code, entry_id, "exec"), self.scope)
        self.axes = plt.gcf().axes
        plt.close("all")

    def lines(self, axes: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
        for line in self.axes[axes].get_lines():
            yield np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float), str(line.get_label())

    def legend(self, axes: int = 0) -> list[str]:
        legend = self.axes[axes].get_legend()
        return [t.get_text() for t in legend.get_texts()] if legend is not None else []


@pytest.fixture(scope="module")
def draw(sheet: Sheet, formulas: types.ModuleType) -> Any:
    return lambda entry_id: Drawn(sheet, formulas, entry_id)


def test_activation_curves_are_the_functions(draw: Any) -> None:
    from scipy.special import expit
    from scipy.stats import norm

    (z, s, _), (z2, ds, _) = list(draw("sigmoid_grad").lines())
    np.testing.assert_allclose(s, expit(z), atol=1e-15)
    np.testing.assert_allclose(ds, expit(z2) * (1 - expit(z2)), atol=1e-15)
    _, (z2, dt, _), _ = list(draw("tanh_grad").lines())
    np.testing.assert_allclose(dt, 1 / np.cosh(z2) ** 2, atol=1e-14)  # sech², not 1 − tanh²
    gelu = draw("gelu")
    curves = {label: (x, y) for x, y, label in gelu.lines(0)}
    x, y = curves["GELU"]
    np.testing.assert_allclose(y, x * norm.cdf(x), atol=1e-12)
    x, y = curves["SiLU"]
    np.testing.assert_allclose(y, x * expit(x), atol=1e-12)
    slopes = {label: (x, y) for x, y, label in gelu.lines(1)}
    x, dy = slopes["GELU′"]
    inner = slice(1, -1)  # central differences inside, one-sided at the ends
    exact = norm.cdf(x) + x * norm.pdf(x)
    np.testing.assert_allclose(dy[inner], exact[inner], atol=2e-4)


def test_softmax_bars_are_the_softmax(draw: Any) -> None:
    from scipy.special import softmax

    figure = draw("temperature_softmax")
    logits = figure.scope["logits"]
    bars = figure.axes[0].patches
    heights = np.array([b.get_height() for b in bars]).reshape(3, -1)
    for row, temperature in zip(heights, (0.5, 1.0, 2.0), strict=True):
        np.testing.assert_allclose(row, softmax(logits / temperature), rtol=1e-12)


def test_entropy_and_gini_curves(draw: Any) -> None:
    from scipy.stats import entropy

    lines = list(draw("entropy").lines())
    p, h, _ = lines[0]
    np.testing.assert_allclose(h, [entropy([q, 1 - q], base=2) for q in p], atol=1e-12)
    p, g, _ = lines[1]
    np.testing.assert_allclose(g, 2 * p * (1 - p), atol=1e-12)  # 1 − p² − (1 − p)²


def test_roc_and_pr_legends_carry_scikit_learns_numbers(draw: Any) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    figure = draw("roc_vs_pr")
    y, s = figure.scope["y"], figure.scope["s"]
    assert f"AUC = {roc_auc_score(y, s):.3f}" in figure.legend(0)
    assert f"AP = {average_precision_score(y, s):.3f}" in figure.legend(1)
    fpr, tpr, _ = next(figure.lines(0))
    ref_fpr, ref_tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(np.c_[fpr, tpr], np.c_[ref_fpr, ref_tpr], atol=1e-12)


def test_positional_encoding_and_attention_maps(draw: Any) -> None:
    from scipy.special import softmax

    image = np.asarray(draw("positional_encoding").axes[0].images[0].get_array())
    pos, i = np.arange(64)[:, None], np.arange(32)[None, :]
    angle = pos / 10000 ** (2 * i / 64)  # Vaswani et al. 2017, §3.5
    np.testing.assert_allclose(image[:, 0::2], np.sin(angle), atol=1e-12)
    np.testing.assert_allclose(image[:, 1::2], np.cos(angle), atol=1e-12)
    figure = draw("attention")
    weights = np.asarray(figure.axes[0].images[0].get_array())
    Q, K = figure.scope["Q"], figure.scope["K"]
    scores = Q @ K.T / np.sqrt(Q.shape[1]) + np.triu(np.full((8, 8), -np.inf), 1)
    lower = np.tril(np.ones((8, 8), dtype=bool))
    np.testing.assert_allclose(weights[lower], softmax(scores, axis=1)[lower], atol=1e-12)
    assert np.all(np.isnan(weights[~lower]))  # the masked future is left blank
    np.testing.assert_allclose(np.nansum(weights, axis=1), 1.0, atol=1e-12)


def test_rope_points_turn_by_the_position(draw: Any) -> None:
    (x, y, _), (x2, y2, _), *_ = draw("rope").lines()
    m = np.arange(8)
    np.testing.assert_allclose(np.c_[x, y], np.c_[np.cos(m * 1.0), np.sin(m * 1.0)], atol=1e-12)
    np.testing.assert_allclose(np.c_[x2, y2], np.c_[np.cos(m * 0.1), np.sin(m * 0.1)], atol=1e-12)


def test_optimizer_paths_are_pytorchs(draw: Any) -> None:
    torch = pytest.importorskip("torch")
    figure = draw("adam_step")
    paths = {label: np.c_[x, y] for x, y, label in figure.lines() if label.startswith(("SGD", "momentum", "Adam"))}
    for label, make in [("SGD, lr 0.07", lambda p: torch.optim.SGD([p], lr=0.07)),
                        ("momentum 0.9, lr 0.01", lambda p: torch.optim.SGD([p], lr=0.01, momentum=0.9)),
                        ("Adam, lr 0.3", lambda p: torch.optim.Adam([p], lr=0.3))]:
        p = torch.tensor([-4.0, 1.5], dtype=torch.float64, requires_grad=True)
        optimizer = make(p)
        seen = []
        for _ in range(60):
            seen.append(p.detach().numpy().copy())
            optimizer.zero_grad()
            (0.5 * (p[0] ** 2 + 25 * p[1] ** 2)).backward()
            optimizer.step()
        np.testing.assert_allclose(paths[label], np.array(seen), atol=1e-9, err_msg=label)


def test_schedule_and_bias_variance(draw: Any) -> None:
    steps, lr, _ = next(draw("warmup_cosine_lr").lines())
    warm = steps < 100
    np.testing.assert_allclose(lr[warm], 3e-4 * steps[warm] / 100, rtol=1e-12)
    progress = (steps[~warm] - 100) / 900
    np.testing.assert_allclose(lr[~warm], 3e-5 + 0.5 * (3e-4 - 3e-5) * (1 + np.cos(np.pi * progress)), rtol=1e-12)
    (_, bias_sq, _), (_, variance, _), (_, total, _) = draw("bias_variance_decomposition").lines()
    np.testing.assert_allclose(total, bias_sq + variance + 0.09, rtol=1e-9)  # E(f̂ − f)² = bias² + variance
    assert bias_sq[0] > 10 * bias_sq[-1] and variance[-1] > 10 * variance[0]  # the trade-off, as captioned


# --- failures are located -----------------------------------------------------------------------


def _small(code: str) -> Sheet:
    body = "".join(f"            {line}\n" for line in code.splitlines())
    text = SMALL.replace("          -6\n", "          -6\n        figure:\n          caption: Twice.\n"
                                          f"          code: |\n{body}", 1)
    return load_sheet_text(text)


def _problem(code: str, limits: sandbox.Limits | None = None) -> str:
    sheet = _small(code)
    with pytest.raises(SheetError) as raised:
        if limits is None:
            render_figures(sheet, render_module(sheet), cache_dir=None)
        else:
            render_figures(sheet, render_module(sheet), cache_dir=None, limits=limits)
    assert len(raised.value.problems) == 1
    return str(raised.value)


def test_a_small_figure_draws(tmp_path: Path) -> None:
    sheet = _small("x = np.arange(5)\nplt.plot(x, twice(x))")
    drawn = render_figures(sheet, render_module(sheet), cache_dir=tmp_path)
    assert list(drawn.svgs) == ["twice"] and drawn.drawn == 1
    code_line = SMALL.count("\n", 0, SMALL.index("          -6\n")) + 1 + 4  # after `code: |`
    assert sheet.line_of("twice", "figure.code") == code_line


def test_a_failing_figure_is_located() -> None:
    sheet = _small("x = np.arange(5)\nplt.plot(x, twice(x, 3))")
    line = sheet.line_of("twice", "figure.code") + 1
    message = _problem("x = np.arange(5)\nplt.plot(x, twice(x, 3))")
    assert message.startswith(f"formulas.yaml:{line} [twice] figure: raised TypeError: ")
    assert "— fix the figure code" in message
    with pytest.raises(SheetError) as raised:  # a syntax error is the loader's, found before anything runs
        _small("x = np.arange(5)\nplt.plot(x, twice(x)")
    assert str(raised.value).startswith(f"formulas.yaml:{line} [twice] figure: code: Python syntax error")


def test_an_empty_figure_is_a_problem() -> None:
    message = _problem("x = twice(3)")
    assert re.match(r"formulas\.yaml:\d+ \[twice\] figure: draws nothing", message)


def test_a_hanging_figure_is_stopped() -> None:
    limits = sandbox.Limits(step_seconds=2.0, total_seconds=60.0, cpu_seconds=60)
    message = _problem("while True:\n    pass", limits)
    assert re.match(r"formulas\.yaml:\d+ \[twice\] figure: drawing ran longer than 2 s — ", message)
    exits = _problem("import os\nos._exit(3)")
    assert "[twice] figure: drawing stopped: the process ended with exit code 3" in exits


def test_the_notebook_has_the_figure_code(sheet: Sheet) -> None:
    from sheetgen.render.notebooks import render_notebooks

    notebooks = render_notebooks(sheet)
    for entry in figure_entries(sheet):
        if not isinstance(entry, Formula):
            continue  # facts are not in the notebooks
        section = next(s for s in sheet.sections if entry in s.entries)
        cells = {c["id"]: c for c in notebooks[f"notebooks/{section.id}.ipynb"].cells}
        assert entry.figure is not None
        source = cells[f"{entry.id}-figure"]["source"]
        assert entry.figure.code.strip() in source and source.endswith("plt.show()")
    # entropy's figure calls gini, defined later in its section: the setup cell defines it first.
    classical = {c["id"]: c for c in notebooks["notebooks/classical.ipynb"].cells}
    assert "def gini(" in classical["setup"]["source"]


@needs_katex
def test_the_pages_offer_the_figures_and_the_deck(tmp_path: Path) -> None:
    from sheetgen.katex import KatexRenderer
    from sheetgen.pipeline import DECK_PATH, SiteOptions, build_pages, build_slow

    sheet = _small("x = np.arange(5)\nplt.plot(x, twice(x))")
    module = render_module(sheet)
    renderer = KatexRenderer(tmp_path / "katex.json")
    options = SiteOptions(pdf=False, notebooks=False)
    slow = build_slow(sheet, "", build_dir=tmp_path, renderer=renderer, options=options, module=module)
    assert list(slow.figures) == ["twice"]
    site = build_pages(sheet, module, slow, build_dir=tmp_path, renderer=renderer, options=options)
    assert site.files["assets/figures/twice.svg"] == slow.figures["twice"].encode("utf-8")
    assert site.files[DECK_PATH][:2] == b"PK"  # the .apkg, a zip


def test_figure_code_cannot_put_script_into_the_svg() -> None:
    # The code runs in the child that writes the SVG: it can replace savefig. The parent checks the result.
    evil = ("plt.plot([1, 2])\n"
            "ns = 'http:' + '//www.w3.org/2000/svg'  # the loader refuses a URL written out\n"
            "plt.gcf().savefig = lambda out, **kw: out.write("
            "f'<svg xmlns=\"{ns}\"><script>alert(1)</script></svg>')")
    message = _problem(evil)
    assert re.match(r"formulas\.yaml:\d+ \[twice\] figure: the SVG is not only a drawing: it contains a <script>",
                    message)


def test_an_oversized_svg_is_refused() -> None:
    from sheetgen.figures import svg_problem

    head = '<svg xmlns="http://www.w3.org/2000/svg">'
    assert svg_problem(head + "<!--" + "x" * (2 << 20) + "--></svg>") is not None
    assert "draw fewer points" in (svg_problem(head + "<!--" + "x" * (2 << 20) + "--></svg>") or "")
    assert svg_problem(head + '<g clip-path="url(#p1)"><path d="M 0 0"/></g></svg>') is None



@pytest.mark.slow
@pytest.mark.browser
@needs_katex
def test_the_built_site_shows_the_figures_in_both_palettes(tmp_path_factory: pytest.TempPathFactory) -> None:
    """MkDocs resolves the image paths: in Chromium each figure (a formula's and a fact's) loads on its card,
    in the light and the dark palette, with its caption as alt text."""
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from tests.sitehelpers import built_site

    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian chromium is not installed")
    playwright_api = pytest.importorskip("playwright.sync_api")
    figure = "        figure:\n          caption: {caption}\n          code: |\n            x = np.arange(5)\n" \
             "            plt.plot(x, twice(x))\n"
    text = SMALL.replace("          -6\n", "          -6\n" + figure.format(caption="Twice, drawn."), 1)
    text = text.replace("        latex: 'a^2 + b^2 = c^2'\n",
                        "        latex: 'a^2 + b^2 = c^2'\n" + figure.format(caption="A fact, drawn."), 1)
    source = tmp_path_factory.mktemp("figures-site") / "formulas.yaml"
    source.write_text(text, encoding="utf-8")
    site = built_site(str(source))
    assert {p.name for p in (site / "assets" / "figures").iterdir()} == {"twice.svg", "a_fact.svg"}

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                for scheme in ("default", "slate"):
                    page.goto(f"http://127.0.0.1:{httpd.server_address[1]}/sections/basics/")
                    page.evaluate(f"document.body.setAttribute('data-md-color-scheme', '{scheme}')")
                    for entry_id, caption in (("twice", "Twice, drawn."), ("a_fact", "A fact, drawn.")):
                        image = page.locator(f"img[src$='assets/figures/{entry_id}.svg']")
                        image.scroll_into_view_if_needed()
                        page.wait_for_function(f"document.querySelector(\"img[src$='{entry_id}.svg']\").complete")
                        width = image.evaluate("img => img.naturalWidth")
                        assert width > 100, (scheme, entry_id, width)
                        assert image.get_attribute("alt") == caption
            finally:
                browser.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_a_prose_edit_keeps_the_figures_but_a_code_edit_redraws_them(sheet: Sheet) -> None:
    from sheetgen.figures import figure_key

    formula = next(f for f in sheet.formulas() if f.figure is not None)
    assert formula.figure is not None
    code = formula.figure.code
    module = render_module(sheet)
    meaning = formula.meaning.split("$")[0].strip()[:30]
    assert meaning and module.count(meaning) >= 1
    reworded = module.replace(meaning, meaning + " (reworded)")
    assert figure_key(code, reworded) == figure_key(code, module)  # docstrings are prose
    commented = module.replace("import numpy as np", "import numpy as np  # a comment", 1)
    assert commented != module and figure_key(code, commented) == figure_key(code, module)
    source = formula.implementation.strip().splitlines()[-1]
    assert source.strip() and source in module
    changed = module.replace(source, source + " + 0", 1)
    assert figure_key(code, changed) != figure_key(code, module)  # code is not
    # A figure that reads docstrings is redrawn when they change.
    reading = code + "\n_ = " + formula.id + ".__doc__\n"
    assert figure_key(reading, reworded) != figure_key(reading, module)
