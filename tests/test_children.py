"""A child writing into an env being built (conda, pip) does not outlive a killed restore."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conda_safeguard.children import run_tied

REPO = Path(__file__).resolve().parents[1]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; it only waits to be reaped


def _pid_from(pidfile: Path) -> int:
    """The pid a started process writes, once it has."""
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(pidfile.read_text())


def _ends(pid: int) -> bool:
    """The process ends within 10 s."""
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="PR_SET_PDEATHSIG is Linux's; elsewhere children run as before")
def test_the_child_dies_when_its_parent_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    child_code = (f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); "
                  "time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from conda_safeguard.children import run_tied\n"
        f"run_tied([sys.executable, '-c', {child_code!r}])\n")])
    child = _pid_from(pidfile)
    try:
        assert _alive(child)
        os.kill(parent.pid, signal.SIGKILL)  # as the OOM killer or kill -9 would
        parent.wait()
        assert _ends(child), "the child outlived its killed parent"
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_output_and_status_come_back() -> None:
    done = run_tied([sys.executable, "-c", "import sys; print('out'); "
                     "print('err', file=sys.stderr); sys.exit(3)"])
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_an_interrupted_wait_kills_the_child_and_what_it_started(tmp_path: Path) -> None:
    """^C (or a signal that rolls a restore back) while conda runs: conda and its own children
    (compileall, link scripts) stop before the rollback, not after."""
    pidfile = tmp_path / "grandchild.pid"
    child_code = ("import subprocess, sys, time; "
                  "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
                  f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from conda_safeguard.children import run_tied\n"
        "try:\n"
        f"    run_tied([sys.executable, '-c', {child_code!r}])\n"
        "except KeyboardInterrupt:\n"
        "    sys.exit(130)\n")])
    grandchild = _pid_from(pidfile)
    try:
        assert _alive(grandchild)
        os.kill(parent.pid, signal.SIGINT)
        assert parent.wait(timeout=30) == 130
        assert _ends(grandchild), "conda's own child outlived the interrupted wait"
    finally:
        if _alive(grandchild):
            os.kill(grandchild, signal.SIGKILL)
