"""The command line: exit codes, help for every command, and the README documents each one."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sheetgen.cli import COMMANDS, build_parser, main
from tests.conftest import ROOT


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    for name, (handler, _) in COMMANDS.items():
        assert handler.__doc__, f"sheetgen {name} has no help text"
        assert f"sheetgen {name}" in readme, f"README does not document `sheetgen {name}`"
        with pytest.raises(SystemExit) as exited:
            parser.parse_args([name, "--help"])
        assert exited.value.code == 0


def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["no-such-command"])
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_console_entry_point_runs_without_traceback(tmp_path: pytest.TempPathFactory) -> None:
    bad = ROOT / "tests" / "golden" / "does-not-exist.yaml"
    run = subprocess.run([sys.executable, "-m", "sheetgen", "check", "-f", str(bad)],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "cannot read the file" in run.stderr
