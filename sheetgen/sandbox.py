"""Run code from formulas.yaml in a child process with limits, and get plain data back.

`implementation` and `examples` are code, and building a sheet runs them. This does not make
untrusted YAML safe (the child runs as the same user and can read what the user can read), but it
bounds what a mistake or a hostile example can do to the build:

- CPU time (RLIMIT_CPU), address space (RLIMIT_AS: what the child inherited plus a budget), file
  size (RLIMIT_FSIZE), no core dumps, and a cap on new processes (RLIMIT_NPROC, where counted);
- a wall-clock limit per step (e.g. per formula) and for the whole run; the child's whole process
  group is killed at the end, whatever it started;
- a fresh temporary working directory (HOME and TMPDIR point there), removed afterwards;
- a scrubbed environment (PATH, LANG and the temporary HOME only), stdin from /dev/null, its own
  session (no terminal signals), stdout/stderr to a file whose tail is kept for the report.

The child is forked by default: it inherits the imported NumPy, so starting it costs milliseconds.
The target runs in the child and returns picklable plain data; `Outcome` says what happened.
Generic on purpose: doctests use it now, and figure rendering can reuse it.
"""

from __future__ import annotations

import contextlib
import gc
import io
import multiprocessing
import os
import pickle
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Child",
    "Limits",
    "Outcome",
    "clip",
    "limited_command",
    "pid_alive",
    "run",
    "scrubbed_env",
    "working_folder",
]

_PREFIX = "sheetgen-sandbox-"


@dataclass(frozen=True)
class Limits:
    step_seconds: float = 10.0
    """Wall clock for one step (the target calls `child.step()` at the start of each)."""
    total_seconds: float = 120.0
    """Wall clock for the whole run."""
    cpu_seconds: int = 120
    """CPU time of the child (RLIMIT_CPU); past it the kernel stops it with SIGXCPU."""
    memory_bytes: int = 1 << 30
    """Address space the child may add to what it inherited (RLIMIT_AS)."""
    file_bytes: int = 64 << 20
    """Largest file the child may write (RLIMIT_FSIZE)."""
    processes: int = 64
    """New processes or threads the child may start (RLIMIT_NPROC, over all of the user's; not for root)."""


class Child:
    """The target's handle on its parent: where it is, so a death or a timeout can be located."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def step(self, label: object, seconds: float | None = None) -> None:
        """A new step begins: the per-step clock restarts (with `seconds` instead of the usual limit)."""
        self._conn.send(("step", (label, seconds)))

    def note(self, label: object) -> None:
        """Where inside the step the child is now (e.g. which example)."""
        self._conn.send(("note", label))


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    """What the target returned (when `failure` is None)."""
    failure: Literal["timeout", "died", "raised"] | None = None
    message: str = ""
    """For a failure: what happened, in words ("ran longer than 10 s", "ended with exit code 0 …")."""
    step: object = None
    """The last step the child announced, and the last note within it."""
    note: object = None
    seconds: float = 0.0


def clip(text: str, limit: int = 200) -> str:
    """`text` cut to about `limit` characters, saying how long it was: messages stay one short line."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,} chars)"


class _PlainUnpickler(pickle.Unpickler):
    """Reads what the child sends: the child runs YAML code, so its bytes are not trusted. Builtin
    containers and scalars, plus the classes the caller names, and nothing else (no callables)."""

    def __init__(self, data: bytes, allowed: frozenset[tuple[str, str]]) -> None:
        super().__init__(io.BytesIO(data))
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed or (module == "builtins" and name in _PLAIN_BUILTINS):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not an allowed result type")


_PLAIN_BUILTINS = frozenset({"set", "frozenset", "complex"})
_MAX_MESSAGE = 64 << 20


