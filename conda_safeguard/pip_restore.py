"""The pip packages of a restore: a plan per package, consent, then keep or reinstall.

conda knows pip packages only as name==version; the snapshot keeps PEP 610 `direct_url.json`,
so a VCS commit, a local path or an archive URL comes back from the same place. Each package
gets one of four actions, decided before anything is touched (`pip_plan`):

- keep: the env being replaced has the same package from the same source, on the same python:
  its files (listed and hashed in its RECORD) are carried over, no pip run (an undo of one
  conda package does not reinstall every pip package);
- run: `python -m pip install --no-deps` with the env's own pip: from the wheel the store kept
  of it at backup (wheels.py: its installed files, offline), else from its recorded source;
- lost: it cannot come back here (offline and its source needs the network, the source folder
  is gone, the env has no pip, its record is not valid). The restore is refused unless the
  user names that loss (`--drop-pip NAME`, `--allow-pip-loss`, `--no-pip`): then it is `drop`.

Running pip runs code from the snapshot's recorded sources (a `file://` folder anyone could
write to, a git URL, an sdist's build script), so it needs consent: the commands are shown and
confirmed at a terminal, or `--yes` (`needs_consent`). Every name, version and URL read from a
snapshot is untrusted: it is checked before it becomes an argument, and follows `--`, so it can
never become a pip option.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .children import run_tied
from .exceptions import SafeguardError
from .pins import url_path
from .prefix import PipDist, read_pip_dists, read_records
from .snapshot import EnvState
from .suggest import safeguard as _sg
from .wheels import wheel_intact

Progress = Callable[[str], None]

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_VERSION = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.+!_*-]*)$")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s#]+$")
_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$")
_VCS = ("git", "hg", "svn", "bzr")
_SCHEMES = ("file", "https", "http", "ssh", "git")


class PipPlanError(ValueError):
    """A pip package record from a snapshot that is not safe to turn into a pip command."""


@dataclass
class PipPolicy:
    """What the user allows: named losses, and whether pip runs at all."""

    drop: Collection[str] = ()  # --drop-pip NAME: this package may be lost
    allow_loss: bool = False  # --allow-pip-loss: any package may be lost
    no_pip: bool = False  # --no-pip: no pip package is kept or reinstalled
    environ: dict[str, str] | None = None  # for PIP_FIND_LINKS; os.environ when None


@dataclass
class PipStep:
    dist: PipDist
    args: list[str]  # what follows `pip install --no-deps` (run); empty otherwise
    action: str  # "keep", "run", "lost" or "drop"
    why: str = ""  # where it comes from, or why it cannot
    network: bool = False  # the run needs the network
    keep_files: list[str] = field(default_factory=list)  # prefix-relative, for keep
    wheel: Path | None = None  # the kept wheel in the store it is reinstalled from
    done: bool = False
    error: str = ""

    @property
    def settled(self) -> bool:
        """It ended as planned: kept or reinstalled, or dropped as the user allowed."""
        return self.done or self.action == "drop"

    def command(self, python: str = "PYTHON") -> str:
        return " ".join([python, "-m", "pip", "install", *PIP_FLAGS, *self.args])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.dist.name, "version": self.dist.version, "args": self.args,
                "action": self.action, "why": self.why, "network": self.network,
                "done": self.done, "error": self.error}


PIP_FLAGS = ("--no-deps", "--disable-pip-version-check")


# ---------------------------------------------------------------------------------------------
# planning


def check_dist(d: PipDist) -> None:
    """Raise PipPlanError when the snapshot's record of `d` is not a safe pip requirement."""
    if not _NAME.match(d.name or ""):
        raise PipPlanError(f"its name {d.name!r} is not a Python package name")
    if not _VERSION.match(d.version or ""):
        raise PipPlanError(f"its version {d.version!r} is not a version")
    du = d.direct_url
    if not du:
        return
    url = du.get("url")
    if not isinstance(url, str) or not _URL.match(url):
        raise PipPlanError(f"its recorded source {url!r} is not a URL")
    if url.split("://", 1)[0].lower() not in _SCHEMES:
        raise PipPlanError(f"its recorded source {url!r} has a scheme pip is not run for")
    sub = du.get("subdirectory")
    if sub is not None and (not isinstance(sub, str) or not _REF.match(sub) or ".." in sub):
        raise PipPlanError(f"its subdirectory {sub!r} is not a plain relative path")
    vcs = du.get("vcs_info")
    if vcs is not None:
        if not isinstance(vcs, dict) or vcs.get("vcs", "git") not in _VCS:
            raise PipPlanError("its version control record is not git, hg, svn or bzr")
        for key in ("commit_id", "requested_revision"):
            ref = vcs.get(key)
            if ref is not None and (not isinstance(ref, str) or not _REF.match(ref)):
                raise PipPlanError(f"its {key} {ref!r} is not a revision")
    hashes = (du.get("archive_info") or {}).get("hashes") if isinstance(
        du.get("archive_info"), dict) else None
    if hashes and not re.match(r"^[0-9a-f]{64}$", str(hashes.get("sha256", "0" * 64))):
        raise PipPlanError("its archive sha256 is not a sha256")


