"""schedule install/remove/status in a temp HOME, and `backup --all` as the schedule runs it.

The real crontab and the user's systemd are never touched: `crontab` and `systemctl` are fake
executables on PATH that keep their state in the temp HOME and record their argv.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conda_safeguard import schedule as sch
from conda_safeguard.__main__ import main
from tests.conftest import cli_output

FAKE_CRONTAB = """#!/bin/sh
# a user's crontab, kept in $HOME (the real one is never read or written)
echo "crontab $*" >> "$HOME/calls.log"
case "$1" in
  -l) [ -f "$HOME/crontab.txt" ] || { echo "no crontab for $USER" >&2; exit 1; }
      cat "$HOME/crontab.txt" ;;
  -) cat > "$HOME/crontab.txt" ;;
  *) exit 2 ;;
esac
"""
FAKE_SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$HOME/calls.log"
"""


@pytest.fixture
def fake_bin(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    for name, text in (("crontab", FAKE_CRONTAB), ("systemctl", FAKE_SYSTEMCTL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    return bin_dir


def _calls(home: Path) -> list[str]:
    log = home / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "store" not in p.parts and p.name != "calls.log"}


def test_cron_install_is_idempotent_and_remove_takes_only_ours(
        fake_bin: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (isolated_home / "crontab.txt").write_text("MAILTO=ada\n0 * * * * /usr/bin/true\n")
    out = cli_output(capsys, "schedule", "install", "--backend", "cron", "--at", "02:30")
    assert "schedule installed (cron)" in out
    lines = (isolated_home / "crontab.txt").read_text().splitlines()
    assert lines[:2] == ["MAILTO=ada", "0 * * * * /usr/bin/true"]
    assert len(lines) == 3 and lines[2].startswith("30 2 * * * ")
    assert lines[2].endswith(sch.CRON_MARKER)
    assert f"{shlex.quote(sys.executable)} -m conda_safeguard backup --all -q" in lines[2]
    out = cli_output(capsys, "schedule", "install", "--backend", "cron", "--at", "02:30")
    assert "already installed" in out
    assert (isolated_home / "crontab.txt").read_text().count(sch.CRON_MARKER) == 1
    # a new time replaces our line, never adds a second one
    cli_output(capsys, "schedule", "install", "--backend", "cron", "--at", "04:00")
    text = (isolated_home / "crontab.txt").read_text()
    assert text.count(sch.CRON_MARKER) == 1 and "0 4 * * * " in text
    assert "schedule removed (cron)" in cli_output(capsys, "schedule", "remove", "--backend",
                                                    "cron")
    assert (isolated_home / "crontab.txt").read_text() == "MAILTO=ada\n0 * * * * /usr/bin/true\n"
    assert "already removed" in cli_output(capsys, "schedule", "uninstall", "--backend", "cron")


def test_dry_run_prints_and_changes_nothing(fake_bin: Path, isolated_home: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_output(capsys, "schedule", "install", "--backend", "cron", "--dry-run")
    assert out.strip().endswith(sch.CRON_MARKER) and "backup --all -q" in out
    assert not (isolated_home / "crontab.txt").exists()
    assert all(c == "crontab -l" for c in _calls(isolated_home))
    out = cli_output(capsys, "schedule", "install", "--backend", "systemd", "--dry-run")
    assert "[Timer]" in out and "OnCalendar=*-*-* 03:17:00" in out
    assert not (isolated_home / ".config" / "systemd").exists()
    assert not any(c.startswith("systemctl") for c in _calls(isolated_home))


def test_systemd_units_written_enabled_and_removed_inside_home(
        fake_bin: Path, isolated_home: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    outside_before = _files(tmp_path)
    out = cli_output(capsys, "schedule", "install", "--backend", "systemd")
    units = isolated_home / ".config" / "systemd" / "user"
    service = (units / f"{sch.UNIT}.service").read_text()
    assert f"ExecStart={shlex.quote(sys.executable)} -m conda_safeguard backup --all -q" in service
    assert f'Environment="CONDA_SAFEGUARD_HOME={tmp_path / "store"}"' in service
    assert "Persistent=true" in (units / f"{sch.UNIT}.timer").read_text()
    assert _calls(isolated_home) == ["systemctl --user daemon-reload",
                                     f"systemctl --user enable --now {sch.UNIT}.timer"]
    assert str(units / f"{sch.UNIT}.timer") in out
    assert "already installed" in cli_output(capsys, "schedule", "install", "--backend",
                                             "systemd")
    changed = {k for k in set(_files(tmp_path)) ^ set(outside_before)}
    assert changed == {f"home/.config/systemd/user/{sch.UNIT}.service",
                       f"home/.config/systemd/user/{sch.UNIT}.timer"}
    cli_output(capsys, "schedule", "remove", "--backend", "systemd")
    assert not list(units.iterdir())
    assert f"systemctl --user disable --now {sch.UNIT}.timer" in _calls(isolated_home)
    assert _files(tmp_path) == outside_before


def test_without_crontab_or_systemd_says_how_to_proceed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(sch, "systemd_available", lambda: False)
    assert main(["schedule", "install"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "crontab" in err and "--dry-run" in err
    assert main(["schedule", "install", "--at", "25:00"]) == 2
    assert "HH:MM" in capsys.readouterr().err


def test_scheduled_command_backs_up_quietly_and_stamps_the_run(
        fake_bin: Path, isolated_home: Path, make_env, standalone_root: Path,
        capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    make_env("alpha")
    make_env("beta")
    broken = make_env("broken")
    (broken / "conda-meta" / "liba-1.0-0.json").write_text("{")
    cli_output(capsys, "schedule", "install", "--backend", "cron")
    line = (isolated_home / "crontab.txt").read_text().splitlines()[-1]
    command = line.split(" ", 5)[5].removesuffix(sch.CRON_MARKER)
    # run it as cron would: through sh, with the environment the line carries
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                          env={**os.environ, "CONDA_SAFEGUARD_ROOT": str(standalone_root)})
    assert proc.returncode == 1
    assert proc.stdout == proc.stderr == ""  # the line sends what it prints to its log
    log = sch.cron_log()
    assert f">> {shlex.quote(str(log))} 2>&1" in line and str(isolated_home) in str(log)
    logged = log.read_text()
    assert logged.count("\n") == 1 and "skipped" in logged and "broken" in logged  # -q
    out = cli_output(capsys, "schedule", "status", "--backend", "cron")
    assert f"log of failed runs: {log}" in out
    # the root (base), alpha and beta are snapshotted; broken is the one failure
    assert "4 envs, 3 new snapshots, 0 unchanged, 1 failed" in out
    assert "(schedule)" in out and "envs never snapshotted: 1" in out
    data = json.loads(cli_output(capsys, "schedule", "status", "--backend", "cron", "--json"))
    assert data["last_run"]["created"] == 3 and len(data["last_run"]["failed"]) == 1
    assert data["installed"].endswith(sch.CRON_MARKER)
    capsys.readouterr()
    main(["status"])
    assert "last `backup --all`:" in capsys.readouterr().out


def test_backup_all_quiet_prints_nothing_when_all_is_well(
        make_env, standalone_root: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        make_env(f"e{i}")
    cli_output(capsys, "backup", "--all")
    capsys.readouterr()
    assert main(["backup", "--all", "-q"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")
    from conda_safeguard.store import Store

    run = sch.last_backup_all(Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]), create=False))
    assert run is not None and run["unchanged"] == 4 and run["created"] == 0
