"""Live preview (`sheetgen serve`, `mkdocs serve`): pages first, PDFs and notebooks in the background.

On save, the check and the pages take a few seconds; the PDFs and executed notebooks take many more.
So a rebuild under serve verifies, renders the pages with the previous build's PDFs and notebooks, and
hands the new text to two background workers: child processes (`python -m sheetgen.preview ROLE`) at
a lower CPU priority, so that their WeasyPrint layouts neither hold the serving process's GIL nor take
the core the page build needs. The `pdf` worker makes the core PDF of every save and publishes it to
build/ with the module and the deck; the `rest` worker makes the figures, the notebooks, the full
edition and the preview, drops an older save's work between steps, and publishes the notebooks and
PDFs. Each publishes only after the check passed, and the previous files stay until their new
versions are complete (`Publication`, under the build lock). When the `rest` outputs are ready the
preview touches a trigger file that `serve` watches; the rebuild that follows shows them. A problem
found in the background (a sheet that no longer fits its pages, a failing notebook) is shown in the
browser like any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from .errors import SheetError
from .katex import KatexRenderer
from .model import EDITIONS, Sheet
from .outputs import source_date_epoch
from .pipeline import (
    DECK_PATH,
    PDF_PATHS,
    PREVIEW_DPI,
    Generated,
    SiteOptions,
    SlowOutputs,
    build_pages,
    build_slow,
)
from .publish import BuildLock, Publication
from .render.anki import render_deck
from .render.code import render_module
from .verify import verify

__all__ = ["LivePreview"]

TRIGGER = Path(".cache") / "serve-ready"
"""Under the build dir: touched when background outputs are ready; `serve` watches it."""


@dataclass(frozen=True)
class _Job:
    text: str
    key: str
    sheet: Sheet
    """`text` as the server loaded it: sent along (pickled in ~5 ms) so that a worker does not parse the
    YAML again (~0.45 s, pure-Python ruamel) before the core PDF."""


ROLES = {"pdf": 5, "rest": 15}
"""The two workers and how much lower their CPU priority is than the server's (os.nice): `pdf` makes the
core PDF (and the module and deck) of every save, `rest` the figures, notebooks, full PDF and preview,
dropping an older save's between steps. Two, so the core PDF never waits behind a notebook run."""


