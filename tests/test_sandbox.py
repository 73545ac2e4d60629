"""YAML code runs in a limited child process (issue 9 §1): sheetgen.sandbox and the doctests on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from sheetgen import sandbox
from sheetgen.doctests import run_doctests
from sheetgen.errors import SheetError
from sheetgen.loader import load_sheet
from sheetgen.model import Formula, Sheet
from tests.conftest import ROOT

FAST = sandbox.Limits(step_seconds=2.0, total_seconds=10.0, cpu_seconds=10)


def _where(child: sandbox.Child) -> dict[str, Any]:
    child.step("where")
    return {"cwd": os.getcwd(), "env": dict(os.environ), "stdin": sys.stdin.read(), "fd0": os.read(0, 10),
            "pgid": os.getpgid(0), "pid": os.getpid()}


def test_child_runs_in_a_temporary_folder_with_a_scrubbed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHEETGEN_TEST_SECRET", "hunter2")
    outcome = sandbox.run(_where, limits=FAST)
    assert outcome.failure is None, outcome.message
    seen = outcome.value
    assert seen["cwd"] != os.getcwd() and Path(seen["cwd"]).name.startswith("sheetgen-sandbox-")
    assert not Path(seen["cwd"]).exists(), "the working folder was not removed"
    assert set(seen["env"]) == {"PATH", "LANG", "HOME", "TMPDIR"}
    assert seen["env"]["HOME"] == seen["cwd"] and "hunter2" not in str(seen["env"])
    assert seen["stdin"] == "" and seen["fd0"] == b""  # stdin is /dev/null
    assert seen["pgid"] == seen["pid"] != os.getpgid(0)  # its own process group: killed as a whole


def _can_write(child: sandbox.Child, fd: int) -> str:
    try:
        os.write(fd, b"from the child\n")
    except OSError as err:
        return type(err).__name__
    return "wrote"


def test_the_child_gets_none_of_the_parents_descriptors(tmp_path: Path) -> None:
    target = tmp_path / "parent-file"
    with target.open("wb") as handle:  # e.g. the build's lock file, or a server's socket
        outcome = sandbox.run(_can_write, handle.fileno(), limits=FAST)
    assert outcome.value == "OSError" and target.read_bytes() == b""


def _spin(child: sandbox.Child) -> None:
    child.step("spin")
    child.note("inside")
    while True:
        pass


def test_a_step_that_never_ends_is_stopped_and_located() -> None:
    started = time.monotonic()
    outcome = sandbox.run(_spin, limits=FAST)
    assert outcome.failure == "timeout" and outcome.message == "ran longer than 2 s"
    assert (outcome.step, outcome.note) == ("spin", "inside")
    assert time.monotonic() - started < 6


def _exit(child: sandbox.Child, code: int) -> None:
    child.step("exit")
    os._exit(code)


def test_a_child_that_exits_without_a_result_is_a_failure() -> None:
    outcome = sandbox.run(_exit, 0, limits=FAST)
    assert outcome.failure == "died" and "exit code 0" in outcome.message and outcome.step == "exit"


def _allocate(child: sandbox.Child, size: int) -> str:
    try:
        bytearray(size)
    except MemoryError:
        return "MemoryError"
    return "allocated"


def test_memory_is_limited_but_normal_work_fits() -> None:
    limits = sandbox.Limits(step_seconds=20)
    huge, fits = sandbox.run(_allocate, 10**11, limits=limits), sandbox.run(_allocate, 200 * 2**20, limits=limits)
    assert (huge.value, fits.value) == ("MemoryError", "allocated"), (huge, fits)


def _burn(child: sandbox.Child) -> None:
    child.step("burn")
    while True:
        pass


def test_cpu_time_is_limited() -> None:
    outcome = sandbox.run(_burn, limits=sandbox.Limits(step_seconds=30, total_seconds=30, cpu_seconds=1))
    assert outcome.failure == "died" and "CPU time" in outcome.message


def _big_file(child: sandbox.Child) -> str:
    try:
        Path("big").write_bytes(b"x" * (2 << 20))
    except OSError as err:
        return type(err).__name__
    return "written"


def test_file_size_is_limited() -> None:
    limits = sandbox.Limits(file_bytes=1 << 20)
    assert sandbox.run(_big_file, limits=limits).value == "OSError"


def _orphan(child: sandbox.Child, pid_file: str) -> None:
    process = subprocess.Popen(["sleep", "60"])
    Path(pid_file).write_text(str(process.pid))


def test_processes_the_child_started_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    assert sandbox.run(_orphan, str(pid_file), limits=FAST).failure is None
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("a process started by the child outlived it")


def test_working_folders_of_killed_runs_are_removed() -> None:
    stale = Path(tempfile.mkdtemp(prefix="sheetgen-sandbox-999999999-"))  # no such process
    sandbox.run(_where, limits=FAST)
    assert not stale.exists()


class _Hostile:
    """Unpickling it would run a command: the parent must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _send_hostile(child: sandbox.Child, marker: str) -> _Hostile:
    return _Hostile(marker)


