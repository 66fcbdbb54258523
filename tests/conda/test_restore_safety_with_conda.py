"""Issue 9 (items 1, 2, 6) with real conda building the env: conda writes the prefix into
files while linking, so the old env is moved aside and the new one built at the path; user
data and env config still survive, a conda root is refused, and a restore killed mid-way is
rolled back or finished by `recover`."""

# ruff: noqa: F811  (the setup/own_channel fixtures are imported from the sibling module)
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conda_safeguard.prefix import is_env
from tests.conda.test_restore_with_conda import explicit, ok, own_channel, setup  # noqa: F401
from tests.restoring_helpers import tree_hashes

KILLS = int(os.environ.get("CONDA_SAFEGUARD_CRASH_RUNS_CONDA", "6"))


def add_user_files(prefix: Path) -> None:
    (prefix / "results").mkdir()
    (prefix / "results" / "run1.csv").write_text("epoch,loss\n1,0.5\n")
    (prefix / "etc/conda/activate.d").mkdir(parents=True)
    (prefix / "etc/conda/activate.d/cuda.sh").write_text("export CUDA_HOME=/opt/cuda\n")
    (prefix / "conda-meta/pinned").write_text("libb 1.*\n")
    (prefix / ".condarc").write_text("channels: [conda-forge]\n")


def test_undo_keeps_user_files_and_config(setup, conda_root: Path) -> None:
    conda, safeguard, channel_args = setup
    prefix = conda_root / "envs" / "ml"
    conda("create", "-p", prefix, *channel_args, "python", "liba=1.0", "libb", "-y")
    add_user_files(prefix)
    v1 = explicit(conda, prefix)
    ok(safeguard("backup", "-p", prefix))
    conda("install", "-p", prefix, *channel_args, "liba=2.0", "-y", allow="ml")
    (prefix / "results" / "run2.csv").write_text("after the snapshot\n")

    proc = ok(safeguard("undo", "-p", prefix, "--yes", "--offline", allow="ml"))
    assert "byte-identical" in proc.stdout and "carried over" in proc.stdout
    assert explicit(conda, prefix) == v1
    assert (prefix / "results/run1.csv").read_text() == "epoch,loss\n1,0.5\n"
    assert (prefix / "results/run2.csv").read_text() == "after the snapshot\n"
    assert (prefix / "etc/conda/activate.d/cuda.sh").read_text() == \
        "export CUDA_HOME=/opt/cuda\n"
    assert (prefix / "conda-meta/pinned").read_text() == "libb 1.*\n"
    assert (prefix / ".condarc").read_text() == "channels: [conda-forge]\n"
    assert "liba" in conda("list", "-p", prefix).stdout
    assert sorted(p.name for p in prefix.parent.iterdir() if "safeguard" in p.name) == []


@pytest.mark.newest_conda_only  # the refusal is ours, before conda would run
def test_a_real_conda_root_is_refused(setup, conda_root: Path, conda_exe: list[str]) -> None:
    conda, safeguard, channel_args = setup
    real_root = Path(conda("info", "--base").stdout.strip())
    prefix = conda_root / "envs" / "small"
    conda("create", "-p", prefix, *channel_args, "liba=1.0", "-y")
    ok(safeguard("backup", "-p", prefix))
    before = tree_hashes(real_root / "conda-meta")
    proc = safeguard("restore", "small", "-p", real_root, "--yes", allow="base")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"Refusing to replace {real_root}" in proc.stderr
    assert tree_hashes(real_root / "conda-meta") == before
    assert ok(conda("--version")).stdout.startswith("conda ")


def test_killed_conda_restore_is_rolled_back_or_finished(
        setup, conda_root: Path, conda_exe: list[str], conda_condarc: Path) -> None:
    conda, safeguard, channel_args = setup
    prefix = conda_root / "envs" / "k"
    conda("create", "-p", prefix, *channel_args, "python", "liba=1.0", "libb", "tool", "-y")
    (prefix / "results").mkdir()
    (prefix / "results" / "keep.txt").write_text("mine\n")
    snap1 = ok(safeguard("backup", "-p", prefix, "--json")).stdout
    v1 = explicit(conda, prefix)
    conda("install", "-p", prefix, *channel_args, "liba=2.0", "libc", "-y", allow="k")
    v2 = explicit(conda, prefix)
    import json

    ids = {v1: json.loads(snap1)["snapshots"][0]["id"],
           v2: json.loads(ok(safeguard("backup", "-p", prefix, "--json")).stdout)[
               "snapshots"][0]["id"]}
    env = {**os.environ, "CONDARC": str(conda_condarc), "CONDA_EXE": conda_exe[-1],
           "CONDA_SAFEGUARD_INSTALLER": "conda", "CONDA_SAFEGUARD_ROOT": str(conda_root),
           "CONDA_SAFEGUARD_ALLOW": "k"}  # as setup's safeguard() runs
    if len(conda_exe) > 1:
        pytest.skip("needs a conda executable (CONDA_SAFEGUARD_TEST_CONDA) to kill")
    t0 = time.monotonic()
    ok(safeguard("restore", ids[v1], "-p", prefix, "--yes", "--offline", allow="k"))
    full = time.monotonic() - t0
    # conda links at the final path: between moving the old env aside and the new one being
    # complete the path holds nothing or a half-built env, until `recover` (or the next
    # restore) puts the old one back. Counted, not hidden.
    tally = {"rolled back": 0, "finished": 0, "done before the kill": 0,
             "nothing at the path until recover": 0, "half-built env until recover": 0}
    import random

    rng = random.Random(7)
    current = explicit(conda, prefix)
    for run in range(KILLS):
        wanted = v2 if current == v1 else v1
        proc = subprocess.Popen(
            [sys.executable, "-m", "conda_safeguard", "restore", ids[wanted], "-p",
             str(prefix), "--yes", "--offline"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(0.2, full * 0.9))
        os.killpg(proc.pid, signal.SIGKILL if run % 2 == 0 else signal.SIGHUP)
        proc.communicate(timeout=120)
        if not os.path.lexists(prefix):
            tally["nothing at the path until recover"] += 1
        elif not is_env(prefix) or not (prefix / "conda-meta" / "history").exists():
            tally["half-built env until recover"] += 1
        r = ok(safeguard("recover", "-p", prefix))
        now = explicit(conda, prefix)
        assert now in (v1, v2), f"run {run}: mixed env"
        key = "rolled back" if "rolled back" in r.stdout else \
            "finished" if "finished" in r.stdout else "done before the kill"
        tally[key] += 1
        assert (prefix / "results" / "keep.txt").read_text() == "mine\n"
        assert ok(safeguard("verify", "-p", prefix)).returncode == 0
        assert sorted(p.name for p in prefix.parent.iterdir() if "safeguard" in p.name) == []
        current = now  # what the next run starts from (verify changed nothing)
    print(f"\nconda {conda('--version').stdout.split()[-1]}: {KILLS} killed restores "
          f"({full:.1f}s each uninterrupted): {tally}")


if not hasattr(signal, "SIGHUP"):  # pragma: no cover
    pytest.skip("needs POSIX signals", allow_module_level=True)
