"""What every verb needs: where envs are, the settings, the store, and how to talk to the user.

The standalone command builds a Runtime from .condarc files; the conda plugin builds one from
conda's context (exact env dirs, channels and settings).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..backup import BackupResult, backup
from ..condarc import Settings, load_settings
from ..envs import EnvLocator
from ..prefix import require_env
from ..store import Store, default_store_path

if TYPE_CHECKING:
    from ..progress import Progress


@dataclass
class Runtime:
    locator: EnvLocator
    settings: Settings
    configured_channels: list[str] = field(default_factory=list)
    conda_version: str | None = None  # the conda in use, for what its `env export` writes
    json: bool = False
    quiet: bool = False
    _store: Store | None = None

    @classmethod
    def from_system(cls) -> Runtime:
        locator = EnvLocator.from_system()
        settings = load_settings(locator.condarc)
        from ..condaversion import conda_in_use
        from ..render import configured_channels

        # `conda env export` differs by conda release: follow the conda the user calls
        version = conda_in_use()
        configured = configured_channels(locator.condarc.get("channels"), version)
        return cls(locator=locator, settings=settings, configured_channels=configured,
                   conda_version=version)

    @property
    def store_path(self) -> Path:
        return default_store_path(self.settings.store)

    def store(self, *, create: bool = True) -> Store:
        if self._store is None:
            self._store = Store.open(self.store_path, create=create, warn=self.warn,
                                     shared=self.settings.store_shared,
                                     shared_secrets=self.settings.shared_store_secrets)
        return self._store

    def backup(self, prefix: Path, *, reason: str, argv: list[str] | None = None,
               force: bool = False) -> BackupResult:
        from ..pins import pinner
        from ..wheels import wheel_keeper

        require_env(prefix)  # before opening (and maybe creating) the store
        return backup(self.store(), prefix, env_name=self.locator.name_of(prefix), reason=reason,
                      argv=argv, configured_channels=self.configured_channels,
                      conda_version=self.conda_version,
                      pin=pinner(self.settings, progress=self.info),
                      keep_wheels=wheel_keeper(self.settings, progress=self.info),
                      force=force)

    # -- output: data to stdout, everything else to stderr ------------------------------------

    def emit_json(self, data: Any) -> None:
        json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
        sys.stdout.write("\n")

    def out(self, text: str = "") -> None:
        print(text)

    def warn(self, text: str) -> None:
        """Damage and degraded results: said even under --json and --quiet."""
        print(f"conda-safeguard: warning: {text}", file=sys.stderr)

    def info(self, text: str) -> None:
        if not self.quiet and not self.json:
            print(text, file=sys.stderr)

    def progress(self, label: str, total: int | None = None) -> Progress:
        """A progress line for long work: on a terminal, never under --json or --quiet."""
        from ..progress import Progress

        return Progress(label, total, enabled=not self.quiet and not self.json)


def env_label(runtime: Runtime, prefix: str | Path) -> str:
    name = runtime.locator.name_of(Path(prefix))
    return name if os.sep not in name else str(prefix)
