"""Figures: a few lines of YAML Python that call the tested functions and draw with matplotlib, as SVG.

The code is YAML code, so it runs where the doctests run (`sheetgen.sandbox`: a child process with
CPU, memory and wall-clock limits, a temporary working folder, a scrubbed environment). In its scope:
every function of the generated module, `np` and `plt` (matplotlib's pyplot on the Agg backend).

Deterministic SVG: a fixed `svg.hashsalt` (element ids), no date or creator metadata, text kept as
text (`svg.fonttype: none`, so no font file is read or embedded and the browser's sans-serif draws it).
Readable on the site's light and dark palettes: a transparent background, axes and text in a middle
grey (about 4:1 against white and against Material's slate), lines in the Okabe–Ito colour-blind-safe
palette (without its black), heat maps in cividis.

Cached by content under `build/.cache/figures/`: the key is the figure code, the module source,
matplotlib's and NumPy's versions and the style here, so an unchanged figure is never drawn again.
A figure that raises, draws nothing, or runs past its limits is a located problem
(`formulas.yaml:LINE [id] figure: …`).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import sandbox
from .cache import FileCache
from .errors import Problem, SheetError
from .model import Fact, Formula, Sheet
from .svgsafe import unsafe_svg

__all__ = ["FIGURE_LIMITS", "RC", "Figures", "figure_entries", "render_figures", "svg_problem"]

FORMAT = 1
FIGURE_LIMITS = sandbox.Limits(step_seconds=20.0, total_seconds=300.0, cpu_seconds=300, memory_bytes=1 << 30)
"""Per figure 20 s of wall clock; the child as a whole the doctests' limits."""
SETUP_SECONDS = 60.0
"""Importing matplotlib in the child (a cold font cache is built once, from the fonts it ships)."""
CACHE_KEEP = 400

GREY = "#808080"
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")
"""Okabe & Ito (2008), without black (invisible on a dark page) and yellow (invisible on white)."""
RC: Mapping[str, Any] = {
    "svg.hashsalt": "sheetgen",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9.0,
    "figure.figsize": (5.2, 3.2),
    "figure.dpi": 72.0,
    "figure.constrained_layout.use": True,  # panels and their labels never overlap
    "figure.facecolor": "none",
    "axes.facecolor": "none",
    "savefig.facecolor": "none",
    "savefig.transparent": True,
    "axes.edgecolor": GREY,
    "axes.labelcolor": GREY,
    "axes.titlecolor": GREY,
    "axes.prop_cycle": None,  # set from PALETTE in the child (a cycler object does not belong in a key)
    "axes.grid": True,
    "grid.color": GREY,
    "grid.alpha": 0.25,
    "xtick.color": GREY,
    "ytick.color": GREY,
    "text.color": GREY,
    "legend.frameon": False,
    "legend.labelcolor": GREY,
    "lines.linewidth": 2.0,
    "image.cmap": "cividis",
    "axes.spines.top": False,
    "axes.spines.right": False,
}

SAVE: Mapping[str, Any] = {"bbox_inches": "tight", "metadata": {"Date": None, "Creator": None}}
"""savefig's options: cropped to the drawing, no date and no creator (with matplotlib's version) in the file."""


@dataclass(frozen=True)
class Figures:
    svgs: dict[str, str]
    """Entry id → SVG text, in sheet order."""
    drawn: int
    """Figures drawn in this call (0 when all came from the cache)."""
    seconds: float


def figure_entries(sheet: Sheet) -> list[Formula | Fact]:
    """Entries with a `figure:`, in sheet order."""
    return [e for e in sheet.entries() if isinstance(e, Formula | Fact) and e.figure is not None]


def figure_key(code: str, module_source: str) -> str:
    """Hash of what a figure's drawing depends on: its code, the module's code, the plotting style and
    the library versions. The module's docstrings and comments (the YAML's prose) are left out, so
    editing a meaning does not redraw every figure; unless the figure's code reads docstrings or
    source, then the whole module counts."""
    import numpy

    introspects = any(word in code for word in ("__doc__", "inspect", "getsource", "help(", "__loader__"))
    module_code = module_source if introspects else _without_prose(module_source)
    digest = hashlib.sha256()
    style = json.dumps([dict(RC), SAVE], sort_keys=True, default=str) + repr(PALETTE)
    for part in (str(FORMAT), code, module_code, _matplotlib_version(), numpy.__version__, style):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=8)
def _without_prose(module_source: str) -> str:
    """The module's code without docstrings and comments (as `ast.unparse` writes it)."""
    try:
        tree = ast.parse(module_source)
    except SyntaxError:
        return module_source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


@functools.cache
def _matplotlib_version() -> str:
    """From the package metadata: importing matplotlib only to read its version costs 0.3 s a build."""
    return importlib.metadata.version("matplotlib")


