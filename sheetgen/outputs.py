"""File I/O at the edges: outputs are written whole or not at all."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["source_date_epoch", "write_atomic"]


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH (seconds), the one date a build may print; 0 when unset or not a number."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(value) if value.isdigit() else 0


def write_atomic(path: Path, content: str | bytes) -> bool:
    """Write via a temp file in the same folder and `os.replace`; return False if unchanged.

    Unchanged files are left alone so their mtimes (and anything watching them) stay quiet.
    An `OSError` (a read-only folder, a full disk) is raised naming `path` itself, not the
    temporary file, and nothing is left behind: `path` keeps its old bytes.
    """
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _at(err, path) from err
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException as err:
        Path(temp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _at(err, path) from err
        raise
    return True


def _at(err: OSError, path: Path) -> OSError:
    """The same error, about `path` (os.write's ENOSPC names no file; mkstemp's names the temp file)."""
    return OSError(err.errno, err.strerror or str(err), str(path))  # OSError() picks the subclass
