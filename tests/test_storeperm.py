"""storeperm.py: symlinks, owners and modes inside the store; the team store (issue 11, items
4, 5 and 7)."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path

import pytest

import conda_safeguard.fs as fs
from conda_safeguard.backup import backup
from conda_safeguard.exceptions import StoreError
from conda_safeguard.retention import RetentionPolicy, prune
from conda_safeguard.store import Store
from conda_safeguard.storecheck import check_store
from conda_safeguard.storeperm import UnsafeStoreError
from tests.factory import set_env_vars
from tests.test_cli import assert_one_line_error, run

NOBODY = 65534
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving files to another user needs root")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder outside the store with a file that must survive everything."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / ("a" * 64 + ".conda")).write_bytes(b"not ours")
    (d / "keep.txt").write_text("keep")
    return d


def snapshot_of(store: Store, make_env, name: str = "perm"):
    return backup(store, make_env(name), env_name=name).snapshot


@pytest.mark.parametrize("entry", ["packages", "snapshots", "objects", "cache"])
def test_a_symlinked_folder_in_the_store_is_refused(store: Store, make_env, outside: Path,
                                                    entry: str) -> None:
    snapshot_of(store, make_env)
    real = store.root / entry
    real.rename(store.root / f"{entry}.real")
    real.symlink_to(outside)
    before = sorted(p.name for p in outside.iterdir())
    with pytest.raises(UnsafeStoreError, match=f"{entry}: it is a symlink.*Nothing was read"):
        Store.open(store.root)
    assert sorted(p.name for p in outside.iterdir()) == before


def test_prune_never_deletes_through_a_symlinked_fan_out_folder(store: Store, make_env,
                                                                outside: Path) -> None:
    snap = snapshot_of(store, make_env)
    # a fan-out folder the snapshot did not make (its objects' hashes follow the env's paths)
    fan = next(f"{i:02x}" for i in range(256) if not (store.root / "objects" / f"{i:02x}").exists())
    (outside / (fan + "0" * 62)).write_bytes(b"looks like an object")
    (store.root / "objects" / fan).symlink_to(outside)
    report = prune(store, RetentionPolicy(0, 0, 0), include_removed=True)
    assert report.forgotten and (outside / (fan + "0" * 62)).exists()
    assert (outside / "keep.txt").exists()
    assert f"objects/{fan} (a symlink: never followed)" in check_store(store).stray
    with pytest.raises(UnsafeStoreError, match=f"objects/{fan}: it is a symlink"):
        store.put_object(_data_in_fan(fan))
    assert snap


def _data_in_fan(fan: str) -> bytes:
    """Some bytes whose sha256 starts with `fan`."""
    import hashlib

    i = 0
    while not hashlib.sha256(str(i).encode()).hexdigest().startswith(fan):
        i += 1
    return str(i).encode()


def test_a_dangling_lock_symlink_creates_nothing(store: Store, tmp_path: Path) -> None:
    target = tmp_path / "created-by-us"
    (store.root / "lock").symlink_to(target)
    with pytest.raises(UnsafeStoreError, match="lock: it is a symlink"):
        Store.open(store.root)
    with pytest.raises(OSError) as e, fs.file_lock(store.root / "lock", exclusive=True):
        pass
    assert e.value.errno == errno.ELOOP and not target.exists()


def test_a_symlinked_manifest_or_object_is_not_read(store: Store, make_env, tmp_path: Path
                                                    ) -> None:
    snap = snapshot_of(store, make_env)
    manifest = store.root / "snapshots" / f"{snap.id}.json"
    copy = tmp_path / "elsewhere.json"
    copy.write_bytes(manifest.read_bytes())
    manifest.unlink()
    manifest.symlink_to(copy)
    assert store.snapshots() == []
    assert "cannot be read" in check_store(store).why[f"{snap.id}.json"]


@as_root
def test_a_store_owned_by_another_user_is_refused(store: Store, make_env, outside: Path,
                                                  standalone_root, capsys) -> None:
    """root's prune in another user's store once deleted root's own file through that user's
    symlink: such a store is not used at all."""
    snapshot_of(store, make_env)
    for p in [store.root, *store.root.rglob("*")]:
        os.lchown(p, NOBODY, NOBODY)
    os.environ["CONDA_SAFEGUARD_HOME"] = str(store.root)
    before = sorted(str(p) for p in store.root.rglob("*"))
    for verb in (["list"], ["prune", "--keep-last", "0"], ["backup", "-n", "perm"], ["check"]):
        assert_one_line_error(*run(capsys, *verb), "Refusing to use the snapshot store",
                              "belongs to nobody (uid 65534), not to you",
                              "safeguard_store_shared")
    assert sorted(str(p) for p in store.root.rglob("*")) == before


@as_root
def test_a_store_writable_by_others_is_refused_or_tightened(store: Store, make_env) -> None:
    snapshot_of(store, make_env)
    os.chmod(store.root, 0o777)
    os.chmod(store.root / "snapshots", 0o777)
    warnings: list[str] = []
    Store.open(store.root, warn=warnings.append)  # our own: tightened, said once
    assert mode(store.root) == 0o700 and mode(store.root / "snapshots") == 0o700
    assert any("writable by every user" in w for w in warnings)
    os.chmod(store.root, 0o777)
    os.chown(store.root, NOBODY, NOBODY)
    with pytest.raises(UnsafeStoreError, match="belongs to nobody"):
        Store.open(store.root)
    with pytest.raises(UnsafeStoreError, match="every user on this machine can write it"):
        Store.open(store.root, shared=True)


def test_an_own_loose_store_is_made_private(store: Store) -> None:
    os.chmod(store.root, 0o755)
    warnings: list[str] = []
    Store.open(store.root, warn=warnings.append)
    assert mode(store.root) == 0o700
    assert warnings == [f"made the store {store.root} private to you (it was mode 755)"]


def test_umask_000_makes_no_open_folders(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = Store.open(tmp_path / "a" / "b" / "store")
        oid, _ = store.put_object(b"x")
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b", store.root, store.root / "objects" / oid[:2]):
        assert mode(d) == 0o700, d
    assert mode(store.root / "config") == 0o600
    assert mode(store.root / "objects" / oid[:2] / oid) == 0o600


def test_a_full_disk_when_creating_the_store_is_one_line(tmp_path: Path, monkeypatch) -> None:
    def full(*a: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs.os, "write", full)
    with pytest.raises(StoreError, match="Cannot create the snapshot store at .*No space left"):
        Store.open(tmp_path / "store")
    assert not list((tmp_path / "store").glob("config*"))


# --------------------------------------------------------------------------- team store


@as_root
def test_team_store_each_member_prunes_only_their_own(tmp_path: Path, make_env) -> None:
    team = Store.open(tmp_path / "team", shared=True)
    assert mode(team.root) & 0o7777 == 0o2770
    assert mode(team.root / "snapshots") & 0o7777 == 0o3770  # sticky: own deletions only
    prefix = make_env("teamenv")
    mine = backup(team, prefix, env_name="teamenv").snapshot
    assert mode(team.root / "snapshots" / f"{mine.id}.json") == 0o640
    set_env_vars(prefix, {"V": "2"})
    theirs = backup(team, prefix, env_name="teamenv").snapshot
    os.chown(team.root / "snapshots" / f"{theirs.id}.json", NOBODY, NOBODY)
    report = prune(team, RetentionPolicy(0, 0, 0))
    assert [s.id for s in report.forgotten] == [mine.id]
    assert report.others_kept == 1 and team.get(theirs.id)
    assert check_store(team).ok
    # a member's store is theirs: opening it as a team store is fine, privately it is refused
    os.chown(team.root, NOBODY, NOBODY)
    Store.open(team.root, shared=True)
    with pytest.raises(UnsafeStoreError):
        Store.open(team.root)


def test_team_store_keeps_secret_looking_env_vars_out(tmp_path: Path, make_env) -> None:
    prefix = make_env("sec")
    set_env_vars(prefix, {"GITHUB_TOKEN": "ghp_x", "AWS_SECRET_ACCESS_KEY": "s", "MODE": "fast"})
    warnings: list[str] = []
    team = Store.open(tmp_path / "team", shared=True, warn=warnings.append)
    snap = backup(team, prefix, env_name="sec").snapshot
    assert team.load_state(snap).variables == {"MODE": "fast"}
    assert not any(b"ghp_x" in p.read_bytes() for p in team.root.rglob("*") if p.is_file())
    assert len(warnings) == 1 and "AWS_SECRET_ACCESS_KEY, GITHUB_TOKEN" in warnings[0]
    assert "ghp_x" not in warnings[0]
    # unchanged env: the filtered state is the same, so no new snapshot
    assert not backup(team, prefix, env_name="sec").created
    allowed = Store.open(tmp_path / "team2", shared=True, shared_secrets=True)
    snap = backup(allowed, prefix, env_name="sec").snapshot
    assert allowed.load_state(snap).variables["GITHUB_TOKEN"] == "ghp_x"
    private = Store.open(tmp_path / "private")
    assert private.load_state(backup(private, prefix, env_name="sec").snapshot
                              ).variables["GITHUB_TOKEN"] == "ghp_x"


def test_team_store_setting_reaches_the_store(tmp_path: Path, standalone_root, make_env,
                                              capsys, monkeypatch) -> None:
    make_env("cli")
    monkeypatch.setenv("CONDA_PLUGINS_SAFEGUARD_STORE_SHARED", "true")
    code, out, err = run(capsys, "backup", "-n", "cli")
    assert code == 0, err
    root = Path(os.environ["CONDA_SAFEGUARD_HOME"])
    assert mode(root) & 0o7777 == 0o2770
    assert json.loads((root / "config").read_text())["format"] == 1


def test_a_mount_inside_the_store_is_refused(store: Store, monkeypatch) -> None:
    """A folder on another filesystem (a bind mount onto objects/, say) is refused like a
    symlink: prune would delete on that filesystem. (Mounting needs privileges a test does not
    have: the device number the kernel reports is what the check reads, so it is stood in for.)"""
    import conda_safeguard.storeperm as perm

    real = os.lstat

    def lstat(path, *a, **kw):
        st = real(path, *a, **kw)
        if Path(path) == store.root / "objects":
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev + 1, *tuple(st)[3:10]))
        return st

    monkeypatch.setattr(perm.os, "lstat", lstat)
    with pytest.raises(UnsafeStoreError, match="objects: it is on another filesystem"):
        Store.open(store.root)
