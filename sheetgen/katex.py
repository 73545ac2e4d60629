"""Server-side KaTeX: TeX → HTML in one node process per build, cached on disk.

Shared by the PDF and the site, so both typeset math identically and a formula is rendered once.
Finding the math of a sheet (display formulas and `$…$` in prose) is `sheetgen.mathtext`'s job.
KaTeX comes from the npm package pinned in package.json (`npm ci`); its CSS and fonts, which must
be the same version as the HTML, are in `katex_dist_dir()`.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from .cache import read_json_cache, write_json_atomic
from .errors import Problem, SheetError
from .model import Sheet

__all__ = [
    "OPTIONS",
    "KatexRenderer",
    "KatexStats",
    "MathRequest",
    "katex_dist_dir",
    "katex_package_dir",
]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
BATCH_SCRIPT = PACKAGE_DIR / "assets" / "katex_batch.cjs"

# KaTeX options besides the fixed ones (output html, throwOnError, a recording `trust`), see
# assets/katex_batch.cjs. They are part of the cache key.
OPTIONS: Mapping[str, object] = {
    "strict": "error",  # LaTeX-incompatible input fails instead of rendering differently
    "maxExpand": 1000,  # `\def\a{\a\a}\a` fails fast instead of eating memory
    "maxSize": 10,  # em; larger sizes are refused (KaTeX itself would clamp them silently)
}
_CACHE_FORMAT = 1
_CACHE_LIMIT = 5000  # entries; the oldest go first, so edits over months don't grow it forever
_INSTALL_FIX = "run `make` (it runs npm ci)"
_FIXES = {
    "parse": "fix the TeX; KaTeX's supported commands are listed at https://katex.org/docs/supported.html",
    "refused": "remove it: the sheet prints math only, without links, images or HTML",
    "size": "use sizes of at most 10em, written as plain TeX dimensions such as 2em",
}
_WHERE = re.compile(r"^(?P<path>.*?):(?P<line>\d+)(?: \[(?P<id>[^\]]+)\])?(?: (?P<field>\S+))?$")


@dataclass(frozen=True)
class MathRequest:
    """One piece of TeX to typeset, with where it came from for error messages."""

    tex: str
    display: bool
    where: str
    """Message prefix, e.g. "formulas.yaml:26 [softmax] latex"."""
    path: str = ""
    line: int = 0
    entry_id: str | None = None
    field: str | None = None

    @classmethod
    def at(cls, sheet: Sheet, entry_id: str, field: str, tex: str, display: bool) -> MathRequest:
        """A request located at an entry's field of `sheet`."""
        line = sheet.line_of(entry_id, field)
        return cls(tex, display, f"{sheet.where(entry_id, field)} {field}", sheet.source_path, line,
                   entry_id, field)

    def problem(self, problem: str, fix: str) -> Problem:
        if self.path:
            return Problem(self.path, self.line, problem, fix, None, self.entry_id, self.field)
        match = _WHERE.match(self.where)
        if match is None:
            return Problem(self.where, 0, problem, fix)
        return Problem(match["path"], int(match["line"]), problem, fix, None, match["id"], match["field"])


@dataclass(frozen=True)
class KatexStats:
    """What the last `render` call did, for progress lines and the benchmark."""

    requests: int
    unique: int
    cached: int
    node_runs: int
    seconds: float


def katex_package_dir() -> Path:
    """`node_modules/katex` of the repository (or, for an installed sheetgen, of the cwd)."""
    for root in (REPO_ROOT, Path.cwd()):
        candidate = root / "node_modules" / "katex"
        if (candidate / "package.json").is_file():
            return candidate
    raise SheetError.single("package.json", 0, "KaTeX is not installed (node_modules/katex is missing)",
                            _INSTALL_FIX)


def katex_dist_dir() -> Path:
    """KaTeX's CSS and fonts, from the same package version as the HTML."""
    return katex_package_dir() / "dist"


