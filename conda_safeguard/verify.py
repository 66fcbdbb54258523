"""Is an env exactly what a snapshot says? Package set and every file's bytes.

The package set is compared by name, version, build and hash (sha256 where both sides have
one, else md5). Every file conda linked is re-hashed against its package's `paths_data` in the
env's own conda-meta record: `sha256_in_prefix` where conda wrote one (files whose prefix
placeholder was replaced), else the package's `sha256`. Softlinks and directories carry no
content of their own and are skipped, and `.pyc` files conda compiled at install time have no
package hash. Any other file with no recorded hash is a difference, not a pass: a record
written with conda's safety checks disabled (`"paths_data": {"paths": []}`) leaves nothing to
prove the files against, and "identical" is only said of files that were compared.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .prefix import (
    RACY_NS,
    CondaRecord,
    paths_in_prefix,
    read_pip_dists,
    read_records,
    require_env,
)
from .snapshot import EnvState
from .suggest import plural

_SKIPPED_TYPES = ("softlink", "directory", "linked_package_record")
_COMPILED_TYPES = ("pyc_file", "unix_python_entry_point", "windows_python_entry_point_script",
                   "windows_python_entry_point_exe")  # made at install time: no package hash
_CHUNK = 1 << 20
_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_BIG = 1 << 20  # hashed on worker threads, which only pay off for large reads


@dataclass
class VerifyReport:
    prefix: str
    packages: int = 0
    files_checked: int = 0
    files_unhashed: int = 0  # files with no recorded hash to check against (a difference)
    files_compiled: int = 0  # made at install time (.pyc, entry points): no package hash
    unhashed: list[str] = field(default_factory=list)  # "pkg: why", one line per package
    missing: list[str] = field(default_factory=list)  # packages the snapshot has, the env not
    extra: list[str] = field(default_factory=list)  # packages the env has, the snapshot not
    changed: list[str] = field(default_factory=list)  # same name, other version/build/hash
    bad_files: list[str] = field(default_factory=list)  # "pkg: path: why"
    pip_missing: list[str] = field(default_factory=list)
    pip_extra: list[str] = field(default_factory=list)

    @property
    def conda_identical(self) -> bool:
        return not (self.missing or self.extra or self.changed or self.bad_files
                    or self.unhashed)

    @property
    def identical(self) -> bool:
        return self.conda_identical and not (self.pip_missing or self.pip_extra)

    @property
    def summary(self) -> str:
        """What was compared, in counts: a verdict is worth only what it checked."""
        return f"{plural(self.packages, 'package')}, {plural(self.files_checked, 'file')} compared"

    @property
    def verdict(self) -> str:
        if self.identical:
            return "byte-identical"
        parts = []
        for one, many, items in (
                ("missing package", "missing packages", self.missing),
                ("extra package", "extra packages", self.extra),
                ("changed package", "changed packages", self.changed),
                ("file differs", "files differ", self.bad_files),
                ("package with files that have no recorded hash",
                 "packages with files that have no recorded hash", self.unhashed),
                ("pip package missing", "pip packages missing", self.pip_missing),
                ("pip package extra", "pip packages extra", self.pip_extra)):
            if items:
                parts.append(plural(len(items), one, many))
        return "differs: " + ", ".join(parts)

    def details(self, limit: int = 20) -> list[str]:
        out = [f"- {m} (missing)" for m in self.missing] + [f"+ {e} (extra)" for e in self.extra]
        out += [f"~ {c}" for c in self.changed]
        out += [f"? {u}" for u in self.unhashed[:limit]]
        out += [f"! {b}" for b in self.bad_files[:limit]]
        if len(self.bad_files) > limit:
            out.append(f"! … and {len(self.bad_files) - limit} more files")
        out += [f"- pip {p} (missing)" for p in self.pip_missing]
        out += [f"+ pip {p} (extra)" for p in self.pip_extra]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "identical": self.identical,
                "conda_identical": self.conda_identical, **self.__dict__}


def _hash_of(r: CondaRecord) -> str:
    return r.sha256 or r.md5


def same_package(a: CondaRecord, b: CondaRecord) -> bool:
    if (a.name, a.version, a.build) != (b.name, b.version, b.build):
        return False
    if a.sha256 and b.sha256:
        return a.sha256 == b.sha256
    if a.md5 and b.md5:
        return a.md5 == b.md5
    return False  # no common hash: identity cannot be shown


def _describe(r: CondaRecord) -> str:
    h = (_hash_of(r) or "no hash")[:12]
    return f"{r.name} {r.version} {r.build} ({h})"


def _sha256(path: str, size: int | None = None) -> str:
    """sha256 of a file's bytes (through a symlink), with plain os.read: an env is mostly
    thousands of small files, where an open file object costs more than the hash. `size` is
    only a hint for the first read; the file is read to its end whatever it says."""
    fd = os.open(path, _READ)
    try:
        return _sha256_fd(fd, size)
    finally:
        os.close(fd)


def _sha256_fd(fd: int, size: int | None) -> str:
    h = hashlib.sha256()
    chunk = os.read(fd, _CHUNK if size is None else min(size + 1, _CHUNK))
    while chunk:
        h.update(chunk)
        chunk = os.read(fd, _CHUNK)
    return h.hexdigest()


class SourceDigests:
    """sha256 of the package files an installer links from, hashed on a thread while it runs
    (one core links, the other hashes). A file of the new env that is a hardlink to one of them
    (same inode, size and mtime as when hashed) holds exactly those bytes, so verify compares
    that digest instead of reading the file again; a copied file (another filesystem, a prefix
    written in) is a different inode and is read as before. Whatever the thread has not reached
    when the installer ends is simply read by verify.

    Each digest is of the very inode it is keyed by (hashed from the descriptor that was
    stat-ed, kept only if unchanged after). An inode number is only trusted while the folder
    that held the file is unchanged (same inode and mtime when the installer has ended): a
    file deleted or replaced there could free its number for another file. Files and folders
    written within RACY_NS of the hashing get no digest: the clock is coarse, a second write
    could keep the same mtime."""

    def __init__(self) -> None:
        #: (dev, ino) -> (size, mtime_ns, sha256, index of the folder it was in)
        self.by_inode: dict[tuple[int, int], tuple[int, int, str, int]] = {}
        self.used = 0  # files verify compared through a digest from here
        self._folders: list[tuple[str, tuple[int, int, int]]] = []  # path, (dev, ino, mtime)
        self._moved: set[int] = set()  # folders changed since they were hashed
        self._stop = threading.Event()

    @contextmanager
    def hashing(self, folders: list[Path]) -> Iterator[None]:
        worker = threading.Thread(target=self._hash, args=(folders,), daemon=True,
                                  name="conda-safeguard-source-digests")
        worker.start()
        try:
            yield
        finally:
            self._stop.set()
            worker.join()
            self.settle()

    def settle(self) -> None:
        """Once the installer has ended: forget every folder changed since it was hashed."""
        for i, (path, was) in enumerate(self._folders):
            try:
                st = os.stat(path)
            except OSError:
                self._moved.add(i)
                continue
            if (st.st_dev, st.st_ino, st.st_mtime_ns) != was:
                self._moved.add(i)

    def _hash(self, folders: list[Path]) -> None:
        racy_after = time.time_ns() - RACY_NS
        for folder in folders:
            for top, dirs, files in os.walk(folder):
                if top == str(folder):
                    dirs[:] = [d for d in dirs if d != "info"]  # conda's metadata, not linked
                try:
                    st = os.stat(top)
                except OSError:
                    continue
                if st.st_mtime_ns >= racy_after:
                    continue
                index = len(self._folders)
                self._folders.append((top, (st.st_dev, st.st_ino, st.st_mtime_ns)))
                for name in files:
                    if self._stop.is_set():
                        return
                    self._hash_one(os.path.join(top, name), index, racy_after)

    def _hash_one(self, full: str, folder: int, racy_after: int) -> None:
        try:
            fd = os.open(full, _READ | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return  # a symlink, gone, unreadable: verify reads what the env has
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_mtime_ns >= racy_after:
                return
            digest = _sha256_fd(fd, st.st_size)
            after = os.fstat(fd)
        except OSError:
            return
        finally:
            os.close(fd)
        if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
            self.by_inode[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns, digest, folder)

    def lookup(self, full: str) -> str | None:
        """The digest of the file at `full` if it is a file hashed here, unchanged since."""
        try:
            st = os.stat(full)
        except OSError:
            return None
        hit = self.by_inode.get((st.st_dev, st.st_ino))
        if hit is None or hit[:2] != (st.st_size, st.st_mtime_ns) or hit[3] in self._moved:
            return None
        self.used += 1
        return hit[2]


#: rel path -> (inode, size, mtime_ns) of a file hashed and found right moments ago, in this
#: process (restore seeding an env with the unchanged packages of the one it replaces)
Checked = dict[str, tuple[int, int, int]]


def stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _checked_before(prefix: Path, rel: str, checked: Checked | None) -> bool:
    """The file is the very one hashed before (same inode, size, mtime): not read again."""
    if not checked or rel not in checked:
        return False
    try:
        return stamp(os.lstat(os.path.join(prefix, rel))) == checked[rel]
    except OSError:
        return False


#: a file to hash: (package, path in the env, expected sha256, recorded size)
_Job = tuple[str, str, str, "int | None"]


def check_files(prefix: Path, name: str, record: dict[str, Any], report: VerifyReport,
                checked: Checked | None = None) -> list[_Job]:
    """Check what one conda-meta record's paths_data says without reading file contents
    (missing symlinks, files with no hash, files hashed moments ago) and return the files
    whose bytes must be hashed against it."""
    paths = paths_in_prefix(record)
    files = [f for f in record.get("files") or () if isinstance(f, str)]
    listed = {e.get("_path") for e in paths if isinstance(e, dict)}
    not_in_paths = [f for f in files if f not in listed]
    if not_in_paths:  # conda wrote no paths_data (safety checks disabled, very old records)
        report.files_unhashed += len(not_in_paths)
        report.unhashed.append(
            f"{name}: {len(not_in_paths)} of its {len(files)} files have no recorded sha256 "
            "(its record was written without conda's safety checks), so they were not compared")
    unhashed = []
    jobs: list[_Job] = []
    for entry in paths:
        if not isinstance(entry, dict):
            continue
        rel = entry.get("_path")
        kind = entry.get("path_type", "hardlink")
        if not isinstance(rel, str) or not rel or kind in _SKIPPED_TYPES:
            if rel and kind == "softlink" and not os.path.lexists(os.path.join(prefix, rel)):
                report.bad_files.append(f"{name}: {rel}: missing (a symlink)")
            continue
        expected = entry.get("sha256_in_prefix") or entry.get("sha256")
        if not isinstance(expected, str) or not expected:
            if kind in _COMPILED_TYPES:
                report.files_compiled += 1
            elif not os.path.lexists(os.path.join(prefix, rel)):
                report.bad_files.append(f"{name}: {rel}: missing")
            else:
                unhashed.append(rel)
            continue
        if _checked_before(prefix, rel, checked):
            report.files_checked += 1
            continue
        size = entry.get("size_in_bytes")
        jobs.append((name, rel, expected, size if isinstance(size, int) and size >= 0 else None))
    if unhashed:
        report.files_unhashed += len(unhashed)
        report.unhashed.append(f"{name}: {len(unhashed)} files with no recorded sha256 "
                               f"({', '.join(unhashed[:3])}{' …' if len(unhashed) > 3 else ''})")
    return jobs


def hash_jobs(prefix: Path, jobs: list[_Job], report: VerifyReport,
              sources: SourceDigests | None = None) -> list[tuple[str, str, str]]:
    """Hash every job's file; count it in `report` (missing/unreadable files go to its
    bad_files) and return the (package, path, actual sha256) of each that differs. Large files
    go to worker threads first (hashlib and os.read release the GIL for them, so two cores
    hash at once); the many small ones are hashed here, where a thread hand-off per file
    would cost more than the hash (measured: 4 threads took 3x one on 15k small files)."""
    root = os.path.join(prefix, "")
    big = [j for j in jobs if j[3] is not None and j[3] >= _BIG]
    small = [j for j in jobs if j[3] is None or j[3] < _BIG]
    differing: list[tuple[str, str, str]] = []

    def settle(job: _Job, actual: str | OSError) -> None:
        name, rel, expected, _ = job
        if isinstance(actual, FileNotFoundError):
            report.bad_files.append(f"{name}: {rel}: missing")
        elif isinstance(actual, OSError):
            report.bad_files.append(f"{name}: {rel}: unreadable ({actual.strerror})")
        else:
            report.files_checked += 1
            if actual != expected:
                differing.append((name, rel, actual))

    def one(job: _Job) -> str | OSError:
        full = root + job[1]
        known = sources.lookup(full) if sources is not None else None
        if known is not None:
            return known
        try:  # (a hardlink-type file conda softlinked is read through its link)
            return _sha256(full, job[3])
        except OSError as e:
            return e

    pool = ThreadPoolExecutor(min(2, os.cpu_count() or 1)) if big else None
    try:
        pending = [(j, pool.submit(one, j)) for j in big] if pool else []
        for job in small:
            settle(job, one(job))
        for job, future in pending:
            settle(job, future.result())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return differing


def verify(prefix: Path, expected: EnvState | None = None, *,
           progress: Callable[[str], None] | None = None,
           checked: Checked | None = None,
           sources: SourceDigests | None = None) -> VerifyReport:
    """Check the env at `prefix`: its files against its own records and, with `expected`, its
    package set (conda and pip) against a snapshot's. Reads only. Files in `checked` that are
    still the same inode, size and mtime count as compared without being read again, as do
    hardlinks to package files hashed in `sources` while they were linked."""
    prefix = Path(os.path.abspath(prefix))
    require_env(prefix)
    report = VerifyReport(prefix=str(prefix))
    raw: dict[str, dict[str, Any]] = {}
    installed = {r.name: r for r in read_records(prefix, raw=raw)}
    report.packages = len(installed)
    if expected is not None:
        wanted = expected.package_map()
        for name in sorted(set(wanted) | set(installed)):
            a, b = wanted.get(name), installed.get(name)
            if b is None and a is not None:
                report.missing.append(_describe(a))
            elif a is None and b is not None:
                report.extra.append(_describe(b))
            elif a is not None and b is not None and not same_package(a, b):
                report.changed.append(f"{name}: snapshot {_describe(a)}, env {_describe(b)}")
        have_pip = {(d.name, d.version) for d in read_pip_dists(prefix, list(installed.values()))}
        want_pip = {(d.name, d.version) for d in expected.pip}
        report.pip_missing = [f"{n}=={v}" for n, v in sorted(want_pip - have_pip)]
        report.pip_extra = [f"{n}=={v}" for n, v in sorted(have_pip - want_pip)]
    if progress is not None:
        progress(f"verifying the files of {plural(len(installed), 'package')} in {prefix}")
    jobs: list[_Job] = []
    for name in sorted(raw):
        jobs += check_files(prefix, name, raw[name], report, checked)
    differing = hash_jobs(prefix, jobs, report, sources)
    if differing:
        owners = _owners(raw, {rel for _, rel, _ in differing})
        report.bad_files += [f"{name}: {rel}: sha256 differs" for name, rel, actual in differing
                             if not any(n != name and h == actual for n, h in owners[rel])]
    return report


def _owners(raw: dict[str, dict[str, Any]], rels: set[str]) -> dict[str, list[tuple[str, str]]]:
    """(package, expected sha256) of each package listing one of `rels`. Two packages listing
    one path is conda's clobbering: the one linked last owns the file, the other's record still
    names it, so a file is right when it is any of its packages' version."""
    out: dict[str, list[tuple[str, str]]] = {rel: [] for rel in rels}
    for name, data in raw.items():
        for e in paths_in_prefix(data):
            if isinstance(e, dict) and e.get("_path") in out:
                expected = e.get("sha256_in_prefix") or e.get("sha256")
                if isinstance(expected, str):
                    out[e["_path"]].append((name, expected))
    return out
