"""Kept wheels: each pip package of a snapshot, repacked from its installed files, kept once.

conda packages restore offline from their pins (pins.py); a pip package otherwise needs its
recorded source (an index, a URL, a folder that may be gone). At backup each plain pip install
(a dist-info with a RECORD, not editable) is repacked into a wheel of exactly the files its
RECORD lists, stored under the sha256 of the wheel:

    wheels/<sha256>/<name>-<version>-<tag>.whl

pip finds a wheel by its file name, so each keeps its own name in a folder named by its hash;
restore runs `pip install --no-index --find-links wheels/<sha256> -- name==version` (a
find-links install, unlike a path, records no direct_url.json pointing into the store: the
one kept from the original install comes back). A dist whose RECORD is unchanged is not
repacked: `cache/wheels.json` maps each RECORD's sha256 to the wheel made from it.

Inside the wheel: the files under site-packages at its root; the dist-info as installed, its
RECORD rewritten for what the zip holds; files in `bin/` under `<dist>.data/scripts/` (a
`#!<env>/bin/python...` shebang as `#!python`, which pip points at the python it installs
with) except the console and GUI scripts of entry_points.txt: pip writes those itself for the
env it installs into, and a kept copy would name the old env's python; other files of the env
under `<dist>.data/data/` (installed relative to the env). `__pycache__` is left out: pip
compiles it again. RECORD is untrusted input: a path that leaves the env (`../../..`, a
symlink out of it) or a listed file that is missing, and the dist is not kept (logged, and the
restore plan falls back to its recorded source).
"""

from __future__ import annotations

import base64
import configparser
import csv
import hashlib
import io
import logging
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .fs import commit_file
from .store import is_hash, is_wheel_ref
from .suggest import listing, plural

if TYPE_CHECKING:
    from .condarc import Settings
    from .prefix import PipDist
    from .snapshot import EnvState, SnapshotInfo
    from .store import Store

log = logging.getLogger(f"conda.{__name__}")

CACHE_NAME = "wheels.json"
#: Fast over small: a repack runs inside a conda command's pre-command backup.
COMPRESS_LEVEL = 1
#: Fixed zip timestamps: the same files always make the same wheel (and the same sha256).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
COMPILED = (".so", ".pyd", ".dylib", ".dll")
#: From this installed size on, a repack says so (it takes a second or more).
NOTE_FROM_BYTES = 50 << 20
Progress = Callable[[str], None]
_TAG_PART = re.compile(r"^[A-Za-z0-9_.]+$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")


class NotPackable(Exception):
    """Why a dist is not kept as a wheel (said in the backup's log)."""


def wheels_dir(store: Store) -> Path:
    return store.root / "wheels"


def wheel_file(store: Store, ref: str) -> Path:
    if not is_wheel_ref(ref):
        raise ValueError(f"not a kept wheel: {ref!r}")
    return wheels_dir(store) / ref


# ---------------------------------------------------------------------------------------------
# repacking


@dataclass
class Packed:
    entries: list[tuple[str, Path]]  # (name in the wheel, file in the env), no RECORD
    dist_info: str  # folder name
    tag: str
    size: int  # bytes of the installed files


