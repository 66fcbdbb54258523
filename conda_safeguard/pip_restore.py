"""Reinstalling a snapshot's pip packages from their recorded sources, with the env's python.

conda knows pip packages only as name==version; the snapshot keeps PEP 610 `direct_url.json`,
so a VCS commit, a local path or an archive URL comes back from the same place. Editable
installs come back only while their source folder exists. Without a python that has pip in
the env, nothing is installed and the lines are reported instead.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .pins import url_path
from .prefix import PipDist
from .snapshot import EnvState

Progress = Callable[[str], None]


@dataclass
class PipStep:
    dist: PipDist
    args: list[str]  # what follows `pip install --no-deps`
    action: str  # "install" or "skip"
    why: str = ""
    done: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.dist.name, "version": self.dist.version, "args": self.args,
                "action": self.action, "why": self.why, "done": self.done, "error": self.error}


def pip_steps(state: EnvState, offline: bool) -> list[PipStep]:
    steps = []
    for d in state.pip:
        req = d.requirement()
        url = (d.direct_url or {}).get("url") or ""
        local = url_path(url)
        if d.editable:
            if local is None or not local.exists():
                steps.append(PipStep(d, [req], "skip", f"editable install from {local or url}, "
                                     "which is gone: reinstall it with `pip install -e` from "
                                     "its source"))
            else:
                steps.append(PipStep(d, ["-e", str(local)], "install",
                                     "editable: its source is still there"))
        elif offline and local is None:
            steps.append(PipStep(d, [req], "skip", "needs the network (--offline)"))
        else:
            steps.append(PipStep(d, [req], "install"))
    return steps


def env_python(prefix: Path) -> Path | None:
    for candidate in (prefix / "bin" / "python", prefix / "python.exe"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def install_pip(prefix: Path, steps: list[PipStep], *, offline: bool,
                progress: Progress | None = None) -> str:
    """Reinstall pip packages with the env's own python; returns a note when none could be."""
    todo = [s for s in steps if s.action == "install"]
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
        args = [str(python), "-m", "pip", "install", "--no-deps", "--disable-pip-version-check",
                *(["--no-index"] if offline else []), *s.args]
        proc = subprocess.run(args, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        s.done = proc.returncode == 0
        if not s.done:
            s.error = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
    return ""
