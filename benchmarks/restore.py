"""How fast is `conda-safeguard restore` next to what conda offers? Measured side by side.

A 300-package env (factory.big_channel: 300 packages x 50 files, ~15k files) is snapshotted
once. Our restores run conda with safety_checks: enabled (what restore sets unless the user
chose otherwise), so the records carry every file's sha256, and verify every linked file
against them afterwards. conda's own commands run
with conda's defaults and without plugins (conda alone). Interleaved, each round times:

  ours            restore of the deleted env (package files from conda's cache)
  clone           `conda create --clone` of the live env                (target: ours <= 1.1x)
  ours-cleaned    our restore with conda's package cache gone (the store's pins)
  conda-tarballs  `conda create --file explicit.txt --offline` with a package cache holding only
                  the package files, not unpacked: what conda itself does in that case
                  (target: ours-cleaned <= 1.1x)
  ours-extra      our restore with the user's CONDA_EXTRA_SAFETY_CHECKS=true: conda hashes every
                  package file before linking as well (what restore turned on before)
  undo-one        `undo` of a one-package change (liba 2.0 back to 1.0) in the 300-package env:
                  the 301 unchanged packages are kept (checked file by file), conda adds one
  undo-rebuild    the same undo with --rebuild (every package installed afresh)
  install-old     `conda install liba=1.0`: what conda takes to change that one package back
                  (target: undo-one <= 1.5x)
  env-create      `conda env create -f environment.yml --offline` (with --env-create)

The same restores with CONDA_SAFEGUARD_INSTALLER=rattler are timed too (--rattler).
conda comes from CONDA_SAFEGUARD_TEST_CONDA (run with an isolated HOME and CONDARC, classic
solver). Without it only our own times are printed (with the py-rattler installer).

    CONDA_SAFEGUARD_TEST_CONDA=/path/to/root/bin/conda python benchmarks/restore.py [--rounds 3]
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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import timed, with_bytecode  # noqa: E402
from tests.factory import big_channel, install_env, make_conda_package_cache, write_condarc  # noqa: E402


def run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout}\n"
                         f"{proc.stderr}")


def tarball_cache(folder: Path, channel: Any, explicit: Path) -> None:
    """A conda package cache holding the package files only (hardlinked from the channel) and
    urls.txt naming where each came from, as conda leaves it after unpacked folders are gone."""
    folder.mkdir()
    urls = [line.split("#")[0] for line in explicit.read_text().splitlines()
            if line and not line.startswith(("#", "@"))]
    for url in urls:
        name = url.rsplit("/", 1)[1]
        os.link(channel.path / "noarch" / name, folder / name)
    (folder / "urls.txt").write_text("".join(u + "\n" for u in urls))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=300)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rattler", action="store_true",
                        help="also time restores with the py-rattler installer")
    parser.add_argument("--env-create", action="store_true",
                        help="also time `conda env create` (a full classic solve: slow)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--only", metavar="LABELS",
                        help="time only these, comma-separated (e.g. ours,clone: more rounds "
                             "of the main ratio in the same time)")
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
    env = {**with_bytecode(os.environ, work), "HOME": str(home), "CONDARC": str(condarc),
           "CONDA_SAFEGUARD_HOME": str(work / "store"), "CONDA_SAFEGUARD_ROOT": str(root),
           "CONDA_SAFEGUARD_INSTALLER": "conda" if conda else "rattler",
           "XDG_CONFIG_HOME": str(home / ".config"), "XDG_DATA_HOME": str(home / ".local")}
    if conda:
        env["CONDA_EXE"] = conda
    for var in ("CONDA_PREFIX", "CONDA_PKGS_DIRS", "CONDA_ENVS_PATH", "CONDA_SHLVL",
                "CONDA_SAFETY_CHECKS", "CONDA_EXTRA_SAFETY_CHECKS"):
        env.pop(var, None)
    conda_alone = {**env, "CONDA_NO_PLUGINS": "true"}  # conda's own commands, no plugin

    t0 = time.perf_counter()
    channel = big_channel(work / "channel", args.packages, args.files)
    channel.add("liba", "1.0")
    channel.add("liba", "2.0")
    channel.index()
    names = ["python", "liba=1.0"] + [f"big{i:04d}" for i in range(args.packages)]
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
    explicit = work / "explicit.txt"
    explicit.write_text(subprocess.run([*ours, "show", "big", "--format", "explicit"], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    tarballs = work / "tarballs"
    tarball_cache(tarballs, channel, explicit)
    one = root / "envs" / "one"  # for undo of one package
    install_env(one, channel, names, cache_dir=pkgs)
    run([*ours, "backup", "-p", str(one), "--quiet"], env)
    print(f"setup: {args.packages + 2} packages x {args.files} files, "
          f"{sum(len(f) for _, _, f in os.walk(live))} files in the env "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)

    target = root / "envs" / "restored"
    times: dict[str, list[float]] = {}

    only = set(args.only.split(",")) if args.only else None

    def wanted(*labels: str) -> bool:
        return only is None or bool(only.intersection(labels))

    def measure(label: str, fn: Callable[[], None], fresh: bool = True) -> None:
        if only is not None and label not in only:
            return
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        times.setdefault(label, []).append(timed(fn))
        print(f"  {label:<20} {times[label][-1]:6.2f} s", file=sys.stderr)

    restore = [*ours, "restore", "big", "-p", str(target), "--yes", "--offline", "--quiet"]
    extra_env = {**env, "CONDA_EXTRA_SAFETY_CHECKS": "true"}
    rattler_env = {**env, "CONDA_SAFEGUARD_INSTALLER": "rattler"}
    channel_args = ["--offline", "--override-channels", "-c", channel.url, "--yes", "--quiet"]
    undo_env = {**env, "CONDA_SAFEGUARD_ALLOW": "one"}
    # untimed: fills the bytecode cache for our modules and conda's (see with_bytecode)
    run(restore, env)
    shutil.rmtree(target)
    if conda:
        run([conda, "create", "-p", str(target), "--clone", str(live), "--offline", "--yes",
             "--quiet"], conda_alone)
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
        measure("ours", lambda: run(restore, env))
        if args.rattler:
            measure("ours-rattler", lambda: run(restore, rattler_env))
        if conda:
            measure("ours-extra", lambda: run(restore, extra_env))
            measure("clone", lambda: run([conda, "create", "-p", str(target), "--clone",
                                          str(live), "--offline", "--yes", "--quiet"],
                                         conda_alone))
            if args.env_create:
                measure("env-create", lambda: run([conda, "env", "create", "-p", str(target),
                                                   "-f", str(yml), "--offline", "--yes",
                                                   "--quiet"], conda_alone))
        if conda and wanted("undo-one", "undo-rebuild", "install-old"):
            # one package changed, then back: our undo, and conda doing it itself
            run([conda, "install", "-p", str(one), "liba=2.0", *channel_args], conda_alone)
            measure("undo-one", lambda: run([*ours, "undo", "-p", str(one), "--yes",
                                             "--offline", "--quiet"], undo_env), fresh=False)
            run([conda, "install", "-p", str(one), "liba=2.0", *channel_args], conda_alone)
            measure("undo-rebuild", lambda: run([*ours, "undo", "-p", str(one), "--yes",
                                                 "--offline", "--quiet", "--rebuild"],
                                                undo_env), fresh=False)
            run([conda, "install", "-p", str(one), "liba=2.0", *channel_args], conda_alone)
            measure("install-old", lambda: run([conda, "install", "-p", str(one), "liba=1.0",
                                                *channel_args], conda_alone), fresh=False)
            run([*ours, "backup", "-p", str(one), "--quiet"], env)  # liba 1.0 is the latest
        if conda and wanted("conda-tarballs"):  # conda from package files alone
            measure("conda-tarballs", lambda: run(
                [conda, "create", "-p", str(target), "--file", str(explicit), "--offline",
                 "--yes", "--quiet"], {**conda_alone, "CONDA_PKGS_DIRS": str(tarballs)}),
                fresh=True)
            shutil.rmtree(tarballs)
            tarball_cache(tarballs, channel, explicit)  # unpacked by that run: fresh again
        off = pkgs.with_name("pkgs.cleaned")
        if not wanted("ours-cleaned", "ours-rattler-cleaned"):
            continue
        pkgs.rename(off)  # `conda clean --all`, reversibly
        try:
            measure("ours-cleaned", lambda: run(restore, env))
            if args.rattler:
                measure("ours-rattler-cleaned", lambda: run(restore, rattler_env))
        finally:
            shutil.rmtree(pkgs, ignore_errors=True)  # what a run may have recreated
            off.rename(pkgs)

    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\nmedians over {args.rounds} rounds ({args.packages + 2}-package env, installer: "
          f"{'conda, safety_checks enabled' if conda else 'py-rattler'}):")
    for k, v in med.items():
        print(f"  {k:<20} {v:6.2f} s")
    if not conda:
        print("ratios against conda need real conda: set CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda")
        return 0
    print("ratios, side by side in one run:")
    checks = [("ours", "clone", "<=", 1.1), ("ours", "clone", "<=", 0.5),
              ("ours-cleaned", "conda-tarballs", "<=", 1.1),
              ("undo-one", "install-old", "<=", 1.5), ("env-create", "ours", ">=", 5.0),
              ("ours-rattler", "clone", "<=", 1.1), ("ours-rattler-cleaned", "clone", "<=", 1.5)]
    for num, den, op, goal in checks:
        if num in med and den in med:
            ratio = med[num] / med[den]
            met = ratio <= goal if op == "<=" else ratio >= goal
            label = f"{num} / {den}" + (" (moonshot)" if goal == 0.5 else "")
            print(f"  {label:<30} {ratio:5.2f}x  (target {op} {goal}x: "
                  f"{'met' if met else 'MISSED'})")
    if "undo-rebuild" in med and "undo-one" in med:
        print(f"  keeping unchanged packages saves: undo-rebuild / undo-one = "
              f"{med['undo-rebuild'] / med['undo-one']:.2f}x")
    if "ours-cleaned" in med and "clone" in med:
        print(f"  after `conda clean --all`: ours-cleaned / clone = "
              f"{med['ours-cleaned'] / med['clone']:.2f}x")
    if "ours-extra" in med and "ours" in med:
        print(f"  conda's extra checks would cost: ours-extra / ours = "
              f"{med['ours-extra'] / med['ours']:.2f}x ({med['ours-extra'] - med['ours']:+.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
