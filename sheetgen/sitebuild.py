"""Everything the site needs besides MkDocs itself: the generated pages, downloads and assets.

`generate` is what the MkDocs plugin calls on every build; it knows nothing of MkDocs. The rest
are the edges the CLI and the benchmark use: `build_site` (an atomic `mkdocs build`) and
`bench_site` (plugin build vs a bare build of the same generated Markdown).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SheetError
from .katex import KatexRenderer, katex_dist_dir
from .model import Sheet
from .outputs import write_atomic
from .render import site
from .render.code import render_module
from .render.notebooks import dumps, execute_notebooks, notebook_path, render_notebooks

__all__ = [
    "Generated",
    "SiteBuild",
    "SiteBuildError",
    "bench_site",
    "build_site",
    "derived_config",
    "generate",
]

PACKAGE_DIR = Path(__file__).resolve().parent
PDF_PATH = "downloads/cheatsheet.pdf"
MODULE_PATH = "downloads/formulas.py"
NOTEBOOK_ZIP_PATH = "downloads/notebooks.zip"
PREVIEW_PATH = "assets/sheet-preview.png"
KATEX_CSS_PATH = "assets/katex/katex.min.css"
PREVIEW_DPI = 60
NOTEBOOK_SOURCE_DIR = Path(".cache") / "site"
"""Where, under the build dir, the site's notebook pages are rendered from."""


@dataclass
class Generated:
    """One build's worth of generated content, by docs-relative path."""

    pages: dict[str, str] = field(default_factory=dict)
    """Markdown pages."""
    files: dict[str, bytes] = field(default_factory=dict)
    """Static files made in memory (downloads, preview)."""
    linked: dict[str, Path] = field(default_factory=dict)
    """Files served as they are on disk: executed notebooks (rendered by mkdocs-jupyter), KaTeX assets."""
    notebook_pages: dict[str, str] = field(default_factory=dict)
    """Notebook page path → its raw download path."""
    math: site.MathHtml = field(default_factory=dict)
    nav: list[Any] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notebooks_executed: int = 0
    """Notebooks run by a kernel in this build (0 when every one came from the cache)."""
    katex_node_runs: int = 0
    """KaTeX processes started in this build (0 when every formula came from the cache)."""


def generate(sheet: Sheet, yaml_text: str, *, build_dir: Path, renderer: KatexRenderer, pdf: bool = True,
             notebooks: bool = True, execute: bool = True, timeout: int = 120) -> Generated:
    """Typeset, execute and render everything; every expensive step is cached under `build_dir`."""
    out = Generated()
    clock = _Clock(out.timings)

    with clock("katex"):
        requests = site.math_requests(sheet)
        out.math = renderer.render_map(requests)
        out.katex_node_runs = renderer.stats.node_runs if renderer.stats else 0

    notebook_pages: dict[str, str] = {}  # section id → notebook page
    if notebooks:
        with clock("notebooks"):
            rendered = render_notebooks(sheet)
            if execute:
                results = execute_notebooks(rendered, build_dir / ".cache" / "notebooks", sheet=sheet,
                                            timeout=timeout)
                out.notebooks_executed = sum(not r.cached for r in results.values())
                rendered = {path: r.notebook for path, r in results.items()}
            texts = {path: dumps(nb) for path, nb in rendered.items()}
            notebook_pages = {s.id: notebook_path(s) for s in sheet.sections if notebook_path(s) in texts}
            for path, text in texts.items():
                # Served from the cache folder: build/notebooks holds outputs, which only a
                # finished `sheetgen build` (or `sheetgen notebooks`) replaces.
                on_disk = build_dir / NOTEBOOK_SOURCE_DIR / path
                write_atomic(on_disk, text)  # unchanged notebooks keep their mtime
                download = "downloads/" + path
                out.linked[path] = on_disk
                out.files[download] = text.encode("utf-8")
                out.notebook_pages[path] = download
            out.files[NOTEBOOK_ZIP_PATH] = _zip(texts)
    links = site.Links(pdf=PDF_PATH if pdf else None, module=MODULE_PATH, notebook_pages=notebook_pages,
                       notebook_files={ident: out.notebook_pages[p] for ident, p in notebook_pages.items()})

    with clock("pages"):
        out.pages = site.render_pages(sheet, out.math, links)
        out.files[MODULE_PATH] = render_module(sheet).encode("utf-8")
        out.nav = site.nav(sheet, links)

    if pdf:
        with clock("pdf"):
            pdf_bytes, preview = cached_pdf(sheet, yaml_text, renderer, build_dir / ".cache")
            out.files[PDF_PATH] = pdf_bytes
            if preview is not None:
                out.files[PREVIEW_PATH] = preview

    with clock("assets"):
        dist = katex_dist_dir()
        out.linked[KATEX_CSS_PATH] = dist / "katex.min.css"
        # Browsers that can show this site all read WOFF2, the first format katex.min.css offers.
        for font in sorted((dist / "fonts").glob("*.woff2")):
            out.linked[f"assets/katex/fonts/{font.name}"] = font
    return out


