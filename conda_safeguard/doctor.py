"""`conda doctor` health checks: envs with no snapshot, and the store's integrity.

With `safeguard_enabled: false` they print nothing and fix nothing: off means off.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .exceptions import SafeguardError
from .suggest import plural

OK = "✅"
BAD = "❌"


def _runtime() -> Any:
    """Our Runtime, or None when the plugin is switched off."""
    from .hooks import runtime_from_context, settings_from_context

    settings = settings_from_context()
    return runtime_from_context(settings) if settings.enabled else None


def envs_without_snapshot(rt: Any) -> list[Path]:
    try:
        store = rt.store(create=False)
        covered = {s.prefix for s in store.snapshots()}
    except SafeguardError:
        covered = set()
    return [p for p in rt.locator.all_envs() if str(p) not in covered]


def check_snapshots(prefix: str, verbose: bool) -> None:
    rt = _runtime()
    if rt is None:
        return
    missing = envs_without_snapshot(rt)
    here = Path(prefix) in missing
    mark = BAD if here else OK
    state = "has no" if here else "has a"
    print(f"{mark} This environment {state} conda-safeguard snapshot.")
    others = [p for p in missing if p != Path(prefix)]
    if others:
        print(f"{BAD} {len(others)} other environments have none"
              + (": " + ", ".join(str(p) for p in others) if verbose else
                 " (use --verbose to list them)."))
    print()


def fix_snapshots(prefix: str, args: Any, confirm: Any) -> int:
    rt = _runtime()
    if rt is None:
        return 0
    missing = envs_without_snapshot(rt)
    if not missing:
        print("Every environment has a snapshot.")
        return 0
    confirm(f"Take a snapshot of {plural(len(missing), 'environment')} now?")
    for p in missing:
        result = rt.backup(p, reason="conda doctor --fix")
        print(f"  {result.snapshot.env_name}: snapshot {result.snapshot.short_id}")
    return 0


def check_store(prefix: str, verbose: bool) -> None:
    rt = _runtime()
    if rt is None:
        return
    try:
        from .storecheck import check_store

        report = check_store(rt.store(create=False))
    except SafeguardError as e:
        print(f"{BAD} conda-safeguard store: {e}\n")
        return
    if report.ok:
        print(f"{OK} The conda-safeguard store at {rt.store_path} is intact "
              f"({report.snapshots} snapshots, {report.objects} objects, "
              f"{report.packages} packages).\n")
        return
    print(f"{BAD} The conda-safeguard store at {rt.store_path} has problems: "
          f"{len(report.corrupt)} damaged, {len(report.missing)} missing objects, "
          f"{len(report.unreadable)} unreadable snapshots. Run `conda safeguard check`.\n")
