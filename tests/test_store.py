"""store.py and fs.py: content addressing, format refusal, crash safety, races, check."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import stat
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

import conda_safeguard.fs as fs
from conda_safeguard.backup import backup
from conda_safeguard.exceptions import (
    AmbiguousSnapshotError,
    BackupError,
    CorruptObjectError,
    SnapshotIdTooShortError,
    SnapshotNotFoundError,
    StoreError,
    StoreFormatError,
)
from conda_safeguard.snapshot import SnapshotInfo
from conda_safeguard.store import Store, default_store_path
from conda_safeguard.storecheck import check_store
from tests.factory import set_env_vars


def tree(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its bytes: compares stores before/after.

    Leaves out cache/locks/: a backup creates its env's (empty) lock file before it reads the
    env, so even a backup refused for a broken env may leave one. It holds no data. So is the
    (empty) `gate` lock file prune creates, even on a dry run.
    """
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.parent != root / "cache" / "locks" and p != root / "gate"}


def assert_consistent(store: Store) -> list[SnapshotInfo]:
    """No partial snapshot is visible: every manifest parses and names objects on disk."""
    manifests = sorted((store.root / "snapshots").glob("*.json"))
    infos = []
    for path in manifests:
        info = SnapshotInfo.from_dict(json.loads(path.read_bytes()))
        assert path.stem == info.id
        for oid in info.objects.values():
            store.get_object(oid)  # present and intact
        infos.append(info)
    assert len(store.snapshots()) == len(manifests)
    report = check_store(store)
    assert report.ok, report.to_dict()
    return infos


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


# --------------------------------------------------------------------------- objects and layout


def test_objects_are_content_addressed_and_written_once(store: Store) -> None:
    oid, written = store.put_object(b"hello" * 100)
    assert oid == hashlib.sha256(b"hello" * 100).hexdigest()
    path = store.root / "objects" / oid[:2] / oid
    assert zlib.decompress(path.read_bytes()) == b"hello" * 100
    assert written == path.stat().st_size > 0
    mtime = path.stat().st_mtime_ns
    assert store.put_object(b"hello" * 100) == (oid, 0)
    assert path.stat().st_mtime_ns == mtime
    assert store.get_object(oid) == b"hello" * 100
    assert list(store.iter_object_ids()) == [oid]


def test_store_is_private(store: Store) -> None:
    oid, _ = store.put_object(b"secret env var")
    for d in (store.root, store.root / "objects", store.root / "snapshots",
              store.root / "objects" / oid[:2]):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in (store.root / "config", store.root / "objects" / oid[:2] / oid):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    config = json.loads((store.root / "config").read_text())
    assert config["format"] == 1


