"""Every file of the store is untrusted input: damaged or crafted manifests, caches, objects and
configs are reported or ignored, never used (issue 11, items 1-3, 8, 9)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conda_safeguard.backup import backup, stat_key
from conda_safeguard.exceptions import CorruptObjectError, SnapshotNotFoundError, StoreError
from conda_safeguard.retention import RetentionPolicy, prune
from conda_safeguard.snapshot import manifest_id
from conda_safeguard.store import Store, prefix_key
from conda_safeguard.storecheck import check_store
from tests.conftest import cli_output
from tests.factory import set_env_vars
from tests.test_cli import assert_one_line_error, run


def backdate(prefix: Path) -> None:
    """Make the env's files old enough for the unchanged fast path (it skips racy mtimes)."""
    old = time.time() - 60
    for p in [prefix / "conda-meta", *(prefix / "conda-meta").iterdir(),
              *prefix.glob("lib/python*/site-packages")]:
        os.utime(p, (old, old))


@pytest.fixture
def store() -> Store:
    """The store the command line uses too (CONDA_SAFEGUARD_HOME)."""
    return Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]))


def _manifest(store: Store, sid: str) -> Path:
    return store.root / "snapshots" / f"{sid}.json"


def _rewrite(path: Path, **changes: object) -> dict:
    d = json.loads(path.read_bytes())
    d.update(changes)
    path.write_text(json.dumps(d))
    return d


# --------------------------------------------------------------------------- manifests


def test_an_edited_manifest_is_detected_everywhere(make_env, store, standalone_root, capsys
                                                   ) -> None:
    prefix = make_env("edit")
    first = backup(store, prefix, env_name="edit").snapshot
    set_env_vars(prefix, {"X": "1"})
    newest = backup(store, prefix, env_name="edit").snapshot
    _rewrite(_manifest(store, newest.id), prefix="/somewhere/else")
    # the edited one is left out: not silently restored to /somewhere/else
    assert [s.id for s in store.snapshots()] == [first.id]
    report = check_store(store)
    assert not report.ok and report.unreadable == [f"{newest.id}.json"]
    assert "do not match its id" in report.why[f"{newest.id}.json"]
    code, out, _ = run(capsys, "check")
    assert code == 1 and f"damaged manifest: snapshots/{newest.id}.json" in out
    # list says so instead of passing the previous snapshot off as the newest
    code, out, err = run(capsys, "list")
    assert code == 0 and "1 damaged snapshot manifest" in err and newest.id in err


def test_a_recomputed_id_still_cannot_name_paths(make_env, store: Store) -> None:
    """Someone who rewrites a manifest and its id still cannot make us read outside objects/."""
    snap = backup(store, make_env("craft"), env_name="craft").snapshot
    path = _manifest(store, snap.id)
    d = json.loads(path.read_bytes())
    d["objects"]["pip"] = "../../../../etc/passwd"
    d["id"] = manifest_id(d)
    path.unlink()
    _manifest(store, d["id"]).write_text(json.dumps(d))
    assert store.snapshots() == []
    assert "not object ids" in check_store(store).why[f"{d['id']}.json"]
    with pytest.raises(CorruptObjectError, match="not an object id"):
        store.get_object("../../../../etc/passwd")
    with pytest.raises(SnapshotNotFoundError):
        store.get("../config")


def test_manifests_missing_fields_or_wrong_types(make_env, store: Store) -> None:
    snap = backup(store, make_env("types"), env_name="types").snapshot
    path = _manifest(store, snap.id)
    good = path.read_bytes()
    for change in ({"counts": []}, {"argv": "x"}, {"created": "yesterday"}, {"pins": ["x"]}):
        d = {**json.loads(good), **change}
        d["id"] = snap.id = manifest_id(d)
        path.unlink(missing_ok=True)
        path = _manifest(store, d["id"])
        path.write_text(json.dumps(d))
        assert store.snapshots() == [], change
        assert len(check_store(store).unreadable) == 1


