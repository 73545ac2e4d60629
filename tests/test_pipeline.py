"""The pipeline does each piece of work once per build, and sheetgen's modules import without a cycle."""

from __future__ import annotations

import ast
import functools
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sheetgen.cli import main
from tests.conftest import ROOT, needs_katex

PACKAGE = ROOT / "sheetgen"

SMALL = """\
sheet:
  title: Small sheet
sections:
  - id: basics
    title: Basics
    entries:
      - kind: formula
        id: twice
        name: Twice
        latex: 'y = 2 x'
        meaning: Doubles $x$.
        source: Nobody (2024), §1
        implementation: |
          def twice(x):
              return 2 * np.asarray(x)
        examples: |
          >>> int(twice(2))
          4
          >>> int(twice(-3))
          -6
      - kind: fact
        id: a_fact
        name: A fact
        text: 'Facts have text.'
        latex: 'a^2 + b^2 = c^2'
"""


def _count(monkeypatch: pytest.MonkeyPatch, calls: Counter[str], name: str, *targets: str) -> None:
    """Wrap the function at each dotted `targets` path (the same function imported into several
    modules, or a method of a class) so that every call adds one to `calls[name]`."""
    import importlib

    for target in targets:
        parts = target.split(".")
        for cut in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
            try:
                owner: Any = importlib.import_module(".".join(parts[:cut]))
            except ModuleNotFoundError:
                continue
            break
        for part in parts[cut:-1]:
            owner = getattr(owner, part)
        original: Callable[..., Any] = getattr(owner, parts[-1])

        @functools.wraps(original)
        def counted(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            calls[name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, parts[-1], counted)


@pytest.mark.slow
@needs_katex
def test_a_cold_build_does_each_piece_of_work_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    yaml = tmp_path / "formulas.yaml"
    yaml.write_text(SMALL, encoding="utf-8")
    calls: Counter[str] = Counter()
    _count(monkeypatch, calls, "load", "sheetgen.pipeline.load_sheet_text", "sheetgen.mkdocs_plugin.load_sheet_text",
           "sheetgen.loader.load_sheet_text")
    _count(monkeypatch, calls, "module", "sheetgen.pipeline.render_module", "sheetgen.doctests.render_module")
    _count(monkeypatch, calls, "notebooks", "sheetgen.pipeline.execute_notebooks")
    _count(monkeypatch, calls, "pdf", "sheetgen.pipeline.build_pdf")
    _count(monkeypatch, calls, "site pages", "sheetgen.render.site.render_pages")
    _count(monkeypatch, calls, "katex process", "sheetgen.katex.KatexRenderer._start_node")
    argv = ["build", "-f", str(yaml), "--build-dir", str(tmp_path / "build"), "--site-dir", str(tmp_path / "site"),
            "-c", str(ROOT / "mkdocs.yml")]
    assert main(argv) == 0
    editions = 2  # the one-pager and the full sheet
    assert dict(calls) == {"load": 1, "module": 1, "notebooks": 1, "pdf": editions, "site pages": 1,
                           "katex process": 1}


def _imports(path: Path, package: str) -> set[str]:
    """The sheetgen modules `path` imports, at module level or inside functions (not TYPE_CHECKING)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if module.endswith(".__init__"):
        module = module[: -len(".__init__")]
        base = module
    else:
        base = module.rsplit(".", 1)[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                     and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
                     for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in type_checking:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(package)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            if target.startswith(package):
                found.add(target)
                found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


# What a renderer may not use: processes, the environment, the clock, the network, the engines
# and kernels (those live in pdf/, notebook_run.py, katex.py, figures.py), and sheetgen's own I/O.
_IMPURE_MODULES = {"subprocess", "multiprocessing", "socket", "time", "tempfile", "shutil", "weasyprint",
                   "nbclient", "jupyter_client", "urllib", "http"}
_IMPURE_SHEETGEN = {"sheetgen.sandbox", "sheetgen.publish", "sheetgen.cache", "sheetgen.outputs",
                    "sheetgen.notebook_run", "sheetgen.pdf", "sheetgen.figures", "sheetgen.pipeline"}


def test_renderers_are_pure() -> None:
    """render/__init__.py promises pure functions: no process, environment variable, clock or file
    write in sheetgen/render/, and no import of the modules that do those."""
    problems = []
    for path in sorted((PACKAGE / "render").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            problems += [f"{path.name}: imports {n}" for n in names if n.split(".")[0] in _IMPURE_MODULES]
            if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv", "write_text", "write_bytes",
                                                                  "mkdir", "unlink", "system", "popen"}:
                problems.append(f"{path.name}:{node.lineno}: uses .{node.attr}")
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        problems += [f"{path.name}: imports {m}" for m in sorted(_imports(path, "sheetgen"))
                     if any(m == bad or m.startswith(bad + ".") for bad in _IMPURE_SHEETGEN) and m != module]
    assert not problems, problems


def test_sheetgen_has_no_import_cycle() -> None:
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in _imports(path, "sheetgen") if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ re-exports; importing a submodule runs it, so it is not an edge back.
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    graph = {name: deps - packages for name, deps in graph.items()}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for dep in sorted(graph[node]):
            if dep in stack:
                cycles.append([*stack[stack.index(dep):], dep])
            elif dep not in done:
                visit(dep, [*stack, dep], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert not cycles, "import cycles: " + "; ".join(" → ".join(c) for c in cycles)


@pytest.mark.slow
@needs_katex
@pytest.mark.parametrize("tool", ["mkdocs", "properdocs"])
def test_the_site_builds_under_mkdocs_and_properdocs_and_refuses_a_failing_doctest(tool: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    yaml = tmp_path / "formulas.yaml"
    env = {**os.environ, "SHEETGEN_YAML": str(yaml), "SHEETGEN_BUILD_DIR": str(tmp_path / "build"),
           "NO_MKDOCS_2_WARNING": "1"}
    command = [sys.executable, "-m", tool, "build", "--strict", "-f", str(ROOT / "mkdocs.yml")]

    yaml.write_text(SMALL, encoding="utf-8")
    good = subprocess.run([*command, "-d", str(tmp_path / "site")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert good.returncode == 0, good.stderr
    page = (tmp_path / "site" / "sections" / "basics" / "index.html").read_text(encoding="utf-8")
    assert "Doubles" in page

    yaml.write_text(SMALL.replace("          4\n", "          5\n"), encoding="utf-8")
    bad = subprocess.run([*command, "-d", str(tmp_path / "site-bad")], env=env, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1
    assert "[twice] examples: doctest `int(twice(2))` expected '5' but got '4'" in bad.stderr


@pytest.mark.slow
@needs_katex
def test_concurrent_builds_with_different_inputs_end_with_one_consistent_set(tmp_path: Path) -> None:
    """Two `sheetgen build --wait` on the same outputs, different YAML: the lock serialises them, and
    what is left is entirely one sheet's outputs (module, PDF, site pages, search index), never a mix."""
    import subprocess
    import sys

    procs = []
    for word in ("Doubles", "Twofold"):
        yaml = tmp_path / f"{word}.yaml"
        yaml.write_text(SMALL.replace("Doubles", word), encoding="utf-8")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sheetgen", "build", "--wait", "-f", str(yaml), "--build-dir",
             str(tmp_path / "build"), "--site-dir", str(tmp_path / "site"), "-c", str(ROOT / "mkdocs.yml")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    module = (tmp_path / "build" / "formulas.py").read_text(encoding="utf-8")
    page = (tmp_path / "site" / "sections" / "basics" / "index.html").read_text(encoding="utf-8")
    index = (tmp_path / "site" / "search" / "search_index.json").read_text(encoding="utf-8")
    download = (tmp_path / "site" / "downloads" / "formulas.py").read_text(encoding="utf-8")
    winners = {word for word in ("Doubles", "Twofold") if word in module}
    assert len(winners) == 1, "the module holds both sheets"
    (word,) = winners
    other = "Twofold" if word == "Doubles" else "Doubles"
    for name, text in (("page", page), ("search index", index), ("downloaded module", download)):
        assert word in text and other not in text, f"the {name} does not match the module"
    assert download == module
    assert not list((tmp_path / "build").glob(".staging*")) and not list(tmp_path.glob(".site*"))
