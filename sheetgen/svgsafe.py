"""Is an SVG only a drawing? An allow-list check for SVG made by YAML code (figures).

Figure code runs in the sandbox, but what it returns is published: it can patch matplotlib (or
`Figure.savefig`) and hand back any SVG, and an SVG served from the site's origin runs its scripts
when opened. `unsafe_svg` parses the file and accepts only the elements, attributes and references
matplotlib's SVG backend writes (shapes, text, clip paths, gradients, embedded PNG/JPEG images,
RDF metadata); anything else — `<script>`, `<foreignObject>`, animation, event handlers, links
outside the file, CSS that fetches — makes it unsafe. A clean file is published byte for byte.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

__all__ = ["unsafe_svg"]

_SVG = "http://www.w3.org/2000/svg"
_XLINK = "http://www.w3.org/1999/xlink"
_XML = "http://www.w3.org/XML/1998/namespace"
_METADATA_NAMESPACES = {"http://www.w3.org/1999/02/22-rdf-syntax-ns#", "http://creativecommons.org/ns#",
                        "http://purl.org/dc/elements/1.1/"}
_ELEMENTS = {"svg", "g", "path", "defs", "clipPath", "use", "text", "tspan", "style", "title", "desc", "rect",
             "circle", "ellipse", "line", "polyline", "polygon", "image", "linearGradient", "radialGradient",
             "stop", "pattern", "mask", "marker", "symbol", "metadata"}
_ATTRIBUTES = {
    "id", "class", "style", "x", "y", "x1", "y1", "x2", "y2", "cx", "cy", "r", "rx", "ry", "fx", "fy", "d",
    "points", "transform", "width", "height", "viewBox", "version", "preserveAspectRatio", "clip-path",
    "clipPathUnits", "clip-rule", "mask", "maskUnits", "fill", "fill-opacity", "fill-rule", "stroke",
    "stroke-width", "stroke-opacity", "stroke-linecap", "stroke-linejoin", "stroke-dasharray",
    "stroke-dashoffset", "stroke-miterlimit", "opacity", "font-family", "font-size", "font-style", "font-weight",
    "font-stretch", "text-anchor", "dominant-baseline", "letter-spacing", "offset", "stop-color", "stop-opacity",
    "gradientUnits", "gradientTransform", "spreadMethod", "patternUnits", "patternTransform", "markerWidth",
    "markerHeight", "markerUnits", "orient", "refX", "refY", "type", "href", f"{{{_XLINK}}}href",
    f"{{{_XML}}}space", "image-rendering", "color", "display", "visibility", "vector-effect",
}
_IMAGE_DATA = re.compile(r"data:image/(?:png|jpeg);base64,[A-Za-z0-9+/=\s]*\Z")
# In CSS and presentation attributes: `url(#id)` only (clip paths, gradients); nothing that fetches or runs.
_CSS_BAD = re.compile(r"(?i)url\s*\(\s*(?![\"']?#)|@import|expression\s*\(|javascript:|behavior\s*:|-moz-binding|<")


def unsafe_svg(svg: str) -> str | None:
    """Why `svg` is more than a drawing (a short reason), or None when it is only one."""
    if re.search(r"<!ENTITY|<!ATTLIST|<!ELEMENT", svg):
        return "it declares XML entities"
    if re.search(r"<\?xml-stylesheet", svg):
        return "it links a stylesheet"
    try:
        root = ET.fromstring(svg)
    except ET.ParseError as err:
        return f"it is not well-formed XML ({err})"
    if root.tag != f"{{{_SVG}}}svg":
        return f"its root element is {root.tag!r}, not <svg>"
    for element in root.iter():
        namespace, _, name = element.tag[1:].partition("}") if element.tag.startswith("{") else ("", "", element.tag)
        if namespace in _METADATA_NAMESPACES:
            if element.attrib.keys() - {f"{{{ns}}}resource" for ns in _METADATA_NAMESPACES} - {"about"}:
                return f"metadata element <{name}> has unexpected attributes"
            continue
        if namespace != _SVG or name not in _ELEMENTS:
            return f"it contains a <{name}> element"
        if name == "style" and element.text and _CSS_BAD.search(element.text):
            return "its stylesheet fetches or runs something"
        for attribute, value in element.attrib.items():
            if attribute not in _ATTRIBUTES:
                return f"<{name}> has the attribute {attribute.rsplit('}', 1)[-1]!r}"
            if attribute in ("href", f"{{{_XLINK}}}href"):
                inside = value.startswith("#") or (name == "image" and _IMAGE_DATA.match(value) is not None)
                if not inside:
                    return f"<{name}> links outside the drawing ({value[:40]!r})"
            elif _CSS_BAD.search(value):
                return f"<{name}> {attribute.rsplit('}', 1)[-1]}= fetches or runs something ({value[:40]!r})"
    return None