# --------------------------------------------------------------------------- caches


def test_a_damaged_records_cache_costs_a_reread_not_a_wrong_snapshot(make_env, store: Store
                                                                      ) -> None:
    prefix = make_env("rc")
    backdate(prefix)  # records with racy mtimes are not cached
    backup(store, prefix, env_name="rc")
    cache = store.root / "cache" / f"records-{prefix_key(prefix)}.json"
    raw = cache.read_bytes()
    assert b"liba" in raw
    cache.write_bytes(raw.replace(b'"1.0"', b'"9.9"', 1))
    set_env_vars(prefix, {"CHANGED": "1"})
    snap = backup(store, prefix, env_name="rc").snapshot
    versions = {r.name: r.version for r in store.load_state(snap).packages}
    assert versions["liba"] == "1.0"
    assert json.loads(cache.read_bytes())["sha256"]  # rewritten, sealed


def test_a_cache_naming_a_path_as_snapshot_is_ignored(make_env, store: Store) -> None:
    prefix = make_env("cp")
    backdate(prefix)
    first = backup(store, prefix, env_name="cp").snapshot
    name = f"env-{prefix_key(prefix)}.json"
    data = store.read_cache(name)
    assert data["stat_key"] == stat_key(prefix)
    store.write_cache(name, {**data, "snapshot": "../config"})  # even with a valid checksum
    result = backup(store, prefix, env_name="cp")
    assert not result.created and result.snapshot.id == first.id


# --------------------------------------------------------------------------- objects


def test_a_damaged_object_is_not_reused_by_dedup_or_the_fast_path(make_env, store: Store
                                                                   ) -> None:
    a = make_env("rot-a")
    backdate(a)
    snap = backup(store, a, env_name="rot-a").snapshot
    oid = snap.objects["packages"]
    obj = store.root / "objects" / oid[:2] / oid
    obj.write_bytes(obj.read_bytes()[:-3] + b"xyz")
    assert not store.object_intact(oid)
    # the fast path (cached stat key) notices, re-reads the env and rewrites the object
    again = backup(store, a, env_name="rot-a")
    assert not again.created and store.object_intact(oid)
    store.load_state(again.snapshot)
    # dedup: another env with the same packages gets an intact object, never the rotten one
    obj.write_bytes(b"rotten")
    b = make_env("rot-b")
    other = backup(store, b, env_name="rot-b").snapshot
    assert other.objects["packages"] == oid and store.object_intact(oid)
    assert check_store(store).ok


def test_stray_files_in_objects_are_reported_not_used_or_deleted(make_env, store: Store,
                                                                 standalone_root, capsys) -> None:
    prefix = make_env("stray")
    snap = backup(store, prefix, env_name="stray").snapshot
    fan = store.root / "objects" / snap.objects["env"][:2]
    (fan / "notes.txt").write_text("mine")
    (fan / ("0" * 64)).write_text("misplaced: wrong fan-out folder")
    report = check_store(store)
    assert report.ok and sorted(report.stray) == sorted(
        [f"objects/{fan.name}/notes.txt", f"objects/{fan.name}/{'0' * 64}"])
    code, out, _ = run(capsys, "prune", "--keep-last", "1")
    assert code == 0, out
    assert (fan / "notes.txt").read_text() == "mine" and store.get(snap.id)


# --------------------------------------------------------------------------- config and pins


def test_a_missing_config_is_damage_not_emptiness(make_env, store: Store, standalone_root,
                                                  capsys) -> None:
    prefix = make_env("cfg")
    backup(store, prefix, env_name="cfg")
    (store.root / "config").unlink()
    for verb in (["list"], ["backup", "-n", "cfg"], ["show", "cfg"]):
        assert_one_line_error(*run(capsys, *verb), "config file is missing",
                              "check --repair")
    assert not (store.root / "config").exists()  # backup did not silently recreate it
    code, out, _ = run(capsys, "check")
    assert code == 1 and "config: missing" in out and "1 snapshot:" in out
    code, out, _ = run(capsys, "check", "--repair")
    assert code == 0 and "repaired: config was missing" in out
    assert "cfg" in cli_output(capsys, "list")


