"""Our settings as conda plugin settings (`plugins:` in .condarc, CONDA_PLUGINS_SAFEGUARD_*).

Defaults come from condarc.Settings, so conda and the standalone command agree on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import constants as C
from .condarc import SETTINGS_SCHEMA, Settings

DESCRIPTIONS = {
    C.SETTING_ENABLED: "Turn conda-safeguard's protection and snapshots on or off.",
    C.SETTING_PROTECT_DEFAULT: "Protect every env not matching safeguard_temp_patterns.",
    C.SETTING_PROTECT_PATTERNS: "Env name patterns that are always protected (fnmatch).",
    C.SETTING_TEMP_PATTERNS: "Env name patterns that are not protected (fnmatch).",
    C.SETTING_STORE: "Where snapshots are stored (CONDA_SAFEGUARD_HOME overrides).",
    C.SETTING_KEEP_LAST: "prune keeps this many newest snapshots per env.",
    C.SETTING_KEEP_DAILY: "prune keeps the newest snapshot of this many days per env.",
    C.SETTING_KEEP_WEEKLY: "prune keeps the newest snapshot of this many weeks per env.",
    C.SETTING_REQUIRE_SNAPSHOT: "Refuse any change when its snapshot fails (default: warn).",
    C.SETTING_KEEP_PACKAGES: "Keep package files for offline restore: auto, always or never.",
    C.SETTING_PIN_BUDGET_MB: "Most MB of package copies kept when hardlinks are impossible.",
    C.SETTING_WHEEL_BUDGET_MB: "Most MB of pip wheels kept so pip packages restore offline.",
    C.SETTING_STORE_SHARED: "The store is a team store: group-writable, each user prunes "
                            "only their own snapshots.",
    C.SETTING_SHARED_SECRETS: "Keep env vars that look like credentials in a team store too.",
    C.SETTING_WARN_BASE_INSTALLS: "Warn when packages are installed into base.",
    C.SETTING_NAME_LINT: "Warn on create when an env gets a generic name (test, myenv, env2).",
}


def conda_setting_definitions(setting_type: Any) -> Iterator[Any]:
    from conda.common.configuration import PrimitiveParameter, SequenceParameter

    defaults = Settings()
    for name, (attr, kind) in SETTINGS_SCHEMA.items():
        default = getattr(defaults, attr)
        if kind is list:
            parameter = SequenceParameter(PrimitiveParameter("", element_type=str),
                                          default=tuple(default))
        elif kind is str:
            parameter = PrimitiveParameter(default if default is not None else "",
                                           element_type=str)
        else:
            parameter = PrimitiveParameter(default, element_type=kind)
        yield setting_type(name=name, description=DESCRIPTIONS[name], parameter=parameter)