class _Clock:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started


def _zip(texts: Mapping[str, str]) -> bytes:
    """All notebooks in one archive, byte-identical for identical notebooks (fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in sorted(texts.items()):
            info = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, text)
    return buffer.getvalue()


# --- the PDF and its preview ------------------------------------------------------------------


def cached_pdf(sheet: Sheet, yaml_text: str, renderer: KatexRenderer, cache_dir: Path) -> tuple[bytes, bytes | None]:
    """The one-page PDF and its PNG preview, through the PDF cache `sheetgen pdf` and `sheetgen build`
    share: rendered only when something the bytes depend on changed."""
    from .build import build_pdf, pdf_preview

    built = build_pdf(yaml_text, sheet.source_path, renderer=renderer, cache_dir=cache_dir, sheet=sheet)
    return built.pdf, pdf_preview(built, cache_dir, dpi=PREVIEW_DPI)


# --- building the site --------------------------------------------------------------------------


class SiteBuildError(SheetError):
    """A failed site build, with MkDocs' (or the plugin's) own message."""

    def __init__(self, message: str) -> None:
        super().__init__([])
        self.message = message

    def __str__(self) -> str:
        return self.message


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _mkdocs_logging(verbose: bool) -> Iterator[_Collect]:
    """Print MkDocs' warnings (and with `verbose`, its info lines) like its CLI does."""
    logger = logging.getLogger("mkdocs")
    collect = _Collect()
    printer = logging.StreamHandler()
    printer.setFormatter(logging.Formatter("%(levelname)-7s -  %(message)s"))
    printer.setLevel(logging.INFO if verbose else logging.WARNING)
    printer.addFilter(lambda record: record.levelno < logging.ERROR)  # errors end up in the exception
    old_level = logger.level
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.addHandler(collect)
    logger.addHandler(printer)
    try:
        yield collect
    finally:
        logger.removeHandler(collect)
        logger.removeHandler(printer)
        logger.setLevel(old_level)


@dataclass(frozen=True)
class SiteBuild:
    seconds: float
    generated: Generated | None
    """What the sheetgen plugin generated (None without the plugin)."""
    config: Any
    """The MkDocs config as the build left it (site_name, nav and extra_css set by the plugin)."""


def build_site(config_file: Path = Path("mkdocs.yml"), site_dir: Path | None = None, *, strict: bool = True,
               verbose: bool = False) -> SiteBuild:
    """`mkdocs build` into a fresh folder, swapped in only on success (strict mode empties the target
    first, so a failed build would otherwise leave no site at all).

    Raises `SiteBuildError` (a `SheetError`) with MkDocs' or the plugin's message when the build fails.
    """
    config_file = config_file.resolve()
    target = (site_dir or config_file.parent / "site").resolve()
    staging, built = stage_site(config_file, target, strict=strict, verbose=verbose)
    swap_into_place(staging, target)
    return built


def stage_site(config_file: Path, site_dir: Path, *, strict: bool = True,
               verbose: bool = False) -> tuple[Path, SiteBuild]:
    """`mkdocs build` into a new folder next to `site_dir`; the caller swaps it in (or deletes it)."""
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config
    from mkdocs.exceptions import Abort, ConfigurationError

    config_file = config_file.resolve()
    target = site_dir.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(target)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    started = time.perf_counter()
    with _mkdocs_logging(verbose) as log:
        try:
            config = load_config(config_file=str(config_file), site_dir=str(staging), strict=strict)
            build(config)
        except (Abort, ConfigurationError) as err:
            shutil.rmtree(staging, ignore_errors=True)
            errors = "\n".join(m for m in log.messages if m)
            raise SiteBuildError(errors or f"{config_file.name}: {err} (see the warnings above); "
                                 f"{target.name}/ was left as it was") from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    plugin = config.plugins.get("sheetgen")
    return staging, SiteBuild(time.perf_counter() - started, getattr(plugin, "generated", None), config)


STAGING_ABANDONED_AFTER = 3600.0
"""Seconds after which a staging folder is taken as left by a killed build (not one still running)."""


