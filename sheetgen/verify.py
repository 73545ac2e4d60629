"""The whole check, run before anything is written or published, and cached by content.

Every command and hook that writes or publishes an output (`sheetgen build|pdf|site|code|notebooks|
serve`, and plain `mkdocs build|serve|gh-deploy` through the plugin) calls `verify` first:

- the YAML against the schema (done by the loader: a `Sheet` exists only if it passed),
- every piece of math typesets with the pinned KaTeX,
- every formula's doctests pass (in a child process with limits, see `sheetgen.doctests`),
- every printed formula agrees with its implementation (`sheetgen.printed`).

A passed check is remembered under the cache folder by a key of the YAML text, sheetgen's own code
and the versions the check depends on, so an unchanged sheet costs one hash; a failed check is never
remembered.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from .cache import FileCache
from .katex import KatexRenderer
from .model import Sheet

__all__ = ["Verified", "verify", "verify_key"]

FORMAT = 1
PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Verified:
    formulas: int
    doctests: int
    math: int
    printed_checked: int
    printed_total: int
    printed_skipped: tuple[tuple[str, str], ...]
    """(formula id, reason) of every printed formula the author opted out of checking."""
    printed_ids: tuple[str, ...]
    """Formulas whose printed LaTeX was checked against the implementation (the site marks them)."""
    seconds: float
    cached: bool = False

    def summary(self) -> str:
        return (f"{self.formulas} formulas, {self.doctests} doctests passed, printed formulas checked: "
                f"{self.printed_checked}/{self.printed_total}, {self.math} math expressions typeset")


def verify(sheet: Sheet, yaml_text: str, *, renderer: KatexRenderer, cache_dir: Path | None,
           module_source: str | None = None, say: Callable[[str], None] | None = None) -> Verified:
    """Run the whole check (or find it passed in the cache); raise `SheetError` on any problem.

    `module_source`: the generated module, when the caller has rendered it already (else it is rendered)."""
    from .doctests import PRINTED_CHECK, run_doctests
    from .render.site import math_requests

    key = verify_key(yaml_text, renderer)
    markers = FileCache(cache_dir / "verified", ".json", keep=32) if cache_dir is not None else None
    found = markers.get(key) if markers is not None else None
    if found is not None:
        try:
            data = json.loads(found)
            if data.pop("format", None) == FORMAT:
                data["printed_skipped"] = tuple(tuple(pair) for pair in data["printed_skipped"])
                data["printed_ids"] = tuple(data["printed_ids"])
                data["cached"] = True
                return Verified(**data)
        except (ValueError, TypeError, KeyError):
            pass  # an unreadable marker is a cache miss
    started = time.perf_counter()
    requests = math_requests(sheet)
    renderer.render(requests)  # every formula typesets, before anything slow
    # The printed-formula check runs in the same sandboxed child as the doctests.
    report = run_doctests(sheet, module_source, checks=[PRINTED_CHECK])
    printed = report.printed
    verified = Verified(
        formulas=report.formulas, doctests=report.examples, math=len(requests),
        printed_checked=printed.checked if printed else 0, printed_total=printed.total if printed else 0,
        printed_skipped=tuple(printed.skipped) if printed else (),
        printed_ids=tuple(printed.checked_ids) if printed else (),
        seconds=time.perf_counter() - started)
    if markers is not None:
        data = {"format": FORMAT, **asdict(verified)}
        data.pop("cached")
        markers.put(key, json.dumps(data, sort_keys=True))
    if say is not None:
        say(f"check: {verified.summary()} ({verified.seconds:.2f} s)")
    return verified


def verify_key(yaml_text: str, renderer: KatexRenderer) -> str:
    """Everything a passed check depends on: the YAML, sheetgen's code, NumPy's and KaTeX's versions."""
    import numpy

    digest = hashlib.sha256()
    for part in (str(FORMAT), yaml_text, _package_digest(), numpy.__version__, renderer.version):
        digest.update(part.encode("utf-8") + b"\0")
    return digest.hexdigest()


@cache
def _package_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".j2", ".cjs"}:
            digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
