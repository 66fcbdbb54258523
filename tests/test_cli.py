"""The command line: every verb's --help, --json output, and bad input as a clear one-line error
with a non-zero exit and nothing written."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conda_safeguard.__main__ import main
from conda_safeguard.cli import build_parser
from conda_safeguard.snapshot import capture, new_info
from conda_safeguard.store import Store, default_store_path
from tests.factory import add_pip_package, install_env, set_env_vars
from tests.test_store import tree


@pytest.fixture(autouse=True)
def root(monkeypatch: pytest.MonkeyPatch, conda_root: Path) -> Path:
    monkeypatch.setenv("CONDA_SAFEGUARD_ROOT", str(conda_root))
    return conda_root


@pytest.fixture
def store_root() -> Path:
    return Path(os.environ["CONDA_SAFEGUARD_HOME"])


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    return out


def assert_one_line_error(code: int, out: str, err: str, *fragments: str,
                          exit_code: int = 1) -> None:
    """One line on stderr, nothing on stdout, exit 1 (2 for a usage error)."""
    assert code == exit_code, (code, out, err)
    assert out == ""
    assert err.startswith("conda-safeguard: error: ") and err.endswith("\n")
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


# --------------------------------------------------------------------------- help and json


def _verbs() -> list[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(sub.choices)


def test_every_verb_has_help(capsys) -> None:
    """Each verb's --help exits 0 with an empty stderr."""
    verbs = _verbs()
    assert {"backup", "list", "show", "diff", "check", "prune"} <= set(verbs)
    for verb in verbs:
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        out, err = capsys.readouterr()
        assert (e.value.code, err) == (0, ""), verb
        assert out.startswith(f"usage: conda-safeguard {verb}"), verb