def test_results_are_read_as_plain_data_only(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    outcome = sandbox.run(_send_hostile, str(marker), limits=FAST)
    assert outcome.failure == "raised" and "not an allowed result type" in outcome.message
    assert not marker.exists()


def _send_problem(child: sandbox.Child) -> list[Any]:
    from sheetgen.errors import Problem

    return [Problem("f.yaml", 3, "what", "fix"), {"a": (1, 2.5, None, "x")}, {1, 2}]


def test_allowed_result_types_come_back() -> None:
    from sheetgen.errors import Problem

    assert sandbox.run(_send_problem, limits=FAST).failure == "raised"  # Problem not allowed here
    outcome = sandbox.run(_send_problem, limits=FAST, result_types=[Problem])
    assert outcome.value == [Problem("f.yaml", 3, "what", "fix"), {"a": (1, 2.5, None, "x")}, {1, 2}]


def test_a_child_that_cannot_start_is_a_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    outcome = sandbox.run(_where, limits=FAST)
    assert outcome.failure == "died" and "could not start (Resource temporarily unavailable)" in outcome.message


def test_clip() -> None:
    assert sandbox.clip("x" * 300_000) == "x" * 200 + "… (300,000 chars)"
    assert sandbox.clip("short") == "short"


# --- the doctests in the sandbox --------------------------------------------------------------


@pytest.fixture(scope="module")
def small() -> Sheet:
    """The shipped sheet's first section only: fast, and its YAML lines are the shipped ones."""
    sheet = load_sheet(ROOT / "formulas.yaml")
    return sheet.model_copy(update={"sections": sheet.sections[:1]})


def _with(sheet: Sheet, **fields: str) -> tuple[Sheet, Formula]:
    section = sheet.sections[0]
    first = next(e for e in section.entries if isinstance(e, Formula))
    changed = first.model_copy(update=fields)
    entries = tuple(changed if e is first else e for e in section.entries)
    return sheet.model_copy(update={"sections": (section.model_copy(update={"entries": entries}),)}), changed


def _problem(sheet: Sheet, limits: sandbox.Limits = FAST) -> str:
    with pytest.raises(SheetError) as raised:
        run_doctests(sheet, limits=limits)
    assert len(raised.value.problems) == 1
    return str(raised.value.problems[0])


def test_shipped_section_passes(small: Sheet) -> None:
    report = run_doctests(small)
    assert report.formulas == len(small.formulas()) and report.examples > report.formulas


@pytest.mark.parametrize(("example", "needle"), [
    (">>> __import__('os')._exit(0)", "stopped at `__import__('os')._exit(0)`: the process ended with exit code 0"),
    (">>> raise KeyboardInterrupt", "doctest `raise KeyboardInterrupt` raised KeyboardInterrupt"),
    (">>> x = bytearray(10**11)", "raised MemoryError"),
    (">>> while True: pass", "ran longer than 2 s (at `while True: pass`)"),
    (">>> import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "was killed (SIGKILL"),
])
def test_misbehaving_example_is_one_located_problem(small: Sheet, example: str, needle: str) -> None:
    sheet, formula = _with(small, examples=f">>> 1 + 1\n2\n{example}\n")
    message = _problem(sheet)
    line = sheet.line_of(formula.id, "examples") + 2
    assert message.startswith(f"{sheet.source_path}:{line} [{formula.id}] examples: "), message
    assert needle in message, message


def test_default_argument_that_raises_is_blamed_on_the_definition(small: Sheet) -> None:
    first = small.formulas()[0]
    code = first.implementation.replace(f"def {first.id}(a, b)", f"def {first.id}(a, b=np.nonexistent_attr)")
    assert code != first.implementation
    sheet, formula = _with(small, implementation=code)
    message = _problem(sheet)
    assert message.startswith(f"{sheet.source_path}:{sheet.line_of(formula.id, 'implementation')} [{formula.id}] "
                              "implementation: defining dot_product raised AttributeError"), message


def test_definition_that_ends_the_process_is_located(small: Sheet) -> None:
    first = small.formulas()[0]
    code = first.implementation.replace("(a, b)", "(a, b=__import__('os')._exit(3))")
    sheet, formula = _with(small, implementation=code)
    message = _problem(sheet)
    assert f"[{formula.id}] implementation: defining {formula.id}: the process ended with exit code 3" in message


def test_huge_output_is_clipped(small: Sheet) -> None:
    sheet, _ = _with(small, examples=">>> print('x' * 300_000)\nx\n")
    message = _problem(sheet)
    assert len(message) < 700 and "… (300,000 chars)" in message


def test_extra_checks_run_in_the_child_and_return_data(small: Sheet) -> None:
    report = run_doctests(small, checks=["tests.test_sandbox:module_facts"])
    assert report.extra["tests.test_sandbox:module_facts"] == {
        "functions": sorted(f.id for f in small.formulas()), "pid_differs": True}


def module_facts(sheet: Sheet, module: Any) -> dict[str, Any]:
    """An extra check for the test above: runs in the child, next to the imported module."""
    return {"functions": sorted(name for name in module.__all__ if name in {f.id for f in sheet.formulas()}),
            "pid_differs": os.getpid() != PARENT_PID}


PARENT_PID = os.getpid()


def test_doctest_overhead_is_small(small: Sheet) -> None:
    run_doctests(small)
    started = time.perf_counter()
    run_doctests(small)
    assert time.perf_counter() - started < 2.0  # measured ~0.05 s; generous for a loaded CI machine