def test_missing_store_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="No snapshot store at .*Run `conda-safeguard backup"):
        Store.open(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("fmt", [99, 2])
def test_newer_format_is_refused(store: Store, fmt) -> None:
    (store.root / "config").write_text(json.dumps({"format": fmt}))
    before = tree(store.root)
    with pytest.raises(StoreFormatError) as e:
        Store.open(store.root)
    msg = str(e.value)
    assert "\n" not in msg and f"format {fmt!r}" in msg and "Nothing was written" in msg
    assert tree(store.root) == before


@pytest.mark.parametrize("content", ["{", "[]", '{"no_format": 1}', '{"format": 0}',
                                     '{"format": "1"}', '{"format": null}', '{"format": true}'])
def test_damaged_config(store: Store, content: str) -> None:
    (store.root / "config").write_text(content)
    with pytest.raises(StoreError, match="is damaged.*Nothing was written.*check --repair"):
        Store.open(store.root)


def test_store_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for create in (True, False):
        with pytest.raises(StoreError, match="Cannot read the store at .*Not a directory"):
            Store.open(blocker / "store", create=create)
    assert blocker.read_text() == "not a folder"


OPEN_STORE = """import sys
from pathlib import Path
from conda_safeguard.store import Store, StoreError
try:
    Store.open(Path(sys.argv[1]))
except StoreError as e:
    sys.exit(str(e))
"""


def test_unreadable_store(store: Store) -> None:
    from tests.restoring_helpers import unprivileged

    store.root.chmod(0)
    try:  # in a process file permissions apply to, also as root
        proc = unprivileged([sys.executable, "-c", OPEN_STORE, str(store.root)])
    finally:
        store.root.chmod(0o700)
    assert proc.returncode == 1 and "permission denied" in proc.stderr, proc.stderr


def test_uncreatable_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def deny(self, *a, **kw):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", deny)
    with pytest.raises(StoreError, match="Cannot create the snapshot store .*permission denied"):
        Store.open(tmp_path / "new")


def test_default_store_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_store_path() == tmp_path / "store"  # the autouse fixture's
    monkeypatch.delenv("CONDA_SAFEGUARD_HOME")
    assert default_store_path("~/team-store") == Path(os.environ["HOME"]) / "team-store"
    data = default_store_path()
    assert data == Path(os.environ["XDG_DATA_HOME"]) / "conda-safeguard"
    assert str(data).startswith(str(tmp_path))


def test_write_manifest_refuses_missing_objects(store: Store) -> None:
    info = SnapshotInfo(id="a" * 64, env_name="e", prefix="/p", created="2026-01-01T00:00:00Z",
                        reason="r", argv=[], fingerprint="", channels=[],
                        objects={"packages": "b" * 64}, counts={})
    with pytest.raises(StoreError, match="Refusing to write snapshot aaaaaaaaaa"):
        store.write_manifest(info)
    assert store.snapshots() == []


# --------------------------------------------------------------------------- check


def test_check_finds_a_flipped_byte(make_env, store: Store) -> None:
    backup(store, make_env("flip"), env_name="flip")
    assert check_store(store).ok
    objects = sorted(p for p in (store.root / "objects").rglob("*") if p.is_file())
    victim = objects[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    report = check_store(store)
    assert not report.ok and report.corrupt == [victim.name]
    assert report.objects == len(objects) and report.snapshots == 1
    with pytest.raises(CorruptObjectError, match="damaged"):
        store.get_object(victim.name)


def test_check_hash_mismatch_missing_and_leftovers(make_env, store: Store) -> None:
    result = backup(store, make_env("chk"), env_name="chk")
    oids = result.snapshot.objects
    # valid zlib, wrong content: only re-hashing finds it
    path = store.root / "objects" / oids["pip"][:2] / oids["pip"]
    path.write_bytes(zlib.compress(b"[]  "))
    (store.root / "objects" / oids["history"][:2] / oids["history"]).unlink()
    (store.root / "snapshots" / f".tmp-{result.snapshot.id}.json.1.2").write_text("{")
    (store.root / "objects" / "ab").mkdir(exist_ok=True)
    (store.root / "objects" / "ab" / ".tmp-ab12.3.4").write_bytes(b"partial")
    (store.root / "snapshots" / "garbage.json").write_text("{not json")
    report = check_store(store)
    assert report.corrupt == [oids["pip"]]
    assert report.missing == [(result.snapshot.id, oids["history"])]
    assert report.unreadable == ["garbage.json"]
    assert sorted(report.leftovers) == ["objects/ab/.tmp-ab12.3.4",
                                        f"snapshots/.tmp-{result.snapshot.id}.json.1.2"]
    assert not report.ok


def test_leftover_temp_files_alone_are_harmless(make_env, store: Store) -> None:
    backup(store, make_env("left"), env_name="left")
    (store.root / "snapshots" / ".tmp-x.json.1.2").write_text("{")
    report = check_store(store)
    assert report.ok and report.leftovers == ["snapshots/.tmp-x.json.1.2"]
    assert len(store.snapshots()) == 1


# --------------------------------------------------------------------------- a write that fails


def _count_calls(monkeypatch: pytest.MonkeyPatch, store: Store, prefix: Path, name: str) -> int:
    """How many times one backup of a changed env calls os.<name> (inside atomic_write)."""
    calls = []
    real = getattr(os, name)
    monkeypatch.setattr(fs.os, name, lambda *a: (calls.append(1), real(*a))[1])
    set_env_vars(prefix, {"ROUND": "probe"})
    backup(store, prefix, env_name="fail")
    monkeypatch.setattr(fs.os, name, real)
    return len(calls)


@pytest.mark.parametrize("name", ["replace", "fsync"])
def test_failure_at_every_write_leaves_no_partial_snapshot(
        make_env, store: Store, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    prefix = make_env("fail")
    first = backup(store, prefix, env_name="fail").snapshot
    n = _count_calls(monkeypatch, store, prefix, name)
    # one new object (env vars), the manifest, two caches (records, env): an os.replace each;
    # two fsyncs (file, folder) each for the object and the manifest, none for the caches
    # (derived data)
    cache_calls = 2 if name == "replace" else 0
    assert n == 4
    real = getattr(os, name)
    for fail_at in range(n):
        set_env_vars(prefix, {"ROUND": str(fail_at)})
        before = {s.id for s in store.snapshots()}
        calls = []

        def flaky(*a, fail_at=fail_at, calls=calls):
            calls.append(1)
            if len(calls) == fail_at + 1:
                raise OSError(28, "No space left on device")
            return real(*a)

        monkeypatch.setattr(fs.os, name, flaky)
        try:
            result = backup(store, prefix, env_name="fail")
        except BackupError as e:
            assert fail_at < n - cache_calls, "only a failed cache write may pass"
            assert "No space left on device" in str(e) and "earlier snapshots are intact" in str(e)
            assert {s.id for s in store.snapshots()} == before
        else:  # the cache is derived: failing to write it does not fail the backup
            assert fail_at >= n - cache_calls
            assert result.created and {s.id for s in store.snapshots()} == before | {
                result.snapshot.id}
        finally:
            monkeypatch.setattr(fs.os, name, real)
        infos = assert_consistent(store)
        assert not list(store.root.rglob(".tmp-*")), "atomic_write leaves no temp file"
        assert first.id in {i.id for i in infos}
    # and the store still works: the failed rounds are snapshotted now
    set_env_vars(prefix, {"ROUND": "after"})
    assert backup(store, prefix, env_name="fail").created


_KILL_CHILD = r"""
import os, sys
from pathlib import Path
from conda_safeguard.backup import backup
from conda_safeguard.store import Store
store = Store.open(Path(sys.argv[1]))
i = 0
while True:
    backup(store, Path(sys.argv[2]), env_name="k", reason=f"loop {i}", force=True)
    store.put_object(os.urandom(1 << 20))  # big writes: a kill lands mid-write often
    i += 1
"""


def test_kill_9_mid_write_leaves_no_partial_snapshot(make_env, store: Store) -> None:
    """Kill a child that writes snapshots and big objects in a loop, at varying moments, until
    a kill has landed mid-write (temp files left behind) at least once."""
    prefix = make_env("kill")
    rounds = 0
    rng = random.Random(1234)
    while rounds < 4 or not list(store.root.rglob(".tmp-*")):
        assert rounds < 60, "no kill landed mid-write in 60 rounds"
        child = subprocess.Popen([sys.executable, "-c", _KILL_CHILD, str(store.root), str(prefix)])
        try:
            deadline = time.monotonic() + 20
            n0 = len(list((store.root / "snapshots").glob("*.json")))
            while len(list((store.root / "snapshots").glob("*.json"))) <= n0:
                assert child.poll() is None, "the child died by itself"
                assert time.monotonic() < deadline
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.15))  # random: not in step with the child's cycle
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        assert_consistent(store)
        rounds += 1
    assert len(store.snapshots()) >= rounds
    report = check_store(store)
    assert report.ok  # leftovers of the killed writes are reported as harmless
    assert all(".tmp-" in name for name in report.leftovers)
    assert backup(store, prefix, env_name="k", force=True).created


# --------------------------------------------------------------------------- racing processes


def _race_worker(root: str, prefix: str, name: str, force: bool, barrier, queue) -> None:
    try:
        barrier.wait(30)
        store = Store.open(Path(root))
        result = backup(store, Path(prefix), env_name=name, reason=f"race {os.getpid()}",
                        force=force)
        queue.put(("ok", result.snapshot.id))
    except BaseException as e:  # report everything to the parent
        queue.put(("error", repr(e)))


def test_racing_processes_lose_nothing(make_env, tmp_path: Path) -> None:
    """24 processes snapshot at once into a store none of them has created yet: 12 envs of
    their own, and 12 processes on one shared env (forced, so each writes its own snapshot)."""
    own = [make_env(f"own{i}", ["liba=1.0"]) for i in range(12)]
    shared = make_env("shared")
    jobs = [(p, p.name, False) for p in own] + [(shared, "shared", True)] * 12
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(jobs))
    queue = ctx.Queue()
    root = tmp_path / "race-store"
    procs = [ctx.Process(target=_race_worker, args=(str(root), str(p), n, f, barrier, queue))
             for p, n, f in jobs]
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert all(status == "ok" for status, _ in results), results
    ids = [i for _, i in results]
    assert len(set(ids)) == len(ids) == 24
    store = Store.open(root, create=False)
    listed = {s.id for s in store.snapshots()}
    assert set(ids) <= listed and len(listed) == 24
    assert_consistent(store)
    by_prefix = {}
    for s in store.snapshots():
        by_prefix.setdefault(s.prefix, []).append(s)
    assert len(by_prefix[str(shared)]) == 12 and all(len(by_prefix[str(p)]) == 1 for p in own)
    # the shared env's snapshots form one chain: each names the one written before it
    chain = sorted(by_prefix[str(shared)], key=lambda s: s.created)
    assert chain[0].parent is None
    assert [s.parent for s in chain[1:]] == [s.id for s in chain[:-1]]


