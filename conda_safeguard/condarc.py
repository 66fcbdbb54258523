"""Reading .condarc files and our settings without conda.

The plugin reads settings from conda's context instead (conda has already merged every source);
this module serves the standalone `conda-safeguard` command, the shell snippets and micromamba.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import constants as C
from .exceptions import SafeguardError


def condarc_paths(root_prefix: Path | None) -> list[Path]:
    """conda's search path for .condarc files, lowest priority first."""
    home = Path.home()
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    paths = [Path("/etc/conda/.condarc"), Path("/etc/conda/condarc"),
             Path("/var/lib/conda/.condarc"), Path("/var/lib/conda/condarc")]
    if root_prefix is not None:
        paths += [root_prefix / ".condarc", root_prefix / "condarc"]
    paths += [xdg / "conda" / ".condarc", xdg / "conda" / "condarc",
              home / ".config/conda/.condarc",
              home / ".conda/.condarc", home / ".conda/condarc", home / ".condarc"]
    if os.environ.get("CONDA_PREFIX"):
        paths.append(Path(os.environ["CONDA_PREFIX"]) / ".condarc")
    if os.environ.get("CONDARC"):
        paths.append(Path(os.environ["CONDARC"]))
    seen: list[Path] = []
    for p in paths:
        if p not in seen:
            seen.append(p)
    return seen


def read_condarc(paths: list[Path]) -> dict[str, Any]:
    """Merge the files: later files win for scalars; lists concatenate, as conda does."""
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        except OSError as e:
            raise SafeguardError(f"Cannot read {path}: {e.strerror}.") from None
        import yaml  # only once a file exists: most commands never need a YAML parser

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise SafeguardError(
                f"{path} is not valid YAML ({e}). Fix it; nothing was changed.") from None
        if not isinstance(data, dict):
            continue
        for key, value in data.items():
            if key == "plugins" and isinstance(value, dict):
                merged.setdefault("plugins", {}).update(value)
            elif isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + [v for v in value if v not in merged[key]]
            else:
                merged[key] = value
    return merged


#: What conda's boolify() reads as true in config and environment values ("1" via numbers).
TRUE_WORDS = frozenset({"1", "true", "yes", "on", "y"})


def truthy(value: object) -> bool:
    """A config or environment value conda would take as true (always_yes, CONDA_NO_PLUGINS …)."""
    return str(value if value is not None else "").strip().lower() in TRUE_WORDS


# ---------------------------------------------------------------------------------------------
# settings


@dataclass
class Settings:
    enabled: bool = True
    protect_by_default: bool = True
    protect_patterns: list[str] = field(default_factory=list)
    temp_patterns: list[str] = field(default_factory=lambda: list(C.DEFAULT_TEMP_PATTERNS))
    store: str | None = None
    keep_last: int = C.DEFAULT_KEEP_LAST
    keep_daily: int = C.DEFAULT_KEEP_DAILY
    keep_weekly: int = C.DEFAULT_KEEP_WEEKLY
    require_snapshot: bool = False
    keep_packages: str = "auto"
    pin_budget_mb: int = 2048
    wheel_budget_mb: int = 1024  # kept pip wheels (wheels.py)
    store_shared: bool = False  # a team store (storeperm.py)
    shared_store_secrets: bool = False
    warn_base_installs: bool = True  # advice.py
    name_lint: bool = True

    def is_temp(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.temp_patterns)

    def matches_protect_pattern(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.protect_patterns)