def pip_plan(state: EnvState, current: Path | None, offline: bool,
             policy: PipPolicy | None = None,
             wheels: Mapping[str, Path] | None = None) -> list[PipStep]:
    """What happens to each pip package of `state`, restoring over the env at `current` (None:
    nothing is replaced). `wheels`: the kept wheels of the snapshot (name -> file in the
    store, wheels.kept_wheels). Reads only."""
    policy = policy or PipPolicy()
    environ = dict(os.environ) if policy.environ is None else policy.environ
    kept = _keepable(state, current) if current is not None and not policy.no_pip else {}
    has_pip = _has_pip(state)
    steps = []
    for d in state.pip:
        if policy.no_pip:
            steps.append(PipStep(d, [], "drop", "--no-pip: not reinstalled"))
            continue
        step = kept.get(d.name) or _wheel_step(d, (wheels or {}).get(d.name), has_pip) or \
            _run_step(d, offline, has_pip, environ)
        if step.action == "lost" and (policy.allow_loss or d.name in _normal(policy.drop)):
            step.action = "drop"
            step.why += " (its loss was allowed)"
        steps.append(step)
    return steps


def _normal(names: Collection[str]) -> set[str]:
    return {re.sub(r"[-_.]+", "-", n).lower() for n in names}


def _has_pip(state: EnvState) -> bool:
    """The rebuilt env will have pip: a conda `pip` package, or pip installed by pip."""
    return "pip" in state.package_map() or any(d.name == "pip" for d in state.pip)


def _wheel_step(d: PipDist, wheel: Path | None, has_pip: bool) -> PipStep | None:
    """From the wheel kept at backup: offline, exactly the files it had. A find-links install
    of name==version (not the wheel's path), so pip records no direct_url.json pointing into
    the store and the one kept in the wheel comes back."""
    if wheel is None or d.editable or not has_pip:
        return None
    try:
        check_dist(d)
    except PipPlanError:
        return None  # _run_step says why
    return PipStep(d, ["--no-index", "--find-links", str(wheel.parent), "--",
                       f"{d.name}=={d.version}"], "run",
                   f"offline, from its kept wheel {wheel.name}", wheel=wheel)


def _run_step(d: PipDist, offline: bool, has_pip: bool, environ: dict[str, str]) -> PipStep:
    try:
        check_dist(d)
    except PipPlanError as e:
        return PipStep(d, [], "lost", f"not reinstalled: {e}")
    if not has_pip:
        return PipStep(d, [], "lost", "the snapshot's env has no pip (no `pip` package) to "
                       "reinstall it with")
    du = d.direct_url or {}
    url = du.get("url") or ""
    local = url_path(url) if "vcs_info" not in du else None
    if d.editable:
        if local is None or not local.is_dir():
            return PipStep(d, [], "lost", f"editable install from {local or url}, which is not "
                           "here: reinstall it with `pip install -e` from its source")
        return PipStep(d, ["-e", str(local)], "run", f"editable, from the folder {local}")
    req = d.requirement()
    if local is not None:
        if not local.exists():
            return PipStep(d, [], "lost", f"its source {local} is gone")
        return PipStep(d, ["--", req], "run", f"offline, from {local}")
    if url:
        if offline:
            return PipStep(d, [], "lost", f"its source {url} needs the network (--offline)")
        return PipStep(d, ["--", req], "run", f"needs network: {url}", network=True)
    found = _find_links(d, environ)
    if found is not None:
        return PipStep(d, ["--no-index", "--find-links", str(found), "--", req], "run",
                       f"offline, from {found} (PIP_FIND_LINKS)")
    if offline:
        return PipStep(d, [], "lost", "needs the network (--offline) and no file of it is in "
                       "PIP_FIND_LINKS")
    return PipStep(d, ["--", req], "run", "needs network: the package index", network=True)


