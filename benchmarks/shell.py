"""What the bash/zsh snippets cost: sourcing them, and a non-mutating command through the wrapper.

    python benchmarks/shell.py [--runs N]

Measured inside one shell per row (EPOCHREALTIME around each step, medians over N runs), with
fake `conda`/`mamba`/`micromamba` executables (/bin/sh scripts) so only the shell's own work
differs between the two columns:
  source        `. snippet` with the tools on PATH                          (target <= 2 ms)
  source+func   the same with a `conda` shell function already defined, as conda.sh leaves it
  direct        `\\command conda list` / `\\command mamba list`: the executable alone
  wrapped       `conda list` / `mamba list` through the wrapper             (added: target <= 1 ms)
For scale, the last column is one guarded command (`conda install` into a missing env), which
starts Python.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conda_safeguard.cli.shellcmd import render  # noqa: E402

FAKE = '#!/bin/sh\nexit 0\n'

# Each step prints "<label> <t0> <t1>"; $1 is the snippet, $2 the number of runs.
SCRIPT = r"""
__bench_reset() {
    for __f in conda mamba micromamba __safeguard_orig_conda; do
        if [ -n "$(typeset -f "$__f" 2>/dev/null)" ]; then unset -f "$__f"; fi
    done
}
__bench_conda_sh() { :; }
i=0
while [ "$i" -lt "$2" ]; do
    __bench_reset
    t0=$EPOCHREALTIME; . "$1"; t1=$EPOCHREALTIME
    echo "source $t0 $t1"
    __bench_reset
    conda() { __bench_conda_sh "$@"; }
    t0=$EPOCHREALTIME; . "$1"; t1=$EPOCHREALTIME
    echo "source+func $t0 $t1"
    i=$((i + 1))
done
__bench_reset
. "$1"
i=0
while [ "$i" -lt "$2" ]; do  # interleaved, the order swapped every run
    for tool in conda mamba; do
        if [ $((i % 2)) = 0 ]; then
            t0=$EPOCHREALTIME; \command "$tool" list; t1=$EPOCHREALTIME
            echo "direct $t0 $t1"
        fi
        t0=$EPOCHREALTIME; "$tool" list; t1=$EPOCHREALTIME
        echo "wrapped $t0 $t1"
        if [ $((i % 2)) = 1 ]; then
            t0=$EPOCHREALTIME; \command "$tool" list; t1=$EPOCHREALTIME
            echo "direct $t0 $t1"
        fi
    done
    i=$((i + 1))
done
t0=$EPOCHREALTIME; conda install -n safeguard-bench-missing x 2>/dev/null; t1=$EPOCHREALTIME
echo "guarded $t0 $t1"
"""


def measure(shell: str, snippet: Path, runs: int, env: dict[str, str]) -> dict[str, float]:
    if shell == "bash":
        argv = ["bash", "--noprofile", "--norc", "-c", SCRIPT, "bench", str(snippet), str(runs)]
    else:
        argv = ["zsh", "--no-rcs", "-c", "zmodload zsh/datetime; " + SCRIPT, "bench",
                str(snippet), str(runs)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    samples: dict[str, list[float]] = {}
    for line in out.splitlines():
        label, t0, t1 = line.split()
        samples.setdefault(label, []).append((float(t1) - float(t0)) * 1000)
    return {label: statistics.median(values) for label, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    shells = [s for s in ("bash", "zsh") if shutil.which(s)]
    with tempfile.TemporaryDirectory(prefix="safeguard-bench-") as tmp:
        fakebin = Path(tmp, "bin")
        fakebin.mkdir()
        for tool in ("conda", "mamba", "micromamba"):
            (fakebin / tool).write_text(FAKE)
            (fakebin / tool).chmod(0o755)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDA", "MAMBA"))}
        env.update(PATH=f"{fakebin}{os.pathsep}{env['PATH']}",
                   CONDA_SAFEGUARD_HOME=str(Path(tmp, "store")), HOME=tmp,
                   CONDA_SAFEGUARD_ROOT=str(Path(tmp, "no-root")))
        print(f"medians of {args.runs} runs, milliseconds; fake executables; {sys.executable}")
        print(f"{'shell':<6} {'source':>8} {'source+func':>12} {'direct':>8} {'wrapped':>8} "
              f"{'added':>7}   {'guarded (Python)':>16}")
        for shell in shells:
            snippet = Path(tmp, f"snippet.{shell}")
            snippet.write_text(render(shell))
            m = measure(shell, snippet, args.runs, env)
            added = m["wrapped"] - m["direct"]
            print(f"{shell:<6} {m['source']:8.3f} {m['source+func']:12.3f} {m['direct']:8.3f} "
                  f"{m['wrapped']:8.3f} {added:7.3f}   {m['guarded']:16.1f}")
        print("targets: source <= 2 ms, added <= 1 ms (no Python started for `list`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
