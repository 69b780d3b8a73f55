"""Files as lrdecay writes them: only ever a regular file or a new path, replaced whole through a temporary
file and a rename (a killed run leaves each file old or new, never torn), in a directory made exclusively,
on a disk checked for room first, and held by one process at a time (`locked`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from lrdecay_cli.errors import UserError

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None


def _file_mode() -> int:
    """The mode a plain `open()` would give a new file (0644 under the usual umask 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def check_output_file(path: Path, where: str) -> None:
    """Refuse a path that is not a new name or a regular file in an existing directory: replacing a FIFO,
    device, directory or symlink would destroy it (as root, `--png /dev/null` would replace the device)."""
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
        kind = "a symlink" if path.is_symlink() else "a directory" if path.is_dir() else "not a regular file"
        raise UserError(f"'{path}' is {kind}; only a regular file or a new path is written", where=where,
                        fix="name a new file, or a regular file to replace")
    if not path.absolute().parent.is_dir():
        raise UserError(f"'{path.absolute().parent}' is not a directory", where=where,
                        fix="name a file in an existing directory")


def write_atomic(path: Path, content: str | bytes | Callable[[BinaryIO], None]) -> None:
    """Write `content` (text, bytes, or a function writing to a binary file) to `path` via temp + rename."""
    check_output_file(path, "writing")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp makes 0600; results are meant to be shared like any file
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_writable(runs_dir: Path, needed_bytes: int = 1 << 20) -> None:
    """Fail before any work if run directories cannot be made under `runs_dir`, or if its disk has
    less than `needed_bytes` free (nothing is created either way)."""
    probe = runs_dir.absolute()
    while not probe.exists():
        if probe.is_symlink():  # exists() follows it: a link to nowhere, or a loop of links
            raise UserError(f"'{probe}' is a symlink that leads nowhere", where=f"runs directory {runs_dir}",
                            fix="fix or remove the link, or pass --runs-dir with another directory")
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"'{probe}' is a file, not a directory", where=f"runs directory {runs_dir}",
                        fix="pass --runs-dir with a directory path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"'{probe}' is not writable", where=f"runs directory {runs_dir}",
                        fix="pass --runs-dir with a directory you can write to")
    free = shutil.disk_usage(probe).free
    if free < needed_bytes:
        raise UserError(f"only {_megabytes(free)} free on its disk, about {_megabytes(needed_bytes)} needed",
                        where=f"runs directory {runs_dir}", fix="free some space, or pass --runs-dir on another disk")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def make_unique_dir(parent: Path, name: str) -> Path:
    """Create `parent/name` exclusively (`-2`, `-3`... where it exists): concurrent runs never share one."""
    check_writable(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        path = parent / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a directory for {name} in {parent}")


LOCK = ".lock"


@contextlib.contextmanager
def locked(path: Path):
    """Hold the run or sweep directory `path` for this process: another process that would work in it
    meanwhile is refused (exit 2, naming this one's PID) instead of racing it. The kernel drops the
    lock when the process ends, however it ends (kill -9 too); the lock file goes with a clean end."""
    if fcntl is None:  # not POSIX: no lock
        yield
        return
    lock = path / LOCK
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"in use by PID {holder}", where=str(path),
                            fix="wait for that process to finish, or stop it") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break  # the file at the path is the one locked (not one a finishing holder just removed)
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


def in_use(path: Path) -> bool:
    """True while a live process on this machine holds the run or sweep directory `path` (`locked`), judged
    by the PID its lock file names, without taking the lock: a reader never makes a writer fail."""
    if fcntl is None:  # no locks here: trust the summary
        return True
    try:
        text = (path / LOCK).read_text()
    except OSError:  # none: the holder ended cleanly, or there never was one
        return False
    try:
        pid = int(text)
        if pid > 0:  # 0 and -1 are not PIDs `locked` writes: they would ask about whole process groups
            os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (ValueError, OverflowError, PermissionError):
        pass  # empty (a holder writing its PID this instant), not a PID, or alive and another user's
    return True
