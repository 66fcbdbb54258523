"""Taking a snapshot of an env into the store.

An unchanged env costs a stat of its metadata files and writes nothing: the store remembers,
per prefix, a key built from those stats and the snapshot it led to.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exceptions import BackupError, SafeguardError
from .kernels import kernel_stats
from .prefix import RACY_NS, require_env, site_packages
from .redact import redact_argv, redact_url
from .snapshot import EnvState, SnapshotInfo, capture, manifest_id, new_info
from .store import Store, prefix_key

log = logging.getLogger(f"conda.{__name__}")


@dataclass
class BackupResult:
    snapshot: SnapshotInfo
    created: bool  # False: the env was unchanged and its latest snapshot stands for it
    bytes_added: int
    state: EnvState | None = None  # None when the fast path did not read the env


def config_stats(prefix: Path) -> list[tuple[str, os.stat_result]]:
    from .unowned import CONFIG_DIRS

    out = []
    for d in (*CONFIG_DIRS, ".condarc"):
        try:
            out.append((d, os.stat(prefix / d)))
            if d != ".condarc":
                with os.scandir(prefix / d) as it:
                    out += sorted((f"{d}/{e.name}", e.stat()) for e in it)
        except OSError:
            continue
    return out


def stat_key(prefix: Path) -> str | None:
    """Changes whenever anything a snapshot reads may have changed (metadata only, no reads).

    None when a file changed too recently to trust: a second change within the filesystem's
    timestamp granularity can leave size and mtime as they were ("racy git").
    """
    racy_after = time.time_ns() - RACY_NS
    h = hashlib.sha256()
    meta = prefix / "conda-meta"
    with os.scandir(meta) as it:
        entries = sorted((e.name, e.stat()) for e in it if not e.name.startswith("."))
    # pip installs show up as new dist-info folders: the site-packages mtime changes.
    entries += [(str(sp), sp.stat()) for sp in prefix.glob("lib/python*/site-packages")]
    entries += config_stats(prefix)  # activate.d scripts, .condarc: snapshotted too
    entries += kernel_stats()  # Jupyter kernelspecs outside the env (kernels.py)
    for name, st in entries:
        if st.st_mtime_ns >= racy_after:
            return None
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def channels_for(state: EnvState, configured: list[str], conda_version: str | None = None,
                 ) -> list[str]:
    """`channels:` as `conda env export` of that conda writes it (render.export_channels)."""
    from .render import export_channels

    return export_channels([r.channel for r in state.packages if r.is_exported], configured,
                           conda_version)


def backup(
    store: Store,
    prefix: Path,
    *,
    env_name: str,
    reason: str = "manual",
    argv: list[str] | None = None,
    configured_channels: list[str] | None = None,
    conda_version: str | None = None,
    pin: Callable[[Store, EnvState], list[str]] | None = None,
    keep_wheels: Callable[[Store, Path, EnvState], dict[str, str]] | None = None,
    force: bool = False,
) -> BackupResult:
    """Snapshot `prefix` unless its latest snapshot already holds the same state.

    `pin` keeps the package files the snapshot needs (see pins.py), `keep_wheels` its pip
    packages as wheels (wheels.py); their failures are the caller's choice. `force` writes a
    new manifest even for an unchanged env.
    """
    prefix = Path(os.path.abspath(prefix))
    require_env(prefix)
    from .transaction import RestoreUnderWayError, restore_under_way

    if restore_under_way(prefix):  # a half-built env must never become a snapshot to undo to
        raise RestoreUnderWayError(prefix, f"Not snapshotting {prefix}")
    # credentials never reach the store: a snapshot outlives the shell history it came from
    argv = redact_argv(list(sys.argv) if argv is None else argv)
    configured = [redact_url(c) for c in configured_channels or []]
    reason = redact_url(reason)
    try:
        return _backup(store, prefix, env_name=env_name, reason=reason, argv=argv,
                       configured=configured, conda_version=conda_version, pin=pin,
                       keep_wheels=keep_wheels, force=force)
    except OSError as e:  # disk full, read-only store, unreadable env file: expected failures
        where = f" ({e.filename})" if e.filename else ""
        raise BackupError(f"Could not snapshot {prefix}: {e.strerror or e}{where}. No snapshot "
                          "was recorded; earlier snapshots are intact.") from e


def _backup(store: Store, prefix: Path, *, env_name: str, reason: str, argv: list[str],
            configured: list[str], conda_version: str | None,
            pin: Callable[[Store, EnvState], list[str]] | None,
            keep_wheels: Callable[[Store, Path, EnvState], dict[str, str]] | None,
            force: bool) -> BackupResult:
    key_name = f"env-{prefix_key(prefix)}.json"  # small: read on every backup
    records_name = f"records-{prefix_key(prefix)}.json"  # parsed records: read only on change
    with store.shared_lock(), store.env_lock(prefix):
        cache = store.read_cache(key_name)
        key = stat_key(prefix)
        same_labels = {"env_name": env_name, "channels": configured,
                       "conda_version": conda_version}
        if not force and key is not None and cache.get("stat_key") == key \
                and all(cache.get(k) == v for k, v in same_labels.items()):
            # Every manifest written for this prefix updates this cache under the env lock, so
            # the snapshot it names is the latest, if it still exists (prune may have removed it).
            cached = _cached_snapshot(store, cache.get("snapshot"), prefix)
            # a damaged object would make that snapshot unrestorable: re-read the env instead
            if cached is not None and all(map(store.object_intact, cached.objects.values())):
                return BackupResult(cached, created=False, bytes_added=0)
        latest = store.latest_of(prefix)
        records_cache = store.read_cache(records_name)
        state = capture(prefix, records_cache)
        channels = [redact_url(c) for c in channels_for(state, configured, conda_version)]
        parts = store.state_parts(state)
        if (not force and latest is not None and latest.channels == channels
                and latest.env_name == env_name
                and latest.objects == {k: hashlib.sha256(v).hexdigest() for k, v in parts.items()}):
            store.put_parts(parts)  # rewrites any of its objects that rotted since
            _save_cache(store, records_name, records_cache)
            _save_cache(store, key_name, {"stat_key": key, "snapshot": latest.id, **same_labels})
            return BackupResult(latest, created=False, bytes_added=0, state=state)
        objects, added = store.put_parts(parts)
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
            info.pins = _pins_or_none(store, pin, state)
        if keep_wheels is not None and state.pip:
            info.wheels = _wheels_or_none(store, keep_wheels, prefix, state)
        info.id = manifest_id(info.to_dict())  # the id covers the pins and wheels too
        added += store.write_manifest(info)
        _save_cache(store, records_name, records_cache)
        _save_cache(store, key_name, {"stat_key": key, "snapshot": info.id, **same_labels})
        return BackupResult(info, created=True, bytes_added=added, state=state)


def _pins_or_none(store: Store, pin: Callable[[Store, EnvState], list[str]],
                  state: EnvState) -> list[str]:
    """Pins are extra (offline restore): when they do not fit (disk full, quota), the snapshot
    is still taken, without pins, and that is said in one line. A destroy must never be refused
    for want of a snapshot that would have fitted."""
    try:
        return pin(store, state)
    except OSError as e:
        store.warn(f"snapshot kept without package pins: {e.strerror or e} while copying "
                   f"package files into {store.root / 'packages'}; restoring it will need the "
                   "channels. Free space there, or set plugins.safeguard_keep_packages: never.")
        return []


def _wheels_or_none(store: Store, keep: Callable[[Store, Path, EnvState], dict[str, str]],
                    prefix: Path, state: EnvState) -> dict[str, str]:
    """Kept wheels are extra, like pins: when they do not fit, the snapshot is still taken."""
    try:
        return keep(store, prefix, state)
    except OSError as e:
        store.warn(f"snapshot kept without pip wheels: {e.strerror or e} while writing into "
                   f"{store.root / 'wheels'}; restoring its pip packages will need their "
                   "sources. Free space there, or set plugins.safeguard_keep_packages: never.")
        return {}


def _cached_snapshot(store: Store, snapshot_id: Any, prefix: Path) -> SnapshotInfo | None:
    if not isinstance(snapshot_id, str):
        return None
    try:
        info = store.get(snapshot_id)
    except SafeguardError:
        return None
    return info if info.prefix == str(prefix) else None


def _save_cache(store: Store, name: str, data: dict[str, Any]) -> None:
    """A cache is derived: failing to write one costs the next backup time, never data."""
    try:
        store.write_cache(name, data)
    except OSError as e:
        log.warning("could not write the cache %s: %s", name, e)


def python_site_packages(prefix: Path, state: EnvState) -> Path | None:
    python = next((r for r in state.packages if r.name == "python"), None)
    return site_packages(prefix, python)
