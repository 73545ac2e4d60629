"""Publishing outputs as one set: a lock, a staging area, a journal, and recovery after a kill.

Every command that writes outputs works like this:

1. `BuildLock` takes an advisory lock on `build/.cache/lock` (one writer at a time; a second build says
   "another sheetgen build is running (pid N)" or, with `--wait`, waits for it).
2. Under the lock, `recover` first finishes or discards whatever a killed build left: a journal means
   the old build had decided to publish, so its moves are completed (roll forward); staging folders
   and temporary folders without a journal are deleted (roll back: the outputs were never touched).
3. New outputs are written into a staging folder (`build/.staging/`, and next to the site folder for
   the site), then `Publication.commit` writes the journal (atomically, fsync'ed) and only then moves
   each file into place and swaps the site folder with two renames. The journal is removed last.

So after any kill, the next start leaves the set entirely old or entirely new, never mixed.
Moves are idempotent (a missing staged file means it was already moved), which is what makes the
roll-forward safe to repeat if the recovering process is killed too.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, ClassVar

from .errors import MessageError
from .sandbox import pid_alive

__all__ = ["BuildBusy", "BuildLock", "Publication", "PublishError", "owned_temp_dir", "recover"]

LOCK_NAME = ".cache/lock"  # under .cache: not an output, and the pid in it changes
JOURNAL_NAME = ".publish.json"
STAGING_NAME = ".staging"
TEMP_NAME = ".cache/tmp"
SITE_OLD_SUFFIX = ".old"
SITE_STAGING_INFIX = ".staging-"

# A test hook: `SHEETGEN_TEST_KILL_AT=<step>` kills the process with SIGKILL at that step of a
# publication, so tests can check that the next start recovers. Steps are named in `_step` calls.
_KILL_AT = "SHEETGEN_TEST_KILL_AT"


class PublishError(MessageError):
    """Outputs cannot be published (a read-only folder, a full disk…): one message naming the path."""


class BuildBusy(PublishError):
    """Another process holds the build lock."""


class BuildLock:
    """An advisory `flock` on `build_dir/.cache/lock`, holding the owner's pid for the message others see.

    Re-entrant within a process: `sheetgen site` holds it while the plugin, in the same process,
    asks for it again (flock would otherwise block on our own lock).
    """

    _held: ClassVar[dict[Path, int]] = {}

    def __init__(self, build_dir: Path, *, wait: bool = False, say: Callable[[str], None] | None = None) -> None:
        self.build_dir = build_dir
        self.wait = wait
        self.say = say
        self._file: IO[str] | None = None

    @property
    def path(self) -> Path:
        return self.build_dir / LOCK_NAME

    def __enter__(self) -> BuildLock:
        key = self.build_dir.resolve()
        if self._held.get(key):
            self._held[key] += 1
            self._reentered = True
            return self
        self._reentered = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # held until __exit__
        except OSError as err:
            raise PublishError(f"{self.path}: cannot create the build lock: {err.strerror or err} — "
                               f"check that {self.build_dir}/ is writable") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(handle)
            if not self.wait:
                handle.close()
                raise BuildBusy(f"{self.build_dir}/: another sheetgen build is running (pid {holder}) — wait for "
                                f"it to finish, or run again with --wait") from None
            if self.say:
                self.say(f"waiting for another sheetgen build (pid {holder}) to finish…")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n")
            handle.flush()
        except OSError as err:
            fcntl.flock(handle, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):  # closing flushes again, and fails again
                handle.close()
            raise PublishError(f"{describe_os_error(err, self.path)} — free space or permissions on "
                               f"{self.build_dir}/, then run again") from None
        self._file = handle
        self._held[key] = 1
        return self

    def __exit__(self, *exc: object) -> None:
        key = self.build_dir.resolve()
        self._held[key] = self._held.get(key, 1) - 1
        if self._held[key] <= 0:
            self._held.pop(key, None)
        if self._reentered:
            return
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.seek(0)
                self._file.truncate()
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _read_pid(handle: IO[str]) -> str:
    try:
        handle.seek(0)
        return handle.read().strip() or "unknown"
    except OSError:
        return "unknown"


@dataclass
class Publication:
    """Outputs staged for one atomic switch. Create it under a `BuildLock`, after `recover`."""

    build_dir: Path
    staging: Path = field(init=False)
    files: dict[str, str] = field(default_factory=dict)
    """target path → staged path."""
    removals: list[str] = field(default_factory=list)
    trees: dict[str, str] = field(default_factory=dict)
    """target folder → staged folder (next to the target, so the swap is a rename)."""
    written: list[str] = field(default_factory=list)
    """Targets whose bytes change, for the build summary."""
    _new_trees: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        base = self.build_dir / STAGING_NAME
        base.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=base))

    def add_file(self, target: Path, content: str | bytes) -> None:
        """Stage `content` for `target`; an unchanged file is not touched (its mtime stays)."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        with contextlib.suppress(OSError):
            if target.is_file() and target.read_bytes() == data:
                return
        staged = self.staging / f"{len(self.files):04d}-{target.name}"
        with open(staged, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staged, 0o644)
        self.files[str(target.resolve())] = str(staged)
        self.written.append(str(target))

    def remove(self, target: Path) -> None:
        if target.exists():
            self.removals.append(str(target.resolve()))
            self.written.append(f"{target} (removed)")

    def new_tree(self, target: Path) -> Path:
        """A fresh staging folder next to `target` (same filesystem) to build a whole folder into."""
        target = target.resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{target.name}{SITE_STAGING_INFIX}{os.getpid()}-",
                                       dir=target.parent))
        self._new_trees.append(staged)
        return staged

    def add_tree(self, target: Path, staged: Path) -> None:
        """Stage the folder `staged` (from `new_tree`) to replace `target`; skipped when identical."""
        target = target.resolve()
        if _tree_digest(staged) == _tree_digest(target):
            shutil.rmtree(staged, ignore_errors=True)
            return
        staged.chmod(0o755)  # mkdtemp makes it 0700
        self.trees[str(target)] = str(staged)
        self.written.append(f"{target.name}/")

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.staging.parent.rmdir()
        for folder in [*self._new_trees, *map(Path, self.trees.values())]:
            shutil.rmtree(folder, ignore_errors=True)

    def commit(self) -> list[str]:
        """Write the journal, move everything into place, remove the journal. Returns what changed."""
        self._preflight()
        journal: dict[str, object] = {"files": self.files, "removals": self.removals, "trees": self.trees,
                   "staging": str(self.staging)}
        _step("before-journal")
        _write_durably(self.build_dir / JOURNAL_NAME, json.dumps(journal, indent=1).encode())
        _step("after-journal")
        _apply(journal)
        (self.build_dir / JOURNAL_NAME).unlink(missing_ok=True)
        _step("after-commit")
        return self.written


    def _preflight(self) -> None:
        """What would make the moves fail halfway is found before the journal commits to them: then
        nothing has changed, and the error names the path and the cause."""
        problems: list[str] = []
        folders = {os.path.dirname(target) for target in [*self.files, *self.removals]}
        for target in self.trees:
            if os.path.ismount(target):
                problems.append(f"{target}: is a mount point, and sheetgen replaces the site folder with a rename — "
                                "build into a folder inside it (--site-dir) or one next to it")
            folders.add(os.path.dirname(target))
        for folder in sorted(folders):
            existing = folder
            while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
                existing = os.path.dirname(existing)
            if not os.access(existing, os.W_OK):
                cause = "the file system is read-only" if _read_only_fs(existing) else "permission denied"
                problems.append(f"{folder}: cannot write: {cause} — make it writable or choose another folder")
        for target in [*self.files, *self.trees]:
            if os.path.exists(target) and not os.path.isdir(target) and not os.access(target, os.W_OK) and \
                    _read_only_fs(target):
                problems.append(f"{target}: cannot write: the file system is read-only")
        if problems:
            raise PublishError("\n".join(problems))