def plan_wheel(prefix: Path, dist: PipDist) -> Packed:
    """What the wheel of `dist` holds, checked against the env; raises NotPackable."""
    if dist.editable:
        raise NotPackable("an editable install (its code lives in its source folder)")
    anchor = dist.anchor.removesuffix("/RECORD")
    if not anchor.endswith(".dist-info"):
        raise NotPackable("installed without a dist-info (no RECORD of its files)")
    info = prefix / anchor
    site = info.parent
    root = os.path.realpath(prefix)
    try:
        text = (info / "RECORD").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise NotPackable(f"its RECORD cannot be read ({e})") from None
    scripts = _entry_point_scripts(info)
    data = f"{info.name.removesuffix('.dist-info')}.data"
    entries: dict[str, Path] = {}
    size = 0
    for row in csv.reader(io.StringIO(text)):
        if not row or not row[0]:
            continue
        full = Path(os.path.normpath(os.path.join(site, row[0])))
        in_site = os.path.relpath(full, site).replace(os.sep, "/")
        in_env = os.path.relpath(full, prefix).replace(os.sep, "/")
        if in_env.startswith("../") or in_env == ".." or os.path.isabs(row[0]) or \
                not os.path.realpath(full).startswith(root + os.sep):
            raise NotPackable(f"its RECORD names {row[0]!r}, outside the env: not followed")
        if "__pycache__/" in in_env or in_env.endswith((".pyc", ".pyo")):
            continue  # regenerated by pip on install
        if in_site == f"{info.name}/RECORD":
            continue  # written anew for the wheel
        if not in_site.startswith("../"):
            name = in_site
        elif in_env.startswith("bin/") and "/" not in in_env[4:]:
            if in_env[4:] in scripts:
                continue  # pip writes it from entry_points.txt for the env it installs into
            name = f"{data}/scripts/{in_env[4:]}"
        else:
            name = f"{data}/data/{in_env}"
        try:
            st = os.stat(full)
        except OSError:
            raise NotPackable(f"{in_env} (in its RECORD) is missing") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotPackable(f"{in_env} (in its RECORD) is not a file")
        entries[name] = full
        size += st.st_size
    if f"{info.name}/METADATA" not in entries:
        raise NotPackable("its RECORD does not list its METADATA")
    return Packed(sorted(entries.items()), info.name, _tag(info, entries), size)


def _entry_point_scripts(info: Path) -> set[str]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # script names keep case
    try:
        parser.read_string((info / "entry_points.txt").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error):
        return set()
    return {name.strip() for section in ("console_scripts", "gui_scripts")
            if parser.has_section(section) for name in parser.options(section)}


def _tag(info: Path, entries: dict[str, Path]) -> str:
    """The wheel tag from the dist's WHEEL file (several tags compressed, as wheel files name
    them); py3-none-any only for a dist with no WHEEL file and no compiled file."""
    try:
        lines = (info / "WHEEL").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    tags = [line.split(":", 1)[1].strip().split("-") for line in lines
            if line.lower().startswith("tag:")]
    tags = [t for t in tags if len(t) == 3 and all(map(_TAG_PART.match, t))]
    if tags:
        return "-".join(".".join(dict.fromkeys(t[i] for t in tags)) for i in range(3))
    if any(name.endswith(COMPILED) for name in entries):
        raise NotPackable("it has compiled files and no WHEEL file naming their platform")
    return "py3-none-any"


def wheel_name(dist: PipDist, tag: str) -> str:
    version = dist.version.replace("-", "_")
    if not _VERSION.match(version):
        raise NotPackable(f"its version {dist.version!r} cannot name a wheel")
    return f"{re.sub(r'[-_.]+', '_', dist.name)}-{version}-{tag}.whl"


def write_wheel(prefix: Path, packed: Packed, out: Path) -> None:
    """Zip `packed` into `out`, reproducibly (same files, same bytes), a file at a time: a
    large shared library is streamed, never held in memory."""
    python_dirs = tuple(os.path.join(os.path.realpath(prefix), d) for d in ("bin", "python"))
    rows = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        def add(name: str, data: bytes, mode: int) -> None:
            zf.writestr(_entry(name, mode), data)
            rows.append((name, _record_hash(hashlib.sha256(data)), str(len(data))))

        for name, path in packed.entries:
            st = os.stat(path)
            if "/scripts/" in name:  # small: its shebang may be rewritten
                with open(path, "rb") as f:
                    add(name, _portable_shebang(f.read(), python_dirs), st.st_mode)
                continue
            h, size = hashlib.sha256(), 0
            with open(path, "rb") as src, zf.open(_entry(name, st.st_mode), "w",
                                                  force_zip64=st.st_size > 1 << 30) as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):  # noqa: B023
                    h.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
            rows.append((name, _record_hash(h), str(size)))
        if f"{packed.dist_info}/WHEEL" not in dict(packed.entries):
            add(f"{packed.dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: conda-safeguard\n"
                b"Root-Is-Purelib: true\nTag: py3-none-any\n", 0o644)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(
            [*rows, (f"{packed.dist_info}/RECORD", "", "")])
        zf.writestr(_entry(f"{packed.dist_info}/RECORD", 0o644), buf.getvalue().encode())