def run(target: Callable[..., Any], *args: Any, limits: Limits = Limits(),
        context: Literal["fork", "spawn", "forkserver"] | None = None,
        result_types: Iterable[type] = ()) -> Outcome:
    """Call `target(child, *args)` in a limited child process and return what happened.

    With the (default) fork context nothing is pickled on the way in; with spawn, `target` must be
    importable and `args` picklable. The result travels back pickled and is read with an unpickler
    that accepts plain values (str, numbers, None, lists, tuples, dicts, sets) and instances of
    `result_types` (plain dataclasses) only: a child cannot make the parent call anything.
    """
    allowed = frozenset((t.__module__, t.__qualname__) for t in result_types)
    method = context or ("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    ctx: Any = multiprocessing.get_context(method)
    receive, send = ctx.Pipe(duplex=False)
    workdir = working_folder()
    started = time.monotonic()
    step: object = None
    note: object = None
    try:
        process = ctx.Process(target=_child_main, args=(send, target, args, limits, workdir), daemon=True)
        gc.freeze()  # the child's collector leaves the parent's objects alone: fewer copy-on-write pages
        try:
            process.start()
        except OSError as err:  # no process to be had (EAGAIN, ENOMEM): say so, like any failure
            receive.close()
            return Outcome(failure="died", message=f"the process could not start ({err.strerror or err})")
        finally:
            gc.unfreeze()
            send.close()
        try:
            step_started, step_limit = started, limits.step_seconds
            while True:
                deadline = min(step_started + step_limit, started + limits.total_seconds)
                if not receive.poll(max(0.0, deadline - time.monotonic())):
                    whole = time.monotonic() - started >= limits.total_seconds
                    limit = limits.total_seconds if whole else step_limit
                    return Outcome(failure="timeout", message=f"ran longer than {limit:g} s", step=step,
                                   note=note, seconds=time.monotonic() - started)
                try:
                    data = receive.recv_bytes(_MAX_MESSAGE)
                except (EOFError, OSError):
                    break  # the child is gone without a result (or sent more than we read)
                try:
                    kind, value = _PlainUnpickler(data, allowed).load()
                    if kind == "step":
                        label, seconds = value
                        seconds = limits.step_seconds if seconds is None else float(seconds)
                except Exception as err:  # anything a garbled or hostile message raises
                    return Outcome(failure="raised", message=f"it sent back something unreadable ({clip(str(err))})",
                                   step=step, note=note, seconds=time.monotonic() - started)
                if kind == "step":
                    step, note, step_started, step_limit = label, None, time.monotonic(), seconds
                elif kind == "note":
                    note = value
                elif kind == "done":
                    return Outcome(value=value, step=step, note=note, seconds=time.monotonic() - started)
                else:
                    return Outcome(failure="raised", message=str(value), step=step, note=note,
                                   seconds=time.monotonic() - started)
            process.join(5)
            return Outcome(failure="died", message=_death(process.exitcode, workdir), step=step, note=note,
                           seconds=time.monotonic() - started)
        finally:
            _kill_group(process)
            receive.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def scrubbed_env(home: str) -> dict[str, str]:
    """The whole environment YAML code gets: no tokens or credentials of the user's shell."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home, "TMPDIR": home}


# Runs before the command it wraps (no import of sheetgen: kernels start fast): lower the limits,
# then exec the command, which keeps them. Arguments: cpu seconds, address space bytes, file bytes, "--", argv.
_WRAPPER = """\
import os, resource, signal, sys
cpu, memory, size = (int(v) for v in sys.argv[1:4])
for which, soft, hard in ((resource.RLIMIT_CPU, cpu, cpu + 2), (resource.RLIMIT_AS, memory, memory),
                          (resource.RLIMIT_FSIZE, size, size), (resource.RLIMIT_CORE, 0, 0)):
    current = resource.getrlimit(which)[1]
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(which, (soft, hard))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
os.execvp(sys.argv[5], sys.argv[5:])
"""


def limited_command(argv: list[str], limits: Limits, baseline_bytes: int = 1 << 30) -> list[str]:
    """`argv` run under the CPU, file-size and memory limits of `limits`, for a process started from
    scratch (e.g. a Jupyter kernel): its address space may be `baseline_bytes` (the interpreter, its
    threads and imports) plus `limits.memory_bytes`."""
    return [sys.executable, "-I", "-c", _WRAPPER, str(limits.cpu_seconds),
            str(baseline_bytes + limits.memory_bytes), str(limits.file_bytes), "--", *argv]


def _death(exitcode: int | None, workdir: str) -> str:
    if exitcode is None:
        how = "stopped answering"
    elif exitcode < 0:
        number = -exitcode
        name = signal.Signals(number).name if number in signal.valid_signals() else str(number)
        how = {"SIGXCPU": "used up its CPU time", "SIGKILL": "was killed (SIGKILL; out of memory?)",
               "SIGXFSZ": "wrote a file over the size limit"}.get(name, f"was killed by {name}")
    else:
        how = f"ended with exit code {exitcode}"
    tail = ""
    with contextlib.suppress(OSError):
        lines = Path(workdir, ".output").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        tail = f"; its last output: {clip(lines[-1], 120)}" if lines else ""
    return f"the process {how} before it reported back{tail}"


def _kill_group(process: Any) -> None:
    """Kill the child and everything it started (it leads its own process group)."""
    if process.pid is None:
        return  # never started
    with contextlib.suppress(OSError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(OSError, ValueError, AttributeError):
        process.kill()
    process.join(5)
    with contextlib.suppress(ValueError):
        process.close()


SOCKET_PATH_ROOM = 100
"""Unix socket paths (a kernel's ipc transport) must stay under 108 bytes on Linux."""


def working_folder(prefix: str = _PREFIX, *, sockets: bool = False) -> str:
    """A new temporary folder named after this process (`<prefix><pid>-…`), so that a later run can
    tell it was left behind by a killed process; folders of dead processes are removed first.

    `sockets`: the folder will hold Unix sockets; when the usual temporary folder (e.g. a build's
    `build/.cache/tmp/<pid>`) is too deep for a socket path, the system's /tmp is used instead."""
    root = tempfile.gettempdir()
    if sockets and len(root) + len(prefix) + 32 > SOCKET_PATH_ROOM and os.path.isdir("/tmp"):
        root = "/tmp"
    _remove_stale_folders(prefix, root)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root)


def _remove_stale_folders(prefix: str = _PREFIX, root: str | None = None) -> None:
    """Working folders of runs whose process was killed: nobody else will remove them."""
    with contextlib.suppress(OSError):
        for folder in Path(root or tempfile.gettempdir()).glob(f"{prefix}*-*"):
            pid = folder.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours, or one we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _user_tasks() -> int:
    """Processes *and threads* of this user: what RLIMIT_NPROC counts on Linux."""
    uid = os.getuid()
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if entry.stat().st_uid == uid:
                        count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def _address_space() -> int:
    """Bytes of address space this process has mapped now (Linux; 0 where unknown)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _max_fd() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft if soft != resource.RLIM_INFINITY and soft < 1 << 20 else 1 << 16


def _limit(which: int, soft: int, hard: int | None = None) -> None:
    """Lower a resource limit (never above an existing hard limit)."""
    _, current = resource.getrlimit(which)
    hard = soft if hard is None else hard
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(which, (soft, hard))


def _confine(limits: Limits, workdir: str, keep_fd: int) -> None:
    """Everything the child does before it runs YAML code."""
    os.setsid()  # own session and process group: no terminal Ctrl-C, and the parent can kill the group
    # No descriptor of the parent's but the pipe back: not the build's lock, not a server's sockets.
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, _max_fd())
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update(scrubbed_env(workdir))
    tempfile.tempdir = workdir
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    output = os.open(os.path.join(workdir, ".output"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the child
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a too-large write raises OSError instead of killing
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_FSIZE, limits.file_bytes)
    _limit(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + 2)  # SIGXCPU first, SIGKILL later
    if os.getuid() != 0:  # root ignores RLIMIT_NPROC; counting costs a /proc scan
        _limit(resource.RLIMIT_NPROC, _user_tasks() + limits.processes)
    _limit(resource.RLIMIT_AS, _address_space() + limits.memory_bytes)


def _child_main(conn: Connection, target: Callable[..., Any], args: tuple[Any, ...], limits: Limits,
                workdir: str) -> None:
    try:
        _confine(limits, workdir, conn.fileno())
        value = target(Child(conn), *args)
        try:
            conn.send(("done", value))
        except Exception as err:  # e.g. the value does not pickle: report, don't die
            conn.send(("raised", f"its result could not be sent back ({type(err).__name__}: {clip(str(err))})"))
    except BaseException as err:  # anything the target let through, KeyboardInterrupt included
        with contextlib.suppress(BaseException):
            conn.send(("raised", f"{type(err).__name__}: {clip(str(err))}"))
    finally:
        with contextlib.suppress(BaseException):
            conn.close()
        os._exit(0)
