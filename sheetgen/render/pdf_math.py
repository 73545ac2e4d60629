"""A typeset formula as the PDF prints it: an SVG image in KaTeX's fonts, sized in em."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["KATEX_EM", "PAD_X", "PAD_Y", "MathImage"]

KATEX_EM = 1.15
"""Formula size relative to the text around it."""
PAD_X = 0.12  # em of slack left and right for glyphs that overhang their box (italic f)
PAD_Y = 0.06  # em above and below the strut


@dataclass(frozen=True)
class MathImage:
    """A typeset formula; sizes are in em of the font size it is printed at."""

    svg: str
    width_em: float
    ascent_em: float
    depth_em: float

    def img_html(self, scale: float = 1.0) -> str:
        """An `<img>` that sits on the text baseline like the HTML formula would."""
        data = base64.b64encode(self.svg.encode("utf-8")).decode("ascii")
        pad_x, pad_y = PAD_X * scale, PAD_Y * scale
        width = (self.width_em + 2 * PAD_X) * scale
        height = (self.ascent_em + self.depth_em + 2 * PAD_Y) * scale
        return (f'<img class="math" alt="" src="data:image/svg+xml;base64,{data}" style="width:{width:.4f}em;'
                f"height:{height:.4f}em;vertical-align:{-(self.depth_em * scale + pad_y):.4f}em;"
                f'margin:0 {-pad_x:.4f}em">')

    def to_json(self) -> dict[str, Any]:
        return {"svg": self.svg, "w": self.width_em, "a": self.ascent_em, "d": self.depth_em}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MathImage:
        return cls(str(data["svg"]), float(data["w"]), float(data["a"]), float(data["d"]))