def _entry(name: str, mode: int) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name, ZIP_TIME)
    zi.external_attr = ((mode & 0o777) | stat.S_IFREG) << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    # the level writestr and open("w") compress an entry with (public from Python 3.13 on)
    setattr(zi, "compress_level" if hasattr(zi, "compress_level") else "_compresslevel",
            COMPRESS_LEVEL)
    return zi


def _record_hash(h: Any) -> str:
    return "sha256=" + base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _portable_shebang(data: bytes, python_dirs: tuple[str, ...]) -> bytes:
    """`#!<this env>/bin/python3.11 …` -> `#!python …`: pip writes the python it installs with."""
    if not data.startswith(b"#!"):
        return data
    first, nl, rest = data.partition(b"\n")
    interpreter = first[2:].strip().split(b" ", 1)
    path = os.fsdecode(interpreter[0])
    if os.path.basename(path).startswith("python") and \
            os.path.realpath(path).startswith(python_dirs):
        tail = b" " + interpreter[1] if len(interpreter) > 1 else b""
        return b"#!python" + tail + nl + rest
    return data


# ---------------------------------------------------------------------------------------------
# keeping


@dataclass
class WheelReport:
    kept: dict[str, str] = field(default_factory=dict)  # pip name -> "<sha256>/<file>"
    packed: int = 0  # wheels made by this backup
    bytes_added: int = 0
    not_kept: list[str] = field(default_factory=list)  # "name (why)"
    over_budget: list[str] = field(default_factory=list)
    over_budget_bytes: int = 0


def kept_bytes(store: Store) -> int:
    """Bytes the store's kept wheels take (one listing of wheels/, one stat per wheel)."""
    total = 0
    for _sha, path in wheel_files(store):
        total += path.stat().st_size
    return total


def wheel_files(store: Store) -> list[tuple[str, Path]]:
    """(sha256, path) of each kept wheel: a `.whl` regular file in a hash-named folder."""
    directory = wheels_dir(store)
    if not directory.is_dir() or directory.is_symlink():
        return []
    out = []
    for sub in sorted(directory.iterdir()):
        if not is_hash(sub.name) or sub.is_symlink() or not sub.is_dir():
            continue
        for path in sorted(sub.iterdir()):
            if is_wheel_ref(f"{sub.name}/{path.name}") and not path.is_symlink() and path.is_file():
                out.append((sub.name, path))
    return out


def keep_wheels(store: Store, prefix: Path, dists: Iterable[PipDist], *,
                budget_bytes: int | None, progress: Progress | None = None) -> WheelReport:
    """Keep a wheel of each plain pip install of `prefix` in the store, once per RECORD.

    `budget_bytes` None: no budget. Otherwise a dist whose installed size would take the kept
    wheels past it is not packed (the installed size bounds the zip's). `progress` hears of
    each repack big enough to be felt (it runs once, inside a conda command's backup)."""
    report = WheelReport()
    cache = store.read_cache(CACHE_NAME)
    found = cache.get("by_record")
    by_record: dict[str, Any] = found if isinstance(found, dict) else {}
    spent: int | None = None
    changed = False
    for dist in dists:
        try:
            record = _record_sha(prefix, dist)
            cached = by_record.get(record)
            if isinstance(cached, str) and is_wheel_ref(cached) and \
                    wheel_file(store, cached).is_file():
                report.kept[dist.name] = cached
                continue
            packed = plan_wheel(prefix, dist)
            name = wheel_name(dist, packed.tag)
            if budget_bytes is not None:
                spent = kept_bytes(store) if spent is None else spent
                if spent + packed.size > budget_bytes:
                    report.over_budget.append(f"{dist.name}=={dist.version}")
                    report.over_budget_bytes += packed.size
                    report.not_kept.append(f"{dist.name} (over the wheel budget)")
                    continue
            if progress is not None and packed.size >= NOTE_FROM_BYTES:
                progress(f"keeping pip package {dist.name} {dist.version} as a wheel for "
                         f"offline restore ({packed.size / 1e6:.0f} MB, once)")
            ref, added = _store_wheel(store, prefix, packed, name)
        except NotPackable as e:
            report.not_kept.append(f"{dist.name} ({e})")
            continue
        report.kept[dist.name] = ref
        by_record[record] = ref
        changed = True
        if added:
            report.packed += 1
            report.bytes_added += added
            spent = None if spent is None else spent + added
    if changed:
        try:
            store.write_cache(CACHE_NAME, {"by_record": by_record})
        except OSError as e:  # derived: the next backup repacks, nothing is lost
            log.info("could not write the cache %s: %s", CACHE_NAME, e)
    return report


