"""Site builds shared by the tests: each distinct build runs once per session, and the shipped
sheet's build (with its caches) once per test run, whatever the number of xdist workers."""

from __future__ import annotations

import atexit
import fcntl
import os
import shutil
import tempfile
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from sheetgen.sitebuild import build_site

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = Path(os.environ.get("SHEETGEN_YAML", ROOT / "formulas.yaml")).resolve()

# --- the real build (slow) ------------------------------------------------------------------------

shared_root: Path | None = None
"""A folder all workers of this test run share (conftest sets it; pytest removes old runs' folders)."""

# What a build keeps in .cache besides the content-keyed caches: never copied between builds.
_NOT_CACHES = shutil.ignore_patterns("lock", "tmp", "serve-ready", "*.tmp")


def shipped_build() -> Path:
    """The folder (`build/`, `site/`) of one `mkdocs build --strict` of the shipped sheet, made with
    cold caches by the first worker that needs it and then shared: read it, never write into it.

    Tests about what the build makes read its site; tests that build something else start from a
    copy of its caches (`seed_caches`), so only tests about cold behaviour pay for a cold build."""
    root = shared_root or Path(tempfile.gettempdir())
    work = root / "sheetgen-shipped-build"
    with open(root / "sheetgen-shipped-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other worker waits for this build instead of repeating it
        if not (work / "done").is_file():
            shutil.rmtree(work, ignore_errors=True)
            build_site(ROOT / "mkdocs.yml", work / "site", strict=True, yaml_path=SHIPPED, build_dir=work / "build")
            (work / "done").touch()
    return work


def seed_caches(build_dir: Path) -> None:
    """Start `build_dir` with a copy of the shipped build's caches (all content-keyed: what a build
    makes is the same bytes with or without them, which test_build and test_pdf check)."""
    shutil.copytree(shipped_build() / "build" / ".cache", build_dir / ".cache", ignore=_NOT_CACHES,
                    dirs_exist_ok=True)


@cache
def built_site(yaml: str) -> Path:
    """`mkdocs build --strict` of the repository's mkdocs.yml and docs/ with `yaml` as the sheet:
    the shared build for the shipped sheet, else a build in a temporary folder with its own cold
    caches. Returns the site folder."""
    if Path(yaml).resolve() == SHIPPED:
        return shipped_build() / "site"
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