class KatexRenderer:
    """Renders TeX with KaTeX; all uncached requests of one call go through one node process."""

    def __init__(self, cache_path: Path | None = Path("build/.cache/katex.json"), node: str = "node",
                 katex_dir: Path | None = None) -> None:
        self.cache_path = cache_path
        self.node = node
        self._katex_dir = katex_dir
        self._version: str | None = None
        self._cache: dict[str, str] | None = None
        self.node_runs = 0
        """Node processes started by this renderer (tests check that batching holds)."""
        self.stats: KatexStats | None = None

    @property
    def katex_dir(self) -> Path:
        if self._katex_dir is None:
            self._katex_dir = katex_package_dir()
        return self._katex_dir

    @property
    def version(self) -> str:
        """KaTeX's version, read from its package.json."""
        if self._version is None:
            try:
                meta = json.loads((self.katex_dir / "package.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise SheetError.single("package.json", 0, f"cannot read KaTeX's package.json ({err})",
                                        _INSTALL_FIX) from err
            self._version = str(meta["version"])
            self._check_pin(self._version)
        return self._version

    def _check_pin(self, version: str) -> None:
        """An outdated node_modules would silently mix versions; the lock file is the truth."""
        manifest = self.katex_dir.parent.parent / "package.json"
        try:
            pinned = json.loads(manifest.read_text(encoding="utf-8")).get("dependencies", {}).get("katex")
        except (OSError, ValueError):
            return
        if pinned and pinned != version:
            raise SheetError.single(str(manifest), 0, f"node_modules has KaTeX {version} but package.json "
                                    f"pins {pinned}", _INSTALL_FIX)

    def key(self, request: MathRequest) -> str:
        """Cache key: everything the HTML depends on (KaTeX version, TeX, display, options, script)."""
        payload = json.dumps([self.version, _script_digest(), request.tex, request.display, OPTIONS],
                             sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def render(self, requests: Sequence[MathRequest]) -> list[str]:
        """KaTeX HTML for each request, in order; `SheetError` naming every failing request."""
        return self.start(requests)()

    def render_map(self, requests: Sequence[MathRequest]) -> dict[tuple[str, bool], str]:
        """`render`, as a lookup from (tex, display) to HTML: what templates need."""
        return self.start_map(requests)()

    def start_map(self, requests: Sequence[MathRequest]) -> Callable[[], dict[tuple[str, bool], str]]:
        """`start`, for `render_map`."""
        finish = self.start(requests)
        return lambda: {(r.tex, r.display): html for r, html in zip(requests, finish(), strict=True)}

    def start(self, requests: Sequence[MathRequest]) -> Callable[[], list[str]]:
        """Start rendering and return a function that waits for the HTML (what `render` returns).

        The node process (only started if something is not cached) runs while the caller does
        other work, e.g. importing WeasyPrint: node's start-up then costs nothing.
        """
        started = time.perf_counter()
        keys = [self.key(r) for r in requests]
        cache = self._load_cache()
        missing: dict[str, MathRequest] = {}
        for key, request in zip(keys, requests, strict=True):
            if key not in cache:
                missing.setdefault(key, request)
        runs_before = self.node_runs
        node = self._start_node(list(missing.values())) if missing else None

        def finish() -> list[str]:
            if node is not None:
                failed: dict[str, dict[str, Any]] = {}
                for key, result in zip(missing, node(), strict=True):
                    if isinstance(result.get("html"), str):
                        cache[key] = result["html"]
                    else:
                        failed[key] = result
                self._save_cache(cache)  # keep what did render: the next build only redoes the failures
                if failed:
                    raise SheetError(
                        request.problem(str(failed[key].get("error", "KaTeX failed")),
                                        _FIXES.get(str(failed[key].get("kind")), _FIXES["parse"]))
                        for key, request in zip(keys, requests, strict=True) if key in failed
                    )
            self.stats = KatexStats(len(requests), len(set(keys)), len(set(keys)) - len(missing),
                                    self.node_runs - runs_before, time.perf_counter() - started)
            return [cache[key] for key in keys]

        return finish

    def _start_node(self, requests: Sequence[MathRequest]) -> Callable[[], list[dict[str, Any]]]:
        job = json.dumps({
            "katex": str(self.katex_dir.resolve()),
            "options": dict(OPTIONS),
            "requests": [{"tex": r.tex, "display": r.display} for r in requests],
        })
        self.node_runs += 1
        try:
            process = subprocess.Popen([self.node, str(BATCH_SCRIPT)], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8")
        except FileNotFoundError as err:
            raise SheetError.single("package.json", 0, f"node ({self.node}) is not installed or not on PATH",
                                    "install Node.js 20 or newer, then " + _INSTALL_FIX) from err
        assert process.stdin is not None
        with process.stdin:  # node reads all of stdin first, so this cannot block for long
            process.stdin.write(job)
        process.stdin = None  # closed: communicate() must only read

        def wait() -> list[dict[str, Any]]:
            try:
                out, err = process.communicate(timeout=120)
            except subprocess.TimeoutExpired as error:
                process.kill()
                process.communicate()
                raise RuntimeError(f"KaTeX did not finish {len(requests)} formulas within 120 s") from error
            if process.returncode != 0:
                last = (err.strip().splitlines() or ["no output"])[-1]
                raise SheetError.single("package.json", 0, f"KaTeX could not run: {last}", _INSTALL_FIX)
            results = json.loads(out)
            if not isinstance(results, list) or len(results) != len(requests):
                raise RuntimeError(f"{BATCH_SCRIPT.name} answered {len(results)} results for "
                                   f"{len(requests)} requests")
            return results

        return wait

    def _load_cache(self) -> dict[str, str]:
        if self._cache is None:
            entries = read_json_cache(self.cache_path, "entries", _CACHE_FORMAT)
            self._cache = {k: v for k, v in entries.items() if isinstance(v, str)}
        return self._cache

    def _save_cache(self, cache: dict[str, str]) -> None:
        if self.cache_path is None:
            return
        entries = dict(list(cache.items())[-_CACHE_LIMIT:])
        write_json_atomic(self.cache_path, {"format": _CACHE_FORMAT, "katex": self.version, "entries": entries})


@cache
def _script_digest() -> str:
    return hashlib.sha256(BATCH_SCRIPT.read_bytes()).hexdigest()[:16]
