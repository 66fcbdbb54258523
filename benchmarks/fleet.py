"""Fleet benchmarks: the verbs that keep many nodes and many envs in step. Medians, side by side.

    .venv/bin/python benchmarks/fleet.py [--only fingerprint,verify] [--packages 300] [--runs 30]

Each section is one function registered with @section(NAME); `--only` picks sections (default:
all). Sections share one work dir and one big env (`Bench.big_env()`: N packages x F files from
tests/factory.big_channel, installed with py-rattler, plus 5 pip dists), built on first use.

- fingerprint: `read_package_set() + fingerprint()` in process on the big env (target <= 30 ms
  median), and the `conda-safeguard fingerprint` subprocess.
- verify: `conda-safeguard verify --against explicit.txt` next to what a user runs by hand,
  `conda list --explicit --md5` into a file and `diff` (needs CONDA_SAFEGUARD_TEST_CONDA).
- backup-all: `backup --all -q` (the scheduled job) over 50 unchanged envs (target <= 2 s).
- pack: pack vs plain conda-pack on the big env (target <= 1.1x), unpack vs tar -x +
  conda-unpack; gzip and zstd.
Real conda is named by CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda; without it those lines say so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.timing import median_ms, timed, with_bytecode  # noqa: E402
from tests.factory import (  # noqa: E402
    LocalChannel,
    add_pip_packages,
    big_channel,
    install_env,
    write_condarc,
)

SECTIONS: dict[str, Callable[[Bench], None]] = {}


def section(name: str) -> Callable[[Callable[[Bench], None]], Callable[[Bench], None]]:
    def register(fn: Callable[[Bench], None]) -> Callable[[Bench], None]:
        SECTIONS[name] = fn
        return fn
    return register





def settle(prefix: Path) -> None:
    """Wait until conda-meta is older than the racy window: record caches do not trust a file
    changed within it (see prefix.RACY_NS)."""
    from conda_safeguard.prefix import RACY_NS

    newest = max(p.stat().st_mtime_ns for p in (prefix / "conda-meta").iterdir())
    wait = (newest + RACY_NS - time.time_ns()) / 1e9 + 0.05
    if wait > 0:
        time.sleep(wait)


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    conda: str | None = os.environ.get("CONDA_SAFEGUARD_TEST_CONDA") or None
    _cache: dict[str, object] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return int(self.args.runs)

    def sub_env(self) -> dict[str, str]:
        return with_bytecode(os.environ, self.work)

    def run(self, argv: list[str], *, ok_codes: tuple[int, ...] = (0,)) -> str:
        p = subprocess.run(argv, capture_output=True, text=True, env=self.sub_env())
        if p.returncode not in ok_codes:
            raise SystemExit(f"{argv[:4]} exited {p.returncode}: {p.stderr[-500:]}")
        return p.stdout

    def ours(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "conda_safeguard", *argv]

    def channel(self) -> LocalChannel:
        if "channel" not in self._cache:
            t = time.perf_counter()
            self._cache["channel"] = big_channel(self.work / "channel", self.args.packages,
                                                 self.args.files)
            print(f"(channel of {self.args.packages} packages x {self.args.files} files built "
                  f"in {time.perf_counter() - t:.1f}s)")
        return self._cache["channel"]  # type: ignore[return-value]

    def big_env(self) -> Path:
        """One env holding every package of the channel plus 5 pip dists."""
        if "big_env" not in self._cache:
            prefix = self.work / "envs" / "big"
            specs = ["python", *[f"big{i:04d}" for i in range(self.args.packages)]]
            t = time.perf_counter()
            install_env(prefix, self.channel(), specs, cache_dir=self.work / "rattler-pkgs")
            add_pip_packages(prefix, [{"name": f"pipdist{i}", "version": "1.0"}
                                      for i in range(5)])
            n = len(list((prefix / "conda-meta").glob("*.json")))
            print(f"(env: {n} conda packages + 5 pip, installed in "
                  f"{time.perf_counter() - t:.1f}s)")
            self._cache["big_env"] = prefix
        return self._cache["big_env"]  # type: ignore[return-value]


# --------------------------------------------------------------------------------- sections


@section("fingerprint")
def bench_fingerprint(b: Bench) -> None:
    from conda_safeguard.fingerprint import read_package_set
    from conda_safeguard.prefix import read_records

    prefix = b.big_env()
    read_package_set(prefix).fingerprint()  # page cache warm, as on a node that just ran
    whole = [timed(lambda: read_package_set(prefix).fingerprint()) for _ in range(b.runs)]
    records = [timed(lambda: read_records(prefix)) for _ in range(b.runs)]
    print(f"fingerprint in process, no store (parses every record): {median_ms(whole)}   "
          "target <= 30 ms")
    print(f"  of which read_records (conda-meta JSON):    {median_ms(records)}")
    # after a backup, the store's record cache spares the JSON parsing (as on a node where the
    # plugin snapshots before every conda command)
    from conda_safeguard.backup import backup
    from conda_safeguard.store import Store, prefix_key

    store = Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]))
    settle(prefix)
    backup(store, prefix, env_name="big", argv=["bench"], force=True)
    cache_name = f"records-{prefix_key(prefix)}.json"

    def warm() -> None:
        read_package_set(prefix, store.read_cache(cache_name)).fingerprint()

    warm()
    cached = [timed(warm) for _ in range(b.runs)]
    print(f"fingerprint in process, store's record cache: {median_ms(cached)}   target <= 30 ms")
    print(f"  ratio no store / record cache:              "
          f"{statistics.median(whole) / statistics.median(cached):6.1f}x")
    cli = b.ours("fingerprint", "-p", str(prefix))
    b.run(cli)
    sub = [timed(lambda: b.run(cli)) for _ in range(9)]
    bare = [timed(lambda: b.run([sys.executable, "-c", "pass"])) for _ in range(9)]
    print(f"`conda-safeguard fingerprint` subprocess:     {median_ms(sub)}")
    print(f"  of which a bare `python -c pass`:           {median_ms(bare)}")
    if b.conda:
        conda_list = [b.conda, "list", "--explicit", "--md5", "-p", str(prefix)]
        b.run(conda_list)
        c = [timed(lambda: b.run(conda_list)) for _ in range(5)]
        print(f"`conda list --explicit --md5` subprocess:     {median_ms(c)}")
        print(f"  ratio conda list / fingerprint subprocess:  "
              f"{statistics.median(c) / statistics.median(sub):6.1f}x")
    else:
        print("conda list: not measured (set CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda)")


@section("verify")
def bench_verify(b: Bench) -> None:
    """verify --against an explicit file vs the by-hand check: `conda list --explicit --md5` of
    the env now, then `diff` against the reference file."""
    from conda_safeguard.fingerprint import read_package_set
    from conda_safeguard.fleet import compare_to_reference
    from conda_safeguard.references import load_file

    prefix = b.big_env()
    ref = b.work / "reference-explicit.txt"
    if b.conda:
        ref.write_text(b.run([b.conda, "list", "--explicit", "--md5", "-p", str(prefix)]))
    else:
        b.run(b.ours("backup", "-p", str(prefix), "-q"))
        b.run(b.ours("show", "big", "--format", "explicit", "-o", str(ref), "--force"))

    def in_process() -> None:
        packages = read_package_set(prefix)
        assert compare_to_reference(packages, load_file(ref, platform=packages.platform)).same

    in_process()
    inproc = [timed(in_process) for _ in range(b.runs)]
    print(f"verify --against explicit, in process:        {median_ms(inproc)}")
    cli = b.ours("verify", "-p", str(prefix), "--against", str(ref))
    out = b.run(cli)
    assert "same: " in out, out
    sub = [timed(lambda: b.run(cli)) for _ in range(9)]
    print(f"`conda-safeguard verify --against` subprocess: {median_ms(sub)}")
    if not b.conda:
        print("by hand (conda list --explicit + diff): not measured (set "
              "CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda)")
        return
    now = b.work / "now-explicit.txt"

    def by_hand() -> None:
        now.write_text(b.run([b.conda, "list", "--explicit", "--md5", "-p", str(prefix)]))
        b.run(["diff", "-q", str(ref), str(now)])

    by_hand()
    hand = [timed(by_hand) for _ in range(5)]
    print(f"by hand: conda list --explicit --md5 + diff:  {median_ms(hand)}")
    print(f"  ratio by hand / verify subprocess:          "
          f"{statistics.median(hand) / statistics.median(sub):6.1f}x  (and verify also compares "
          "pip packages and names what differs)")


@section("backup-all")
def bench_backup_all(b: Bench) -> None:
    """`backup --all -q` as the schedule runs it, over 50 envs that have not changed since
    their last snapshot (the common nightly case): target <= 2 s."""
    n_envs = 50
    specs = ["python", *[f"big{i:04d}" for i in range(min(30, b.args.packages))]]
    t = time.perf_counter()
    prefixes = []
    for i in range(n_envs):
        prefix = b.work / "envs" / f"team-env-{i:02d}"
        install_env(prefix, b.channel(), specs, cache_dir=b.work / "rattler-pkgs")
        prefixes.append(prefix)
    print(f"({n_envs} envs of {len(specs)} packages installed in {time.perf_counter() - t:.1f}s)")
    for prefix in prefixes:
        settle(prefix)
    cli = b.ours("backup", "--all", "-q", "--reason", "bench")
    first = timed(lambda: b.run(cli))
    print(f"first `backup --all` (snapshots every env):    {first * 1000:8.1f} ms")
    b.run(cli)
    runs = [timed(lambda: b.run(cli)) for _ in range(9)]
    out = b.run(cli)
    assert out == "", out  # -q: nothing when all is well
    print(f"`backup --all -q`, {n_envs} unchanged envs:        {median_ms(runs)}   target <= 2 s")
    bare = [timed(lambda: b.run([sys.executable, "-c", "pass"])) for _ in range(5)]
    print(f"  of which a bare `python -c pass`:           {median_ms(bare)}")


@section("pack")
def bench_pack(b: Bench) -> None:
    """pack (conda-pack + manifest of every file) vs plain conda-pack on the same env, and
    unpack (verify every file, relocate) vs `tar -x` + conda-unpack. Interleaved runs."""
    import shutil
    from functools import partial

    import conda_pack

    from conda_safeguard.pack import pack
    from conda_safeguard.unpack import unpack

    prefix = b.big_env()
    runs = max(3, min(7, b.runs // 4))
    for compression, fmt in (("gz", "tar.gz"), ("zst", "tar.zst")):
        plain_out = b.work / f"plain.{fmt}"
        ours_out = b.work / f"ours-{compression}.cspack"
        plain, ours = [], []
        run_plain = partial(conda_pack.pack, prefix=str(prefix), output=str(plain_out),
                            format=fmt, force=True)
        run_ours = partial(pack, prefix, ours_out, env_name="big", compression=compression,
                           force=True)
        for _ in range(runs):
            plain.append(timed(run_plain))
            ours.append(timed(run_ours))
        ratio = statistics.median(ours) / statistics.median(plain)
        print(f"[{compression}] conda-pack alone:                {median_ms(plain)}")
        print(f"[{compression}] pack (conda-pack + manifest):    {median_ms(ours)}")
        print(f"[{compression}]   ratio pack / conda-pack:       {ratio:6.2f}x   target <= 1.1x")
        print(f"[{compression}]   sizes: {plain_out.stat().st_size} / {ours_out.stat().st_size} "
              "bytes")

        def plain_unpack(i: int, compression: str = compression,
                         plain_out: Path = plain_out) -> None:
            dest = b.work / f"plain-unpacked-{compression}-{i}"
            dest.mkdir()
            if compression == "gz":
                b.run(["tar", "-xzf", str(plain_out), "-C", str(dest)])
            else:
                b.run(["sh", "-c", f"{sys.executable} -c 'import sys, zstandard; "
                       f"zstandard.ZstdDecompressor().copy_stream(sys.stdin.buffer, "
                       f"sys.stdout.buffer)' < {plain_out} | tar -xf - -C {dest}"])
            b.run([sys.executable, str(dest / "bin" / "conda-unpack")])

        plain_u, ours_u = [], []
        for i in range(runs):
            plain_u.append(timed(partial(plain_unpack, i)))
            ours_u.append(timed(partial(unpack, ours_out,
                                        b.work / f"ours-unpacked-{compression}-{i}")))
        ratio = statistics.median(ours_u) / statistics.median(plain_u)
        print(f"[{compression}] tar -x + conda-unpack:           {median_ms(plain_u)}")
        print(f"[{compression}] unpack (verify every file):      {median_ms(ours_u)}")
        print(f"[{compression}]   ratio unpack / tar+conda-unpack: {ratio:6.2f}x")
        for d in b.work.glob("*-unpacked-*"):
            shutil.rmtree(d)


# ------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    ap.add_argument("--packages", type=int, default=300)
    ap.add_argument("--files", type=int, default=50)
    ap.add_argument("--runs", type=int, default=30, help="samples for in-process medians")
    args = ap.parse_args()
    chosen = args.only.split(",") if args.only else list(SECTIONS)
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")

    work = Path(tempfile.mkdtemp(prefix="cs-fleet-bench-"))
    home = work / "home"
    home.mkdir()
    os.environ.update(HOME=str(home), CONDARC=str(work / "condarc"),
                      CONDA_SAFEGUARD_HOME=str(work / "store"), XDG_DATA_HOME=str(home / "data"),
                      XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"),
                      CONDA_SAFEGUARD_ROOT=str(work))
    for var in ("CONDA_PREFIX", "CONDA_ENVS_PATH", "CONDA_PKGS_DIRS"):
        os.environ.pop(var, None)
    (work / "conda-meta").mkdir()  # the work dir is the root: envs/ holds the bench envs
    write_condarc(work / "condarc", solver="classic", channels=[], auto_update_conda=False,
                  notify_outdated_conda=False, add_pip_as_python_dependency=False,
                  envs_dirs=[work / "envs"], pkgs_dirs=[work / "conda-pkgs"])
    bench = Bench(args, work)
    for name in chosen:
        print(f"\n== {name}")
        SECTIONS[name](bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
