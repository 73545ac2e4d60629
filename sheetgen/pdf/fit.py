"""The font-size search: the largest size (a multiple of STEP_PT within the configured range) at which
the sheet fits its pages. Pages grow with the font size, so the answer is an edge; probes run in
pairs and the next guess comes from how full the last layout was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cache import read_json_cache, write_json_atomic
from ..errors import SheetError
from ..mathtext import entry_texts
from ..model import Formula, Sheet, Snippet
from ..render.code import function_source
from ..render.pdf_html import PrintedSection, column_em, display_tex, page_mm
from ..render.pdf_math import MathImage

__all__ = [
    "STEP_PT", "Columns", "Fit", "FitCache", "Probe", "estimate", "nearest", "overflow_error", "predicted_fill",
    "read_columns", "search", "size_steps",
]

STEP_PT = 0.05
"""Font sizes the fitter tries are multiples of this (plus the configured bounds)."""
_PT_PER_MM = 72 / 25.4


def size_steps(low: float, high: float) -> list[float]:
    first = math.ceil(low / STEP_PT - 1e-9)
    last = math.floor(high / STEP_PT + 1e-9)
    sizes = [n * STEP_PT for n in range(first, last + 1)]
    if not sizes or sizes[0] > low + 1e-9:
        sizes.insert(0, low)
    if sizes[-1] < high - 1e-9:
        sizes.append(high)
    return sizes


@dataclass(frozen=True)
class Fit:
    """A fitted layout: the body size, the column count and the entries with a "(cont.)" heading."""

    size: float
    columns: int
    continued: tuple[str, ...]


class FitCache:
    """The last fit per layout (paper, print settings, edition, tags), with the content it was fitted
    to: an unchanged sheet then needs one layout, not a search."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.data = read_json_cache(path, "layouts", format_version=2)

    def get(self, layout_key: str) -> tuple[str, Fit] | None:
        found: Any = self.data.get(layout_key)
        try:
            fit = Fit(float(found["size"]), int(found["columns"]), tuple(str(i) for i in found["continued"]))
            return str(found["content"]), fit
        except (KeyError, TypeError, ValueError):
            return None

    def put(self, layout_key: str, content_key: str, fit: Fit) -> None:
        if self.path is None or self.get(layout_key) == (content_key, fit):
            return
        self.data[layout_key] = {"content": content_key, "size": fit.size, "columns": fit.columns,
                                 "continued": list(fit.continued)}
        write_json_atomic(self.path, {"format": 2, "layouts": self.data})


@dataclass(frozen=True)
class Columns:
    """What a layout's columns hold, read from WeasyPrint's box tree."""

    fill: float
    """Content height over the height of one page's columns, summed over the pages (1.0 = one full page)."""
    needs_heading: frozenset[str]
    """Entries that start a column in the middle of their section (they need a "(cont.)" heading)."""
    headed: frozenset[str]
    """Entries that start a column with a "(cont.)" heading, as asked."""


def read_columns(document: Any, columns: int) -> Columns:
    """Fill and column tops of a layout.

    Reads WeasyPrint's box tree (no public API for it; `test_weasyprint_internals_we_read` names what
    changed if it breaks): the multi-column `main` box's children are the laid-out columns, each
    holding fragments of the `section` elements, whose children are the entries (`.e`) and the
    heading blocks (`.keep`; a "(cont.)" one carries `data-cont` with its entry's id).
    """
    used = 0.0
    available = 0.0
    needs: set[str] = set()
    headed: set[str] = set()
    for page in document.pages:
        stack = [page._page_box]
        page_bottom = page._page_box.content_box_y() + page._page_box.height
        while stack:
            box = stack.pop()
            element = box.element
            if element is not None and "cols" in (element.get("class") or "").split() \
                    and box.element_tag == "main":
                for column in box.children:
                    flow = [c for c in column.children if c.is_in_normal_flow()]
                    if flow:
                        used += flow[-1].position_y + flow[-1].margin_height() - column.position_y
                        top = next((c for c in getattr(flow[0], "children", ()) if c.is_in_normal_flow()), None)
                        if flow[0].element_tag == "section" and top is not None and top.element is not None:
                            classes = (top.element.get("class") or "").split()
                            if "e" in classes and top.element.get("id"):
                                needs.add(top.element.get("id"))
                            elif "keep" in classes and top.element.get("data-cont"):
                                headed.add(top.element.get("data-cont"))
                # Not the box's height: with `column-fill: auto` a short text gives a short box.
                available = max(available, page_bottom - box.position_y)
                continue
            stack.extend(getattr(box, "children", ()))
    fill = used / (available * columns) if available else float(len(document.pages))
    return Columns(fill, frozenset(needs), frozenset(headed))


@dataclass
class Probe:
    pages: int
    fill: float
    continued: tuple[str, ...] = ()
    """The entries given a "(cont.)" heading in this layout."""
    settled: bool = True
    """Whether those are exactly the entries that start a column mid-section (see render_pdf)."""


_FILL_PER_UNIT = 0.80  # fill × capacity / units: 0.78–0.82 on the shipped sheet at 6.5–7 pt, A4 and Letter


