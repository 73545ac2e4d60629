"""Live preview (`sheetgen serve`, `mkdocs serve`): pages first, PDFs and notebooks in the background.

On save, the check and the pages take well under a second; the PDFs and executed notebooks take a few
more. So a rebuild under serve verifies, renders the pages with the previous build's PDFs and notebooks,
and starts a background thread for the new ones. When they are ready the thread publishes them to
build/ (module, PDFs, notebooks, under the build lock) and touches a trigger file that `serve`
watches; the rebuild that follows picks them up. A problem found in the background (a sheet that no
longer fits its pages, a failing notebook) is shown in the browser like any other.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import SheetError
from .katex import KatexRenderer
from .model import Sheet
from .pipeline import DECK_PATH, PDF_PATHS, Generated, SiteOptions, SlowOutputs, build_pages, build_slow
from .publish import BuildLock, Publication
from .render.anki import render_deck
from .render.code import render_module
from .verify import verify

__all__ = ["LivePreview"]

TRIGGER = Path(".cache") / "serve-ready"
"""Under the build dir: touched when background outputs are ready; `serve` watches it."""


@dataclass(frozen=True)
class _Job:
    sheet: Sheet
    text: str
    key: str


class LivePreview:
    def __init__(self, build_dir: Path, options: SiteOptions, say: Callable[[str], None]) -> None:
        self.build_dir = build_dir
        self.options = options
        self.say = say
        self._state = threading.Lock()
        self._ready: dict[str, SlowOutputs] = {}
        self._last: SlowOutputs | None = None
        self._thread: threading.Thread | None = None
        self._pending: _Job | None = None
        self.background_error: str | None = None
        """A problem the background work found for the current text (shown in the browser)."""
        self.background_runs = 0

    @property
    def trigger(self) -> Path:
        return self.build_dir / TRIGGER

    def outputs(self, sheet: Sheet, text: str, renderer: KatexRenderer) -> Generated:
        """This rebuild's pages: checked now, with the newest PDFs and notebooks that are ready."""
        module = render_module(sheet)
        verify(sheet, text, renderer=renderer, cache_dir=self.build_dir / ".cache", module_source=module)
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        with self._state:
            slow = self._ready.get(key)
            first = self._last is None
        if slow is None and first:  # nothing to show yet: the first build makes everything now
            slow = self._make_slow(_Job(sheet, text, key), renderer)
        if slow is None:
            self._start(_Job(sheet, text, key))
            with self._state:
                slow = self._last
        else:
            with self._state:
                self._last = slow
                if key in self._ready:
                    self.background_error = None
        assert slow is not None
        return build_pages(sheet, module, slow, build_dir=self.build_dir, renderer=renderer, options=self.options)

    def wait(self, timeout: float = 60.0) -> None:
        """Block until the background work is done (tests and the benchmark)."""
        while True:
            with self._state:
                thread = self._thread
            if thread is None or not thread.is_alive():
                return
            thread.join(timeout)

    def _start(self, job: _Job) -> None:
        with self._state:
            if self._thread is not None and self._thread.is_alive():
                self._pending = job  # the running one finishes; the newest edit runs next
                return
            self._thread = threading.Thread(target=self._run, args=(job,), name="sheetgen-preview", daemon=True)
            self._thread.start()

    def _run(self, job: _Job | None) -> None:
        while job is not None:
            renderer = KatexRenderer(self.build_dir / ".cache" / "katex.json")  # not shared across threads
            try:
                self._make_slow(job, renderer)
                with self._state:
                    self.background_error = None
            except SheetError as err:
                with self._state:
                    self.background_error = str(err)
                self.say(str(err))
            except Exception as err:  # a bug must not kill the preview silently
                with self._state:
                    self.background_error = f"sheetgen: background build failed: {type(err).__name__}: {err}"
                self.say(self.background_error)
            self._touch()
            with self._state:
                job, self._pending = self._pending, None

    def _make_slow(self, job: _Job, renderer: KatexRenderer) -> SlowOutputs:
        slow = build_slow(job.sheet, job.text, build_dir=self.build_dir, renderer=renderer, options=self.options)
        with BuildLock(self.build_dir, wait=True):
            publication = Publication(self.build_dir)
            try:
                publication.add_file(self.build_dir / "formulas.py", render_module(job.sheet))
                publication.add_file(self.build_dir / Path(DECK_PATH).name, render_deck(job.sheet))
                for edition, pdf in slow.pdfs.items():
                    publication.add_file(self.build_dir / Path(PDF_PATHS[edition]).name, pdf.pdf)
                for path, notebook in slow.notebooks.items():
                    publication.add_file(self.build_dir / path, notebook)
                publication.commit()
            except BaseException:
                publication.discard()
                raise
        with self._state:
            self._ready = {job.key: slow}
            self.background_runs += 1
        return slow

    def _touch(self) -> None:
        self.trigger.parent.mkdir(parents=True, exist_ok=True)
        self.trigger.write_text(str(self.background_runs), encoding="utf-8")
