"""The fixture factory builds real packages, channels and conda-looking environments."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest

from tests.factory import (
    LocalChannel,
    add_pip_package,
    build_package,
    install_env,
    make_conda_package_cache,
    read_prefix_records,
    set_env_vars,
    write_condarc,
)

HEAD = re.compile(r"^==> \d{4}-\d\d-\d\d \d\d:\d\d:\d\d <==$")


def test_build_package_is_reproducible(tmp_path: Path) -> None:
    a = build_package(tmp_path / "a", "x", "1.0", depends=["liba"])
    b = build_package(tmp_path / "b", "x", "1.0", depends=["liba"])
    assert a.name == "x-1.0-0.tar.bz2"
    assert a.read_bytes() == b.read_bytes()
    c = build_package(tmp_path / "c", "x", "1.0", fmt=".conda")
    assert c.name == "x-1.0-0.conda" and c.stat().st_size > 0


def test_channel_repodata(channel: LocalChannel) -> None:
    repodata = json.loads((channel.path / "noarch" / "repodata.json").read_text())
    pkgs = repodata["packages"]
    assert set(pkgs) >= {
        "python-3.11.7-0.tar.bz2",
        "liba-1.0-0.tar.bz2",
        "liba-2.0-0.tar.bz2",
        "tool-0.1-0.tar.bz2",
    }
    for entry in pkgs.values():
        assert (
            entry["subdir"] == "noarch" and len(entry["md5"]) == 32 and len(entry["sha256"]) == 64
        )
    assert pkgs["libb-1.0-0.tar.bz2"]["depends"] == ["liba"]
    assert json.loads((channel.path / "linux-64" / "repodata.json").read_text())["packages"] == {}
    assert channel.url.startswith("file:///")


def test_make_env_looks_like_conda(make_env, channel: LocalChannel) -> None:
    vcs = {"url": "https://github.com/x/y.git", "vcs_info": {"vcs": "git", "commit_id": "0" * 40}}
    prefix = make_env(
        "e1", pip=[{"name": "gitpkg", "version": "0.3", "direct_url": vcs}, ("plain", "1.0")]
    )
    assert prefix.name == "e1" and prefix.parent.name == "envs"
    records = read_prefix_records(prefix)
    assert {n: r["version"] for n, r in records.items()} == {
        "python": "3.11.7",
        "liba": "1.0",
        "libb": "1.0",
    }
    for rec in records.values():
        assert rec["md5"] and rec["sha256"] and rec["url"].startswith(channel.url + "/noarch/")
    for p in (prefix / "conda-meta").glob("*.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    assert not (prefix / "CACHEDIR.TAG").exists()
    assert (prefix / "share/liba/liba-1.0.txt").is_file()

    lines = (prefix / "conda-meta/history").read_text().splitlines()
    assert HEAD.match(lines[0])
    assert lines[1].startswith("# cmd: conda ")
    assert lines[2] == "# conda version: 26.7.1"
    assert f"+{channel.url}/noarch::liba-1.0-0" in lines
    assert lines[-1] == "# update specs: ['python', 'liba=1.0', 'libb']"

    site = prefix / "lib/python3.11/site-packages"
    dist = site / "gitpkg-0.3.dist-info"
    assert json.loads((dist / "direct_url.json").read_text()) == vcs
    assert (dist / "RECORD").is_file() and (dist / "METADATA").is_file()
    assert (site / "plain-1.0.dist-info").is_dir() and not (
        site / "plain-1.0.dist-info/direct_url.json"
    ).exists()


def test_editable_pip_package(make_env) -> None:
    prefix = make_env("ed", ["python"])
    dist = add_pip_package(prefix, "mylib", "0.1", editable=True)
    du = json.loads((dist / "direct_url.json").read_text())
    assert du["dir_info"] == {"editable": True} and du["url"].startswith("file:///")


def test_update_changes_liba_and_history(make_env, channel: LocalChannel, pkg_cache: Path) -> None:
    prefix = make_env("up")
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    records = read_prefix_records(prefix)
    assert records["liba"]["version"] == "2.0" and set(records) == {"python", "liba", "libb"}
    assert not (prefix / "share/liba/liba-1.0.txt").exists()
    text = (prefix / "conda-meta/history").read_text()
    assert len(re.findall(r"^==> .* <==$", text, re.M)) == 2
    last = text.split("==> ")[-1]
    assert f"-{channel.url}/noarch::liba-1.0-0" in last
    assert f"+{channel.url}/noarch::liba-2.0-0" in last
    assert "# update specs: ['liba=2.0']" in last


def test_make_conda_package_cache(tmp_path: Path, channel: LocalChannel, pkg_cache: Path) -> None:
    records = install_env(tmp_path / "env", channel, ["libb"], cache_dir=pkg_cache)
    pkgs = make_conda_package_cache(tmp_path / "pkgs", channel, records)
    urls = (pkgs / "urls.txt").read_text().splitlines()
    # libb pulls the newest liba
    assert sorted(urls) == [
        f"{channel.url}/noarch/liba-2.0-0.tar.bz2",
        f"{channel.url}/noarch/libb-1.0-0.tar.bz2",
    ]
    rec = json.loads((pkgs / "libb-1.0-0/info/repodata_record.json").read_text())
    assert rec["channel"] == f"{channel.url}/noarch"
    assert rec["fn"] == "libb-1.0-0.tar.bz2" and (pkgs / rec["fn"]).is_file()
    assert rec["depends"] == ["liba"] and len(rec["md5"]) == 32
    assert (pkgs / "libb-1.0-0/info/index.json").is_file()


def test_remove_from_channel(tmp_path: Path, pkg_cache: Path) -> None:
    ch = LocalChannel(tmp_path / "ch")
    ch.add("gone", "1.0")
    ch.add("gone", "1.0.1")
    ch.index()
    install_env(tmp_path / "before", ch, ["gone==1.0"], cache_dir=pkg_cache)
    ch.remove("gone", "1.0")
    assert list(json.loads((ch.path / "noarch/repodata.json").read_text())["packages"]) == [
        "gone-1.0.1-0.tar.bz2"
    ]
    with pytest.raises(
        Exception, match="gone"
    ):  # the solver sees the re-indexed channel, no stale cache
        install_env(tmp_path / "after", ch, ["gone==1.0"], cache_dir=pkg_cache)


def test_helpers(tmp_path: Path) -> None:
    rc = write_condarc(tmp_path / ".condarc", solver="classic", channels=[])
    assert "solver: classic" in rc.read_text()
    (tmp_path / "conda-meta").mkdir()
    set_env_vars(tmp_path, {"A": "1"})
    set_env_vars(tmp_path, {"B": "é"})
    assert (
        tmp_path / "conda-meta/state"
    ).read_text() == '{\n  "env_vars": {\n    "A": "1",\n    "B": "é"\n  }\n}'


def test_isolated_home(tmp_path: Path, real_user_data_dir: Path) -> None:
    assert os.environ["HOME"].startswith(str(tmp_path))
    assert os.environ["CONDA_SAFEGUARD_HOME"] == str(tmp_path / "store")
    assert "CONDA_PREFIX" not in os.environ
    assert not str(real_user_data_dir).startswith(str(tmp_path))


@pytest.mark.parametrize("spec", ["tool"])
def test_tool_files(tmp_path: Path, channel: LocalChannel, pkg_cache: Path, spec: str) -> None:
    install_env(tmp_path / "t", channel, [spec], cache_dir=pkg_cache)
    assert len(read_prefix_records(tmp_path / "t")["tool"]["files"]) == 3
