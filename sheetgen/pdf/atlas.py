"""KaTeX HTML → one small SVG image per formula, for the PDF.

Why: WeasyPrint spends about half a millisecond per element, and KaTeX's HTML has ~100 elements
per formula: on the full sheet the math was ~90 % of every layout (≈2.6 s of 2.9 s), and the fit
needs several layouts. So the math is laid out once, by WeasyPrint itself with KaTeX's CSS and
fonts, in an "atlas" document; each formula's boxes are then written out as an SVG image (text
stays text, in KaTeX's fonts, so it is still selectable) and cached on disk. The sheet then holds
one `<img>` per formula, and a changed formula costs only its own atlas layout.

Also the batch step: every formula's image, from the cache or laid out now (`math_images`).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from ..cache import read_json_cache, write_json_atomic
from ..render.pdf_math import KATEX_EM, PAD_X, PAD_Y, MathImage

if TYPE_CHECKING:
    from .engine import Engine

__all__ = ["CACHE_IMAGES", "KATEX_EM", "REFERENCE_PX", "SCRIPT_RATIOS", "MathImage", "atlas_html", "image_key",
           "images_from_atlas", "math_images"]

REFERENCE_PX = 20.0
"""Root font size of the atlas; SVG user units are CSS px at this size."""
SCRIPT_RATIOS = (0.7, 0.5)
"""KaTeX's sub/superscript sizes relative to the formula's base size: first level (x_i) and second
level (e^{z_i}, \\max_j inside an exponent). The base is at least `font_min_pt` (pdf_html never
shrinks a formula below that), so scripts print at least 0.7 and 0.5 × font_min_pt (4.55 and 3.25 pt
at 6.5 pt); the PDF test measures every run against these floors. Raising second-level scripts to the
first level's size in CSS was tried: KaTeX's vertical offsets are computed for the smaller size, and
`z_i` inside an exponent then read as "zi"."""
_FORMAT = 8  # bump when the SVG output changes, to invalidate caches
_SVG_NS = "{http://www.w3.org/2000/svg}"

ATLAS_CSS = f"""
@page {{ size: 1000mm 300mm; margin: 0; }}
html {{ font-size: {REFERENCE_PX}px; }}
body {{ margin: 0; }}  /* else the first item sits 8px lower than the others: other SVG coordinates */
.katex {{ font-size: {KATEX_EM}em; }}  /* KaTeX's own 1.21em is large beside condensed sans text */
/* One formula per page: each is laid out at the same place whatever else is in the batch, so its
   image is the same bytes in a cold build and in one that adds a single formula. */
.atlas-item {{ white-space: nowrap; break-after: page; padding: 1em; }}
.atlas-baseline {{ display: inline-block; width: 0; height: 0; }}
"""


def image_key(katex_html: str, style_digest: str) -> str:
    return hashlib.sha256(json.dumps([_FORMAT, REFERENCE_PX, KATEX_EM, style_digest, katex_html]).encode()).hexdigest()


def atlas_html(snippets: Sequence[str]) -> str:
    items = "\n".join(f'<div class="atlas-item" id="m{i}"><span class="atlas-baseline"></span>{snippet}</div>'
                      for i, snippet in enumerate(snippets))
    return f"<!DOCTYPE html><html><head><style>{ATLAS_CSS}</style></head><body>\n{items}\n</body></html>"


def images_from_atlas(document: Any, count: int) -> list[MathImage]:
    """Read each atlas item's boxes back and write them out as SVG."""
    found: dict[int, MathImage] = {}
    for page in document.pages:
        for box in _descendants(page._page_box):  # WeasyPrint has no public box API; pinned in tests
            element = box.element
            if element is not None and element.get("class") == "atlas-item" and box.element_tag == "div":
                index = int(element.get("id")[1:])
                if index not in found:
                    found[index] = _image_of(box)
    missing = [i for i in range(count) if i not in found]
    if missing:
        raise RuntimeError(f"the math atlas lost formulas {missing}")
    return [found[i] for i in range(count)]


def _descendants(box: Any) -> Iterator[Any]:
    yield box
    placeholder = getattr(box, "_box", None)  # absolutely positioned boxes sit behind placeholders
    if placeholder is not None:
        yield from _descendants(placeholder)
    for child in getattr(box, "children", ()):
        yield from _descendants(child)


