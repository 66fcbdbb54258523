"""Reusing the unchanged packages of an env that a restore replaces.

An undo of a one-package change should cost what conda takes to change one package, not a
rebuild of the whole env. So the new env is seeded with the packages the old env and the
snapshot have in common (same name, version, build and package hash): their files are
hardlinked from the old env (the old env keeps its own links, so it stays whole until the
transaction removes it), their conda-meta records copied; the installer then adds only the
packages that differ.

A package is reused only when every file its record lists is there and, where the record
gives a sha256, has it: a damaged or hand-edited file makes the package count as changed, so
the installer puts a fresh copy in (a restore still repairs an env). Records without
paths_data (written with conda's safety checks disabled) cannot be checked and are
reinstalled. The old env's records are untrusted input: a path that is absolute, climbs out
with `..`, or reaches through a symlinked folder is not followed and its package is
reinstalled. Symlinks are made last, so nothing is ever written through one.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .exceptions import CorruptEnvError
from .prefix import CondaRecord, paths_in_prefix, record_files, record_from_json
from .suggest import plural
from .verify import _COMPILED_TYPES, Checked, _sha256, same_package, stamp

WORKERS = min(4, (os.cpu_count() or 2) * 2)


@dataclass
class Reused:
    """What a seeded env took over from the env it replaces."""

    packages: list[str] = field(default_factory=list)  # names, seeded
    files: int = 0  # files linked (every one with a recorded hash checked first)
    unhashed: int = 0  # of them, made at install time (.pyc, entry points): no hash to check
    rejected: list[str] = field(default_factory=list)  # "name: why": installed afresh
    checked: Checked = field(default_factory=dict)  # files hashed here: verify needn't again
    # conda package cache folder -> "name: why", for a file edited in place in the env (one
    # inode, hardlinked with the cache's copy): the installer would link the edited bytes again
    damaged_cache: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        checked = "checked" if not self.unhashed else \
            f"{self.files - self.unhashed} checked, {self.unhashed} made at install time " \
            "(.pyc, entry points) with no recorded hash to check"
        kept = f"kept {plural(len(self.packages), 'unchanged package')} " \
            f"({plural(self.files, 'file')}, {checked}) from the env being replaced"
        if not self.rejected:
            return kept
        n = len(self.rejected)
        return (f"{kept}; {n} could not be kept and {'is' if n == 1 else 'are'} installed "
                f"afresh ({'; '.join(self.rejected[:3])}{' …' if n > 3 else ''})")


@dataclass
class _Entry:
    rel: str
    kind: str  # "file" | "softlink" | "directory"
    sha256: str | None  # what the file must hash to (None: nothing recorded, e.g. a .pyc)


@dataclass
class _Package:
    name: str
    record_file: str  # conda-meta/<name>-<version>-<build>.json
    entries: list[_Entry]
    cached: Path | None = None  # the conda cache folder it would be installed from
    edited_cache: bool = False  # a file of it was edited in place, changing that folder too


def _safe_rel(rel: object) -> str | None:
    """A record's path as a plain relative path inside the prefix, or None."""
    if not isinstance(rel, str) or not rel or "\0" in rel or rel.startswith(("/", "\\")):
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts) or rel == "conda-meta" or \
            parts[0] == "conda-meta":
        return None
    return rel


def _entries(data: dict[str, Any]) -> list[_Entry] | str:
    """The files of one record as paths_data lists them, or why they cannot be reused."""
    paths = paths_in_prefix(data)  # noarch: python paths as linked, not as packaged
    files = data.get("files") or []
    if not isinstance(data.get("paths_data"), dict) or not isinstance(files, list):
        return "its record is malformed"
    if files and not paths:
        return "its record has no paths_data (written with conda's safety checks disabled)"
    out, listed = [], set()
    for e in paths:
        rel = _safe_rel(e.get("_path")) if isinstance(e, dict) else None
        if rel is None:
            return "its record names a path outside the env"
        listed.add(rel)
        kind = e.get("path_type", "hardlink")
        if kind == "directory":
            out.append(_Entry(rel, "directory", None))
        elif kind == "softlink":
            out.append(_Entry(rel, "softlink", None))
        else:
            expected = e.get("sha256_in_prefix") or e.get("sha256")
            if not expected and kind not in _COMPILED_TYPES:
                return f"{rel} has no recorded sha256"
            out.append(_Entry(rel, "file", expected if isinstance(expected, str) else None))
    if any(f not in listed for f in files if isinstance(f, str)):
        return "its record lists files that paths_data does not"
    return out


