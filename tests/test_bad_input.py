"""Issue 5's and issue 9's bad-input table: every mistake gets exit 1, one located message with a fix,
no traceback, and no output changed.

Each case of tests/bad_inputs.py is a small mutation of the shipped formulas.yaml (or a file-system
situation: a folder or a FIFO as the file, a read-only or full output folder, a taken port), run
through `sheetgen build` after one good build into temporary folders; every file there, caches
included, must be byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sheetgen.cli import main
from tests.bad_inputs import CASES, OUTPUT_SITUATIONS, ROOT, BadInput, arranged, shipped_text

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
    if (ROOT / "build" / ".cache").is_dir():  # a warm cache: seconds instead of a cold build's 15
        shutil.copytree(ROOT / "build" / ".cache", build_dir / ".cache")
    code = main(["build", "-f", str(ROOT / "formulas.yaml"), "--build-dir", str(build_dir),
                 "--site-dir", str(site_dir), "-c", str(ROOT / "mkdocs.yml")])
    assert code == 0, "the shipped formulas.yaml does not build"
    assert (build_dir / "cheatsheet.pdf").is_file() and (site_dir / "index.html").is_file()
    yield Outputs(build_dir, site_dir)


def test_every_case_is_distinct() -> None:
    assert len({case.wrote for case in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.wrote).strip("-")[:60] for c in CASES])
def test_bad_input(case: BadInput, outputs: Outputs, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = shipped_text()
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
