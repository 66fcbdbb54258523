"""`check`: re-verify every file of the store and say which one is wrong and how; and the few
repairs that lose nothing (a damaged config rewritten, temp files of dead writers removed).

check reads a store even when its config is damaged (that is when it is needed most), and it
repairs nothing unless asked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import constants as C
from .fs import atomic_write
from .pins import PACKAGE_EXTS, sha256_file
from .store import Store, is_hash
from .wheels import check_wheels


@dataclass
class CheckReport:
    objects: int = 0
    snapshots: int = 0
    packages: int = 0
    config: str = ""  # what is wrong with the config file, "" when nothing
    # object ids / packages/<file> with wrong bytes
    corrupt: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (snapshot id, object id)
    missing_pins: list[tuple[str, str]] = field(default_factory=list)  # (snapshot id, sha256)
    wheels: int = 0  # kept pip wheels (wheels.py)
    # (snapshot id, "<sha256>/<file>"): restoring that pip package needs its source
    missing_wheels: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # manifests that cannot be trusted
    why: dict[str, str] = field(default_factory=dict)  # manifest name -> what is wrong
    stray: list[str] = field(default_factory=list)  # files no store write made (left alone)
    leftovers: list[str] = field(default_factory=list)  # temp files of interrupted writes
    repaired: list[str] = field(default_factory=list)  # what --repair changed

    @property
    def ok(self) -> bool:
        return not (self.config or self.corrupt or self.missing or self.unreadable
                    or self.missing_pins or self.missing_wheels)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


def config_problem(root: Path) -> str:
    """What is wrong with the store's config, or ""."""
    path = root / "config"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    try:
        config = json.loads(raw)
        found = config["format"]
    except (ValueError, KeyError, TypeError):
        return "damaged (not a JSON object with a format)"
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        return f"damaged (format {found!r})"
    if found > C.STORE_FORMAT:
        return f"a newer format ({found}) than this conda-safeguard knows ({C.STORE_FORMAT})"
    return ""


def check_store(store: Store, tick: Callable[[], None] | None = None) -> CheckReport:
    """Re-hash every object, package and kept wheel; verify every manifest; report what
    snapshots name but the store lacks. Read-only. `tick` is called per file hashed."""
    tick = tick or (lambda: None)
    report = CheckReport(config=config_problem(store.root))
    present = set()
    for oid in store.iter_object_ids():
        tick()
        report.objects += 1
        present.add(oid)
        if not store.object_intact(oid):
            report.corrupt.append(oid)
    report.stray = store.stray_objects()
    for name, why in store.manifest_problems():
        report.unreadable.append(name)
        report.why[name] = why
    pins_present = _pinned(store)
    for info in store.snapshots():
        report.snapshots += 1
        report.missing += [(info.id, oid) for oid in info.objects.values() if oid not in present]
        report.missing_pins += [(info.id, sha) for sha in info.pins if sha not in pins_present]
    for name in sorted(pins_present.values()):
        tick()
        report.packages += 1
        if sha256_file(store.root / "packages" / name) != name.split(".", 1)[0]:
            report.corrupt.append(f"packages/{name}")
    damaged_wheels, wheels_present = check_wheels(store, tick)
    report.wheels = len(wheels_present)
    report.corrupt += damaged_wheels
    report.missing_wheels = [(info.id, ref) for info in store.snapshots()
                             for ref in info.wheels.values() if ref not in wheels_present]
    report.leftovers = [str(p.relative_to(store.root)) for p in temp_files(store)]
    return report


def _pinned(store: Store) -> dict[str, str]:
    """sha256 -> file name of the package files in packages/ (regular files only)."""
    out: dict[str, str] = {}
    directory = store.root / "packages"
    if not directory.is_dir() or directory.is_symlink():
        return out
    with os.scandir(directory) as it:
        for entry in it:
            sha, dot, ext = entry.name.partition(".")
            if is_hash(sha) and dot and f".{ext}" in PACKAGE_EXTS and \
                    entry.is_file(follow_symlinks=False):
                out[sha] = entry.name
    return out


def temp_files(store: Store) -> list[Path]:
    """Temp files (`.tmp-*`) of writes that did not finish, in every folder the store writes."""
    folders = [store.root, store.root / "snapshots", store.root / "packages",
               store.root / "wheels", store.root / "cache"]
    objects = store.root / "objects"
    if objects.is_dir() and not objects.is_symlink():
        folders += sorted(p for p in objects.iterdir() if p.is_dir() and not p.is_symlink())
    out = []
    for folder in folders:
        if folder.is_dir() and not folder.is_symlink():
            out += sorted(p for p in folder.iterdir() if p.name.startswith(".tmp-"))
    return out


def remove_temp_files(store: Store) -> list[str]:
    """Delete temp files of dead writers. Call only under the store's exclusive lock: every
    writer holds the shared lock while its temp files exist, so none is in use then."""
    removed = []
    for path in temp_files(store):
        if path.is_file() or path.is_symlink():
            try:
                path.unlink()
            except PermissionError:
                continue  # a team store member's, in a sticky folder: theirs to remove
            removed.append(str(path.relative_to(store.root)))
    return removed


def repair_config(root: Path) -> str:
    """Rewrite a damaged config, keeping every field of the old one that still reads. Returns
    what was done ("" when the config was fine). A newer format is never rewritten."""
    problem = config_problem(root)
    if not problem:
        return ""
    if problem.startswith("a newer format"):
        from .exceptions import StoreError

        raise StoreError(f"Not repairing the config of {root}: it is {problem}. Upgrade "
                         "conda-safeguard instead.")
    old: dict[str, Any] = {}
    try:
        loaded = json.loads((root / "config").read_bytes())
        old = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass  # nothing of the old config reads: start from the defaults
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {"created": now, "tool": C.APP_NAME, **old, "format": C.STORE_FORMAT,
              "repaired": now}
    atomic_write(root / "config", json.dumps(config, indent=2).encode() + b"\n")
    return f"config was {problem}: rewrote it (format {C.STORE_FORMAT}, {len(old)} fields kept)"