class _Inside:
    """Why a folder under the old prefix is reached through a symlink, or None. One that
    leaves the env is never followed; one inside it (lib64 -> lib) would become a real folder
    in the new env, since symlinks are made last, and the env would change shape."""

    def __init__(self, old: Path) -> None:
        self.old = os.path.abspath(old)
        self.root = os.path.realpath(old)
        self.known: dict[str, str | None] = {}

    def __call__(self, folder: str) -> str | None:
        if folder not in self.known:
            real = os.path.realpath(folder)
            plain = os.path.normpath(os.path.join(self.root, os.path.relpath(folder, self.old)))
            self.known[folder] = None if real == plain else \
                "a symlinked folder in the env" if real.startswith(self.root + os.sep) else \
                "a symlink that leaves the env"
        return self.known[folder]


# a path two packages list (conda's clobbering: the one linked last owns the file) -> each
# package's expected sha256 of it
Claims = dict[str, dict[str, str]]


def _claims(packages: list[_Package]) -> Claims:
    claims: Claims = {}
    for pkg in packages:
        for e in pkg.entries:
            if e.kind == "file" and e.sha256 is not None:
                claims.setdefault(e.rel, {})[pkg.name] = e.sha256
    return {rel: c for rel, c in claims.items() if len(c) > 1}


def _check(old: Path, pkg: _Package, inside: _Inside, checked: Checked, claims: Claims,
           borrowed: dict[str, set[str]]) -> str | None:
    """Why this package's files in the old env cannot be reused, or None. Records each file
    it hashed in `checked` (the new env links the same inode), and in `borrowed` each file
    that is another package's version of a path both list (by the names it matches)."""
    for e in pkg.entries:
        full = os.path.join(old, e.rel)
        through = inside(os.path.dirname(full))
        if through is not None:
            return f"{e.rel} is reached through {through}"
        if e.kind == "softlink":
            if not os.path.islink(full):
                return f"{e.rel} is not the symlink its record says"
            continue
        if e.kind == "directory":
            if not os.path.isdir(full) or os.path.islink(full):
                return f"{e.rel} is not a folder"
            continue
        try:
            st = os.lstat(full)
        except OSError:
            return f"{e.rel} is missing"
        if not os.path.isfile(full) or os.path.islink(full):
            # a hardlink-type file conda softlinked (allow_softlinks): reinstall, don't guess
            return f"{e.rel} is not a regular file"
        if e.sha256 is not None:
            try:
                actual = _sha256(full, st.st_size)
            except OSError as err:
                return f"{e.rel} is unreadable ({err.strerror})"
            if actual != e.sha256:
                owners = {n for n, h in claims.get(e.rel, {}).items()
                          if n != pkg.name and h == actual}
                if not owners:
                    pkg.edited_cache = _same_as_cache(pkg, e.rel, st)
                    return f"{e.rel} differs from its recorded sha256" + (
                        f" (edited in place: it is the same file as conda's package cache "
                        f"copy in {pkg.cached}, which changed with it)"
                        if pkg.edited_cache else "")
                borrowed[e.rel] = owners  # fine if one of them is kept too
                continue
            checked[e.rel] = stamp(st)
    return None


def _same_as_cache(pkg: _Package, rel: str, st: os.stat_result) -> bool:
    """conda hardlinks files from its package cache: a file edited in place in the env (an
    editor keeping the hardlink) changed the cache's copy too."""
    if pkg.cached is None:
        return False
    try:
        cache = os.lstat(pkg.cached / rel)
    except OSError:
        return False
    return (cache.st_dev, cache.st_ino) == (st.st_dev, st.st_ino)


def _link(src: str, dest: str) -> None:
    try:
        os.link(src, dest, follow_symlinks=False)
    except FileExistsError:
        pass  # two packages list one path (conda's clobbering): the first stays
    except OSError:  # another filesystem, a link count limit: a copy does the same job
        shutil.copy2(src, dest)


