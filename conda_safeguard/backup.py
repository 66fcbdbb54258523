"""Taking a snapshot of an env into the store.

An unchanged env costs a stat of its metadata files and writes nothing: the store remembers,
per prefix, a key built from those stats and the snapshot it led to.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .prefix import require_env, site_packages
from .snapshot import EnvState, SnapshotInfo, capture, new_info
from .store import Store, prefix_key

log = logging.getLogger(f"conda.{__name__}")


@dataclass
class BackupResult:
    snapshot: SnapshotInfo
    created: bool  # False: the env was unchanged and its latest snapshot stands for it
    bytes_added: int
    state: EnvState | None = None  # None when the fast path did not read the env


def stat_key(prefix: Path) -> str:
    """Changes whenever anything a snapshot reads may have changed (metadata only, no reads)."""
    h = hashlib.sha256()
    meta = prefix / "conda-meta"
    with os.scandir(meta) as it:
        entries = sorted((e.name, e.stat()) for e in it if not e.name.startswith("."))
    for name, st in entries:
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    # pip installs show up as new dist-info folders: the site-packages mtime changes.
    for sp in prefix.glob("lib/python*/site-packages"):
        st = sp.stat()
        h.update(f"{sp}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def channels_for(state: EnvState, configured: list[str]) -> list[str]:
    """`channels:` as conda env export writes it: package channels, then configured ones."""
    seen = [r.channel for r in state.packages if r.is_exported and r.channel != "<unknown>"]
    return list(dict.fromkeys([*seen, *configured]))


def backup(
    store: Store,
    prefix: Path,
    *,
    env_name: str,
    reason: str = "manual",
    argv: list[str] | None = None,
    configured_channels: list[str] | None = None,
    pin: Callable[[Store, EnvState], list[str]] | None = None,
    force: bool = False,
) -> BackupResult:
    """Snapshot `prefix` unless its latest snapshot already holds the same state.

    `pin` keeps the package files the snapshot needs (see pins.py); its failures are the
    caller's choice. `force` writes a new manifest even for an unchanged env.
    """
    prefix = Path(os.path.abspath(prefix))
    require_env(prefix)
    argv = list(sys.argv) if argv is None else argv
    key_name = f"env-{prefix_key(prefix)}.json"
    with store.shared_lock(), store.env_lock(prefix):
        cache = store.read_cache(key_name)
        key = stat_key(prefix)
        latest = store.latest_of(prefix)
        if not force and latest is not None and cache.get("stat_key") == key \
                and cache.get("snapshot") == latest.id and cache.get("env_name") == env_name:
            return BackupResult(latest, created=False, bytes_added=0)
        records_cache = cache.get("records") if isinstance(cache.get("records"), dict) else {}
        state = capture(prefix, records_cache)
        channels = channels_for(state, configured_channels or [])
        if (not force and latest is not None and latest.fingerprint == state.fingerprint
                and latest.channels == channels and latest.env_name == env_name):
            store.write_cache(key_name, {"stat_key": key, "snapshot": latest.id,
                                         "env_name": env_name, "records": records_cache})
            return BackupResult(latest, created=False, bytes_added=0, state=state)
        objects, added = store.put_state(state)
        parent_state = None
        if latest is not None:
            try:
                parent_state = store.load_state(latest)
            except Exception as e:  # a damaged parent must not stop a new backup
                log.warning("could not read the previous snapshot %s: %s", latest.short_id, e)
        info = new_info(env_name=env_name, prefix=prefix, state=state, reason=reason, argv=argv,
                        channels=channels, objects=objects, parent=latest,
                        parent_state=parent_state)
        if pin is not None:
            info.pins = pin(store, state)
        added += store.write_manifest(info)
        store.write_cache(key_name, {"stat_key": key, "snapshot": info.id, "env_name": env_name,
                                     "records": records_cache})
        return BackupResult(info, created=True, bytes_added=added, state=state)


def python_site_packages(prefix: Path, state: EnvState) -> Path | None:
    python = next((r for r in state.packages if r.name == "python"), None)
    return site_packages(prefix, python)