def _find_links(d: PipDist, environ: dict[str, str]) -> Path | None:
    """A folder named in PIP_FIND_LINKS that holds a wheel or sdist of exactly this version."""
    stems = {f"{n}-{d.version}".lower() for n in
             (d.name, d.name.replace("-", "_"), d.name.replace("-", "."))}
    for word in environ.get("PIP_FIND_LINKS", "").split():
        folder = url_path(word) if word.startswith("file:") else Path(word)
        if folder is None or not folder.is_dir():
            continue
        for f in os.listdir(folder):
            low = f.lower()
            if any(low.startswith(s + "-") and low.endswith(".whl") or
                   low in (f"{s}.tar.gz", f"{s}.zip") for s in stems):
                return folder
    return None


def _keepable(state: EnvState, current: Path) -> dict[str, PipStep]:
    """Pip packages the env at `current` already has from the same source on the same python,
    with every file still as its RECORD says: carried over instead of reinstalled."""
    try:
        records = read_records(current)
        have = {d.name: d for d in read_pip_dists(current, records)}
    except (OSError, ValueError, SafeguardError):  # a damaged env: reinstall, carry nothing
        return {}
    old_python = next((r for r in records if r.name == "python"), None)
    new_python = state.package_map().get("python")
    if old_python is None or new_python is None or \
            (old_python.version, old_python.build) != (new_python.version, new_python.build):
        return {}
    out = {}
    for d in state.pip:
        old = have.get(d.name)
        if old is None or (old.version, old.requirement()) != (d.version, d.requirement()):
            continue
        files = _record_files(current, old)
        if files is not None:
            out[d.name] = PipStep(d, [], "keep", "unchanged: kept from the env being replaced",
                                  keep_files=files)
    return out


def _record_files(prefix: Path, d: PipDist) -> list[str] | None:
    """Prefix-relative files of a dist-info's RECORD, each inside the prefix and matching its
    recorded sha256; None when any is not (then it is reinstalled instead)."""
    anchor = d.anchor.removesuffix("/RECORD")
    if not anchor.endswith(".dist-info"):
        return None  # egg-info: no list of files to carry
    record = prefix / anchor / "RECORD"
    site = record.parent.parent
    root = os.path.realpath(prefix)
    out = []
    try:
        lines = record.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        parts = line.rsplit(",", 2)
        if len(parts) != 3 or not parts[0]:
            continue
        path, digest, _size = parts
        full = os.path.normpath(os.path.join(site, path.strip('"')))
        if not os.path.realpath(full).startswith(root + os.sep):
            return None  # a RECORD pointing outside the env: not ours to carry
        rel = os.path.relpath(full, prefix)
        if rel.startswith(".."):
            return None
        if digest.startswith("sha256="):
            try:
                with open(full, "rb") as f:
                    got = base64.urlsafe_b64encode(hashlib.sha256(f.read()).digest())
            except OSError:
                return None
            if got.rstrip(b"=").decode() != digest[7:].rstrip("="):
                return None
        elif not os.path.lexists(full) and "__pycache__" not in rel:
            return None
        out.append(rel)
    return out


def expected_state(state: EnvState, steps: list[PipStep]) -> EnvState:
    """The state a restore promises: the snapshot's, less the pip packages the user let go."""
    dropped = {s.dist.name for s in steps if s.action == "drop"}
    return replace(state, pip=[d for d in state.pip if d.name not in dropped])


# ---------------------------------------------------------------------------------------------
# the user's say


