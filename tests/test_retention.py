"""retention.py: which snapshots a policy keeps (pure), and prune (forget, then collect)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conda_safeguard.backup import backup
from conda_safeguard.exceptions import StoreError
from conda_safeguard.retention import RetentionPolicy, prune, select_kept
from conda_safeguard.snapshot import SnapshotInfo
from conda_safeguard.store import Store
from conda_safeguard.storecheck import check_store
from tests.factory import set_env_vars
from tests.test_store import tree


def _snap(created: str, id_: str | None = None) -> SnapshotInfo:
    return SnapshotInfo(id=id_ or created, env_name="e", prefix="/e", created=created,
                        reason="r", argv=[], fingerprint="", channels=[], objects={}, counts={})


# Mon 2026-11-16 .. Sun 2026-11-22 is ISO week 47; 2026-11-23 is the Monday of week 48.
TIMES = [
    "2026-11-23T18:00:00.000000Z",  # wk48 Mon (newest)
    "2026-11-23T09:00:00.000000Z",  # wk48 Mon
    "2026-11-22T23:59:59.999999Z",  # wk47 Sun
    "2026-11-22T00:00:00.000000Z",  # wk47 Sun
    "2026-11-20T12:00:00.000000Z",  # wk47 Fri
    "2026-11-10T12:00:00.000000Z",  # wk46 Tue
    "2026-11-09T12:00:00.000000Z",  # wk46 Mon
    "2026-11-01T12:00:00.000000Z",  # wk44 Sun
    "2025-12-31T12:00:00.000000Z",  # 2026 wk01 (ISO year 2026)
    "2025-12-28T12:00:00.000000Z",  # 2025 wk52
]


@pytest.mark.parametrize(("last", "daily", "weekly", "kept"), [
    (0, 0, 0, []),
    (1, 0, 0, [0]),
    (3, 0, 0, [0, 1, 2]),
    (100, 0, 0, list(range(10))),
    (0, 1, 0, [0]),
    (0, 2, 0, [0, 2]),  # newest of Mon 23, newest of Sun 22
    (0, 4, 0, [0, 2, 4, 5]),  # days with snapshots, not calendar days
    (0, 0, 1, [0]),
    (0, 0, 3, [0, 2, 5]),  # newest of weeks 48, 47, 46
    (0, 0, 5, [0, 2, 5, 7, 8]),
    (0, 0, 6, [0, 2, 5, 7, 8, 9]),  # 2025-12-31 is ISO 2026-W01, 2025-12-28 is 2025-W52
    (2, 3, 2, [0, 1, 2, 4]),
    (1, 0, 4, [0, 2, 5, 7]),
])
def test_select_kept(last: int, daily: int, weekly: int, kept: list[int]) -> None:
    snaps = [_snap(t) for t in TIMES]
    shuffled = snaps[::2] + snaps[1::2]  # the input order does not matter
    assert select_kept(shuffled, RetentionPolicy(last, daily, weekly)) == {TIMES[i] for i in kept}


def test_select_kept_empty() -> None:
    assert select_kept([], RetentionPolicy(5, 5, 5)) == set()


# --------------------------------------------------------------------------- prune


def _history_of(store: Store, prefix: Path, n: int) -> list[SnapshotInfo]:
    """n snapshots of prefix, each with its own env object (a changed env var)."""
    out = []
    for i in range(n):
        set_env_vars(prefix, {"ROUND": f"{prefix.name}-{i}"})
        out.append(backup(store, prefix, env_name=prefix.name).snapshot)
    return out


def _object_ids(store: Store) -> set[str]:
    return set(store.iter_object_ids())


def test_prune_forgets_then_collects(make_env, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    a = _history_of(store, make_env("a"), 4)
    b = _history_of(store, make_env("b"), 2)
    report = prune(store, RetentionPolicy(keep_last=2, keep_daily=0, keep_weekly=0))
    assert {s.id for s in report.forgotten} == {a[0].id, a[1].id}
    assert report.kept == 4 and report.removed_envs_skipped == []
    assert {s.id for s in store.snapshots()} == {a[2].id, a[3].id, b[0].id, b[1].id}
    # each forgotten snapshot had one object of its own (its env vars); shared ones stay
    assert report.objects_removed == 2 and report.bytes_freed > 0
    referenced = {o for s in store.snapshots() for o in s.objects.values()}
    assert _object_ids(store) == referenced
    assert check_store(store).ok
    # nothing left to do
    again = prune(store, RetentionPolicy(2, 0, 0))
    assert again.forgotten == [] and again.objects_removed == 0


def test_prune_dry_run_deletes_nothing(make_env, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    snaps = _history_of(store, make_env("dry"), 3)
    before = tree(store.root)
    report = prune(store, RetentionPolicy(1, 0, 0), dry_run=True)
    assert {s.id for s in report.forgotten} == {snaps[0].id, snaps[1].id}
    assert report.objects_removed == 2
    assert tree(store.root) == before


def test_prune_keeps_removed_envs_unless_named(make_env, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    live = _history_of(store, make_env("live"), 2)
    gone_prefix = make_env("gone")
    gone = _history_of(store, gone_prefix, 3)
    shutil.rmtree(gone_prefix)
    policy = RetentionPolicy(1, 0, 0)

    report = prune(store, policy)
    assert report.removed_envs_skipped == [str(gone_prefix)]
    assert {s.id for s in report.forgotten} == {live[0].id}
    assert {s.id for s in store.snapshots_of(gone_prefix)} == {s.id for s in gone}
    for s in gone:  # the only copy of a removed env: every object is still there
        for oid in s.objects.values():
            store.get_object(oid)

    # naming another env leaves this one alone
    report = prune(store, RetentionPolicy(0, 0, 0), prefixes=[str(live[0].prefix)])
    assert {s.id for s in report.forgotten} == {live[1].id}
    assert len(store.snapshots_of(gone_prefix)) == 3

    report = prune(store, policy, prefixes=[str(gone_prefix)])
    assert {s.id for s in report.forgotten} == {gone[0].id, gone[1].id}
    assert [s.id for s in store.snapshots()] == [gone[2].id]

    report = prune(store, RetentionPolicy(0, 0, 0), include_removed=True)
    assert store.snapshots() == [] and _object_ids(store) == set()
    assert check_store(store).ok


def test_prune_refuses_when_a_manifest_is_unreadable(make_env, tmp_path: Path) -> None:
    """An unreadable manifest may name objects: collecting garbage then would delete them."""
    store = Store.open(tmp_path / "s")
    snaps = _history_of(store, make_env("dmg"), 2)
    damaged = store.root / "snapshots" / f"{snaps[0].id}.json"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    before = tree(store.root)
    with pytest.raises(StoreError, match=f"Refusing to prune.*{damaged.name}"):
        prune(store, RetentionPolicy(1, 0, 0))
    assert tree(store.root) == before
    damaged.unlink()
    assert prune(store, RetentionPolicy(1, 0, 0)).objects_removed == 1


def test_prune_collects_unreferenced_pins(make_env, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "s")
    (snap,) = _history_of(store, make_env("pins"), 1)
    packages = store.root / "packages"
    packages.mkdir(exist_ok=True)
    orphan = packages / f"{'e' * 64}.tar.bz2"
    orphan.write_bytes(b"pkg")
    (packages / ".tmp-partial").write_bytes(b"x")
    report = prune(store, RetentionPolicy(5, 0, 0))
    assert report.packages_removed == 1 and not orphan.exists()
    # a temp file under the exclusive lock is a killed run's: prune removes it
    assert report.temp_removed == 1 and not (packages / ".tmp-partial").exists()
    assert store.get(snap.id)


# --------------------------------------------------------------------------- prune under load


def _backup_loop(root: str, prefix: str, stop, counter) -> None:
    store = Store.open(Path(root))
    while not stop.is_set():
        backup(store, Path(prefix), env_name=Path(prefix).name, reason="loop", force=True)
        with counter.get_lock():
            counter.value += 1


def test_prune_is_not_starved_by_continuous_backups(make_env, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """6 processes back up without pause (the shared lock is never free); prune still gets
    its turn through the gate, every time, well within the lock timeout, and loses nothing
    the loops wrote."""
    import multiprocessing
    import time

    monkeypatch.setenv("CONDA_SAFEGUARD_LOCK_TIMEOUT", "20")
    envs = [make_env(f"load{i}", ["liba=1.0"]) for i in range(3)]
    root = tmp_path / "load-store"
    Store.open(root)
    ctx = multiprocessing.get_context("fork")
    stop, counter = ctx.Event(), ctx.Value("i", 0)
    loops = [ctx.Process(target=_backup_loop, args=(str(root), str(envs[i % 3]), stop, counter))
             for i in range(6)]
    for p in loops:
        p.start()
    waits = []
    try:
        while counter.value < 12:  # the loops are running
            time.sleep(0.01)
        store = Store.open(root)
        for _ in range(3):
            before = counter.value
            t0 = time.monotonic()
            report = prune(store, RetentionPolicy(2, 0, 0))
            waits.append(time.monotonic() - t0)
            assert report.kept >= 6
            while counter.value < before + 6:  # backups went on between prunes
                time.sleep(0.01)
    finally:
        stop.set()
        for p in loops:
            p.join(30)
    assert all(p.exitcode == 0 for p in loops)
    assert max(waits) < 20, waits  # no prune timed out
    assert check_store(Store.open(root)).ok