def _classes(box: Any) -> list[str]:
    element = box.element
    return (element.get("class") or "").split() if element is not None else []


def _num(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _color(value: Any, fallback: Any = None) -> str:
    if not hasattr(value, "red"):  # 'currentcolor' and friends
        value = fallback
    if value is None or not hasattr(value, "red"):
        return "#000"
    red, green, blue = (round(255 * c) for c in (value.red, value.green, value.blue))
    return f"#{red:02x}{green:02x}{blue:02x}"


def _image_of(item: Any) -> MathImage:
    from weasyprint.formatting_structure import boxes

    all_boxes = list(_descendants(item))
    katex = next(b for b in all_boxes if "katex" in _classes(b))
    marker = next(b for b in all_boxes if "atlas-baseline" in _classes(b))
    baseline = marker.position_y  # a 0×0 inline-block sits on the baseline
    struts = [b for b in all_boxes if "katex-strut" in _classes(b)]
    top = min((b.position_y for b in struts), default=baseline - 0.8 * REFERENCE_PX)
    bottom = max((b.position_y + b.margin_height() for b in struts), default=baseline + 0.2 * REFERENCE_PX)
    left, right = katex.position_x, katex.position_x + katex.margin_width()
    pad_x, pad_y = PAD_X * REFERENCE_PX, PAD_Y * REFERENCE_PX
    view = (left - pad_x, top - pad_y, right - left + 2 * pad_x, bottom - top + 2 * pad_y)

    parts: list[str] = []
    clips: list[str] = []
    _draw(katex, parts, clips, boxes)
    defs = f"<defs>{''.join(clips)}</defs>" if clips else ""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xml:space="preserve" '
           f'viewBox="{" ".join(_num(v) for v in view)}" width="{_num(view[2])}" height="{_num(view[3])}">'
           f"{defs}{''.join(parts)}</svg>")
    return MathImage(svg, (right - left) / REFERENCE_PX, (baseline - top) / REFERENCE_PX,
                     (bottom - baseline) / REFERENCE_PX)


def _draw(box: Any, out: list[str], clips: list[str], boxes: Any) -> None:
    style = box.style
    if style["visibility"] != "visible" and not box.children:
        return
    _draw_decorations(box, out)
    if isinstance(box, boxes.TextBox):
        text = box.text.replace("\u200b", "")
        if text.strip():
            family = ",".join(style["font_family"])
            italic = ' font-style="italic"' if style["font_style"] != "normal" else ""
            weight = f' font-weight="{style["font_weight"]}"' if style["font_weight"] != 400 else ""
            font = (f'font-family="{html.escape(family)}" font-size="{_num(style["font_size"])}"{italic}{weight} '
                    f'fill="{_color(style["color"])}"')
            out.append(f'<text x="{_num(box.position_x)}" y="{_num(box.position_y + box.baseline)}" {font}>'
                       f"{html.escape(text, quote=False)}</text>")
        return
    replaced = getattr(box, "replacement", None)
    if replaced is not None and box.element is not None and str(box.element.tag).endswith("svg"):
        out.append(_nested_svg(box))
        return
    placeholder = getattr(box, "_box", None)
    children = [placeholder] if placeholder is not None else list(getattr(box, "children", ()))
    clipped = style["overflow"] != "visible" and placeholder is None and children
    if clipped:
        clip_id = f"c{len(clips)}"
        clips.append(f'<clipPath id="{clip_id}"><rect x="{_num(box.padding_box_x())}" '
                     f'y="{_num(box.padding_box_y())}" width="{_num(box.padding_width())}" '
                     f'height="{_num(box.padding_height())}"/></clipPath>')
        out.append(f'<g clip-path="url(#{clip_id})">')
    for child in children:
        _draw(child, out, clips, boxes)
    if clipped:
        out.append("</g>")


