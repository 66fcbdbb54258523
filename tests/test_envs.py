"""envs.py: finding envs as conda resolves -n NAME, -p PATH, base, and every env for --all."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conda_safeguard.__main__ import main
from conda_safeguard.envs import EnvLocator, find_root_prefix
from conda_safeguard.exceptions import EnvNotFoundError, UsageError
from tests.factory import install_env, write_condarc


@pytest.fixture
def root(monkeypatch: pytest.MonkeyPatch, conda_root: Path) -> Path:
    monkeypatch.setenv("CONDA_SAFEGUARD_ROOT", str(conda_root))
    return conda_root


@pytest.fixture
def env_at(channel, pkg_cache):
    def _make(prefix: Path, specs=("liba=1.0",)) -> Path:
        install_env(prefix, channel, list(specs), cache_dir=pkg_cache)
        return prefix

    return _make


def test_root_and_its_envs(root: Path, make_env) -> None:
    prefix = make_env("inroot", ["liba=1.0"])
    loc = EnvLocator.from_system()
    assert loc.root_prefix == root
    assert loc.envs_dirs[0] == root / "envs"
    assert loc.envs_dirs[-1] == Path(os.environ["HOME"]) / ".conda" / "envs"
    assert loc.resolve(name="inroot") == prefix
    assert loc.resolve(name="base") == loc.resolve(name="root") == root
    assert loc.name_of(prefix) == "inroot" and loc.name_of(root) == "base"
    assert loc.short_name(prefix) == "inroot"


def test_envs_dirs_from_condarc(root: Path, tmp_path: Path, env_at) -> None:
    extra = env_at(tmp_path / "condarc-envs" / "fromrc")
    write_condarc(os.environ["CONDARC"], envs_dirs=[tmp_path / "condarc-envs"])
    loc = EnvLocator.from_system()
    assert loc.envs_dirs[:2] == [tmp_path / "condarc-envs", root / "envs"]
    assert loc.resolve(name="fromrc") == extra and loc.name_of(extra) == "fromrc"


def test_envs_path_variable_comes_first(root: Path, tmp_path: Path, env_at, monkeypatch) -> None:
    a = env_at(tmp_path / "a" / "dup")
    env_at(tmp_path / "b" / "dup")
    monkeypatch.setenv("CONDA_ENVS_PATH", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    write_condarc(os.environ["CONDARC"], envs_dirs=[tmp_path / "b"])
    loc = EnvLocator.from_system()
    assert loc.envs_dirs[:3] == [tmp_path / "a", tmp_path / "b", root / "envs"]
    assert loc.resolve(name="dup") == a  # the first envs dir holding it wins


def test_path_only_env_and_p_option(root: Path, tmp_path: Path, env_at) -> None:
    loose = env_at(tmp_path / "elsewhere" / "loose")
    loc = EnvLocator.from_system()
    assert loc.name_of(loose) == str(loose)  # conda env export prints the prefix as name
    assert loc.short_name(loose) == "loose"
    assert loc.resolve(prefix=str(loose)) == loose
    assert loc.resolve(prefix="~/x") == Path(os.environ["HOME"]) / "x"
    assert loc.resolve(name=str(loose)) == loose  # conda accepts a path given to -n
    with pytest.raises(UsageError, match="either -n NAME or -p PATH"):
        loc.resolve(name="a", prefix="/b")


def test_missing_name_lists_where_it_looked(root: Path) -> None:
    loc = EnvLocator.from_system()
    with pytest.raises(EnvNotFoundError, match=rf"named 'ghost' \(searched: {root / 'envs'}"):
        loc.resolve(name="ghost")
    assert loc.resolve(name="ghost", must_exist=False) == root / "envs" / "ghost"


def test_default_env_is_the_active_one(root: Path, make_env, monkeypatch) -> None:
    loc = EnvLocator.from_system()
    assert loc.resolve() == root
    active = make_env("active", ["liba=1.0"])
    monkeypatch.setenv("CONDA_PREFIX", str(active))
    assert loc.resolve() == active


def test_no_root_no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("conda_safeguard.envs.sys.prefix", str(tmp_path / "no-such-prefix"))
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.delenv("MAMBA_ROOT_PREFIX", raising=False)
    if Path("/opt/conda/conda-meta").is_dir():
        pytest.skip("/opt/conda exists on this machine")
    loc = EnvLocator(root_prefix=find_root_prefix(), envs_dirs=[])
    assert loc.root_prefix is None
    with pytest.raises(UsageError, match="No env given and none is active"):
        loc.resolve()


def test_find_root_prefix_from_conda_exe(conda_root: Path, monkeypatch) -> None:
    (conda_root / "bin").mkdir()
    (conda_root / "bin" / "conda").write_text("#!/bin/sh\n")
    environ = {"CONDA_EXE": str(conda_root / "bin" / "conda")}
    assert find_root_prefix(environ) == conda_root
    assert find_root_prefix({"CONDA_SAFEGUARD_ROOT": str(conda_root)}) == conda_root


def test_all_envs_includes_environments_txt(root: Path, make_env, tmp_path: Path, env_at) -> None:
    a = make_env("a", ["liba=1.0"])
    listed = env_at(tmp_path / "listed-only" / "x")
    home = Path(os.environ["HOME"])
    (home / ".conda").mkdir(exist_ok=True)
    (home / ".conda" / "environments.txt").write_text(
        f"{root}\n{a}\n{listed}\n{tmp_path / 'deleted-env'}\n\n")
    (root / "envs" / "not-an-env").mkdir()
    assert EnvLocator.from_system().all_envs() == [root, a, listed]


def test_backup_all_snapshots_every_env(root: Path, make_env, tmp_path, env_at, capsys) -> None:
    a = make_env("a", ["liba=1.0"])
    listed = env_at(tmp_path / "listed-only" / "x")
    (Path(os.environ["HOME"]) / ".conda").mkdir(exist_ok=True)
    (Path(os.environ["HOME"]) / ".conda" / "environments.txt").write_text(f"{listed}\n")
    assert main(["backup", "--all", "--json", "--reason", "cron"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {s["prefix"] for s in out["snapshots"]} == {str(root), str(a), str(listed)}
    assert all(s["created"] for s in out["snapshots"]) and out["failed"] == []
    # a broken env does not stop the others, and the exit status says so
    (a / "conda-meta" / "liba-1.0-0.json").write_text("{")
    assert main(["backup", "--all", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [f["prefix"] for f in out["failed"]] == [str(a)]
    assert len(out["snapshots"]) == 2 and not any(s["created"] for s in out["snapshots"])


def test_backup_by_name_and_base(root: Path, make_env, tmp_path, env_at, capsys) -> None:
    write_condarc(os.environ["CONDARC"], envs_dirs=[tmp_path / "rc-envs"])
    env_at(tmp_path / "rc-envs" / "named")
    assert main(["backup", "-n", "named"]) == 0
    assert capsys.readouterr().out.startswith("named: snapshot ")
    assert main(["backup", "-n", "base"]) == 0
    assert capsys.readouterr().out.startswith("base: snapshot ")
    assert main(["backup", "-p", str(tmp_path / "rc-envs" / "named")]) == 0
    assert capsys.readouterr().out.startswith("named: unchanged, latest snapshot ")
