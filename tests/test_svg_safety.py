"""SVG from YAML code (figures) is published only if it is a drawing (sheetgen.svgsafe)."""

from __future__ import annotations

import io

import pytest

from sheetgen.svgsafe import unsafe_svg

HEAD = '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 9 9">'


def _matplotlib_svg() -> str:
    """What matplotlib's SVG backend writes for lines, text, a legend, an image, a fill and an arrow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure = plt.figure()
    try:
        plt.plot([1, 2], label='a<b & "c"')
        plt.imshow(np.eye(3))
        plt.fill_between([0, 1], [0, 1])
        plt.annotate("t", (1, 1), xytext=(0, 0), arrowprops={})
        plt.title("$x^2$ <script>alert(1)</script>")  # text: escaped by the backend
        plt.legend()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    finally:
        plt.close(figure)
    return buffer.getvalue()


def test_a_matplotlib_drawing_is_safe() -> None:
    assert unsafe_svg(_matplotlib_svg()) is None
    assert unsafe_svg(f'{HEAD}<defs><clipPath id="c"><rect width="1" height="1"/></clipPath></defs>'
                      '<g clip-path="url(#c)" style="fill: #123456"><use xlink:href="#c"/></g></svg>') is None


@pytest.mark.parametrize(("body", "reason"), [
    ("<script>alert(1)</script>", "<script>"),
    ('<g onload="alert(1)"/>', "'onload'"),
    ('<a xlink:href="javascript:alert(1)"><rect/></a>', "<a>"),
    ("<foreignObject><div>x</div></foreignObject>", "<foreignObject>"),
    ('<set attributeName="fill" to="red"/>', "<set>"),
    ('<animate attributeName="href" values="javascript:alert(1)"/>', "<animate>"),
    ('<image xlink:href="https://example.org/pixel.png"/>', "links outside"),
    ('<image xlink:href="data:image/svg+xml;base64,PHN2Zz4="/>', "links outside"),
    ('<use xlink:href="other.svg#x"/>', "links outside"),
    ("<style>@import url(https://example.org/x.css);</style>", "stylesheet"),
    ('<rect style="fill: url(https://example.org/x)"/>', "fetches"),
    ('<rect fill="url(javascript:alert(1))"/>', "fetches"),
])
def test_active_or_fetching_svg_is_refused(body: str, reason: str) -> None:
    found = unsafe_svg(f"{HEAD}{body}</svg>")
    assert found is not None and reason in found, found


def test_documents_that_are_not_plain_svg_are_refused() -> None:
    assert "entities" in (unsafe_svg('<!DOCTYPE svg [<!ENTITY a "b">]><svg xmlns="http://www.w3.org/2000/svg"/>')
                          or "")
    assert "stylesheet" in (unsafe_svg(f'<?xml-stylesheet href="x.css"?>{HEAD}</svg>') or "")
    assert "not <svg>" in (unsafe_svg('<html xmlns="http://www.w3.org/1999/xhtml"/>') or "")
    assert "well-formed" in (unsafe_svg("<svg") or "")


def test_figure_code_that_patches_savefig_is_caught() -> None:
    """The hole this closes: figure code runs where the SVG is made, so it can return any markup."""
    from sheetgen import sandbox
    from sheetgen.errors import Problem
    from sheetgen.figures import _draw_in_child

    code = ("plt.plot([1, 2]); figure = plt.gcf()\n"
            "figure.savefig = lambda buffer, **_: buffer.write("
            "'<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(2)</script></svg>')")
    outcome = sandbox.run(_draw_in_child, "import numpy as np\n", [("x", code)], result_types=[Problem])
    svg = outcome.value["svgs"]["x"]
    assert "<script>" in svg and unsafe_svg(svg) == "it contains a <script> element"
