"""The fingerprint of an env: one stable hash of its exact package set, for comparing nodes.

The hash covers every conda record (name, version, build, channel, package hash) and every pip
distribution no conda package owns (name, version, and where it came from when that is not a
local path). It leaves out what differs between identical installs on two machines: the prefix,
the host, timestamps, package caches, env vars. Order never matters.

`fingerprint_doc()` is the JSON a node prints for `compare`: the hash plus the package lists it
was computed from, so a node that differs can be told *how* it differs. conda-free.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import __version__
from .prefix import CondaRecord, PipDist, read_pip_dists, read_records, require_env

#: Identifies our node documents; `FORMAT_VERSION` grows when a reader must refuse older code.
FORMAT = "conda-safeguard-fingerprint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Package:
    """One entry of a package set. None means "not known by this source": never compared."""

    kind: str  # "conda" or "pip"
    name: str
    version: str | None = None
    build: str | None = None
    channel: str | None = None
    sha256: str | None = None
    md5: str | None = None
    source: str | None = None  # pip: git commit or archive hash it was installed from
    fuzzy: bool = False  # version is a prefix (environment.yml `name=1.2` means 1.2.*)

    @property
    def hash_text(self) -> str:
        if self.sha256:
            return f"sha256:{self.sha256}"
        return f"md5:{self.md5}" if self.md5 else ""

    def label(self) -> str:
        """`liba 1.0 0 (conda-forge)` / `requests 2.32.3 (pip)`: for tables and messages."""
        parts = [self.name, self.version or "*"]
        if self.build:
            parts.append(self.build)
        where = self.channel if self.kind == "conda" else "pip"
        return " ".join(parts) + (f" ({where})" if where else "")

    def to_dict(self) -> dict[str, Any]:
        d = {"name": self.name, "version": self.version}
        if self.kind == "conda":
            d.update(build=self.build, channel=self.channel, sha256=self.sha256, md5=self.md5)
        else:
            d["source"] = self.source
        return d


def conda_package(r: CondaRecord) -> Package:
    return Package("conda", r.name, r.version, r.build, r.channel, r.sha256 or None,
                   r.md5 or None)


def pip_source(d: PipDist) -> str | None:
    """What identifies a pip install beyond name==version, if it is the same on every node: a
    VCS commit or an archive hash. Local paths (editable installs, wheels on disk) are left out:
    they differ between machines that hold the same code."""
    du = d.direct_url or {}
    vcs = du.get("vcs_info")
    if isinstance(vcs, dict) and (vcs.get("commit_id") or vcs.get("requested_revision")):
        return f"{vcs.get('vcs', 'git')}:{vcs.get('commit_id') or vcs.get('requested_revision')}"
    archive = du.get("archive_info")
    if isinstance(archive, dict):
        hashes = archive.get("hashes") or {}
        if isinstance(hashes, dict) and hashes.get("sha256"):
            return f"sha256:{hashes['sha256']}"
    if d.editable:
        return "editable"
    return None


def pip_package(d: PipDist) -> Package:
    return Package("pip", d.name, d.version, source=pip_source(d))


def norm_name(name: str) -> str:
    """conda and pip names compared the way pip compares them (PEP 503)."""
    return name.replace("_", "-").replace(".", "-").lower()


@dataclass
class PackageSet:
    """What an env holds, or what a reference says it should hold."""

    conda: dict[str, Package]
    pip: dict[str, Package]
    platform: str | None = None

    @classmethod
    def of(cls, conda: Iterable[Package], pip: Iterable[Package],
           platform: str | None = None) -> PackageSet:
        return cls({p.name: p for p in conda}, {p.name: p for p in pip}, platform)

    def shadowed(self) -> list[tuple[Package, Package]]:
        """(conda package, pip dist) pairs where pip installed over a conda package's name, e.g.
        `pip install -U requests` in a conda env: Python imports pip's, conda lists its own."""
        by_norm = {norm_name(n): p for n, p in self.conda.items()}
        return [(by_norm[norm_name(n)], p) for n, p in sorted(self.pip.items())
                if norm_name(n) in by_norm]

    def fingerprint(self) -> str:
        body = {
            "conda": sorted([p.name, p.version, p.build, p.channel, p.hash_text]
                            for p in self.conda.values()),
            "pip": sorted([p.name, p.version, p.source or ""] for p in self.pip.values()),
        }
        data = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(data.encode()).hexdigest()


def read_package_set(prefix: Path, record_cache: dict[str, Any] | None = None) -> PackageSet:
    """The env's package set, read from conda-meta and site-packages. Read-only.

    `record_cache` is the store's parsed-records cache from the last backup (keyed by each
    record file's size and mtime, see prefix.read_records): records unchanged since then are not
    parsed again, which is most of the time a fingerprint takes."""
    from .snapshot import host_platform

    records = read_records(prefix, record_cache)
    subdirs = {r.subdir for r in records if r.subdir and r.subdir != "noarch"}
    return PackageSet.of(
        (conda_package(r) for r in records),
        (pip_package(d) for d in read_pip_dists(prefix, records)),
        subdirs.pop() if len(subdirs) == 1 else host_platform(),
    )


def channel_counts(packages: PackageSet) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in packages.conda.values():
        counts[p.channel or "<unknown>"] = counts.get(p.channel or "<unknown>", 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def fingerprint_doc(prefix: Path, *, env_name: str, node: str | None = None,
                    packages: PackageSet | None = None) -> dict[str, Any]:
    """The JSON document a node prints (`fingerprint --json`), which `compare` reads back."""
    prefix = Path(os.path.abspath(prefix))
    require_env(prefix)
    packages = packages if packages is not None else read_package_set(prefix)
    host = socket.gethostname()
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fingerprint": packages.fingerprint(),
        "node": node or host,
        "host": host,
        "env": env_name,
        "prefix": str(prefix),
        "platform": packages.platform,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool_version": __version__,
        "counts": {"conda": len(packages.conda), "pip": len(packages.pip)},
        "channels": channel_counts(packages),
        "shadowed": [{"name": c.name, "conda": c.version, "pip": p.version}
                     for c, p in packages.shadowed()],
        "conda": [p.to_dict() for _, p in sorted(packages.conda.items())],
        "pip": [p.to_dict() for _, p in sorted(packages.pip.items())],
    }


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """The human form of a fingerprint document."""
    counts = doc["counts"]
    channels = ", ".join(f"{c} {n}" for c, n in doc["channels"].items()) or "none"
    lines = [f"{doc['env']} ({doc['prefix']}) on {doc['node']}",
             f"  fingerprint {doc['fingerprint']}",
             f"  {counts['conda']} conda packages (channels: {channels}), {counts['pip']} pip "
             f"packages, platform {doc['platform']}"]
    for s in doc["shadowed"]:
        lines.append(f"  warning: pip's {s['name']} {s['pip']} shadows conda's {s['name']} "
                     f"{s['conda']} (conda still lists its own)")
    return lines
