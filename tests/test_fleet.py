"""fingerprint / verify --against / compare / diff on real envs (factory-built, installed by
py-rattler): each drift kind is found and named, identical envs pass with counts, bad input is
one line and exit 2."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conda_safeguard.__main__ import main
from conda_safeguard.fingerprint import FORMAT_VERSION, read_package_set
from tests.factory import (
    PYTHON_SITE_PACKAGES,
    LocalChannel,
    add_pip_package,
    install_env,
    read_prefix_records,
)

SP = PYTHON_SITE_PACKAGES


@pytest.fixture(scope="module")
def fleet_channel(tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    """python stub; liba 1.0 in builds 0 and 1; libb; libc; requests 2.31 as a conda package
    owning its dist-info (so pip can install over it)."""
    ch = LocalChannel(tmp_path_factory.mktemp("fleet-channel"))
    ch.add("python", "3.11.7", files={f"{SP}/.keep": b""})
    ch.add("liba", "1.0")
    ch.add("liba", "1.0", build="1", build_number=1,
           files={"share/liba/liba-1.0.txt": b"liba 1.0, rebuilt\n"})
    ch.add("liba", "2.0")
    ch.add("libb", "1.0", depends=["liba"])
    ch.add("libc", "1.0")
    ch.add("requests", "2.31.0", depends=["python"], files={
        f"{SP}/requests/__init__.py": b"__version__ = '2.31.0'\n",
        f"{SP}/requests-2.31.0.dist-info/METADATA":
            b"Metadata-Version: 2.1\nName: requests\nVersion: 2.31.0\n",
        f"{SP}/requests-2.31.0.dist-info/RECORD": b"",
    })
    ch.index()
    return ch


@pytest.fixture(scope="module")
def mirror_channel(fleet_channel: LocalChannel,
                   tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    """The same package files served from another channel."""
    path = tmp_path_factory.mktemp("mirror") / "mirror"
    shutil.copytree(fleet_channel.path, path)
    return LocalChannel(path)


BASE = ["python", "liba ==1.0 0", "libb", "requests"]


@pytest.fixture
def env(conda_root: Path, fleet_channel: LocalChannel, pkg_cache: Path, standalone_root):
    def make(name: str, specs: list[str] = BASE, channel: LocalChannel | None = None) -> Path:
        prefix = conda_root / "envs" / name
        install_env(prefix, channel or fleet_channel, specs, cache_dir=pkg_cache)
        return prefix
    return make


def run(capsys, *argv: str | os.PathLike[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([os.fspath(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def fingerprint_json(capsys, prefix: Path, node: str) -> dict:
    code, out, err = run(capsys, "fingerprint", "-p", prefix, "--json", "--node", node)
    assert code == 0, err
    return json.loads(out)


# ------------------------------------------------------------------------------- fingerprint


def test_fingerprint_is_stable_and_independent_of_place(env, capsys, tmp_path) -> None:
    a, b = env("a"), env("b")
    fa, fb = fingerprint_json(capsys, a, "n1"), fingerprint_json(capsys, b, "n2")
    assert fa["fingerprint"] == fb["fingerprint"]
    assert fa["counts"] == {"conda": 4, "pip": 0}
    assert [p["name"] for p in fa["conda"]] == ["liba", "libb", "python", "requests"]
    assert fa["node"] == "n1" and fa["prefix"] == str(a) and fa["format_version"] == FORMAT_VERSION
    # env vars, history and the prefix are not part of the package set
    (a / "conda-meta" / "history").write_text("")
    assert fingerprint_json(capsys, a, "n1")["fingerprint"] == fa["fingerprint"]

    code, out, _ = run(capsys, "fingerprint", "a")  # a bare name is the env
    assert code == 0
    assert f"fingerprint {fa['fingerprint']}" in out
    assert "4 conda packages" in out and "0 pip packages" in out


def test_fingerprint_from_the_store_record_cache_is_the_same(env, capsys, fleet_channel,
                                                            pkg_cache, monkeypatch) -> None:
    from conda_safeguard import prefix as prefix_mod

    prefix = env("cached")
    cold = fingerprint_json(capsys, prefix, "n")["fingerprint"]
    monkeypatch.setattr(prefix_mod, "RACY_NS", 0)  # cache records written a moment ago
    assert run(capsys, "backup", "-p", prefix)[0] == 0
    parsed = []
    real = prefix_mod._read_json
    monkeypatch.setattr(prefix_mod, "_read_json", lambda p: parsed.append(p) or real(p))
    assert fingerprint_json(capsys, prefix, "n")["fingerprint"] == cold
    assert parsed == []  # every record came from the cache the backup left
    install_env(prefix, fleet_channel, ["liba=2.0"], cache_dir=pkg_cache)
    changed = fingerprint_json(capsys, prefix, "n")["fingerprint"]
    assert changed != cold and [Path(p).name for p in parsed] == ["liba-2.0-0.json"]


def test_fingerprint_changes_with_every_drift_kind(env, capsys, fleet_channel,
                                                   mirror_channel) -> None:
    base = read_package_set(env("base")).fingerprint()
    drifted = {
        "version": env("v", ["python", "liba=2.0", "libb", "requests"]),
        "build": env("b", ["python", "liba ==1.0 1", "libb", "requests"]),
        "channel": env("c", BASE, mirror_channel),
        "extra": env("x", [*BASE, "libc"]),
        "missing": env("m", ["python", "liba ==1.0 0", "requests"]),
    }
    shadow = env("s")
    add_pip_package(shadow, "requests", "2.32.3")
    drifted["pip shadows conda"] = shadow
    prints = {kind: read_package_set(p).fingerprint() for kind, p in drifted.items()}
    assert base not in prints.values()
    assert len(set(prints.values())) == len(prints)
    code, out, _ = run(capsys, "fingerprint", "-p", shadow)
    assert "warning: pip's requests 2.32.3 shadows conda's requests 2.31.0" in out


# ------------------------------------------------------------------------------ verify


def verify_json(capsys, prefix: Path, ref: str | os.PathLike[str], *extra: str) -> tuple[int, dict]:
    code, out, err = run(capsys, "verify", "-p", prefix, "--against", ref, "--json", *extra)
    assert code in (0, 1), err
    return code, json.loads(out)


def test_identical_envs_verify_with_counts(env, capsys, tmp_path) -> None:
    a, b = env("a"), env("b")
    ref = tmp_path / "a.json"
    ref.write_text(json.dumps(fingerprint_json(capsys, a, "node-a")))
    code, out, err = run(capsys, "verify", "-p", b, "--against", ref)
    assert code == 0, out + err
    assert ("same: 4 conda and 0 pip packages compared (fields compared: version 4, build 4, "
            "channel 4, sha256 4)") in out
    code, doc = verify_json(capsys, b, ref)
    assert code == 0 and doc["same"] is True and doc["compared"]["conda"] == 4
    assert doc["node"]["fingerprint"] == json.loads(ref.read_text())["fingerprint"]


@pytest.mark.parametrize(("kind", "specs", "expected"), [
    ("version", ["python", "liba=2.0", "libb", "requests"],
     ("conda", "liba", "changed", ["version", "sha256"])),
    ("build", ["python", "liba ==1.0 1", "libb", "requests"],
     ("conda", "liba", "changed", ["build", "sha256"])),
    ("extra", [*BASE, "libc"], ("conda", "libc", "extra", [])),
    ("missing", ["python", "liba ==1.0 0", "requests"], ("conda", "libb", "missing", [])),
])
def test_verify_names_each_drift(env, capsys, tmp_path, kind, specs, expected) -> None:
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(fingerprint_json(capsys, env("ref"), "ref")))
    code, doc = verify_json(capsys, env(kind, specs), ref)
    assert code == 1 and doc["same"] is False
    assert [(d["kind"], d["name"], d["status"], d["fields"]) for d in doc["differences"]] == [
        expected]


def test_verify_catches_other_channel_and_pip_over_conda(env, capsys, tmp_path,
                                                         mirror_channel) -> None:
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(fingerprint_json(capsys, env("ref"), "ref")))
    code, doc = verify_json(capsys, env("mirrored", BASE, mirror_channel), ref)
    assert code == 1
    assert {(d["name"], tuple(d["fields"])) for d in doc["differences"]} == {
        (n, ("channel",)) for n in ("liba", "libb", "python", "requests")}

    shadow = env("shadow")
    add_pip_package(shadow, "requests", "2.32.3")  # `pip install -U requests` in a conda env
    code, out, _ = run(capsys, "verify", "-p", shadow, "--against", ref)
    assert code == 1
    assert "differs (1 shadowed)" in out
    assert ("! requests: pip's requests 2.32.3 shadows conda's requests 2.31.0 0 "
            f"({read_package_set(shadow).conda['requests'].channel})") in out


def test_verify_files_finds_an_altered_file(env, capsys, tmp_path) -> None:
    prefix = env("f")
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(fingerprint_json(capsys, prefix, "ref")))
    assert run(capsys, "verify", "-p", prefix, "--against", ref, "--files")[0] == 0
    (prefix / "share" / "liba" / "liba-1.0.txt").write_text("edited after install\n")
    code, out, _ = run(capsys, "verify", "-p", prefix, "--against", ref)
    assert code == 0  # the package set is the same: only --files looks at the bytes
    code, out, _ = run(capsys, "verify", "-p", prefix, "--against", ref, "--files")
    assert code == 1
    assert "liba: share/liba/liba-1.0.txt: sha256 differs" in out
    code, out, _ = run(capsys, "verify", "f")  # without --against: files only, bare name
    assert code == 1 and "1 file differs" in out


def test_verify_against_every_reference_kind(env, capsys, tmp_path, fleet_channel,
                                             pkg_cache) -> None:
    prefix = env("kinds", ["python", "libb", "requests"])  # liba comes as libb's dependency
    assert run(capsys, "backup", "-p", prefix)[0] == 0
    files = {}
    for fmt, name in (("yml", "environment.yml"), ("explicit", "explicit.txt"),
                      ("explicit-sha256", "explicit-sha256.txt"),
                      ("yml-no-builds", "no-builds.yml"), ("yml-from-history", "history.yml")):
        files[fmt] = tmp_path / name
        assert run(capsys, "show", "kinds", "--format", fmt, "-o", files[fmt])[0] == 0
    files["conda-lock"] = write_conda_lock(prefix, tmp_path / "conda-lock.yml")
    expectations = {
        "yml": "fields compared: version 4, build 4)",
        "explicit": "fields compared: version 4, build 4, channel 4, md5 4)",
        "explicit-sha256": "fields compared: version 4, build 4, channel 4, sha256 4)",
        "yml-no-builds": "not checked: the reference names 4 conda packages, not every package: 0",
        "yml-from-history": "not checked: the reference names 3 conda packages, not every "
                            "package: 1 others",
        "conda-lock": "fields compared: version 4, build 4, channel 4, sha256 4)",
    }
    for fmt, path in files.items():
        code, out, err = run(capsys, "verify", "-p", prefix, "--against", path)
        assert code == 0, (fmt, out, err)
        compared = 3 if fmt == "yml-from-history" else 4
        assert f"same: {compared} conda" in out and expectations[fmt] in out, (fmt, out)
    code, out, _ = run(capsys, "verify", "kinds", "--against", "kinds@latest")
    assert code == 0 and "against snapshot " in out and "sha256 4" in out

    install_env(prefix, fleet_channel, ["liba ==1.0 0"], cache_dir=pkg_cache)
    for fmt, path in files.items():
        code, out, _ = run(capsys, "verify", "-p", prefix, "--against", path)
        if fmt == "yml-from-history":  # liba was never requested: the file cannot tell
            assert code == 0 and "1 others in the env were not checked" in out
        else:
            assert code == 1 and "~ liba: version" in out, (fmt, out)


def write_conda_lock(prefix: Path, path: Path) -> Path:
    """A conda-lock v1 file for the env, as conda-lock writes one (the fields we read)."""
    entries = [{"name": r["name"], "version": r["version"], "manager": "conda",
                "platform": "linux-64", "dependencies": {}, "url": r["url"],
                "hash": {"md5": r["md5"], "sha256": r["sha256"]}, "category": "main",
                "optional": False}
               for r in read_prefix_records(prefix).values()]
    entries.append({"name": "docs-only", "version": "1", "manager": "conda",
                    "platform": "linux-64", "url": "https://x.org/noarch/docs-only-1-0.conda",
                    "hash": {"md5": "0" * 32}, "category": "docs", "optional": True})
    entries.append({"name": "liba", "version": "9", "manager": "conda", "platform": "osx-arm64",
                    "url": "https://x.org/osx-arm64/liba-9-0.conda", "hash": {"md5": "0" * 32},
                    "category": "main", "optional": False})
    doc = {"version": 1, "metadata": {"platforms": ["linux-64", "osx-arm64"]},
           "package": entries}
    path.write_text(yaml.safe_dump(doc))
    return path


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("content", "fragment"), [
    ('{"format": "conda-safeguard-fingerprint", "format_version": 99, "conda": [], "pip": []}',
     "written by a newer conda-safeguard (format version 99"),
    ('{"name": "x"}', "not a conda-safeguard fingerprint"),
    ('{"format": "conda-safeguard-fingerprint", "format_version": 1, "conda": [{}], "pip": []}',
     "a package entry lacks 'name'"),
    ("{not json", "invalid JSON"),
    ('{"format": "conda-safeguard-fingerprint", "format_version": 1, "pip": [], '
     '"conda": [{"name": "liba\\nforged row", "version": "1"}]}', "has spaces or control"),
    ("version: 2\npackage: []\nmetadata: {}\n", "conda-lock version 2; only version 1"),
    ("version: 1\npackage:\n- {platform: osx-arm64, name: a}\n",
     "it has no packages for linux-64 (it has: osx-arm64)"),
    ("@EXPLICIT\nhttps://x.org/noarch/liba-1.0-0.conda#nothex\n", "line 2: 'nothex'"),
    ("@EXPLICIT\nhttps://x.org/noarch/liba.zip\n", "is not a .conda or .tar.bz2 package"),
    ("packages: [a]\n", "not a format we read"),
    ("name: x\ndependencies: [[nested]]\n", "is not a string or a pip list"),
    ("a: [b\n", "invalid YAML at line"),
    (b"\xff\xfe\x00garbage", "not UTF-8 text"),
])
def test_bad_reference_is_one_line_exit_2(env, capsys, tmp_path, content, fragment) -> None:
    prefix = env("bad")
    ref = tmp_path / "ref"
    ref.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, out, err = run(capsys, "verify", "-p", prefix, "--against", ref)
    assert code == 2, (out, err)
    assert out == "" and err.count("\n") == 1 and fragment in err, err
    assert "Nothing was compared" in err


def test_bad_input_for_every_check_verb(env, capsys, tmp_path) -> None:
    prefix = env("here")
    env("other")
    assert run(capsys, "backup", "-n", "other")[0] == 0  # a store, without a snapshot of `here`
    cases = [
        (["verify", "-p", prefix, "--against", "no-such-thing"], "not a file, and not a snapshot"),
        (["verify", "-p", prefix, "--against", tmp_path], "it is a folder"),
        (["verify", "here", "-n", "here", "--against", "x"], "a reference to compare with goes "
                                                             "behind --against"),
        (["verify", "-n", "ghost"], "No conda environment named 'ghost'"),
        (["diff", "nope"], "No snapshot matches 'nope'"),
        (["diff", "here"], "the env has no snapshot yet"),
        (["compare", tmp_path / "missing.json"], "No such file"),
        (["fingerprint", "-n", "ghost"], "No conda environment named 'ghost'"),
    ]
    for argv, fragment in cases:
        code, out, err = run(capsys, *argv)
        expected = 1 if argv[0] == "fingerprint" else 2  # fingerprint has no "differs"
        assert code == expected and fragment in err and err.count("\n") == 1, (argv, code, err)


# ------------------------------------------------------------------------------ compare


def test_compare_three_nodes_finds_the_one_that_differs(env, capsys, tmp_path) -> None:
    docs = [fingerprint_json(capsys, env("n1"), "gpu01"), fingerprint_json(capsys, env("n2"),
                                                                           "gpu02")]
    odd = env("n3")
    add_pip_package(odd, "requests", "2.32.3")
    docs.append(fingerprint_json(capsys, odd, "gpu03"))
    paths = []
    for d in docs:
        paths.append(tmp_path / f"{d['node']}.json")
        paths[-1].write_text(json.dumps(d))
    code, out, err = run(capsys, "compare", *paths)
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].startswith("3 nodes, 2 fingerprints; baseline "
                               f"{docs[0]['fingerprint'][:12]} (the fingerprint of 2 of 3 nodes)")
    table = {line.split()[0]: line for line in lines[2:5]}
    assert table["gpu01"].endswith("same") and table["gpu02"].endswith("same")
    assert table["gpu03"].endswith("DIFFERS: !requests (pip over conda)")
    assert "gpu03 vs baseline: differs (1 shadowed)" in out

    # stdin, many documents one after another (what `cat` or a collector gives), --json
    code, out, _ = run_stdin(capsys, "".join(p.read_text() for p in paths), "compare", "--json")
    report = json.loads(out)
    assert code == 1 and report["nodes"] == 3 and report["fingerprints"] == 2
    assert [r["node"] for r in report["table"] if not r["same"]] == ["gpu03"]

    code, out, _ = run(capsys, "compare", paths[0], paths[1])
    assert code == 0 and "all 2 nodes hold the same packages" in out
    code, out, _ = run(capsys, "compare", *paths, "--baseline", "gpu03")
    assert code == 1 and "gpu01 vs baseline" in out and "gpu02 vs baseline" in out


def run_stdin(capsys, text: str, *argv: str) -> tuple[int, str, str]:
    import io
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        return run(capsys, *argv)
    finally:
        sys.stdin = old


def test_compare_prints_untrusted_labels_on_one_line(env, capsys, tmp_path) -> None:
    doc = fingerprint_json(capsys, env("a"), "gpu01")
    (tmp_path / "a.json").write_text(json.dumps(doc))
    (tmp_path / "b.json").write_text(json.dumps(dict(doc, node="gpu01")))  # a shared hostname
    forged = dict(doc, node="x\ngpu99  ml  000000000000  same", env="ml\x1b[2J")
    (tmp_path / "c.json").write_text(json.dumps(forged))
    code, out, _ = run(capsys, "compare", *(tmp_path / f"{n}.json" for n in "abc"))
    assert code == 0
    rows = out.splitlines()[2:5]
    assert [r.split()[0] for r in rows] == ["gpu01", "gpu01", "x?gpu99??ml??000000000000??same"]
    assert rows[1].startswith(f"gpu01 ({tmp_path / 'b.json'})")  # two nodes named alike
    assert "\x1b" not in out and len(out.splitlines()) == 6


def test_verify_json_same_is_false_when_only_files_differ(env, capsys, tmp_path) -> None:
    prefix = env("jf")
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(fingerprint_json(capsys, prefix, "ref")))
    (prefix / "share" / "liba" / "liba-1.0.txt").write_text("edited\n")
    code, doc = verify_json(capsys, prefix, ref, "--files")
    assert code == 1 and doc["same"] is False and doc["differences"] == []
    assert doc["files"]["bad_files"] == ["liba: share/liba/liba-1.0.txt: sha256 differs"]


def test_compare_reads_verify_json_and_refuses_edited_documents(env, capsys, tmp_path) -> None:
    a = fingerprint_json(capsys, env("a"), "a")
    ref = tmp_path / "a.json"
    ref.write_text(json.dumps(a))
    code, out, _ = run(capsys, "verify", "-p", env("b"), "--against", ref, "--json", "--node", "b")
    verified = tmp_path / "b.json"
    verified.write_text(out)
    edited = dict(a, node="c")
    edited["conda"] = [dict(p, version="9") if p["name"] == "liba" else p for p in a["conda"]]
    (tmp_path / "c.json").write_text(json.dumps(edited))
    code, out, _ = run(capsys, "compare", ref, verified, tmp_path / "c.json")
    assert code == 1
    assert "problem: c: the recorded fingerprint" in out and "the document was edited" in out
    code, out, _ = run(capsys, "compare", ref, verified)
    assert code == 0, out


# ------------------------------------------------------------------------------ diff


def test_diff_env_alone_two_envs_and_exit_codes(env, capsys, fleet_channel, pkg_cache) -> None:
    a = env("da")
    env("db", [*BASE, "libc"])
    assert run(capsys, "backup", "-n", "da")[0] == 0
    code, out, _ = run(capsys, "diff", "da")
    assert code == 0
    assert out.splitlines()[0].startswith("da snapshot ") and out.splitlines()[0].endswith(
        "-> da now")
    assert "no differences (4 conda and 0 pip packages compared, and env vars)" in out

    install_env(a, fleet_channel, ["liba=2.0"], cache_dir=pkg_cache)
    code, out, _ = run(capsys, "diff", "da")
    assert code == 1 and "  ~ liba  1.0 0" in out

    code, out, _ = run(capsys, "diff", "da", "db")  # both envs as they are now
    assert code == 1
    assert out.splitlines()[0] == "da now -> db now"
    assert "  + libc" in out
    code, out, _ = run(capsys, "diff", "da@latest", "--json")  # a snapshot alone -> its env now
    doc = json.loads(out)
    assert code == 1 and doc["same"] is False and doc["to"]["label"] == "da now"
    assert doc["compared"]["a"] == {"conda": 4, "pip": 0}


def test_references_compare_only_what_they_record(env, capsys, tmp_path) -> None:
    prefix = env("rec")
    assert run(capsys, "backup", "-p", prefix)[0] == 0
    hashed = tmp_path / "hashed.txt"
    assert run(capsys, "show", "rec", "--format", "explicit", "-o", hashed)[0] == 0
    bare = tmp_path / "bare.txt"  # `conda list --explicit` without --md5: URLs only
    bare.write_text("".join(line.split("#")[0] + "\n" if "://" in line else line + "\n"
                            for line in hashed.read_text().splitlines()))
    code, out, _ = run(capsys, "verify", "-p", prefix, "--against", bare)
    assert code == 0
    assert "same: 4 conda and 0 pip packages compared (fields compared: version 4, build 4, " \
           "channel 4)" in out

    channel = read_package_set(prefix).conda["liba"].channel
    yml = tmp_path / "env.yml"
    yml.write_text("dependencies:\n  - liba>=0.5\n  - libb\n  - python=3.11\n")
    code, out, _ = run(capsys, "verify", "-p", prefix, "--against", yml)
    assert code == 0 and "same: 3 conda and 0 pip packages compared (fields compared: " \
                         "version 1)" in out  # python=3.11 is 3.11.*: 3.11.7 matches
    assert "1 others in the env were not checked" in out
    yml.write_text(f"dependencies:\n  - {channel}::liba=1.0=0\n  - elsewhere::libb=1.0=0\n")
    code, out, _ = run(capsys, "verify", "-p", prefix, "--against", yml)
    assert code == 1
    assert f"~ libb: channel differ: expected libb 1.0 0 (elsewhere), found libb 1.0 0 " \
           f"({channel})" in out
    assert "~ liba" not in out and "missing" not in out, out
