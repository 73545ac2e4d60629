"""Issue 5's bad-input table: every mistake gets exit 1, one located message with a fix, and no output lost.

Each case of tests/bad_inputs.py is a small mutation of the shipped formulas.yaml, built with
`sheetgen build` after one good build into temporary folders; every file there must be byte-identical
afterwards. Where `sheetgen build` does not exist, the cases run through `sheetgen check` instead.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sheetgen.cli import COMMANDS, main
from tests.bad_inputs import CASES, ROOT, BadInput, shipped_text

BUILD = "build" in COMMANDS
pytestmark = [pytest.mark.slow] if BUILD else []
# `path:line[:col] [entry id] what is wrong — how to fix`; the id is absent only where no entry is involved.
MESSAGE = re.compile(r"^(?P<path>.+?):(?P<line>\d+)(?::(?P<col>\d+))? (?:\[(?P<id>[^\]]+)\] )?(?P<what>.+) — .+$")


@dataclass(frozen=True)
class Outputs:
    build_dir: Path
    site_dir: Path
    hashes: dict[str, str]


def tree_hashes(*folders: Path) -> dict[str, str]:
    """sha256 of every file under `folders`, by path (caches included: a failed build must not touch them)."""
    return {str(path): hashlib.sha256(path.read_bytes()).hexdigest()
            for folder in folders for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outputs | None]:
    """One good build of the shipped sheet, hashed; None where only `check` exists."""
    if not BUILD:
        yield None
        return
    root = tmp_path_factory.mktemp("good-build")
    build_dir, site_dir = root / "build", root / "site"
    if (ROOT / "build" / ".cache").is_dir():  # a warm cache: seconds instead of a cold build's 15
        shutil.copytree(ROOT / "build" / ".cache", build_dir / ".cache")
    code = main(["build", "-f", str(ROOT / "formulas.yaml"), "--build-dir", str(build_dir),
                 "--site-dir", str(site_dir), "-c", str(ROOT / "mkdocs.yml")])
    assert code == 0, "the shipped formulas.yaml does not build"
    hashes = tree_hashes(build_dir, site_dir)
    assert any(name.endswith("cheatsheet.pdf") for name in hashes) and any("/site/" in name for name in hashes)
    yield Outputs(build_dir, site_dir, hashes)


def test_every_case_is_distinct() -> None:
    assert len({case.wrote for case in CASES}) == len(CASES) >= 35


@pytest.mark.parametrize("case", CASES, ids=[re.sub(r"\W+", "-", c.wrote).strip("-")[:60] for c in CASES])
def test_bad_input(case: BadInput, outputs: Outputs | None, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    shipped = shipped_text()
    executed = tmp_path / "executed"  # what the `!!python/object/apply:os.system` case would create
    bad = tmp_path / "formulas.yaml"
    bad.write_text(case.apply(shipped, executed), encoding="utf-8")
    capsys.readouterr()
    if outputs is not None:
        code = main(["build", "-f", str(bad), "--build-dir", str(outputs.build_dir),
                     "--site-dir", str(outputs.site_dir), "-c", str(ROOT / "mkdocs.yml")])
    else:
        code = main(["check", "-f", str(bad)])
    captured = capsys.readouterr()
    err = captured.err
    assert code == 1, f"exit {code}; stderr: {err}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one message, got:\n{err}"
    match = MESSAGE.match(lines[0])
    assert match, f"not `path:line[:col] [id] problem — fix`: {lines[0]}"
    assert match["path"] == str(bad)
    assert (int(match["line"]), match["id"]) == (case.expected_line(shipped), case.entry_id), lines[0]
    assert case.needle in lines[0]
    assert not executed.exists(), "a YAML tag was executed"
    if outputs is not None:
        assert tree_hashes(outputs.build_dir, outputs.site_dir) == outputs.hashes, "a failed build changed outputs"
