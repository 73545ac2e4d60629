"""Running the notebooks `render.notebooks` makes: one sandboxed kernel per build, outputs cached.

The cells are YAML code. They run in one Jupyter kernel for the whole build (kernel start-up costs
more than all the cells together), started under `KERNEL_LIMITS` with a scrubbed environment and a
temporary folder as cwd and HOME. Between notebooks the kernel's namespace and execution count are
reset, so each notebook sees only its own cells; a notebook that kills or hangs the kernel gets it
replaced before the next one. Each executed notebook is cached under a hash of its content, so an
unchanged notebook never runs again; its outputs are reduced to text (`text_only`) before anything
stores or publishes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nbformat
from nbformat import NotebookNode

from . import sandbox
from .errors import Problem, SheetError
from .model import Sheet
from .outputs import write_atomic
from .render.notebooks import KERNEL_NAME, dumps, loads

__all__ = [
    "KERNEL_LIMITS",
    "NOTEBOOK_SECONDS",
    "Executed",
    "cache_key",
    "execute_notebook",
    "execute_notebooks",
    "text_only",
]

_CACHE_FORMAT = "2"  # 2: outputs are text only (see text_only)
NOTEBOOK_SECONDS = 600.0
"""Wall clock for one whole notebook (each cell also has its own timeout)."""
KERNEL_LIMITS = sandbox.Limits(cpu_seconds=300, memory_bytes=1 << 30, file_bytes=64 << 20)
"""The kernel's limits; they hold for the whole build, as the notebooks share one kernel."""

# Run between two notebooks (not stored in history, so it takes no execution number): a new
# session empties the namespace and restarts the execution count at 1, and the cwd goes back.
_RESET_CODE = "get_ipython().reset(new_session=True)\nimport os as _os; _os.chdir({cwd!r}); del _os\n"


