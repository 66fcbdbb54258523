"""Who may use a store, and which paths inside it may be trusted.

A store holds env vars (often secrets) and is the last copy of envs that are gone, and prune
deletes inside it. So a store is used only when:

- it belongs to the user running us and nobody else can write it (a private store, 0700), or it
  is a declared team store (`safeguard_store_shared: true`): group-owned, setgid, not writable by
  others, with a sticky `snapshots/` so each user can only delete their own snapshots;
- nothing we read, write or delete inside it is a symlink, and no folder inside it is on another
  filesystem (a symlink or a mount would lead prune and writes outside the store).

An own store with loose modes (made under umask 000, or by an old version) is tightened; a store
owned by someone else, or writable by others, is refused with the command that fixes it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .exceptions import StoreError

#: The fixed parts of a store; objects/<fan>/ are checked as they are used.
STORE_ENTRIES = ("config", "lock", "gate", "objects", "snapshots", "packages", "wheels",
                 "cache")
class UnsafeStoreError(StoreError):
    def __init__(self, path: Path, why: str, fix: str) -> None:
        super().__init__(f"Refusing to use the snapshot store at {path}: {why}. Nothing was "
                         f"read or written. {fix}")


@dataclass(frozen=True)
class Modes:
    """File and folder modes the store writes with."""

    file: int
    folder: int

    @classmethod
    def for_store(cls, shared: bool) -> Modes:
        # team store: members read each other's objects; setgid keeps the group on new folders
        return cls(0o640, 0o2770) if shared else cls(0o600, 0o700)


def owner_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def make_dirs(path: Path, mode: int) -> None:
    """mkdir -p where every folder made gets `mode` exactly (umask 000 must not leave a 0777
    parent), and an existing one is left as it is."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        try:
            p.mkdir(mode=mode)
        except FileExistsError:
            continue  # a racing writer made it
        os.chmod(p, mode)


def check_tree(root: Path, *, shared: bool, warn: Callable[[str], None]) -> None:
    """Refuse a store we must not trust; tighten an own private store that is too open."""
    me = os.geteuid()
    try:
        top = os.stat(root)  # the root itself may be a symlink the user chose: follow it once
    except OSError:
        return  # opening the store reports it
    _check_one(root, top, me, top.st_dev, shared=shared, warn=warn, is_root=True)
    for name in STORE_ENTRIES:
        path = root / name
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        _check_one(path, st, me, top.st_dev, shared=shared, warn=warn, is_root=False)


def check_inner(path: Path, root_dev: int, *, shared: bool) -> None:
    """One folder inside the store (objects/<fan>/, cache/locks/) before it is used."""
    st = os.lstat(path)
    _check_one(path, st, os.geteuid(), root_dev, shared=shared, warn=lambda _: None,
               is_root=False)


def _check_one(path: Path, st: os.stat_result, me: int, root_dev: int, *, shared: bool,
               warn: Callable[[str], None], is_root: bool) -> None:
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeStoreError(path, "it is a symlink, and nothing inside a store may be one "
                               "(it would lead writes and prune elsewhere)",
                               f"Remove the link (`rm {path}`) and move the real folder there.")
    if st.st_dev != root_dev:
        raise UnsafeStoreError(path, "it is on another filesystem than the store (a mount "
                               "inside the store)", "Unmount it, or move the whole store.")
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid != me and not shared:
        raise UnsafeStoreError(path, f"it belongs to {owner_name(st.st_uid)}, not to you",
                               "Point CONDA_SAFEGUARD_HOME at a store of your own, or, for a "
                               "team store, set plugins.safeguard_store_shared: true.")
    if mode & 0o002 and st.st_uid != me:
        raise UnsafeStoreError(path, "every user on this machine can write it",
                               f"Ask {owner_name(st.st_uid)} to run `chmod o-w {path}`.")
    loose = 0o007 if shared else 0o077  # env vars are nobody else's business (team: members')
    if mode & loose and st.st_uid == me:
        os.chmod(path, mode & ~loose)
        if mode & 0o002:
            warn(f"{path} was writable by every user; made it private to "
                 f"{'its group' if shared else 'you'}")
        elif is_root:
            warn(f"made the store {path} private to {'its group' if shared else 'you'} "
                 f"(it was mode {mode:o})")


def read_file(path: Path) -> bytes:
    """The bytes of a store file, never through a symlink (OSError ELOOP for one)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def owned_by_me(path: Path) -> bool:
    try:
        return os.lstat(path).st_uid == os.geteuid()
    except OSError:
        return False
