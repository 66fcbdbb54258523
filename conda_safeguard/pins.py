"""Package pins: the store keeps each package tarball a snapshot needs, once.

A hardlink on the same filesystem costs no bytes and survives `conda clean --all` (conda skips
or deletes only its own names). Pins are named by the package's sha256; a file is pinned only
after its bytes were checked against that hash, so a pin is what its name says.

Where package files are found (`tarball_for`): the record's own `package_tarball_full_path`
(conda writes it), the folder next to `extracted_package_dir` / `link.source` (conda and
rattler write these; rattler's own cache holds no tarballs), conda's package caches
(`find_pkgs_dirs`), and the record's URL when it is a `file://` channel still on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from .suggest import listing, plural

if TYPE_CHECKING:
    from .condarc import Settings
    from .prefix import CondaRecord
    from .snapshot import EnvState, SnapshotInfo
    from .store import Store

log = logging.getLogger(f"conda.{__name__}")

#: From this many new package files on, pinning says so (a first backup of a big env).
PIN_NOTE_FROM = 50

PACKAGE_EXTS = (".conda", ".tar.bz2")
Progress = Callable[[str], None]


def pin_path(store: Store, record: CondaRecord) -> Path:
    ext = ".conda" if record.fn.endswith(".conda") else ".tar.bz2"
    return store.root / "packages" / f"{record.sha256}{ext}"


def existing_pin(store: Store, record: CondaRecord) -> Path | None:
    if not record.sha256:
        return None
    path = pin_path(store, record)
    return path if path.is_file() else None


def check_pins(store: Store) -> tuple[list[str], int]:
    """Re-hash every pinned package; returns (corrupt names, count)."""
    directory = store.root / "packages"
    if not directory.is_dir():
        return [], 0
    corrupt, count = [], 0
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".tmp-") or not path.name.endswith(PACKAGE_EXTS):
            continue
        count += 1
        expected = path.name.split(".", 1)[0]
        if sha256_file(path) != expected:
            corrupt.append(f"packages/{path.name}")
    return corrupt, count


def sha256_file(path: Path) -> str:
    return hash_file(path, "sha256")


def hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_matches(path: Path, record: CondaRecord) -> bool:
    """The file holds exactly the package the record names (size, then sha256 or md5)."""
    try:
        if record.size is not None and path.stat().st_size != record.size:
            return False
        if record.sha256:
            return sha256_file(path) == record.sha256
        if record.md5:
            return hash_file(path, "md5") == record.md5
    except OSError:
        return False
    return False  # nothing to check it against: not trusted


def link_or_copy(src: Path, dst: Path) -> bool:
    """Place `src` at `dst` (atomically); True when it is a hardlink, False when copied."""
    tmp = dst.with_name(f".tmp-{dst.name}.{os.getpid()}")
    linked = True
    try:
        os.link(src, tmp)
    except FileExistsError:
        os.unlink(tmp)
        os.link(src, tmp)
    except OSError:
        linked = False
        try:
            shutil.copyfile(src, tmp)
        except BaseException:  # disk full half-way: leave no partial copy behind
            tmp.unlink(missing_ok=True)
            raise
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return linked


def named_link(path: Path, directory: Path, fn: str) -> Path:
    """`path` under its package file name `fn` in `directory` (a hardlink, else a copy).

    conda-package-handling finds the parts of a `.conda` archive by its file name
    (`info-<name-version-build>.tar.zst`): a pin named by its sha256 cannot be unpacked by it
    (`LookupError: didn't find info-<sha256> component`), so pins are offered to unpackers
    and to conda under the name they had in the channel."""
    if not fn or os.sep in fn or fn in (".", "..") or not fn.endswith(PACKAGE_EXTS):
        raise ValueError(f"not a package file name: {fn!r}")
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / fn
    if path.name != fn or path.parent != directory:
        link_or_copy(path, dest)
    return dest


# ---------------------------------------------------------------------------------------------
# where conda keeps package files


def find_pkgs_dirs(condarc: dict[str, Any] | None = None, root_prefix: Path | None = None,
                   environ: dict[str, str] | None = None) -> list[Path]:
    """conda's package caches, in conda's order.

    Inside conda (the plugin), conda's own `context.pkgs_dirs`; otherwise CONDA_PKGS_DIRS, else
    `pkgs_dirs` from .condarc, else `<root>/pkgs` and `~/.conda/pkgs` (conda's defaults).
    """
    ctx_module = sys.modules.get("conda.base.context")  # only if conda is already loaded
    if ctx_module is not None:
        try:
            return _unique(Path(p) for p in ctx_module.context.pkgs_dirs)
        except (AttributeError, TypeError):
            log.debug("conda's context has no pkgs_dirs; reading .condarc instead")
    environ = dict(os.environ) if environ is None else environ
    if condarc is None or root_prefix is None:
        from .condarc import condarc_paths, read_condarc
        from .envs import find_root_prefix

        root_prefix = root_prefix or find_root_prefix(environ)
        condarc = read_condarc(condarc_paths(root_prefix)) if condarc is None else condarc
    raw = environ.get("CONDA_PKGS_DIRS")
    if raw:
        return _unique(_expand(p) for p in raw.split(",") if p.strip())
    configured = condarc.get("pkgs_dirs")
    if isinstance(configured, list) and configured:
        return _unique(_expand(str(p)) for p in configured)
    defaults = [root_prefix / "pkgs"] if root_prefix is not None else []
    return _unique([*defaults, Path.home() / ".conda" / "pkgs"])


def _expand(p: str) -> Path:
    return Path(os.path.abspath(os.path.expandvars(os.path.expanduser(p.strip()))))


def _unique(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p not in out:
            out.append(p)
    return out


def url_path(url: str) -> Path | None:
    """The local path of a file:// URL, else None."""
    if not url.startswith("file:"):
        return None
    return Path(unquote(urlparse(url).path))


def tarball_candidates(record: CondaRecord, pkgs_dirs: Iterable[Path] | None = ()) -> list[Path]:
    """Where the record's package file may be, most specific first (none checked yet): the
    record's own paths, then conda's package caches, then a file:// channel. `pkgs_dirs` None:
    the record's own paths only."""
    out: list[Path] = []
    if record.package_tarball_full_path:
        out.append(Path(record.package_tarball_full_path))
    if record.fn and record.extracted_package_dir:
        out.append(Path(record.extracted_package_dir).parent / record.fn)
    if pkgs_dirs is not None and record.fn:
        out += [Path(d) / record.fn for d in pkgs_dirs]
        local = url_path(record.url)
        if local is not None:
            out.append(local)
    return _unique(out)


def tarball_for(record: CondaRecord, pkgs_dirs: Iterable[Path] | None = None, *,
                verify: bool = True) -> Path | None:
    """The package file `record` was installed from, if one with the right bytes is on disk.

    Only files named like the record's `fn` are considered: a `.conda` and a `.tar.bz2` of the
    same package are different files with different hashes. `pkgs_dirs` None: conda's package
    caches (`find_pkgs_dirs`), looked up only when the record's own paths fail.
    """
    own = tarball_candidates(record, None)
    for path in own:
        if path.is_file() and (not verify or file_matches(path, record)):
            return path
    dirs = find_pkgs_dirs() if pkgs_dirs is None else pkgs_dirs
    for path in tarball_candidates(record, dirs):
        if path not in own and path.is_file() and (not verify or file_matches(path, record)):
            return path
    return None


# ---------------------------------------------------------------------------------------------
# pinning


@dataclass
class PinReport:
    pinned: list[str] = field(default_factory=list)  # sha256s now in the store
    linked: int = 0  # new hardlinks
    copied: int = 0  # new copies (another filesystem)
    bytes_copied: int = 0
    not_kept: list[str] = field(default_factory=list)  # "dist (why)"
    over_budget: list[str] = field(default_factory=list)  # dists a copy would pass the budget
    over_budget_bytes: int = 0


def copied_bytes(store: Store) -> int:
    """Bytes the store's pins use on their own (files no other name links to)."""
    total = 0
    directory = store.root / "packages"
    if directory.is_dir():
        with os.scandir(directory) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if st.st_nlink == 1 and not entry.name.startswith(".tmp-"):
                    total += st.st_size
    return total


def pin_records(store: Store, records: list[CondaRecord], *, mode: str, budget_bytes: int,
                pkgs_dirs: list[Path] | None = None, progress: Progress | None = None,
                ) -> PinReport:
    """Keep the package file of each record in the store, once per file.

    mode `auto`: hardlink; across filesystems copy while the store's copies stay within
    `budget_bytes`; `always`: copy without a budget; `never`: nothing.
    """
    report = PinReport()
    if mode == "never":
        return report
    directory = store.root / "packages"
    directory.mkdir(exist_ok=True, mode=0o700)
    todo = []
    for record in records:
        if not record.sha256:
            report.not_kept.append(f"{record.dist_str} (its record has no sha256)")
        elif pin_path(store, record).exists():
            report.pinned.append(record.sha256)
        else:
            todo.append(record)
    if todo:  # a long job is worth a line; a few files on every install are noise
        say = progress if progress is not None and len(todo) >= PIN_NOTE_FROM else log.info
        say(f"pinning {plural(len(todo), 'package file')} into {directory}")
    spent: int | None = None  # the store's copied bytes, counted on first need
    dirs = pkgs_dirs
    for record in todo:
        src = next((p for p in tarball_candidates(record, None)  # its own paths: no config read
                    if p.is_file() and file_matches(p, record)), None)
        if src is None:
            dirs = find_pkgs_dirs() if dirs is None else dirs
            src = tarball_for(record, dirs)
        if src is None:
            report.not_kept.append(f"{record.dist_str} (no package file with its sha256 in "
                                   "the package caches)")
            continue
        dst = pin_path(store, record)
        try:
            os.link(src, dst)
            report.linked += 1
        except FileExistsError:
            pass
        except OSError:
            size = src.stat().st_size
            if spent is None:
                spent = copied_bytes(store)
            if mode == "auto" and spent + size > budget_bytes:
                report.not_kept.append(
                    f"{record.dist_str} (another filesystem: a {size / 1e6:.1f} MB copy would "
                    f"pass the pin budget of {budget_bytes >> 20} MB)")
                report.over_budget.append(record.dist_str)
                report.over_budget_bytes += size
                continue
            link_or_copy(src, dst)
            spent += size
            report.copied += 1
            report.bytes_copied += size
        report.pinned.append(record.sha256)
    return report


def pinner(settings: Settings, *, pkgs_dirs: list[Path] | None = None,
           progress: Progress | None = None) -> Callable[[Store, EnvState], list[str]] | None:
    """The pin step backup() runs, per the safeguard_keep_packages setting.

    Packages a copy would have kept past the budget are named in a warning; packages with no
    file in any cache are logged (`conda -v`) and show as "needs channel" in `list`.
    """
    if settings.keep_packages == "never":
        return None

    def pin(store: Store, state: EnvState) -> list[str]:
        report = pin_records(store, state.packages, mode=settings.keep_packages,
                             budget_bytes=settings.pin_budget_mb << 20, pkgs_dirs=pkgs_dirs,
                             progress=progress)
        if report.over_budget:  # one short line, however many packages
            log.warning(
                "conda-safeguard: %s (%.1f MB) not kept for offline restore: the package cache "
                "is on another filesystem and copies would pass the pin budget of %d MB (%s). "
                "To keep them: conda config --set plugins.safeguard_pin_budget_mb %d",
                plural(len(report.over_budget), "package file"), report.over_budget_bytes / 1e6,
                settings.pin_budget_mb, listing(report.over_budget, 3),
                settings.pin_budget_mb + (report.over_budget_bytes >> 20) + 1)
        for line in report.not_kept:
            log.info("not pinned: %s", line)
        return report.pinned

    return pin


def offline_restorable(store: Store, info: SnapshotInfo,
                       present: set[str] | None = None) -> bool:
    """Every conda package of the snapshot has its file pinned in the store.

    `present`: the names in packages/ (pass it when asking for many snapshots).
    """
    needed = set(info.pins)
    if not needed or len(needed) < info.counts.get("conda", 0):
        return info.counts.get("conda", 0) == 0
    if present is None:
        present = pinned_names(store)
    return all(f"{sha}.conda" in present or f"{sha}.tar.bz2" in present for sha in needed)


def pinned_names(store: Store) -> set[str]:
    try:
        return set(os.listdir(store.root / "packages"))
    except FileNotFoundError:
        return set()
