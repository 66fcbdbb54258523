"""`retire`: remove temporary envs, each only after a snapshot that can bring it back.

An env is retired when its name matches a temp pattern, it is older than asked, it is not
protected (never base, never the active env), and every file in it belongs to a conda package
or a pip distribution: a snapshot can rebuild those, not a notebook or a dataset someone left
inside. The removal is a rename out of the way first (atomic: another process sees the env
whole or gone), a check that the env did not change after its snapshot, then the delete.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .exceptions import SafeguardError, UsageError

if TYPE_CHECKING:
    from .cli.runtime import Runtime

#: `.NAME.retiring-PID`: moved aside, not yet checked against its snapshot;
#: `.NAME.retired-PID`: checked, being deleted. A killed retire leaves one of the two.
MOVED_INFIX = ".retiring-"
DELETING_INFIX = ".retired-"
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_GENERATED = re.compile(r"(^|/)__pycache__/|\.pyc$")


def parse_age(text: str) -> float:
    """'7d' -> seconds. Units: s, m, h, d, w."""
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"--older-than {text!r} is not an age; give a number and a unit "
                         "(s, m, h, d, w), e.g. 7d or 12h.")
    return int(m.group(1)) * _UNITS[m.group(2)]


def last_changed(prefix: Path) -> float:
    """When conda last changed the env: its history file, else its conda-meta folder."""
    for path in (prefix / "conda-meta" / "history", prefix / "conda-meta"):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0


def untracked_files(prefix: Path, limit: int = 5) -> list[str]:
    """Files no conda record or pip RECORD lists (up to `limit`): a snapshot cannot bring
    them back. conda-meta/ and Python bytecode are not counted."""
    owned: set[str] = set()
    meta = prefix / "conda-meta"
    for entry in os.scandir(meta):
        if entry.name.endswith(".json") and not entry.name.startswith("."):
            try:
                data = json.loads(Path(entry.path).read_bytes())
            except (OSError, ValueError):
                continue  # a damaged record: capture() already refused the snapshot
            owned.update(data.get("files") or ())
    for record in prefix.glob("lib/python*/site-packages/*.dist-info/RECORD"):
        base = record.parent.parent
        for line in record.read_text(encoding="utf-8", errors="replace").splitlines():
            rel = line.split(",", 1)[0]
            if rel:
                owned.add(os.path.relpath(os.path.normpath(base / rel), prefix))
    found: list[str] = []
    for root, dirs, files in os.walk(prefix):
        rel_root = os.path.relpath(root, prefix)
        if rel_root == "conda-meta":
            dirs[:] = []
            continue
        for name in files:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if rel not in owned and not _GENERATED.search(rel):
                found.append(rel)
                if len(found) >= limit:
                    return found
    return found


@dataclass
class Candidate:
    prefix: Path
    name: str
    age_seconds: float
    action: str = "retire"  # retire | keep
    why: str = ""
    snapshot: str | None = None
    done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.name, "prefix": str(self.prefix), "age_days":
                round(self.age_seconds / 86400, 1), "action": self.action, "why": self.why,
                "snapshot": self.snapshot, "retired": self.done}


@dataclass
class RetireReport:
    candidates: list[Candidate] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # interrupted retires finished now

    @property
    def retired(self) -> list[Candidate]:
        return [c for c in self.candidates if c.done]


def select(rt: Runtime, patterns: list[str], older_than: float | None,
           now: float | None = None) -> list[Candidate]:
    """Envs whose name matches `patterns`, each marked retire or keep (with why)."""
    from .guard import protection

    now = time.time() if now is None else now
    active = os.environ.get("CONDA_PREFIX")
    out: list[Candidate] = []
    for prefix in rt.locator.all_envs():
        name = rt.locator.short_name(prefix)
        if not any(fnmatch.fnmatchcase(name, p) for p in patterns):
            continue
        c = Candidate(prefix=prefix, name=name, age_seconds=max(0.0, now - last_changed(prefix)))
        if rt.locator.root_prefix is not None and prefix == rt.locator.root_prefix:
            c.action, c.why = "keep", "base is never retired"
        elif active and os.path.abspath(active) == str(prefix):
            c.action, c.why = "keep", "it is the active env"
        elif older_than is not None and c.age_seconds < older_than:
            c.action, c.why = "keep", "changed too recently"
        elif protection(rt, prefix):
            c.action, c.why = "keep", "protected (`conda-safeguard unprotect` it first)"
        out.append(c)
    return out


def retire(rt: Runtime, candidates: list[Candidate], *, dry_run: bool) -> RetireReport:
    report = RetireReport(candidates=candidates)
    for c in candidates:
        if c.action != "retire":
            continue
        try:
            untracked = untracked_files(c.prefix)
        except OSError:  # another retire or remove is taking it right now
            c.action, c.why = "keep", "already gone (another retire or remove got there first)"
            continue
        if untracked:
            c.action = "keep"
            c.why = (f"holds files no package owns ({', '.join(untracked[:3])}"
                     f"{' …' if len(untracked) > 3 else ''}); a snapshot cannot bring them back")
            continue
        if dry_run:
            c.why = "a snapshot is taken first"
            continue
        try:
            _retire_one(rt, c)
        except SafeguardError as e:
            c.action, c.why = "keep", str(e)
    if not dry_run:
        report.leftovers = _finish_interrupted(rt)
    return report


def _retire_one(rt: Runtime, c: Candidate) -> None:
    from .prefix import require_env
    from .snapshot import capture

    result = rt.backup(c.prefix, reason="before retire")  # raises: then nothing is removed
    c.snapshot = result.snapshot.id
    expected = result.state.fingerprint if result.state is not None else \
        rt.store().load_state(result.snapshot).fingerprint
    trash = c.prefix.parent / f".{c.prefix.name}{MOVED_INFIX}{os.getpid()}"
    try:
        os.rename(c.prefix, trash)
    except FileNotFoundError:
        raise SafeguardError("already gone (another retire or remove got there first)") from None
    except OSError as e:
        raise SafeguardError(f"could not move it aside ({e.strerror}); nothing removed") from None
    try:
        changed = capture(require_env(trash)).fingerprint != expected \
            or bool(untracked_files(trash))
    except SafeguardError:
        changed = True
    if changed:  # something was installed after the snapshot: keep the env as it is
        os.rename(trash, c.prefix)
        raise SafeguardError("it changed while being retired; kept, run retire again")
    deleting = c.prefix.parent / f".{c.prefix.name}{DELETING_INFIX}{os.getpid()}"
    os.rename(trash, deleting)
    shutil.rmtree(deleting)
    _unregister(c.prefix)
    c.done, c.why = True, f"snapshot {c.snapshot[:10]} taken first"


def _finish_interrupted(rt: Runtime) -> list[str]:
    """Finish what a killed retire left: delete `.retired-` folders (checked already); check a
    `.retiring-` folder against its env's latest snapshot, then delete it, or put it back."""
    from .snapshot import capture

    done = []
    dirs = {p.parent for p in rt.locator.all_envs()} | set(rt.locator.envs_dirs)
    for d in sorted(dirs):
        try:
            children = sorted(d.iterdir())
        except OSError:
            continue
        for child in children:
            name = child.name
            if not name.startswith(".") or not child.is_dir() or owner_alive(name):
                continue
            if DELETING_INFIX in name:
                shutil.rmtree(child)
                done.append(str(child))
            elif MOVED_INFIX in name:
                original = d / name[1:].rsplit(MOVED_INFIX, 1)[0]
                latest = rt.store().latest_of(original)
                try:
                    same = latest is not None and capture(child).fingerprint == \
                        rt.store().load_state(latest).fingerprint
                except SafeguardError:
                    same = False
                if same:
                    shutil.rmtree(child)
                    done.append(str(child))
                elif not os.path.lexists(original):
                    os.rename(child, original)  # not proven snapshotted: put it back
    return done


def owner_alive(name: str) -> bool:
    """A running process (retire, unpack) owns this folder, named `…-PID`: leave it be."""
    pid = name.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unregister(prefix: Path) -> None:
    """Drop the prefix from ~/.conda/environments.txt, as `conda env remove` does."""
    from .fs import atomic_write

    path = Path.home() / ".conda" / "environments.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    keep = [ln for ln in lines if os.path.abspath(ln.strip() or "/") != str(prefix)]
    if keep != lines:
        atomic_write(path, "".join(f"{ln}\n" for ln in keep).encode(), mode=0o644)
