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


def test_every_yaml_key_and_plugin_option_is_in_the_readme() -> None:
    from sheetgen.mkdocs_plugin import SheetgenConfig
    from sheetgen.model import ENTRY_KINDS, PrintSettings, Section, Sheet, SheetInfo, Step

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for model in (Sheet, SheetInfo, PrintSettings, Section, Step, *ENTRY_KINDS.values()):
        for name, info in model.model_fields.items():
            key = info.alias or name
            assert f"`{key}`" in readme or f"{key}:" in readme, f"README does not document the YAML key {key!r}"
    for option in SheetgenConfig._schema:  # MkDocs keeps declared options in _schema
        assert f"`{option[0]}`" in readme, f"README does not document the plugin option {option[0]!r}"


def test_readme_command_reference_is_generated(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("COLUMNS", "100")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert script.readme_block(readme) == script.reference(), (
        "README.md's command reference is stale: run `.venv/bin/python scripts/cli_reference.py --write`")
