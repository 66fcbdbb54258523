"""Jupyter kernelspecs that point into conda envs: captured with the env, registered again by
restore, and listed (with the ones whose env is gone).

`python -m ipykernel install --user --name X` writes ~/.local/share/jupyter/kernels/x/kernel.json
with argv[0] = ENV/bin/python. That file lives outside the env, so removing the env leaves a
kernel that fails to start, and restoring the env does not bring the kernel back. We read the
folders Jupyter reads (jupyter_core.paths.jupyter_path('kernels'), without importing it).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Files of one kernelspec larger than this are not kept (logos are a few KB).
MAX_FILE_BYTES = 1 << 20


def user_kernels_dir() -> Path:
    """Where `ipykernel install --user` writes, and where restore registers kernels."""
    data = os.environ.get("JUPYTER_DATA_DIR")
    if data:
        return Path(data) / "kernels"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "jupyter" / "kernels"


def kernel_dirs() -> list[Path]:
    """Jupyter's kernel search path, user first."""
    dirs = [user_kernels_dir()]
    dirs += [Path(p) / "kernels" for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
             if p]
    dirs += [Path(sys.prefix) / "share" / "jupyter" / "kernels",
             Path("/usr/local/share/jupyter/kernels"), Path("/usr/share/jupyter/kernels")]
    seen: list[Path] = []
    for d in dirs:
        if d not in seen:
            seen.append(d)
    return seen


@dataclass
class KernelSpec:
    name: str
    path: Path  # the kernelspec folder
    spec: dict[str, Any]

    @property
    def executable(self) -> str:
        argv = self.spec.get("argv")
        return str(argv[0]) if isinstance(argv, list) and argv else ""

    def env_prefix(self) -> Path | None:
        """The conda env its executable lives in: the folder above bin/ holding conda-meta."""
        exe = self.executable
        if not os.path.isabs(exe):
            return None
        for parent in Path(exe).parents:
            if (parent / "conda-meta").is_dir():
                return parent
            if parent.name in ("bin", "Scripts"):
                return parent.parent  # the env may be gone: still say which it was
        return None


def find_kernels() -> list[KernelSpec]:
    found: list[KernelSpec] = []
    for d in kernel_dirs():
        try:
            children = sorted(d.iterdir())
        except OSError:
            continue
        for child in children:
            try:
                spec = json.loads((child / "kernel.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(spec, dict):
                found.append(KernelSpec(child.name, child, spec))
    return found


def kernel_stats() -> list[tuple[str, os.stat_result]]:
    """Metadata of every kernelspec (for backup's unchanged-env key): a few stat calls."""
    out = []
    for d in kernel_dirs():
        try:
            with os.scandir(d) as it:
                children = sorted(e.name for e in it)
            out.append((str(d), d.stat()))
        except OSError:
            continue
        for name in children:
            try:
                out.append((f"{d}/{name}", (d / name / "kernel.json").stat()))
            except OSError:
                continue
    return out


def _inside(path: str, prefix: Path) -> bool:
    real = os.path.realpath(prefix)
    return os.path.isabs(path) and os.path.commonpath([real, os.path.realpath(path)]) == real


def capture_kernels(prefix: Path) -> dict[str, dict[str, Any]]:
    """Kernelspecs outside `prefix` whose executable is inside it: name -> {files: {name:
    base64}}. Specs inside the env come back with its packages."""
    out: dict[str, dict[str, Any]] = {}
    for k in find_kernels():
        if k.name in out or _inside(str(k.path), prefix) or not _inside(k.executable, prefix):
            continue
        files = {}
        for f in sorted(k.path.iterdir()):
            try:
                if f.is_file() and f.stat().st_size <= MAX_FILE_BYTES:
                    files[f.name] = base64.b64encode(f.read_bytes()).decode("ascii")
            except OSError:
                continue
        out[k.name] = {"files": files}
    return out


@dataclass
class Registered:
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # a different kernel of that name exists

    def describe(self) -> str:
        text = f"Jupyter kernels registered again: {len(self.written)}"
        if self.written:
            text += f" ({', '.join(self.written)})"
        if self.kept:
            text += (f"; left alone (another kernel has the name): {', '.join(self.kept)}")
        return text


def register_kernels(kernels: dict[str, dict[str, Any]], old_prefix: Path, new_prefix: Path,
                     ) -> Registered:
    """Write captured kernelspecs into the user's kernels folder, paths moved to `new_prefix`.
    Never overwrites a different kernelspec; a failure to write is reported, not raised."""
    done = Registered()
    base = user_kernels_dir()
    for name, item in sorted(kernels.items()):
        if not name or "/" in name or name.startswith("."):
            continue  # a name from a snapshot is data: never a path
        files = {}
        for fname, data in (item.get("files") or {}).items():
            if "/" in fname or fname.startswith("."):
                continue
            raw = base64.b64decode(data)
            if fname == "kernel.json":
                raw = _moved(raw, str(old_prefix), str(new_prefix))
            files[fname] = raw
        if "kernel.json" not in files:
            continue
        target = base / name
        existing = target / "kernel.json"
        if existing.exists():
            if existing.read_bytes() != files["kernel.json"]:
                done.kept.append(name)
            continue
        try:
            target.mkdir(parents=True, exist_ok=True)
            for fname, raw in files.items():
                (target / fname).write_bytes(raw)
        except OSError as e:
            done.kept.append(f"{name} ({e.strerror})")
            continue
        done.written.append(name)
    return done


def _moved(raw: bytes, old: str, new: str) -> bytes:
    if old == new:
        return raw
    spec = json.loads(raw)
    argv = spec.get("argv")
    if isinstance(argv, list):
        spec["argv"] = [new + a[len(old):] if isinstance(a, str) and (a == old or a.startswith(
            old + "/")) else a for a in argv]
    return (json.dumps(spec, indent=1) + "\n").encode()


def kernel_report(known_envs: list[Path]) -> list[dict[str, Any]]:
    """Every kernelspec, with the env it runs in and whether that env still exists."""
    known = {os.path.realpath(p) for p in known_envs}
    rows = []
    for k in find_kernels():
        env = k.env_prefix()
        exists = env is not None and (env / "conda-meta").is_dir()
        status = "not a conda env" if env is None else "ok" if exists else "env missing"
        rows.append({"name": k.name, "path": str(k.path), "executable": k.executable,
                     "env": str(env) if env else None, "status": status,
                     "env_known": env is not None and os.path.realpath(env) in known})
    return rows
