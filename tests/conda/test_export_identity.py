"""With real conda: `show --format yml` is byte-identical to `conda env export`, and the explicit
lockfile recreates the env with `conda create --offline --file`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import cli_output
from tests.factory import (
    LocalChannel,
    add_pip_package,
    make_conda_package_cache,
    read_prefix_records,
    write_condarc,
)

VCS = {"url": "https://github.com/x/gitpkg.git", "vcs_info": {"vcs": "git", "commit_id": "d" * 40}}


@pytest.fixture(autouse=True)
def root(standalone_root: Path, conda_exe: list[str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The standalone runtime reads the same $CONDARC as conda and finds the fixture's root; it
    follows the conda a user's shell names in CONDA_EXE, here the conda under test (`python -m
    conda`: the conda importable in this Python)."""
    if conda_exe[1:2] != ["-m"]:
        monkeypatch.setenv("CONDA_EXE", conda_exe[0])
    return standalone_root


def snapshot_yml(capsys, prefix: Path, fmt: str = "yml") -> str:
    cli_output(capsys, "backup", "-p", str(prefix))
    return cli_output(capsys, "show", str(prefix), "--format", fmt)


def test_named_env_with_pip_and_vars(make_env, run_conda, capsys, channel) -> None:
    prefix = make_env("exported", ["python", "liba=1.0", "libb", "tool"], pip=[
        "Foo_Bar==1.2", {"name": "gitpkg", "version": "0.3", "direct_url": VCS}])
    add_pip_package(prefix, "mylib", "0.1", editable=True)
    # set in this order: conda keeps it, and so must we
    run_conda("env", "config", "vars", "set", "-p", prefix, "ZZZ=last", "AAA=1", "UNI=é ü",
              "GONE=x")
    run_conda("env", "config", "vars", "unset", "-p", prefix, "GONE")
    state = json.loads((prefix / "conda-meta" / "state").read_text())
    assert state["env_vars"]["GONE"] == "***unset***"  # conda's marker, which we skip

    expected = run_conda("env", "export", "-p", prefix).stdout
    assert expected.startswith("name: exported\n") and "  - pip:\n" in expected
    assert "ZZZ: last\n  AAA: '1'\n" in expected and "GONE" not in expected
    assert snapshot_yml(capsys, prefix) == expected

    no_builds = run_conda("env", "export", "--no-builds", "-p", prefix).stdout
    assert cli_output(capsys, "show", "exported", "--format", "yml-no-builds") == no_builds

    # by name, conda resolves -n through envs_dirs as we do
    assert run_conda("env", "export", "-n", "exported").stdout == expected


def test_path_only_env_and_configured_channels(make_env, run_conda, capsys, tmp_path,
                                               conda_condarc, channel, pkg_cache,
                                               conda_version) -> None:
    from tests.factory import install_env

    prefix = tmp_path / "loose" / "env"
    install_env(prefix, channel, ["python", "libc=1.1"], cache_dir=pkg_cache)
    add_pip_package(prefix, "plain", "1.0")
    # channels conda sees come after the packages' channels, as written (no canonical names)
    settings = {k: v for k, v in __import__("yaml").safe_load(conda_condarc.read_text()).items()}
    settings["channels"] = ["conda-forge", "https://conda.anaconda.org/bioconda", channel.url]
    write_condarc(conda_condarc, **settings)
    expected = run_conda("env", "export", "-p", prefix).stdout
    # not in an envs dir: the prefix is the name (a long one folded onto the next line by yaml)
    assert __import__("yaml").safe_load(expected)["name"] == str(prefix)
    configured = "  - conda-forge\n  - https://conda.anaconda.org/bioconda\n"
    if conda_version >= (25, 11):  # the packages' channels first
        assert f"channels:\n  - {channel.url}\n{configured}" in expected
    else:  # configured ones kept in order, the packages' channel was among them already
        assert f"channels:\n{configured}  - {channel.url}\n" in expected
    assert snapshot_yml(capsys, prefix) == expected


def test_no_channels_setting(make_env, run_conda, capsys, conda_condarc, conda_version) -> None:
    """conda >= 24.9 configures no channels by default: nothing after the packages' channel."""
    prefix = make_env("nochan", ["liba=1.0"])
    settings = __import__("yaml").safe_load(conda_condarc.read_text())
    del settings["channels"]
    write_condarc(conda_condarc, **settings)
    expected = run_conda("env", "export", "-p", prefix).stdout
    # conda < 25.9 adds `defaults` when none are configured (conda 23.x: only when unset)
    assert ("  - defaults\n" in expected) != (conda_version >= (25, 9))
    assert snapshot_yml(capsys, prefix) == expected


def test_explicit_lockfile_recreates_the_env_offline(
        make_env, run_conda, capsys, tmp_path, channel: LocalChannel) -> None:
    prefix = make_env("locked", ["python", "liba=1.0", "libb", "tool"], pip=["plain==1.0"])
    cli_output(capsys, "backup", "-n", "locked")
    lockfile = tmp_path / "explicit.txt"
    cli_output(capsys, "show", "locked", "--format", "explicit", "-o", str(lockfile))
    records = read_prefix_records(prefix)
    pkgs = make_conda_package_cache(tmp_path / "conda-pkgs", channel, records.values())

    new = tmp_path / "recreated"
    run_conda("create", "-p", new, "--offline", "--override-channels", "-c", channel.url,
              "--file", lockfile, "-y")
    recreated = read_prefix_records(new)
    assert {n: (r["version"], r["build"], r["md5"]) for n, r in recreated.items()} == {
        n: (r["version"], r["build"], r["md5"]) for n, r in records.items()}
    for name, rec in recreated.items():  # linked from the cache we made: no download, no solve
        assert rec["extracted_package_dir"].startswith(str(pkgs)), name
    assert (new / "bin" / "tool").read_bytes() == (prefix / "bin" / "tool").read_bytes()

    # conda agrees the package sets are the same
    ours_list = json.loads(run_conda("list", "-p", new, "--json").stdout)
    assert {p["name"] for p in ours_list} == {"python", "liba", "libb", "tool"}


@pytest.mark.parametrize("configured", [None, [], ["conda-forge", "bioconda"]],
                         ids=["unset", "empty", "two"])
def test_inside_conda_show_equals_export(make_env, run_conda, conda_condarc, configured) -> None:
    """`conda safeguard show --format yml` (the plugin: conda's context in the conda in use) is
    byte-identical to that conda's `conda env export`, with channels unset, empty or set."""
    prefix = make_env("inside", ["python", "liba=1.0", "libb"], pip=["plain==1.0"])
    settings = __import__("yaml").safe_load(conda_condarc.read_text())
    settings.pop("channels", None)
    if configured is not None:
        settings["channels"] = configured
    write_condarc(conda_condarc, **settings)
    expected = run_conda("env", "export", "-n", "inside").stdout
    run_conda("safeguard", "backup", "-n", "inside")
    for env_arg in (["inside"], [str(prefix)]):
        shown = run_conda("safeguard", "show", *env_arg, "--format", "yml").stdout
        assert shown == expected
    no_builds = run_conda("env", "export", "-n", "inside", "--no-builds").stdout
    shown = run_conda("safeguard", "show", "inside", "--format", "yml-no-builds").stdout
    assert shown == no_builds
