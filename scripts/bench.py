"""Benchmark the PDF build: whole-process timings and per-stage timings, medians of several runs.

    .venv/bin/python scripts/bench.py [--runs 5] [-f formulas.yaml] [--only pdf|site|serve ...]

Scenarios (each a fresh `python -m sheetgen pdf` process, as a user runs it):
- cold: empty caches, no previous output (KaTeX, formula images, fit all from scratch);
- warm: the same YAML again (the PDF cache has this exact input: nothing is rendered);
- one entry changed: one formula's TeX and meaning edited, caches from the previous build.
Stages come from `render_pdf`'s timings, measured in separate processes for the cold and the
changed case. Everything happens in a temporary folder: build/ is never touched.

Site: the first build (cold KaTeX, notebook and PDF caches), then `mkdocs build` with the
sheetgen plugin and unchanged YAML against a bare `mkdocs build` (no plugin) of the very Markdown,
notebooks and files the plugin generated. The issue's target: plugin ≤ 1.5 × bare, and a rebuild
with unchanged YAML runs no notebook and no KaTeX.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    name: str
    seconds: list[float]
    target: float | None = None

    def cells(self) -> list[str]:
        median = statistics.median(self.seconds)
        verdict = "" if self.target is None else ("ok" if median <= self.target else "over")
        return [self.name, f"{median:.2f}", f"{min(self.seconds):.2f}", f"{max(self.seconds):.2f}",
                str(len(self.seconds)), "" if self.target is None else f"≤ {self.target:g}", verdict]


def sheetgen_pdf(yaml: Path, out: Path, cache: Path) -> float:
    """Seconds for one `sheetgen pdf` process (start-up and imports included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sheetgen", "pdf", "-f", str(yaml), "-o", str(out),
                    "--cache-dir", str(cache)], cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def stage_timings(yaml: Path, cache: Path) -> dict[str, float]:
    """render_pdf's own stage timings, in a fresh process (its imports are the `setup` stage)."""
    code = (
        "import json, sys, time; t = time.perf_counter()\n"
        "from pathlib import Path\n"
        "from sheetgen.loader import load_sheet\n"
        "from sheetgen.katex import KatexRenderer\n"
        "from sheetgen.pdf.make import render_pdf\n"
        "c = Path(sys.argv[2]); imports = time.perf_counter() - t\n"
        "r = render_pdf(load_sheet(sys.argv[1]), KatexRenderer(cache_path=c / 'katex.json'),\n"
        "               fit_cache_path=c / 'pdf-fit.json', math_cache_path=c / 'pdf-math.json')\n"
        "print(json.dumps({**r.timings, 'imports': imports, 'renders': r.renders,\n"
        "                  'total': time.perf_counter() - t}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(yaml), str(cache)], cwd=ROOT, check=True,
                          capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def edit_one_entry(text: str, n: int) -> str:
    """A different small edit each time: one formula's TeX gets n empty groups (renders nothing,
    but is new TeX) and its meaning a counter."""
    latex = re.search(r"^(\s+latex: ')(.*)(')$", text, flags=re.M)
    meaning = re.search(r"^(\s+meaning: )(.*)$", text, flags=re.M)
    assert latex and meaning, "the YAML has no single-quoted latex or no meaning"
    text = text[:latex.start(2)] + latex.group(2) + " {}" * n + text[latex.end(2):]
    meaning = re.search(r"^(\s+meaning: )(.*)$", text, flags=re.M)
    assert meaning
    return text[:meaning.end(2)] + f" (edit {n})" + text[meaning.end(2):]


def pdf_benchmarks(source: Path, work: Path, runs: int) -> tuple[list[Row], dict[str, dict[str, list[float]]]]:
    yaml = work / "formulas.yaml"
    original = source.read_text(encoding="utf-8")
    cold, warm, changed = [], [], []
    stages: dict[str, dict[str, list[float]]] = {"cold": {}, "one entry changed": {}}
    for run in range(runs):
        yaml.write_text(original, encoding="utf-8")
        cache, out = work / f"cache-{run}", work / f"out-{run}" / "cheatsheet.pdf"
        cold.append(sheetgen_pdf(yaml, out, cache))
        warm.append(sheetgen_pdf(yaml, out, cache))
        yaml.write_text(edit_one_entry(original, run + 1), encoding="utf-8")
        changed.append(sheetgen_pdf(yaml, out, cache))
        # Stage breakdowns, in their own processes and caches.
        stage_cache = work / f"stages-{run}"
        for name, text in (("cold", original), ("one entry changed", edit_one_entry(original, 100 + run))):
            yaml.write_text(text, encoding="utf-8")
            for stage, seconds in stage_timings(yaml, stage_cache).items():
                stages[name].setdefault(stage, []).append(seconds)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(stage_cache, ignore_errors=True)
    rows = [Row("pdf cold (fresh process, empty cache)", cold, 2.5),
            Row("pdf warm (unchanged YAML)", warm, 0.3),
            Row("pdf one entry changed", changed, 2.0)]
    return rows, stages


def site_benchmarks(source: Path, work: Path, runs: int) -> list[Row]:
    """The site build in `work` (caches included), plugin vs bare, from sitebuild.bench_site."""
    from sheetgen.sitebuild import bench_site

    os.environ["SHEETGEN_YAML"] = str(source.resolve())
    try:
        result = bench_site(ROOT / "mkdocs.yml", work_dir=work / "site", build_dir=work / "site" / "build",
                            repeat=runs)
    finally:
        os.environ.pop("SHEETGEN_YAML", None)
    bare = statistics.median(result["bare_runs"])
    print(f"site: plugin/bare = {result['ratio']:.2f} (target ≤ 1.5); in the last rebuild "
          f"{result['notebooks_executed']} notebooks executed, {result['katex_node_runs']} KaTeX processes")
    return [Row("site first build (cold caches, 10 notebooks)", [result["first"]]),
            Row("site build with plugin (unchanged YAML)", result["plugin_runs"], round(1.5 * bare, 2)),
            Row("site build, bare mkdocs (same Markdown)", result["bare_runs"])]


def serve_benchmarks(source: Path, work: Path, runs: int) -> list[Row]:
    """`sheetgen serve` as a user meets it: save an edited meaning, time until the served page shows it
    (save → page) and until build/cheatsheet.pdf holds it (save → PDF). At least 5 edits."""
    import socket
    import urllib.request

    folder = work / "serve"
    folder.mkdir()
    yaml = folder / "formulas.yaml"
    original = source.read_text(encoding="utf-8")
    yaml.write_text(original, encoding="utf-8")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SHEETGEN_BUILD_DIR": str(folder / "build")}
    log = open(folder / "serve.log", "w")  # noqa: SIM115  # closed in finally
    process = subprocess.Popen([sys.executable, "-m", "sheetgen", "serve", "-f", str(yaml), "-c",
                                str(ROOT / "mkdocs.yml"), "-a", f"127.0.0.1:{port}"], cwd=folder, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/sections/math/"
    to_page: list[float] = []
    to_pdf: list[float] = []
    try:
        _until(lambda: _fetch(urllib.request, url) is not None, 300)
        pdf = folder / "build" / "cheatsheet.pdf"
        for edit in range(max(runs, 5)):
            marker = f"Sum of elementwise products, edit {edit}"
            text = original.replace("Sum of elementwise products;", marker + ";", 1)
            before = pdf.stat().st_mtime_ns if pdf.exists() else 0
            saved = time.perf_counter()
            yaml.write_text(text, encoding="utf-8")
            _until(lambda m=marker: m in (_fetch(urllib.request, url) or ""), 120)
            to_page.append(time.perf_counter() - saved)
            _until(lambda b=before: pdf.exists() and pdf.stat().st_mtime_ns != b, 120)
            to_pdf.append(time.perf_counter() - saved)
            time.sleep(1.0)  # let the background work and the reload settle before the next save
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
    return [Row("serve: save → page shows the edit", to_page, 1.5),
            Row("serve: save → build/cheatsheet.pdf updated", to_pdf, 3.0)]


def _fetch(request_module: Any, url: str) -> str | None:
    try:
        with request_module.urlopen(url, timeout=10) as response:
            return str(response.read().decode("utf-8"))
    except OSError:
        return None


def _until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while not condition():
        if time.perf_counter() > deadline:
            raise TimeoutError("serve benchmark: timed out")
        time.sleep(0.05)


def pytest_benchmark(source: Path, work: Path, runs: int) -> list[Row]:
    """Wall time of `make test`'s pytest (one run: it is long), as `make test` runs it."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "worksteal", "-q", "-p",
                             "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(f"pytest: {result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.returncode}")
    return [Row("pytest (make test's command)", [seconds], 60)]


EXTRA_BENCHMARKS: list[Callable[[Path, Path, int], list[Row]]] = [site_benchmarks, serve_benchmarks]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


STAGES = [
    ("imports", "Python imports (sheetgen, pydantic, ruamel)"),
    ("katex", "KaTeX batch (one node process)"),
    ("setup", "WeasyPrint import, fonts, CSS"),
    ("math", "formula images (atlas layout, 2 processes)"),
    ("html", "HTML build (Jinja2, all probes)"),
    ("fit", "fit: sheet layouts (pairs run in parallel)"),
    ("write", "PDF writing"),
    ("weasyprint", "  = WeasyPrint layouts here + writing"),
    ("renders", "sheet layouts (count)"),
    ("total", "total in process"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-f", "--file", type=Path, default=ROOT / "formulas.yaml")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pytest", action="store_true", help="also time the whole test suite once")
    parser.add_argument("--only", choices=["pdf", "site", "serve"], action="append",
                        help="run only these scenarios (repeatable; default: all)")
    args = parser.parse_args()
    os.environ.pop("SOURCE_DATE_EPOCH", None)
    with tempfile.TemporaryDirectory(prefix="sheetgen-bench-") as folder:
        work = Path(folder)
        only = set(args.only or ["pdf", "site", "serve"])
        rows, stages = pdf_benchmarks(args.file, work, args.runs) if "pdf" in only else ([], {})
        for extra in EXTRA_BENCHMARKS:
            if extra.__name__.removesuffix("_benchmarks") in only:
                rows += extra(args.file, work, args.runs)
        if args.pytest:
            rows += pytest_benchmark(args.file, work, args.runs)
    print(f"sheetgen bench: {args.runs} runs each, {os.cpu_count()} CPUs, seconds\n")
    print(table(["scenario", "median", "min", "max", "runs", "target", ""], [r.cells() for r in rows]))
    if not stages:
        return 0
    print()
    names = list(stages)
    body = [[label, *(f"{statistics.median(stages[n][key]):.2f}" if key in stages[n] else "-" for n in names)]
            for key, label in STAGES]
    print(table(["stage (median)", *names], body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
