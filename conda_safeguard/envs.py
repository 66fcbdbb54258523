"""Finding environments the way conda (and mamba/micromamba) resolve -n NAME and -p PATH."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .condarc import condarc_paths, read_condarc
from .exceptions import EnvNotFoundError, UsageError
from .prefix import is_env

ROOT_ENV_NAMES = ("base", "root")


def _norm(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def find_root_prefix(environ: dict[str, str] | None = None) -> Path | None:
    """conda's (or micromamba's) root prefix, best guess without conda."""
    environ = dict(os.environ) if environ is None else environ
    candidates: list[Path] = []
    for var in ("CONDA_SAFEGUARD_ROOT", "CONDA_ROOT", "MAMBA_ROOT_PREFIX"):
        if environ.get(var):
            candidates.append(_norm(environ[var]))
    if environ.get("CONDA_EXE"):
        candidates.append(_norm(environ["CONDA_EXE"]).parent.parent)
    candidates.append(Path(sys.prefix))  # we are usually installed in conda's base
    home = Path.home()
    candidates += [home / d for d in ("miniforge3", "miniconda3", "anaconda3", "mambaforge",
                                      "micromamba", ".local/share/mamba")]
    candidates.append(Path("/opt/conda"))
    for c in candidates:
        if is_env(c) and ((c / "envs").is_dir() or (c / "condabin").is_dir()
                          or (c / "bin" / "conda").exists() or c == Path(sys.prefix)):
            return c
    return None


@dataclass
class EnvLocator:
    """Where envs live. `from_system()` reads .condarc; the plugin builds one from conda's
    context."""

    root_prefix: Path | None
    envs_dirs: list[Path]
    condarc: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_system(cls, environ: dict[str, str] | None = None) -> EnvLocator:
        environ = dict(os.environ) if environ is None else environ
        root = find_root_prefix(environ)
        condarc = read_condarc(condarc_paths(root))
        dirs: list[Path] = []
        env_var = environ.get("CONDA_ENVS_PATH") or environ.get("CONDA_ENVS_DIRS")
        if env_var:
            dirs += [_norm(p) for p in env_var.split(os.pathsep) if p]
        dirs += [_norm(p) for p in condarc.get("envs_dirs") or [] if isinstance(p, str)]
        if root is not None:
            dirs.append(root / "envs")
        dirs.append(Path.home() / ".conda" / "envs")
        unique: list[Path] = []
        for d in dirs:
            if d not in unique:
                unique.append(d)
        return cls(root_prefix=root, envs_dirs=unique, condarc=condarc)

    def name_of(self, prefix: Path) -> str:
        """What `conda env export` prints as `name:` (conda's env_name())."""
        prefix = _norm(prefix)
        if self.root_prefix is not None and prefix == _norm(self.root_prefix):
            return "base"
        if prefix.parent in [_norm(d) for d in self.envs_dirs]:
            return prefix.name
        return str(prefix)

    def short_name(self, prefix: Path) -> str:
        """A name for messages: the env name, or the folder name of a path-only env."""
        name = self.name_of(prefix)
        return Path(name).name if os.sep in name else name

    def prefix_for_name(self, name: str) -> Path | None:
        """The prefix conda would use for `-n name`; None if no such env exists."""
        if name in ROOT_ENV_NAMES and self.root_prefix is not None:
            return self.root_prefix
        for d in self.envs_dirs:
            if is_env(d / name):
                return d / name
        return None

    def default_prefix_for_new(self, name: str) -> Path:
        """Where conda would create `-n name`: the first writable envs dir."""
        for d in self.envs_dirs:
            if d.is_dir() and os.access(d, os.W_OK):
                return d / name
        return self.envs_dirs[0] / name

    def resolve(self, name: str | None = None, prefix: str | os.PathLike[str] | None = None,
                *, must_exist: bool = True) -> Path:
        """-n NAME or -p PATH to a prefix; with neither, the active env (CONDA_PREFIX)."""
        if name and prefix:
            raise UsageError("Give either -n NAME or -p PATH, not both.")
        if prefix:
            return _norm(prefix)
        if name:
            if os.sep in name and (must_exist or is_env(_norm(name))):
                return _norm(name)  # conda accepts a path given to -n
            found = self.prefix_for_name(name) if os.sep not in name else None
            if found is None:
                if not must_exist:
                    check_new_env_name(name)  # a new env goes in an envs folder, nowhere else
                    return self.default_prefix_for_new(name)
                raise EnvNotFoundError(f"named {name!r}", [str(d) for d in self.envs_dirs])
            return found
        active = os.environ.get("CONDA_PREFIX")
        if active:
            return _norm(active)
        if self.root_prefix is not None:
            return self.root_prefix
        raise UsageError("No env given and none is active: pass -n NAME or -p PATH.")

    def all_envs(self) -> list[Path]:
        """Every env we can see: root, envs dirs, and ~/.conda/environments.txt."""
        found: list[Path] = []

        def add(p: Path) -> None:
            p = _norm(p)
            if p not in found and is_env(p):
                found.append(p)

        if self.root_prefix is not None:
            add(self.root_prefix)
        for d in self.envs_dirs:
            try:
                for child in sorted(d.iterdir()):
                    add(child)
            except OSError:
                continue
        try:
            lines = (Path.home() / ".conda" / "environments.txt").read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            if line.strip():
                add(Path(line.strip()))
        return found


#: conda's PREFIX_NAME_DISALLOWED_CHARS (conda/base/constants.py): a new env's name.
NAME_DISALLOWED_CHARS = ("/", " ", ":", "#")


def check_new_env_name(name: str) -> None:
    """Refuse a name conda would refuse for a new env; `../x` or a newline would otherwise put
    an env outside the envs folders, or under a name no shell can type."""
    bad = [c for c in NAME_DISALLOWED_CHARS if c in name]
    if bad or name in (".", "..") or any(ord(c) < 32 or c == "\x7f" for c in name) or \
            os.sep in name or (os.altsep and os.altsep in name):
        shown = ", ".join(repr(c) for c in bad) or "control characters or a path"
        raise UsageError(f"Invalid environment name {name!r}: a new env's name cannot contain "
                         f"{shown} (conda's rule: none of / space : #). Nothing was created; "
                         "choose another name, or give a full path with -p.")
