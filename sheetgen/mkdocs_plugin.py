"""The `sheetgen` MkDocs plugin: formulas.yaml → section pages, errata, notebooks and downloads.

Thin glue over `sheetgen.pipeline`. Under `sheetgen build` the outputs were already made and checked,
and are handed to the plugin (`prebuilt`); under plain `mkdocs build`/`serve`/`gh-deploy` (and
`properdocs`) the plugin runs the same pipeline itself, which verifies the sheet first (schema, math,
doctests, printed formulas) and refuses to build on any problem. Under `serve`, a failing check does
not stop the server: the last good pages stay and every page shows the located error in a banner
until the YAML is fixed. `mkdocs serve` is told to watch the YAML and the templates.

    plugins:
      - search
      - sheetgen:
          yaml: formulas.yaml
      - mkdocs-jupyter:   # after sheetgen: it renders the notebooks sheetgen adds
          execute: false

`SHEETGEN_YAML` and `SHEETGEN_BUILD_DIR`, when set, override the `yaml` and `build_dir` options
(`sheetgen serve -f other.yaml` uses them; mkdocs.yml itself is never rewritten).
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import sys
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.bccache
from mkdocs.config import base
from mkdocs.config import config_options as c
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.livereload import LiveReloadServer
from mkdocs.plugins import BasePlugin, get_plugin_logger
from mkdocs.structure.files import File, Files
from mkdocs.structure.nav import Navigation
from mkdocs.structure.pages import Page
from mkdocs.structure.toc import TableOfContents
from mkdocs.utils import get_relative_url

from .errors import SheetError
from .katex import KatexRenderer
from .loader import load_sheet_text, read_source
from .model import Sheet
from .pipeline import KATEX_CSS_PATH, NOTEBOOK_SOURCE_DIR, Generated, Outputs, SiteOptions, build_outputs
from .preview import TRIGGER, LivePreview
from .publish import BuildLock, recover
from .render.site import (
    MATERIAL_WORKER,
    NOTEBOOK_SEARCH_BOOST,
    NOTEBOOK_TITLE_SUFFIX,
    NotebookPage,
    mark_ui_for_search,
    notebook_page,
    plain_forms,
    search_worker,
    use_search_worker,
)
from .verify import verify

__all__ = ["SheetgenConfig", "SheetgenPlugin"]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
SEARCH_WORKER_DIR = "assets/javascripts/workers/"
ENV_YAML = "SHEETGEN_YAML"
ENV_BUILD_DIR = "SHEETGEN_BUILD_DIR"
log = get_plugin_logger(__name__)


class SheetgenConfig(base.Config):  # type: ignore[no-untyped-call]  # MkDocs is untyped here
    enabled = c.Type(bool, default=True)
    """Generate the sheet's pages; `false` leaves the site as the hand-written docs alone."""
    yaml = c.Type(str, default="formulas.yaml")
    """The sheet source, relative to mkdocs.yml (the environment variable SHEETGEN_YAML overrides it)."""
    build_dir = c.Type(str, default="build")
    """Where caches and executed notebooks go, relative to mkdocs.yml (SHEETGEN_BUILD_DIR overrides it)."""
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


class _Memo:
    """A bounded in-memory cache (least recently used out) for the work a `serve` rebuild repeats: one
    serve session is one process, and most pages are the same from one save to the next."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Any:
        found = self._items.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return found

    def put(self, key: str, value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class _TemplateCode(jinja2.BytecodeCache):
    """The theme's compiled templates, kept across `serve` rebuilds. MkDocs makes a new Jinja
    environment for every build, so Material's ~40 templates were compiled again on every save (~0.3 s).
    Jinja checks each entry against its template's source checksum: an edited template is compiled anew."""

    def __init__(self, memo: _Memo) -> None:
        self.memo = memo

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self.memo.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.memo.put(bucket.key, bucket.bytecode_to_string())


MEMO_SIZE = 256
"""Entries per serve cache: ~30 pages (and their search entries) of several edits of a ~120-entry sheet."""