def _remove_abandoned_staging(target: Path) -> None:
    """A build killed mid-way leaves `.site.XXXX` next to the site; the next build removes it."""
    for folder in target.parent.glob(f".{target.name}.*"):
        if folder.is_dir() and time.time() - folder.stat().st_mtime > STAGING_ABANDONED_AFTER:
            shutil.rmtree(folder, ignore_errors=True)


def swap_into_place(staging: Path, target: Path) -> None:
    """Replace `target` by `staging` with two renames (the old site is deleted afterwards)."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    staging.chmod(0o755)  # mkdtemp makes it 0700
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def derived_config(config_file: Path, out: Path, *, sheetgen: Mapping[str, Any] | None = None,
                   drop_sheetgen: bool = False, **settings: Any) -> Path:
    """Write a copy of `config_file` to `out` with absolute paths, other `settings`, and the sheetgen
    plugin's options updated (or the plugin removed): how tests and the benchmark vary a build.
    (MkDocs' `INHERIT` would replace the whole plugin list, so the file is copied instead.)"""
    import yaml as pyyaml  # type: ignore[import-untyped]  # MkDocs depends on PyYAML

    config_file = config_file.resolve()
    raw = pyyaml.safe_load(config_file.read_text(encoding="utf-8"))
    root = config_file.parent
    raw["docs_dir"] = str(root / raw.get("docs_dir", "docs"))
    raw["site_dir"] = str(root / raw.get("site_dir", "site"))
    plugins: list[Any] = []
    for plugin in raw.get("plugins", []):
        name = plugin if isinstance(plugin, str) else next(iter(plugin))
        if name != "sheetgen":
            plugins.append(plugin)
        elif not drop_sheetgen:
            options = {"yaml": "formulas.yaml", "build_dir": "build"}
            options.update({} if isinstance(plugin, str) else plugin["sheetgen"] or {})
            options.update(sheetgen or {})
            for key in ("yaml", "build_dir"):
                options[key] = str(root / options[key])
            plugins.append({"sheetgen": options})
    raw["plugins"] = plugins
    raw.update(settings)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(pyyaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


# --- benchmark ----------------------------------------------------------------------------------


def bench_site(config_file: Path = Path("mkdocs.yml"), *, work_dir: Path | None = None,
               repeat: int = 3) -> dict[str, Any]:
    """Time the site build, for `make bench`. Returns seconds (medians of `repeat` runs), counts, and
    every run's seconds under `plugin_runs` and `bare_runs`:

    - `first`: the first build (cold only if the caches under build/ were empty),
    - `plugin`: a build with the sheetgen plugin, YAML unchanged (KaTeX, notebooks and PDF cached),
    - `bare`: a plain `mkdocs build` without the plugin of the very Markdown, notebooks and files the
      plugin generated, written out as a docs folder (same theme, extensions and mkdocs-jupyter),
    - `ratio`: plugin / bare; the issue asks for at most 1.5,
    - `katex_node_runs`, `notebooks_executed`: in the last plugin build; both 0 when nothing changed.
    """
    from statistics import median

    config_file = config_file.resolve()
    with tempfile.TemporaryDirectory(prefix="sheetgen-bench-") as tmp:
        work = work_dir or Path(tmp)
        site_dir = work / "site-plugin"
        first = build_site(config_file, site_dir).seconds
        runs = [build_site(config_file, site_dir) for _ in range(repeat)]
        last = runs[-1]
        generated = last.generated
        if generated is None:
            raise ValueError(f"{config_file} does not use the sheetgen plugin")
        docs = work / "bare-docs"
        shutil.rmtree(docs, ignore_errors=True)
        shutil.copytree(last.config.docs_dir, docs)
        for path, text in generated.pages.items():
            write_atomic(docs / path, text)
        for path, data in generated.files.items():
            write_atomic(docs / path, data)
        for path, source in generated.linked.items():
            write_atomic(docs / path, source.read_bytes())
        bare_config = derived_config(config_file, work / "mkdocs-bare.yml", drop_sheetgen=True,
                                     docs_dir=str(docs), site_name=last.config.site_name,
                                     nav=last.config.nav, extra_css=list(last.config.extra_css))
        build_site(bare_config, work / "site-bare")  # warms mkdocs-jupyter's cache, as for the plugin
        bare_runs = [build_site(bare_config, work / "site-bare").seconds for _ in range(repeat)]
    plugin_runs = [run.seconds for run in runs]
    plugin, bare = median(plugin_runs), median(bare_runs)
    return {"first": first, "plugin": plugin, "bare": bare, "ratio": plugin / bare,
            "plugin_runs": plugin_runs, "bare_runs": bare_runs,
            "katex_node_runs": generated.katex_node_runs, "notebooks_executed": generated.notebooks_executed}