def _record_sha(prefix: Path, dist: PipDist) -> str:
    anchor = dist.anchor.removesuffix("/RECORD")
    try:
        data = (prefix / anchor / "RECORD").read_bytes()
    except OSError:
        raise NotPackable("it has no RECORD of its files") from None
    # the dist-info's name too: two dists listing the same files are still two wheels
    return hashlib.sha256(anchor.encode() + b"\0" + data).hexdigest()


def _store_wheel(store: Store, prefix: Path, packed: Packed, name: str) -> tuple[str, int]:
    """Write the wheel; returns ("<sha256>/<file>", bytes added: 0 when it was there)."""
    directory = wheels_dir(store)
    store._mkdir(directory)
    tmp = directory / f".tmp-{name}.{os.getpid()}"
    try:
        write_wheel(prefix, packed, tmp)
        os.chmod(tmp, store.modes.file)
        sha = _sha256(tmp)
        ref = f"{sha}/{name}"
        dest = directory / ref
        if dest.is_file() and _sha256(dest) == sha:
            tmp.unlink()
            return ref, 0
        store._mkdir(dest.parent)
        size = tmp.stat().st_size
        commit_file(tmp, dest)
        return ref, size
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    from .pins import sha256_file

    return sha256_file(path)


def wheel_keeper(settings: Settings, progress: Progress | None = None,
                 ) -> Callable[[Store, Path, EnvState], dict[str, str]] | None:
    """The wheel step backup() runs: follows safeguard_keep_packages (`never`: none; `always`:
    no budget; `auto`: within safeguard_wheel_budget_mb). Over the budget: one warning line."""
    if settings.keep_packages == "never":
        return None
    budget = None if settings.keep_packages == "always" else settings.wheel_budget_mb << 20

    def keep(store: Store, prefix: Path, state: EnvState) -> dict[str, str]:
        report = keep_wheels(store, prefix, state.pip, budget_bytes=budget, progress=progress)
        if report.over_budget:
            log.warning(
                "conda-safeguard: %s (%.1f MB installed) not kept as wheels for offline "
                "restore: they would pass the wheel budget of %d MB (%s); restoring them needs "
                "their sources. To keep them: conda config --set "
                "plugins.safeguard_wheel_budget_mb %d",
                plural(len(report.over_budget), "pip package"), report.over_budget_bytes / 1e6,
                settings.wheel_budget_mb, listing(report.over_budget, 3),
                settings.wheel_budget_mb + (report.over_budget_bytes >> 20) + 1)
        for line in report.not_kept:
            log.info("no wheel kept: %s", line)
        return report.kept

    return keep


# ---------------------------------------------------------------------------------------------
# restore, check, prune


def kept_wheels(store: Store, info: SnapshotInfo) -> dict[str, Path]:
    """pip name -> the kept wheel of the snapshot that is in the store (not yet re-hashed:
    pip_restore checks it just before pip reads it)."""
    out = {}
    for name, ref in info.wheels.items():
        path = wheel_file(store, ref)
        if path.is_file() and not path.is_symlink():
            out[name] = path
    return out


def wheel_intact(path: Path) -> bool:
    """The wheel's bytes hash to the folder it is kept in."""
    try:
        return _sha256(path) == path.parent.name
    except OSError:
        return False


def check_wheels(store: Store, tick: Callable[[], None] | None = None,
                 ) -> tuple[list[str], set[str]]:
    """Re-hash every kept wheel: (damaged ones as store paths, refs present)."""
    corrupt, present = [], set()
    for sha, path in wheel_files(store):
        if tick is not None:
            tick()
        present.add(f"{sha}/{path.name}")
        if not wheel_intact(path):
            corrupt.append(f"wheels/{sha}/{path.name}")
    return corrupt, present
