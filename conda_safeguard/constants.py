"""Names shared by the core, the plugin and the shell snippets."""

from __future__ import annotations

from typing import Final

APP_NAME: Final = "conda-safeguard"

#: Version of the on-disk store layout; a store with a higher number is refused.
STORE_FORMAT: Final = 1
#: Version of the snapshot document schema inside the store.
SNAPSHOT_SCHEMA: Final = 1

# Environment variables.
ENV_HOME: Final = "CONDA_SAFEGUARD_HOME"  # store location
ENV_ALLOW: Final = "CONDA_SAFEGUARD_ALLOW"  # names the one env a script may destroy
ENV_SHELL: Final = "CONDA_SAFEGUARD_SHELL"  # "0" turns the shell wrappers off
ENV_LOCK_TIMEOUT: Final = "CONDA_SAFEGUARD_LOCK_TIMEOUT"
#: Set by the conda plugin while a conda command runs, so the shell layer steps aside.
ENV_PLUGIN_ACTIVE: Final = "CONDA_SAFEGUARD_PLUGIN_ACTIVE"
#: Set by restore for the conda it runs to add packages to the env it is building: the plugin
#: in that conda snapshots nothing of the half-built env (only for `install` into that prefix).
ENV_BUILDING: Final = "CONDA_SAFEGUARD_BUILDING"

# Settings under `plugins:` in .condarc (conda reads them as context.plugins.<name>).
SETTING_ENABLED: Final = "safeguard_enabled"
SETTING_PROTECT_DEFAULT: Final = "safeguard_protect_by_default"
SETTING_PROTECT_PATTERNS: Final = "safeguard_protect_patterns"
SETTING_TEMP_PATTERNS: Final = "safeguard_temp_patterns"
SETTING_STORE: Final = "safeguard_store"
SETTING_KEEP_LAST: Final = "safeguard_keep_last"
SETTING_KEEP_DAILY: Final = "safeguard_keep_daily"
SETTING_KEEP_WEEKLY: Final = "safeguard_keep_weekly"
SETTING_REQUIRE_SNAPSHOT: Final = "safeguard_require_snapshot"
SETTING_KEEP_PACKAGES: Final = "safeguard_keep_packages"
SETTING_PIN_BUDGET_MB: Final = "safeguard_pin_budget_mb"
SETTING_WHEEL_BUDGET_MB: Final = "safeguard_wheel_budget_mb"
SETTING_STORE_SHARED: Final = "safeguard_store_shared"
SETTING_SHARED_SECRETS: Final = "safeguard_shared_store_secrets"
SETTING_WARN_BASE_INSTALLS: Final = "safeguard_warn_base_installs"
SETTING_NAME_LINT: Final = "safeguard_name_lint"

DEFAULT_TEMP_PATTERNS: Final = ("*-tmp", "tmp-*", "*-temp", "temp-*", "scratch-*")
DEFAULT_KEEP_LAST: Final = 20
DEFAULT_KEEP_DAILY: Final = 7
DEFAULT_KEEP_WEEKLY: Final = 4

#: The protect mark lives in the env itself, so every user of a shared install sees it.
#: Not *.json: conda parses every conda-meta/*.json as a package record.
PROTECT_MARK: Final = "conda-meta/safeguard-protection"
#: CEP 22 marker, owned by conda; we only write it on `safeguard freeze`.
FROZEN_MARK: Final = "conda-meta/frozen"

#: conda's pre-command names we act on (`env remove` arrives as `remove`, `upgrade` as `update`).
RUN_FOR: Final = frozenset({"install", "update", "remove", "create", "rename", "env_update",
                            "env_vars", "env_create", "env_remove"})  # env_*: conda < 26

# Exit codes: a contract with the shell snippets (documented in the README).
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1  # an expected error: bad input, missing env, unreadable store
EXIT_USAGE: Final = 2  # argparse
EXIT_INTERNAL: Final = 3  # a bug: traceback printed
EXIT_REFUSED: Final = 4  # a protected env was not destroyed
EXIT_INTERRUPTED: Final = 130