class _Check:
    """`verify` in a thread, so that the pages are made meanwhile; `result()` joins it (raising its error)."""

    def __init__(self, sheet: Sheet, text: str, renderer: KatexRenderer, cache_dir: Path, module: str) -> None:
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(sheet, text, renderer, cache_dir, module),
                                        name="sheetgen-check", daemon=True)
        self._thread.start()

    def _run(self, sheet: Sheet, text: str, renderer: KatexRenderer, cache_dir: Path, module: str) -> None:
        try:
            verify(sheet, text, renderer=renderer, cache_dir=cache_dir, module_source=module)
        except BaseException as err:  # raised in the caller's thread by result()
            self._error = err

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class LivePreview:
    def __init__(self, build_dir: Path, options: SiteOptions, say: Callable[[str], None]) -> None:
        self.build_dir = build_dir
        self.options = options
        self.say = say
        self._state = threading.Condition()
        self._ready: dict[str, SlowOutputs] = {}
        self._last: SlowOutputs | None = None
        self._workers: dict[str, subprocess.Popen[bytes]] = {}
        self._listeners: list[threading.Thread] = []
        self._check_renderer: KatexRenderer | None = None
        self._sending = threading.Lock()
        self._sent: dict[str, str] = {}
        """Role → key of the newest job handed to that worker and not finished yet."""
        self._failed: str | None = None
        """Key of the text whose background build failed (not tried again until the text changes)."""
        self.background_error: str | None = None
        """A problem the background work found for the current text (shown in the browser)."""
        self.background_runs = 0
        self.pdf_published = 0
        """Core PDFs (with module and deck) the `pdf` worker published."""

    @property
    def trigger(self) -> Path:
        return self.build_dir / TRIGGER

    def outputs(self, sheet: Sheet, text: str, renderer: KatexRenderer) -> Generated:
        """This rebuild's pages, with the newest PDFs and notebooks that are ready. The check runs while
        the pages are made (its doctests run in a child process), and they are returned only if it passed."""
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._state:
            slow = self._ready.get(key)
            first = self._last is None
        if slow is None and not first:
            # Before the check: the workers start at once, and publish only what passed it.
            self._start(_Job(text, key, sheet))
        module = render_module(sheet)
        if self._check_renderer is None:  # the check's own: a renderer is not shared across threads
            self._check_renderer = KatexRenderer(self.build_dir / ".cache" / "katex.json")
        check = _Check(sheet, text, self._check_renderer, self.build_dir / ".cache", module)
        try:
            if slow is None and first:  # nothing to show yet: the first build waits for everything
                check.result()
                self._start(_Job(text, key, sheet))
                self.wait(timeout=None)
                with self._state:
                    slow = self._ready.get(key)
                    if slow is None:
                        problem = self.background_error or "the background build failed"
                        raise SheetError.single(sheet.source_path, 0, problem,
                                                "fix the problem above; the preview starts once the sheet builds")
            with self._state:
                if slow is None:
                    slow = self._last
                else:
                    self._last = slow
                    self.background_error = None
            assert slow is not None
            pages = build_pages(sheet, module, slow, build_dir=self.build_dir, renderer=renderer,
                                options=self.options)
        finally:
            check.result()
        return pages

    def wait(self, timeout: float | None = 60.0) -> None:
        """Block until the background work is done (tests and the benchmark)."""
        with self._state:
            self._state.wait_for(lambda: not self._sent, timeout=timeout)

    def close(self) -> None:
        """Stop the workers (they also stop by themselves when this process ends: their input closes)."""
        with self._state:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            if worker.stdin is not None:
                worker.stdin.close()
        for worker in workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        with self._state:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:  # each closes its worker's output at the end of it
            listener.join(timeout=10)

    def _start(self, job: _Job) -> None:
        for role in ROLES:
            with self._state:
                if job.key in (self._sent.get(role), self._failed):
                    continue
                worker = self._workers.get(role)
                if worker is None or worker.poll() is not None:
                    worker = self._workers[role] = self._spawn(role)
                self._sent[role] = job.key
            assert worker.stdin is not None
            try:
                with self._sending:
                    _send(worker.stdin, (job, str(self.build_dir), self.options))
            except OSError as err:
                with self._state:
                    self._sent.pop(role, None)
                    self.background_error = f"sheetgen: the background worker stopped: {err}"
                    self._state.notify_all()
                self.say(self.background_error)

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen([sys.executable, "-m", "sheetgen.preview", role], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        listener = threading.Thread(target=self._listen, args=(role, worker), name=f"sheetgen-preview-{role}",
                                    daemon=True)
        listener.start()
        with self._state:
            self._listeners = [t for t in self._listeners if t.is_alive()] + [listener]
        return worker

    def _listen(self, role: str, worker: subprocess.Popen[bytes]) -> None:
        """What a worker reports, until it ends."""
        assert worker.stdout is not None
        with worker.stdout:  # closed here, by its only reader, once the worker has ended
            self._listen_to(role, worker.stdout)

    def _listen_to(self, role: str, reports: IO[bytes]) -> None:
        while True:
            try:
                kind, key, value = _recv(reports)
            except (EOFError, OSError, pickle.UnpicklingError):
                with self._state:
                    if self._sent.pop(role, None) is not None:
                        self.background_error = "sheetgen: the background worker stopped"
                    self._state.notify_all()
                return
            with self._state:
                if kind == "done" and value is None:  # the pdf worker: build/ has the new core PDF
                    self.pdf_published += 1
                elif kind == "done":
                    self._ready = {key: value}
                    self.background_error = None
                    self.background_runs += 1
                elif kind == "error":
                    self.background_error = value
                    self._failed = key
                if self._sent.get(role) == key:
                    del self._sent[role]
                self._state.notify_all()
            if kind == "error":
                self.say(value)
            if kind == "error" or (kind == "done" and value is not None):
                self._touch()

    def _touch(self) -> None:
        self.trigger.parent.mkdir(parents=True, exist_ok=True)
        self.trigger.write_text(str(self.background_runs), encoding="utf-8")


# --- the worker (a child process) ----------------------------------------------------------------


def _send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _recv(stream: IO[bytes]) -> Any:
    size = struct.unpack("<Q", _read_exactly(stream, 8))[0]
    return pickle.loads(_read_exactly(stream, size))


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks: list[bytes] = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class _Superseded(Exception):
    """A newer job arrived: the rest of this one is not needed."""


class _Worker:
    def __init__(self, role: str, jobs: IO[bytes], reports: IO[bytes]) -> None:
        self.role = role
        self.reports = reports
        self.renderers: dict[str, KatexRenderer] = {}
        self._latest: Any = None
        self._ended = False
        self._jobs = threading.Condition()
        # Jobs are read as they arrive, so the server never waits on a full pipe; only the newest counts.
        threading.Thread(target=self._read, args=(jobs,), name="sheetgen-preview-jobs", daemon=True).start()

    def _read(self, jobs: IO[bytes]) -> None:
        while True:
            try:
                message = _recv(jobs)
            except (EOFError, OSError):
                with self._jobs:
                    self._ended = True
                    self._jobs.notify_all()
                return
            with self._jobs:
                self._latest = message
                self._jobs.notify_all()

    def run(self) -> None:
        while True:
            with self._jobs:
                self._jobs.wait_for(lambda: self._latest is not None or self._ended)
                if self._latest is None:
                    return
                (job, build_dir, options), self._latest = self._latest, None
            try:
                slow = self.make(job, Path(build_dir), options)
                _send(self.reports, ("done", job.key, slow))
            except _Superseded:
                _send(self.reports, ("superseded", job.key, None))
            except SheetError as err:
                _send(self.reports, ("error", job.key, str(err)))
            except Exception as err:  # a bug must not stop the preview silently
                _send(self.reports, ("error", job.key,
                                     f"sheetgen: background build failed: {type(err).__name__}: {err}"))

    def step(self) -> None:
        """Between steps: stop here when a newer job is waiting."""
        with self._jobs:
            if self._latest is not None or self._ended:
                raise _Superseded

    def make(self, job: _Job, build_dir: Path, options: SiteOptions) -> SlowOutputs | None:
        from .build import build_pdf, pdf_preview

        started = time.perf_counter()

        def say(message: str) -> None:
            print(f"sheetgen: background: {message} ({time.perf_counter() - started:.2f} s)", file=sys.stderr,
                  flush=True)

        cache_dir = build_dir / ".cache"
        renderer = self.renderers.setdefault(str(cache_dir), KatexRenderer(cache_dir / "katex.json"))
        sheet = job.sheet
        module = render_module(sheet)
        pdfs = {}
        files: dict[Path, str | bytes] = {}
        if self.role == "pdf":
            if options.pdf:
                pdfs["core"] = build_pdf(job.text, sheet.source_path, renderer=renderer, cache_dir=cache_dir,
                                         sheet=sheet, edition="core")
            files = {build_dir / "formulas.py": module, build_dir / Path(DECK_PATH).name:
                     render_deck(sheet, timestamp=source_date_epoch())}
        else:
            self.step()
            rest = build_slow(sheet, job.text, build_dir=build_dir, renderer=renderer,
                              options=replace(options, pdf=False), module=module)
            files = {build_dir / path: text for path, text in rest.notebooks.items()}
            if options.pdf:
                for edition in EDITIONS:  # the core one is usually in the cache by now
                    self.step()
                    pdfs[edition] = build_pdf(job.text, sheet.source_path, renderer=renderer, cache_dir=cache_dir,
                                              sheet=sheet, edition=edition)
        files.update({build_dir / Path(PDF_PATHS[edition]).name: pdf.pdf for edition, pdf in pdfs.items()})
        # Checked before anything is published (the server's own check has usually passed and is cached).
        verify(sheet, job.text, renderer=renderer, cache_dir=cache_dir, module_source=module)
        _publish(build_dir, files)
        if self.role == "pdf":
            say("module, deck" + (" and core PDF" if pdfs else "") + " published")
            return None
        preview = pdf_preview(pdfs["core"], cache_dir, dpi=PREVIEW_DPI) if "core" in pdfs else None
        say(f"figures, notebooks ({rest.executed} executed)" + (" and PDFs" if pdfs else "") + " ready")
        return replace(rest, pdfs=pdfs, preview=preview)


def _publish(build_dir: Path, files: dict[Path, str | bytes]) -> None:
    with BuildLock(build_dir, wait=True):
        publication = Publication(build_dir)
        try:
            for path, content in files.items():
                publication.add_file(path, content)
            publication.commit()
        except BaseException:
            publication.discard()
            raise


def _worker_main() -> None:
    with contextlib.suppress(OSError):
        os.nice(ROLES[sys.argv[1]])
    # The reports get their own descriptor; whatever this process or its children print goes to the
    # server's log (stderr), never into the reports.
    reports = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    jobs = os.fdopen(sys.stdin.fileno(), "rb", buffering=0)
    _Worker(sys.argv[1], jobs, reports).run()


if __name__ == "__main__":
    _worker_main()
