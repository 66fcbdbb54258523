"""A restore over an existing env killed at random moments (kill -9, SIGHUP) always leaves an
env at its path, and `recover` then finishes or rolls it back; two restores into one path do
not delete each other's work. Real envs (factory packages, py-rattler), the real CLI in a
child process.

CONDA_SAFEGUARD_CRASH_RUNS raises the number of kills (default 20) for a soak run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conda_safeguard.prefix import is_env
from tests.factory import install_env
from tests.restoring_helpers import World, package_set

RUNS = int(os.environ.get("CONDA_SAFEGUARD_CRASH_RUNS", "20"))


def start(*args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "conda_safeguard", *map(os.fspath, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, env=dict(os.environ),
                            start_new_session=True)


def two_states(world: World) -> tuple[Path, dict[str, str], dict]:
    """An env with a snapshot at liba 1.0 and one at liba 2.0 (+libc), user data inside."""
    prefix = world.env("crash", ["python", "liba=1.0", "libb", "tool"])
    (prefix / "results").mkdir()
    (prefix / "results" / "model.bin").write_bytes(os.urandom(50_000))
    ids = {"1.0": world.run("backup", "-n", "crash", "--json").json()["snapshots"][0]["id"]}
    install_env(prefix, world.channel, ["liba=2.0", "libc"], cache_dir=world.pkgs)
    ids["2.0"] = world.run("backup", "-n", "crash", "--json").json()["snapshots"][0]["id"]
    sets = {"2.0": package_set(prefix)}
    return prefix, ids, sets


def beside(prefix: Path) -> list[str]:
    return sorted(p.name for p in prefix.parent.iterdir() if "safeguard" in p.name)


def test_kill_at_random_points_always_leaves_an_env(world: World) -> None:
    prefix, ids, sets = two_states(world)
    data = (prefix / "results" / "model.bin").read_bytes()
    t0 = time.monotonic()  # one uninterrupted restore: how long the window to hit is
    proc = start("restore", ids["1.0"], "-p", prefix, "--yes")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    full = time.monotonic() - t0
    sets["1.0"] = package_set(prefix)
    rng = random.Random(int(os.environ.get("CONDA_SAFEGUARD_CRASH_SEED", "9")))
    tally = {"rolled back": 0, "finished": 0, "completed before the kill": 0, "no env": 0}
    for run in range(RUNS):
        current = "2.0" if package_set(prefix) == sets["2.0"] else "1.0"
        wanted = "1.0" if current == "2.0" else "2.0"
        sig = signal.SIGKILL if run % 3 != 2 else signal.SIGHUP
        proc = start("restore", ids[wanted], "-p", prefix, "--yes")
        time.sleep(rng.uniform(0.05, full))
        os.killpg(proc.pid, sig)  # the restore and anything it started
        proc.communicate(timeout=60)
        if not is_env(prefix):
            tally["no env"] += 1
        r = world.run("recover", "-p", prefix)
        assert r.code == 0, r.out + r.err
        now = package_set(prefix)
        assert now in (sets["1.0"], sets["2.0"]), f"run {run}: a mixed env {now}"
        if "rolled back" in r.out:
            tally["rolled back"] += 1
            assert now == sets[current]
        elif "finished" in r.out:
            tally["finished"] += 1
            assert now == sets[wanted]
        else:
            tally["completed before the kill" if now == sets[wanted] else "rolled back"] += 1
        assert (prefix / "results" / "model.bin").read_bytes() == data, f"run {run}"
        assert beside(prefix) == [], f"run {run}: {beside(prefix)}"
        assert world.run("verify", "-p", prefix).code == 0, f"run {run}"
    print(f"\n{RUNS} killed restores ({full:.2f}s each uninterrupted): {tally}")
    assert tally["no env"] == 0, tally


def test_status_and_list_show_an_interrupted_restore(world: World) -> None:
    prefix, ids, sets = two_states(world)
    for _ in range(40):  # kill it once the old env is aside and the journal says so
        proc = start("restore", ids["1.0"], "-p", prefix, "--yes")
        journal = prefix.with_name(".crash.safeguard-journal.json")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            if journal.exists() and '"swapped"' in journal.read_text(errors="replace"):
                break
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        if journal.exists():
            break
        world.run("restore", ids["2.0"], "-p", prefix, "--yes")  # it finished: try again
    else:
        pytest.skip("the restore always finished before it could be killed (machine too fast)")
    r = world.run("status", "-p", prefix)
    assert "INTERRUPTED RESTORE" in r.out and "conda-safeguard recover -p" in r.err
    r = world.run("list")
    assert "interrupted restore into" in r.err and ".crash.safeguard-old-" in r.err
    # the env at the path may be half-built: it is never snapshotted, nor planned against
    r = world.run("backup", "-p", prefix)
    assert r.code != 0 and "a conda-safeguard restore is replacing" in r.err, r.out + r.err
    r = world.run("undo", "-p", prefix, "--dry-run")
    assert r.code != 0 and "conda-safeguard recover -p" in r.err, r.out + r.err
    # the next restore into the path settles it first
    r = world.run("restore", ids["2.0"], "-p", prefix, "--yes")
    assert r.code == 0, r.out + r.err
    assert "rolled back the interrupted restore" in r.err
    assert package_set(prefix) == sets["2.0"] and beside(prefix) == []


def test_two_restores_into_one_path(world: World) -> None:
    prefix, ids, sets = two_states(world)
    sets["1.0"] = None  # type: ignore[assignment]
    a = start("restore", ids["1.0"], "-p", prefix, "--yes")
    b = start("restore", ids["2.0"], "-p", prefix, "--yes")
    results = [(p.wait(timeout=120), *p.communicate()) for p in (a, b)]
    codes = [c for c, _, _ in results]
    assert 0 in codes, results
    for code, out, err in results:
        assert code == 0 or "Another conda-safeguard restore or recover is working" in err \
            or "changed since the plan" in err \
            or "a conda-safeguard restore is replacing" in err, (code, out, err)
    assert is_env(prefix) and beside(prefix) == []
    assert world.run("verify", "-p", prefix).code == 0
    assert (prefix / "results" / "model.bin").exists()
    winner = package_set(prefix)
    assert winner == sets["2.0"] or winner["liba"][0] == "1.0"


def test_a_planted_journal_cannot_point_recover_elsewhere(world: World, tmp_path: Path) -> None:
    prefix = world.env("victim")
    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "data").write_text("keep me\n")
    journal = {"target": str(prefix), "phase": "building", "in_place": True,
               "old_path": None, "old_ino": None, "new_path": str(prefix), "new_ino": None,
               "staging": str(elsewhere), "snapshot": "0" * 64, "before": None, "pid": 1,
               "started": "2026-01-01T00:00:00Z"}
    path = prefix.with_name(".victim.safeguard-journal.json")
    path.write_text(json.dumps(journal))
    r = world.run("recover", "-p", prefix)
    assert r.code == 1 and "staging folder is not beside the env" in r.err
    assert (elsewhere / "data").read_text() == "keep me\n" and is_env(prefix)
    # a well-formed one for a fresh in-place build removes only a folder it made
    journal["staging"] = str(prefix.with_name(".victim.safeguard-restore-x"))
    path.write_text(json.dumps(journal))
    r = world.run("recover", "-p", prefix)
    assert r.code == 1 and "holds something this restore did not build" in r.err
    assert is_env(prefix)


def test_killed_right_after_the_old_env_went_aside(world: World) -> None:
    """conda builds at the path: the moment after the old env was swapped out for an empty
    folder, the path holds no env. status says so, recover puts the old env back."""
    from conda_safeguard.transaction import exchange, new_journal

    prefix = world.env("aside")
    (prefix / "mine.txt").write_text("mine\n")
    before = package_set(prefix)
    j = new_journal(prefix, in_place=True, replaces=True, snapshot="0" * 64, before=None)
    j.save()
    empty = Path(j.staging) / "prefix"
    empty.mkdir(parents=True)
    j.new_ino = empty.stat().st_ino
    j.save()
    exchange(prefix, empty)
    os.rename(empty, j.old_path)  # as restore does; then the process is killed
    assert not is_env(prefix)

    r = world.run("status", "-p", prefix)
    assert r.code == 0 and "INTERRUPTED RESTORE" in r.out, r.out + r.err
    assert f"kept at {j.old_path}" in r.err
    r = world.run("recover", "-p", prefix)
    assert r.code == 0 and "rolled back" in r.out
    assert package_set(prefix) == before and (prefix / "mine.txt").read_text() == "mine\n"
    assert beside(prefix) == []
