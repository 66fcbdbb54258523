"""Which snapshots to keep (pure), and prune: forget the rest and collect unreferenced data."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .exceptions import StoreError
from .pins import PACKAGE_EXTS
from .snapshot import SnapshotInfo
from .store import Store, is_hash
from .storecheck import remove_temp_files
from .storeperm import owned_by_me
from .suggest import safeguard as _sg
from .wheels import wheel_files


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int
    keep_daily: int
    keep_weekly: int


def select_kept(snapshots: list[SnapshotInfo], policy: RetentionPolicy) -> set[str]:
    """Ids to keep among one env's snapshots: the newest N, plus the newest of each of the last
    D days and W ISO weeks that have snapshots (restic's forget policy). A policy of all zeros
    keeps nothing.
    """
    ordered = sorted(snapshots, key=lambda s: s.created, reverse=True)
    keep: set[str] = {s.id for s in ordered[: policy.keep_last]}

    def bucketed(limit: int, bucket: Any) -> None:
        seen: list[Any] = []
        for s in ordered:
            b = bucket(s.created_at)
            if b in seen:
                continue
            if len(seen) >= limit:
                break
            seen.append(b)
            keep.add(s.id)

    bucketed(policy.keep_daily, lambda t: t.date())
    bucketed(policy.keep_weekly, lambda t: datetime.isocalendar(t)[:2])
    return keep


@dataclass
class PruneReport:
    forgotten: list[SnapshotInfo] = field(default_factory=list)
    kept: int = 0
    objects_removed: int = 0
    packages_removed: int = 0
    wheels_removed: int = 0
    bytes_freed: int = 0
    removed_envs_skipped: list[str] = field(default_factory=list)
    temp_removed: int = 0  # temp files of killed runs
    others_kept: int = 0  # a team store's snapshots of other users (never pruned by us)

    def to_dict(self) -> dict[str, Any]:
        return {
            "forgotten": [s.id for s in self.forgotten], "kept": self.kept,
            "objects_removed": self.objects_removed, "packages_removed": self.packages_removed,
            "wheels_removed": self.wheels_removed,
            "bytes_freed": self.bytes_freed, "removed_envs_skipped": self.removed_envs_skipped,
            "temp_removed": self.temp_removed, "others_kept": self.others_kept,
        }


def prune(store: Store, policy: RetentionPolicy, *, prefixes: list[str] | None = None,
          include_removed: bool = False, dry_run: bool = False) -> PruneReport:
    """Forget snapshots outside `policy`, then delete objects and pins no snapshot names.

    Snapshots of envs that no longer exist are the only copy of them: they are kept unless
    `include_removed` or their prefix is named in `prefixes`.
    """
    report = PruneReport()
    with store.exclusive_lock():
        unreadable = store.unreadable_manifests()
        if unreadable:  # the objects they name would look unreferenced
            raise StoreError(
                f"Refusing to prune: {len(unreadable)} snapshot manifest(s) cannot be read "
                f"(snapshots/{', snapshots/'.join(unreadable)}), and the data they name would be "
                f"deleted. Nothing was changed. Run `{_sg('check')}`, and move a damaged "
                "manifest out of the store to prune without it.")
        snapshots = store.snapshots()  # re-read under the lock: a backup may have just landed
        by_prefix: dict[str, list[SnapshotInfo]] = {}
        for s in snapshots:
            by_prefix.setdefault(s.prefix, []).append(s)
        forgotten_ids: set[str] = set()
        if store.shared:  # a team store: each member forgets only their own snapshots
            mine = {s.id for s in snapshots if owned_by_me(store.root / "snapshots"
                                                            / f"{s.id}.json")}
            report.others_kept = len(snapshots) - len(mine)
            report.kept += report.others_kept
            by_prefix = {p: [s for s in group if s.id in mine] for p, group in by_prefix.items()}
        for prefix, group in by_prefix.items():
            if not group:
                continue
            named = prefixes is not None and prefix in prefixes
            if prefixes is not None and not named:
                report.kept += len(group)
                continue
            if not os.path.isdir(os.path.join(prefix, "conda-meta")) and not (
                    include_removed or named):
                report.removed_envs_skipped.append(prefix)
                report.kept += len(group)
                continue
            kept = select_kept(group, policy)
            for s in group:
                if s.id in kept:
                    report.kept += 1
                else:
                    report.forgotten.append(s)
                    forgotten_ids.add(s.id)
        live = [s for s in snapshots if s.id not in forgotten_ids]
        referenced = {oid for s in live for oid in s.objects.values()}
        referenced_pins = {sha for s in live for sha in s.pins}
        referenced_wheels = {ref for s in live for ref in s.wheels.values()}
        # Decide every deletion before the first one: a surprise half-way must not leave
        # manifests deleted and their data kept (or the reverse).
        doomed_objects = [store.root / "objects" / oid[:2] / oid
                          for oid in store.iter_object_ids() if oid not in referenced]
        doomed_pins = [path for sha, path in _pin_files(store) if sha not in referenced_pins]
        doomed_wheels = [path for sha, path in wheel_files(store)
                         if f"{sha}/{path.name}" not in referenced_wheels]
        for path in doomed_wheels:
            report.wheels_removed += 1
            report.bytes_freed += path.lstat().st_size
        for path in doomed_objects:
            report.objects_removed += 1
            report.bytes_freed += path.lstat().st_size
        for path in doomed_pins:
            report.packages_removed += 1
            st = path.lstat()
            # A hardlink shared with conda's cache frees nothing until conda drops its name.
            report.bytes_freed += st.st_size if st.st_nlink == 1 else 0
        if not dry_run:
            for s in report.forgotten:
                store.delete_manifest(s.id)
            for path in [*doomed_objects, *doomed_pins, *doomed_wheels]:
                path.unlink()
            for path in doomed_wheels:  # its folder, once empty (never anything else in it)
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
            # Every writer holds the shared lock while its temp files exist: under the
            # exclusive lock, any temp file left belongs to a run that was killed.
            report.temp_removed = len(remove_temp_files(store))
    return report


def _pin_files(store: Store) -> list[tuple[str, Path]]:
    """(sha256, path) of the package files in packages/: regular files named as pins only."""
    directory = store.root / "packages"
    if not directory.is_dir() or directory.is_symlink():
        return []
    out = []
    for path in directory.iterdir():
        sha, dot, ext = path.name.partition(".")
        if is_hash(sha) and dot and f".{ext}" in PACKAGE_EXTS and not path.is_symlink() \
                and path.is_file():
            out.append((sha, path))
    return out
