"""restore and undo with real conda as the installer: `conda list --explicit --md5` comes back
identical, also after `conda clean --all` and after the packages left the channel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factory import LocalChannel, make_conda_package_cache
from tests.restoring_helpers import channel_records, copy_channel


@pytest.fixture
def own_channel(channel: LocalChannel, tmp_path: Path) -> LocalChannel:
    return copy_channel(channel, tmp_path)


@pytest.fixture
def setup(run_conda, conda_exe, conda_condarc, conda_root: Path, own_channel: LocalChannel,
          tmp_path: Path):
    """(conda, safeguard, channel args): conda and our CLI share the condarc, the package
    cache (pkgs_dirs, made by the factory) and the store; our CLI installs with this conda."""
    make_conda_package_cache(tmp_path / "conda-pkgs", own_channel, channel_records(own_channel))
    if len(conda_exe) == 1:
        exe = conda_exe[0]
    else:  # conda importable: a wrapper script CONDA_EXE can name
        exe = str(tmp_path / "conda-wrapper")
        Path(exe).write_text(f"#!/bin/sh\nexec {' '.join(conda_exe)} \"$@\"\n")
        os.chmod(exe, 0o755)
    env = {**os.environ, "CONDARC": str(conda_condarc), "CONDA_EXE": exe,
           "CONDA_SAFEGUARD_INSTALLER": "conda", "CONDA_SAFEGUARD_ROOT": str(conda_root)}

    def safeguard(*args: str | os.PathLike[str], allow: str | None = None,
                  ) -> subprocess.CompletedProcess[str]:
        extra = {"CONDA_SAFEGUARD_ALLOW": allow} if allow else {}
        return subprocess.run([sys.executable, "-m", "conda_safeguard", *map(os.fspath, args)],
                              env={**env, **extra}, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, cwd=tmp_path)

    def conda(*args: str | os.PathLike[str], allow: str | None = None):
        return run_conda(*args, env={"CONDA_SAFEGUARD_ALLOW": allow} if allow else None)

    channel_args = ["--offline", "--override-channels", "-c", own_channel.url]
    return conda, safeguard, channel_args


def explicit(conda: Callable[..., subprocess.CompletedProcess[str]], prefix: Path) -> str:
    return conda("list", "--explicit", "--md5", "-p", prefix).stdout


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def undo_one_change(setup, prefix: Path, kept: int) -> None:  # type: ignore[no-untyped-def]
    """An env that verifies, a snapshot, liba 1.0 -> 2.0 by conda, then undo: byte-identical
    with the `kept` other packages taken over."""
    conda, safeguard, channel_args = setup
    assert "byte-identical" in ok(safeguard("verify", "-p", prefix)).stdout
    ok(safeguard("backup", "-p", prefix))
    conda("install", "-p", prefix, *channel_args, "liba=2.0", "-y")
    proc = ok(safeguard("undo", "-p", prefix, "--yes", allow=prefix.name))
    assert "byte-identical" in proc.stdout, proc.stdout
    assert f"kept {kept} unchanged packages" in proc.stdout, proc.stdout


def test_remove_then_restore_is_identical_even_after_conda_clean(
        setup, conda_root: Path, own_channel: LocalChannel) -> None:
    conda, safeguard, channel_args = setup
    prefix = conda_root / "envs" / "work"
    conda("create", "-p", prefix, *channel_args, "python", "liba=1.0", "libb", "tool", "-y")
    conda("env", "config", "vars", "set", "-p", prefix, "FOO=bar")
    before = explicit(conda, prefix)
    revisions = conda("list", "--revisions", "-p", prefix).stdout
    ok(safeguard("backup", "-p", prefix))

    conda("remove", "-p", prefix, "--all", "-y", allow="work")
    assert not (prefix / "conda-meta").exists()
    proc = ok(safeguard("restore", "work", "--yes", "--offline"))
    assert "byte-identical" in proc.stdout and "installer: conda" in proc.stdout
    assert explicit(conda, prefix) == before
    assert conda("list", "--revisions", "-p", prefix).stdout == revisions

    # again, after `conda clean --all` and with the packages gone from the channel
    conda("remove", "-p", prefix, "--all", "-y", allow="work")
    conda("clean", "--all", "-y")
    shutil.rmtree(own_channel.path)
    proc = ok(safeguard("restore", "work", "--yes", "--offline"))
    assert "byte-identical" in proc.stdout and " 4 pinned in the store" in proc.stdout
    assert explicit(conda, prefix) == before
    assert "FOO" in conda("env", "config", "vars", "list", "-p", prefix).stdout


def test_undo_after_an_update_whose_version_left_the_channel(
        setup, conda_root: Path, own_channel: LocalChannel) -> None:
    conda, safeguard, channel_args = setup
    prefix = conda_root / "envs" / "upd"
    conda("create", "-p", prefix, *channel_args, "python", "liba=1.0", "libb", "-y")
    v1 = explicit(conda, prefix)
    ok(safeguard("backup", "-p", prefix))
    conda("install", "-p", prefix, *channel_args, "liba=2.0", "-y")
    v2 = explicit(conda, prefix)
    assert v2 != v1 and "liba-2.0-0" in v2
    own_channel.remove("liba", "2.0")
    conda("clean", "--all", "-y")

    seen = {s["id"] for s in json.loads(ok(safeguard("list", prefix, "--json")).stdout)}
    proc = ok(safeguard("undo", "-p", prefix, "--yes", allow="upd"))
    assert explicit(conda, prefix) == v1
    # only liba changed: conda added it to the env seeded with the two others
    assert "kept 2 unchanged packages" in proc.stdout, proc.stdout
    # the plugin in that conda took no snapshot of the half-built env (2 packages): new are
    # the one after the undo (newest first) and the one before it, each with all 3 packages
    new = [s for s in json.loads(ok(safeguard("list", prefix, "--json")).stdout)
           if s["id"] not in seen]
    assert [s["reason"].split(":")[0] for s in new] == ["undo", "before undo"], new
    assert all(s["counts"]["conda"] == 3 for s in new), new
    # the undo snapshotted 2.0 first: undoing the undo brings back a version no channel has
    proc = ok(safeguard("undo", "-p", prefix, "--yes", "--offline", allow="upd"))
    assert "byte-identical" in proc.stdout
    assert explicit(conda, prefix) == v2


def test_undo_keeps_a_noarch_python_package_whose_paths_conda_records_as_packaged(
        setup, conda_root: Path, own_channel: LocalChannel) -> None:
    # conda writes a noarch: python package's paths_data as the package has them
    # (site-packages/nap/…), its `files` as linked (lib/python3.11/site-packages/nap/…)
    conda, _, channel_args = setup
    own_channel.add("nap", "1.0", noarch="python", depends=["python"],
                    files={"site-packages/nap/__init__.py": b"V = 1\n"})
    own_channel.index()
    prefix = conda_root / "envs" / "nap"
    conda("create", "-p", prefix, *channel_args, "python", "liba=1.0", "nap", "-y")
    assert (prefix / "lib/python3.11/site-packages/nap/__init__.py").is_file()
    undo_one_change(setup, prefix, kept=2)


@pytest.mark.newest_conda_only
def test_an_undo_killed_while_conda_builds_is_settled_first_and_never_snapshotted(
        setup, run_conda, conda_exe, conda_condarc, conda_root: Path,
        own_channel: LocalChannel, tmp_path: Path) -> None:
    import signal
    import time

    conda, safeguard, channel_args = setup
    prefix = conda_root / "envs" / "kill"
    conda("create", "-p", prefix, *channel_args, "python", "liba=1.0", "libb", "tool", "-y")
    v1 = explicit(conda, prefix)
    ok(safeguard("backup", "-p", prefix))
    conda("install", "-p", prefix, *channel_args, "liba=2.0", "-y")
    journal = prefix.with_name(".kill.safeguard-journal.json")
    env = {**os.environ, "CONDARC": str(conda_condarc), "CONDA_EXE": conda_exe[0],
           "CONDA_SAFEGUARD_INSTALLER": "conda", "CONDA_SAFEGUARD_ROOT": str(conda_root),
           "CONDA_SAFEGUARD_ALLOW": "kill"}
    for _ in range(5):  # kill it once conda builds at the path, in the env seeded there
        old_ino = prefix.stat().st_ino
        proc = subprocess.Popen([sys.executable, "-m", "conda_safeguard", "undo", "-p", prefix,
                                 "--yes"], env=env, cwd=tmp_path, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not (journal.exists() and
                                           prefix.stat().st_ino != old_ino):
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if journal.exists() and prefix.stat().st_ino != old_ino:
            break
    else:
        pytest.skip("the undo always finished before conda could be caught building")
    assert (prefix / "conda-meta").is_dir()  # a half-built env: some of its packages
    # conda may not change it (nor our plugin snapshot it)
    proc = run_conda("install", "-p", prefix, *channel_args, "libc", "-y", check=False)
    assert proc.returncode != 0 and "a conda-safeguard restore is replacing" in proc.stderr, \
        proc.stderr
    # the next undo settles it first (the old env back), then undoes from there
    proc = ok(safeguard("undo", "-p", prefix, "--yes", allow="kill"))
    assert "rolled back the interrupted restore" in proc.stderr, proc.stderr
    assert explicit(conda, prefix) == v1 and "byte-identical" in proc.stdout
    snapshots = json.loads(ok(safeguard("list", prefix, "--json")).stdout)
    assert all(s["counts"]["conda"] == 4 for s in snapshots), snapshots


def test_undo_of_an_env_where_two_packages_list_one_file(
        setup, conda_root: Path, own_channel: LocalChannel) -> None:
    # conda's clobbering: the package linked last owns share/common.txt, the other's record
    # still names it with its own sha256
    conda, _, channel_args = setup
    for name in ("clob1", "clob2"):
        own_channel.add(name, "1.0", files={"share/common.txt": f"from {name}\n".encode(),
                                            f"share/{name}.txt": b"x\n"})
    own_channel.index()
    prefix = conda_root / "envs" / "clob"
    conda("create", "-p", prefix, *channel_args, "python", "liba=1.0", "clob1", "clob2", "-y")
    winner = (prefix / "share" / "common.txt").read_text()
    undo_one_change(setup, prefix, kept=3)
    assert (prefix / "share" / "common.txt").read_text() == winner
