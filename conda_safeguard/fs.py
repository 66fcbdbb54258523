"""The only place that fsyncs or locks: atomic writes and store locks."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .exceptions import SafeguardError, StoreLockTimeout

DEFAULT_LOCK_TIMEOUT = 60.0


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: (Linux renameat2 flag, macOS renamex_np flag)
RENAME_NOREPLACE = (1, 4)  # RENAME_NOREPLACE, RENAME_EXCL
RENAME_EXCHANGE = (2, 2)  # RENAME_EXCHANGE, RENAME_SWAP


def rename_with(src: Path, dest: Path, flags: tuple[int, int]) -> int:
    """One rename with a flag plain rename has not: 0 when done, else the errno (ENOSYS when
    this system has no such call: Linux < 3.15, macOS < 10.12, others)."""
    import ctypes

    if sys.platform.startswith("linux"):  # AT_FDCWD for both paths
        name, args = "renameat2", (-100, os.fsencode(src), -100, os.fsencode(dest), flags[0])
    elif sys.platform == "darwin":
        name, args = "renamex_np", (os.fsencode(src), os.fsencode(dest), flags[1])
    else:
        return errno.ENOSYS
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return errno.ENOSYS
    return 0 if fn(*args) == 0 else ctypes.get_errno()


def rename_noreplace(src: Path, dest: Path) -> bool:
    """Rename `src` to `dest` only if nothing is at `dest`, in one step. False when something
    is there, or the system cannot promise it (then nothing was renamed)."""
    return rename_with(src, dest, RENAME_NOREPLACE) == 0


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Write `data` so that `path` holds either its old content or all of `data`, never a mix.

    The temp file is in the same directory (os.replace is atomic only within a filesystem);
    the directory is fsynced after the rename so the new name survives a crash too.
    `durable=False` skips both fsyncs: for derived data (caches) that may be lost in a crash,
    though never half-written.
    """
    directory = path.parent
    tmp = directory / f".tmp-{path.name}.{os.getpid()}.{time.monotonic_ns()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)


def commit_file(tmp: Path, path: Path) -> None:
    """Move a fully written temp file (same directory tree, same filesystem) to `path`
    durably: its bytes synced before the rename, the new name synced after it. For files too
    big to hold in memory for atomic_write (kept wheels)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def lock_timeout() -> float:
    """Seconds to wait for the store lock: CONDA_SAFEGUARD_LOCK_TIMEOUT, else 60.

    A value that is not a number is an error naming the variable, not silently 60."""
    raw = os.environ.get("CONDA_SAFEGUARD_LOCK_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also catches nan
        raise SafeguardError(
            f"The environment variable CONDA_SAFEGUARD_LOCK_TIMEOUT is {raw!r}, which is not a "
            "number of seconds (0 or more). Nothing was changed; fix or unset it.")
    return seconds


@contextlib.contextmanager
def file_lock(
    path: Path, *, exclusive: bool, timeout: float | None = None, quiet: bool = False,
    mode: int = 0o600,
) -> Iterator[None]:
    """Hold an flock on `path`. The kernel drops it if the process dies: no stale locks.

    Says once on stderr that it is waiting, and raises StoreLockTimeout after `timeout`.
    Never through a symlink: a planted (even dangling) link must not make us create its target.
    flock needs no write access, so a lock file someone else made is opened read-only.
    """
    timeout = lock_timeout() if timeout is None else timeout
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, mode)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | nofollow)
    try:
        op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, op | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise StoreLockTimeout(str(path), timeout)
            if not told and not quiet:
                print(f"conda-safeguard: waiting for the store lock {path} …", file=sys.stderr)
                told = True
            time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


#: How long a writer waits at the gate for a prune before it goes on to the main lock anyway
#: (the main lock still keeps it out while prune deletes): the gate only buys prune its turn.
GATE_PATIENCE = 10.0


def pass_gate(path: Path, *, timeout: float = GATE_PATIENCE) -> None:
    """Wait while someone holds the gate `path` exclusively, then go on (holding nothing).

    Why a gate: flock has no writer preference, so with backups overlapping all the time the
    shared lock is never free and an exclusive locker (prune) starves. Prune takes the gate
    first; new writers then queue here, in-flight ones finish, and prune gets the lock. A gate
    that does not exist, or cannot be opened, holds nobody up.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                return
            time.sleep(0.005)
    finally:
        os.close(fd)
