"""Many nodes through a real engine: Ansible runs `fingerprint --json` on three "hosts" (local
connection, each pointing at its own env prefix), collects the documents on the controller, and
`compare` finds the one node whose env differs. The playbook is the README's, run as written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conda_safeguard.__main__ import main
from tests.factory import add_pip_package, install_env

ANSIBLE = shutil.which("ansible-playbook", path=os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))

# The test extra installs ansible-core; a venv made before it was added skips, saying so.
pytestmark = pytest.mark.skipif(ANSIBLE is None,
                                reason="ansible-playbook is not installed (pip install -e "
                                       "'.[test]' brings ansible-core)")

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_playbook() -> str:
    """The Ansible playbook in the README's "Verifying many nodes" section, unindented."""
    text = README.read_text(encoding="utf-8")
    start = text.index("\n    - name: fingerprint the env on every node")
    lines = []
    for line in text[start + 1:].splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def test_ansible_collects_three_nodes_and_compare_names_the_odd_one(
        conda_root: Path, channel, pkg_cache: Path, tmp_path: Path, capsys) -> None:
    prefixes = {}
    for node in ("gpu01", "gpu02", "gpu03"):
        prefixes[node] = conda_root / "envs" / f"ml-{node}"
        install_env(prefixes[node], channel, ["python", "liba=1.0", "libb"], cache_dir=pkg_cache)
    add_pip_package(prefixes["gpu03"], "liba", "9.9")  # a pip install over a conda package

    collect = tmp_path / "fp"  # the playbook writes fp/<node>.json, relative to where it runs
    collect.mkdir()
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("[nodes]\n" + "".join(
        f"{node} ansible_connection=local env_prefix={prefix}\n"
        for node, prefix in prefixes.items()) +
        f"\n[all:vars]\nansible_python_interpreter={sys.executable}\n")
    playbook = tmp_path / "fingerprint.yml"
    playbook.write_text(readme_playbook())
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
           "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONFIG": str(tmp_path / "no-ansible.cfg"), "ANSIBLE_FORKS": "3",
           "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
           # `conda-safeguard` on PATH, as on a node where it is installed
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    proc = subprocess.run([ANSIBLE or "ansible-playbook", "-i", str(inventory), str(playbook)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ok=2" in proc.stdout and "failed=0" in proc.stdout

    files = sorted(collect.glob("*.json"))
    assert [f.stem for f in files] == ["gpu01", "gpu02", "gpu03"]
    docs = [json.loads(f.read_text()) for f in files]
    assert {d["node"] for d in docs} == {"gpu01", "gpu02", "gpu03"}

    capsys.readouterr()
    code = main(["compare", *map(str, files)])
    out = capsys.readouterr().out
    assert code == 1, out
    rows = {line.split()[0]: line for line in out.splitlines()[2:5]}
    assert rows["gpu01"].endswith("same") and rows["gpu02"].endswith("same")
    assert rows["gpu03"].endswith("DIFFERS: !liba (pip over conda)")
    assert "gpu03 vs baseline: differs (1 shadowed)" in out
