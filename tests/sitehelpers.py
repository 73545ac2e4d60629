"""Site builds shared by test_site.py and test_browser.py: each distinct build runs once per session."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from sheetgen.sitebuild import build_site

ROOT = Path(__file__).resolve().parent.parent


@cache
def built_site(yaml: str) -> Path:
    """`mkdocs build --strict` of the repository's mkdocs.yml and docs/ with `yaml` as the sheet, in a
    temporary folder with its own (cold) caches. Returns the site folder."""
    work = Path(tempfile.mkdtemp(prefix="sheetgen-test-site-"))
    atexit.register(shutil.rmtree, work, True)
    build_site(ROOT / "mkdocs.yml", work / "site", strict=True, yaml_path=Path(yaml), build_dir=work / "build")
    return work / "site"


class VisibleText(HTMLParser):
    """The text a reader sees: no code, scripts, styles, KaTeX's hidden MathML, or the hidden copy of
    each notebook cell that mkdocs-jupyter keeps for its copy button."""

    SKIP: ClassVar[set[str]] = {"code", "pre", "script", "style", "template", "svg"}
    VOID: ClassVar[set[str]] = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                                "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        hidden = tag in self.SKIP or tag == "annotation" or bool({"katex-mathml", "clipboard-copy-txt"} & set(classes))
        self.stack.append((tag, hidden or (bool(self.stack) and self.stack[-1][1])))

    def handle_endtag(self, tag: str) -> None:
        if any(open_tag == tag for open_tag, _ in self.stack):  # also closes tags left open inside
            while self.stack.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        if not (self.stack and self.stack[-1][1]):
            self.parts.append(data)

    @classmethod
    def of(cls, html: str) -> str:
        parser = cls()
        parser.feed(html)
        return "".join(parser.parts)
