"""The content-addressed snapshot store.

Layout (format 1)::

    config                   {"format": 1, ...}; a newer format is refused
    lock                     flock: shared for writers, exclusive for prune
    gate                     flock prune takes before `lock`, so writers cannot starve it
    objects/ab/<sha256>      zlib-compressed content, named by the sha256 of the uncompressed
                             bytes; written once, never modified
    snapshots/<id>.json      manifests; written last, naming only objects already on disk;
                             <id> is the sha256 of every other field (snapshot.manifest_id)
    packages/<sha256><ext>   package tarballs kept for offline restore (pins)
    wheels/<sha256>/<file>   pip packages repacked as wheels for offline restore (wheels.py)
    cache/                   derived data (parse caches), each file under its own checksum;
                             safe to delete

Every file here is untrusted input: a manifest whose id does not match its fields, an object
whose bytes do not match its name, a cache whose checksum fails are reported or ignored, never
used. Only prune deletes, and only under the exclusive lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import constants as C
from .exceptions import (
    AmbiguousEnvError,
    AmbiguousSnapshotError,
    CorruptObjectError,
    DamagedConfigError,
    SnapshotIdTooShortError,
    SnapshotNotFoundError,
    StoreError,
    StoreFormatError,
)
from .fs import atomic_write, file_lock, pass_gate
from .prefix import CondaRecord, PipDist
from .redact import is_secret_name
from .snapshot import EnvState, SnapshotInfo, canonical_json, manifest_id
from .storeperm import Modes, check_inner, check_tree, make_dirs, read_file
from .suggest import plural
from .suggest import safeguard as _sg

#: Fewest characters of a snapshot id that `resolve` accepts (shorter ones match too much).
MIN_ID_PREFIX = 4

log = logging.getLogger(f"conda.{__name__}")

_HEX64 = re.compile(r"[0-9a-f]{64}")
STATE_PARTS = ("packages", "pip", "env", "history")
OPTIONAL_PARTS = ("config", "kernels")  # only in snapshots of envs that have some
#                                         (unowned.py, kernels.py)


def is_hash(text: object) -> bool:
    """A sha256 in hex: the only shape an object, pin or snapshot id may take (never a path)."""
    return isinstance(text, str) and _HEX64.fullmatch(text) is not None


#: A kept wheel's file name (wheels.py): name-version-pyver-abi-platform.whl, nothing else.
_WHEEL_FILE = re.compile(r"[A-Za-z0-9_.+!]+-[A-Za-z0-9_.+!]+-[A-Za-z0-9_.]+-[A-Za-z0-9_.]+-"
                         r"[A-Za-z0-9_.]+\.whl")


def is_wheel_ref(ref: object) -> bool:
    """A manifest's kept-wheel reference `<sha256>/<file>.whl`: a hash and a plain wheel file
    name, never a path that could lead out of wheels/."""
    if not isinstance(ref, str):
        return False
    sha, _, name = ref.partition("/")
    return is_hash(sha) and _WHEEL_FILE.fullmatch(name) is not None


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


def has_data(root: Path) -> bool:
    """The folder holds snapshots or objects (a store, even if its config is gone)."""
    for sub in ("snapshots", "objects"):
        try:
            if any(True for _ in os.scandir(root / sub)):
                return True
        except OSError:
            continue
    return False


def prefix_key(prefix: str | Path) -> str:
    return hashlib.sha256(os.path.abspath(str(prefix)).encode()).hexdigest()[:20]


class Store:
    def __init__(self, root: Path, warn: Callable[[str], None] | None = None, *,
                 shared: bool = False, shared_secrets: bool = False) -> None:
        self.root = root
        # damage met while reading is said through this (the CLI prints it on stderr)
        self.warn: Callable[[str], None] = warn or (lambda msg: log.warning("%s", msg))
        self.shared = shared  # a declared team store (storeperm.py)
        self.shared_secrets = shared_secrets  # a team store may hold secret-looking env vars
        self.modes = Modes.for_store(shared)
        self._warned_damaged = False
        self._warned_secrets = False
        self._dev: int | None = None

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path, *, create: bool = True, warn: Callable[[str], None] | None = None,
             shared: bool = False, shared_secrets: bool = False) -> Store:
        """Open (and with `create`, initialise) the store; refuse formats we do not know, and
        stores we must not trust (storeperm.py)."""
        store = cls(root, warn, shared=shared, shared_secrets=shared_secrets)
        config_path = root / "config"
        try:
            check_tree(root, shared=shared, warn=store.warn)
            raw = read_file(config_path)
        except FileNotFoundError:
            # damage, not emptiness: never paper over it with a new config (but a racing
            # first backup may have written config and objects since we looked)
            if has_data(root) and not config_path.exists():
                raise DamagedConfigError(
                    f"The store at {root} has snapshots but its config file is missing. Nothing "
                    f"was written. Run `{_sg('check', '--repair')}` to rewrite it.") from None
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
            raise DamagedConfigError(f"The store config {config_path} is damaged. Nothing was "
                                     f"written. Run `{_sg('check', '--repair')}` to rewrite it "
                                     "(snapshots are kept).") from None
        if not isinstance(found, int) or isinstance(found, bool) or found < 1:
            raise DamagedConfigError(f"The store config {config_path} is damaged (format "
                                     f"{found!r}). Nothing was written. Run "
                                     f"`{_sg('check', '--repair')}` to rewrite it (snapshots "
                                     "are kept).")
        if found > C.STORE_FORMAT:
            raise StoreFormatError(str(root), found, C.STORE_FORMAT)
        return store

    def _initialise(self) -> None:
        try:
            # parents made here must not be group/other-writable, whatever the umask
            make_dirs(self.root.parent, 0o755 if self.shared else 0o700)
            make_dirs(self.root, self.modes.folder)
            for sub in ("objects", "snapshots", "packages", "cache"):
                # a team store's snapshots/ is sticky: each member deletes only their own
                self._mkdir(self.root / sub, sticky=self.shared and sub == "snapshots")
            config = {"format": C.STORE_FORMAT, "created": _now(), "tool": C.APP_NAME}
            config_path = self.root / "config"
            if not config_path.exists():
                atomic_write(config_path, json.dumps(config, indent=2).encode() + b"\n",
                             mode=self.modes.file)
        except PermissionError:
            raise StoreError(f"Cannot create the snapshot store at {self.root}: permission "
                             "denied. Set CONDA_SAFEGUARD_HOME to a folder you can write."
                             ) from None
        except OSError as e:  # disk full, read-only filesystem: one clear line, no traceback
            raise StoreError(f"Cannot create the snapshot store at {self.root}: "
                             f"{e.strerror or e}. Free space there or set CONDA_SAFEGUARD_HOME "
                             "to another folder.") from None

    def _mkdir(self, path: Path, *, sticky: bool = False) -> None:
        """A folder inside the store, made with the store's mode; an existing one is checked
        (never a symlink, never another filesystem)."""
        mode = self.modes.folder | (stat.S_ISVTX if sticky else 0)
        try:
            path.mkdir(mode=mode)
        except FileExistsError:
            if self._dev is None:
                self._dev = os.stat(self.root).st_dev
            check_inner(path, self._dev, shared=self.shared)
            return
        os.chmod(path, mode)  # mkdir's mode passes through the umask

    # -- locks ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def shared_lock(self) -> Iterator[None]:
        """For writers that add (backups) and readers of pins: many at once. Waits at the
        gate while a prune has taken it (fs.pass_gate: prune must not starve)."""
        pass_gate(self.root / "gate")
        with file_lock(self.root / "lock", exclusive=False, mode=self._lock_mode):
            yield

    @contextlib.contextmanager
    def reading_lock(self) -> Iterator[None]:
        """The shared lock, for reading pins while prune might run. A read-only store (a
        mounted backup medium) cannot hold a lock file, and nothing can prune it either: it is
        read without one."""
        try:
            os.close(os.open(self.root / "lock", os.O_RDWR | os.O_CREAT
                             | getattr(os, "O_NOFOLLOW", 0), self._lock_mode))
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            yield
            return
        with self.shared_lock():
            yield

    @contextlib.contextmanager
    def exclusive_lock(self) -> Iterator[None]:
        """For prune (the only deleter): the gate first, so no new writer starts, then the
        lock once the writers in flight are done."""
        with file_lock(self.root / "gate", exclusive=True, mode=self._lock_mode), \
                file_lock(self.root / "lock", exclusive=True, mode=self._lock_mode):
            yield

    @contextlib.contextmanager
    def env_lock(self, prefix: str | Path) -> Iterator[None]:
        """Serialises the compare-and-write of one env's snapshots."""
        self._mkdir(self.root / "cache")
        locks = self.root / "cache" / "locks"
        self._mkdir(locks)
        with file_lock(locks / f"{prefix_key(prefix)}.lock", exclusive=True, quiet=True,
                       mode=self._lock_mode):
            yield

    @property
    def _lock_mode(self) -> int:
        return 0o660 if self.shared else 0o600

    # -- objects ----------------------------------------------------------------------------------

    def _object_path(self, oid: str) -> Path:
        if not is_hash(oid):  # a crafted manifest must not make us read outside objects/
            raise CorruptObjectError(str(oid), "not an object id")
        return self.root / "objects" / oid[:2] / oid

    def has_object(self, oid: str) -> bool:
        return self._object_path(oid).exists()

    def put_object(self, data: bytes) -> tuple[str, int]:
        """Store `data`; returns (object id, bytes written: 0 when it was already there)."""
        oid = hashlib.sha256(data).hexdigest()
        path = self._object_path(oid)
        if path.exists():
            if self.object_intact(oid):
                return oid, 0
            # Dedup must not hand a damaged object to a new snapshot: we hold the right bytes,
            # so write them again (an object has one right content: nothing is lost).
            self.warn(f"store object {oid[:16]} was damaged; rewrote it from the env")
        self._mkdir(path.parent)
        compressed = zlib.compress(data, 6)
        atomic_write(path, compressed, mode=self.modes.file)
        return oid, len(compressed)

    def get_object(self, oid: str) -> bytes:
        try:
            compressed = read_file(self._object_path(oid))
        except FileNotFoundError:
            raise CorruptObjectError(oid, "missing") from None
        except OSError as e:  # a symlink (ELOOP), a folder, unreadable
            raise CorruptObjectError(oid, f"cannot be read: {e.strerror or e}") from None
        try:
            data = zlib.decompress(compressed)
        except zlib.error:
            raise CorruptObjectError(oid, "cannot be decompressed") from None
        if hashlib.sha256(data).hexdigest() != oid:
            raise CorruptObjectError(oid, "content does not match its hash")
        return data

    def object_intact(self, oid: str) -> bool:
        try:
            self.get_object(oid)
        except CorruptObjectError:
            return False
        return True

    def iter_object_ids(self) -> Iterator[str]:
        """Ids of the objects on disk; files that are not objects (stray, temp) are skipped."""
        for fan, name in self._object_entries():
            if is_hash(name) and name[:2] == fan:
                yield name

    def stray_objects(self) -> list[str]:
        """Files under objects/ that no object write made (not temp files): never ours to use
        or delete."""
        out = [f"objects/{fan}/{name}" for fan, name in self._object_entries()
               if not name.startswith(".tmp-") and not (is_hash(name) and name[:2] == fan)]
        objects = self.root / "objects"
        if objects.is_dir() and not objects.is_symlink():
            out += [f"objects/{p.name} (a symlink: never followed)"
                    for p in sorted(objects.iterdir()) if p.is_symlink()]
        return out

    def _object_entries(self) -> Iterator[tuple[str, str]]:
        objects = self.root / "objects"
        if not objects.is_dir() or objects.is_symlink():
            return
        for fan in sorted(objects.iterdir()):
            if fan.is_dir() and not fan.is_symlink():  # a symlink would lead prune elsewhere
                for p in sorted(fan.iterdir()):
                    if not p.is_symlink():
                        yield fan.name, p.name
                    elif not p.name.startswith(".tmp-"):
                        yield fan.name, f"{p.name} (a symlink)"

    # -- state <-> objects ---------------------------------------------------------------------

    def state_parts(self, state: EnvState) -> dict[str, bytes]:
        """The state's parts as the bytes of their objects (part -> bytes; id = its sha256).

        A team store leaves out env vars that look like credentials (unless
        safeguard_shared_store_secrets allows them): every member can read the store.
        `config` only when the env has some, so envs without it keep their snapshot ids."""
        if self.shared and not self.shared_secrets:
            secret = sorted(k for k in state.variables if is_secret_name(k))
            if secret:
                if not self._warned_secrets:
                    self._warned_secrets = True
                    self.warn(f"not keeping env var(s) {', '.join(secret)} in the team store "
                              f"{self.root} (they look like credentials; a restore will lack "
                              "them). Set plugins.safeguard_shared_store_secrets: true to keep "
                              "them.")
                state = dataclasses.replace(state, variables={
                    k: v for k, v in state.variables.items() if k not in secret})
        config = {"config": canonical_json(state.config)} if state.config else {}
        if state.kernels:  # only then: envs without kernels keep their snapshot ids
            config["kernels"] = canonical_json(state.kernels)
        return {**config,
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
        try:
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
                # the env's own config files (unowned.py) and the Jupyter kernelspecs that
                # ran in it (kernels.py)
                config=self._optional_part(objs, "config", "data", str, "files"),
                kernels=self._optional_part(objs, "kernels", "files", dict, "kernelspecs"),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # objects match their hashes, so only a crafted snapshot gets here
            raise StoreError(f"Snapshot {info.short_id} names objects that do not hold a "
                             f"snapshot ({type(e).__name__}: {e}). Run `{_sg('check')}`; "
                             "other snapshots of this env may be intact.") from None

    def _optional_part(self, objs: dict[str, str], part: str, member_key: str,
                       member_type: type, members: str) -> dict[str, Any]:
        """An optional part of a snapshot (only snapshots that have any name it): a mapping whose
        values are mappings holding `member_key` of `member_type`; anything else is damage."""
        if part not in objs:
            return {}
        value = json.loads(self.get_object(objs[part]))
        if not isinstance(value, dict) or not all(
                isinstance(v, dict) and isinstance(v.get(member_key), member_type)
                for v in value.values()):
            raise TypeError(f"the {part} part is not a mapping of {members}")
        return value

    # -- snapshots -------------------------------------------------------------------------------

    def _manifest_path(self, snapshot_id: str) -> Path:
        if not is_hash(snapshot_id):  # a cache or a user must not name a path
            raise SnapshotNotFoundError(str(snapshot_id))
        return self.root / "snapshots" / f"{snapshot_id}.json"

    def write_manifest(self, info: SnapshotInfo) -> int:
        """Write last: every object it names must already be on disk."""
        if info.id != manifest_id(info.to_dict()):
            raise StoreError(f"Refusing to write snapshot {info.short_id}: its id is not the "
                             "hash of its fields (a bug: set it with snapshot.manifest_id).")
        missing = [oid for oid in info.objects.values() if not self.has_object(oid)]
        if missing:
            raise StoreError(f"Refusing to write snapshot {info.short_id}: objects "
                             f"{', '.join(m[:12] for m in missing)} are not in the store.")
        data = json.dumps(info.to_dict(), indent=1, sort_keys=True).encode() + b"\n"
        path = self._manifest_path(info.id)
        try:
            atomic_write(path, data, mode=self.modes.file)
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
        """Every intact snapshot, newest first. Damaged manifests are left out, and said once
        per store on stderr (a damaged newest one would otherwise pass for the previous)."""
        out, damaged = [], []
        for path in self._manifest_files():
            info = self._read_manifest(path)
            if info is not None:
                out.append(info)
            else:
                damaged.append(path.name)
        if damaged and not self._warned_damaged:
            self._warned_damaged = True
            shown = ", snapshots/".join(sorted(damaged)[:3]) + (" …" if len(damaged) > 3 else "")
            self.warn(f"{len(damaged)} damaged snapshot manifest(s) in {self.root} left out "
                      f"(snapshots/{shown}). Run `{_sg('check')}`.")
        return sorted(out, key=lambda s: s.created, reverse=True)

    def _manifest_files(self) -> list[Path]:
        directory = self.root / "snapshots"
        if not directory.is_dir() or directory.is_symlink():
            return []
        return [p for p in directory.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".tmp-")]

    @staticmethod
    def _read_manifest(path: Path) -> SnapshotInfo | None:
        try:
            return parse_manifest(path)
        except ValueError:
            return None

    def manifest_problems(self) -> list[tuple[str, str]]:
        """(file name, what is wrong) for each manifest in snapshots/ that cannot be trusted."""
        out = []
        for path in sorted(self._manifest_files()):
            try:
                parse_manifest(path)
            except ValueError as e:
                out.append((path.name, str(e)))
        return out

    def unreadable_manifests(self) -> list[str]:
        """Names of manifests in snapshots/ that cannot be trusted."""
        return [name for name, _ in self.manifest_problems()]

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
        if selector == "latest" or not selector or selector.startswith("-"):
            # restore/undo's snapshots of the env they replace are not what `ENV` means:
            # after a failed restore, `restore ENV` again must restore what was asked
            by_env = [s for s in by_env if not s.taken_before_replace] or by_env
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
                has = plural(len(by_env), "snapshot")
                raise SnapshotNotFoundError(ref, f" ({env_part} has {has})")
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
        """The cache's data, or {} when it is missing or fails its checksum: a cache is
        derived, so a bad one costs a re-read, never a wrong snapshot."""
        try:
            raw = read_file(self.root / "cache" / name)
        except OSError:
            return {}
        data = _unseal_cache(raw)
        if data is None:
            log.info("ignoring the damaged cache file %s", self.root / "cache" / name)
            return {}
        return data

    def write_cache(self, name: str, data: dict[str, Any]) -> None:
        path = self.root / "cache" / name
        self._mkdir(path.parent)
        atomic_write(path, _seal_cache(data), mode=self.modes.file, durable=False)

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


