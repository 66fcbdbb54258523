"""What the plugin costs inside real conda, measured side by side in one run.

    CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda python benchmarks/hook_overhead.py [--runs N]

Prints medians of `conda list` and `conda info --envs` with our plugin vs the same conda with
every other plugin but ours (conda runs through a small runner that, on the "without" side,
hides our distribution from conda's entry-point scan, so both sides pay that scan), and the
added time of a `conda install` into a protected env, snapshot included. `CONDA_NO_PLUGINS=true`
is shown too for reference: it also skips the scan itself. Runs are interleaved so machine noise
hits every side alike. Target: ratio <= 1.02 for the read-only commands.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.factory import LocalChannel, install_env, write_condarc  # noqa: E402

# Runs conda's CLI; with "hide" as first argument our distribution is invisible to conda.
RUNNER = """
import sys
hide = sys.argv.pop(1) == "hide"
import conda.plugins.manager as manager
if hide:
    everything = manager.distributions
    manager.distributions = lambda **kw: (
        d for d in everything(**kw) if (d.metadata["Name"] or "").lower() != "conda-safeguard")
from conda.cli import main
sys.exit(main())
"""


def conda_python(conda: str) -> str:
    """The Python that runs `conda` (its shebang, or the -m launcher's interpreter)."""
    with open(conda, "rb") as f:
        first = f.readline().decode().strip()
    if first.startswith("#!") and "python" in first:
        return first[2:].split()[0]
    text = Path(conda).read_text(errors="replace")
    for word in text.split():
        if word.endswith(("python", "python3")) and os.path.exists(word):
            return word
    raise SystemExit(f"cannot tell which Python runs {conda}")


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    conda = os.environ.get("CONDA_SAFEGUARD_TEST_CONDA") or shutil.which("conda")
    if not conda:
        print("hook_overhead: needs real conda (set CONDA_SAFEGUARD_TEST_CONDA); nothing measured")
        return 0
    work = Path(tempfile.mkdtemp(prefix="sg-bench-hook-"))
    try:
        home = work / "home"
        home.mkdir()
        root = work / "root"
        (root / "envs").mkdir(parents=True)
        channel = LocalChannel(work / "channel")
        channel.add("python", "3.11.7", files={"lib/python3.11/site-packages/.keep": b""})
        for version in ("1.0", "2.0"):
            channel.add("liba", version)
        for i in range(40):
            channel.add(f"lib{i:02d}", "1.0")
        channel.index()
        prefix = root / "envs" / "keep"
        install_env(prefix, channel, ["python", "liba=1.0", *[f"lib{i:02d}" for i in range(40)]],
                    cache_dir=work / "rattler-cache")
        condarc = write_condarc(home / ".condarc", solver="classic", channels=[],
                                auto_update_conda=False, notify_outdated_conda=False,
                                add_pip_as_python_dependency=False, envs_dirs=[root / "envs"],
                                pkgs_dirs=[work / "pkgs"])
        # conda installs ship .pyc files: let the first (warm-up) run write them
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith("CONDA_PLUGINS_") and k != "PYTHONDONTWRITEBYTECODE"}
        base_env.update(HOME=str(home), CONDARC=str(condarc),
                        CONDA_SAFEGUARD_HOME=str(work / "store"))
        python = conda_python(conda)
        ours_argv = [python, "-c", RUNNER, "show"]
        hidden_argv = [python, "-c", RUNNER, "hide"]
        no_plugins = {**base_env, "CONDA_NO_PLUGINS": "true"}
        print(f"conda: {conda} ({python}); {args.runs} interleaved runs each; medians\n")
        print(f"{'command':<30}{'with ours':>11}{'without ours':>14}{'ratio':>7}"
              f"{'no plugins':>12}")
        for label, words in (("conda list -n keep", ["list", "-n", "keep"]),
                             ("conda info --envs", ["info", "--envs"])):
            ours, theirs, bare = [], [], []
            timed([*ours_argv, *words], base_env)  # warm the OS caches
            for _ in range(args.runs):
                ours.append(timed([*ours_argv, *words], base_env))
                theirs.append(timed([*hidden_argv, *words], base_env))
                bare.append(timed([*ours_argv, *words], no_plugins))
            a, b, c = (statistics.median(x) for x in (ours, theirs, bare))
            print(f"{label:<30}{a * 1000:>9.0f}ms{b * 1000:>12.0f}ms{a / b:>7.3f}"
                  f"{c * 1000:>10.0f}ms")
        install = ["install", "-n", "keep", "-y", "--offline", "--override-channels",
                   "-c", channel.url]
        ours, theirs = [], []
        for _ in range(args.runs):
            # each side flips liba, so every install changes the env (and ours snapshots it)
            ours.append(timed([*ours_argv, *install, "liba=2.0"], base_env))
            theirs.append(timed([*hidden_argv, *install, "liba=1.0"], base_env))
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{'conda install (protected env)':<30}{a * 1000:>9.0f}ms{b * 1000:>12.0f}ms"
              f"{a / b:>7.3f}")
        print(f"\nadded by the plugin to a protected install (snapshot included): "
              f"{(a - b) * 1000:.0f} ms median")
        snapshots = list((work / "store" / "snapshots").glob("*.json"))
        print(f"snapshots taken during the install runs: {len(snapshots)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
