"""Undo with real conda (it builds at the env's own path, the old env moved aside) keeps the
pip packages that did not change: carried over from the old env, pip never runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conda import test_restore_records as records
from tests.factory import (
    PYTHON_SITE_PACKAGES,
    LocalChannel,
    add_pip_packages,
    read_prefix_records,
)

LOGGING_PYTHON = (b'#!/bin/sh\n'  # answers for pip; logs every install it is asked for
                  b'[ "$3" = "--version" ] && exit 0\n'
                  b'echo "$@" >> "$(dirname "$0")/../../pip-calls.txt"\n')
root_python = records.root_python  # the conda root's python, conda-safeguard in it, no rattler
ok = records.ok
GIT = {"url": "https://example.org/x/gitpkg.git",
       "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567"}}


@pytest.fixture
def pip_channel(tmp_path: Path) -> LocalChannel:
    ch = LocalChannel(tmp_path / "pip-channel")
    ch.add("python", "3.11.9", files={f"{PYTHON_SITE_PACKAGES}/.keep": b"",
                                      "bin/python": LOGGING_PYTHON})
    ch.add("pip", "24.0", fmt=".conda")
    ch.add("liba", "1.0", fmt=".conda")
    ch.add("liba", "2.0", fmt=".conda")
    ch.index()
    return ch


def test_undo_with_conda_keeps_unchanged_pip_packages(run_conda, conda_exe, conda_condarc,
                                                       conda_root: Path, root_python: Path,
                                                       pip_channel: LocalChannel,
                                                       tmp_path: Path) -> None:
    env = {**os.environ, "CONDARC": str(conda_condarc), "CONDA_EXE": conda_exe[0],
           "CONDA_SAFEGUARD_INSTALLER": "conda", "CONDA_SAFEGUARD_ROOT": str(conda_root),
           "CONDA_SAFEGUARD_ALLOW": "pipenv"}
    env.pop("PYTHONPATH", None)

    def safeguard(*args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(root_python), "-m", "conda_safeguard", *map(os.fspath, args)],
                              env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, cwd=tmp_path)

    channel = ["--offline", "--override-channels", "-c", pip_channel.url, "-y"]
    prefix = conda_root / "envs" / "pipenv"
    run_conda("create", "-p", prefix, *channel, "python", "pip", "liba=1.0")
    add_pip_packages(prefix, [{"name": "plainpkg", "version": "1.5"},
                              {"name": "gitpkg", "version": "0.3", "direct_url": GIT}])
    site = prefix / PYTHON_SITE_PACKAGES
    before = {p.name for p in site.iterdir()}
    ok(safeguard("backup", "-p", prefix))
    run_conda("install", "-p", prefix, *channel, "liba=2.0")

    proc = ok(safeguard("undo", "-p", prefix, "--yes", "--offline"))
    assert "2 kept as they are, 0 to reinstall" in proc.stdout
    assert "byte-identical" in proc.stdout and "pip: 2 packages: 2 kept" in proc.stdout
    assert not (conda_root / "envs" / "pip-calls.txt").exists()  # pip never ran
    assert {p.name for p in site.iterdir()} == before
    assert read_prefix_records(prefix)["liba"]["version"] == "1.0"
    listed = run_conda("list", "-p", prefix).stdout  # conda sees the kept pip packages
    assert "plainpkg" in listed and "gitpkg" in listed
