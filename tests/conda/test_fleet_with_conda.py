"""pack/unpack, retire, frozen envs, base-install warnings and the naming lint inside real conda.

Run against each conda that matters here, e.g.
    CONDA_SAFEGUARD_TEST_CONDA=ROOT-26.7.1/bin/conda pytest tests/conda/test_fleet_with_conda.py
    CONDA_SAFEGUARD_TEST_CONDA=ROOT-23.11.0/bin/conda pytest tests/conda/test_fleet_with_conda.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factory import read_prefix_records


def offline(channel) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--offline", "--override-channels", "-c", channel.url]


def test_frozen_env_refuses_install_on_every_conda(conda, make_env, channel, conda_version) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("paper-results-np1")
    before = read_prefix_records(prefix)
    proc = conda("safeguard", "freeze", "-n", "paper-results-np1", "--message", "paper figures")
    assert proc.returncode == 0, proc.stderr
    proc = conda("install", "-n", "paper-results-np1", "libc", "-y", *offline(channel))
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "frozen" in text.lower() and "paper figures" in text
    if conda_version < (25, 5):  # conda predates CEP 22: the plugin refused
        assert "conda-safeguard does" in text and "unfreeze" in text
    assert read_prefix_records(prefix) == before
    assert conda("safeguard", "unfreeze", "-n", "paper-results-np1").returncode == 0
    proc = conda("install", "-n", "paper-results-np1", "libc", "-y", *offline(channel))
    assert proc.returncode == 0, proc.stderr
    assert "libc" in {r["name"] for r in read_prefix_records(prefix).values()}


def test_install_into_base_warns_and_the_setting_silences_it(
        conda, conda_condarc: Path, channel) -> None:  # type: ignore[no-untyped-def]
    proc = conda("install", "-n", "base", "liba", "--dry-run", *offline(channel))
    assert "warning: installing into base" in proc.stderr
    # in .condarc: conda < 24.3 has no plugin settings, the plugin reads the file itself
    text = conda_condarc.read_text()
    conda_condarc.write_text(text + "plugins:\n  safeguard_warn_base_installs: false\n")
    proc = conda("install", "-n", "base", "liba", "--dry-run", *offline(channel))
    assert "installing into base" not in proc.stderr


@pytest.mark.newest_conda_only  # the lint is ours; the create hook on every version:
# test_destructive_forms.py
def test_generic_name_gets_a_note_on_create(conda, channel) -> None:  # type: ignore[no-untyped-def]
    proc = conda("create", "-n", "myenv", "liba", "-y", *offline(channel))
    assert proc.returncode == 0, proc.stderr
    assert "the env name 'myenv' says nothing" in proc.stderr
    proc = conda("create", "-n", "cv-segment-liba1", "liba", "-y", *offline(channel))
    assert proc.returncode == 0, proc.stderr
    assert "says nothing" not in proc.stderr


def test_pack_and_unpack_an_env_conda_made(conda, channel, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = conda("create", "-n", "ship-it-liba2", "python", "liba=2.0", "libb", "tool", "-y",
                 *offline(channel))
    assert proc.returncode == 0, proc.stderr
    archive = tmp_path / "ship.cspack"
    proc = conda("safeguard", "pack", "-n", "ship-it-liba2", "-o", archive,
                 "--compression", "gz")
    assert proc.returncode == 0, proc.stderr
    dest = tmp_path / "offline-node" / "ship"
    proc = conda("safeguard", "unpack", archive, "-p", dest)
    assert proc.returncode == 0, proc.stderr
    assert "matched their sha256" in proc.stdout and "identical to the packed env" in proc.stdout
    listed = conda("list", "-p", dest, "--json")
    assert listed.returncode == 0, listed.stderr
    names = {p["name"]: p["version"] for p in json.loads(listed.stdout)}
    assert names == {"python": "3.11.7", "liba": "2.0", "libb": "1.0", "tool": "0.1"}
    assert (dest / "bin" / "tool").read_bytes() == b"#!/bin/sh\necho tool 0.1\n"


@pytest.mark.newest_conda_only  # retire (select, snapshot, delete) is ours; conda only made
# the envs
def test_retire_removes_a_temp_env_conda_made_after_a_snapshot(conda, channel) -> None:  # type: ignore[no-untyped-def]
    assert conda("create", "-n", "sweep-tmp", "liba", "-y", *offline(channel)).returncode == 0
    assert conda("create", "-n", "keep-me-liba1", "liba", "-y", *offline(channel)).returncode == 0
    proc = conda("safeguard", "retire", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "retired 1 of 1" in proc.stdout
    envs = json.loads(conda("env", "list", "--json").stdout)["envs"]
    assert not any(e.endswith("sweep-tmp") for e in envs)
    assert any(e.endswith("keep-me-liba1") for e in envs)
    snaps = json.loads(conda("safeguard", "list", "--json").stdout)
    assert any(s["prefix"].endswith("sweep-tmp") and s["reason"] == "before retire"
               for s in snaps)
