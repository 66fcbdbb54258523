"""The plugin changes nothing else conda does: where it stops nothing, conda's own errors, exit
codes and output come through exactly as without it, on every conda version.

"Without it" is conda with external plugins off (CONDA_NO_PLUGINS) and our switch off (conda
23.x runs `conda env …` as a separate conda-env program that loads plugins regardless).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

OFF = {"CONDA_NO_PLUGINS": "true", "CONDA_PLUGINS_SAFEGUARD_ENABLED": "false"}
#: anything of ours in conda's output (conda's error report lists CONDA_SAFEGUARD_* variables)
OURS = re.compile(r"Safeguard|conda-safeguard|pinning \d")


@pytest.fixture
def envs(make_env):
    return make_env("keep"), make_env("scratch-tmp", ["python", "libc=1.0"])


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return Path(os.environ["CONDA_SAFEGUARD_HOME"])


def snapshot_count(store: Path) -> int:
    return len(list((store / "snapshots").glob("*.json"))) if store.is_dir() else 0


def error_lines(text: str) -> list[str]:
    """conda's error lines, with the run-specific paths taken out."""
    text = re.sub(r"/\S*pytest-of-[^/]+/pytest-\d+/[^/\s]+", "<tmp>", text)
    return [line for line in text.splitlines()
            if "Error" in line or "error" in line or "cannot" in line or "already" in line]


def same_as_without_plugin(run_conda, *args: str, env: dict[str, str] | None = None):
    on = run_conda(*args, check=False, env=env)
    off = run_conda(*args, check=False, env={**(env or {}), **OFF})
    assert on.returncode == off.returncode, (on.stdout + on.stderr, off.stdout + off.stderr)
    assert error_lines(on.stdout + on.stderr) == error_lines(off.stdout + off.stderr)
    assert not OURS.search(on.stdout + on.stderr)
    return on


@pytest.mark.parametrize("args", [["env", "create", "--file=not_a_file.txt"],
                                  ["env", "create"],
                                  ["env", "create", "-n", "keep", "--file=not_a_file.txt"]],
                         ids=["missing -f", "no environment.yml", "missing -f with -n"])
def test_missing_env_file_is_condas_error_and_nothing_is_snapshotted(run_conda, envs, store,
                                                                      args):
    proc = same_as_without_plugin(run_conda, *args)
    assert proc.returncode == 1
    assert "EnvironmentFileNotFound" in proc.stdout + proc.stderr or \
        "does not exist" in proc.stdout + proc.stderr
    assert snapshot_count(store) == 0


def test_remove_of_a_package_that_is_not_installed(run_conda, envs, store):
    proc = same_as_without_plugin(run_conda, "remove", "-n", "keep", "nosuchpkg", "-y",
                                  "--offline")  # conda 24.x would add and ask defaults
    assert snapshot_count(store) == 0
    assert proc.returncode == 1
    assert "PackagesNotFound" in proc.stdout + proc.stderr  # ...InPrefixError from 24.x on
    keep, _ = envs
    assert (keep / "conda-meta").is_dir()


def test_rename_of_base_is_refused_by_conda(run_conda, envs, conda_root_prefix):
    args = ["rename", "-p", str(conda_root_prefix), "newbase"] if conda_root_prefix else \
        ["rename", "-n", "base", "newbase"]
    proc = same_as_without_plugin(run_conda, *args)
    assert proc.returncode == 1
    assert "base" in proc.stdout + proc.stderr


def test_rename_of_the_active_env_is_refused_by_conda(run_conda, envs):
    keep, _ = envs
    proc = same_as_without_plugin(run_conda, "rename", "-n", "keep", "kept2",
                                  env={"CONDA_PREFIX": str(keep), "CONDA_SHLVL": "1",
                                       "CONDA_DEFAULT_ENV": "keep"})
    assert proc.returncode == 1
    assert "active" in proc.stdout + proc.stderr
    assert (keep / "conda-meta").is_dir()


def test_rename_onto_an_existing_name_without_yes_is_refused_by_conda(run_conda, envs,
                                                                      conda_root_prefix):
    keep, temp = envs
    # base active, as in a shell after `conda activate` (conda 23.11's rename fails without one)
    active = {"CONDA_PREFIX": str(conda_root_prefix)} if conda_root_prefix else {}
    proc = same_as_without_plugin(run_conda, "rename", "-n", "scratch-tmp", "keep", env=active)
    assert proc.returncode == 1
    assert "already exists" in proc.stdout + proc.stderr
    assert (keep / "conda-meta").is_dir() and (temp / "conda-meta").is_dir()


def test_json_output_is_condas_alone(run_conda, envs, channel):
    # a change: snapshot first, and neither a "pinning" line nor anything else of ours printed
    proc = run_conda("install", "-n", "keep", "liba=2.0", "-y", "--json", "--offline",
                     "--override-channels", "-c", channel.url)
    json.loads(proc.stdout)
    assert not OURS.search(proc.stderr)


def test_quiet_output_is_condas_alone(run_conda, envs, channel, store):
    proc = run_conda("install", "-n", "keep", "liba=2.0", "-y", "-q", "--offline",
                     "--override-channels", "-c", channel.url)
    assert not OURS.search(proc.stderr)
    assert snapshot_count(store) == 1  # the snapshot was still taken


def test_switched_off_reads_no_channels(run_conda, envs, conda_condarc):
    # conda would fail on the denied channel only if something asked for context.channels
    with open(conda_condarc, "a") as f:
        f.write("channels:\n  - denied-channel\ndenylist_channels:\n  - denied-channel\n")
    off = {"CONDA_PLUGINS_SAFEGUARD_ENABLED": "false"}
    with_switch = run_conda("env", "config", "vars", "list", "-n", "keep", check=False, env=off)
    without = run_conda("env", "config", "vars", "list", "-n", "keep", check=False, env=OFF)
    assert with_switch.returncode == without.returncode
    proc = run_conda("remove", "-n", "scratch-tmp", "--all", "-y", "--dry-run", check=False,
                     env=off)
    proc_off = run_conda("remove", "-n", "scratch-tmp", "--all", "-y", "--dry-run", check=False,
                         env=OFF)
    assert proc.returncode == proc_off.returncode
    assert error_lines(proc.stdout + proc.stderr) == error_lines(proc_off.stdout + proc_off.stderr)


def test_switched_off_doctor_says_and_does_nothing(run_conda, envs, store, conda_version):
    # offline: conda's own checks (REQUESTS_CA_BUNDLE, ...) would try the network, 3 retries
    off = {"CONDA_PLUGINS_SAFEGUARD_ENABLED": "false", "CONDA_OFFLINE": "true"}
    proc = run_conda("doctor", "-n", "keep", check=False, env=off)
    assert not OURS.search(proc.stdout + proc.stderr)
    if conda_version >= (26,):  # conda < 26 has no `doctor --fix`
        run_conda("doctor", "-n", "keep", "--fix", "--yes", check=False, env=off)
    assert snapshot_count(store) == 0


@pytest.mark.newest_conda_only  # every version's exit 4: test_destructive_forms.py
def test_refusal_exit_code_is_the_readmes(run_conda, envs):
    proc = run_conda("remove", "-n", "keep", "--all", "-y", check=False)
    assert proc.returncode == 4
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert re.search(r"Inside conda.{0,300}refusal.{0,100}exit 4", readme, re.S), \
        "the README's exit codes must say a refusal inside conda exits 4"

