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
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pins import hash_file
from .prefix import (
    CondaRecord,
    paths_in_prefix,
    read_pip_dists,
    read_records,
    record_files,
    require_env,
)
from .snapshot import EnvState
from .suggest import plural

_SKIPPED_TYPES = ("softlink", "directory", "linked_package_record")
_COMPILED_TYPES = ("pyc_file", "unix_python_entry_point", "windows_python_entry_point_script",
                   "windows_python_entry_point_exe")  # made at install time: no package hash
_SMALL = 1 << 20


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


def _sha256(path: str, size: int | None) -> str:
    if size is not None and size <= _SMALL:  # most files: one read, no buffering layer
        with open(path, "rb", buffering=0) as f:
            return hashlib.sha256(f.read()).hexdigest()
    return hash_file(Path(path), "sha256")


#: rel path -> (inode, size, mtime_ns) of a file hashed and found right moments ago, in this
#: process (restore seeding an env with the unchanged packages of the one it replaces)
Checked = dict[str, tuple[int, int, int]]


def stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _checked_before(full: str, rel: str, checked: Checked | None) -> bool:
    """The file is the very one hashed before (same inode, size, mtime): not read again."""
    if not checked or rel not in checked:
        return False
    try:
        return stamp(os.lstat(full)) == checked[rel]
    except OSError:
        return False


def check_files(prefix: Path, name: str, record: dict[str, Any], report: VerifyReport,
                checked: Checked | None = None,
                differing: list[tuple[str, str, str]] | None = None) -> None:
    """Re-hash the files of one conda-meta record against its paths_data. With `differing`, a
    file whose sha256 differs goes there as (name, path, actual sha256) for the caller to
    judge (another package may own it) instead of into the report."""
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
    for entry in paths:
        if not isinstance(entry, dict):
            continue
        rel = entry.get("_path")
        kind = entry.get("path_type", "hardlink")
        if not rel or kind in _SKIPPED_TYPES:
            if rel and kind == "softlink" and not os.path.lexists(os.path.join(prefix, rel)):
                report.bad_files.append(f"{name}: {rel}: missing (a symlink)")
            continue
        full = os.path.join(prefix, rel)
        expected = entry.get("sha256_in_prefix") or entry.get("sha256")
        if not expected:
            if kind in _COMPILED_TYPES:
                report.files_compiled += 1
            elif not os.path.lexists(full):
                report.bad_files.append(f"{name}: {rel}: missing")
            else:
                unhashed.append(rel)
            continue
        if _checked_before(full, rel, checked):
            report.files_checked += 1
            continue
        try:  # (a hardlink-type file conda softlinked is read through its link)
            actual = _sha256(full, entry.get("size_in_bytes"))
        except FileNotFoundError:
            report.bad_files.append(f"{name}: {rel}: missing")
            continue
        except OSError as e:
            report.bad_files.append(f"{name}: {rel}: unreadable ({e.strerror})")
            continue
        report.files_checked += 1
        if actual != expected:
            if differing is not None:
                differing.append((name, rel, actual))
            else:
                report.bad_files.append(f"{name}: {rel}: sha256 differs")
    if unhashed:
        report.files_unhashed += len(unhashed)
        report.unhashed.append(f"{name}: {len(unhashed)} files with no recorded sha256 "
                               f"({', '.join(unhashed[:3])}{' …' if len(unhashed) > 3 else ''})")


def verify(prefix: Path, expected: EnvState | None = None, *,
           progress: Callable[[str], None] | None = None,
           checked: Checked | None = None) -> VerifyReport:
    """Check the env at `prefix`: its files against its own records and, with `expected`, its
    package set (conda and pip) against a snapshot's. Reads only. Files in `checked` that are
    still the same inode, size and mtime count as compared without being read again."""
    prefix = Path(os.path.abspath(prefix))
    require_env(prefix)
    report = VerifyReport(prefix=str(prefix))
    installed = {r.name: r for r in read_records(prefix)}
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
    def one(path: str) -> tuple[VerifyReport, list[tuple[str, str, str]]]:
        part = VerifyReport(prefix=str(prefix))
        differing: list[tuple[str, str, str]] = []
        with open(path, "rb") as f:
            data = json.loads(f.read())
        if isinstance(data, dict) and data.get("name") in installed:
            check_files(prefix, str(data["name"]), data, part, checked, differing)
        return part, differing

    paths = sorted(e.path for e in record_files(prefix))
    differing: list[tuple[str, str, str]] = []
    with ThreadPoolExecutor(min(4, (os.cpu_count() or 2) * 2)) as pool:  # I/O bound
        for part, diff in pool.map(one, paths):
            report.files_checked += part.files_checked
            report.files_unhashed += part.files_unhashed
            report.files_compiled += part.files_compiled
            report.unhashed += part.unhashed
            report.bad_files += part.bad_files
            differing += diff
    if differing:
        owners = _owners(paths, {rel for _, rel, _ in differing}, set(installed))
        report.bad_files += [f"{name}: {rel}: sha256 differs" for name, rel, actual in differing
                             if not any(n != name and h == actual for n, h in owners[rel])]
    return report


def _owners(paths: list[str], rels: set[str], installed: set[str],
            ) -> dict[str, list[tuple[str, str]]]:
    """(package, expected sha256) of each package listing one of `rels`. Two packages listing
    one path is conda's clobbering: the one linked last owns the file, the other's record still
    names it, so a file is right when it is any of its packages' version."""
    out: dict[str, list[tuple[str, str]]] = {rel: [] for rel in rels}
    for path in paths:
        with open(path, "rb") as f:
            data = json.loads(f.read())
        if not isinstance(data, dict) or data.get("name") not in installed:
            continue
        for e in paths_in_prefix(data):
            if isinstance(e, dict) and e.get("_path") in out:
                expected = e.get("sha256_in_prefix") or e.get("sha256")
                if isinstance(expected, str):
                    out[e["_path"]].append((str(data["name"]), expected))
    return out
