"""Bit rot: flip bytes in every kind of store file and require each flip to be detected (check
reports it; a cache's seal rejects it) or harmless (what list, show, backup and capture give is
unchanged). No verb may crash (exit 3) on any flip, and nothing outside the store changes.

Positions are a seeded sample per file (every byte of small files), each flipped with a few bit
masks, so the run is bounded (a few seconds) and repeatable; FUZZ_FLIPS=N raises the sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

from conda_safeguard.__main__ import main
from conda_safeguard.snapshot import capture
from conda_safeguard.store import Store, prefix_key
from conda_safeguard.storecheck import check_store
from tests.factory import set_env_vars

MASKS = (0x01, 0x20, 0xFF)
PER_FILE = int(os.environ.get("FUZZ_FLIPS", "8"))  # positions per file (x len(MASKS) flips)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.is_symlink()}


def _put_back(root: Path, saved: dict[str, bytes]) -> None:
    """The store exactly as saved: files a verb added removed, changed ones rewritten."""
    for rel, data in _files(root).items():
        if rel not in saved:
            (root / rel).unlink()
        elif data != saved[rel]:
            (root / rel).write_bytes(saved[rel])
    for rel, data in saved.items():
        if not (root / rel).exists():
            (root / rel).write_bytes(data)


def _kind(rel: str) -> str | None:
    if rel.startswith("objects/"):
        return "objects"
    if rel.startswith("snapshots/"):
        return "manifests"
    if rel.startswith("packages/"):
        return "pins"
    if rel == "config":
        return "config"
    if rel.startswith("cache/") and rel.endswith(".json"):
        return "caches"
    return None  # lock files: empty


def _tree_hash(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


def test_every_flipped_byte_is_detected_or_harmless(make_env, standalone_root, capsys,
                                                    channel) -> None:
    prefix = make_env("fz", ["python", "liba=1.0", "libb"], pip=["dist==1.0"])
    set_env_vars(prefix, {"MODE": "fast"})
    root = Path(os.environ["CONDA_SAFEGUARD_HOME"])

    def cli(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(list(argv))
        out, _ = capsys.readouterr()
        assert code != 3, (argv, out)  # never a traceback
        return code, out

    assert cli("backup", "-n", "fz")[0] == 0
    set_env_vars(prefix, {"MODE": "slow"})
    old = time.time() - 60  # old enough for the stat-key fast path and the records cache
    for p in [prefix / "conda-meta", *(prefix / "conda-meta").iterdir(),
              *prefix.glob("lib/python*/site-packages")]:
        os.utime(p, (old, old))
    assert cli("backup", "-n", "fz")[0] == 0
    assert cli("backup", "-n", "fz")[0] == 0  # records the stat key: the fast path is warm
    for pin in (root / "packages").iterdir():  # pins are hardlinks into the channel: unshare
        data = pin.read_bytes()
        pin.unlink()
        pin.write_bytes(data)
    store = Store.open(root)
    records_name = f"records-{prefix_key(prefix)}.json"

    def observe() -> tuple:
        outs = [cli("list", "--json"), cli("backup", "-n", "fz", "--json")]
        for sid in ids:
            outs.append(cli("show", sid, "--format", "json"))
        try:
            records = [r.to_dict() for r in capture(prefix, Store(root).read_cache(records_name)
                                                    ).packages]
        except Exception as e:  # noqa: BLE001  (recorded: a difference, never a pass)
            records = [repr(e)]
        return tuple(outs), records

    ids = [s.id for s in store.snapshots()]
    assert len(ids) == 2
    saved = _files(root)
    assert {_kind(r) for r in saved} >= {"objects", "manifests", "pins", "config", "caches"}
    assert len(json.loads(saved[f"cache/{records_name}"])["data"]) == 3  # records are cached
    baseline = observe()
    _put_back(root, saved)
    outside = (_tree_hash(prefix), _tree_hash(channel.path))

    rng = random.Random(11)
    counts: dict[str, Counter[str]] = {}
    missed = []
    for rel, data in saved.items():
        kind = _kind(rel)
        if kind is None or not data:
            continue
        positions = list(range(len(data)))
        if len(positions) > PER_FILE:
            positions = sorted(rng.sample(positions, PER_FILE))
        for pos in positions:
            for mask in MASKS:
                flipped = bytearray(data)
                flipped[pos] ^= mask
                (root / rel).write_bytes(bytes(flipped))
                if kind == "caches":
                    detected = Store(root).read_cache(rel.removeprefix("cache/")) == {}
                else:
                    report = check_store(Store(root, lambda _: None))
                    detected = not report.ok
                result = observe()  # every verb runs on every flip: none may crash
                if detected:
                    outcome = "detected"
                elif result == baseline:
                    outcome = "harmless"
                else:
                    outcome = "MISSED"
                    missed.append((rel, pos, mask))
                counts.setdefault(kind, Counter())[outcome] += 1
                _put_back(root, saved)
    summary = {k: dict(c) for k, c in sorted(counts.items())}
    print("bit-rot flips per kind:", summary)
    assert not missed, (missed[:10], summary)
    assert set(counts) == {"objects", "manifests", "pins", "config", "caches"}
    assert (_tree_hash(prefix), _tree_hash(channel.path)) == outside  # nothing outside changed
    assert check_store(Store(root)).ok
