"""Replacing an env at a path so that a crash at any moment leaves a working env there.

The old env is never deleted before the new one is complete and verified:

    building   the new env is built beside the target (installers that can relocate), or an
               empty folder is swapped in for the old env, which goes to
               `.NAME.safeguard-old-ID`, and the new one is built at the path (conda, mamba,
               micromamba write the path into files while linking: until it is verified the
               path holds an unfinished env, which recover replaces with the old one)
    swapping   the new env and the target are exchanged in one rename (renameat2
               RENAME_EXCHANGE), so the path always holds one of the two
    swapped    the new env is at the path, the old one at `.NAME.safeguard-old-ID`; pip packages
               are reinstalled and every file verified
    verified   only the old env's removal is left

Each step is written to a journal, `.NAME.safeguard-journal.json` beside the env, before it is
taken. The journal names both envs by inode, so `recover` can tell which one sits where after a
crash at any point: a transaction that reached `verified` is finished (the old env removed),
any other is rolled back (the old env back at its path, the new one removed). A lock file per
target (in the store's cache/locks, an flock the kernel drops when its process dies) makes two
restores into one path wait for each other instead of deleting each other's work.

It also owns which paths may be replaced at all: never a conda installation's root.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from .exceptions import SafeguardError, StoreLockTimeout
from .fs import RENAME_EXCHANGE, atomic_write, file_lock, fsync_dir, rename_with

Progress = Callable[[str], None]
JOURNAL_SUFFIX = ".safeguard-journal.json"
OLD_INFIX = ".safeguard-old-"
STAGING_INFIX = ".safeguard-restore-"
PHASES = ("building", "swapping", "swapped", "verified")


class TargetBusyError(SafeguardError):
    def __init__(self, target: Path) -> None:
        super().__init__(
            f"Another conda-safeguard restore or recover is working on {target} right now. "
            "Nothing was changed. Wait for it to finish, then run this again.")


class CondaRootError(SafeguardError):
    def __init__(self, target: Path, why: str, snapshot: str) -> None:
        super().__init__(
            f"Refusing to replace {target}: {why}. Replacing it would delete conda itself, its "
            "package cache and every env inside it, which no snapshot of it brings back. "
            f"Nothing was changed. Restore into a new env instead: `conda-safeguard restore "
            f"{snapshot} -n NEW_NAME`, then move what you need over (or change base itself "
            "with `conda install --revision N`).")


def conda_root_reason(target: Path, root_prefix: Path | None) -> str | None:
    """Why `target` is a conda installation (base, a root prefix) rather than an env; None when
    it is an ordinary env that may be replaced."""
    target = Path(os.path.abspath(target))
    if root_prefix is not None and target == Path(os.path.abspath(root_prefix)):
        return "it is conda's base environment (the root prefix)"
    for sub, what in (("envs", "envs/"), ("pkgs", "pkgs/"), ("condabin", "condabin/")):
        if (target / sub).is_dir():
            return f"it holds {what}, so it is a conda installation's root prefix"
    running = Path(os.path.abspath(sys.prefix))
    if running == target or target in running.parents:
        return f"the Python running this command ({sys.executable}) lives in it"
    return None


def refuse_conda_root(target: Path, root_prefix: Path | None, snapshot: str) -> None:
    why = conda_root_reason(target, root_prefix)
    if why is not None:
        raise CondaRootError(target, why, snapshot)


# ---------------------------------------------------------------------------------------------
# names beside the target


def journal_path(target: Path) -> Path:
    return target.with_name(f".{target.name}{JOURNAL_SUFFIX}")


def resolve_target(target: Path) -> Path:
    """The path a restore replaces: an env reached through a symlink (say envs/big -> a bigger
    disk) is replaced where it is. Swapping the link itself would build the new env beside the
    link, copy the user's files over to it, and leave the real env behind, orphaned."""
    target = Path(os.path.abspath(target))
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def restore_under_way(prefix: Path) -> bool:
    """A restore is replacing `prefix`, or one was interrupted there: its journal is beside it.
    Until it is settled the path may hold a half-built env (conda builds at the path)."""
    return os.path.lexists(journal_path(resolve_target(prefix)))


