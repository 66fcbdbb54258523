"""render.py: environment.yml as conda env export writes it, explicit lockfiles, pip lines."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

from conda_safeguard.prefix import read_records
from conda_safeguard.render import _strip_auth, environment_yml, explicit, pip_requirements
from conda_safeguard.snapshot import capture, new_info
from tests.conftest import cli_output
from tests.factory import add_pip_package, read_prefix_records, set_env_vars

VCS = {"url": "https://github.com/x/gitpkg.git", "vcs_info": {"vcs": "git", "commit_id": "c" * 40}}


def _info_for(prefix: Path, state, env_name: str = "e", channels: list[str] | None = None):
    return new_info(env_name=env_name, prefix=prefix, state=state, reason="t", argv=[],
                    channels=channels if channels is not None else ["file:///ch", "defaults"],
                    objects={}, parent=None, parent_state=None)


def test_yml_as_conda_env_export(make_env, channel, standalone_root, capsys) -> None:
    prefix = make_env("yml", pip=["Foo_Bar==1.2", {"name": "gitpkg", "version": "0.3",
                                                    "direct_url": VCS}])
    set_env_vars(prefix, {"ZZZ": "last", "AAA": "1"})
    cli_output(capsys, "backup", "-n", "yml")
    text = cli_output(capsys, "show", "yml")
    # the order of variables is conda-meta/state's, not sorted (conda env export keeps it).
    # ruamel folds a long prefix onto the next line, as conda's dumper does (tests/conda).
    head, _, tail = text.partition("prefix:")
    assert yaml.safe_load("prefix:" + tail) == {"prefix": str(prefix)}
    assert head + f"prefix: {prefix}\n" == f"""\
name: yml
channels:
  - {channel.url}
dependencies:
  - liba=1.0=0
  - libb=1.0=0
  - python=3.11.7=0
  - pip:
      - foo-bar==1.2
      - gitpkg==0.3
variables:
  ZZZ: last
  AAA: '1'
