"""retire on real envs: what it lists, what it removes, what it never removes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conda_safeguard.__main__ import main
from conda_safeguard.store import Store
from tests.conftest import cli_output


def _store() -> Store:
    return Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]), create=False)


def _age(prefix: Path, days: float) -> None:
    t = time.time() - days * 86400
    os.utime(prefix / "conda-meta" / "history", (t, t))


@pytest.fixture
def envs(make_env, standalone_root: Path) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    made = {name: make_env(name, ("python", "liba=1.0")) for name in
            ("exp-tmp", "scratch-a", "tmp-old", "keeper", "marked-tmp")}
    return made


def test_default_is_a_dry_run_listing(envs: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    cli_output(capsys, "protect", "-n", "marked-tmp")
    out = cli_output(capsys, "retire")
    assert "would retire 3 of 4 envs matching" in out
    for name in ("exp-tmp", "scratch-a", "tmp-old"):
        assert f"- {name}" in out
    assert "= marked-tmp" in out and "kept: protected" in out
    assert "keeper" not in out  # not a temp name
    assert all(p.exists() for p in envs.values())
    assert not (Path(os.environ["CONDA_SAFEGUARD_HOME"]) / "snapshots").exists()


def test_yes_removes_only_matching_unprotected_envs_each_snapshotted_first(
        envs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cli_output(capsys, "protect", "-n", "marked-tmp")
    data = json.loads(cli_output(capsys, "retire", "--yes", "--json"))
    retired = {e["env"] for e in data["envs"] if e["retired"]}
    assert retired == {"exp-tmp", "scratch-a", "tmp-old"}
    store = _store()
    for name in retired:
        assert not envs[name].exists()
        snap = store.latest_of(envs[name])
        assert snap is not None and snap.reason == "before retire"
        assert {r.name for r in store.load_state(snap).packages} == {"python", "liba"}
    assert envs["keeper"].exists() and envs["marked-tmp"].exists()
    assert not [p for p in envs["keeper"].parent.iterdir() if p.name.startswith(".")]
    # and restore brings one back
    cli_output(capsys, "restore", "exp-tmp", "--yes")
    assert (envs["exp-tmp"] / "conda-meta").is_dir()


def test_older_than_and_match(envs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _age(envs["tmp-old"], 10)
    out = cli_output(capsys, "retire", "--older-than", "7d", "--yes")
    assert "retired 1 of 4" in out and "changed too recently" in out
    assert not envs["tmp-old"].exists() and envs["exp-tmp"].exists()
    out = cli_output(capsys, "retire", "--match", "keep*", "--yes")
    assert "retired 0 of 1" in out and "kept: protected" in out  # protected by default
    cli_output(capsys, "unprotect", "-n", "keeper")
    out = cli_output(capsys, "retire", "--match", "keep*", "--yes")
    assert "retired 1 of 1" in out and not envs["keeper"].exists()


def test_env_with_files_no_package_owns_is_kept(envs: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    (envs["exp-tmp"] / "results.csv").write_text("epoch,loss\n1,0.3\n")
    out = cli_output(capsys, "retire", "--match", "exp-tmp", "--yes")
    assert "kept: holds files no package owns (results.csv)" in out
    assert (envs["exp-tmp"] / "results.csv").exists()


def test_base_and_active_env_are_never_retired(
        envs: dict[str, Path], standalone_root: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CONDA_PREFIX", str(envs["exp-tmp"]))
    out = cli_output(capsys, "retire", "--match", "*", "--yes")
    assert "base is never retired" in out and "it is the active env" in out
    assert standalone_root.exists() and envs["exp-tmp"].exists()


def test_bad_age_is_one_line(envs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["retire", "--older-than", "soon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "7d" in err


def _retire_cmd(root: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "CONDA_SAFEGUARD_ROOT": str(root)}
    return [sys.executable, "-m", "conda_safeguard", "retire", "--yes", "-q"], env


def test_two_concurrent_runs_retire_each_env_once(
        make_env, standalone_root: Path) -> None:  # type: ignore[no-untyped-def]
    prefixes = [make_env(f"run{i}-tmp", ("python", "liba=1.0")) for i in range(6)]
    argv, env = _retire_cmd(standalone_root)
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = _store()
    assert not any(p.exists() for p in prefixes)
    assert all(store.latest_of(p) is not None for p in prefixes)
    assert not [p for p in prefixes[0].parent.iterdir() if p.name.startswith(".")]


def test_kill_9_never_loses_an_env_without_its_snapshot(
        make_env, standalone_root: Path) -> None:  # type: ignore[no-untyped-def]
    prefixes = [make_env(f"k{i}-tmp", ("python", "liba=1.0", "libb")) for i in range(8)]
    argv, env = _retire_cmd(standalone_root)
    killed = 0
    for _ in range(3):
        remaining = [q for q in prefixes if (q / "conda-meta").is_dir()]
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill -9 the moment the next env starts going (moved aside or deleted)
        while p.poll() is None and all((q / "conda-meta").is_dir() for q in remaining):
            time.sleep(0.001)
        p.send_signal(signal.SIGKILL)
        killed += p.wait() == -signal.SIGKILL
        store = _store() if (Path(os.environ["CONDA_SAFEGUARD_HOME"]) / "config").exists() \
            else None
        for prefix in prefixes:  # whole, or snapshotted before it was touched
            if not (prefix / "conda-meta").is_dir():
                assert store is not None and store.latest_of(prefix) is not None
    assert killed >= 1  # at least one run really died mid-retire
    # the next run finishes what the killed ones left
    subprocess.run(argv, env=env, check=True, capture_output=True)
    assert not any(p.exists() for p in prefixes)
    assert not [p for p in prefixes[0].parent.iterdir() if p.name.startswith(".")]


def test_interrupted_retire_of_a_changed_env_is_put_back(
        envs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    prefix = envs["exp-tmp"]
    cli_output(capsys, "backup", "-n", "exp-tmp")
    (prefix / "conda-meta" / "liba-1.0-0.json").unlink()  # changed after the snapshot
    moved = prefix.parent / ".exp-tmp.retiring-999999999"
    os.rename(prefix, moved)
    cli_output(capsys, "retire", "--match", "nothing", "--yes")
    assert prefix.exists() and not moved.exists()


def test_nothing_to_retire_is_one_plain_line(envs: dict[str, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_output(capsys, "retire", "--match", "nothing-*")
    assert out.strip() == "would retire 0 of 0 envs matching nothing-*"