# --------------------------------------------------------------------------- resolving ids


def _fake(id_: str, env: str = "e", prefix: str = "/envs/e", created: str = "2026-01-01T00:00:00Z"):
    return SnapshotInfo(id=id_, env_name=env, prefix=prefix, created=created, reason="r", argv=[],
                        fingerprint="", channels=[], objects={}, counts={})


@pytest.fixture
def crafted(store: Store, monkeypatch: pytest.MonkeyPatch) -> Store:
    snaps = [
        _fake("abcd1111" + "0" * 56, created="2026-01-03T00:00:00Z"),
        _fake("abcd2222" + "0" * 56, created="2026-01-02T00:00:00Z"),
        _fake("ef01" + "0" * 60, created="2026-01-01T00:00:00Z"),
        _fake("9999" + "0" * 60, env="/abs/path-env", prefix="/abs/path-env"),
    ]
    monkeypatch.setattr(store, "snapshots",
                        lambda: sorted(snaps, key=lambda s: s.created, reverse=True))
    return store


@pytest.mark.parametrize(("ref", "expected"), [
    ("abcd1", "abcd1111"), ("ABCD2", "abcd2222"), ("ef01", "ef010000"), ("e", "abcd1111"),
    ("e@latest", "abcd1111"), ("e@-1", "abcd2222"), ("e@-2", "ef010000"), ("e@ef01", "ef010000"),
    ("/envs/e", "abcd1111"), ("/abs/path-env", "99990000"), ("path-env", "99990000"),
    ("  e  ", "abcd1111"),
])
def test_resolve(crafted: Store, ref: str, expected: str) -> None:
    assert crafted.resolve(ref).id.startswith(expected)