def test_check_repairs_a_damaged_config_keeping_what_reads(store: Store, standalone_root,
                                                           capsys) -> None:
    config = store.root / "config"
    config.write_text(json.dumps({"format": "one", "created": "2020-01-01T00:00:00Z",
                                  "team": "ml"}))
    assert_one_line_error(*run(capsys, "list"), "is damaged", "check --repair")
    code, out, _ = run(capsys, "check")
    assert code == 1 and "config: damaged (format 'one')" in out
    assert run(capsys, "check", "--repair")[0] == 0
    fixed = json.loads(config.read_text())
    assert fixed["format"] == 1 and fixed["team"] == "ml"
    assert fixed["created"] == "2020-01-01T00:00:00Z"
    with pytest.raises(StoreError):  # a newer format is never "repaired" into an older one
        config.write_text('{"format": 99}')
        Store.open(store.root)


def test_check_reports_a_missing_pin(make_env, store: Store, standalone_root, capsys) -> None:
    prefix = make_env("pin")
    snap = backup(store, prefix, env_name="pin", pin=lambda s, st: ["e" * 64]).snapshot
    assert snap.pins == ["e" * 64]
    code, out, _ = run(capsys, "check")
    assert code == 1 and f"missing pin: package {'e' * 16} of snapshot {snap.short_id}" in out
    assert check_store(store).missing_pins == [(snap.id, "e" * 64)]


def test_prune_removes_temp_files_of_killed_runs(make_env, store: Store) -> None:
    backup(store, make_env("tmp"), env_name="tmp")
    leftovers = [store.root / "snapshots" / ".tmp-x.json.1.2", store.root / "cache" / ".tmp-c",
                 store.root / "packages" / ".tmp-p"]
    for p in leftovers:
        p.parent.mkdir(exist_ok=True)
        p.write_text("partial")
    assert len(check_store(store).leftovers) == 3
    report = prune(store, RetentionPolicy(5, 0, 0))
    assert report.temp_removed == 3 and not any(p.exists() for p in leftovers)
    assert check_store(store).leftovers == []


# --------------------------------------------------------------------------- a full disk


def test_pins_that_do_not_fit_degrade_to_a_snapshot_without_pins(make_env, store: Store
                                                                  ) -> None:
    import errno

    warnings: list[str] = []
    store.warn = warnings.append

    def full(store: Store, state) -> list[str]:
        raise OSError(errno.ENOSPC, "No space left on device", "/opt/conda/pkgs/liba.conda")

    result = backup(store, make_env("full"), env_name="full", pin=full)
    assert result.created and result.snapshot.pins == []
    assert store.get(result.snapshot.id) == result.snapshot  # the id covers the empty pins
    assert len(warnings) == 1 and "without package pins: No space left on device" in warnings[0]
    assert str(store.root / "packages") in warnings[0] and "/opt/conda/pkgs" not in warnings[0]


def test_a_copy_that_fails_half_way_leaves_no_temp_file(tmp_path: Path, monkeypatch) -> None:
    import errno
    import shutil

    from conda_safeguard import pins

    src = tmp_path / "src.conda"
    src.write_bytes(b"x" * 1000)
    dst_dir = tmp_path / "packages"
    dst_dir.mkdir()

    def half(a: Path, b: Path) -> None:
        Path(b).write_bytes(b"x" * 10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pins.os, "link", lambda *a: (_ for _ in ()).throw(OSError(errno.EXDEV,
                                                                                  "cross")))
    monkeypatch.setattr(shutil, "copyfile", half)
    with pytest.raises(OSError):
        pins.link_or_copy(src, dst_dir / "p.conda")
    assert list(dst_dir.iterdir()) == []
