"""The content-addressed snapshot store.

Layout (format 1)::

    config                   {"format": 1, ...}; a newer format is refused
    lock                     flock: shared for writers, exclusive for prune
    objects/ab/<sha256>      zlib-compressed content, named by the sha256 of the uncompressed
                             bytes; written once, never modified
    snapshots/<id>.json      manifests; written last, naming only objects already on disk
    packages/<sha256><ext>   package tarballs kept for offline restore (pins)
    cache/                   derived data (parse caches); safe to delete

Only prune deletes, and only under the exclusive lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import constants as C
from .exceptions import (
    AmbiguousEnvError,
    AmbiguousSnapshotError,
    CorruptObjectError,
    SnapshotIdTooShortError,
    SnapshotNotFoundError,
    StoreError,
    StoreFormatError,
)
from .fs import atomic_write, file_lock
from .prefix import CondaRecord, PipDist
from .snapshot import EnvState, SnapshotInfo, canonical_json
from .suggest import safeguard as _sg

#: Fewest characters of a snapshot id that `resolve` accepts (shorter ones match too much).
MIN_ID_PREFIX = 4


def default_store_path(setting: str | None = None) -> Path:
    """CONDA_SAFEGUARD_HOME, else the safeguard_store setting, else platformdirs' data dir.

    A data dir, not a cache dir: backups must survive cache cleaning.
    """
    env = os.environ.get(C.ENV_HOME)
    if env:
        return Path(env).expanduser()
    if setting:
        return Path(setting).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir(C.APP_NAME, appauthor=False))


def prefix_key(prefix: str | Path) -> str:
    return hashlib.sha256(os.path.abspath(str(prefix)).encode()).hexdigest()[:20]


@dataclass
class CheckReport:
    objects: int = 0
    snapshots: int = 0
    packages: int = 0
    corrupt: list[str] = field(default_factory=list)  # object/package ids whose bytes are wrong
    missing: list[tuple[str, str]] = field(default_factory=list)  # (snapshot id, object id)
    unreadable: list[str] = field(default_factory=list)  # manifests that do not parse
    leftovers: list[str] = field(default_factory=list)  # temp files of interrupted writes

    @property
    def ok(self) -> bool:
        return not (self.corrupt or self.missing or self.unreadable)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path, *, create: bool = True) -> Store:
        """Open (and with `create`, initialise) the store; refuse formats we do not know."""
        store = cls(root)
        config_path = root / "config"
        try:
            raw = config_path.read_bytes()
        except FileNotFoundError:
            if not create:
                raise StoreError(f"No snapshot store at {root}: nothing has been backed up "
                                 f"there yet. Run `{_sg('backup', '--all')}` first.") from None
            store._initialise()
            return store
        except PermissionError:
            raise StoreError(f"Cannot read the store at {root}: permission denied. Check its "
                             "owner, or point CONDA_SAFEGUARD_HOME at a store you own.") from None
        except OSError as e:
            raise StoreError(f"Cannot read the store at {root}: {e.strerror}.") from None
        try:
            config = json.loads(raw)
            found = config["format"]
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"The store config {config_path} is damaged. Nothing was written. "
                             f"Move the store aside and run `{_sg('check')}` on it."
                             ) from None
        if not isinstance(found, int) or found > C.STORE_FORMAT or found < 1:
            raise StoreFormatError(str(root), found, C.STORE_FORMAT)
        return store

    def _initialise(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            for sub in ("objects", "snapshots", "packages", "cache"):
                (self.root / sub).mkdir(exist_ok=True, mode=0o700)
            config = {"format": C.STORE_FORMAT, "created": _now(), "tool": C.APP_NAME}
            config_path = self.root / "config"
            if not config_path.exists():
                atomic_write(config_path, json.dumps(config, indent=2).encode() + b"\n")
        except PermissionError:
            raise StoreError(f"Cannot create the snapshot store at {self.root}: permission "
                             "denied. Set CONDA_SAFEGUARD_HOME to a folder you can write."
                             ) from None

    # -- locks ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def shared_lock(self) -> Iterator[None]:
        with file_lock(self.root / "lock", exclusive=False):
            yield

    @contextlib.contextmanager
    def exclusive_lock(self) -> Iterator[None]:
        with file_lock(self.root / "lock", exclusive=True):
            yield

    @contextlib.contextmanager
    def env_lock(self, prefix: str | Path) -> Iterator[None]:
        """Serialises the compare-and-write of one env's snapshots."""
        locks = self.root / "cache" / "locks"
        locks.mkdir(parents=True, exist_ok=True, mode=0o700)
        with file_lock(locks / f"{prefix_key(prefix)}.lock", exclusive=True, quiet=True):
            yield

    # -- objects ----------------------------------------------------------------------------------

    def _object_path(self, oid: str) -> Path:
        return self.root / "objects" / oid[:2] / oid

    def has_object(self, oid: str) -> bool:
        return self._object_path(oid).exists()

    def put_object(self, data: bytes) -> tuple[str, int]:
        """Store `data`; returns (object id, bytes written: 0 when it was already there)."""
        oid = hashlib.sha256(data).hexdigest()
        path = self._object_path(oid)
        if path.exists():
            return oid, 0
        path.parent.mkdir(exist_ok=True, mode=0o700)
        compressed = zlib.compress(data, 6)
        atomic_write(path, compressed)
        return oid, len(compressed)

    def get_object(self, oid: str) -> bytes:
        try:
            compressed = self._object_path(oid).read_bytes()
        except FileNotFoundError:
            raise CorruptObjectError(oid, "missing") from None
        try:
            data = zlib.decompress(compressed)
        except zlib.error:
            raise CorruptObjectError(oid, "cannot be decompressed") from None
        if hashlib.sha256(data).hexdigest() != oid:
            raise CorruptObjectError(oid, "content does not match its hash")
        return data

    def iter_object_ids(self) -> Iterator[str]:
        objects = self.root / "objects"
        if not objects.is_dir():
            return
        for fan in sorted(objects.iterdir()):
            if fan.is_dir():
                for p in sorted(fan.iterdir()):
                    if not p.name.startswith(".tmp-"):
                        yield p.name

    # -- state <-> objects ---------------------------------------------------------------------

    @staticmethod
    def state_parts(state: EnvState) -> dict[str, bytes]:
        """The state's parts as the bytes of their objects (part -> bytes; id = its sha256)."""
        return {
            "packages": canonical_json([r.to_dict() for r in state.packages]),
            "pip": canonical_json([d.to_dict() for d in state.pip]),
            # variables as pairs: their order is the order `conda env export` prints them in
            "env": canonical_json({"variables": [[k, v] for k, v in state.variables.items()],
                                   "requested": state.requested, "frozen": state.frozen,
                                   "platform": state.platform}),
            "history": state.history.encode("utf-8"),
        }

    def put_parts(self, parts: dict[str, bytes]) -> tuple[dict[str, str], int]:
        """Write parts (from state_parts) as objects; returns (part -> id, bytes added)."""
        ids: dict[str, str] = {}
        added = 0
        for name, data in parts.items():
            ids[name], written = self.put_object(data)
            added += written
        return ids, added

    def put_state(self, state: EnvState) -> tuple[dict[str, str], int]:
        """Write the state's parts as objects; returns (part -> id, bytes added)."""
        return self.put_parts(self.state_parts(state))

    def load_state(self, info: SnapshotInfo) -> EnvState:
        objs = info.objects
        env = json.loads(self.get_object(objs["env"]))
        return EnvState(
            packages=[CondaRecord.from_dict(d)
                      for d in json.loads(self.get_object(objs["packages"]))],
            pip=[PipDist.from_dict(d) for d in json.loads(self.get_object(objs["pip"]))],
            variables=dict(env["variables"]),  # pairs (or a mapping, as first written)
            requested=env["requested"],
            history=self.get_object(objs["history"]).decode("utf-8"),
            frozen=env["frozen"],
            platform=env["platform"],
        )

    # -- snapshots -------------------------------------------------------------------------------

    def _manifest_path(self, snapshot_id: str) -> Path:
        return self.root / "snapshots" / f"{snapshot_id}.json"

    def write_manifest(self, info: SnapshotInfo) -> int:
        """Write last: every object it names must already be on disk."""
        missing = [oid for oid in info.objects.values() if not self.has_object(oid)]
        if missing:
            raise StoreError(f"Refusing to write snapshot {info.short_id}: objects "
                             f"{', '.join(m[:12] for m in missing)} are not in the store.")
        data = json.dumps(info.to_dict(), indent=1, sort_keys=True).encode() + b"\n"
        path = self._manifest_path(info.id)
        try:
            atomic_write(path, data)
        except BaseException:
            # After the rename atomic_write fails only if the folder cannot be synced: take the
            # manifest back, so a backup that reports failure leaves no snapshot behind.
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            raise
        return len(data)

    def delete_manifest(self, snapshot_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._manifest_path(snapshot_id).unlink()

    def snapshots(self) -> list[SnapshotInfo]:
        """Every readable snapshot, newest first."""
        out = []
        for path in self._manifest_files():
            info = self._read_manifest(path)
            if info is not None:
                out.append(info)
        return sorted(out, key=lambda s: s.created, reverse=True)

    def _manifest_files(self) -> list[Path]:
        directory = self.root / "snapshots"
        if not directory.is_dir():
            return []
        return [p for p in directory.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".tmp-")]

    @staticmethod
    def _read_manifest(path: Path) -> SnapshotInfo | None:
        try:
            return SnapshotInfo.from_dict(json.loads(path.read_bytes()))
        except (ValueError, TypeError, KeyError, OSError):
            return None

    def unreadable_manifests(self) -> list[str]:
        """Names of manifests in snapshots/ that do not parse."""
        return sorted(p.name for p in self._manifest_files() if self._read_manifest(p) is None)

    def snapshots_of(self, prefix: str | Path) -> list[SnapshotInfo]:
        prefix = os.path.abspath(str(prefix))
        return [s for s in self.snapshots() if s.prefix == prefix]

    def latest_of(self, prefix: str | Path) -> SnapshotInfo | None:
        found = self.snapshots_of(prefix)
        return found[0] if found else None

    def get(self, snapshot_id: str) -> SnapshotInfo:
        info = self._read_manifest(self._manifest_path(snapshot_id))
        if info is None:
            raise SnapshotNotFoundError(snapshot_id)
        return info

    # -- resolving user references ----------------------------------------------------------------

    def resolve(self, ref: str) -> SnapshotInfo:
        """A snapshot from what a user typed: an id prefix, ENV, ENV@latest, ENV@-N, ENV@<id>.

        ENV is an env name, the last part of its prefix, or its prefix path.
        """
        ref = ref.strip()
        if not ref:
            raise SnapshotNotFoundError(ref)
        snapshots = self.snapshots()
        env_part, _, selector = ref.rpartition("@") if "@" in ref else (ref, "", "")
        if (not env_part and not selector) or (
                "@" in ref and any(_env_matches(s, ref) for s in snapshots)):
            env_part, selector = ref, ""  # a prefix path may hold an '@'
        by_env = _one_env(env_part, [s for s in snapshots if _env_matches(s, env_part)])
        if not selector:
            if by_env:
                return by_env[0]
            return self._by_id_prefix(snapshots, ref)
        if not by_env:
            raise SnapshotNotFoundError(ref, f" (no snapshots of an env called {env_part!r})")
        if selector == "latest":
            return by_env[0]
        if selector.startswith("-") and selector[1:].isdigit():
            n = int(selector[1:])
            if n >= len(by_env):
                raise SnapshotNotFoundError(ref, f" ({env_part} has {len(by_env)} snapshots)")
            return by_env[n]
        return self._by_id_prefix(by_env, selector)

    @staticmethod
    def _by_id_prefix(snapshots: list[SnapshotInfo], typed: str) -> SnapshotInfo:
        prefix = typed.lower()  # ids are lowercase hex; messages echo what was typed
        if any(c not in "0123456789abcdef" for c in prefix):
            raise SnapshotNotFoundError(typed)
        if len(prefix) < MIN_ID_PREFIX:
            raise SnapshotIdTooShortError(typed, MIN_ID_PREFIX)
        matches = [s for s in snapshots if s.id.startswith(prefix)]
        if not matches:
            raise SnapshotNotFoundError(typed)
        if len(matches) > 1:
            raise AmbiguousSnapshotError(typed, [m.short_id for m in matches])
        return matches[0]

    # -- caches ----------------------------------------------------------------------------------

    def read_cache(self, name: str) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "cache" / name).read_bytes())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}  # a cache is derived: losing it costs time, never data

    def write_cache(self, name: str, data: dict[str, Any]) -> None:
        path = self.root / "cache" / name
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, json.dumps(data, separators=(",", ":")).encode(), durable=False)

    # -- check -----------------------------------------------------------------------------------

    def check(self) -> CheckReport:
        """Re-hash every object and package, report missing ones. Repairs nothing."""
        report = CheckReport()
        present = set()
        for oid in self.iter_object_ids():
            report.objects += 1
            present.add(oid)
            try:
                self.get_object(oid)
            except CorruptObjectError:
                report.corrupt.append(oid)
        for path in self._manifest_files():
            info = self._read_manifest(path)
            if info is None or path.stem != info.id:
                report.unreadable.append(path.name)
                continue
            report.snapshots += 1
            for oid in info.objects.values():
                if oid not in present:
                    report.missing.append((info.id, oid))
        from .pins import check_pins  # pins own the package files

        pin_corrupt, pin_count = check_pins(self)
        report.packages = pin_count
        report.corrupt += pin_corrupt
        for directory in (self.root / "snapshots", *sorted((self.root / "objects").glob("*"))):
            if directory.is_dir():
                report.leftovers += [str(p.relative_to(self.root))
                                     for p in directory.iterdir() if p.name.startswith(".tmp-")]
        return report


def _one_env(env: str, matches: list[SnapshotInfo]) -> list[SnapshotInfo]:
    """Snapshots of the one env that `env` names: exact names and prefixes win over folder
    names; a name that still means several envs is refused, never guessed."""
    prefixes = list(dict.fromkeys(s.prefix for s in matches))
    if len(prefixes) <= 1:
        return matches
    exact = [s for s in matches if env in (s.env_name, s.prefix)]
    if len({s.prefix for s in exact}) == 1:
        return exact
    raise AmbiguousEnvError(env, prefixes)


def _env_matches(info: SnapshotInfo, env: str) -> bool:
    if not env:
        return False
    if info.env_name == env or info.prefix == env:
        return True
    if os.sep in env:
        return info.prefix == os.path.abspath(os.path.expanduser(env))
    return Path(info.prefix).name == env


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
