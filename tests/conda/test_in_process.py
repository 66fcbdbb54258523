"""Runs tests/conda/in_conda_process.py inside each conda root's own interpreter, where conda
runs in-process (conda's `conda_cli` and `tmp_env` fixtures): the plugin is exercised as embedded
conda runs it, with another program's sys.argv."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

INNER = Path(__file__).with_name("in_conda_process.py")


def root_python(conda_exe: list[str], conda_root_prefix: Path | None) -> str:
    if conda_root_prefix is not None:
        return str(conda_root_prefix / "bin" / "python")
    if len(conda_exe) > 1:  # [python, -m, conda]
        return conda_exe[0]
    first = Path(conda_exe[0]).read_text(errors="replace").splitlines()[0]
    return first[2:].strip().split()[0]  # the conda script's #! interpreter


def test_conda_in_process(conda_exe, conda_root_prefix, conda_roots, conda_version, make_env,
                          conda_condarc, conda_root, channel, tmp_path):
    python = root_python(conda_exe, conda_root_prefix)
    conda_roots.ensure_pytest(python)
    make_env("keep")
    # conda's fixtures: a module of conda.testing from 24.x on, the package itself on 23.x
    fixtures = "conda.testing" if conda_version < (24,) else "conda.testing.fixtures"
    env = {**os.environ, "CONDARC": str(conda_condarc), "IN_CONDA_CHANNEL": channel.url,
           "IN_CONDA_ENVS": str(conda_root / "envs"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    # cwd outside the checkout and importlib mode: the plugin imported is the installed one
    proc = subprocess.run(
        [python, "-m", "pytest", "-q", "--noconftest", "-p", fixtures, "-p", "no:cacheprovider",
         "-o", "addopts=",  # pytest finds this checkout's pyproject.toml above INNER
         "--import-mode=importlib", "--rootdir", str(tmp_path), str(INNER)],
        env=env, cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) == 7, summary
    assert sys.executable != python  # it really ran in the root's interpreter
