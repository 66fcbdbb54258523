"""Destructive forms found when trying conda-safeguard as a new user, each stopped on a protected
env by the plugin inside real conda (issue 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factory import read_prefix_records


def refused(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode != 0 and "Refusing to change protected environment" in proc.stderr


@pytest.mark.parametrize("specs", [["*"], ["p*", "l*"], ["lib*", "python"], ["*b"]])
def test_glob_specs_that_match_every_package(conda, make_env, specs) -> None:
    """`conda remove -n X '*' -y` (and 'p*', 'lib*' python) would empty the env."""
    keep = make_env("keep", ["python", "liba=1.0", "libb"])
    before = read_prefix_records(keep)
    proc = conda("remove", "-n", "keep", *specs, "-y", "--offline")
    if specs == ["*b"]:  # matches libb only: python and liba stay, conda may run
        assert not refused(proc), proc.stderr
        assert "python" in read_prefix_records(keep)
        return
    assert refused(proc), proc.stderr
    assert read_prefix_records(keep) == before


def test_remove_one_name_that_prunes_everything(conda, make_env) -> None:
    """Only libb was requested; removing it prunes liba: conda would leave the env empty."""
    keep = make_env("keep", ["libb"])
    before = read_prefix_records(keep)
    assert sorted(before) == ["liba", "libb"]
    proc = conda("remove", "-n", "keep", "libb", "-y", "--offline")
    assert refused(proc), (proc.stdout, proc.stderr)
    assert read_prefix_records(keep) == before
    # removing a dependency takes its dependents: the same
    proc = conda("remove", "-n", "keep", "liba", "-y", "--offline")
    assert refused(proc), (proc.stdout, proc.stderr)
    assert read_prefix_records(keep) == before


def test_remove_that_keeps_something_still_runs(conda, make_env) -> None:
    keep = make_env("keep", ["python", "libb"])
    proc = conda("remove", "-n", "keep", "liba", "-y", "--offline")  # libb goes with it
    assert proc.returncode == 0, proc.stderr
    assert sorted(read_prefix_records(keep)) == ["python"]


def test_force_remove_takes_only_what_is_named(conda, make_env) -> None:
    """--force-remove neither follows dependents nor prunes: liba stays, conda may run."""
    keep = make_env("keep", ["libb"])
    proc = conda("remove", "-n", "keep", "libb", "--force-remove", "-y", "--offline")
    assert proc.returncode == 0, proc.stderr
    assert sorted(read_prefix_records(keep)) == ["liba"]


def test_remove_of_an_unprotected_env_that_empties_it_runs(conda, make_env) -> None:
    tmp = make_env("scratch-tmp", ["libb"])
    proc = conda("remove", "-n", "scratch-tmp", "libb", "-y", "--offline")
    assert proc.returncode == 0, proc.stderr
    assert read_prefix_records(tmp) == {}


def test_symlink_named_like_a_temp_env(conda, make_env, tmp_path) -> None:
    """`ln -s envs/important quick-tmp; conda remove -p quick-tmp --all -y`: the real env is
    protected, and CONDA_SAFEGUARD_ALLOW naming the link allows nothing."""
    important = make_env("important", ["python", "liba=1.0"])
    link = tmp_path / "quick-tmp"
    link.symlink_to(important)
    before = read_prefix_records(important)
    proc = conda("remove", "-p", link, "--all", "-y")
    assert refused(proc), proc.stderr
    assert "'important'" in proc.stderr
    proc = conda("remove", "-p", link, "--all", "-y", env={"CONDA_SAFEGUARD_ALLOW": "quick-tmp"})
    assert refused(proc), proc.stderr
    proc = conda("remove", "-p", link, "--all", "-y",
                 env={"CONDA_SAFEGUARD_ALLOW": str(link)})
    assert refused(proc), proc.stderr
    assert read_prefix_records(important) == before
    # naming the real env is the way through
    proc = conda("remove", "-p", link, "--all", "-y", env={"CONDA_SAFEGUARD_ALLOW": "important"})
    assert proc.returncode == 0, proc.stderr
    assert read_prefix_records(important) == {}


def snapshot_count(capsys, env: str) -> int:  # type: ignore[no-untyped-def]
    """`conda-safeguard list ENV --json`, in-process: the store the conda under test wrote
    (`conda safeguard list` itself, on every version: test_plugin.py)."""
    from conda_safeguard.__main__ import main

    capsys.readouterr()
    code = main(["list", env, "--json"])
    out, err = capsys.readouterr()
    if code != 0:
        assert "No snapshot matches" in out + err, err
        return 0
    return len(json.loads(out))


@pytest.mark.parametrize("verb", ["set", "unset"])
def test_env_config_vars_takes_a_snapshot(conda, make_env, capsys, verb) -> None:
    keep = make_env("keep", ["python"])
    if verb == "unset":
        assert conda("env", "config", "vars", "set", "-n", "keep", "A=1").returncode == 0
    count = snapshot_count(capsys, "keep")
    assert count == (1 if verb == "unset" else 0)  # the set above took one
    args = ["A=2"] if verb == "set" else ["A"]
    proc = conda("env", "config", "vars", verb, "-n", "keep", *args)
    assert proc.returncode == 0, proc.stderr
    assert snapshot_count(capsys, "keep") == count + 1
    # `list` reads only: no snapshot
    assert conda("env", "config", "vars", "list", "-n", "keep").returncode == 0
    assert snapshot_count(capsys, "keep") == count + 1
    assert (keep / "conda-meta" / "state").exists()


# `conda --no-plugins` (and conda < 23.7, mamba) reach only the shell layer: the snippet in a
# real bash, wrapping this real conda, reads every spelling argparse accepts.
NO_PLUGIN_SPELLINGS = [
    ["--no-plugins", "remove", "-n", "keep", "--al", "-y", "--offline"],
    ["--no-p", "remove", "--na", "keep", "--all", "-y", "--offline"],
    ["--no-plugins", "remove", "-yn", "keep", "--a", "--offline"],
    ["--no-plugins", "remove", "-n", "keep", "*", "-y", "--offline"],
    ["--no-plugins", "env", "remove", "--na", "keep", "-y"],
]


@pytest.mark.parametrize("argv", NO_PLUGIN_SPELLINGS, ids=" ".join)
def test_no_plugins_spellings_in_real_bash(conda_exe, conda_condarc, conda_version, make_env,
                                           tmp_path, argv) -> None:
    from conda_safeguard.cli.shellcmd import render

    if conda_exe[1:2] == ["-m"]:
        pytest.skip("the snippet wraps a `conda` executable; this conda runs as python -m conda")
    keep = make_env("keep", ["python", "liba=1.0", "libb"])
    before = read_prefix_records(keep)
    snippet = tmp_path / "snippet.bash"
    snippet.write_text(render("bash", sys.executable))
    bindir = str(Path(conda_exe[0]).parent)
    env = {**os.environ, "CONDARC": str(conda_condarc), "CONDA_EXE": conda_exe[0],
           "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CONDA_SAFEGUARD_ROOT", None)
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-c",
                           f'. "{snippet}"; conda "$@"', "sh", *argv],
                          env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "'keep'" in proc.stderr
    assert read_prefix_records(keep) == before
    # without the snippet, the same command line does destroy it: the guard is what stopped it
    proc = subprocess.run([*conda_exe, *argv], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, cwd=tmp_path)
    if conda_version < (24,) and argv[1] == "env":
        # conda 23.x runs `conda env` as the separate conda-env program, which loads plugins
        # whatever the outer --no-plugins said: the plugin refuses it there too
        assert "Refusing to change protected environment 'keep'" in proc.stderr, proc.stderr
        assert read_prefix_records(keep) == before
    else:
        assert read_prefix_records(keep) != before, proc.stderr


@pytest.mark.newest_conda_only
def test_the_restore_building_variable_alone_does_not_skip_the_snapshot(
        run_conda, make_env, channel, tmp_path: Path) -> None:
    """CONDA_SAFEGUARD_BUILDING tells the plugin in the conda a restore runs not to snapshot
    the env it builds; left exported (or set on purpose) with no restore there, it must not
    turn snapshots off."""
    prefix = make_env("built", ["python", "liba=1.0"])
    offline = ["-y", "--offline", "--override-channels", "-c", channel.url]
    run_conda("install", "-p", prefix, "liba=2.0", *offline)  # a state no snapshot has yet
    before = json.loads(run_conda("safeguard", "list", prefix, "--json").stdout)
    run_conda("install", "-p", prefix, "libc", *offline,
              env={"CONDA_SAFEGUARD_BUILDING": str(prefix)})
    after = json.loads(run_conda("safeguard", "list", prefix, "--json").stdout)
    assert len(after) == len(before) + 1 and after[0]["reason"] == "before install", after
