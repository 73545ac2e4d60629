"""WeasyPrint for the PDF: the locked-down URL fetcher, KaTeX's fonts, one shared engine per process
(fonts, parsed CSS, decoded images), the fork helper that runs layouts in parallel, and the PNG preview.

Everything here touches WeasyPrint, the file system or processes; the HTML itself is pdf_html.py's.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

from ..katex import katex_dist_dir
from ..render.pdf_html import ASSETS, STYLESHEET, TEMPLATES

__all__ = ["Engine", "FetchRefusedError", "asset_fetcher", "atlas_digest", "engine", "parallel", "preview_png",
           "style_digest", "svg_font_families"]

T = TypeVar("T")


class FetchRefusedError(RuntimeError):
    """The HTML or CSS asked for a resource outside the allowed folders (a bug, never user input)."""


def asset_fetcher(roots: Sequence[Path] | None = None) -> Any:
    """A WeasyPrint URL fetcher for `data:` URLs and files under `roots` (default: our assets,
    templates and KaTeX's dist folder); anything else stops the render."""
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    allowed = [r.resolve() for r in (roots if roots is not None else (ASSETS, TEMPLATES, katex_dist_dir()))]

    class AssetFetcher(URLFetcher):  # type: ignore[misc]  # weasyprint is untyped
        def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Any:
            scheme = url.split(":", 1)[0].lower()
            if scheme == "data":
                return super().fetch(url, headers)
            if scheme == "file":
                path = Path(url2pathname(urlsplit(url).path)).resolve()
                if path.is_file() and any(path.is_relative_to(root) for root in allowed):
                    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                    return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": kind})
            raise FetchRefusedError(f"refused to fetch {url}: only data: URLs and files under "
                                    f"{', '.join(map(str, allowed))} are allowed")

    # fail_on_errors: a refused or missing resource stops the render instead of being a warning.
    return AssetFetcher(allowed_protocols=("data", "file"), fail_on_errors=True)


_FONT_SRC = re.compile(r"src:\s*url\(fonts/[^)]+\.woff2\)[^;]*?url\((fonts/[^)]+\.ttf)\)\s*format\(\"truetype\"\)")


@cache
def _katex_css() -> str:
    """KaTeX's CSS with TrueType fonts only: WeasyPrint would decompress WOFF2 on every build (~0.3 s)."""
    css = (katex_dist_dir() / "katex.css").read_text(encoding="utf-8")
    rewritten, count = _FONT_SRC.subn(r'src: url(\1) format("truetype")', css)
    if count < 15:  # KaTeX 0.19 has 20 faces; fewer means the CSS changed shape
        raise RuntimeError(f"could not rewrite KaTeX's @font-face rules to TTF ({count} found)")
    return rewritten


_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}")
_FAMILY = re.compile(r'font-family:\s*"?([\w-]+)"?')
_SVG_FAMILY = re.compile(r'font-family="([\w-]+)')


def svg_font_families(svgs: Iterable[str]) -> frozenset[str]:
    """The KaTeX font families the formula images draw with (only those are loaded for the sheet)."""
    return frozenset(f for svg in svgs for f in _SVG_FAMILY.findall(svg))


def _katex_font_faces(families: frozenset[str]) -> str:
    """KaTeX's @font-face rules for the given families (formula images draw their text with them)."""
    rules = _FONT_FACE.findall(_katex_css())
    return "\n".join(rule for rule in rules if (m := _FAMILY.search(rule)) and m.group(1) in families)