@pytest.mark.parametrize(("ref", "error", "match"), [
    ("abcd", AmbiguousSnapshotError, r"'abcd' is ambiguous: it matches 2 snapshots "
                                     r"\(abcd111100, abcd222200\)"),
    ("e@abcd", AmbiguousSnapshotError, "ambiguous"),
    ("abc", SnapshotIdTooShortError, "'abc' is too short: give at least 4 characters"),
    ("ABCD", AmbiguousSnapshotError, "'ABCD' is ambiguous"),  # echoed as typed
    ("1234", SnapshotNotFoundError, "No snapshot matches '1234'"),
    ("nope", SnapshotNotFoundError, "No snapshot matches 'nope'"),
    ("e@-3", SnapshotNotFoundError, "e has 3 snapshots"),
    ("other@latest", SnapshotNotFoundError, "no snapshots of an env called 'other'"),
    ("", SnapshotNotFoundError, "No snapshot matches ''"),
])
def test_resolve_errors(crafted: Store, ref: str, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        crafted.resolve(ref)


def test_snapshots_skip_unreadable_manifests(make_env, store: Store) -> None:
    backup(store, make_env("skip"), env_name="skip")
    (store.root / "snapshots" / "broken.json").write_text("{")
    (store.root / "snapshots" / "partial.json").write_text('{"id": "x"}')
    assert len(store.snapshots()) == 1


def test_store_caches_are_disposable(store: Store) -> None:
    assert store.read_cache("x.json") == {}
    store.write_cache("x.json", {"a": 1})
    assert store.read_cache("x.json") == {"a": 1}
    (store.root / "cache" / "x.json").write_text("[1")
    assert store.read_cache("x.json") == {}


def test_resolve_never_mixes_envs(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Folder names can collide: `x@-1` must be the previous snapshot of one env, not the
    newest snapshot of another env also called x."""
    from conda_safeguard.exceptions import AmbiguousEnvError

    snaps = [
        _fake("1111" + "0" * 60, env="x", prefix="/root/envs/x", created="2026-01-01T00:00:01Z"),
        _fake("2222" + "0" * 60, env="/data/x", prefix="/data/x", created="2026-01-01T00:00:02Z"),
        _fake("3333" + "0" * 60, env="x", prefix="/root/envs/x", created="2026-01-01T00:00:03Z"),
        _fake("4444" + "0" * 60, env="/a/y", prefix="/a/y", created="2026-01-01T00:00:04Z"),
        _fake("5555" + "0" * 60, env="/b/y", prefix="/b/y", created="2026-01-01T00:00:05Z"),
        _fake("6666" + "0" * 60, env="/home/u@corp/envs/z", prefix="/home/u@corp/envs/z",
              created="2026-01-01T00:00:06Z"),
        _fake("7777" + "0" * 60, env="/home/u@corp/envs/z", prefix="/home/u@corp/envs/z",
              created="2026-01-01T00:00:07Z"),
    ]
    monkeypatch.setattr(store, "snapshots",
                        lambda: sorted(snaps, key=lambda s: s.created, reverse=True))
    assert store.resolve("x").id.startswith("3333")  # the env named x, not /data/x
    assert store.resolve("x@-1").id.startswith("1111")
    assert store.resolve("/data/x").id.startswith("2222")
    with pytest.raises(AmbiguousEnvError, match=r"'y' names snapshots of 2 different envs "
                                                r"\(/b/y, /a/y\)\. Give the env's full prefix"):
        store.resolve("y@-1")
    assert store.resolve("/a/y@latest").id.startswith("4444")
    assert store.resolve("/home/u@corp/envs/z").id.startswith("7777")  # an '@' in the path
    assert store.resolve("/home/u@corp/envs/z@-1").id.startswith("6666")
    assert store.resolve("z@-1").id.startswith("6666")