class RestoreUnderWayError(SafeguardError):
    def __init__(self, prefix: Path, refused: str) -> None:
        super().__init__(
            f"{refused}: a conda-safeguard restore is replacing {prefix}, or one was "
            f"interrupted there (its journal {journal_path(prefix)} exists), so the env at that "
            "path may be half-built. Nothing was changed. Wait for the restore to finish, or "
            f"run `conda-safeguard recover -p {prefix}` to finish or roll back an interrupted "
            "one, then run this again.")


def lock_dir(store_root: Path) -> Path:
    """Where target locks live: the store's cache/locks (every process using the store agrees
    on it, and it leaves no file beside the envs); a read-only store's users lock in the
    temp folder instead."""
    locks = store_root / "cache" / "locks"
    try:
        if (store_root / "config").is_file():  # never half-create a store
            locks.mkdir(parents=True, exist_ok=True, mode=0o700)
            if os.access(locks, os.W_OK):
                return locks
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"conda-safeguard-{os.getuid()}-locks"
    fallback.mkdir(exist_ok=True, mode=0o700)
    return fallback


def lock_path(target: Path, locks: Path) -> Path:
    key = hashlib.sha256(os.path.abspath(target).encode()).hexdigest()[:20]
    return locks / f"target-{key}.lock"


@contextlib.contextmanager
def target_lock(target: Path, locks: Path) -> Iterator[None]:
    """One restore per target at a time; the loser is told at once (a restore takes minutes)."""
    try:
        with file_lock(lock_path(target, locks), exclusive=True, timeout=0.0, quiet=True):
            yield
    except StoreLockTimeout:
        raise TargetBusyError(target) from None


def _inode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_ino
    except OSError:
        return None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# renames


def _atomic_swap(a: Path, b: Path) -> bool:
    """Swap two paths in one step: renameat2(RENAME_EXCHANGE) on Linux ≥ 3.15,
    renamex_np(RENAME_SWAP) on macOS ≥ 10.12. False when the system cannot."""
    err = rename_with(a, b, RENAME_EXCHANGE)
    if err == 0:
        return True
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(a))


def swap_path(target: Path) -> Path:
    """Where the three-rename fallback parks one side (one per target: the lock is held)."""
    return target.with_name(f".{target.name}.safeguard-swap")


def exchange(a: Path, b: Path) -> None:
    """Swap what `a` (the target) and `b` hold. Atomic where the system can; else three
    renames, and recover also looks for an env at swap_path(a)."""
    if not _atomic_swap(a, b):
        tmp = swap_path(a)
        os.rename(a, tmp)
        os.rename(b, a)
        os.rename(tmp, b)
    fsync_dir(a.parent)


def remove_tree(path: Path) -> None:
    """Remove a folder we made (a half-built env, a replaced one). Raises if it stays."""
    if os.path.islink(path) or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


# ---------------------------------------------------------------------------------------------
# the journal


@dataclass
class Journal:
    target: str
    phase: str  # building | swapping | swapped | verified
    in_place: bool  # the new env is built at the target path (the old one moved aside first)
    old_path: str | None  # where the old env waits: .NAME.safeguard-old-ID (None: no old env)
    old_ino: int | None
    new_path: str  # where the new env is built (the target itself when in_place)
    new_ino: int | None  # known once the new env exists
    staging: str  # scratch folder
    snapshot: str  # the snapshot being restored
    before: str | None  # the snapshot of the old env taken before
    pid: int
    started: str

    def validate(self, target: Path) -> None:
        if self.target != str(target) or self.phase not in PHASES:
            raise ValueError("its target or step is not this env's")
        dot = f".{target.name}"
        staging = Path(self.staging)
        if staging.parent != target.parent or not staging.name.startswith(dot + STAGING_INFIX):
            raise ValueError("its staging folder is not beside the env")
        if self.old_path is not None and (Path(self.old_path).parent != target.parent or
                                          not Path(self.old_path).name.startswith(
                                              dot + OLD_INFIX)):
            raise ValueError("its kept-old folder is not beside the env")
        if self.new_path not in (str(target), str(staging / "prefix")):
            raise ValueError("its new env is neither the env's path nor its staging folder")
        for ino in (self.old_ino, self.new_ino):
            if ino is not None and not isinstance(ino, int):
                raise ValueError("its inodes are not numbers")

    def save(self) -> None:
        data = json.dumps(asdict(self), indent=1).encode() + b"\n"
        atomic_write(journal_path(Path(self.target)), data, mode=0o644)

    def set(self, phase: str) -> None:
        self.phase = phase
        self.save()

    @classmethod
    def load(cls, target: Path) -> Journal | None:
        """The journal beside `target`. Its paths are checked to be the names this module
        gives (siblings of the target), so a planted journal cannot point recover at other
        folders; one another user wrote is refused."""
        path = journal_path(target)
        try:
            if path.stat().st_uid != os.getuid():
                raise ValueError("it belongs to another user")
            data = json.loads(path.read_bytes())
            j = cls(**{k: data[k] for k in cls.__dataclass_fields__})
            j.validate(target)
            return j
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SafeguardError(
                f"The restore journal {journal_path(target)} is unreadable ({e}). Nothing was "
                f"changed. Look for a `.{target.name}{OLD_INFIX}*` folder beside it: it is the "
                "env that was there; move it back by hand if the env at the path is broken, "
                "then delete the journal.") from None


