"""restore / undo / verify on real envs (factory-built, installed by py-rattler)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from conda_safeguard import installers
from conda_safeguard.snapshot import new_info
from conda_safeguard.store import Store
from tests.factory import install_env, set_env_vars
from tests.restoring_helpers import (
    World,
    empty_cache,
    make_world,
    package_set,
    tree_hashes,
)


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if "safeguard" in p.name)


def test_restore_removed_env_by_its_old_name(world: World) -> None:
    prefix = world.env("e1")
    set_env_vars(prefix, {"FOO": "bar"})
    (prefix / "conda-meta" / "frozen").write_text('{"message": "hands off"}')
    assert world.run("backup", "-n", "e1").code == 0
    before_files, before_pkgs = tree_hashes(prefix), package_set(prefix)
    shutil.rmtree(prefix)

    r = world.run("restore", "e1", "--yes")
    assert r.code == 0, r.err + r.out
    assert "byte-identical" in r.out
    assert package_set(prefix) == before_pkgs
    # every file, history, env vars and the frozen marker included
    assert tree_hashes(prefix) == before_files
    assert "restoring conda-meta" in r.err  # progress on stderr
    assert leftovers(prefix.parent) == []


def test_restore_offline_after_cache_and_channel_are_gone(world: World) -> None:
    prefix = world.env("e2")
    world.run("backup", "-n", "e2")
    before = tree_hashes(prefix)
    empty_cache(world.pkgs)
    shutil.rmtree(world.channel.path)
    shutil.rmtree(prefix)

    r = world.run("restore", "e2", "--offline", "--yes", "--json")
    assert r.code == 0, r.err + r.out
    doc = r.json()
    assert {p["source"] for p in doc["plan"]["packages"]} == {"pin"}
    assert doc["plan"]["method"] == "explicit"
    assert doc["result"]["verdict"] == "byte-identical"
    assert r.err == ""  # --json: no progress
    assert tree_hashes(prefix) == before


def test_restore_into_a_new_name_leaves_the_original(world: World) -> None:
    prefix = world.env("orig")
    world.run("backup", "-n", "orig")
    before = tree_hashes(prefix)
    r = world.run("restore", "orig", "-n", "copy", "--yes")
    assert r.code == 0, r.err + r.out
    copy = world.prefix("copy")
    assert package_set(copy) == package_set(prefix)
    assert tree_hashes(copy) == before == tree_hashes(prefix)
    assert world.run("verify", "-n", "copy", "--against", "orig").code == 0


def test_dry_run_changes_nothing(world: World) -> None:
    prefix = world.env("dry")
    world.run("backup", "-n", "dry")
    snapshots = sorted(os.listdir(world.store / "snapshots"))
    shutil.rmtree(prefix)
    r = world.run("restore", "dry", "--dry-run")
    assert r.code == 0
    assert "dry run: nothing was changed" in r.out and "pin" in r.out
    assert not prefix.exists() and leftovers(prefix.parent) == []

    world.env("dry")  # over an existing env: no snapshot, no prompt, nothing replaced
    before = tree_hashes(prefix)
    r = world.run("restore", "dry", "--dry-run", "--json")
    assert r.json()["plan"]["replaces"] is True
    assert tree_hashes(prefix) == before
    assert sorted(os.listdir(world.store / "snapshots")) == snapshots


def test_undo_after_update_when_the_old_version_left_the_channel(world: World) -> None:
    prefix = world.env("u", ["python", "liba=1.0", "libb"])
    world.run("backup", "-n", "u")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    world.channel.remove("liba", "1.0")
    for p in world.pkgs.glob("liba-1.0-0*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    r = world.run("undo", "-n", "u", "--yes")
    assert r.code == 0, r.err + r.out
    assert package_set(prefix)["liba"][:2] == ("1.0", "0")
    assert "byte-identical" in r.out
    # the state before the undo was snapshotted: undo again brings 2.0 back
    r = world.run("undo", "-n", "u", "--yes")
    assert r.code == 0, r.err + r.out
    assert package_set(prefix)["liba"][:2] == ("2.0", "0")


def test_undo_with_nothing_to_undo(world: World) -> None:
    world.env("same")
    world.run("backup", "-n", "same")
    r = world.run("undo", "-n", "same", "--yes")
    assert r.code == 1 and "Nothing to undo" in r.err


# ---------------------------------------------------------------------------------------------
# bad input


def test_corrupt_pin_refuses_and_names_the_package(world: World) -> None:
    prefix = world.env("bad")
    world.run("backup", "-n", "bad")
    pin = next((world.store / "packages").glob("*.tar.bz2"))
    data = bytearray(pin.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pin.unlink()  # a hardlink: write a new file rather than damage the cache's copy too
    pin.write_bytes(bytes(data))
    empty_cache(world.pkgs)
    shutil.rmtree(world.channel.path)  # the package left the channel
    shutil.rmtree(prefix)
    r = world.run("restore", "bad", "--yes")
    assert r.code == 1
    damaged = [rec for rec in json.loads(world.run("show", "bad", "--format", "json").out)
               ["packages"] if pin.name.startswith(rec["sha256"])][0]
    assert f"{damaged['name']}-{damaged['version']}-{damaged['build']}" in r.err
    assert "--solve" in r.err and "damaged" in r.err
    assert not prefix.exists() and leftovers(prefix.parent) == []


def test_snapshot_from_another_platform_is_solved_without_builds(world: World) -> None:
    world.env("mac", ["python", "liba=1.0"])
    world.run("backup", "-n", "mac")
    store = Store.open(world.store)
    info = store.resolve("mac")
    state = store.load_state(info)
    state.platform = "osx-arm64"
    state.packages = [type(r)(**{**r.__dict__, "subdir": "osx-arm64"}) if r.name == "liba"
                      else r for r in state.packages]
    objects, _ = store.put_state(state)
    foreign = new_info(env_name="mac", prefix=Path(info.prefix), state=state, reason="import",
                       argv=[], channels=info.channels, objects=objects, parent=None,
                       parent_state=None)
    store.write_manifest(foreign)
    r = world.run("restore", foreign.id[:12], "-n", "mac2", "--yes")
    assert r.code in (0, 1), r.err
    assert "osx-arm64" in r.out and "no build strings" in r.out
    assert package_set(world.prefix("mac2"))["liba"][0] == "1.0"


def test_target_that_is_not_an_env_is_refused(world: World, tmp_path: Path) -> None:
    world.env("x")
    world.run("backup", "-n", "x")
    target = tmp_path / "notes"
    target.mkdir()
    (target / "thesis.txt").write_text("precious")
    r = world.run("restore", "x", "-p", target, "--yes")
    assert r.code == 1 and "not a conda environment" in r.err
    assert os.listdir(target) == ["thesis.txt"] and leftovers(tmp_path) == []


@pytest.mark.parametrize("in_place", [False, True], ids=["temp-prefix", "in-place"])
@pytest.mark.parametrize("replace", [False, True], ids=["new", "replace"])
def test_failure_midway_cleans_up(world: World, monkeypatch: pytest.MonkeyPatch,
                                  in_place: bool, replace: bool) -> None:
    prefix = world.env("mid")
    world.run("backup", "-n", "mid")
    before = tree_hashes(prefix, skip_meta_json=False)
    if not replace:
        shutil.rmtree(prefix)
    cache_before = tree_hashes(world.pkgs, skip_meta_json=False)

    def half_install(self, job):  # writes files, then the disk is full
        (job.build_prefix / "conda-meta").mkdir(parents=True, exist_ok=True)  # may be seeded
        (job.build_prefix / "share").mkdir(exist_ok=True)
        (job.build_prefix / "share" / "half.txt").write_text("x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(installers.Rattler, "install_explicit", half_install)
    monkeypatch.setattr(installers.Rattler, "in_place", in_place)
    r = world.run("restore", "mid", "--yes")
    assert r.code == 1
    assert "No space left on device" in r.err and "half-built env was removed" in r.err
    if replace:
        assert tree_hashes(prefix, skip_meta_json=False) == before
    else:
        assert not prefix.exists()
    assert leftovers(prefix.parent) == []
    assert tree_hashes(world.pkgs, skip_meta_json=False) == cache_before


def test_protected_env_with_yes_and_no_terminal_is_refused(
        tmp_path, monkeypatch, conda_root, channel, capsys) -> None:
    w = make_world(tmp_path, monkeypatch, conda_root, channel, capsys,
                   protect_by_default=True)
    prefix = w.env("prod")
    w.run("backup", "-n", "prod")
    install_env(prefix, w.channel, ["liba=2.0"], cache_dir=w.pkgs)
    before = tree_hashes(prefix, skip_meta_json=False)
    r = w.run("restore", "prod@-0", "--yes")  # the latest (pre-update) snapshot
    assert r.code == 4, r.err
    assert "protected" in r.err and "CONDA_SAFEGUARD_ALLOW=prod" in r.err
    assert tree_hashes(prefix, skip_meta_json=False) == before
    monkeypatch.setenv("CONDA_SAFEGUARD_ALLOW", "prod")
    r = w.run("undo", "-n", "prod", "--yes")
    assert r.code == 0, r.err
    assert package_set(prefix)["liba"][0] == "1.0"


@pytest.mark.parametrize("enabled", [True, False], ids=["guarded", "safeguard-disabled"])
def test_replacing_an_env_snapshots_it_first(tmp_path, monkeypatch, conda_root, channel, capsys,
                                             enabled: bool) -> None:
    w = make_world(tmp_path, monkeypatch, conda_root, channel, capsys, enabled=enabled)
    prefix = w.env("rep", ["python", "liba=1.0"])
    w.run("backup", "-n", "rep")
    install_env(prefix, w.channel, ["liba=2.0"], cache_dir=w.pkgs)
    r = w.run("restore", "rep", "--yes", "--json")
    assert r.code == 0, r.err
    doc = r.json()
    assert package_set(prefix)["liba"][0] == "1.0"
    store = Store.open(w.store)
    before = store.load_state(store.resolve(doc["snapshot_before"]))
    assert before.package_map()["liba"].version == "2.0"
    assert store.resolve("rep").id == store.resolve(doc["snapshot_after"]).id


def test_unprotected_env_needs_yes_without_a_terminal(world: World) -> None:
    prefix = world.env("plain")
    world.run("backup", "-n", "plain")
    r = world.run("restore", "plain")
    assert r.code == 4 and "--yes" in r.err
    assert package_set(prefix)


# ---------------------------------------------------------------------------------------------
# pip, verify


def test_verify_names_a_changed_file(world: World) -> None:
    prefix = world.env("v")
    assert world.run("verify", "-n", "v").code == 0
    (prefix / "share" / "liba" / "liba-1.0.txt").write_text("tampered\n")
    r = world.run("verify", "-n", "v", "--json")
    assert r.code == 1
    assert r.json()["bad_files"] == ["liba: share/liba/liba-1.0.txt: sha256 differs"]


def test_verify_counts_what_it_compared(world: World) -> None:
    world.env("n", ["python", "liba=1.0", "tool"])
    r = world.run("verify", "-n", "n")
    # python: .keep, liba: 1 file, tool: 3 files
    assert r.code == 0 and "byte-identical (3 packages, 5 files compared)" in r.out


def test_a_record_without_file_hashes_is_a_difference_not_a_pass(world: World) -> None:
    """What conda writes with CONDA_SAFETY_CHECKS=disabled: `"paths_data": {"paths": []}`."""
    prefix = world.env("u", ["liba=1.0", "tool"])
    rec = next((prefix / "conda-meta").glob("tool-*.json"))
    data = json.loads(rec.read_text())
    data["paths_data"] = {"paths": [], "paths_version": 1}
    rec.write_text(json.dumps(data))
    r = world.run("verify", "-n", "u")
    assert r.code == 1
    assert "1 package with files that have no recorded hash" in r.out
    assert "(2 packages, 1 file compared)" in r.out
    assert "tool: 3 of its 3 files have no recorded sha256" in r.out
    # one entry without its sha256 among hashed ones
    data["paths_data"] = {"paths": [{"_path": p, "path_type": "hardlink"} for p in data["files"]],
                          "paths_version": 1}
    rec.write_text(json.dumps(data))
    doc = world.run("verify", "-n", "u", "--json").json()
    assert doc["identical"] is False and doc["files_unhashed"] == 3
    assert doc["unhashed"][0].startswith("tool: 3 files with no recorded sha256")


def test_verify_sees_a_missing_symlink(tmp_path: Path) -> None:
    from conda_safeguard.verify import VerifyReport, check_files, hash_jobs

    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libx.so.1").write_bytes(b"x")
    os.symlink("libx.so.1", tmp_path / "lib" / "libx.so")
    record = {"files": ["lib/libx.so", "lib/libx.so.1"], "paths_data": {"paths": [
        {"_path": "lib/libx.so", "path_type": "softlink"},
        {"_path": "lib/libx.so.1", "path_type": "hardlink",
         "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}]}}
    report = VerifyReport(prefix=str(tmp_path))
    hash_jobs(tmp_path, check_files(tmp_path, "x", record, report), report)
    assert report.bad_files == [] and report.files_checked == 1 and report.unhashed == []
    (tmp_path / "lib" / "libx.so").unlink()
    report = VerifyReport(prefix=str(tmp_path))
    hash_jobs(tmp_path, check_files(tmp_path, "x", record, report), report)
    assert report.bad_files == ["x: lib/libx.so: missing (a symlink)"]


def _digests_of(folder: Path) -> Any:
    """SourceDigests of `folder`, its thread given the time to hash every file."""
    from conda_safeguard.verify import SourceDigests

    digests = SourceDigests()
    with digests.hashing([folder]):
        deadline = time.monotonic() + 30
        while len(digests.by_inode) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    return digests


def test_verify_uses_a_package_file_digest_only_for_that_unchanged_inode(tmp_path: Path) -> None:
    """restore hashes the package files conda links from while conda runs; an env file that is
    the same inode, unchanged since, is compared through that digest, anything else is read."""
    from conda_safeguard.verify import SourceDigests, VerifyReport, check_files, hash_jobs

    pkg, env = tmp_path / "pkgs" / "x-1-0", tmp_path / "env"
    for d in (pkg / "info", pkg / "lib", env / "lib"):
        d.mkdir(parents=True)
    (pkg / "info" / "index.json").write_text("{}")  # conda's metadata: not hashed
    (pkg / "lib" / "a.txt").write_bytes(b"x")
    (pkg / "lib" / "b.txt").write_bytes(b"x")
    for f in ("lib/a.txt", "lib/b.txt", "lib", ""):  # a package cache is old; anything newer
        os.utime(pkg / f, ns=(time.time_ns() - 10**10,) * 2)  # is not hashed ahead (racy)
    os.link(pkg / "lib" / "a.txt", env / "lib" / "a.txt")  # as conda links it
    shutil.copy(pkg / "lib" / "b.txt", env / "lib" / "b.txt")  # copied: another inode
    x = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"  # sha256 of b"x"
    record = {"files": ["lib/a.txt", "lib/b.txt"], "paths_data": {"paths": [
        {"_path": "lib/a.txt", "path_type": "hardlink", "sha256": x, "size_in_bytes": 1},
        {"_path": "lib/b.txt", "path_type": "hardlink", "sha256": x, "size_in_bytes": 1}]}}

    def check(digests: Any) -> VerifyReport:
        report = VerifyReport(prefix=str(env))
        report.bad_files += [f"{n}: {rel}: sha256 differs" for n, rel, _ in
                             hash_jobs(env, check_files(env, "x", record, report), report,
                                       digests)]
        return report

    digests = _digests_of(pkg)
    assert len(digests.by_inode) == 2
    report = check(digests)
    assert report.bad_files == [] and report.files_checked == 2
    assert digests.used == 1  # a.txt through the digest, b.txt (a copy) read

    with open(pkg / "lib" / "a.txt", "r+b") as f:  # edited in place after it was hashed
        f.write(b"y")
    report = check(digests)
    assert report.bad_files == ["x: lib/a.txt: sha256 differs"] and digests.used == 1

    os.utime(pkg / "lib" / "a.txt", ns=(time.time_ns() - 10**10,) * 2)
    digests = _digests_of(pkg)  # a cache file edited long ago: the digest itself tells
    report = check(digests)
    assert report.bad_files == ["x: lib/a.txt: sha256 differs"] and digests.used == 1

    (pkg / "lib" / "new.txt").write_bytes(b"x")  # written just now: another write could keep
    os.utime(pkg / "lib", ns=(time.time_ns() - 10**10,) * 2)  # its mtime: no digest
    fresh = SourceDigests()
    fresh._hash([pkg])
    assert (os.stat(pkg / "lib" / "new.txt").st_ino not in
            {ino for _, ino in fresh.by_inode}) and len(fresh.by_inode) == 2

    # a file of the folder deleted and another made after the hashing: inode numbers there
    # may have been reused, so no digest of that folder stands for anything
    digests = _digests_of(pkg)
    (pkg / "lib" / "new.txt").unlink()
    (pkg / "lib" / "other.txt").write_bytes(b"y")
    digests.settle()
    report = check(digests)
    assert report.bad_files == ["x: lib/a.txt: sha256 differs"] and digests.used == 0
    assert report.files_checked == 2
