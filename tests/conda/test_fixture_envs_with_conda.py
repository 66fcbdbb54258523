"""Real conda reads the factory's environments and uses the factory's channel."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.factory import (
    LocalChannel,
    install_env,
    make_conda_package_cache,
    read_prefix_records,
    set_env_vars,
)


def test_conda_list_sees_fixture_env(make_env, run_conda) -> None:
    prefix = make_env("listed")
    out = json.loads(run_conda("list", "-p", prefix, "--json").stdout)
    assert {p["name"]: p["version"] for p in out} == {
        "python": "3.11.7",
        "liba": "1.0",
        "libb": "1.0",
    }


def test_conda_list_revisions_reads_history(
    make_env, run_conda, channel: LocalChannel, pkg_cache: Path
) -> None:
    prefix = make_env("revs")
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    out = run_conda("list", "-p", prefix, "--revisions").stdout
    assert "rev 0" in out and "rev 1" in out
    # conda prints "liba  {1.0 (file:///…/noarch) -> 2.0 (file:///…/noarch)}" for file:// channels
    assert re.search(
        r"liba\s+\{1\.0 \(file://[^)]*/noarch\) -> 2\.0 \(file://[^)]*/noarch\)\}", out
    ), out


def test_conda_env_export_has_pip_section(make_env, run_conda, channel: LocalChannel) -> None:
    prefix = make_env("exported", pip=["plainpkg==1.5"])
    text = run_conda("env", "export", "-p", prefix).stdout
    exported = yaml.safe_load(text)
    deps = exported["dependencies"]
    conda_deps = [d for d in deps if isinstance(d, str)]
    assert "liba=1.0=0" in conda_deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert "plainpkg==1.5" in pip
    # conda 24.x-25.5 append the implicit `defaults` of their release (render.py knows which)
    assert exported["channels"] in ([channel.url], [channel.url, "defaults"])


def test_conda_create_from_local_channel(run_conda, channel: LocalChannel, tmp_path: Path) -> None:
    new = tmp_path / "created"
    run_conda(
        "create", "-p", new, "--offline", "--override-channels", "-c", channel.url, "liba=1.0", "-y"
    )
    records = read_prefix_records(new)
    assert records["liba"]["version"] == "1.0"
    assert records["liba"]["channel"] == f"{channel.url}/noarch"


def test_set_env_vars_matches_conda(make_env, run_conda, conda_version) -> None:
    by_conda = make_env("vars-conda", ["liba"])
    by_factory = make_env("vars-factory", ["liba"])
    run_conda("env", "config", "vars", "set", "-p", by_conda, "FOO=bar", "NAME=é")
    set_env_vars(by_factory, {"FOO": "bar", "NAME": "é"})
    state = "conda-meta/state"
    assert json.loads((by_factory / state).read_bytes()) == \
        json.loads((by_conda / state).read_bytes())
    if conda_version >= (25, 11):  # the factory writes today's format; older conda indents it
        assert (by_factory / state).read_bytes() == (by_conda / state).read_bytes()
    assert run_conda("env", "config", "vars", "list", "-p", by_factory).stdout.split() == [
        "FOO",
        "=",
        "bar",
        "NAME",
        "=",
        "é",
    ]


def test_conda_uses_factory_package_cache(
    run_conda, channel: LocalChannel, pkg_cache: Path, tmp_path: Path
) -> None:
    records = install_env(tmp_path / "src-env", channel, ["libb"], cache_dir=pkg_cache)
    pkgs = make_conda_package_cache(tmp_path / "pkgs", channel, records)
    urls_before = (pkgs / "urls.txt").read_text()
    marker = pkgs / "libb-1.0-0" / "info" / "repodata_record.json"
    mtime = marker.stat().st_mtime_ns
    new = tmp_path / "from-cache"
    run_conda(
        "create",
        "-p",
        new,
        "--offline",
        "--override-channels",
        "-c",
        channel.url,
        "libb",
        "-y",
        env={"CONDA_PKGS_DIRS": str(pkgs)},
    )
    rec = read_prefix_records(new)["libb"]
    # conda linked from our extracted dir without re-extracting or re-downloading
    assert rec["extracted_package_dir"] == str(pkgs / "libb-1.0-0")
    assert marker.stat().st_mtime_ns == mtime
    assert (pkgs / "urls.txt").read_text() == urls_before
