"""Publishing the output set: one lock, all-or-nothing after a kill at any step, no temp folder left.

The publication is driven in a child process that SIGKILLs itself at a named step
(`SHEETGEN_TEST_KILL_AT`); the parent then does what every next start does (`recover`) and checks
that the outputs are entirely the old set or entirely the new one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sheetgen.publish import BuildBusy, BuildLock, Publication, PublishError, owned_temp_dir, recover

OLD = {"formulas.py": "old module", "cheatsheet.pdf": "old pdf", "notebooks/math.ipynb": "old nb"}
NEW = {"formulas.py": "new module", "cheatsheet.pdf": "new pdf", "notebooks/math.ipynb": "new nb"}
OLD_SITE = {"index.html": "old index", "math/index.html": "old math"}
NEW_SITE = {"index.html": "new index", "math/index.html": "new math", "extra.html": "new page"}

STEPS = ["before-journal", "after-journal", "file-0", "file-1", "file-2", "tree-moved-old", "tree-moved-new",
         "after-commit"]

PUBLISH_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from sheetgen.publish import BuildLock, Publication, recover

    build, site = Path(sys.argv[1]), Path(sys.argv[2])
    new = {"formulas.py": "new module", "cheatsheet.pdf": "new pdf", "notebooks/math.ipynb": "new nb"}
    new_site = {"index.html": "new index", "math/index.html": "new math", "extra.html": "new page"}
    with BuildLock(build):
        recover(build, (site,))
        publication = Publication(build)
        staged = publication.new_tree(site)
        for name, text in new_site.items():
            (staged / name).parent.mkdir(parents=True, exist_ok=True)
            (staged / name).write_text(text)
        publication.add_tree(site, staged)
        for name, text in new.items():
            publication.add_file(build / name, text)
        publication.commit()
""")


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _read(folder: Path, names: dict[str, str]) -> dict[str, str | None]:
    return {name: (folder / name).read_text() if (folder / name).is_file() else None for name in names}


def _site(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def _project(tmp_path: Path) -> tuple[Path, Path]:
    build, site = tmp_path / "build", tmp_path / "site"
    _write(build, OLD)
    _write(site, OLD_SITE)
    return build, site


def _publish(build: Path, site: Path, kill_at: str | None) -> int:
    env = {**os.environ, "SHEETGEN_TEST_KILL_AT": kill_at or ""}
    return subprocess.run([sys.executable, "-c", PUBLISH_SCRIPT, str(build), str(site)], env=env,
                          timeout=60).returncode


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_any_step_leaves_all_old_or_all_new_after_the_next_start(tmp_path: Path, step: str) -> None:
    build, site = _project(tmp_path)
    assert _publish(build, site, step) == -signal.SIGKILL
    with BuildLock(build):
        recover(build, (site,))
    files, pages = _read(build, OLD), _site(site) if site.is_dir() else {}
    before_commit_point = step == "before-journal"
    expected_files, expected_site = (OLD, OLD_SITE) if before_commit_point else (NEW, NEW_SITE)
    assert files == expected_files, f"killed at {step}: build/ is mixed or lost: {files}"
    assert pages == expected_site, f"killed at {step}: site/ is mixed or lost: {pages}"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in {"build", "site"})
    assert not leftovers, f"killed at {step}: left behind {leftovers}"
    assert not (build / ".staging").exists() and not (build / ".publish.json").exists()


def test_an_uninterrupted_publication_switches_everything_and_leaves_no_folder(tmp_path: Path) -> None:
    build, site = _project(tmp_path)
    assert _publish(build, site, None) == 0
    assert _read(build, NEW) == NEW and _site(site) == NEW_SITE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "site"]
    assert sorted(p.name for p in build.iterdir()) == [".cache", "cheatsheet.pdf", "formulas.py", "notebooks"]
    assert [p.name for p in (build / ".cache").iterdir()] == ["lock"]


