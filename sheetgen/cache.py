"""The one cache abstraction: content-keyed entries, evicted by last use.

Everything expensive that sheetgen makes (a passed check, PDFs, preview images, executed notebooks,
KaTeX HTML, formula images, fit results) is cached under `build/.cache` by a key of everything its bytes
depend on, so a hit is always correct and a stale entry is simply never asked for again. Two shapes:

- `FileCache`: one file per key in a folder (PDFs, notebooks, check markers). A hit refreshes the
  file's mtime; when more than `keep` files are there, the least recently used go.
- `read_json_cache` / `write_json_atomic`: one JSON file holding a mapping (KaTeX HTML, formula images,
  fit results), written whole or not at all; an unreadable or other-format file is an empty cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from .outputs import write_atomic

__all__ = ["FileCache", "read_json_cache", "write_json_atomic"]


class FileCache:
    def __init__(self, folder: Path, suffix: str, keep: int) -> None:
        self.folder = folder
        self.suffix = suffix
        self.keep = keep

    def path(self, key: str) -> Path:
        return self.folder / f"{key[:32]}{self.suffix}"

    def get(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # a hit is a use: eviction goes by last use, not by creation
        return data

    def put(self, key: str, data: bytes | str) -> Path:
        path = self.path(key)
        write_atomic(path, data)
        with contextlib.suppress(OSError):
            os.utime(path)
        self.evict()
        return path

    def evict(self) -> None:
        try:
            entries = [(p.stat().st_mtime_ns, p) for p in self.folder.glob(f"*{self.suffix}")]
        except OSError:
            return
        for _, old in sorted(entries, reverse=True)[self.keep:]:
            old.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: object) -> None:
    """Caches are written whole or not at all, so a crash or a parallel build never leaves half a file."""
    write_atomic(path, json.dumps(data, ensure_ascii=False, sort_keys=True))


def read_json_cache(path: Path | None, field: str, format_version: int = 1) -> dict[str, Any]:
    """The `field` mapping of a cache written as `{"format": format_version, field: {...}}`; empty when there
    is no path or the file is missing, corrupt or of another format: it is only a cache."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = data.get(field) if isinstance(data, dict) and data.get("format") == format_version else None
    return found if isinstance(found, dict) else {}
