"""MkDocs at the edges: build the site in-process, with the sheetgen plugin's options set in memory.

mkdocs.yml is loaded by MkDocs itself (`load_config`), so any valid configuration works (`!ENV`,
Material's `!!python/name:` emoji settings, `INHERIT`); sheetgen never rewrites it. A different sheet
or build folder is passed by setting the plugin's options on the loaded config, and `sheetgen build`
hands the plugin the outputs it already made (`prebuilt`), so nothing is computed twice.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import MessageError
from .outputs import write_atomic

if TYPE_CHECKING:
    from .pipeline import Generated, Outputs

__all__ = [
    "SiteBuild",
    "SiteBuildError",
    "bench_site",
    "build_into",
    "build_site",
    "load_site_config",
]


# --- building the site --------------------------------------------------------------------------


class SiteBuildError(MessageError):
    """A failed site build, with MkDocs' (or the plugin's) own message."""


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


def build_into(config_file: Path, site_dir: Path, *, prebuilt: Outputs | None = None,
               yaml_path: Path | None = None, build_dir: Path | None = None, strict: bool = True,
               verbose: bool = False, plugin_options: Mapping[str, Any] | None = None) -> SiteBuild:
    """`mkdocs build` of `config_file` into `site_dir` (a fresh staging folder: strict mode empties it
    first). The sheetgen plugin's `yaml`/`build_dir` options are overridden in memory when given, and
    with `prebuilt` the plugin uses those outputs instead of making its own.

    Raises `SiteBuildError` (a `SheetError`) with MkDocs' or the plugin's message when the build fails.
    """
    os.environ.setdefault("NO_MKDOCS_2_WARNING", "1")
    from mkdocs.commands.build import build
    from mkdocs.exceptions import Abort, ConfigurationError

    config_file = config_file.resolve()
    started = time.perf_counter()
    with _mkdocs_logging(verbose) as log:
        try:
            config = load_site_config(config_file, site_dir, strict=strict, yaml_path=yaml_path,
                                      build_dir=build_dir, plugin_options=plugin_options)
            plugin = config.plugins.get("sheetgen")
            # As `mkdocs build` does. MkDocs keeps plugin instances that define on_startup across
            # loads in one process: this also ends what an earlier `serve` in this process left.
            config.plugins.on_startup(command="build", dirty=False)
            if plugin is not None:
                plugin.prebuilt = prebuilt
            try:
                build(config)
            finally:
                # The next build must not find this build's outputs.
                if plugin is not None:
                    plugin.prebuilt = None
                config.plugins.on_shutdown()
        except (Abort, ConfigurationError) as err:
            errors = "\n".join(m for m in log.messages if m)
            raise SiteBuildError(errors or f"{config_file.name}: {err} (see the warnings above)") from None
        except OSError as err:
            raise SiteBuildError(f"{config_file}: {err}") from None
    plugin = config.plugins.get("sheetgen")
    return SiteBuild(time.perf_counter() - started, getattr(plugin, "generated", None), config)


def load_site_config(config_file: Path, site_dir: Path, *, strict: bool = True, yaml_path: Path | None = None,
                     build_dir: Path | None = None, plugin_options: Mapping[str, Any] | None = None) -> Any:
    """MkDocs' own loading of `config_file`, then the sheetgen plugin's options set in memory."""
    from mkdocs.config import load_config

    config = load_config(config_file=str(config_file), site_dir=str(site_dir), strict=strict)
    plugin = config.plugins.get("sheetgen")
    if plugin is not None:
        options = dict(plugin_options or {})
        if yaml_path is not None:
            options["yaml"] = str(yaml_path.resolve())
        if build_dir is not None:
            options["build_dir"] = str(build_dir.resolve())
        for key, value in options.items():
            plugin.config[key] = value
    return config


def build_site(config_file: Path = Path("mkdocs.yml"), site_dir: Path | None = None, *, strict: bool = True,
               verbose: bool = False, yaml_path: Path | None = None, build_dir: Path | None = None,
               wait: bool = False, plugin_options: Mapping[str, Any] | None = None) -> SiteBuild:
    """`mkdocs build` into a staging folder, published over `site_dir` only on success, under the
    build lock (see `sheetgen.publish`). The default `build_dir` is the plugin's, next to mkdocs.yml."""
    from .publish import BuildLock, Publication, owned_temp_dir, recover

    config_file = config_file.resolve()
    target = (site_dir or config_file.parent / "site").resolve()
    lock_dir = (build_dir or config_file.parent / "build").resolve()
    with BuildLock(lock_dir, wait=wait), owned_temp_dir(lock_dir):
        recover(lock_dir, (target,))
        publication = Publication(lock_dir)
        try:
            staged = publication.new_tree(target)
            built = build_into(config_file, staged, yaml_path=yaml_path, build_dir=build_dir, strict=strict,
                               verbose=verbose, plugin_options=plugin_options)
            publication.add_tree(target, staged)
            publication.commit()
        except BaseException:
            publication.discard()
            raise
    return built


# --- benchmark ----------------------------------------------------------------------------------


def bench_site(config_file: Path = Path("mkdocs.yml"), *, work_dir: Path | None = None,
               build_dir: Path | None = None, repeat: int = 3) -> dict[str, Any]:
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
        first = build_site(config_file, site_dir, build_dir=build_dir).seconds
        runs = [build_site(config_file, site_dir, build_dir=build_dir) for _ in range(repeat)]
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
        settings = dict(docs_dir=str(docs), site_name=last.config.site_name, nav=last.config.nav,
                        extra_css=list(last.config.extra_css))
        _bare_build(config_file, work / "site-bare", **settings)  # warms mkdocs-jupyter's cache, like the plugin's
        bare_runs = [_bare_build(config_file, work / "site-bare", **settings) for _ in range(repeat)]
    plugin_runs = [run.seconds for run in runs]
    plugin, bare = median(plugin_runs), median(bare_runs)
    return {"first": first, "plugin": plugin, "bare": bare, "ratio": plugin / bare,
            "plugin_runs": plugin_runs, "bare_runs": bare_runs,
            "katex_node_runs": generated.katex_node_runs, "notebooks_executed": generated.notebooks_executed}


def _bare_build(config_file: Path, site_dir: Path, **settings: Any) -> float:
    """A plain `mkdocs build` of `config_file` without the sheetgen plugin, other settings overridden."""
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    started = time.perf_counter()
    with _mkdocs_logging(False):
        config = load_config(config_file=str(config_file), site_dir=str(site_dir), **settings)
        config.plugins.pop("sheetgen", None)
        build(config)
    return time.perf_counter() - started
