"""The snapshot model: what an env holds at one moment, its fingerprint, and diffs between states.

A snapshot has two parts: `EnvState` (the content, read from the prefix, deduplicated in the
store) and `SnapshotInfo` (when, why, where: the manifest).
"""

from __future__ import annotations

import hashlib
import json
import platform as _platform
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .prefix import (
    CondaRecord,
    PipDist,
    read_env_vars,
    read_frozen,
    read_history,
    read_pip_dists,
    read_records,
    requested_specs,
)

#: Reasons restore/undo give the snapshot of the env they replace (and older spellings).
BEFORE_REPLACE_REASONS = ("before restore:", "before undo:", "refused before restore:",
                          "refused before undo:", "replace it with snapshot",
                          "undo: return it to snapshot", "refused replace it with snapshot",
                          "refused undo: return it")


def host_platform() -> str:
    """conda's subdir for this machine (linux-64, osx-arm64, win-64, …)."""
    machine = _platform.machine().lower()
    arch = {"x86_64": "64", "amd64": "64", "aarch64": "aarch64", "arm64": "arm64",
            "ppc64le": "ppc64le", "s390x": "s390x", "i686": "32", "x86": "32"}.get(machine, machine)
    osname = {"linux": "linux", "darwin": "osx", "win32": "win"}.get(sys.platform, sys.platform)
    if osname == "linux" and arch == "arm64":
        arch = "aarch64"
    if osname == "osx" and arch == "aarch64":
        arch = "arm64"
    return f"{osname}-{arch}"


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class EnvState:
    """The content of an env that a snapshot keeps."""

    packages: list[CondaRecord]
    pip: list[PipDist]
    variables: dict[str, str]
    requested: dict[str, str]  # name -> spec the user asked for (from history)
    history: str  # conda-meta/history as it was: it dies with the env otherwise
    frozen: str | None  # CEP-22 marker message, or None
    platform: str
    # the env's own configuration no package owns (activate.d scripts, pinned, .condarc):
    # path -> {"mode", "data" (base64)}; see unowned.py. Not part of the fingerprint.
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Jupyter kernelspecs outside the env that run in it (kernels.py): name -> {"files"}.
    kernels: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Identifies the exact package set (conda + pip) and env vars."""
        return hashlib.sha256(canonical_json({
            "conda": [[r.channel, r.name, r.version, r.build, r.sha256 or r.md5]
                      for r in self.packages],
            "pip": [[d.name, d.version, d.requirement()] for d in self.pip],
            "variables": self.variables,
        })).hexdigest()

    def package_map(self) -> dict[str, CondaRecord]:
        return {r.name: r for r in self.packages}


def capture(prefix: Path, record_cache: dict[str, Any] | None = None) -> EnvState:
    """Read the env at `prefix` into an EnvState. Read-only."""
    records = read_records(prefix, record_cache)
    history_path = prefix / "conda-meta" / "history"
    try:
        history_text = history_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        history_text = ""
    history = read_history(prefix)
    from .kernels import capture_kernels
    from .unowned import capture_config

    names = {r.name for r in records}
    platforms = {r.subdir for r in records if r.subdir and r.subdir != "noarch"}
    return EnvState(
        packages=records,
        pip=read_pip_dists(prefix, records),
        variables=read_env_vars(prefix),
        requested=requested_specs(history, names),
        history=history_text,
        frozen=read_frozen(prefix),
        platform=platforms.pop() if len(platforms) == 1 else host_platform(),
        config=capture_config(prefix),
        kernels=capture_kernels(prefix),
    )


@dataclass
class SnapshotInfo:
    """The manifest: metadata plus the ids of the objects holding the content."""

    id: str
    env_name: str  # as `conda env export` prints it: a name, or the prefix for path-only envs
    prefix: str
    created: str  # ISO 8601, UTC
    reason: str
    argv: list[str]
    fingerprint: str
    channels: list[str]  # the `channels:` list conda env export would print
    objects: dict[str, str]  # part -> object id
    counts: dict[str, int]
    host: str = ""
    user: str = ""
    tool: str = "conda-safeguard"
    tool_version: str = __version__
    parent: str | None = None  # the previous snapshot of the same prefix
    change: dict[str, int] = field(default_factory=dict)  # vs parent: added/removed/changed
    pins: list[str] = field(default_factory=list)  # package sha256s kept in the store
    # pip name -> "<sha256>/<file>.whl" under wheels/ (wheels.py); in the manifest only when
    # there are some, so snapshots without kept wheels keep their ids
    wheels: dict[str, str] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:10]

    @property
    def taken_before_replace(self) -> bool:
        """Taken by restore/undo of the env it was about to replace: `ENV` and `ENV@-N` skip
        it, so retrying a failed restore restores what the user asked for, not this."""
        return self.reason.startswith(BEFORE_REPLACE_REASONS)

    @property
    def created_at(self) -> datetime:
        return datetime.fromisoformat(self.created.replace("Z", "+00:00"))

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if not out["wheels"]:
            del out["wheels"]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SnapshotInfo:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def new_info(*, env_name: str, prefix: Path, state: EnvState, reason: str, argv: list[str],
             channels: list[str], objects: dict[str, str], parent: SnapshotInfo | None,
             parent_state: EnvState | None) -> SnapshotInfo:
    import getpass  # only for a new snapshot: the unchanged fast path never gets here
    import socket

    now = datetime.now(timezone.utc)
    created = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    change = diff_states(parent_state, state).counts() if parent_state is not None else {}
    body = {
        "env_name": env_name, "prefix": str(prefix), "created": created, "reason": reason,
        "argv": argv, "fingerprint": state.fingerprint, "channels": channels, "objects": objects,
        "counts": {"conda": len(state.packages), "pip": len(state.pip)},
        "host": socket.gethostname(), "user": user, "tool": "conda-safeguard",
        "tool_version": __version__, "parent": parent.id if parent else None, "change": change,
        "pins": [],
    }
    return SnapshotInfo(id=manifest_id(body), **body)  # type: ignore[arg-type]


def manifest_id(fields: dict[str, Any]) -> str:
    """A snapshot's id: the sha256 of every field of its manifest but the id itself, so an
    edited or damaged manifest no longer matches its id (store.py checks it on every read).
    Set it again (`info.id = manifest_id(info.to_dict())`) after changing a field."""
    return hashlib.sha256(canonical_json({k: v for k, v in fields.items() if k != "id"}
                                         )).hexdigest()


# ---------------------------------------------------------------------------------------------
# diff


@dataclass
class Change:
    kind: str  # "conda" or "pip"
    name: str
    old: str | None  # "version build (channel)" or pip requirement
    new: str | None

    @property
    def status(self) -> str:
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "changed"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "status": self.status,
                "old": self.old, "new": self.new}


@dataclass
class Diff:
    changes: list[Change]
    variables_changed: list[str]

    def counts(self) -> dict[str, int]:
        out = {"added": 0, "removed": 0, "changed": 0}
        for c in self.changes:
            out[c.status] += 1
        return out

    def __bool__(self) -> bool:
        return bool(self.changes or self.variables_changed)


def _describe(r: CondaRecord) -> str:
    return f"{r.version} {r.build} ({r.channel})"


def diff_states(old: EnvState | None, new: EnvState | None) -> Diff:
    """What changed from `old` to `new`, conda and pip, by package name."""
    changes: list[Change] = []
    old_c = old.package_map() if old else {}
    new_c = new.package_map() if new else {}
    for name in sorted(set(old_c) | set(new_c)):
        a, b = old_c.get(name), new_c.get(name)
        da = _describe(a) if a else None
        db = _describe(b) if b else None
        if da != db or (a and b and (a.sha256 or a.md5) != (b.sha256 or b.md5)):
            changes.append(Change("conda", name, da, db))
    old_p = {d.name: d.requirement() for d in (old.pip if old else [])}
    new_p = {d.name: d.requirement() for d in (new.pip if new else [])}
    for name in sorted(set(old_p) | set(new_p)):
        if old_p.get(name) != new_p.get(name):
            changes.append(Change("pip", name, old_p.get(name), new_p.get(name)))
    old_v = old.variables if old else {}
    new_v = new.variables if new else {}
    variables = sorted(k for k in set(old_v) | set(new_v) if old_v.get(k) != new_v.get(k))
    return Diff(changes, variables)