def test_help_in_a_real_process() -> None:
    """Importing every verb module prints nothing (no warnings) in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-m", "conda_safeguard", "--help"],
                          capture_output=True, text=True)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert all(verb in proc.stdout for verb in _verbs())


def test_no_verb_prints_help(capsys) -> None:
    code, out, _ = run(capsys)
    assert code == 2 and "COMMAND" in out


def test_json_output_parses(make_env, channel, pkg_cache, capsys) -> None:
    prefix = make_env("js", pip=["plain==1.0"])
    first = json.loads(ok(capsys, "backup", "-n", "js", "--json"))
    (snap,) = first["snapshots"]
    assert snap["created"] and snap["env"] == "js" and snap["bytes_added"] > 0
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    second = json.loads(ok(capsys, "backup", "-n", "js", "--json"))["snapshots"][0]

    listed = json.loads(ok(capsys, "list", "--json"))
    assert [s["id"] for s in listed] == [second["id"], snap["id"]]
    assert listed[0]["exists"] is True and isinstance(listed[0]["offline_restorable"], bool)
    assert json.loads(ok(capsys, "list", "js", "--json")) == listed

    shown = json.loads(ok(capsys, "show", "js@-1", "--json"))
    assert shown["snapshot"]["id"] == snap["id"]
    assert {p["name"]: p["version"] for p in shown["packages"]}["liba"] == "1.0"
    assert [d["name"] for d in shown["pip"]] == ["plain"]

    code, out, _ = run(capsys, "diff", "js@-1", "js", "--json")  # exit 1: they differ
    diff = json.loads(out)
    assert code == 1 and diff["same"] is False
    assert diff["counts"] == {"added": 0, "removed": 0, "changed": 1}
    assert [(c["name"], c["status"]) for c in diff["changes"]] == [("liba", "changed")]

    check = json.loads(ok(capsys, "check", "--json"))
    assert check["ok"] is True and check["snapshots"] == 2

    pruned = json.loads(ok(capsys, "prune", "--keep-last", "1", "--keep-daily", "0",
                           "--keep-weekly", "0", "--dry-run", "--json"))
    assert pruned["dry_run"] is True and pruned["forgotten"] == [snap["id"]]


# --------------------------------------------------------------------------- the story


def test_diff_reports_exactly_the_changed_packages(make_env, channel, pkg_cache, capsys) -> None:
    prefix = make_env("story", pip=["plain==1.0"])
    ok(capsys, "backup", "-n", "story")
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    ok(capsys, "backup", "-n", "story")
    code, out, _ = run(capsys, "diff", "story@-1", "story@latest")
    lines = out.splitlines()
    assert code == 1 and lines[0].startswith("story snapshot ") and len(lines) == 2
    assert lines[1] == f"  ~ liba  1.0 0 ({channel.url}) -> 2.0 0 ({channel.url})"

    add_pip_package(prefix, "plain", "2.0")
    set_env_vars(prefix, {"MODE": "x"})
    code, out, _ = run(capsys, "diff", "story")  # the latest snapshot vs the env now
    assert code == 1
    assert out.splitlines()[1:] == ["  ~ plain (pip)  plain==1.0 -> plain==2.0", "  ~ env var MODE"]
    assert ok(capsys, "diff", "story@-1", "story@-1").splitlines()[1] == (
        "  no differences (3 conda and 1 pip packages compared, and env vars)")


def test_list_and_show_to_file(make_env, capsys, tmp_path) -> None:
    prefix = make_env("lst", ["liba=1.0"])
    ok(capsys, "backup", "-n", "lst", "--reason", "before-update")
    out = ok(capsys, "list")
    assert out.splitlines()[0] == f"lst  ({prefix})"
    assert "@-0" in out and "before-update" in out and "first snapshot" in out
    target = tmp_path / "env.yml"
    code, out, err = run(capsys, "show", "lst", "-o", str(target))
    assert code == 0 and out == "" and "wrote" in err
    assert target.read_text().startswith("name: lst\n")
    code, out, err = run(capsys, "show", "lst", "-o", str(target))
    assert_one_line_error(code, out, err, "Refusing to overwrite", "--force")
    assert ok(capsys, "show", "lst", "-o", str(target), "--force", "-q") == ""


def test_list_marks_removed_envs(make_env, capsys) -> None:
    import shutil

    prefix = make_env("bye", ["liba=1.0"])
    ok(capsys, "backup", "-n", "bye")
    shutil.rmtree(prefix)
    assert "[env removed]" in ok(capsys, "list")
    assert ok(capsys, "show", "bye").startswith("name: bye\n")  # still there to restore from


def test_check_exit_status(make_env, capsys, store_root: Path) -> None:
    make_env("chk", ["liba=1.0"])
    ok(capsys, "backup", "-n", "chk")
    (store_root / "snapshots" / ".tmp-x.json.1.2").write_text("{")
    out = ok(capsys, "check")
    assert "ok" in out.splitlines()[0] and "leftover temp file (harmless)" in out
    victim = next(p for p in (store_root / "objects").rglob("*") if p.is_file())
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    code, out, err = run(capsys, "check")
    assert code == 1 and "PROBLEMS FOUND" in out and f"corrupt: {victim.name}" in out


def test_prune_cli(make_env, capsys) -> None:
    prefix = make_env("pr", ["liba=1.0"])
    for i in range(3):
        set_env_vars(prefix, {"I": str(i)})
        ok(capsys, "backup", "-n", "pr")
    out = ok(capsys, "prune", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0",
             "--dry-run")
    assert out.startswith("would forget 2 snapshots, kept 1")
    assert len(json.loads(ok(capsys, "list", "--json"))) == 3
    out = ok(capsys, "prune", "pr", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0")
    assert out.startswith("forgot 2 snapshots, kept 1")
    assert len(json.loads(ok(capsys, "list", "--json"))) == 1
    code, out, err = run(capsys, "prune", "--keep-last", "-1")
    assert_one_line_error(code, out, err, "--keep-last must be 0 or more", exit_code=2)


def test_prune_a_removed_env_by_name(make_env, capsys) -> None:
    import shutil

    prefix = make_env("old", ["liba=1.0"])
    ok(capsys, "backup", "-n", "old")
    shutil.rmtree(prefix)
    assert ok(capsys, "prune", "--keep-last", "0").startswith("forgot 0 snapshots, kept 1")
    assert ok(capsys, "prune", "old", "--keep-last", "0").startswith("forgot 1 snapshot, kept 0")
    assert json.loads(ok(capsys, "list", "--json")) == []


# --------------------------------------------------------------------------- bad input


@pytest.fixture
def populated(make_env, capsys, store_root: Path) -> Path:
    """A store holding one snapshot (of env `good`)."""
    make_env("good", ["liba=1.0"])
    ok(capsys, "backup", "-n", "good")
    return store_root


@pytest.mark.parametrize(("argv", "fragments", "code"), [
    (["backup", "-n", "ghost"], ["No conda environment named 'ghost'", "searched:"], 1),
    (["backup", "-p", "{tmp}/nowhere"], ["No conda environment at {tmp}/nowhere"], 1),
    (["backup", "-p", "{tmp}"], ["is not a conda environment", "-p"], 1),
    (["backup", "-n", "good", "-p", "{tmp}"], None, 2),  # argparse: usage error, exit 2
    (["backup", "--all", "-n", "good"], ["Give --all or an env"], 2),
    (["show", "0000deadbeef"], ["No snapshot matches '0000deadbeef'", "conda-safeguard list"], 1),
    (["show", "ghost@latest"], ["no snapshots of an env called 'ghost'"], 1),
    (["show", "good@-5"], ["good has 1 snapshot)"], 1),
    # diff: exit 2 for bad input (1 means "differs"), tested in test_fleet.py
    (["list", "ghost"], ["No snapshot matches 'ghost'"], 1),
    (["prune", "ghost"], ["No snapshot matches 'ghost'"], 1),
])
def test_bad_input_is_one_clear_line(populated: Path, capsys, tmp_path, argv, fragments,
                                     code) -> None:
    argv = [a.format(tmp=tmp_path) for a in argv]
    before = tree(populated)
    if fragments is None:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == code
    else:  # a usage error found after argparse exits 2 as well
        assert_one_line_error(*run(capsys, *argv), *[f.format(tmp=tmp_path) for f in fragments],
                              exit_code=code)
    assert tree(populated) == before


def test_missing_env_creates_no_store(capsys, store_root: Path, tmp_path: Path) -> None:
    assert_one_line_error(*run(capsys, "backup", "-n", "ghost"), "No conda environment")
    assert_one_line_error(*run(capsys, "backup", "-p", str(tmp_path / "gone")),
                          "No conda environment")
    assert_one_line_error(*run(capsys, "backup", "-p", str(tmp_path)), "not a conda environment")
    assert not store_root.exists()


def test_corrupt_record(make_env, populated: Path, capsys) -> None:
    prefix = make_env("broken", ["liba=1.0"])
    (prefix / "conda-meta" / "liba-1.0-0.json").write_text('{"name": "liba"')
    before = tree(populated)
    assert_one_line_error(*run(capsys, "backup", "-n", "broken"),
                          "liba-1.0-0.json: not a valid conda-meta record",
                          "Nothing was changed")
    assert tree(populated) == before


def test_garbage_history_works(make_env, capsys) -> None:
    prefix = make_env("junk", ["liba=1.0"])
    with open(prefix / "conda-meta" / "history", "a") as f:
        f.write("complete garbage\n==> also garbage\n# install specs: [\n+\n-\n")
    assert "junk: snapshot" in ok(capsys, "backup", "-n", "junk")
    assert "liba=1.0=0" in ok(capsys, "show", "junk")


def test_ambiguous_id_prefix(make_env, populated: Path, capsys) -> None:
    """Two real snapshots whose ids share their first 4 hex digits: found by trying."""
    prefix = make_env("amb", ["liba=1.0"])
    state = capture(prefix)
    store = Store.open(populated)
    objects, _ = store.put_state(state)
    seen = {}
    for i in range(100_000):
        info = new_info(env_name="amb", prefix=prefix, state=state, reason=f"try {i}", argv=[],
                        channels=[], objects=objects, parent=None, parent_state=None)
        other = seen.setdefault(info.id[:4], info)
        if other.id != info.id:
            break
    store.write_manifest(other)
    store.write_manifest(info)
    before = tree(populated)
    common = os.path.commonprefix([other.id, info.id])
    assert_one_line_error(*run(capsys, "show", common), f"Snapshot id '{common}' is ambiguous",
                          "matches 2 snapshots", other.short_id, info.short_id, "more characters")
    assert ok(capsys, "show", info.id[: len(common) + 1]).startswith("name: amb\n")
    assert tree(populated) == before


@pytest.mark.parametrize("verb", [["backup", "-n", "good"], ["backup", "--all"], ["list"],
                                  ["show", "good"], ["check"], ["prune"]])
def test_store_of_a_newer_format(populated: Path, capsys, verb) -> None:
    config = populated / "config"
    config.write_text(json.dumps({"format": 99}))
    before = tree(populated)
    assert_one_line_error(*run(capsys, *verb), "has format 99", "Nothing was written",
                          "Upgrade conda-safeguard")
    assert tree(populated) == before


@pytest.mark.parametrize("verb", [["backup", "-n", "good"], ["backup", "--all"], ["list"],
                                  ["show", "good"], ["check"], ["prune"]])
def test_unreadable_store(make_env, capsys, tmp_path, monkeypatch, verb) -> None:
    make_env("good", ["liba=1.0"])
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CONDA_SAFEGUARD_HOME", str(blocker / "store"))
    assert_one_line_error(*run(capsys, *verb), f"Cannot read the store at {blocker}/store")
    assert blocker.read_text() == ""


def test_store_without_permission(populated: Path) -> None:
    from tests.restoring_helpers import unprivileged

    populated.chmod(0)
    try:  # in a process file permissions apply to, also as root
        proc = unprivileged([sys.executable, "-m", "conda_safeguard", "list"],
                            env=dict(os.environ))
    finally:
        populated.chmod(0o700)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "permission denied")


def test_errors_under_json_are_json_too(capsys) -> None:
    code, out, err = run(capsys, "backup", "-n", "ghost", "--json")
    assert code == 1 and err.count("\n") == 1
    data = json.loads(out)
    assert data["error"] == "EnvNotFoundError" and data["exit_code"] == 1


def test_errors_from_a_real_process(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "conda_safeguard", "backup", "-p",
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == (f"conda-safeguard: error: {tmp_path} is not a conda environment (it "
                           "has no conda-meta/ folder). Pass the env's prefix with -p, or its "
                           "name with -n.\n")


# --------------------------------------------------------------------------- isolation


def test_tests_never_touch_the_real_store(make_env, capsys, tmp_path, real_user_data_dir) -> None:
    """The autouse fixture sends every store write under tmp_path; the user's real data dir is
    neither created nor modified (pre-commit's test_our_session_fixture_works)."""
    existed = real_user_data_dir.exists()
    before = tree(real_user_data_dir) if existed else None
    assert default_store_path() == tmp_path / "store"
    make_env("iso", ["liba=1.0"])
    out = json.loads(ok(capsys, "backup", "-n", "iso", "--json"))
    sid = out["snapshots"][0]["id"]
    assert (tmp_path / "store" / "snapshots" / f"{sid}.json").is_file()
    assert not str(real_user_data_dir).startswith(str(tmp_path))
    assert real_user_data_dir.exists() == existed
    if existed:
        assert tree(real_user_data_dir) == before


def test_list_and_prune_take_n_and_p_like_the_other_verbs(tmp_path, monkeypatch, conda_root,
                                                          channel, capsys) -> None:
    from tests.restoring_helpers import make_world

    w = make_world(tmp_path, monkeypatch, conda_root, channel, capsys)
    prefix = w.env("lp")
    w.env("other")
    w.run("backup", "--all")
    by_word = json.loads(w.run("list", "lp", "--json").out)
    assert len(by_word) == 1 and by_word[0]["prefix"] == str(prefix)
    assert json.loads(w.run("list", "-n", "lp", "--json").out) == by_word
    assert json.loads(w.run("list", "-p", prefix, "--json").out) == by_word
    r = w.run("list", "lp", "-n", "other")
    assert r.code == 2 and "Name the env once" in r.err
    w.env("lp", ["liba=2.0"])
    w.run("backup", "-n", "lp")
    every = json.loads(w.run("list", "--json").out)
    plans = [w.run("prune", *how, "--keep-last", "1", "--dry-run", "--json")
             for how in (["lp"], ["-n", "lp"], ["-p", prefix])]
    assert all(r.code == 0 for r in plans) and plans[0].out == plans[1].out == plans[2].out
    assert json.loads(plans[0].out)["forgotten"]  # the older snapshot of lp
    assert json.loads(w.run("list", "--json").out) == every  # a dry run deletes nothing