@dataclass
class Pending:
    """An interrupted transaction found by status/list/recover."""

    target: Path
    journal: Journal
    running: bool  # its process still holds the target lock

    @property
    def kept_old(self) -> str | None:
        return self.journal.old_path if self.journal.old_path and \
            os.path.lexists(self.journal.old_path) else None

    def describe(self) -> str:
        if self.running:
            return f"a restore into {self.target} is running (pid {self.journal.pid})"
        old = f"; the env that was there is kept at {self.kept_old}" if self.kept_old else ""
        return (f"an interrupted restore into {self.target} (snapshot "
                f"{self.journal.snapshot[:10]}, step: {self.journal.phase}){old}. Run "
                f"`conda-safeguard recover -p {self.target}` to finish or roll it back")


def _is_locked(target: Path, locks: Path) -> bool:
    try:
        with file_lock(lock_path(target, locks), exclusive=True, timeout=0.0, quiet=True):
            return False
    except StoreLockTimeout:
        return True
    except OSError:
        return False  # cannot even open the lock file: nobody holds it through us


def pending(folders: list[Path], locks: Path) -> list[Pending]:
    """Journals left in these folders (the envs dirs, the parents of given prefixes)."""
    found: list[Pending] = []
    seen: set[Path] = set()
    for folder in folders:
        try:
            names = sorted(p.name for p in folder.iterdir())
        except OSError:
            continue
        for name in names:
            if not (name.startswith(".") and name.endswith(JOURNAL_SUFFIX)):
                continue
            target = folder / name[1:-len(JOURNAL_SUFFIX)]
            if target in seen:
                continue
            seen.add(target)
            try:
                journal = Journal.load(target)
            except SafeguardError:
                continue
            if journal is not None:
                found.append(Pending(target, journal, _is_locked(target, locks)))
    return found


# ---------------------------------------------------------------------------------------------
# recovering


def _where(j: Journal, ino: int | None, *candidates: str | None) -> Path | None:
    if ino is None:
        return None
    for c in candidates:
        if c and _inode(Path(c)) == ino:
            return Path(c)
    return None


def _ours(j: Journal, path: Path) -> bool:
    """`path` holds the env this transaction built (its inode), or an empty folder."""
    if j.new_ino is not None and _inode(path) == j.new_ino:
        return True
    try:
        return path.is_dir() and not path.is_symlink() and not any(path.iterdir())
    except OSError:
        return False


def _not_ours(j: Journal, path: Path) -> SafeguardError:
    kept = f"; the env that was there is kept at {j.old_path}" if j.old_path else ""
    return SafeguardError(
        f"Cannot settle the interrupted restore into {j.target}: {path} holds something this "
        f"restore did not build{kept}. Nothing was removed; the journal "
        f"{journal_path(Path(j.target))} is kept. Move things back by hand, then delete it.")


