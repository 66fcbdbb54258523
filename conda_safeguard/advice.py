"""Keeping base clean and env names meaningful: pure decisions, no I/O but reading a marker.

- freeze base: conda's CEP 22 marker; conda >= 25.5 enforces it itself, on older conda the
  plugin refuses the same commands (conda never learned the marker there).
- a warning when packages go into base (setting safeguard_warn_base_installs);
- a naming lint on create (setting safeguard_name_lint): `test`, `myenv`, `env2` say nothing
  about what the env is for; the seeds' form is `<domain>-<task>-<framework><version>`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from .exceptions import RefusedError
from .prefix import read_frozen
from .suggest import safeguard

#: conda release that enforces conda-meta/frozen itself (CEP 22).
CEP22_CONDA: Final = (25, 5)
#: Commands a frozen env refuses (conda's own list for CEP 22).
FROZEN_BLOCKS: Final = frozenset({"install", "install_revision", "update", "remove",
                                  "env_update", "env_remove"})
NAME_FORM: Final = "<domain>-<task>-<framework><version>"
NAME_EXAMPLE: Final = "nlp-finetune-torch2.3"
BASE_FROZEN_MESSAGE: Final = (
    "base is frozen to keep conda itself working: create a named env for your packages, "
    f"e.g. `conda create -n {NAME_EXAMPLE} python pytorch`")

GENERIC_NAMES: Final = frozenset({
    "env", "envs", "myenv", "my-env", "my_env", "newenv", "new-env", "new", "test", "tests",
    "testenv", "test-env", "test_env", "tmp", "temp", "py", "python", "python3", "venv",
    "default", "work", "dev", "foo", "bar", "demo", "sandbox", "main", "conda", "project",
})
_TRAILING_NUMBER = re.compile(r"[-_]?\d+$")


def conda_version_tuple(version: str) -> tuple[int, int]:
    parts = re.findall(r"\d+", version)
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 else (0, 0)


def conda_enforces_frozen(conda_version: str) -> bool:
    return conda_version_tuple(conda_version) >= CEP22_CONDA


def frozen_refusal(command: str, prefix: Path, name: str,
                   conda_version: str) -> RefusedError | None:
    """On conda older than 25.5, the refusal conda would give a frozen env; else None."""
    if command not in FROZEN_BLOCKS or conda_enforces_frozen(conda_version):
        return None
    message = read_frozen(prefix)
    if message is None:
        return None
    why = f" ({message})" if message else ""
    return RefusedError(
        f"Refusing to change frozen environment '{name}' ({prefix}){why}: it carries conda's "
        f"CEP 22 marker conda-meta/frozen, which conda {conda_version} does not check itself, "
        f"so conda-safeguard does. Create a named env instead (conda create -n {NAME_EXAMPLE} "
        f"…), or unfreeze it first: conda safeguard unfreeze -n {name}.")


def base_install_warning(command: str, is_base: bool) -> str | None:
    if not is_base or command not in ("install", "update"):
        return None
    return ("conda-safeguard: warning: installing into base. Packages in base can break conda "
            "itself and are shared by every env; put them in a named env "
            f"(conda create -n {NAME_EXAMPLE} …). `{safeguard('freeze', '-n', 'base')}` makes "
            "this a refusal; plugins.safeguard_warn_base_installs: false silences it.")


def name_lint(name: str) -> str | None:
    """A warning for a name that says nothing about the env, else None."""
    stem = _TRAILING_NUMBER.sub("", name.lower())
    if name.lower() not in GENERIC_NAMES and stem not in GENERIC_NAMES:
        return None
    return (f"conda-safeguard: note: the env name '{name}' says nothing about what it holds; "
            f"names like {NAME_FORM} (e.g. {NAME_EXAMPLE}) stay findable months later and keep "
            "generic names free. plugins.safeguard_name_lint: false silences this.")