def _digest(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update((part if isinstance(part, bytes) else str(part).encode("utf-8")) + b"\0")
    return digest.hexdigest()


def _toc_signature(toc: TableOfContents | None) -> str:
    def walk(items: Any) -> str:
        return "".join(f"({item.id}|{item.url}|{item.title}|{item.level}{walk(item.children)})" for item in items)
    return walk(toc or [])


class _Warnings(logging.Handler):
    """Counts MkDocs' warnings while a page renders: a page that warned is not memoised, so the warning
    (and strict mode's abort) comes back on every rebuild, as without the memo."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


class SheetgenPlugin(BasePlugin[SheetgenConfig]):  # type: ignore[no-untyped-call]
    supports_multiple_instances = False

    def __init__(self) -> None:
        self.root = Path.cwd()
        self.sheet: Sheet | None = None
        self._yaml_text: str | None = None
        self._renderer: KatexRenderer | None = None
        self._user_nav: Any = None
        self._serving = False
        self.prebuilt: Outputs | None = None
        """Outputs made (and checked) by `sheetgen build`; the plugin then computes nothing."""
        self.generated: Generated | None = None
        """What the last good build generated (tests and the benchmark read it)."""
        self.preview: LivePreview | None = None
        """Under serve: the background maker of PDFs and notebooks."""
        self.error: str | None = None
        """Under `serve`: the located problem of the last build, shown on every page until fixed."""
        # Under serve: what a rebuild would otherwise redo for every unchanged page (Markdown and
        # notebook conversion, the notebook pages' KaTeX, the search index entries).
        self.memo = {"render": _Memo(MEMO_SIZE), "notebook": _Memo(MEMO_SIZE), "search": _Memo(MEMO_SIZE),
                     "templates": _Memo(MEMO_SIZE)}
        self._build_key = ""
        """Under serve: what every page of this build depends on besides itself (config, files)."""
        self._math_key: tuple[Generated | None, str] = (None, "")
        self._search_worker: tuple[str, str] | None = None
        """Material's search worker and the site's own, which runs it (file names, same folder)."""

    # Defining on_startup keeps one plugin instance across `mkdocs serve` rebuilds, and with it
    # the KaTeX renderer's in-memory cache and the last good outputs.
    def on_startup(self, *, command: Literal["build", "gh-deploy", "serve"], dirty: bool) -> None:
        self._serving = command == "serve"
        self.error = None
        if not self._serving and self.preview is not None:  # an earlier `serve` in this process
            self.preview.close()
            self.preview = None

    @property
    def yaml_path(self) -> Path:
        return self.root / os.environ.get(ENV_YAML, self.config.yaml)

    @property
    def build_dir(self) -> Path:
        return self.root / os.environ.get(ENV_BUILD_DIR, self.config.build_dir)

    def _load(self) -> Sheet:
        """The sheet, parsed again only when the file's text changed."""
        text = read_source(self.yaml_path)
        if self.sheet is None or text != self._yaml_text:
            self.sheet = load_sheet_text(text, _display_path(self.yaml_path))
            self._yaml_text = text
        return self.sheet

    def on_config(self, config: MkDocsConfig) -> MkDocsConfig | None:
        if not self.config.enabled:
            return config
        if config.config_file_path:
            self.root = Path(config.config_file_path).resolve().parent
        sheet = self.prebuilt.sheet if self.prebuilt is not None else self._load_or_report()
        if sheet is not None and self.prebuilt is None and not self._serving:
            self._verify_before_writing(sheet)
        if sheet is not None and self.config.title:
            config.site_name = sheet.sheet.title
            config.site_description = config.site_description or sheet.sheet.subtitle or None
        if sheet is not None:
            # The hosted URL fills sitemap.xml and canonical links. The repository is linked from the
            # footer, not as `repo_url`: Material would then call api.github.com from every page.
            config.site_url = config.site_url or sheet.sheet.url or None
            if sheet.sheet.repo_url:
                config.extra.setdefault("social", [{"icon": "fontawesome/brands/github",
                                                    "link": sheet.sheet.repo_url, "name": "formulas.yaml on GitHub"}])
        if KATEX_CSS_PATH not in config.extra_css:
            config.extra_css.insert(0, KATEX_CSS_PATH)
        self._user_nav = config.nav
        jupyter = config.plugins.get("mkdocs-jupyter")
        if jupyter is not None and jupyter.config.get("cache_dir") == ".cache/mkdocs-jupyter":
            # Its default is relative to the working directory; keep it with our caches instead.
            jupyter.config["cache_dir"] = str(self.build_dir / ".cache" / "mkdocs-jupyter")
        return config

    def _verify_before_writing(self, sheet: Sheet) -> None:
        """The whole check, before MkDocs empties site_dir (it does so before `on_files`): a sheet that
        fails leaves the previous site as it was. Cached by content, so `on_files` does not pay twice."""
        if self._renderer is None:
            self._renderer = KatexRenderer(self.build_dir / ".cache" / "katex.json")
        try:
            with BuildLock(self.build_dir, wait=True):
                verify(sheet, self._yaml_text or "", renderer=self._renderer, cache_dir=self.build_dir / ".cache")
        except SheetError as err:
            raise PluginError(str(err)) from None

    def _load_or_report(self) -> Sheet | None:
        try:
            return self._load()
        except SheetError as err:
            if not self._serving:
                raise PluginError(str(err)) from None
            self._report(err)
            return self.sheet

    def _report(self, err: SheetError) -> None:
        """Under serve: keep serving the last good pages, with the problem on every page. Printed, not
        logged: a logged error would make MkDocs abort the rebuild in strict mode and serve nothing."""
        self.error = str(err)
        _complain(self.error)

    def on_files(self, files: Files, /, *, config: MkDocsConfig) -> Files | None:
        if not self.config.enabled:
            return files
        out = self._outputs()
        if out is None:  # serving, the check failed and there is no earlier good build
            return files
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
        self._add_search_worker(files, config)
        if self._user_nav is None:
            handwritten = [f.src_uri for f in files.documentation_pages()
                           if f.generated_by is None and f.src_uri != "index.md"]
            config.nav = [*out.nav, *handwritten]
        timings = ", ".join(f"{k} {v:.2f} s" for k, v in out.timings.items())
        log.info(f"{len(out.pages)} pages, {len(out.notebook_pages)} notebooks "
                 f"({out.notebooks_executed} executed) from {self.config.yaml}: {timings}")
        return files

    def _add_search_worker(self, files: Files, config: MkDocsConfig) -> None:
        """Material's search (theme feature, when its worker is among the theme's files) runs through
        the site's worker, which ranks a card named by the typed word first (render.site.search_worker)."""
        self._search_worker = None
        workers = [f for f in files if f.src_uri.startswith(SEARCH_WORKER_DIR)
                   and MATERIAL_WORKER.fullmatch(f.src_uri[len(SEARCH_WORKER_DIR):])]
        if len(workers) != 1:
            return
        material = workers[0].src_uri[len(SEARCH_WORKER_DIR):]
        ours, text = search_worker(material)
        self._add(files, File.generated(config, SEARCH_WORKER_DIR + ours, content=text))
        self._search_worker = (material, ours)

    def _outputs(self) -> Generated | None:
        """This build's site content: handed over by `sheetgen build`, or made (and checked) here."""
        if self.prebuilt is not None:
            self.error = None
            return self.prebuilt.site
        options = SiteOptions(pdf=self.config.pdf, notebooks=self.config.notebooks,
                              execute=self.config.execute, timeout=self.config.timeout)
        try:
            sheet = self._load()
            if self._renderer is None:
                self._renderer = KatexRenderer(self.build_dir / ".cache" / "katex.json")
            if self._serving:  # pages now, PDFs and notebooks in the background
                if self.preview is None:
                    self.preview = LivePreview(self.build_dir, options, say=_complain)
                site = self.preview.outputs(sheet, self._yaml_text or "", self._renderer)
                self.error = self.preview.background_error
                return site
            with BuildLock(self.build_dir, wait=True):
                recover(self.build_dir)
                outputs = build_outputs(sheet, self._yaml_text or "", build_dir=self.build_dir,
                                        renderer=self._renderer, options=options)
        except SheetError as err:
            if not self._serving:
                raise PluginError(str(err)) from None
            self._report(err)
            return self.generated
        self.error = None
        return outputs.site

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

    # --- serve: what an unchanged page needs is remembered from the last rebuilds -------------------

    def on_nav(self, nav: Navigation, /, *, config: MkDocsConfig, files: Files) -> Navigation | None:
        if not (self._serving and self.config.enabled):
            return nav
        # A page's HTML depends on its Markdown, on the configuration and on which files exist (links).
        config_text = Path(config.config_file_path).read_bytes() if config.config_file_path else b""
        self._build_key = _digest(config_text, *sorted(f"{f.src_uri}>{f.url}" for f in files))
        self._memoise_search(config)
        return nav

    def on_env(self, env: jinja2.Environment, /, *, config: MkDocsConfig, files: Files) -> jinja2.Environment | None:
        if self._serving and self.config.enabled and env.bytecode_cache is None:
            env.bytecode_cache = _TemplateCode(self.memo["templates"])
        return env

    def on_page_markdown(self, markdown: str, /, *, page: Page, config: MkDocsConfig,
                         files: Files) -> str | None:
        if self._serving and self.config.enabled:
            page.render = self._memoised_render(page, page.render)  # type: ignore[method-assign,assignment]
        return markdown

    def _memoised_render(self, page: Page, render: Callable[[MkDocsConfig, Files], None]
                         ) -> Callable[[MkDocsConfig, Files], None]:
        """`page.render` (Markdown, or mkdocs-jupyter's notebook conversion), replayed when the page's
        source, the configuration and the set of files are the same as in an earlier rebuild."""
        memo = self.memo["render"]

        def memoised(config: MkDocsConfig, files: Files) -> None:
            key = _digest(self._build_key, page.file.src_uri, page.file.abs_src_path, page.markdown)
            found = memo.get(key)
            if found is not None:
                effects = dict(found)
                links = effects.get("links_to_anchors")
                if links:  # keyed by File: this build's files, not the ones of the build that rendered it
                    effects["links_to_anchors"] = {files.get_file_from_path(f.src_uri) or f: v
                                                   for f, v in links.items()}
                page.__dict__.update(effects)
                return
            before = dict(page.__dict__)
            warnings = _Warnings()
            logging.getLogger("mkdocs").addHandler(warnings)
            try:
                render(config, files)
            finally:
                logging.getLogger("mkdocs").removeHandler(warnings)
            if not warnings.count:
                memo.put(key, {name: value for name, value in page.__dict__.items()
                               if name not in before or before[name] is not value})

        return memoised

    def _memoise_search(self, config: MkDocsConfig) -> None:
        """The search plugin's index entries of a page (MkDocs' and Material's: ~0.1 s of HTML parsing a
        page), replayed when the page's HTML, title, metadata and table of contents are unchanged."""
        search = config.plugins.get("material/search") or config.plugins.get("search")
        index = getattr(search, "search_index", None)
        add = getattr(index, "add_entry_from_context", None)
        entries_name = next((name for name in ("entries", "_entries")
                             if isinstance(getattr(index, name, None), list)), None)
        if add is None or entries_name is None or getattr(add, "sheetgen_memo", False):
            return
        memo = self.memo["search"]

        def memoised(page: Page) -> None:
            entries: list[Any] = getattr(index, entries_name)
            key = _digest(self._build_key, page.url, page.title, repr(page.meta), _toc_signature(page.toc),
                          page.content)
            found = memo.get(key)
            if found is not None:
                entries.extend(dict(entry) for entry in found)
                return
            start = len(entries)
            add(page)
            memo.put(key, [dict(entry) for entry in entries[start:]])

        memoised.sheetgen_memo = True  # type: ignore[attr-defined]
        setattr(index, "add_entry_from_context", memoised)  # noqa: B010  # an instance attribute

    def _notebook_page(self, html: str, page: Page, download: str) -> NotebookPage:
        """`notebook_page`, replayed under serve when the notebook HTML and the math are unchanged."""
        generated = self.generated
        assert generated is not None
        sheet = self.prebuilt.sheet if self.prebuilt is not None else self.sheet

        def make() -> NotebookPage:
            return notebook_page(html, generated.math, lambda path: get_relative_url(path, page.file.url),
                                 download=download, plain=plain_forms(sheet) if sheet else None)

        if not self._serving:
            return make()
        if self._math_key[0] is not generated:
            self._math_key = (generated, _digest(*sorted(map(repr, generated.math.items())),
                                                 *sorted(map(repr, (plain_forms(sheet) if sheet else {}).items()))))
        key = _digest(self._math_key[1], page.file.url, download, html)
        found: NotebookPage | None = self.memo["notebook"].get(key)
        if found is None:
            found = make()
            self.memo["notebook"].put(key, found)
        return found

    def on_page_content(self, html: str, /, *, page: Page, config: MkDocsConfig, files: Files) -> str | None:
        """Every page: UI labels out of the search index. Notebook pages: KaTeX instead of MathJax-TeX,
        no CDN scripts, a download link, their inline CSS served once, ranked below the cards in search."""
        if not self.config.enabled or self.generated is None:
            return html
        download = self.generated.notebook_pages.get(page.file.src_uri)
        if download is None:
            return mark_ui_for_search(html)
        notebook = self._notebook_page(html, page, download)
        for path, text in notebook.assets.items():
            asset = Path(config.site_dir) / path
            if not asset.is_file():  # one file for all notebook pages (named by its content's hash)
                asset.parent.mkdir(parents=True, exist_ok=True)
                asset.write_text(text, encoding="utf-8")
        page.meta["search"] = {**(page.meta.get("search") or {}), "boost": NOTEBOOK_SEARCH_BOOST}
        # Search results and the browser tab name a page by its meta title: "Optimization" twice (cards
        # and notebook) became "Optimization" and "Optimization — notebook". The nav keeps page.title,
        # under "Notebooks".
        page.meta["title"] = f"{page.title}{NOTEBOOK_TITLE_SUFFIX}"
        return notebook.html

    def on_post_page(self, output: str, /, *, page: Page, config: MkDocsConfig) -> str | None:
        """Every page: search through the site's worker. Under serve, a failed check is shown on every
        page (the pages are the last good ones)."""
        if self.config.enabled and self._search_worker is not None:
            output = use_search_worker(output, *self._search_worker)
        if not self.error:
            return output
        banner = (f'<div class="sheetgen-error" role="alert" style="position:sticky;top:0;z-index:1000;'
                  f'background:#b00020;color:#fff;padding:.8em 1.2em;font:14px/1.4 monospace;white-space:pre-wrap">'
                  f'<strong>sheetgen: the sheet has a problem; this page shows the last good build.</strong>\n'
                  f'{html.escape(self.error)}</div>')
        head, body, rest = output.partition("<body")
        if not body:
            return banner + output
        open_end = rest.index(">") + 1
        return head + body + rest[:open_end] + banner + rest[open_end:]

    def on_serve(self, server: LiveReloadServer, /, *, config: MkDocsConfig, builder: Any) -> LiveReloadServer:
        if self.config.enabled:
            server.watch(str(self.yaml_path))
            server.watch(str(TEMPLATES_DIR))
            trigger = self.build_dir / TRIGGER  # the background PDFs and notebooks are ready
            trigger.parent.mkdir(parents=True, exist_ok=True)
            trigger.touch()
            server.watch(str(trigger))
        return server

    def on_shutdown(self) -> None:
        if self.preview is not None:
            self.preview.close()
            self.preview = None


def _complain(message: str) -> None:
    print(f"sheetgen: {message}", file=sys.stderr, flush=True)


def _display_path(path: Path) -> str:
    """How messages name the YAML: relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