# ---------------------------------------------------------------------------------------------
# untrusted files: manifests and caches

_MANIFEST_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str, "env_name": str, "prefix": str, "created": str, "reason": str, "argv": list,
    "fingerprint": str, "channels": list, "objects": dict, "counts": dict, "host": str,
    "user": str, "tool": str, "tool_version": str, "parent": (str, type(None)), "change": dict,
    "pins": list,
}


def parse_manifest(path: Path) -> SnapshotInfo:
    """The manifest at `path`, checked; ValueError says what is wrong with it."""
    try:
        raw = read_file(path)  # never through a symlink
    except OSError as e:
        raise ValueError(f"cannot be read ({e.strerror})") from None
    try:
        d = json.loads(raw)
    except ValueError:
        raise ValueError("not valid JSON") from None
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    for name, kind in _MANIFEST_FIELDS.items():
        if name not in d:
            raise ValueError(f"has no {name!r} field")
        if not isinstance(d[name], kind):
            raise ValueError(f"field {name!r} has the wrong type")
    if d["id"] != path.stem:
        raise ValueError("its id is not its file name")
    if d["id"] != manifest_id(d) and not _legacy_id(d):
        raise ValueError("its fields do not match its id (edited or damaged)")
    objects = d["objects"]
    if sorted(set(objects) - set(OPTIONAL_PARTS)) != sorted(STATE_PARTS) or \
            not all(map(is_hash, objects.values())):
        raise ValueError("names objects that are not object ids")
    if not all(map(is_hash, d["pins"])) or not (d["parent"] is None or is_hash(d["parent"])):
        raise ValueError("names pins or a parent that are not sha256 ids")
    wheels = d.get("wheels", {})
    if not isinstance(wheels, dict) or not wheels and "wheels" in d or not all(
            isinstance(k, str) and is_wheel_ref(v) for k, v in wheels.items()):
        raise ValueError("names kept wheels that are not <sha256>/<name>.whl")
    if not os.path.isabs(d["prefix"]) or not all(
            isinstance(v, int) for v in [*d["counts"].values(), *d["change"].values()]):
        raise ValueError("has a relative prefix or non-numeric counts")
    info = SnapshotInfo.from_dict(d)
    try:
        info.created_at  # noqa: B018  (list and prune sort and bucket by it)
    except ValueError:
        raise ValueError("has an unreadable creation time") from None
    return info


def _legacy_id(d: dict[str, Any]) -> bool:
    """Manifests of the first pre-release hashed every field but `pins`; accepted only while
    they pin nothing, so no unverified field remains."""
    return d.get("pins") == [] and d["id"] == manifest_id(
        {k: v for k, v in d.items() if k != "pins"})


def _seal_cache(data: dict[str, Any]) -> bytes:
    body = json.dumps(data, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{{"sha256":"{digest}","data":{body}}}'.encode()


def _unseal_cache(raw: bytes) -> dict[str, Any] | None:
    try:
        sealed = json.loads(raw)
        body = json.dumps(sealed["data"], separators=(",", ":"), sort_keys=True)
    except (ValueError, TypeError, KeyError):
        return None
    if not isinstance(sealed["data"], dict) or \
            hashlib.sha256(body.encode()).hexdigest() != sealed.get("sha256"):
        return None
    return sealed["data"]