def losses(steps: list[PipStep]) -> list[PipStep]:
    return [s for s in steps if s.action == "lost"]


def loss_problem(steps: list[PipStep]) -> str | None:
    """The refusal when a package would be lost without the user naming that loss."""
    lost = losses(steps)
    if not lost:
        return None
    names = ", ".join(f"{s.dist.name}=={s.dist.version} ({s.why})" for s in lost)
    drops = " ".join(f"--drop-pip {s.dist.name}" for s in lost)
    return (f"{len(lost)} pip package{'s' if len(lost) > 1 else ''} cannot be reinstalled here "
            f"and would be lost: {names}. Restore where the sources are reachable (without "
            f"--offline), or accept the loss with {drops} (or --allow-pip-loss, or --no-pip).")


def needs_consent(steps: list[PipStep]) -> list[PipStep]:
    """The pip runs that execute code from the snapshot's recorded sources."""
    return [s for s in steps if s.action == "run"]


def describe(steps: list[PipStep], target: Path) -> list[str]:
    if not steps:
        return []
    count = {a: sum(s.action == a for s in steps) for a in ("keep", "run", "lost", "drop")}
    network = sum(s.network for s in steps)
    out = [f"  pip:       {len(steps)} packages: {count['keep']} kept as they are, "
           f"{count['run']} to reinstall ({network} of them need the network), "
           f"{count['lost']} lost, {count['drop']} dropped"]
    for s in steps:
        label = {"keep": "keep", "run": "reinstall", "lost": "LOST", "drop": "dropped"}[s.action]
        out.append(f"    {s.dist.name:<24} {s.dist.version:<12} {label:<10} {s.why}")
        if s.action == "run":
            out.append(f"      $ {s.command(str(target / 'bin' / 'python'))}")
    return out


# ---------------------------------------------------------------------------------------------
# applying


def env_python(prefix: Path) -> Path | None:
    for candidate in (prefix / "bin" / "python", prefix / "python.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_pip(prefix: Path, steps: list[PipStep], *, offline: bool,
                progress: Progress | None = None, old: Path | None = None) -> str:
    """Carry over kept packages from `old` (the env being replaced, wherever it is now) and
    reinstall the others with the env's own python; returns a note when pip could not run."""
    for s in steps:
        if s.action == "keep":
            _carry(s, old, prefix)
    todo = [s for s in steps if s.action == "run"]
    if not todo:
        return ""
    python = env_python(prefix)
    usable = False
    if python is not None:
        try:
            probe = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True,
                                   stdin=subprocess.DEVNULL, timeout=60)
            usable = probe.returncode == 0
        except (OSError, subprocess.TimeoutExpired):  # not a program this machine runs
            usable = False
    if not usable:
        for s in todo:
            s.error = "the env has no python with pip"
        return (f"{len(todo)} pip packages were not reinstalled: {prefix} has no usable python "
                "with pip. Install them yourself: " + "; ".join(" ".join(s.args) for s in todo))
    if progress is not None:
        progress(f"reinstalling {len(todo)} pip packages with {python} -m pip")
    for s in todo:
        if s.wheel is not None and not wheel_intact(s.wheel):
            s.error = (f"its kept wheel {s.wheel} is damaged or gone; run "
                       f"`{_sg('check')}` (reinstall it from its source: "
                       f"{s.dist.requirement()})")
            continue
        args = [str(python), "-m", "pip", "install", *PIP_FLAGS,
                *(["--no-index"] if offline and "--no-index" not in s.args else []), *s.args]
        proc = run_tied(args)
        s.done = proc.returncode == 0
        if not s.done:
            s.error = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
    return ""


def _carry(step: PipStep, old: Path | None, new: Path) -> None:
    if old is None:
        step.error = "the env it was to be kept from is gone"
        return
    try:
        for rel in step.keep_files:
            src, dst = old / rel, new / rel
            if not os.path.lexists(src):
                continue  # a __pycache__ file Python had not written: it regenerates
            dst.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(dst):
                dst.unlink()
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copy2(src, dst)
        step.done = True
    except OSError as e:
        step.error = f"carrying its files over failed: {e}"