def _draw_decorations(box: Any, out: list[str]) -> None:
    """Fraction bars, rules, over/underlines and boxes are CSS borders; backgrounds are \\colorbox."""
    style = box.style
    if not hasattr(box, "border_top_width"):
        return
    x, y = box.border_box_x(), box.border_box_y()
    width, height = box.border_width(), box.border_height()
    background = style["background_color"]
    if getattr(background, "alpha", 0) > 0:
        out.append(f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(width)}" height="{_num(height)}" '
                   f'fill="{_color(background)}"/>')
    sides: dict[str, Callable[[float], tuple[float, float, float, float]]] = {
        "top": lambda w: (x, y, width, w),
        "bottom": lambda w: (x, y + height - w, width, w),
        "left": lambda w: (x, y, w, height),
        "right": lambda w: (x + width - w, y, w, height),
    }
    for side, rect in sides.items():
        thickness = getattr(box, f"border_{side}_width")
        if thickness and style[f"border_{side}_style"] not in ("none", "hidden"):
            rx, ry, rw, rh = rect(thickness)
            out.append(f'<rect x="{_num(rx)}" y="{_num(ry)}" width="{_num(rw)}" height="{_num(rh)}" '
                       f'fill="{_color(style[f"border_{side}_color"], style["color"])}"/>')


def _nested_svg(box: Any) -> str:
    """KaTeX draws radicals, stretchy arrows and wide accents as inline SVG: nest it in place."""
    element = box.element
    attributes = {"x": _num(box.content_box_x()), "y": _num(box.content_box_y()),
                  "width": _num(box.width), "height": _num(box.height)}
    for name in ("viewBox", "preserveAspectRatio"):
        if element.get(name):
            attributes[name] = element.get(name)
    inner = "".join(_serialize(child) for child in element)
    attrs = " ".join(f'{k}="{html.escape(v)}"' for k, v in attributes.items())
    return f"<svg {attrs}>{inner}</svg>"


def _serialize(element: ElementTree.Element) -> str:
    tag = str(element.tag).removeprefix(_SVG_NS)
    attrs = "".join(f' {k}="{html.escape(str(v))}"' for k, v in element.attrib.items())
    inner = html.escape(element.text or "", quote=False) + "".join(_serialize(c) for c in element)
    tail = html.escape(element.tail or "", quote=False)
    return f"<{tag}{attrs}>{inner}</{tag}>{tail}"


CACHE_IMAGES = 1500
"""Formula images the cache keeps, least recently used dropped first (the sheet has ~150)."""


def math_images(katex_html: Mapping[tuple[str, bool], str], cache_path: Path | None,
                engine: Engine) -> tuple[dict[tuple[str, bool], MathImage], int]:
    """Images of every formula: from the cache, or laid out now (in two processes when many).

    The cache is a JSON object in order of last use (oldest first): a hit moves an image to the
    end, so reverting an edit finds the old image however many builds came between.
    """
    stored = read_json_cache(cache_path, "images", format_version=2)
    digest = engine.atlas_digest()
    keys = {k: image_key(html, digest) for k, html in katex_html.items()}
    images: dict[str, MathImage] = {}
    for key in set(keys.values()):
        if key in stored:
            with contextlib.suppress(KeyError, TypeError, ValueError):  # a bad entry is redone
                images[key] = MathImage.from_json(stored[key])
    todo = sorted({key: html for (k, html) in katex_html.items() if (key := keys[k]) not in images}.items())

    def lay_out(batch: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        document = engine.layout(atlas_html([html for _, html in batch]), engine.atlas_stylesheets())
        return [image.to_json() for image in images_from_atlas(document, len(batch))]

    if todo:
        # Split in two halves by size: the atlas layout is the slowest step of a cold build. Where a
        # formula lands in a batch does not change its image (see ATLAS_CSS; tested).
        halves = [todo[0::2], todo[1::2]] if len(todo) >= 16 else [todo, []]
        first, others = engine.parallel(lambda: lay_out(halves[0]), [lambda: lay_out(halves[1])] if halves[1] else [])
        for batch, results in zip(halves, [first, *others], strict=False):
            for (key, _), data in zip(batch, results, strict=True):
                images[key] = MathImage.from_json(data)
    if cache_path is not None:
        used = sorted(set(keys.values()))
        others = [k for k in stored if k not in images]
        order = [*others[max(0, len(others) - max(0, CACHE_IMAGES - len(used))):], *used]
        if todo or list(stored) != order:
            data = {k: images[k].to_json() if k in images else stored[k] for k in order}
            write_json_atomic(cache_path, {"format": 2, "images": data})
    return {k: images[key] for k, key in keys.items()}, len(todo)