class Engine:
    """WeasyPrint state shared by every layout in this process: fonts, parsed CSS, the fetcher."""

    def __init__(self) -> None:
        from weasyprint.text.fonts import FontConfiguration

        self.font_config = FontConfiguration()
        self.fetcher = asset_fetcher()
        self.image_cache: dict[str, Any] = {}  # decoded formula images, reused by every probe
        self._sheet_css: dict[frozenset[str], list[Any]] = {}
        self._atlas_css: list[Any] = []

    def _css(self, **source: Any) -> Any:
        from weasyprint import CSS

        return CSS(url_fetcher=self.fetcher, font_config=self.font_config, **source)

    def sheet_stylesheets(self, families: frozenset[str]) -> list[Any]:
        """pdf_sheet.css and only the KaTeX fonts the formula images use: the sheet itself holds
        no KaTeX HTML, and each @font-face costs a font load."""
        if families not in self._sheet_css:
            self._sheet_css[families] = [
                self._css(string=_katex_font_faces(families), base_url=katex_dist_dir().as_uri() + "/"),
                self._css(filename=str(STYLESHEET)),
            ]
        return self._sheet_css[families]

    def atlas_stylesheets(self) -> list[Any]:
        if not self._atlas_css:
            self._atlas_css = [self._css(string=_katex_css(), base_url=katex_dist_dir().as_uri() + "/")]
        return self._atlas_css

    def parallel(self, here: Callable[[], T], elsewhere: Sequence[Callable[[], Any]]) -> tuple[T, list[Any]]:
        return parallel(here, elsewhere)

    def atlas_digest(self) -> str:
        return atlas_digest()

    def layout(self, html: str, stylesheets: Sequence[Any]) -> Any:
        from weasyprint import HTML
        from weasyprint.urls import FatalURLFetchingError

        try:
            return HTML(string=html, base_url=ASSETS.as_uri() + "/", url_fetcher=self.fetcher).render(
                font_config=self.font_config, stylesheets=list(stylesheets), cache=self.image_cache)
        except FatalURLFetchingError as err:  # a BaseException: make it an ordinary error
            raise FetchRefusedError(str(err.__cause__ or err)) from err


@cache
def engine() -> Engine:
    """The process's engine (forked workers inherit it, fonts and parsed CSS included)."""
    return Engine()


@cache
def style_digest() -> str:
    """What sheet layouts depend on besides the HTML: our CSS, KaTeX's CSS, WeasyPrint's version."""
    import weasyprint

    digest = hashlib.sha256()
    for part in (STYLESHEET.read_bytes(), _katex_css().encode(), weasyprint.__version__.encode()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


@cache
def atlas_digest() -> str:
    """What formula images depend on besides KaTeX's HTML (not pdf_sheet.css: restyling the sheet
    keeps them)."""
    import weasyprint

    return hashlib.sha256((_katex_css() + weasyprint.__version__).encode()).hexdigest()


def parallel(here: Callable[[], T], elsewhere: Sequence[Callable[[], Any]]) -> tuple[T, list[Any]]:
    """Run `here` in this process and each of `elsewhere` in a forked child (its result comes back
    as JSON through a pipe). Sequential where fork is missing or SHEETGEN_JOBS=1."""
    if not elsewhere or not hasattr(os, "fork") or os.environ.get("SHEETGEN_JOBS") == "1" \
            or (os.cpu_count() or 1) < 2:
        return here(), [task() for task in elsewhere]
    children: list[tuple[int, int]] = []
    for task in elsewhere:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through the pipe and leaves at once
            os.close(read)
            try:
                payload = json.dumps({"result": task()})
            except BaseException as err:  # everything must reach the parent
                payload = json.dumps({"error": f"{type(err).__name__}: {err}"})
            with os.fdopen(write, "w", encoding="utf-8") as pipe:
                pipe.write(payload)
            os._exit(0)  # no atexit, no finalizers: they belong to the parent (e.g. font folders)
        os.close(write)
        children.append((pid, read))
    results: list[Any] = []
    try:
        mine = here()
    finally:
        for pid, read in children:
            with os.fdopen(read, encoding="utf-8") as pipe:
                answer = pipe.read()
            os.waitpid(pid, 0)
            results.append(json.loads(answer) if answer else {"error": "the worker process died"})
    for answer in results:
        if "error" in answer:
            raise RuntimeError(f"a parallel PDF worker failed: {answer['error']}")
    return mine, [answer["result"] for answer in results]


def preview_png(pdf: bytes, dpi: int = 60) -> bytes | None:
    """A PNG of the first page via poppler's pdftoppm, or None where pdftoppm is not installed."""
    import shutil
    import subprocess
    import tempfile

    tool = shutil.which("pdftoppm")
    if tool is None:
        return None
    with tempfile.TemporaryDirectory(prefix="sheetgen-preview-") as folder:
        source = Path(folder) / "sheet.pdf"
        source.write_bytes(pdf)
        subprocess.run([tool, "-r", str(dpi), "-png", "-singlefile", str(source), str(Path(folder) / "preview")],
                       check=True, capture_output=True, timeout=60)
        return (Path(folder) / "preview.png").read_bytes()
