"""Restoring over an env changes only what differs (issue 9, speed): the packages the env has
exactly as the snapshot does are kept, each file checked first; a damaged one is installed
afresh; the old env's records are untrusted. Real envs (factory packages, py-rattler)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.factory import install_env, make_conda_package_cache
from tests.restoring_helpers import (
    World,
    channel_records,
    empty_cache,
    package_set,
    tree_hashes,
)


def inodes(prefix: Path) -> dict[str, int]:
    return {str(p.relative_to(prefix)): p.stat().st_ino for p in prefix.rglob("*")
            if p.is_file() and not p.is_symlink() and p.parent.name != "conda-meta"}


def record_of(prefix: Path, name: str) -> Path:
    (found,) = [p for p in (prefix / "conda-meta").glob(f"{name}-*.json")]
    return found


def test_undo_of_one_package_keeps_the_others_as_they_are(world: World) -> None:
    prefix = world.env("one")
    (prefix / "notes.txt").write_text("mine\n")
    world.run("backup", "-n", "one")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    before = inodes(prefix)
    r = world.run("undo", "-n", "one", "--yes")
    assert r.code == 0, r.out + r.err
    assert package_set(prefix)["liba"][0] == "1.0"
    assert "kept 3 unchanged packages (5 files, checked)" in r.out, r.out
    assert "byte-identical" in r.out
    after = inodes(prefix)
    untouched = [f for f in after if not f.startswith("lib/liba")]
    assert untouched and all(after[f] == before[f] for f in untouched if f in before)
    assert sorted(p.name for p in (prefix / "conda-meta").glob("liba-*.json")) == \
        ["liba-1.0-0.json"]
    assert (prefix / "notes.txt").read_text() == "mine\n"


def test_the_plan_says_which_packages_are_kept(world: World) -> None:
    prefix = world.env("plan")
    world.run("backup", "-n", "plan")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    r = world.run("undo", "-n", "plan", "--dry-run", "--json")
    plan = json.loads(r.out)["plan"]
    sources = {p["name"]: p["source"] for p in plan["packages"]}
    assert sources["liba"] != "kept" and sources["tool"] == "kept"
    assert plan["reuse"] == ["libb", "python", "tool"]


def test_a_damaged_file_in_a_kept_package_is_installed_afresh(world: World) -> None:
    prefix = world.env("dmg")
    world.run("backup", "-n", "dmg")
    good = tree_hashes(prefix)
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    readme = prefix / "share" / "tool" / "README"
    readme.unlink()  # a new file: the cache's hardlink stays as it was
    readme.write_text("tool 6.6\n")  # same size, other bytes
    r = world.run("undo", "-n", "dmg", "--yes")
    assert r.code == 0, r.out + r.err
    assert "tool: share/tool/README differs from its recorded sha256" in r.out
    assert readme.read_text() == "tool 0.1\n" and tree_hashes(prefix) == good
    assert "byte-identical" in r.out


def test_rebuild_installs_every_package_afresh(world: World) -> None:
    prefix = world.env("re")
    world.run("backup", "-n", "re")
    before = inodes(prefix)
    plan = json.loads(world.run("restore", "re", "--rebuild", "--dry-run", "--json").out)["plan"]
    assert plan["reuse"] == [] and "kept" not in {p["source"] for p in plan["packages"]}
    r = world.run("restore", "re", "--yes", "--rebuild")
    assert r.code == 0, r.out + r.err
    assert "unchanged packages" not in r.out and "byte-identical" in r.out
    assert inodes(prefix).keys() == before.keys()


def test_a_record_naming_a_path_outside_the_env_is_not_followed(
        world: World, tmp_path: Path) -> None:
    prefix = world.env("evil")
    world.run("backup", "-n", "evil")
    outside = tmp_path / "outside.txt"
    outside.write_text("not the env's\n")
    rel = os.path.relpath(outside, prefix)  # ../../...
    path = record_of(prefix, "tool")
    data = json.loads(path.read_text())
    data["files"].append(rel)
    data["paths_data"]["paths"].append({"_path": rel, "path_type": "hardlink",
                                        "sha256": "0" * 64, "size_in_bytes": 14})
    path.write_text(json.dumps(data))  # the record no longer matches the snapshot's? it does:
    r = world.run("restore", "evil", "--yes")  # name/version/build/hash are unchanged
    assert r.code == 0, r.out + r.err
    assert "tool: its record names a path outside the env" in r.out
    assert outside.read_text() == "not the env's\n"
    assert rel not in json.loads(record_of(prefix, "tool").read_text())["files"]


def test_a_folder_symlinked_out_of_the_env_is_not_followed(world: World, tmp_path: Path) -> None:
    prefix = world.env("link")
    world.run("backup", "-n", "link")
    away = tmp_path / "away"
    (prefix / "share" / "tool").rename(away)  # share/tool now lives outside, behind a link
    (prefix / "share" / "tool").symlink_to(away)
    r = world.run("restore", "link", "--yes")
    assert r.code == 0, r.out + r.err
    assert "tool: share/tool/README is reached through a symlink that leaves the env" in r.out
    assert not (prefix / "share" / "tool").is_symlink()
    assert (prefix / "share" / "tool" / "README").read_text() == "tool 0.1\n"
    assert (away / "README").read_text() == "tool 0.1\n"  # left alone


def test_a_damaged_kept_package_with_no_package_file_is_refused(world: World) -> None:
    prefix = world.env("gone")
    world.run("backup", "-n", "gone")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    readme = prefix / "share" / "tool" / "README"
    readme.unlink()
    readme.write_text("tool 6.6\n")
    empty_cache(world.pkgs)
    shutil.rmtree(world.channel.path)  # the channel gone too (a copy made for this test)
    pins = [p for p in (world.store / "packages").rglob("*") if p.is_file()]
    assert pins
    for p in pins:  # no pins either
        p.unlink()
    state = tree_hashes(prefix, skip_meta_json=False)
    r = world.run("undo", "-n", "gone", "--yes", "--offline")
    assert r.code == 1, r.out + r.err
    assert "could not be kept as they are" in r.err and "tool-0.1-0" in r.err, r.err
    assert tree_hashes(prefix, skip_meta_json=False) == state


def test_undo_of_a_python_minor_upgrade_does_not_keep_noarch_python_packages(
        world: World) -> None:
    # python 3.11 -> 3.12 relinks nap into lib/python3.12/site-packages: kept as it is, nap
    # would sit where the restored python 3.11 never looks
    ch = world.channel
    ch.add("python", "3.12.1", files={"lib/python3.12/site-packages/.keep": b""})
    ch.add("nap", "1.0", noarch="python", depends=["python"],
           files={"site-packages/nap/__init__.py": b"V = 1\n"})
    ch.index()
    make_conda_package_cache(world.pkgs, ch, [r for r in channel_records(ch)
                                              if r["name"] in ("nap", "python")])
    prefix = world.env("py", ["python=3.11", "liba=1.0", "nap"])
    world.run("backup", "-n", "py")
    install_env(prefix, ch, ["python=3.12", "liba=1.0", "nap"], cache_dir=world.pkgs)
    assert (prefix / "lib/python3.12/site-packages/nap/__init__.py").is_file()
    r = world.run("undo", "-n", "py", "--yes")
    assert r.code == 0, r.out + r.err
    assert "kept 1 unchanged package " in r.out, r.out  # liba; not nap
    assert (prefix / "lib/python3.11/site-packages/nap/__init__.py").is_file()
    assert not (prefix / "lib/python3.12").exists()


def test_a_package_changed_after_the_plan_was_made_is_not_kept(world: World) -> None:
    # the plan is made, the user answers the prompt later: conda changed libc meanwhile
    from conda_safeguard.restore import apply_restore, plan_restore
    from conda_safeguard.store import Store

    prefix = world.env("late", ["python", "liba=1.0", "libb", "libc=1.0"])
    world.run("backup", "-n", "late")
    install_env(prefix, world.channel, ["python", "liba=2.0", "libb", "libc=1.0"],
                cache_dir=world.pkgs)
    store = Store.open(world.store, create=False)
    (info,) = store.snapshots_of(prefix)
    plan = plan_restore(store, info, prefix, offline=True, pkgs_dirs=[world.pkgs])
    assert "libc" in plan.reuse
    install_env(prefix, world.channel, ["python", "liba=2.0", "libb", "libc=1.1"],
                cache_dir=world.pkgs)
    result = apply_restore(plan, store=store)
    assert result.ok and not result.rolled_back, result.report.details()
    assert "libc: it is no longer the snapshot's build" in result.reused.rejected
    assert package_set(prefix)["libc"][0] == "1.0"


def test_verify_reads_again_a_file_replaced_after_it_was_checked(world: World) -> None:
    from conda_safeguard.verify import stamp, verify

    prefix = world.env("stamp")
    readme = prefix / "share" / "tool" / "README"
    checked = {"share/tool/README": stamp(os.lstat(readme))}
    assert verify(prefix, checked=checked).files_checked == 6  # counted, not read again
    readme.unlink()
    readme.write_text("tool 6.6\n")  # another inode: the earlier check says nothing about it
    report = verify(prefix, checked=checked)
    assert report.bad_files == ["tool: share/tool/README: sha256 differs"]


def test_a_file_edited_in_place_through_the_cache_hardlink_is_refused_with_the_way_out(
        world: World) -> None:
    # an editor that keeps hardlinks (vim's backupcopy=auto) changes conda's cache copy too:
    # installed afresh from there, the package would come back edited
    prefix = world.env("vim")
    world.run("backup", "-n", "vim")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    readme = prefix / "share" / "tool" / "README"
    cached = world.pkgs / "tool-0.1-0"
    assert os.path.samefile(readme, cached / "share" / "tool" / "README")
    with open(readme, "r+b") as f:
        f.write(b"TOOL")
    state = tree_hashes(prefix, skip_meta_json=False)
    r = world.run("undo", "-n", "vim", "--yes")
    assert r.code == 1, r.out + r.err
    assert "edited in place" in r.err and f"Delete {cached} " in r.err, r.err
    assert tree_hashes(prefix, skip_meta_json=False) == state
    shutil.rmtree(cached)  # as told: the package file is unpacked again
    r = world.run("undo", "-n", "vim", "--yes")
    assert r.code == 0 and "byte-identical" in r.out, r.out + r.err
    assert readme.read_text() == "tool 0.1\n"


def test_a_file_reached_through_a_symlinked_folder_inside_the_env_is_installed_afresh(
        world: World) -> None:
    # lib64 -> lib: seeded as it is, the folder would become a real one (symlinks are made
    # last), the env would change shape
    prefix = world.env("inner")
    world.run("backup", "-n", "inner")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    (prefix / "share" / "tool").rename(prefix / "share" / "tool-real")
    (prefix / "share" / "tool").symlink_to("tool-real")
    r = world.run("undo", "-n", "inner", "--yes")
    assert r.code == 0, r.out + r.err
    assert "tool: share/tool/README is reached through a symlinked folder in the env" in r.out
    assert (prefix / "share" / "tool" / "README").read_text() == "tool 0.1\n"