def _read_only_fs(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _apply(journal: Mapping[str, object]) -> None:
    """Carry out a journal; every step can be repeated after a kill."""
    files = journal.get("files", {})
    assert isinstance(files, dict)
    for index, (target, staged) in enumerate(files.items()):
        if os.path.exists(staged):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _move(staged, target)
        _step(f"file-{index}")
    removals = journal.get("removals", [])
    assert isinstance(removals, list)
    for target in removals:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
    trees = journal.get("trees", {})
    assert isinstance(trees, dict)
    for target, staged in trees.items():
        _swap_tree(Path(staged), Path(target))
    staging = journal.get("staging")
    if isinstance(staging, str):
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):  # only when no other publication is staged there
            os.rmdir(os.path.dirname(staging))


def _move(staged: str, target: str) -> None:
    try:
        os.replace(staged, target)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        # An output on another file system (`-o /elsewhere/x.pdf`): copy beside it, then rename.
        temp = f"{target}.sheetgen-tmp"
        shutil.copyfile(staged, temp)
        os.replace(temp, target)
        os.unlink(staged)


def _swap_tree(staged: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}{SITE_OLD_SUFFIX}")
    if staged.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)  # left by an earlier, finished swap
            target.rename(old)
            _step("tree-moved-old")
        staged.rename(target)
        _step("tree-moved-new")
    shutil.rmtree(old, ignore_errors=True)


