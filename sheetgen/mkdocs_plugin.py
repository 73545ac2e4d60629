"""The `sheetgen` MkDocs plugin: formulas.yaml → section pages, errata, notebooks and downloads.

Thin glue: `sheetgen.sitebuild.generate` does the work and knows nothing of MkDocs. Here the
sheet is (re)loaded on every build, the results are added as generated files, and `mkdocs serve`
is told to watch the YAML and the templates, so saving formulas.yaml regenerates the site.

    plugins:
      - search
      - sheetgen:
          yaml: formulas.yaml
      - mkdocs-jupyter:   # after sheetgen: it renders the notebooks sheetgen adds
          execute: false
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.livereload import LiveReloadServer
from mkdocs.plugins import BasePlugin, get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

from .errors import SheetError
from .katex import KatexRenderer
from .loader import load_sheet_text, read_source
from .model import Sheet
from .render.site import typeset_notebook_html
from .sitebuild import KATEX_CSS_PATH, NOTEBOOK_SOURCE_DIR, Generated, generate

__all__ = ["SheetgenConfig", "SheetgenPlugin"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
log = get_plugin_logger(__name__)


class SheetgenConfig(base.Config):  # type: ignore[no-untyped-call]  # MkDocs is untyped here
    enabled = c.Type(bool, default=True)
    """Generate the sheet's pages; `false` leaves the site as the hand-written docs alone."""
    yaml = c.Type(str, default="formulas.yaml")
    """The sheet source, relative to mkdocs.yml."""
    build_dir = c.Type(str, default="build")
    """Where caches and executed notebooks go, relative to mkdocs.yml."""
    pdf = c.Type(bool, default=True)
    """Render the one-page PDF (and its preview image) and offer it for download."""
    notebooks = c.Type(bool, default=True)
    """Generate one notebook per section with formulas (rendered by mkdocs-jupyter, downloadable)."""
    execute = c.Type(bool, default=True)
    """Run the notebooks at build time (outputs cached by content hash)."""
    timeout = c.Type(int, default=120)
    """Seconds a notebook cell may run before the build fails."""
    title = c.Type(bool, default=True)
    """Use the sheet's title and subtitle as site_name and site_description."""


class SheetgenPlugin(BasePlugin[SheetgenConfig]):  # type: ignore[no-untyped-call]
    supports_multiple_instances = False

    def __init__(self) -> None:
        self.root = Path.cwd()
        self.sheet: Sheet | None = None
        self._yaml_text: str | None = None
        self._renderer: KatexRenderer | None = None
        self._user_nav: Any = None
        self.generated: Generated | None = None
        """What the last build generated (tests and the benchmark read it)."""

    # Defining on_startup keeps one plugin instance across `mkdocs serve` rebuilds, and with it
    # the KaTeX renderer's in-memory cache.
    def on_startup(self, *, command: Literal["build", "gh-deploy", "serve"], dirty: bool) -> None:
        pass

    @property
    def yaml_path(self) -> Path:
        return self.root / self.config.yaml

    @property
    def build_dir(self) -> Path:
        return self.root / self.config.build_dir

    def _load(self) -> Sheet:
        """The sheet, parsed again only when the file's text changed."""
        try:
            text = read_source(self.yaml_path)
            if self.sheet is None or text != self._yaml_text:
                self.sheet = load_sheet_text(text, _display_path(self.yaml_path))
                self._yaml_text = text
        except SheetError as err:
            raise PluginError(str(err)) from None
        return self.sheet

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig | None:
        if not self.config.enabled:
            return config
        if config.config_file_path:
            self.root = Path(config.config_file_path).resolve().parent
        sheet = self._load()
        if self.config.title:
            config.site_name = sheet.sheet.title
            config.site_description = config.site_description or sheet.sheet.subtitle or None
        if KATEX_CSS_PATH not in config.extra_css:
            config.extra_css.insert(0, KATEX_CSS_PATH)
        self._user_nav = config.nav
        jupyter = config.plugins.get("mkdocs-jupyter")
        if jupyter is not None and jupyter.config.get("cache_dir") == ".cache/mkdocs-jupyter":
            # Its default is relative to the working directory; keep it with our caches instead.
            jupyter.config["cache_dir"] = str(self.build_dir / ".cache" / "mkdocs-jupyter")
        return config

    def on_files(self, files: Files, /, *, config: MkDocsConfig) -> Files | None:
        if not self.config.enabled:
            return files
        sheet = self._load()
        if self._renderer is None:
            self._renderer = KatexRenderer(self.build_dir / ".cache" / "katex.json")
        try:
            out = generate(sheet, self._yaml_text or "", build_dir=self.build_dir, renderer=self._renderer,
                           pdf=self.config.pdf, notebooks=self.config.notebooks, execute=self.config.execute,
                           timeout=self.config.timeout)
        except SheetError as err:
            raise PluginError(str(err)) from None
        self.generated = out
        contents: dict[str, str | bytes] = {**out.pages, **out.files}
        for path, content in contents.items():
            self._add(files, File.generated(config, path, content=content))
        for path, source in out.linked.items():
            if path in out.notebook_pages:
                # mkdocs-jupyter wraps notebook files in a class that loses a generated file's
                # abs_src_path; a plain File rooted in the build dir survives the wrapping.
                file = File(path, src_dir=str(self.build_dir / NOTEBOOK_SOURCE_DIR), dest_dir=config.site_dir,
                            use_directory_urls=config.use_directory_urls)
            else:
                file = File.generated(config, path, abs_src_path=str(source))
            self._add(files, file)
        if self._user_nav is None:
            handwritten = [f.src_uri for f in files.documentation_pages()
                           if f.generated_by is None and f.src_uri != "index.md"]
            config.nav = [*out.nav, *handwritten]
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in out.timings.items())
        log.info(f"{len(out.pages)} pages, {len(out.notebook_pages)} notebooks "
                 f"({out.notebooks_executed} executed) from {self.config.yaml}: {timings}")
        return files

    @staticmethod
    def _add(files: Files, file: File) -> None:
        file.generated_by = "sheetgen"  # File.generated says '<unknown>' when a hook is called directly
        existing = files.get_file_from_path(file.src_uri)
        if existing is not None:
            if existing.generated_by is None and existing.is_documentation_page():
                raise PluginError(f"docs/{file.src_uri} is a page sheetgen generates; rename or delete it")
            # e.g. docs/assets/sheet-preview.png written by `sheetgen pdf --preview`: this build's wins.
            log.debug(f"{existing.src_uri}: replaced by the generated file")
            files.remove(existing)
        files.append(file)

    def on_page_content(self, html: str, /, *, page: Page, config: MkDocsConfig, files: Files) -> str | None:
        """Notebook pages: KaTeX instead of MathJax-TeX, no CDN scripts, and a download link."""
        if not self.config.enabled or self.generated is None:
            return html
        download = self.generated.notebook_pages.get(page.file.src_uri)
        if download is None:
            return html
        return typeset_notebook_html(html, self.generated.math, get_relative_url(download, page.file.url))

    def on_serve(self, server: LiveReloadServer, /, *, config: MkDocsConfig, builder: Any) -> LiveReloadServer:
        if self.config.enabled:
            server.watch(str(self.yaml_path))
            server.watch(str(TEMPLATES_DIR))
        return server


def _display_path(path: Path) -> str:
    """How messages name the YAML: relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
