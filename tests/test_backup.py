"""backup.py: an unchanged env adds nothing; any change the snapshot holds makes a new one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import conda_safeguard.backup as backup_mod
import conda_safeguard.snapshot as snapshot_mod
from conda_safeguard.backup import backup, channels_for, stat_key
from conda_safeguard.exceptions import (
    BackupError,
    CorruptEnvError,
    EnvNotFoundError,
    NotAnEnvError,
)
from conda_safeguard.snapshot import capture
from conda_safeguard.store import Store
from tests.factory import add_pip_package, install_env, set_env_vars
from tests.test_store import tree


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


def _age(prefix: Path, seconds: int = 3600) -> None:
    """Date every file a snapshot reads back by `seconds`, as an env nobody touched lately."""
    then = time.time_ns() - seconds * 1_000_000_000
    paths = [*(prefix / "conda-meta").iterdir(), *prefix.glob("lib/python*/site-packages")]
    for p in paths:
        os.utime(p, ns=(then, then))


def _no_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_mod, "capture",
                        lambda *a, **kw: pytest.fail("the fast path read the env"))


def test_unchanged_env_adds_nothing(make_env, store: Store) -> None:
    prefix = make_env("same", pip=["plain==1.0"])
    first = backup(store, prefix, env_name="same")
    assert first.created and first.bytes_added > 0
    before = tree(store.root / "objects"), tree(store.root / "snapshots")
    for _ in range(3):
        again = backup(store, prefix, env_name="same")
        assert not again.created and again.bytes_added == 0
        assert again.snapshot.id == first.snapshot.id
    assert (tree(store.root / "objects"), tree(store.root / "snapshots")) == before


def test_unchanged_old_env_takes_the_fast_path(make_env, store, monkeypatch) -> None:
    prefix = make_env("fast", pip=["plain==1.0"])
    _age(prefix)
    first = backup(store, prefix, env_name="fast")
    _no_capture(monkeypatch)
    again = backup(store, prefix, env_name="fast")
    assert not again.created and again.state is None and again.snapshot.id == first.snapshot.id


def test_one_package_change_adds_a_little(make_env, store, channel, pkg_cache) -> None:
    prefix = make_env("one")
    first = backup(store, prefix, env_name="one")
    objects_before = set(store.iter_object_ids())
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    second = backup(store, prefix, env_name="one")
    assert second.created and second.snapshot.parent == first.snapshot.id
    assert second.snapshot.change == {"added": 0, "removed": 0, "changed": 1}
    new_objects = set(store.iter_object_ids()) - objects_before
    # the package list, the history and the requested specs changed; pip did not
    objs = second.snapshot.objects
    assert new_objects == {objs["packages"], objs["history"], objs["env"]}
    assert objs["pip"] == first.snapshot.objects["pip"]
    assert 0 < second.bytes_added < 3000, second.bytes_added


@pytest.mark.parametrize("change", ["frozen", "env var", "pip", "history", "unset var"])
def test_every_part_of_the_state_counts(make_env, store, monkeypatch, change: str) -> None:
    """A change to anything the snapshot keeps makes a new snapshot, on the fast path too."""
    prefix = make_env("parts")
    set_env_vars(prefix, {"KEEP": "1", "GONE": "x"})
    _age(prefix)
    first = backup(store, prefix, env_name="parts")
    if change == "frozen":  # conda's CEP-22 marker; not part of the fingerprint
        (prefix / "conda-meta" / "frozen").write_text('{"message": "paper"}')
    elif change == "env var":
        set_env_vars(prefix, {"KEEP": "2"})
    elif change == "unset var":
        set_env_vars(prefix, {"GONE": "***unset***"})
    elif change == "pip":
        add_pip_package(prefix, "plain", "1.1")  # (one pip run: pip is slow to start)
    else:
        with open(prefix / "conda-meta" / "history", "a") as f:
            f.write("==> 2026-11-23 10:00:00 <==\n# cmd: conda install liba\n"
                    "# update specs: ['liba']\n")
    second = backup(store, prefix, env_name="parts")
    assert second.created and second.snapshot.id != first.snapshot.id
    state = store.load_state(second.snapshot)
    if change == "frozen":
        assert state.frozen == "paper"
    if change == "unset var":
        assert state.variables == {"KEEP": "1"}
    if change == "history":
        assert state.requested["liba"] == "liba"


def test_racy_change_within_one_timestamp_tick(make_env, store: Store) -> None:
    """A change that keeps a file's size and lands in the same mtime tick as the previous
    snapshot is still seen (a coarse-clock filesystem makes this happen without help)."""
    prefix = make_env("racy")
    set_env_vars(prefix, {"TOKEN": "aaaa"})
    first = backup(store, prefix, env_name="racy")
    state_file = prefix / "conda-meta" / "state"
    st = state_file.stat()
    set_env_vars(prefix, {"TOKEN": "bbbb"})
    os.utime(state_file, ns=(st.st_atime_ns, st.st_mtime_ns))  # same tick
    assert state_file.stat().st_size == st.st_size
    second = backup(store, prefix, env_name="racy")
    assert second.created and store.load_state(second.snapshot).variables == {"TOKEN": "bbbb"}
    assert second.snapshot.id != first.snapshot.id


def test_stat_key(make_env) -> None:
    prefix = make_env("key", ["python"])
    assert stat_key(prefix) is None  # just written: too recent to trust
    _age(prefix)
    key = stat_key(prefix)
    assert key is not None and key == stat_key(prefix)
    add_pip_package(prefix, "p", "1")
    assert stat_key(prefix) is None
    _age(prefix, 100)
    assert stat_key(prefix) not in (None, key)


def test_channels_and_name_changes_make_a_new_snapshot(make_env, store, channel,
                                                       monkeypatch) -> None:
    prefix = make_env("chan")
    _age(prefix)
    first = backup(store, prefix, env_name="chan", configured_channels=[])
    assert first.snapshot.channels == [channel.url]
    second = backup(store, prefix, env_name="chan", configured_channels=["conda-forge"])
    assert second.created and second.snapshot.channels == [channel.url, "conda-forge"]
    assert not backup(store, prefix, env_name="chan", configured_channels=["conda-forge"]).created
    third = backup(store, prefix, env_name=str(prefix), configured_channels=["conda-forge"])
    assert third.created and third.snapshot.env_name == str(prefix)


def test_channels_for() -> None:
    from conda_safeguard.snapshot import EnvState

    state = capture  # noqa: F841 (documentation: the state comes from capture)
    recs = []
    from conda_safeguard.prefix import CondaRecord

    for name, ch, ptype in [("a", "conda-forge", None), ("b", "defaults", "noarch_python"),
                            ("c", "conda-forge", None), ("d", "<unknown>", None),
                            ("e", "pypi", "virtual_python_wheel")]:
        recs.append(CondaRecord(name=name, version="1", build="0", build_number=0, channel=ch,
                                subdir="noarch", url="", fn="", md5="", sha256="", size=None,
                                noarch=None, package_type=ptype))
    st = EnvState(recs, [], {}, {}, "", None, "linux-64")
    assert channels_for(st, ["defaults", "bioconda"]) == ["conda-forge", "defaults", "bioconda"]


def test_force_writes_a_child_snapshot(make_env, store: Store) -> None:
    prefix = make_env("force")
    first = backup(store, prefix, env_name="force")
    forced = backup(store, prefix, env_name="force", force=True, reason="before update")
    assert forced.created and forced.snapshot.parent == first.snapshot.id
    assert forced.snapshot.objects == first.snapshot.objects and forced.bytes_added < 2000
    assert forced.snapshot.reason == "before update"
    assert [s.id for s in store.snapshots_of(prefix)] == [forced.snapshot.id, first.snapshot.id]


def test_pin_step_is_recorded(make_env, store: Store) -> None:
    prefix = make_env("pin")
    seen = []
    result = backup(store, prefix, env_name="pin",
                    pin=lambda st, state: seen.append(len(state.packages)) or ["f" * 64])
    assert seen == [3] and result.snapshot.pins == ["f" * 64]
    assert store.get(result.snapshot.id).pins == ["f" * 64]


def test_bad_envs_write_nothing(make_env, store: Store, tmp_path: Path) -> None:
    prefix = make_env("bad", ["liba=1.0"])
    backup(store, prefix, env_name="bad")
    before = tree(store.root)
    with pytest.raises(EnvNotFoundError):
        backup(store, tmp_path / "missing", env_name="x")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAnEnvError):
        backup(store, tmp_path / "plain", env_name="x")
    (prefix / "conda-meta" / "liba-1.0-0.json").write_text("{")
    with pytest.raises(CorruptEnvError):
        backup(store, prefix, env_name="bad")
    assert tree(store.root) == before


def test_garbage_history_is_skipped(make_env, store: Store) -> None:
    prefix = make_env("garbage")
    with open(prefix / "conda-meta" / "history", "ab") as f:
        f.write(b"\x00\xff garbage\n+not::a-dist\n==> <==\n# update specs: [unclosed\n")
    result = backup(store, prefix, env_name="garbage")
    assert result.created and "garbage" in store.load_state(result.snapshot).history


def test_os_errors_become_clear_errors(make_env, store, monkeypatch) -> None:
    prefix = make_env("oserr")

    def denied(*a, **kw):
        raise PermissionError(13, "Permission denied", str(prefix / "conda-meta" / "state"))

    monkeypatch.setattr(snapshot_mod, "read_env_vars", denied)
    with pytest.raises(BackupError, match=r"Could not snapshot .*: Permission denied \(.*state\)"):
        backup(store, prefix, env_name="oserr")
    assert store.snapshots() == []


def test_damaged_parent_does_not_stop_a_backup(make_env, store, channel, pkg_cache,
                                               caplog) -> None:
    prefix = make_env("parent")
    first = backup(store, prefix, env_name="parent").snapshot
    oid = first.objects["packages"]
    (store.root / "objects" / oid[:2] / oid).write_bytes(b"rot")
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    second = backup(store, prefix, env_name="parent")
    assert second.created and second.snapshot.parent == first.id
    assert second.snapshot.change == {}  # unknown: the parent cannot be read
    assert "could not read the previous snapshot" in caplog.text


def test_manifest_is_plain_json(make_env, store: Store) -> None:
    prefix = make_env("manifest")
    info = backup(store, prefix, env_name="manifest", argv=["conda", "install", "x"]).snapshot
    data = json.loads((store.root / "snapshots" / f"{info.id}.json").read_text())
    assert data["argv"] == ["conda", "install", "x"] and data["prefix"] == str(prefix)
    assert data["counts"] == {"conda": 3, "pip": 0} and data["parent"] is None