def recover(build_dir: Path, site_dirs: tuple[Path, ...] = ()) -> str | None:
    """Finish or discard what a killed build left. Call under the lock. Returns what was done, if anything."""
    done: str | None = None
    journal_path = build_dir / JOURNAL_NAME
    if journal_path.is_file():
        try:
            journal = json.loads(journal_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            journal = None
        if isinstance(journal, dict):
            _apply(journal)
            done = "completed the publication of a build that was interrupted"
        journal_path.unlink(missing_ok=True)
    # Without a journal, staged outputs were never published: they are ours to delete.
    shutil.rmtree(build_dir / STAGING_NAME, ignore_errors=True)
    _remove_dead_temp_dirs(build_dir / TEMP_NAME)
    for site_dir in site_dirs:
        site_dir = site_dir.resolve()
        if not site_dir.parent.is_dir():
            continue
        for leftover in site_dir.parent.glob(f".{site_dir.name}{SITE_STAGING_INFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        old = site_dir.with_name(f".{site_dir.name}{SITE_OLD_SUFFIX}")
        if old.exists() and site_dir.exists():
            shutil.rmtree(old, ignore_errors=True)
        elif old.exists():  # killed between the two renames of a swap made without a journal
            old.rename(site_dir)
    return done


@contextlib.contextmanager
def owned_temp_dir(build_dir: Path) -> Iterator[Path]:
    """Point `tempfile` (and child processes, through TMPDIR) at `build/.cache/tmp/<pid>` for this command.

    Everything temporary this process and its children make (kernels, previews, WeasyPrint's fonts)
    lands there. The folder outlives the command, because objects made during it may keep using it
    (WeasyPrint's shared font configuration, in a process that builds again); it is deleted when the
    process exits, or by the next start after a kill. Under `.cache`, so it is never an output.
    """
    base = (build_dir / TEMP_NAME).resolve()  # absolute: child processes run in other folders
    base.mkdir(parents=True, exist_ok=True)
    _remove_dead_temp_dirs(base)
    mine = base / str(os.getpid())
    mine.mkdir(exist_ok=True)
    if mine not in _OWNED:
        _OWNED.add(mine)
        atexit.register(shutil.rmtree, mine, True)
    old_tempdir, old_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir = str(mine)
    os.environ["TMPDIR"] = str(mine)
    try:
        yield mine
    finally:
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env


_OWNED: set[Path] = set()


def _remove_dead_temp_dirs(base: Path) -> None:
    if not base.is_dir():
        return
    for folder in base.iterdir():
        if folder.name.isdigit() and not pid_alive(int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)


def _write_durably(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _tree_digest(folder: Path) -> str:
    """Hash of every file's path and bytes: an unchanged site is not swapped (its mtimes stay)."""
    import hashlib

    if not folder.is_dir():
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _step(name: str) -> None:
    if os.environ.get(_KILL_AT) == name:
        os.kill(os.getpid(), 9)


def describe_os_error(err: OSError, path: Path | str) -> str:
    """`path: cause` for an OS error on an output, e.g. a read-only folder or a full disk."""
    meaning = {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only"}.get(err.errno or 0)
    said = err.strerror or str(err)
    return f"{path}: cannot write: {said}" + (f" ({meaning})" if meaning else "")