def roll_back(j: Journal, say: Progress) -> str:
    """Put the old env back at the path (or, with no old env, remove the unfinished new one).
    Removes only what this transaction built, known by its inode."""
    target = Path(j.target)
    if j.old_ino is None:  # nothing was there before: only an unfinished new env to remove
        if os.path.lexists(target) and (j.in_place or _inode(target) == j.new_ino):
            if not _ours(j, target):
                raise _not_ours(j, target)
            remove_tree(target)
    else:
        old_at = _where(j, j.old_ino, j.target, j.old_path, j.new_path,
                        str(Path(j.staging) / "prefix"), str(swap_path(target)))
        if old_at is None:
            raise SafeguardError(
                f"Cannot roll back the restore into {target}: the env that was there is in "
                f"neither {target} nor {j.old_path}. Nothing was removed; the journal "
                f"{journal_path(target)} is kept for you to inspect.")
        if old_at != target:
            if os.path.lexists(target):
                if not _ours(j, target):
                    raise _not_ours(j, target)
                exchange(target, old_at)  # one step: the path never goes empty
                remove_tree(old_at)
            else:
                os.rename(old_at, target)
                fsync_dir(target.parent)
    _tidy(j)
    say(f"rolled back the interrupted restore into {target}: "
        + ("the env that was there is back" if j.old_ino is not None else
           "the unfinished env was removed"))
    return "rolled back"


def finish(j: Journal, say: Progress) -> str:
    """The new env is the one to keep: remove the old one, if any."""
    target = Path(j.target)
    if _inode(target) != j.new_ino:
        raise _not_ours(j, target)
    if j.old_path and os.path.lexists(j.old_path) and _inode(Path(j.old_path)) == j.old_ino:
        remove_tree(Path(j.old_path))
    _tidy(j)
    say(f"finished the interrupted restore into {j.target}: "
        + ("the new env had been verified; the one it replaced was removed" if j.old_ino
           else "the new env is kept; run `conda-safeguard verify` on it"))
    return "finished"


def settle(j: Journal, say: Progress) -> str:
    """Finish a transaction that got far enough, roll back any other. A new env with nothing
    replaced is kept once complete (pip and verification are then reported, not undone)."""
    if j.phase == "verified" or (j.old_ino is None and j.phase == "swapped"):
        return finish(j, say)
    return roll_back(j, say)


def _tidy(j: Journal) -> None:
    shutil.rmtree(j.staging, ignore_errors=True)
    target = Path(j.target)
    parked = swap_path(target)
    if j.new_ino is not None and _inode(parked) == j.new_ino:  # a fallback swap cut short
        remove_tree(parked)
    with contextlib.suppress(FileNotFoundError):
        journal_path(target).unlink()
    fsync_dir(target.parent)


def recover_locked(target: Path, say: Progress) -> str | None:
    """With the target lock held: finish or roll back a transaction left by a dead process,
    and remove staging folders nobody uses. Returns what was done, None when nothing was
    pending."""
    j = Journal.load(target)
    for stale in target.parent.glob(f".{target.name}{STAGING_INFIX}*"):
        if j is None or str(stale) != j.staging:  # we hold the lock: nobody is building there
            shutil.rmtree(stale, ignore_errors=True)
    for torn in target.parent.glob(f".tmp-{journal_path(target).name}.*"):
        torn.unlink(missing_ok=True)  # a journal write cut short (the old journal stands)
    if j is None:
        return None
    return settle(j, say)


def recover(target: Path, locks: Path, say: Progress) -> str | None:
    with target_lock(target, locks):
        return recover_locked(target, say)


# ---------------------------------------------------------------------------------------------
# signals: a hang-up or a terminate rolls back like ^C does


class Interrupted(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def signals_roll_back() -> Iterator[None]:
    """SIGHUP/SIGTERM raise Interrupted in the main thread, so the except path rolls back
    (only kill -9 skips it; then `recover` does it)."""
    def handler(signum: int, _frame: FrameType | None) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGHUP, signal.SIGTERM):
        saved[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for caught, old in saved.items():
            signal.signal(caught, old)


def new_journal(target: Path, *, in_place: bool, replaces: bool, snapshot: str,
                before: str | None) -> Journal:
    """The journal of a new transaction; save it before making the staging folder it names,
    so that nothing of ours is ever beside the env without a journal saying what it is."""
    txid = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:6]}"
    staging = target.with_name(f".{target.name}{STAGING_INFIX}{txid}")
    return Journal(
        target=str(target), phase="building", in_place=in_place,
        old_path=str(target.with_name(f".{target.name}{OLD_INFIX}{txid}")) if replaces else None,
        old_ino=_inode(target) if replaces else None,
        new_path=str(target if in_place else staging / "prefix"), new_ino=None,
        staging=str(staging), snapshot=snapshot, before=before, pid=os.getpid(),
        started=_now())