def _content_units(sheet: Sheet, sections: Sequence[PrintedSection], images: Mapping[tuple[str, bool], MathImage]
                   ) -> float:
    """A size-free measure of how much there is to print, in em²: text, formula images, code."""
    units = 0.0
    for section in sections:
        units += 4.0  # the heading band
        for entry in section.entries:
            units += 3.0 + 0.62 * sum(len(text) for _, text in entry_texts(entry))
            if isinstance(entry, Formula):
                image = images[(display_tex(entry.latex), False)]
                units += (image.width_em + 0.5) * (image.ascent_em + image.depth_em + 0.3)
            elif isinstance(entry, Snippet):
                units += 0.3 * len(function_source(sheet.formula(entry.function), with_docstring=False))
    return units


def predicted_fill(sheet: Sheet, sections: Sequence[PrintedSection], images: Mapping[tuple[str, bool], MathImage],
                   paper: str, size: float, columns: int) -> float:
    """The fill (in pages, see `read_columns`) a layout at `size` in `columns` columns should have,
    from a size-free measure of the content; within a few percent on the shipped sheet."""
    settings = sheet.sheet.print_settings
    height_mm = page_mm(sheet, paper)[1]
    title_pt = 2.4 * size  # the title bar, in em of the body
    height_em = ((height_mm - 2 * settings.margin_mm) * _PT_PER_MM - title_pt) / size
    units = _content_units(sheet, sections, images)
    return _FILL_PER_UNIT * units / (columns * column_em(sheet, paper, size, columns) * height_em)


def estimate(sheet: Sheet, sections: Sequence[PrintedSection], images: Mapping[tuple[str, bool], MathImage],
             paper: str, sizes: Sequence[float], *, columns: int, max_pages: int = 1) -> int:
    """Index of the first size to try without a cached fit: the largest whose predicted fill is
    below `max_pages` pages. Only a starting point; the search confirms it with real layouts."""
    return max((i for i, size in enumerate(sizes)
                if predicted_fill(sheet, sections, images, paper, size, columns) <= max_pages), default=0)


def nearest(sizes: Sequence[float], size: float) -> int:
    return min(range(len(sizes)), key=lambda i: (abs(sizes[i] - size), -i))


def search(sizes: Sequence[float], start: int, probes: dict[int, Probe],
           run_probes: Callable[[Sequence[int]], None], max_pages: int = 1) -> int:
    """Index of the largest size that gives at most `max_pages` pages, or -1.

    Pages grow with the font size, so the answer is the edge where `max_pages` turns into more. Each round
    probes two sizes at once: the current guess and the next step up. The guess is refined from
    how full the page was: content area grows about as the square of the font size.
    """
    guess = start
    last = len(sizes) - 1
    while True:
        fits = [i for i, p in probes.items() if p.pages <= max_pages]
        overflows = [i for i, p in probes.items() if p.pages > max_pages]
        low = max(fits, default=-1)
        high = min(overflows, default=last + 1)
        if high == low + 1:
            return low
        if low == last:
            return last
        if high == 0:
            return -1
        if probes:
            guess = refine(sizes, probes, low, high, max_pages)
        candidates = [guess, guess + 1] if guess + 1 < high else [guess - 1, guess]
        run_probes([i for i in candidates if low < i < high] or [(low + high) // 2])


def refine(sizes: Sequence[float], probes: Mapping[int, Probe], low: int, high: int, max_pages: int = 1) -> int:
    """Next guess strictly between `low` and `high`, from the fill of the probe nearest the edge."""
    nearest = min(probes, key=lambda i: min(abs(i - low), abs(i - high)))
    probe = probes[nearest]
    target = 0.985  # aim just under full: break-inside leaves gaps at column ends
    size = sizes[nearest] * math.sqrt(target * max_pages / probe.fill) if probe.fill > 0 else sizes[nearest]
    guess = max((i for i in range(len(sizes)) if sizes[i] <= size + 1e-9), default=0)
    return min(max(guess, low + 1), high - 1)


def overflow_error(sheet: Sheet, sections: Sequence[PrintedSection], smallest: Probe, low: float,
                   max_pages: int = 1) -> SheetError:
    share = sorted(((sum(len(t) for e in s.entries for _, t in entry_texts(e)), s) for s in sections),
                   key=lambda pair: -pair[0])
    total = sum(size for size, _ in share) or 1
    names = ", ".join(f"{s.title} (line {sheet.line_of(s.id)}: {100 * size / total:.0f} % of the text, "
                      f"{len(s.entries)} entries)" for size, s in share[:3])
    over = max(0.0, smallest.fill / max_pages - 1)
    room = "one page" if max_pages == 1 else f"{max_pages} pages"
    hint = ("set `print: full` (full sheet only) or `print: false` on some entries" if max_pages == 1
            else "set `print: false` on some entries")
    return SheetError.single(
        sheet.source_path, 1,
        f"the sheet does not fit on {room} even at the smallest font size ({low:g} pt): it fills "
        f"{smallest.pages} pages, about {max(1, round(100 * over))} % more than {room} "
        f"{'holds' if max_pages == 1 else 'hold'}",
        f"the largest sections are {names}; {hint}, or print a part with --tags")
