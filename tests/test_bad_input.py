"""Issue 5's and issue 9's bad-input table: every mistake gets exit 1, one located message with a fix,
no traceback, and no output changed.

Each case of tests/bad_inputs.py is a small mutation of the shipped formulas.yaml (or a file-system
situation: a folder or a FIFO as the file, a read-only or full output folder, a taken port), run
through `sheetgen build` into temporary output folders; every file there, caches included, must be
byte-identical afterwards. Cases that get past the loader run against one good build (with its
caches); cases the loader refuses run against a small stand-in tree, so that a run of only those
needs no build at all.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sheetgen.cli import main
from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet_text
from tests.bad_inputs import CASES, OUTPUT_SITUATIONS, ROOT, BadInput, arranged, shipped_text
from tests.sitehelpers import seed_caches

pytestmark = [pytest.mark.slow]
# `path:line[:col] [entry id] what is wrong — how to fix`; without a line (`path: …`) where the problem is
# the file itself or an output; the id is absent where no entry is involved.
MESSAGE = re.compile(r"^(?P<path>.+?):(?:(?P<line>\d+)(?::(?P<col>\d+))?)? (?:\[(?P<id>[^\]]+)\] )?(?P<what>.+)"
                     r" — .+$")


@dataclass(frozen=True)
class Outputs:
    build_dir: Path
    site_dir: Path


def tree_hashes(*folders: Path) -> dict[str, str]:
    """sha256 of every file under `folders`, by path (caches included: a failed build must not touch them)."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outputs]:
    """One good build of the shipped sheet; every case then fails against these outputs."""
    root = tmp_path_factory.mktemp("good-build")
    build_dir, site_dir = root / "build", root / "site"
    seed_caches(build_dir)  # the shared build's caches: seconds instead of a cold build
    code = main(["build", "-f", str(ROOT / "formulas.yaml"), "--build-dir", str(build_dir),
                 "--site-dir", str(site_dir), "-c", str(ROOT / "mkdocs.yml")])
    assert code == 0, "the shipped formulas.yaml does not build"
    assert (build_dir / "cheatsheet.pdf").is_file() and (site_dir / "index.html").is_file()
    yield Outputs(build_dir, site_dir)


@pytest.fixture(scope="module")
def stand_in_outputs(tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """A small tree shaped like build/ and site/, for cases the loader refuses: those must stop before
    anything is written, so what the files hold does not matter, only that none changes."""
    root = tmp_path_factory.mktemp("stand-in")
    files = {"build/.cache/lock": "", "build/formulas.py": "def f(): ...\n", "build/cheatsheet.pdf": "%PDF-1.7\n",
             "build/notebooks/math.ipynb": "{}\n", "build/.cache/katex.json": "{}\n",
             "site/index.html": "<!doctype html>\n", "site/downloads/formulas.py": "def f(): ...\n"}
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return Outputs(root / "build", root / "site")


def _refused_by_the_loader(case: BadInput, shipped: str) -> bool:
    """True if the case fails before any output could be written: the file itself, or its YAML."""
    if case.situation:
        return True  # the input file (read before anything), an output folder (the first write fails) or serve
    try:
        load_sheet_text(case.apply(shipped), "formulas.yaml")
    except SheetError:
        return True
    return False


def test_every_case_is_distinct() -> None:
    assert len({case.wrote for case in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.wrote).strip("-")[:60] for c in CASES])
def test_bad_input(case: BadInput, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    shipped = shipped_text()
    # Cases that get past the loader (doctests, KaTeX, sandbox) fail against a real good build and its
    # caches; the others cannot get near the outputs, and a stand-in tree shows that they do not.
    early = _refused_by_the_loader(case, shipped)
    outputs: Outputs = request.getfixturevalue("stand_in_outputs" if early else "outputs")
    executed = tmp_path / "executed"  # what the `!!python/object/apply:os.system` case would create
    monkeypatch.setattr(os, "environ", os.environ.copy())  # `serve -f` sets a variable for its plugin
    # Compared with the outputs as this case found them, so that one case that changes them fails alone.
    before = tree_hashes(outputs.build_dir, outputs.site_dir)
    capsys.readouterr()
    with arranged(case, tmp_path, shipped, outputs.build_dir, executed) as bad:
        if bad.command == "serve":
            argv = ["serve", "-f", str(bad.path), "-c", str(ROOT / "mkdocs.yml"), *bad.extra]
        else:
            argv = ["build", "-f", str(bad.path), "--build-dir", str(outputs.build_dir),
                    "--site-dir", str(outputs.site_dir), "-c", str(ROOT / "mkdocs.yml"), *bad.extra]
        code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, f"exit {code}; stderr: {err}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one message, got:\n{err}"
    match = MESSAGE.match(lines[0])
    assert match, f"not `path[:line[:col]] [id] problem — fix`: {lines[0]}"
    assert case.needle in lines[0]
    if case.situation in OUTPUT_SITUATIONS:  # names the output that could not be written
        assert match["path"].startswith(str(outputs.build_dir)), lines[0]
    elif case.situation == "port-taken":
        assert "127.0.0.1:" in lines[0]
    elif case.situation:  # about the file itself: no line to point at
        assert (match["path"], match["line"], match["id"]) == (str(bad.path), None, None), lines[0]
    else:
        assert match["path"] == str(bad.path)
        assert (int(match["line"]), match["id"]) == (case.expected_line(shipped), case.entry_id), lines[0]
    assert not executed.exists(), "a YAML tag was executed"
    assert tree_hashes(outputs.build_dir, outputs.site_dir) == before, "a failed build changed outputs"