def test_unchanged_files_are_not_rewritten(tmp_path: Path) -> None:
    build, _ = _project(tmp_path)
    before = (build / "formulas.py").stat().st_mtime_ns
    time.sleep(0.01)
    with BuildLock(build):
        publication = Publication(build)
        publication.add_file(build / "formulas.py", OLD["formulas.py"])
        publication.add_file(build / "cheatsheet.pdf", "changed")
        assert publication.commit() == [str(build / "cheatsheet.pdf")]
    assert (build / "formulas.py").stat().st_mtime_ns == before


def test_a_second_build_is_refused_with_the_holders_pid_or_waits(tmp_path: Path) -> None:
    build = tmp_path / "build"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from sheetgen.publish import BuildLock
        with BuildLock(Path({str(build)!r})):
            print("locked", flush=True)
            time.sleep(1.5)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(BuildBusy, match=rf"another sheetgen build is running \(pid {holder.pid}\).*--wait"), \
                BuildLock(build):
            pass
        started = time.perf_counter()
        with BuildLock(build, wait=True):
            waited = time.perf_counter() - started
        assert waited > 0.3, "--wait returned before the other build released the lock"
    finally:
        holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()


def test_the_lock_is_reentrant_within_one_process(tmp_path: Path) -> None:
    # `sheetgen site` holds it while the MkDocs plugin, in the same process, asks again.
    with BuildLock(tmp_path), BuildLock(tmp_path, wait=True):
        pass
    with BuildLock(tmp_path):  # and it was released
        pass


def test_temporary_folders_of_a_killed_process_are_removed_at_the_next_start(tmp_path: Path) -> None:
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, tempfile
        from pathlib import Path
        from sheetgen.publish import owned_temp_dir
        with owned_temp_dir(Path({str(tmp_path)!r})) as mine:
            Path(tempfile.mkdtemp(prefix="kernel-")).joinpath("x").write_text("x")
            assert os.environ["TMPDIR"] == str(mine)
            os.kill(os.getpid(), 9)
    """)], timeout=60)
    assert child.returncode == -signal.SIGKILL
    base = tmp_path / ".cache" / "tmp"
    left = list(base.iterdir())
    assert len(left) == 1 and any(left[0].rglob("x"))
    with owned_temp_dir(tmp_path) as mine:
        assert list(base.iterdir()) == [mine]  # the dead process's folder is gone
    # A process that ends normally removes its own folder.
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        from pathlib import Path
        from sheetgen.publish import owned_temp_dir
        with owned_temp_dir(Path({str(tmp_path)!r})) as mine:
            print(mine)
    """)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not Path(done.stdout.strip()).exists()


def test_a_read_only_site_mount_is_refused_before_anything_moves(tmp_path: Path) -> None:
    """A site folder on a read-only mount: found before the journal, so build/ stays as it was too."""
    build, site = _project(tmp_path)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(site)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with BuildLock(build):
            publication = Publication(build)
            staged = publication.new_tree(site)
            _write(staged, NEW_SITE)
            publication.add_tree(site, staged)
            for name, text in NEW.items():
                publication.add_file(build / name, text)
            with pytest.raises(PublishError, match=rf"{site}: is a mount point"):
                publication.commit()
            publication.discard()
        assert _read(build, OLD) == OLD
        assert not (build / ".publish.json").exists() and not (build / ".staging").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["build", "site"]
    finally:
        subprocess.run(["umount", str(site)], check=True)


def test_a_full_disk_while_taking_the_lock_names_the_lock_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import errno

    real_open = builtins.open

    def full_disk_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        if str(file).endswith("lock") and "a" in mode:
            def fail(*_: object) -> int:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            handle.write = fail  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(builtins, "open", full_disk_open)
    with pytest.raises(PublishError, match=r"lock: cannot write: No space left on device \(the disk is full\)"), \
            BuildLock(tmp_path / "build"):
        pass