def render_figures(sheet: Sheet, module_source: str, *, cache_dir: Path | None,
                   limits: sandbox.Limits = FIGURE_LIMITS) -> Figures:
    """Every figure's SVG: from the cache, or drawn in one sandboxed child. Raises `SheetError` (each
    failing figure at its YAML line) when any figure fails."""
    import time

    started = time.perf_counter()
    entries = figure_entries(sheet)
    cache = FileCache(cache_dir / "figures", ".svg", keep=CACHE_KEEP) if cache_dir is not None else None
    svgs: dict[str, str] = {}
    keys: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    for entry in entries:
        assert entry.figure is not None
        key = keys[entry.id] = figure_key(entry.figure.code, module_source)
        found = cache.get(key) if cache is not None else None
        if found is not None:
            svgs[entry.id] = found.decode("utf-8")
        else:
            missing.append((entry.id, entry.figure.code))
    if missing:
        outcome = sandbox.run(_draw_in_child, module_source, missing, limits=limits, result_types=[Problem])
        if outcome.failure is not None:
            raise SheetError([_located_failure(sheet, outcome)])
        drawn: dict[str, Any] = outcome.value
        problems = [_problem(sheet, entry_id, *where) for entry_id, where in drawn["problems"]]
        if problems:
            raise SheetError(problems)
        unsafe = [_problem(sheet, entry_id, 0, what, "draw with plt only; the figure code must not change "
                           "matplotlib's output") for entry_id, svg in drawn["svgs"].items()
                  if (what := svg_problem(svg)) is not None]
        if unsafe:
            raise SheetError(unsafe)
        for entry_id, svg in drawn["svgs"].items():
            if cache is not None:
                cache.put(keys[entry_id], svg)
            svgs[entry_id] = svg
    ordered = {e.id: svgs[e.id] for e in entries}
    return Figures(svgs=ordered, drawn=len(missing), seconds=time.perf_counter() - started)


MAX_SVG_BYTES = 2 << 20
"""A figure's SVG is a few tens of KB; past 2 MB it is a problem (too many points, or not a plot)."""


def svg_problem(svg: str) -> str | None:
    """Why an SVG from the child may not be published, or None.

    The figure code runs in the same child that writes the SVG, so it could change what is written. The
    site shows the SVG in an <img> (where no script runs), but the file is also reachable by its URL:
    it must be only a drawing (`sheetgen.svgsafe`), and of a plot's size.
    """
    size = len(svg.encode("utf-8"))
    if size > MAX_SVG_BYTES:
        return f"the SVG is {size / 2**20:.1f} MB (at most {MAX_SVG_BYTES >> 20} MB); draw fewer points"
    unsafe = unsafe_svg(svg)
    return f"the SVG is not only a drawing: {unsafe}" if unsafe else None


_FIX = "fix the figure code: it runs with the module's functions, np and plt in scope and must draw on plt"


def _problem(sheet: Sheet, entry_id: str, line_offset: int, what: str, fix: str = _FIX) -> Problem:
    line = sheet.line_of(entry_id, "figure.code") or sheet.line_of(entry_id, "figure")
    return Problem(sheet.source_path, line + max(0, line_offset - 1) if line else 0, what, fix, None, entry_id,
                   "figure")


def _located_failure(sheet: Sheet, outcome: sandbox.Outcome) -> Problem:
    step = outcome.step
    if isinstance(step, tuple) and step[0] == "figure":
        entry_id = str(step[1])
        if outcome.failure == "timeout":
            return _problem(sheet, entry_id, 0, f"drawing {outcome.message}",
                            "an endless loop or a very slow figure? draw fewer points")
        return _problem(sheet, entry_id, 0, f"drawing stopped: {outcome.message}",
                        "figure code must not exit the interpreter, kill the process or exhaust its limits")
    return Problem(sheet.source_path, 0, f"drawing the figures: {outcome.message}",
                   "the module or matplotlib failed to load in the sandbox; run `sheetgen check`")


# --- in the child ---------------------------------------------------------------------------------


def _draw_in_child(child: sandbox.Child, module_source: str, figures: list[tuple[str, str]]) -> dict[str, Any]:
    import io
    import traceback

    child.step(("setup", None), SETUP_SECONDS)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from cycler import cycler

    style: dict[Any, Any] = {k: v for k, v in RC.items() if v is not None}  # Any: the keys are typed literals
    plt.rcParams.update(style)
    plt.rcParams["axes.prop_cycle"] = cycler(color=list(PALETTE))
    module = types.ModuleType("formulas")
    module.__file__ = "formulas.py"
    exec(compile(module_source, "formulas.py", "exec", dont_inherit=True), module.__dict__)
    svgs: dict[str, str] = {}
    problems: list[tuple[str, tuple[int, str]]] = []
    for entry_id, code in figures:
        child.step(("figure", entry_id))
        plt.close("all")
        figure = plt.figure()
        scope = {name: value for name, value in module.__dict__.items() if not name.startswith("__")}
        scope.update(np=np, plt=plt, __name__="figure")
        filename = f"<figure {entry_id}>"
        try:
            exec(compile(code, filename, "exec", dont_inherit=True), scope)
            figure = plt.gcf()
            if not any(ax.has_data() for ax in figure.axes):
                problems.append((entry_id, (0, "draws nothing (no axes with data)")))
                continue
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", **SAVE)
        except BaseException as err:  # anything the code can raise, SystemExit and KeyboardInterrupt included
            lines = [f.lineno or 0 for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
            if isinstance(err, SyntaxError) and err.filename == filename:
                lines.append(err.lineno or 0)
            text = str(err)
            detail = f"{type(err).__name__}: {sandbox.clip(text, 200)}" if text else type(err).__name__
            problems.append((entry_id, (lines[-1] if lines else 0, f"raised {detail}")))
            continue
        svgs[entry_id] = buffer.getvalue()
    plt.close("all")
    return {"svgs": svgs, "problems": problems}
