"""How fast is `conda-safeguard restore` next to what conda offers? Measured side by side.

A 300-package env (factory.big_channel: 300 packages x 50 files, ~15k files) is snapshotted
once. Then, interleaved, each round times:

  ours          restore of the deleted env (package files from conda's cache / our pins)
  clone         `conda create --clone` of the live env              (target: ours <= 1.1x)
  env-create    `conda env create -f environment.yml --offline`     (target: ours >= 5x faster)
  ours-cleaned  our restore with conda's package cache gone (pins)   (target: <= 1.5x clone)

"ours" installs with conda when conda is there (the default order); the same restores with
CONDA_SAFEGUARD_INSTALLER=rattler are timed too, for reference.

conda comes from CONDA_SAFEGUARD_TEST_CONDA (run with an isolated HOME and CONDARC, classic
solver). Without it only our own times are printed (with the py-rattler installer).

    CONDA_SAFEGUARD_TEST_CONDA=/work/ext/bin/conda python benchmarks/restore.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factory import big_channel, install_env, make_conda_package_cache, write_condarc  # noqa: E402


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout}\n"
                         f"{proc.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=300)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    conda_exe = os.environ.get("CONDA_SAFEGUARD_TEST_CONDA")
    conda = shutil.which(conda_exe) if conda_exe else None
    work = Path(tempfile.mkdtemp(prefix="cs-bench-restore-"))
    try:
        return bench(work, conda, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def bench(work: Path, conda: str | None, args: argparse.Namespace) -> int:
    home, root, pkgs = work / "home", work / "root", work / "pkgs"
    for d in (home, root / "conda-meta", root / "envs"):
        d.mkdir(parents=True)
    condarc = write_condarc(work / "condarc", solver="classic", channels=[],
                            auto_update_conda=False, notify_outdated_conda=False,
                            add_pip_as_python_dependency=False, envs_dirs=[root / "envs"],
                            pkgs_dirs=[pkgs])
    env = {**os.environ, "HOME": str(home), "CONDARC": str(condarc),
           "CONDA_SAFEGUARD_HOME": str(work / "store"), "CONDA_SAFEGUARD_ROOT": str(root),
           "CONDA_SAFEGUARD_INSTALLER": "conda" if conda else "rattler",
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local")}
    if conda:
        env["CONDA_EXE"] = conda
    for var in ("CONDA_PREFIX", "CONDA_PKGS_DIRS", "CONDA_ENVS_PATH", "CONDA_SHLVL"):
        env.pop(var, None)

    t0 = time.perf_counter()
    channel = big_channel(work / "channel", args.packages, args.files)
    names = ["python"] + [f"big{i:04d}" for i in range(args.packages)]
    import json

    repodata = json.loads((channel.path / "noarch" / "repodata.json").read_text())
    make_conda_package_cache(pkgs, channel, [{**e, "fn": fn} for fn, e in
                                             repodata["packages"].items()])
    live = root / "envs" / "big"
    install_env(live, channel, names, cache_dir=pkgs)
    ours = [sys.executable, "-m", "conda_safeguard"]
    run([*ours, "backup", "-p", str(live), "--quiet"], env)
    yml = work / "environment.yml"
    yml.write_text(subprocess.run([*ours, "show", "big"], env=env, capture_output=True,
                                  text=True, check=True).stdout)
    print(f"setup: {args.packages} packages x {args.files} files, "
          f"{sum(len(f) for _, _, f in os.walk(live))} files in the env "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    target = root / "envs" / "restored"
    times: dict[str, list[float]] = {}

    def measure(label: str, fn: Callable[[], None]) -> None:
        shutil.rmtree(target, ignore_errors=True)
        times.setdefault(label, []).append(timed(fn))
        print(f"  {label:<20} {times[label][-1]:6.2f} s", file=sys.stderr)

    restore = [*ours, "restore", "big", "-p", str(target), "--yes", "--offline", "--quiet"]
    # with conda there, ours installs with conda (the default); py-rattler's times for reference
    rattler_env = {**env, "CONDA_SAFEGUARD_INSTALLER": "rattler"}
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
        measure("ours", lambda: run(restore, env))
        if conda:
            measure("ours-rattler", lambda: run(restore, rattler_env))
            measure("clone", lambda: run([conda, "create", "-p", str(target), "--clone",
                                          str(live), "--offline", "--yes", "--quiet"], env))
            measure("env-create", lambda: run([conda, "env", "create", "-p", str(target), "-f",
                                               str(yml), "--offline", "--yes", "--quiet"], env))
        off = pkgs.with_name("pkgs.cleaned")
        pkgs.rename(off)  # `conda clean --all`, reversibly
        try:
            measure("ours-cleaned", lambda: run(restore, env))
            if conda:
                measure("ours-rattler-cleaned", lambda: run(restore, rattler_env))
        finally:
            shutil.rmtree(pkgs, ignore_errors=True)  # what a run may have recreated
            off.rename(pkgs)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedians over {args.rounds} rounds ({args.packages}-package env, installer: "
          f"{'conda' if conda else 'py-rattler'}):")
    for k, v in med.items():
        print(f"  {k:<20} {v:6.2f} s")
    if not conda:
        print("ratios against conda need real conda: set CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda")
        return 0
    print("ratios (ours = installer conda; ours-rattler = CONDA_SAFEGUARD_INSTALLER=rattler):")
    for who in ("ours", "ours-rattler"):
        checks = [(f"{who} / clone", med[who] / med["clone"], "<=", 1.1),
                  (f"env-create / {who}", med["env-create"] / med[who], ">=", 5.0),
                  (f"{who}-cleaned / clone", med[f"{who}-cleaned"] / med["clone"], "<=", 1.5)]
        for label, ratio, op, goal in checks:
            met = ratio <= goal if op == "<=" else ratio >= goal
            print(f"  {label:<28} {ratio:5.2f}x  (target {op} {goal}x: "
                  f"{'met' if met else 'MISSED'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
