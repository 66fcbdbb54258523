"""`schedule`: run `backup --all` daily from a systemd user timer, or else a crontab line.

Everything it installs is one named unit pair or one marked crontab line, so install is
idempotent and remove takes away exactly what install added. The job is the same command a
user types (`conda-safeguard backup --all -q`): quiet when all is well, the failures on stderr,
and a stamp of the run in the store that `schedule status` and `status` show.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .constants import ENV_HOME
from .exceptions import SafeguardError, UsageError
from .fs import atomic_write
from .suggest import plural

if TYPE_CHECKING:
    from .store import Store

UNIT = "conda-safeguard-backup"
CRON_MARKER = "# conda-safeguard-backup (managed by `conda-safeguard schedule`)"
LAST_RUN_CACHE = "last-backup-all.json"
BACKENDS = ("auto", "systemd", "cron")


class ScheduleError(SafeguardError):
    """The scheduler could not be changed as asked."""


# ---------------------------------------------------------------------------------------------
# the record of the last `backup --all`


def record_backup_all(store: Store, *, envs: int, created: int, unchanged: int,
                      failed: list[tuple[str, str]], reason: str) -> None:
    """Stamp the run in the store (derived data: losing it loses only this report)."""
    with contextlib.suppress(OSError):  # the backups are done; no stamp = "no run recorded"
        store.write_cache(LAST_RUN_CACHE, {
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "reason": reason,
            "envs": envs, "created": created, "unchanged": unchanged,
            "failed": [{"prefix": p, "error": e} for p, e in failed]})


def last_backup_all(store: Store | None) -> dict[str, Any] | None:
    if store is None:
        return None
    data = store.read_cache(LAST_RUN_CACHE)
    return data or None


def _count(run: dict[str, Any], key: str) -> int:
    value = run.get(key, 0)  # the stamp file is read back: never trust its types
    return value if isinstance(value, int) else 0


def describe_last_run(run: dict[str, Any] | None) -> str:
    if not run:
        return "last `backup --all`: no run recorded"
    failed = run.get("failed") or []
    text = (f"last `backup --all`: {str(run.get('finished', '?')).replace('T', ' ')} "
            f"({run.get('reason', '?')}): {plural(_count(run, 'envs'), 'env')}, "
            f"{plural(_count(run, 'created'), 'new snapshot')}, {_count(run, 'unchanged')} "
            f"unchanged, {len(failed)} failed")
    return text + "".join(f"\n  failed {f.get('prefix')}: {f.get('error')}" for f in failed)


# ---------------------------------------------------------------------------------------------
# what gets installed


@dataclass
class Job:
    """The command the scheduler runs, with the environment that makes it find the same
    store and envs as the user who installed it."""

    argv: list[str]
    environment: dict[str, str] = field(default_factory=dict)
    hour: int = 3
    minute: int = 17
    log: Path | None = None  # cron: where the run's output goes (systemd has the journal)

    @classmethod
    def current(cls, *, at: str | None = None, root_prefix: Path | None = None) -> Job:
        hour, minute = _parse_at(at) if at else (3, 17)
        env = {}
        if os.environ.get(ENV_HOME):
            env[ENV_HOME] = os.path.abspath(os.environ[ENV_HOME])
        if root_prefix is not None:
            env["CONDA_SAFEGUARD_ROOT"] = str(root_prefix)
        for var in ("CONDARC", "CONDA_ENVS_PATH", "CONDA_ENVS_DIRS"):
            if os.environ.get(var):
                env[var] = os.environ[var]
        argv = [sys.executable, "-m", "conda_safeguard", "backup", "--all", "-q",
                "--reason", "schedule"]
        return cls(argv=argv, environment=env, hour=hour, minute=minute, log=cron_log())

    def cron_line(self) -> str:
        assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.environment.items()))
        command = " ".join(shlex.quote(a) for a in self.argv)
        # cron's command field treats % as a newline
        # -q prints failures only: the log holds one paragraph per failed run, not a diary
        log = f" >> {shlex.quote(str(self.log))} 2>&1" if self.log else ""
        return (f"{self.minute} {self.hour} * * * {assigns + ' ' if assigns else ''}"
                f"{command}{log}".replace("%", chr(92) + "%") + f" {CRON_MARKER}")

    def systemd_units(self) -> dict[str, str]:
        env = "".join(f'Environment="{k}={v}"\n' for k, v in sorted(self.environment.items()))
        service = (
            "[Unit]\nDescription=Snapshot every conda environment (conda-safeguard)\n\n"
            f"[Service]\nType=oneshot\n{env}"
            f"ExecStart={' '.join(shlex.quote(a) for a in self.argv)}\n"
            "Nice=10\nIOSchedulingClass=idle\n")
        timer = (
            "[Unit]\nDescription=Daily snapshot of every conda environment (conda-safeguard)\n\n"
            f"[Timer]\nOnCalendar=*-*-* {self.hour:02d}:{self.minute:02d}:00\nPersistent=true\n"
            "RandomizedDelaySec=600\n\n[Install]\nWantedBy=timers.target\n")
        return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def cron_log() -> Path:
    """Where the crontab line appends what a run prints (its failures)."""
    import platformdirs

    return Path(platformdirs.user_log_dir("conda-safeguard")) / "backup-all.log"


def _parse_at(at: str) -> tuple[int, int]:
    try:
        hh, mm = at.split(":")
        hour, minute = int(hh), int(mm)
    except ValueError:
        hour = minute = -1
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise UsageError(f"--at {at!r} is not a time of day; give HH:MM, e.g. --at 02:30.")
    return hour, minute


def systemd_available() -> bool:
    """sd_booted(): systemd is the init system (containers and WSL1 often have no systemd)."""
    return Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None


def choose_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if backend != "auto":
        return backend
    return "systemd" if systemd_available() else "cron"


def unit_dir() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


# ---------------------------------------------------------------------------------------------
# install / remove / status


@dataclass
class Outcome:
    backend: str
    changed: bool
    files: list[str] = field(default_factory=list)  # written or removed
    commands: list[list[str]] = field(default_factory=list)  # run (or to run, when dry)
    text: str = ""  # the crontab line or unit files, for --dry-run and status
    notes: list[str] = field(default_factory=list)


def install(job: Job, backend: str, *, dry_run: bool = False) -> Outcome:
    backend = choose_backend(backend)
    if backend == "cron":
        return _cron_install(job, dry_run)
    units = job.systemd_units()
    out = Outcome("systemd", changed=False,
                  text="".join(f"# {unit_dir() / n}\n{t}\n" for n, t in units.items()))
    for name, text in units.items():
        path = unit_dir() / name
        if _read(path) != text:
            out.changed = True
            out.files.append(str(path))
            if not dry_run:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, text.encode(), mode=0o644)
    out.commands = [["systemctl", "--user", "daemon-reload"],
                    ["systemctl", "--user", "enable", "--now", f"{UNIT}.timer"]]
    if not dry_run:
        _run_all(out)
    return out


def remove(backend: str, *, dry_run: bool = False) -> Outcome:
    backend = choose_backend(backend)
    if backend == "cron":
        return _cron_remove(dry_run)
    out = Outcome("systemd", changed=False)
    paths = [unit_dir() / f"{UNIT}.timer", unit_dir() / f"{UNIT}.service"]
    present = [p for p in paths if p.exists()]
    if present:
        out.changed = True
        out.files = [str(p) for p in present]
        out.commands = [["systemctl", "--user", "disable", "--now", f"{UNIT}.timer"]]
        if not dry_run:
            _run_all(out)  # stop the timer first; its files go even if systemctl is absent
            for p in present:
                p.unlink()
            out.commands.append(["systemctl", "--user", "daemon-reload"])
            _run_all(Outcome("systemd", True, commands=[out.commands[-1]], notes=out.notes))
    return out


def installed(backend: str) -> tuple[str, str | None]:
    """(backend, what is installed: the timer's calendar or the crontab line; None if not)."""
    backend = choose_backend(backend)
    if backend == "cron":
        if shutil.which("crontab") is None:
            return backend, None  # nothing can be installed where there is no crontab
        line = next((ln for ln in _crontab_lines() if ln.endswith(CRON_MARKER)), None)
        return backend, line
    timer = _read(unit_dir() / f"{UNIT}.timer")
    if timer is None:
        return backend, None
    cal = next((ln.split("=", 1)[1] for ln in timer.splitlines() if ln.startswith("OnCalendar=")),
               "?")
    return backend, f"{unit_dir() / (UNIT + '.timer')} (OnCalendar={cal})"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _run_all(out: Outcome) -> None:
    """Run systemctl; a missing or failing systemctl is a note with the command, not a crash:
    the unit files are in place and take effect at the next login or daemon-reload."""
    for cmd in out.commands:
        if shutil.which(cmd[0]) is None:
            out.notes.append(f"{cmd[0]} not found: run `{' '.join(cmd)}` where systemd runs")
            return
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            why = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            out.notes.append(f"`{' '.join(cmd)}` failed ({why}); run it yourself once the "
                             "user's systemd is running")
            return


def _crontab() -> str:
    exe = shutil.which("crontab")
    if exe is None:
        raise ScheduleError("Neither a running systemd nor `crontab` was found. Install cron "
                            "(or use --backend systemd on a machine that runs systemd), or add "
                            "the line `conda-safeguard schedule install --dry-run` prints to "
                            "your scheduler by hand.")
    return exe


def _crontab_lines() -> list[str]:
    proc = subprocess.run([_crontab(), "-l"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        if "no crontab" in proc.stderr.lower():
            return []
        raise ScheduleError(f"`crontab -l` failed: {proc.stderr.strip() or proc.returncode}. "
                            "Nothing was changed.")
    return proc.stdout.splitlines()


def _write_crontab(lines: list[str]) -> None:
    text = "".join(f"{line}\n" for line in lines)
    proc = subprocess.run([_crontab(), "-"], input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ScheduleError(f"`crontab -` refused the new table: {proc.stderr.strip()}. Your "
                            "crontab was not changed.")


def _cron_install(job: Job, dry_run: bool) -> Outcome:
    line = job.cron_line()
    out = Outcome("cron", changed=False, text=line + "\n")
    if dry_run and shutil.which("crontab") is None:
        out.changed = True
        return out
    lines = _crontab_lines()
    ours = [ln for ln in lines if ln.endswith(CRON_MARKER)]
    if ours == [line]:
        return out
    out.changed = True
    out.commands = [["crontab", "-"]]
    if not dry_run:
        if job.log is not None:  # cron cannot append to a file in a folder that is not there
            job.log.parent.mkdir(parents=True, exist_ok=True)
        _write_crontab([ln for ln in lines if not ln.endswith(CRON_MARKER)] + [line])
    return out


def _cron_remove(dry_run: bool) -> Outcome:
    lines = _crontab_lines()
    keep = [ln for ln in lines if not ln.endswith(CRON_MARKER)]
    out = Outcome("cron", changed=len(keep) != len(lines))
    if out.changed:
        out.commands = [["crontab", "-"]]
        if not dry_run:
            _write_crontab(keep)
    return out