def _place(old: Path, new: Path, pkg: _Package, report: Reused) -> None:
    """Link one checked package's files and folders into `new` (symlinks come later)."""
    for e in pkg.entries:
        dest = os.path.join(new, e.rel)
        if e.kind == "directory":
            os.makedirs(dest, exist_ok=True)
        elif e.kind == "file":
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            _link(os.path.join(old, e.rel), dest)
            report.files += 1
            report.unhashed += e.sha256 is None
    shutil.copy2(old / "conda-meta" / pkg.record_file, new / "conda-meta" / pkg.record_file)


def _symlinks(old: Path, new: Path, pkg: _Package) -> None:
    for e in pkg.entries:
        if e.kind == "softlink":
            dest = os.path.join(new, e.rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if not os.path.lexists(dest):
                os.symlink(os.readlink(os.path.join(old, e.rel)), dest)


def reusable(old_records: list[CondaRecord], wanted: dict[str, CondaRecord]) -> set[str]:
    """Names of the packages the old env has exactly as the snapshot does (by package hash).

    A noarch: python package is linked into its python's site-packages
    (lib/python3.12/site-packages): it is kept only where the snapshot's python has the same
    major.minor as the old env's, else it would stay in a folder the restored python ignores."""
    old_python = next((r for r in old_records if r.name == "python"), None)
    new_python = wanted.get("python")
    same_site = old_python is not None and new_python is not None and \
        _minor(old_python.version) == _minor(new_python.version)
    return {r.name for r in old_records
            if r.name in wanted and same_package(wanted[r.name], r)
            and (r.noarch != "python" or same_site)}


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def seed(old: Path, new: Path, wanted: dict[str, CondaRecord],
         cached: dict[str, Path] | None = None) -> Reused:
    """Fill `new` (an empty folder we made) with the packages `wanted` (name -> the snapshot's
    record) of the env at `old`, each checked file by file first. Returns what was taken and
    what was not. `cached`: the conda cache folder each would otherwise be installed from."""
    report = Reused()
    packages: list[_Package] = []
    for entry in record_files(old):
        try:
            with open(entry.path, "rb") as f:
                data = json.loads(f.read())
            name = data.get("name") if isinstance(data, dict) else None
            if name not in wanted:
                continue
            if not same_package(wanted[name], record_from_json(data, Path(entry.path))):
                # the env changed since the plan was made (a conda command, a rolled-back restore)
                report.rejected.append(f"{name}: it is no longer the snapshot's build")
                continue
        except (OSError, ValueError, CorruptEnvError):
            continue
        found = _entries(data)
        if isinstance(found, str):
            report.rejected.append(f"{name}: {found}")
        else:
            packages.append(_Package(str(name), entry.name, found,
                                     (cached or {}).get(str(name))))
    inside = _Inside(old)
    claims = _claims(packages)
    borrowed: list[dict[str, set[str]]] = [{} for _ in packages]
    with ThreadPoolExecutor(WORKERS) as pool:  # reading and hashing: the GIL is released
        parts: list[Checked] = [{} for _ in packages]
        problems = list(pool.map(
            lambda i: _check(old, packages[i], inside, parts[i], claims, borrowed[i]),
            range(len(packages))))
    # a file that is another package's version is right only if that package is kept too
    kept = {p.name for p, problem in zip(packages, problems, strict=True) if problem is None}
    while True:
        dropped = [(i, rel) for i, p in enumerate(packages) if p.name in kept
                   for rel, owners in borrowed[i].items() if not owners & kept]
        if not dropped:
            break
        for i, rel in dropped:
            kept.discard(packages[i].name)
            problems[i] = problems[i] or f"{rel} is the version of a package that is not kept"
    good = []
    for pkg, problem, part in zip(packages, problems, parts, strict=True):
        if problem is None:
            good.append(pkg)
        else:
            part.clear()  # not linked: nothing of it to vouch for
            report.rejected.append(f"{pkg.name}: {problem}")
            if pkg.edited_cache:
                report.damaged_cache[str(pkg.cached)] = f"{pkg.name}: {problem}"
    meta = new / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    history = old / "conda-meta" / "history"
    if history.is_file() and not history.is_symlink():
        shutil.copy2(history, meta / "history")  # conda knows an env by it
    else:
        (meta / "history").touch()
    for pkg in good:
        _place(old, new, pkg, report)
        report.packages.append(pkg.name)
    for part in parts:
        report.checked.update(part)
    for pkg in good:  # last: no file of ours is ever written through a symlink
        _symlinks(old, new, pkg)
    report.packages.sort()
    report.rejected.sort()
    return report
