"""How fast is a snapshot, and what does it cost in store bytes? Measured side by side in one run.

    /work/ext/dev/bin/python benchmarks/snapshot.py [--packages 300] [--files 50] [--profile]

Builds a channel of N packages x F files (tests/factory.big_channel), installs them all into one
env with py-rattler, then times conda-safeguard's backup():

- warm: the env has not changed since its last snapshot (the common case before every conda
  command); median of many runs, in process;
- changed: one package was updated since the last snapshot; median of several runs;
- the same as a `conda-safeguard backup` subprocess (interpreter start-up included);
- where real conda is named by CONDA_SAFEGUARD_TEST_CONDA: `conda env export` plus
  `conda list --explicit --md5`, the two commands a user would run to keep the same information,
  each as a subprocess, and the ratios.

Also prints the bytes one snapshot adds to the store for an unchanged env and for a one-package
change. Targets: warm <= 30 ms median, >= 20x faster than the two conda commands, 0 bytes for an
unchanged env.

Prune under load: --loops processes back up the env without pause (the store's shared lock is
never free), and prune is run --prune-runs times; its wait for the exclusive lock is measured
through the gate (what prune does) and, side by side, taking the lock without the gate (what it
did before the gate), with a --no-gate-timeout each. Target: worst wait through the gate under a
few seconds, 0 timeouts.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.timing import median_ms, timed, with_bytecode  # noqa: E402
from conda_safeguard.backup import backup  # noqa: E402
from conda_safeguard.condarc import Settings  # noqa: E402
from conda_safeguard.prefix import RACY_NS  # noqa: E402
from conda_safeguard.store import Store  # noqa: E402
from conda_safeguard.wheels import wheel_keeper  # noqa: E402
from tests.factory import (  # noqa: E402
    PYTHON_SITE_PACKAGES,
    add_pip_packages,
    big_channel,
    install_env,
    write_condarc,
)


def settle(prefix: Path) -> None:
    """Wait until the env's files are older than the racy window: a snapshot does not trust the
    stat of a file changed within it (a second change in the same timestamp tick could hide)."""
    newest = max(p.stat().st_mtime_ns for p in
                 [*(prefix / "conda-meta").iterdir(), prefix / PYTHON_SITE_PACKAGES])
    wait = (newest + RACY_NS - time.time_ns()) / 1e9 + 0.05
    if wait > 0:
        time.sleep(wait)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packages", type=int, default=300)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--warm-runs", type=int, default=50)
    ap.add_argument("--changed-runs", type=int, default=9)
    ap.add_argument("--profile", action="store_true", help="cProfile the warm and changed paths")
    ap.add_argument("--loops", type=int, default=6, help="backup loops for prune under load")
    ap.add_argument("--prune-runs", type=int, default=5)
    ap.add_argument("--no-gate-timeout", type=float, default=10.0)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    home = work / "home"
    home.mkdir()
    os.environ.update(HOME=str(home), CONDARC=str(work / "condarc"),
                      CONDA_SAFEGUARD_HOME=str(work / "store"), XDG_DATA_HOME=str(home / "data"),
                      XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"))
    for var in ("CONDA_PREFIX", "CONDA_ENVS_PATH", "CONDA_PKGS_DIRS"):
        os.environ.pop(var, None)
    write_condarc(work / "condarc", solver="classic", channels=[], auto_update_conda=False,
                  notify_outdated_conda=False, add_pip_as_python_dependency=False,
                  pkgs_dirs=[work / "conda-pkgs"])

    t = time.perf_counter()
    ch = big_channel(work / "channel", args.packages, args.files)
    # new versions of one package: each measured change leads to a state never stored before
    versions = [f"1.{i}" for i in range(1, args.changed_runs + 1)]
    for v in versions:
        ch.add("big0000", v, files={f"share/big0000/f{j:03d}.txt": f"v{v}\n".encode()
                                    for j in range(args.files)})
    ch.index()
    build_s = time.perf_counter() - t
    prefix = work / "envs" / "big"
    cache = work / "rattler-pkgs"
    specs = ["python", "big0000=1.0", *[f"big{i:04d}" for i in range(1, args.packages)]]
    t = time.perf_counter()
    install_env(prefix, ch, specs, cache_dir=cache)
    add_pip_packages(prefix, [{"name": f"pipdist{i}", "version": "1.0"} for i in range(5)])
    install_s = time.perf_counter() - t
    n_files = sum(1 for p in prefix.rglob("*") if p.is_file())
    n_records = len(list((prefix / "conda-meta").glob("*.json")))
    print(f"env: {n_records} conda packages + 5 pip, {n_files} files "
          f"(channel built in {build_s:.1f}s, installed in {install_s:.1f}s)")

    store = Store.open(work / "store")

    keep_wheels = wheel_keeper(Settings())  # the 5 pip dists kept as wheels, as the CLI does

    def snap(**kw: object):
        return backup(store, prefix, env_name="big", argv=["bench"], keep_wheels=keep_wheels,
                      **kw)

    first_s = timed(snap)
    print(f"first snapshot (cold, writes everything):     {first_s * 1000:8.1f} ms, "
          f"store {dir_bytes(store.root / 'objects') + dir_bytes(store.root / 'snapshots')} bytes")

    settle(prefix)
    snap()  # the first look after the racy window records the stat key
    objects_before = dir_bytes(store.root / "objects") + dir_bytes(store.root / "snapshots")
    warm = [timed(snap) for _ in range(args.warm_runs)]
    result = snap()
    unchanged_added = (dir_bytes(store.root / "objects") + dir_bytes(store.root / "snapshots")
                       - objects_before)
    assert not result.created
    print(f"snapshot, unchanged env (warm, in process):   {median_ms(warm)}")

    changed = []
    change_bytes = []
    for v in versions:
        install_env(prefix, ch, [f"big0000={v}"], cache_dir=cache)
        settle(prefix)  # as before a later conda command; a change seconds ago reads more
        t = time.perf_counter()
        r = snap()
        changed.append(time.perf_counter() - t)
        assert r.created
        change_bytes.append(r.bytes_added)
    print(f"snapshot, one package changed (in process):   {median_ms(changed)}")

    install_env(prefix, ch, ["big0000=1.0"], cache_dir=cache)
    racy = [timed(snap)]
    print(f"snapshot right after a change (< 2 s, reads every record): "
          f"{racy[0] * 1000:.1f} ms")
    settle(prefix)
    snap()

    sub_env = with_bytecode(os.environ, work)  # one untimed call each fills it

    def run(argv: list[str]) -> None:
        subprocess.run(argv, check=True, capture_output=True, env=sub_env)

    cli = [sys.executable, "-m", "conda_safeguard", "backup", "-p", str(prefix), "-q"]
    run(cli)
    sub = [timed(lambda: run(cli)) for _ in range(9)]
    print(f"`conda-safeguard backup` subprocess (warm):  {median_ms(sub)}")
    bare = [timed(lambda: run([sys.executable, "-c", "pass"])) for _ in range(9)]
    print(f"  of which a bare `python -c pass`:          {median_ms(bare)}")

    print(f"bytes added by a snapshot of the unchanged env: {unchanged_added} "
          f"(bytes_added reported: {result.bytes_added})")
    print(f"bytes added by a one-package change:            median "
          f"{int(statistics.median(change_bytes))} (min {min(change_bytes)}, "
          f"max {max(change_bytes)})")

    conda = os.environ.get("CONDA_SAFEGUARD_TEST_CONDA")
    if conda:
        def conda_pair() -> None:
            for cmd in (["env", "export", "-p", str(prefix)],
                        ["list", "--explicit", "--md5", "-p", str(prefix)]):
                run([conda, *cmd])

        conda_pair()
        pair = [timed(conda_pair) for _ in range(5)]
        c = statistics.median(pair)
        print(f"conda env export + conda list --explicit --md5: {median_ms(pair)}")
        print(f"ratio vs warm backup() in process:          {c / statistics.median(warm):7.1f}x")
        print(f"ratio vs changed backup() in process:       {c / statistics.median(changed):7.1f}x")
        print(f"ratio vs `conda-safeguard backup` process:  {c / statistics.median(sub):7.1f}x")
    else:
        print("conda: not measured (set CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda)")

    prune_under_load(store, prefix, args.loops, args.prune_runs, args.no_gate_timeout)

    if args.profile:
        for label, fn in (("warm", snap), ("changed", lambda: snap(force=True))):
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(20):
                fn()
            prof.disable()
            print(f"\n--- profile: {label} x20")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
    return 0


def _loop(root: str, prefix: str, stop: Any, count: Any) -> None:
    store = Store.open(Path(root))
    while not stop.is_set():
        backup(store, Path(prefix), env_name="big", reason="loop", force=True)
        with count.get_lock():
            count.value += 1


def prune_under_load(store: Store, prefix: Path, loops: int, runs: int, timeout: float) -> None:
    """Worst wait of prune for the exclusive lock while `loops` processes back up non-stop."""
    import multiprocessing

    from conda_safeguard.exceptions import StoreLockTimeout
    from conda_safeguard.fs import file_lock
    from conda_safeguard.retention import RetentionPolicy, prune

    ctx = multiprocessing.get_context("fork")
    stop, count = ctx.Event(), ctx.Value("i", 0)
    procs = [ctx.Process(target=_loop, args=(str(store.root), str(prefix), stop, count))
             for _ in range(loops)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # the loops are up
    gated: list[float] = []
    bare: list[float] = []
    timeouts = 0
    try:
        for _ in range(runs):
            time.sleep(0.5)  # the loops back in full swing after the last prune
            t0 = time.perf_counter()
            with store.exclusive_lock():
                gated.append(time.perf_counter() - t0)
            prune(store, RetentionPolicy(3, 0, 0))  # and a real prune, which must succeed
            time.sleep(0.5)
            t0 = time.perf_counter()
            try:
                with file_lock(store.root / "lock", exclusive=True, timeout=timeout, quiet=True):
                    bare.append(time.perf_counter() - t0)
            except StoreLockTimeout:
                timeouts += 1
                bare.append(timeout)
    finally:
        stop.set()
        for p in procs:
            p.join(60)
    n = len(store.snapshots())
    print(f"prune under {loops} backup loops ({runs} runs; {count.value} backups meanwhile, "
          f"{n} snapshots at the end):")
    print(f"  wait for the lock through the gate:   {median_ms(gated)}; worst "
          f"{max(gated) * 1000:.0f} ms")
    print(f"  without the gate (timeout {timeout:g}s): {median_ms(bare)}; worst "
          f"{max(bare) * 1000:.0f} ms, {timeouts} of {runs} timed out")


if __name__ == "__main__":
    sys.exit(main())
