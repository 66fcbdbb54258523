"""Package pins: the store keeps each package tarball a snapshot needs, once.

A hardlink on the same filesystem costs no bytes and survives `conda clean --all` (conda skips
or deletes only its own names). Pins are named by the package's sha256.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from .condarc import Settings
    from .prefix import CondaRecord
    from .snapshot import EnvState, SnapshotInfo
    from .store import Store

PACKAGE_EXTS = (".conda", ".tar.bz2")


def pin_path(store: Store, record: CondaRecord) -> Path:
    ext = ".conda" if record.fn.endswith(".conda") else ".tar.bz2"
    return store.root / "packages" / f"{record.sha256}{ext}"


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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def link_or_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".tmp-{dst.name}.{os.getpid()}")
    try:
        os.link(src, tmp)
    except OSError:
        import shutil

        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def tarball_for(record: CondaRecord) -> Path | None:
    """The package file conda (or rattler) installed `record` from, if it is still on disk."""
    candidates = []
    if record.package_tarball_full_path:
        candidates.append(Path(record.package_tarball_full_path))
    if record.extracted_package_dir:
        extracted = Path(record.extracted_package_dir)
        candidates += [extracted.parent / f"{extracted.name}{ext}" for ext in PACKAGE_EXTS]
        if record.fn:
            candidates.append(extracted.parent / record.fn)
    for path in candidates:
        if path.is_file():
            return path
    return None


def pin_records(store: Store, records: list[CondaRecord], *, mode: str, budget_bytes: int,
                ) -> tuple[list[str], list[str]]:
    """Keep the tarball of each record in the store. Returns (pinned sha256s, not kept names).

    mode `auto`: hardlink, or copy while the copies stay within `budget_bytes`; `always`: no
    budget; `never`: nothing.
    """
    if mode == "never":
        return [], []
    directory = store.root / "packages"
    directory.mkdir(exist_ok=True, mode=0o700)
    pinned, not_kept = [], []
    spent = 0
    for record in records:
        if not record.sha256:
            not_kept.append(f"{record.dist_str} (its record has no sha256)")
            continue
        dst = pin_path(store, record)
        if dst.exists():
            pinned.append(record.sha256)
            continue
        src = tarball_for(record)
        if src is None:
            not_kept.append(f"{record.dist_str} (no package file in the package cache)")
            continue
        try:
            os.link(src, dst)
        except FileExistsError:
            pass
        except OSError:
            size = src.stat().st_size
            if mode == "auto" and spent + size > budget_bytes:
                not_kept.append(f"{record.dist_str} (copy would pass the pin budget)")
                continue
            link_or_copy(src, dst)
            spent += size
        pinned.append(record.sha256)
    return pinned, not_kept


def pinner(settings: Settings) -> Callable[[Store, EnvState], list[str]] | None:
    """The pin step backup() runs, per the safeguard_keep_packages setting."""
    if settings.keep_packages == "never":
        return None

    def pin(store: Store, state: EnvState) -> list[str]:
        pinned, _ = pin_records(store, state.packages, mode=settings.keep_packages,
                                budget_bytes=settings.pin_budget_mb << 20)
        return pinned

    return pin


def offline_restorable(store: Store, info: SnapshotInfo) -> bool:
    """Every conda package of the snapshot is pinned in the store (so no channel is needed)."""
    if len(set(info.pins)) < info.counts.get("conda", 0):
        return False
    directory = store.root / "packages"
    return all((directory / f"{sha}.conda").exists() or (directory / f"{sha}.tar.bz2").exists()
               for sha in info.pins)