# setting name -> (Settings attribute, type)
SETTINGS_SCHEMA: dict[str, tuple[str, type]] = {
    C.SETTING_ENABLED: ("enabled", bool),
    C.SETTING_PROTECT_DEFAULT: ("protect_by_default", bool),
    C.SETTING_PROTECT_PATTERNS: ("protect_patterns", list),
    C.SETTING_TEMP_PATTERNS: ("temp_patterns", list),
    C.SETTING_STORE: ("store", str),
    C.SETTING_KEEP_LAST: ("keep_last", int),
    C.SETTING_KEEP_DAILY: ("keep_daily", int),
    C.SETTING_KEEP_WEEKLY: ("keep_weekly", int),
    C.SETTING_REQUIRE_SNAPSHOT: ("require_snapshot", bool),
    C.SETTING_KEEP_PACKAGES: ("keep_packages", str),
    C.SETTING_PIN_BUDGET_MB: ("pin_budget_mb", int),
    C.SETTING_WHEEL_BUDGET_MB: ("wheel_budget_mb", int),
    C.SETTING_STORE_SHARED: ("store_shared", bool),
    C.SETTING_SHARED_SECRETS: ("shared_store_secrets", bool),
    C.SETTING_WARN_BASE_INSTALLS: ("warn_base_installs", bool),
    C.SETTING_NAME_LINT: ("name_lint", bool),
}
KEEP_PACKAGES_CHOICES = ("auto", "always", "never")


#: What each kind of setting takes, in the words a message uses.
_KIND_WORDS = {bool: "true or false", int: "a whole number, 0 or more",
               list: "a list of names", str: "a text value"}


def _how_to_set(name: str, kind: type, env_var: str | None) -> str:
    if env_var is not None:
        return f"fix or unset the environment variable {env_var}"
    if kind is list:
        return f"set it with `conda config --append plugins.{name} VALUE` (once per value)"
    return f"fix it with `conda config --set plugins.{name} VALUE`"


def _coerce(name: str, value: Any, kind: type, env_var: str | None = None) -> Any:
    where = f"The environment variable {env_var}" if env_var else f"The setting plugins.{name}"
    bad = SafeguardError(
        f"{where} is {value!r}, which is not {_KIND_WORDS[kind]}. Nothing was changed; "
        f"{_how_to_set(name, kind, env_var)}."
    )
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on", "false", "no",
                                                        "0", "off"):
            return value.lower() in ("true", "yes", "1", "on")
        raise bad
    if kind is int:
        if isinstance(value, bool):
            raise bad
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise bad from None
        if number < 0:
            raise bad
        return number
    if kind is list:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        raise bad
    if value is None:
        return None
    if not isinstance(value, str):
        raise bad
    return value


def settings_from_mapping(values: dict[str, Any],
                          env_vars: dict[str, str] | None = None) -> Settings:
    """Settings from `{setting_name: value}` (condarc `plugins:` or conda's context.plugins).

    `env_vars` names the environment variable a value came from, so an error names it too.
    """
    env_vars = env_vars or {}
    settings = Settings()
    for name, (attr, kind) in SETTINGS_SCHEMA.items():
        if name in values and values[name] is not None:
            setattr(settings, attr, _coerce(name, values[name], kind, env_vars.get(name)))
    if settings.keep_packages not in KEEP_PACKAGES_CHOICES:
        name = C.SETTING_KEEP_PACKAGES
        where = f"The environment variable {env_vars[name]}" if name in env_vars else \
            f"The setting plugins.{name}"
        raise SafeguardError(
            f"{where} is {settings.keep_packages!r}; it takes one of "
            f"{', '.join(KEEP_PACKAGES_CHOICES)}. Nothing was changed; "
            f"{_how_to_set(name, str, env_vars.get(name))}."
        )
    return settings


def load_settings(condarc: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    """Settings for the standalone command: .condarc `plugins:` then CONDA_PLUGINS_* env vars."""
    environ = dict(os.environ) if environ is None else environ
    values = dict(condarc.get("plugins") or {})
    env_vars = {}
    for name in SETTINGS_SCHEMA:
        var = f"CONDA_PLUGINS_{name.upper()}"
        env_value = environ.get(var)
        if env_value is not None:
            values[name] = env_value
            env_vars[name] = var
    return settings_from_mapping(values, env_vars)