def cache_key(notebook: NotebookNode, kernel_name: str = KERNEL_NAME) -> str:
    """Hash of everything the outputs depend on: the cells, the kernel, Python and NumPy."""
    import numpy

    digest = hashlib.sha256()
    for part in (_CACHE_FORMAT, kernel_name, platform.python_version(), numpy.__version__,
                 dumps(notebook)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _node(data: dict[str, Any]) -> NotebookNode:
    return cast(NotebookNode, nbformat.from_dict(data))  # type: ignore[no-untyped-call]


_TEXT_OUTPUT_KEYS = {"stream": ("name", "text"), "error": ("ename", "evalue", "traceback")}


def text_only(notebook: NotebookNode) -> NotebookNode:
    """The notebook with every output reduced to plain text, in place.

    Examples are code from the YAML: a value's `_repr_html_`, `_repr_javascript_`, `_repr_svg_` or
    `_repr_markdown_` would otherwise reach the site as live markup (stored XSS). Rich results keep
    only their `text/plain` form (which nbconvert escapes); outputs without one, widgets and unknown
    output types are dropped; output metadata is dropped.
    """
    for cell in notebook.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            if kind in _TEXT_OUTPUT_KEYS:
                fields = {key: output.get(key) for key in _TEXT_OUTPUT_KEYS[kind]}
                if all(isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
                       for v in fields.values()):
                    kept.append(_node({"output_type": kind, **fields}))
            elif kind in ("execute_result", "display_data"):
                text = output.get("data", {}).get("text/plain")
                if isinstance(text, list):
                    text = "".join(text)
                if not isinstance(text, str):
                    continue
                plain: dict[str, Any] = {"output_type": kind, "data": {"text/plain": text}, "metadata": {}}
                if kind == "execute_result":
                    plain["execution_count"] = output.get("execution_count")
                kept.append(_node(plain))
        cell["outputs"] = kept
    return notebook


@dataclass(frozen=True)
class Executed:
    notebook: NotebookNode
    cached: bool
    """True when the outputs came from the cache (no kernel was started)."""


def execute_notebook(notebook: NotebookNode, cache_dir: Path, *, timeout: int = 120,
                     kernel_name: str = KERNEL_NAME, sheet: Sheet | None = None, name: str = "notebook"
                     ) -> Executed:
    """Run every cell with nbclient, or take the outputs from `cache_dir/<content hash>.ipynb`.

    A failing cell raises `SheetError` at the formula's `examples` line when `sheet` is given.
    """
    return execute_notebooks({name: notebook}, cache_dir, timeout=timeout, kernel_name=kernel_name,
                             sheet=sheet)[name]


def execute_notebooks(notebooks: Mapping[str, NotebookNode], cache_dir: Path, *, timeout: int = 120,
                      kernel_name: str = KERNEL_NAME, sheet: Sheet | None = None) -> dict[str, Executed]:
    """`execute_notebook` for each: the cache misses run one after another in one kernel.

    Every notebook runs even when an earlier one failed, so one build reports all failing
    notebooks; then `SheetError` lists them and nothing is cached for the failed ones.
    """
    results: dict[str, Executed] = {}
    misses: dict[str, tuple[Path, NotebookNode]] = {}
    for name, notebook in notebooks.items():
        cached = cache_dir / f"{cache_key(notebook, kernel_name)}.ipynb"
        try:
            results[name] = Executed(text_only(loads(cached.read_text(encoding="utf-8"))), True)
            continue
        except (OSError, ValueError):
            pass  # not cached yet, or a damaged entry: execute again and overwrite
        misses[name] = (cached, loads(dumps(notebook)))
    if misses:
        errors = asyncio.run(_run_all({n: nb for n, (_, nb) in misses.items()}, timeout=timeout,
                                      kernel_name=kernel_name, sheet=sheet))
        if errors:
            raise SheetError(problem for error in errors for problem in error.problems)
        for name, (cached, executed) in misses.items():
            text_only(executed)
            write_atomic(cached, dumps(executed))
            results[name] = Executed(executed, cached=False)
    return {name: results[name] for name in notebooks}


class _Kernel:
    """One sandboxed kernel, started on first use and replaced after a notebook broke it."""

    def __init__(self, kernel_name: str, workdir: str) -> None:
        self.kernel_name = kernel_name
        self.workdir = workdir
        self.manager: Any = None
        self.used = False

    async def ready(self) -> Any:
        """The kernel manager of a live kernel with an empty namespace, cwd = the working folder."""
        from traitlets.config import Config

        if self.manager is not None and self.used:
            try:
                await self._reset()
            except Exception:  # a kernel that cannot be reset is replaced by a clean one
                await self.close()
        if self.manager is None:
            # IPC sockets instead of TCP: nothing listens on the network, and ipykernel does not
            # print its warning about unencrypted TCP.
            config = Config({"KernelManager": {"transport": "ipc", "ip": os.path.join(self.workdir, "kernel")}})
            manager = _limited_kernel_manager()(kernel_name=self.kernel_name, config=config)
            # The kernel gets the sandbox's limits, this temporary folder as cwd and HOME, and no
            # environment variables of ours (no tokens, no credentials). Its stdout/stderr go nowhere:
            # an interrupted kernel logs tracebacks, even after we exit.
            await manager.start_kernel(env=sandbox.scrubbed_env(self.workdir), cwd=self.workdir,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.manager = manager
            self.used = False
        self.used = True
        return self.manager

    async def _reset(self) -> None:
        client = self.manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=30)
            reply = await client.execute_interactive(_RESET_CODE.format(cwd=self.workdir), store_history=False,
                                                     timeout=30, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                raise RuntimeError("the kernel could not be reset")
        finally:
            client.stop_channels()

    async def close(self) -> None:
        manager, self.manager = self.manager, None
        if manager is not None:
            with contextlib.suppress(Exception):  # a dead kernel may fail to shut down; it is gone anyway
                await manager.shutdown_kernel(now=True)


async def _run_all(notebooks: Mapping[str, NotebookNode], *, timeout: int, kernel_name: str,
                   sheet: Sheet | None) -> list[SheetError]:
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    errors: list[SheetError] = []
    workdir = sandbox.working_folder("sheetgen-kernel-", sockets=True)  # a killed build's goes next time
    kernel = _Kernel(kernel_name, workdir)
    try:
        for name, notebook in notebooks.items():
            deadline = time.monotonic() + NOTEBOOK_SECONDS

            def cell_timeout(cell: Any, deadline: float = deadline) -> int:  # the notebook is bounded too
                return max(1, min(timeout, int(deadline - time.monotonic())))

            running: list[Any] = []  # the cell sent to the kernel last: where a dead kernel died

            def on_cell_execute(cell: Any, cell_index: int, running: list[Any] = running) -> None:
                running[:] = [cell]

            try:
                manager = await kernel.ready()
                client = NotebookClient(notebook, km=manager, timeout=timeout, kernel_name=kernel_name,
                                        record_timing=False, timeout_func=cell_timeout,
                                        on_cell_execute=on_cell_execute)
                try:
                    await client.async_execute()
                finally:
                    if client.kc is not None:
                        client.kc.stop_channels()
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
                if isinstance(err, CellTimeoutError) and time.monotonic() >= deadline - 1:
                    err = CellTimeoutError(f"the notebook ran longer than {NOTEBOOK_SECONDS:g} s")
                if not isinstance(err, CellExecutionError):  # still busy, or dead: the next gets a new one
                    await kernel.close()
                errors.append(_cell_error(notebook, err, sheet, name, running[0] if running else None))
            except (RuntimeError, TimeoutError, OSError) as err:  # the kernel did not start or answer
                await kernel.close()
                where = sheet.source_path if sheet is not None else name
                errors.append(SheetError([Problem(where, 0, f"notebook {name}: no kernel to run it "
                                                  f"({type(err).__name__}: {sandbox.clip(str(err), 120)})",
                                                  "run `make` to install the environment (ipykernel), then retry")]))
    finally:
        await kernel.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return errors


@functools.cache
def _limited_kernel_manager() -> type:
    """A kernel manager that starts the kernel under `KERNEL_LIMITS` (see `sandbox.limited_command`)."""
    from jupyter_client.manager import AsyncKernelManager

    class LimitedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
            return sandbox.limited_command(super().format_kernel_cmd(extra_arguments), KERNEL_LIMITS)

    return LimitedKernelManager


def _cell_error(notebook: NotebookNode, err: Exception, sheet: Sheet | None, name: str,
                running: Any) -> SheetError:
    """The failure located at the formula whose cell failed (its `examples` or `figure` line)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    failed: Any = None
    for cell in notebook.cells:
        if any(output.get("output_type") == "error" for output in cell.get("outputs", ())):
            failed = cell
    if failed is None:  # a timeout or a dead kernel: the cell that was running
        failed = running
    message = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    error = next((o for o in failed.outputs if o.get("output_type") == "error"), None) if failed is not None else None
    if isinstance(err, CellTimeoutError):  # the kernel was interrupted: its KeyboardInterrupt says nothing
        message = str(err).strip().splitlines()[0] if str(err).strip() else "a cell timed out"
    elif error is not None:
        message = str(error.get("ename", "Error")) + (f": {error['evalue']}" if error.get("evalue") else "")
    elif isinstance(err, DeadKernelError):
        message = "the kernel died (out of memory, CPU time, or the code ended it)"
    message = sandbox.clip(message)
    cell_id = str(failed.get("id", "")) if failed is not None else ""
    # `<id>-code` holds the examples, `<id>-figure` the figure code.
    entry_id, field = cell_id.rpartition("-")[0], "figure" if cell_id.endswith("-figure") else "examples"
    fix = "the doctests pass but the notebook cell failed; run `sheetgen notebooks` and open the notebook"
    if sheet is not None and entry_id and any(f.id == entry_id for f in sheet.formulas()):
        return SheetError([Problem(sheet.source_path, sheet.line_of(entry_id, field),
                                   f"notebook {name} failed: {message}", fix, None, entry_id, field)])
    return SheetError([Problem(name, 0, f"notebook failed: {message}", fix)])
