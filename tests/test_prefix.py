"""prefix.py reads what conda wrote: records, history, env vars, the frozen marker, pip dists."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from conda_safeguard.exceptions import CorruptEnvError, EnvNotFoundError, NotAnEnvError
from conda_safeguard.prefix import (
    canonical_channel,
    norm_pip_name,
    paths_in_prefix,
    read_env_vars,
    read_frozen,
    read_history,
    read_pip_dists,
    read_records,
    requested_specs,
    require_env,
    spec_name,
)
from tests.factory import (
    PYTHON_SITE_PACKAGES,
    LocalChannel,
    add_pip_package,
    install_env,
    read_prefix_records,
    set_env_vars,
)

SP = PYTHON_SITE_PACKAGES


@pytest.fixture(scope="module")
def pychannel(tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    """python stub plus `condapip`, a conda package that ships its own dist-info (as conda-forge
    python packages do), and a .conda-format package."""
    ch = LocalChannel(tmp_path_factory.mktemp("pychannel"))
    ch.add("python", "3.11.7", files={f"{SP}/.keep": b""})
    dist = f"{SP}/condapip-1.0.dist-info"
    ch.add("condapip", "1.0", depends=["python"], noarch="python", build="py_0", build_number=3,
           files={f"{SP}/condapip/__init__.py": b"",
                  f"{dist}/METADATA": b"Metadata-Version: 2.1\nName: condapip\nVersion: 1.0\n",
                  f"{dist}/RECORD": b"condapip/__init__.py,,\n",
                  f"{dist}/INSTALLER": b"conda\n"})
    ch.add("cpkg", "2.1", fmt=".conda")
    ch.index()
    return ch


def _append_history(prefix: Path, text: str) -> None:
    with open(prefix / "conda-meta" / "history", "a", encoding="utf-8") as f:
        f.write(text)


# --------------------------------------------------------------------------- records


def test_records_carry_what_conda_wrote(make_env, channel: LocalChannel) -> None:
    prefix = make_env("rec")
    raw = read_prefix_records(prefix)
    records = read_records(prefix)
    assert [r.name for r in records] == ["liba", "libb", "python"]  # sorted by name
    repodata = json.loads((channel.path / "noarch" / "repodata.json").read_text())["packages"]
    for r in records:
        src = raw[r.name]
        entry = repodata[f"{r.name}-{r.version}-0.tar.bz2"]
        assert (r.name, r.version, r.build, r.build_number) == (
            src["name"], src["version"], src["build"], src["build_number"])
        assert r.channel == channel.url  # canonical: no subdir, no trailing slash
        assert r.subdir == "noarch" and r.noarch == "generic"
        assert r.url == f"{channel.url}/noarch/{r.fn}" and r.fn == f"{r.name}-{r.version}-0.tar.bz2"
        assert (r.md5, r.sha256, r.size) == (entry["md5"], entry["sha256"], entry["size"])
        assert r.extracted_package_dir and Path(r.extracted_package_dir).is_dir()
        assert r.is_exported
    assert records[1].depends == ("liba",)
    assert {r.name: r.version for r in records} == {"liba": "1.0", "libb": "1.0",
                                                   "python": "3.11.7"}


def test_record_details_from_other_package_shapes(
        tmp_path: Path, pychannel: LocalChannel, pkg_cache: Path) -> None:
    prefix = tmp_path / "env"
    install_env(prefix, pychannel, ["condapip", "cpkg"], cache_dir=pkg_cache)
    by_name = {r.name: r for r in read_records(prefix)}
    cp = by_name["condapip"]
    assert (cp.build, cp.build_number, cp.noarch) == ("py_0", 3, "python")
    assert cp.python_anchors == (f"{SP}/condapip-1.0.dist-info/RECORD",)
    assert by_name["cpkg"].fn == "cpkg-2.1-0.conda"
    assert by_name["cpkg"].url.endswith("/noarch/cpkg-2.1-0.conda")


def test_requested_spec_conda_and_rattler_forms(make_env) -> None:
    prefix = make_env("req", ["liba=1.0"])
    path = next((prefix / "conda-meta").glob("liba-*.json"))
    data = json.loads(path.read_text())
    assert not data.get("requested_spec")
    assert read_records(prefix)[0].requested_spec is None
    data["requested_specs"] = ["liba 1.0.*"]  # rattler's list
    path.write_text(json.dumps(data))
    assert read_records(prefix)[0].requested_spec == "liba 1.0.*"
    data["requested_spec"] = "liba=1.0"  # conda's string wins
    path.write_text(json.dumps(data))
    assert read_records(prefix)[0].requested_spec == "liba=1.0"


def test_conda_written_channel_and_package_type(make_env, channel: LocalChannel) -> None:
    """conda writes `channel` with the subdir and adds package_type; conda env export skips
    virtual package types."""
    prefix = make_env("ptype", ["liba"])
    path = next((prefix / "conda-meta").glob("liba-*.json"))
    data = json.loads(path.read_text())
    data.update(channel=channel.subdir_url, package_type="noarch_generic")
    path.write_text(json.dumps(data))
    (r,) = read_records(prefix)
    assert r.channel == channel.url and r.is_exported
    data["package_type"] = "virtual_python_wheel"
    path.write_text(json.dumps(data))
    assert not read_records(prefix)[0].is_exported


@pytest.mark.parametrize(("channel", "url", "subdir", "expected"), [
    ("https://conda.anaconda.org/conda-forge/linux-64", None, "linux-64", "conda-forge"),
    ("https://conda.anaconda.org/conda-forge", None, "linux-64", "conda-forge"),
    ("http://conda.anaconda.org/bioconda/noarch", None, "noarch", "bioconda"),
    ("https://conda.anaconda.org/conda-forge/label/dev/noarch", None, "noarch",
     "conda-forge/label/dev"),
    ("https://conda.anaconda.org/t/tk-123/private/noarch", None, "noarch", "private"),
    ("https://repo.anaconda.com/pkgs/main/linux-64", None, "linux-64", "defaults"),
    ("https://repo.anaconda.com/pkgs/r/noarch", None, "noarch", "defaults"),
    # conda: default_channels has msys2 only on Windows
    ("https://repo.anaconda.com/pkgs/msys2/win-64", None, "win-64",
     "https://repo.anaconda.com/pkgs/msys2"),
    # credentials never reach a snapshot's channel name (conda strips them too)
    ("https://user:secret@example.com/chan/noarch", None, "noarch", "https://example.com/chan"),
    ("https://example.com/a/b/linux-64", None, "linux-64", "https://example.com/a/b"),
    ("https://prefix.dev/conda-forge/", None, "noarch", "https://prefix.dev/conda-forge"),
    ("file:///tmp/ch/noarch", None, "noarch", "file:///tmp/ch"),
    ("file:///tmp/ch/", None, "noarch", "file:///tmp/ch"),  # rattler's form
    ("conda-forge", None, "linux-64", "conda-forge"),
    ("defaults", None, "linux-64", "defaults"),
    (None, "https://conda.anaconda.org/conda-forge/noarch/x-1-0.conda", "noarch", "conda-forge"),
    (None, None, "noarch", "<unknown>"),
])
def test_canonical_channel_as_conda(channel, url, subdir, expected) -> None:
    # expected values checked against conda 26.7's Channel(...).canonical_name
    assert canonical_channel(channel, url, subdir) == expected


def test_corrupt_record_is_a_clear_error(make_env) -> None:
    prefix = make_env("corrupt", ["liba"])
    path = next((prefix / "conda-meta").glob("liba-*.json"))
    path.write_text('{"name": "liba", "version": ')
    with pytest.raises(CorruptEnvError, match=r"liba-2.0-0.json: not a valid conda-meta record"):
        read_records(prefix)
    path.write_text("[1, 2]")
    with pytest.raises(CorruptEnvError, match="not a JSON object"):
        read_records(prefix)
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(CorruptEnvError):
        read_records(prefix)
    path.write_text('{"version": "1.0"}')
    with pytest.raises(CorruptEnvError, match="'name'"):
        read_records(prefix)


def test_json_files_that_are_not_records_are_ignored(make_env, caplog) -> None:
    """Other tools leave *.json files in conda-meta (early builds of ours wrote the protect mark
    as safeguard.json); conda skips `._*`, and records whose file name is not their
    name-version-build (with a warning)."""
    prefix = make_env("other-json", ["liba=1.0"])
    meta = prefix / "conda-meta"
    (meta / "safeguard.json").write_text('{"protected": true}')
    (meta / "._liba-1.0-0.json").write_bytes(b"\x00\x01 resource fork")
    record = json.loads((meta / "liba-1.0-0.json").read_text())
    (meta / "libz-9.9-0.json").write_text(json.dumps(record))  # a misnamed liba record
    with caplog.at_level(logging.WARNING):
        assert [r.dist_str for r in read_records(prefix)] == ["liba-1.0-0"]
    assert "libz-9.9-0.json" in caplog.text


def test_not_an_env_and_missing_env(tmp_path: Path) -> None:
    with pytest.raises(EnvNotFoundError, match="No conda environment at"):
        require_env(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAnEnvError, match="has no conda-meta"):
        require_env(tmp_path / "plain")


def test_record_cache_skips_parsing(make_env, monkeypatch: pytest.MonkeyPatch) -> None:
    import conda_safeguard.prefix as prefix_mod

    prefix = make_env("cached", ["liba=1.0"])
    cache: dict = {}
    first = read_records(prefix, cache)
    assert cache == {}  # files younger than the racy window are not cached
    monkeypatch.setattr(prefix_mod, "RACY_NS", 0)
    assert read_records(prefix, cache) == first and set(cache) == {"liba-1.0-0.json"}
    monkeypatch.setattr(prefix_mod, "read_record", lambda path: pytest.fail("parsed again"))
    assert read_records(prefix, cache) == first


# --------------------------------------------------------------------------- history


def test_history_revisions_and_requested_specs(make_env, channel, pkg_cache) -> None:
    prefix = make_env("hist", ["python", "liba=1.0", "libb"])
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    history = read_history(prefix)
    assert len(history) == 2
    first, second = history
    assert first.cmd.startswith("conda create") and first.conda_version == "26.7.1"
    assert first.action == "update" and first.specs == ("python", "liba=1.0", "libb")
    assert f"{channel.url}/noarch::liba-1.0-0" in first.added and not first.removed
    assert second.specs == ("liba=2.0",)
    assert second.removed == (f"{channel.url}/noarch::liba-1.0-0",)
    assert second.added == (f"{channel.url}/noarch::liba-2.0-0",)
    installed = {r.name for r in read_records(prefix)}
    assert requested_specs(history, installed) == {
        "python": "python", "liba": "liba=2.0", "libb": "libb"}


def test_history_old_format_neutered_remove_and_garbage(make_env) -> None:
    prefix = make_env("oldhist", ["python", "liba=1.0", "libb"])
    _append_history(prefix, "\n".join([
        "this line is garbage",
        "# a comment before nothing",
        "==> 2016-01-01 10:00:00 <==",
        "# cmd: /opt/conda/bin/conda install liba libb",
        "# install specs: liba >=1,<2,libb",
        "+defaults::liba-1.0-0",
        "garbage without a sign",
        "==> 2017-01-01 10:00:00 <==",
        "# cmd: conda install python",
        "# install specs: python>=3.5.1,jupyter >=1.0.0,<2.0,matplotlib >=1.5.1,<2.0",
        "==> 2018-01-01 10:00:00 <==",
        "# cmd: conda update --all",
        "# neutered specs: ['python 3.11.*']",
        "==> 2019-01-01 10:00:00 <==",
        "# cmd: conda remove libb",
        "# remove specs: ['libb']",
        "-defaults::libb-1.0-0",
        "==> 2020-01-01 10:00:00 <==",
        "# update specs: ['liba']",  # no `# cmd:` line: conda does not count it as a request
        "==> 2021-01-01 10:00:00 <==",
        "# cmd: conda install 'weird",
        "# update specs: ['unterminated",  # conda itself would crash here; we skip it
        "==> garbage header <==",
        "",
    ]))
    history = read_history(prefix)
    assert len(history) == 8
    old = history[1]
    assert old.action == "install" and old.specs == ("liba >=1,<2", "libb")
    assert old.added == ("defaults::liba-1.0-0",)
    assert history[2].specs == ("python>=3.5.1", "jupyter >=1.0.0,<2.0",
                                "matplotlib >=1.5.1,<2.0")
    assert history[4].removed == ("defaults::libb-1.0-0",)
    assert history[5].cmd is None and history[6].specs == ()
    assert history[-1].date == "garbage header"
    installed = {r.name for r in read_records(prefix)}
    assert requested_specs(history, installed) == {"python": "python 3.11.*", "liba": "liba >=1,<2"}


def test_history_missing_or_undecodable(make_env) -> None:
    prefix = make_env("nohist", ["liba"])
    (prefix / "conda-meta" / "history").write_bytes(
        b"==> 2020-01-01 00:00:00 <==\n# cmd: conda install \xff\xfe\n# update specs: ['liba']\n")
    (entry,) = read_history(prefix)
    assert entry.specs == ("liba",) and "\ufffd" in entry.cmd
    (prefix / "conda-meta" / "history").unlink()
    assert read_history(prefix) == []


@pytest.mark.parametrize(("spec", "name"), [
    ("numpy", "numpy"), ("conda-forge::numpy >=1.2", "numpy"), ("NumPy=1.2", "numpy"),
    ("pkgs/main/linux-64::python==3.11.7=0", "python"), ("scikit-learn[version='>=1']",
                                                        "scikit-learn"),
    ("  libb  ", "libb"),
])
def test_spec_name(spec: str, name: str) -> None:
    assert spec_name(spec) == name


# --------------------------------------------------------------------------- state, frozen


def test_env_vars_as_conda_writes_them(make_env) -> None:
    prefix = make_env("vars", ["liba"])
    assert read_env_vars(prefix) == {}
    set_env_vars(prefix, {"ZZZ": "last", "AAA": "é", "NUM": "1"})
    assert list(read_env_vars(prefix).items()) == [("ZZZ", "last"), ("AAA", "é"), ("NUM", "1")]
    # `conda env config vars unset AAA` keeps the key with conda's marker (conda's
    # CONDA_ENV_VARS_UNSET_VAR; tests/conda checks it against real conda)
    set_env_vars(prefix, {"AAA": "***unset***"})
    assert read_env_vars(prefix) == {"ZZZ": "last", "NUM": "1"}
    state = prefix / "conda-meta" / "state"
    state.write_text(json.dumps({"env_vars": {"A": "1"}, "other": {"x": 1}}))
    assert read_env_vars(prefix) == {"A": "1"}
    state.write_text("")
    assert read_env_vars(prefix) == {}
    state.write_text("{not json")
    with pytest.raises(CorruptEnvError, match="state: not valid JSON"):
        read_env_vars(prefix)


@pytest.mark.parametrize(("content", "expected"), [
    (None, None),
    ("", ""),
    ('{"message": "frozen for the paper, ask Ana"}', "frozen for the paper, ask Ana"),
    ("{}", ""),
    ("not json at all", ""),  # conda treats any marker as frozen
    ('["a list"]', ""),
])
def test_frozen_marker(make_env, content: str | None, expected: str | None) -> None:
    prefix = make_env("frozen", ["liba"])
    if content is not None:
        (prefix / "conda-meta" / "frozen").write_text(content)
    assert read_frozen(prefix) == expected


# --------------------------------------------------------------------------- pip

VCS = {"url": "https://github.com/x/gitpkg.git",
       "vcs_info": {"vcs": "git", "commit_id": "a" * 40, "requested_revision": "main"}}
ARCHIVE = {"url": "https://files.example.com/arch-2.0.tar.gz",
           "archive_info": {"hashes": {"sha256": "b" * 64}}}


def test_pip_dists_and_requirement_lines(make_env) -> None:
    prefix = make_env("pip", ["python", "liba"], pip=[
        ("Foo_Bar", "1.2"),
        {"name": "gitpkg", "version": "0.3", "direct_url": VCS},
        {"name": "arch", "version": "2.0", "direct_url": ARCHIVE},
        {"name": "Zope.Sub", "version": "4"},
    ])
    add_pip_package(prefix, "mylib", "0.1", editable=True)
    dists = {d.name: d for d in read_pip_dists(prefix, read_records(prefix))}
    assert list(dists) == ["arch", "foo-bar", "gitpkg", "mylib", "zope-sub"]  # normalised, sorted
    assert dists["foo-bar"].version == "1.2" and dists["foo-bar"].direct_url is None
    assert dists["foo-bar"].installer == "pip"
    assert dists["foo-bar"].anchor == f"{SP}/foo_bar-1.2.dist-info"
    assert dists["foo-bar"].requirement() == "foo-bar==1.2"
    assert dists["gitpkg"].requirement() == (
        f"gitpkg @ git+https://github.com/x/gitpkg.git@{'a' * 40}")
    assert dists["arch"].requirement() == (
        f"arch @ https://files.example.com/arch-2.0.tar.gz#sha256={'b' * 64}")
    src = prefix.with_name("pip.src") / "mylib"
    assert dists["mylib"].editable and dists["mylib"].requirement() == f"-e {src.as_uri()}"
    assert not dists["gitpkg"].editable


def test_pip_requirement_subdirectory_and_revision_only() -> None:
    from conda_safeguard.prefix import PipDist

    d = PipDist("sub", "1", "x", direct_url={
        "url": "https://h/r.git", "subdirectory": "pkg/sub",
        "vcs_info": {"vcs": "hg", "requested_revision": "v1"}})
    assert d.requirement() == "sub @ hg+https://h/r.git@v1#subdirectory=pkg/sub"
    assert PipDist("d", "1", "x", direct_url={"url": "file:///src/d", "dir_info": {}}
                   ).requirement() == "d @ file:///src/d"


@pytest.mark.parametrize("name", ["Foo_Bar", "foo.bar", "FOO-BAR", "foo_bar"])
def test_norm_pip_name(name: str) -> None:
    assert norm_pip_name(name) == "foo-bar"


def test_dist_info_owned_by_conda_is_not_pip(
        tmp_path: Path, pychannel: LocalChannel, pkg_cache: Path) -> None:
    prefix = tmp_path / "env"
    install_env(prefix, pychannel, ["python", "condapip"], cache_dir=pkg_cache)
    add_pip_package(prefix, "pipped", "1.0")
    assert (prefix / SP / "condapip-1.0.dist-info" / "RECORD").is_file()
    assert [d.name for d in read_pip_dists(prefix, read_records(prefix))] == ["pipped"]


def test_egg_info_and_unreadable_dists(make_env) -> None:
    prefix = make_env("eggs", ["python"])
    sp = prefix / SP
    (sp / "flat-1.0-py3.11.egg-info").write_text(
        "Metadata-Version: 1.1\nName: Flat\nVersion: 1.0\n")
    (sp / "tree.egg-info").mkdir()
    (sp / "tree.egg-info" / "PKG-INFO").write_text(
        "Metadata-Version: 1.1\nName: tree\nVersion: 3\n\nName: not-a-header\n")
    (sp / "broken-1.0.dist-info").mkdir()  # no METADATA: skipped, as conda does
    (sp / "noname-1.0.dist-info").mkdir()
    (sp / "noname-1.0.dist-info" / "METADATA").write_text("Version: 1\n")
    dists = read_pip_dists(prefix, read_records(prefix))
    assert [(d.name, d.version, d.anchor) for d in dists] == [
        ("flat", "1.0", f"{SP}/flat-1.0-py3.11.egg-info"),
        ("tree", "3", f"{SP}/tree.egg-info"),
    ]


def test_no_python_no_pip(make_env) -> None:
    prefix = make_env("nopy", ["liba"])
    (prefix / SP).mkdir(parents=True)
    add_pip_package(prefix, "orphan", "1.0")
    assert read_pip_dists(prefix, read_records(prefix)) == []


def test_paths_in_prefix_maps_noarch_python_paths_to_the_files_conda_linked() -> None:
    # as conda writes a noarch: python record: paths_data as packaged, files as linked
    record = {"files": ["lib/python3.12/site-packages/nap/__init__.py", "bin/nap",
                        "share/nap.txt"],
              "paths_data": {"paths": [{"_path": "site-packages/nap/__init__.py"},
                                       {"_path": "python-scripts/nap"},
                                       {"_path": "share/nap.txt"},
                                       {"_path": "site-packages/gone.py"}]}}
    assert [e["_path"] for e in paths_in_prefix(record)] == [
        "lib/python3.12/site-packages/nap/__init__.py", "bin/nap", "share/nap.txt",
        "site-packages/gone.py"]  # a path in neither stays as it is: verify calls it missing
    assert paths_in_prefix({"files": [], "paths_data": {"paths": "nonsense"}}) == []