prefix: {prefix}
"""
    assert cli_output(capsys, "show", "yml", "--format", "yml-no-builds").count("liba=1.0\n") == 1
    history_form = cli_output(capsys, "show", "yml", "--format", "yml-from-history")
    assert "  - liba=1.0\n  - libb=1.0\n  - python=3.11.7\n  - pip:\n" in history_form
    assert yaml.safe_load(history_form)["dependencies"][-1] == {"pip": [
        "foo-bar==1.2", f"gitpkg @ git+https://github.com/x/gitpkg.git@{'c' * 40}"]}


def test_yml_without_channels_vars_or_pip(make_env) -> None:
    prefix = make_env("plain", ["liba=1.0"])
    state = capture(prefix)
    text = environment_yml(_info_for(prefix, state, "plain", channels=[]), state)
    assert text.startswith("name: plain\ndependencies:\n  - liba=1.0=0\nprefix:")
    assert yaml.safe_load(text)["prefix"] == str(prefix)
    with pytest.raises(ValueError, match="unknown environment.yml form"):
        environment_yml(_info_for(prefix, state), state, "nope")


def test_pip_without_conda_packages_has_no_pip_section(make_env) -> None:
    """conda env export appends the pip: section only after conda dependencies."""
    prefix = make_env("pyonly", ["python"], pip=["x==1"])
    state = capture(prefix)
    state.packages = []
    assert "  - pip:" not in environment_yml(_info_for(prefix, state), state)


def _explicit_urls(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if line and not line.startswith(("#", "@EXPLICIT")):
            url, _, digest = line.partition("#")
            out.append((url, digest))
    return out


def test_explicit_lockfile_reinstalls_the_same_packages(
        make_env, channel, standalone_root, capsys, tmp_path, pkg_cache) -> None:
    import rattler

    prefix = make_env("lock", ["python", "liba=1.0", "libb", "tool"], pip=["plain==1.0"])
    cli_output(capsys, "backup", "-n", "lock")
    text = cli_output(capsys, "show", "lock", "--format", "explicit")
    lines = text.splitlines()
    assert lines[:3] == ["# This file may be used to create an environment using:",
                         "# $ conda create --name <env> --file <this file>",
                         "# platform: linux-64"]
    assert lines[3].startswith("# created-by: conda-safeguard ") and lines[4] == "@EXPLICIT"
    urls = _explicit_urls(text)
    names = [u.rsplit("/", 1)[1] for u, _ in urls]
    assert names.index("liba-1.0-0.tar.bz2") < names.index("libb-1.0-0.tar.bz2")  # deps first
    assert "plain" not in text  # pip packages are not conda packages

    records = []
    for url, md5 in urls:
        path = Path(unquote(urlparse(url).path))
        assert hashlib.md5(path.read_bytes()).hexdigest() == md5
        records.append(asyncio.run(rattler.RepoDataRecord.from_package_archive(path)))
    new = tmp_path / "reinstalled"
    asyncio.run(rattler.install(records, target_prefix=str(new), cache_dir=pkg_cache,
                                show_progress=False, execute_link_scripts=False))

    def package_set(p: Path) -> set[tuple[str, str, str, str]]:
        return {(r["name"], r["version"], r["build"], r["sha256"])
                for r in read_prefix_records(p).values()}

    assert package_set(new) == package_set(prefix) and len(package_set(new)) == 4
    assert (new / "bin" / "tool").read_bytes() == (prefix / "bin" / "tool").read_bytes()

    sha_text = cli_output(capsys, "show", "lock", "--format", "explicit-sha256")
    by_name = {r.fn: r for r in read_records(prefix)}
    for url, digest in _explicit_urls(sha_text):
        assert digest == f"sha256:{by_name[url.rsplit('/', 1)[1]].sha256}"


def test_explicit_without_url_or_hash(make_env) -> None:
    prefix = make_env("nourl", ["liba=1.0", "libc=1.0"])
    state = capture(prefix)
    liba, libc = state.packages
    state.packages = [liba.__class__(**{**liba.to_dict(), "url": "", "depends": (),
                                        "python_anchors": ()}),
                      libc.__class__(**{**libc.to_dict(), "md5": "", "sha256": "",
                                        "depends": (), "python_anchors": ()})]
    text = explicit(_info_for(prefix, state), state)
    assert "# no URL for: liba-1.0-0.tar.bz2" in text
    assert text.endswith(f"\n{libc.url}\n")


@pytest.mark.parametrize(("url", "expected"), [
    ("https://conda.anaconda.org/t/tk-1-2/private/noarch/x-1-0.conda",
     "https://conda.anaconda.org/private/noarch/x-1-0.conda"),
    ("https://user:pw@host.example/chan/noarch/x-1-0.conda",
     "https://host.example/chan/noarch/x-1-0.conda"),
    ("https://host.example/chan/noarch/x-1-0.conda", "https://host.example/chan/noarch/x-1-0.conda"),
    # a folder named `t` in a local channel path is not a token (conda mangles this one)
    ("file:///data/t/mychannel/noarch/x-1-0.tar.bz2",
     "file:///data/t/mychannel/noarch/x-1-0.tar.bz2"),
])
def test_strip_auth(url: str, expected: str) -> None:
    assert _strip_auth(url) == expected


def test_explicit_from_channel_under_a_t_folder(tmp_path, pkg_cache) -> None:
    from tests.factory import LocalChannel, install_env

    ch = LocalChannel(tmp_path / "t" / "mychannel")
    ch.add("only", "1.0")
    ch.index()
    prefix = tmp_path / "env"
    install_env(prefix, ch, ["only"], cache_dir=pkg_cache)
    state = capture(prefix)
    (url,) = _explicit_urls(explicit(_info_for(prefix, state), state))
    assert Path(unquote(urlparse(url[0]).path)).is_file()


def test_pip_requirements(make_env) -> None:
    prefix = make_env("req", ["python"], pip=[("b_pkg", "2"), {"name": "gitpkg", "version": "0.3",
                                                                "direct_url": VCS}])
    add_pip_package(prefix, "edit", "0.1", editable=True)
    text = pip_requirements(capture(prefix))
    src = prefix.with_name("req.src") / "edit"
    assert text == (
        "b-pkg==2\n"
        "# editable install of edit 0.1; its source must still exist at this path\n"
        f"-e {src.as_uri()}\n"
        f"gitpkg @ git+https://github.com/x/gitpkg.git@{'c' * 40}\n")
    assert pip_requirements(capture(make_env("nopip", ["python"]))) == ""


# `channels:` per conda release (checked against each real conda in tests/conda/
# test_export_identity.py; these pin the rules themselves)
from conda_safeguard.render import configured_channels, export_channels  # noqa: E402


@pytest.mark.parametrize(("version", "expected"), [
    ("26.7.1", ["conda-forge", "bioconda", "defaults"]),  # packages' channels in order, first
    ("25.11.1", ["conda-forge", "bioconda", "defaults"]),
    (None, ["conda-forge", "bioconda", "defaults"]),  # unknown: as the newest
    ("25.5.1", ["bioconda", "conda-forge", "defaults"]),  # each inserted at the front
    ("24.11.3", ["bioconda", "conda-forge", "defaults"]),
    ("23.11.0", ["bioconda", "conda-forge", "defaults"]),
    ("4.14.0", ["bioconda", "conda-forge", "defaults"]),  # older than tested: the oldest
])
def test_export_channels_order(version: str | None, expected: list[str]) -> None:
    packages = ["conda-forge", "bioconda", "conda-forge", "defaults"]
    assert export_channels(packages, ["defaults"], version) == expected


def test_export_channels_unknown_channel() -> None:
    assert export_channels(["<unknown>", "x"], [], "26.7.1") == ["x"]
    assert export_channels(["<unknown>", "x"], [], "25.5.1") == ["x", "<unknown>"]


@pytest.mark.parametrize(("version", "unset", "empty"), [
    ("23.11.0", ["defaults"], []),
    ("24.11.3", ["defaults"], ["defaults"]),
    ("25.5.1", ["defaults"], ["defaults"]),
    ("25.11.1", [], []),
    ("26.7.1", [], []),
])
def test_configured_channels(version: str, unset: list[str], empty: list[str]) -> None:
    assert configured_channels(None, version) == unset
    assert configured_channels([], version) == empty
    assert configured_channels(["conda-forge", 3], version) == ["conda-forge", "3"]
