"""Many nodes through Slurm, the scheduler GPU clusters run: a one-host cluster from Debian's
packages (munged, slurmctld, slurmd, started here in a temp dir on free ports, stopped after),
`srun` runs `fingerprint --json` as three tasks, each on its own env prefix and writing its own
file (`--output`), and `compare` finds the task whose env differs.

Debian's Slurm is built without multiple-slurmd support, so the three "nodes" are three tasks of
one node; what is tested is the README's pattern: srun fans out, each task writes fp/<id>.json.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conda_safeguard.__main__ import main
from tests.factory import add_pip_package, install_env

_TOOLS = ("munged", "slurmctld", "slurmd", "srun", "sinfo")
_MISSING = [t for t in _TOOLS if shutil.which(t) is None]

# .ci/run installs Slurm where apt-get is there; elsewhere the test skips, saying what is missing.
pytestmark = [
    pytest.mark.skipif(bool(_MISSING),
                       reason=f"Slurm is not installed ({', '.join(_MISSING)} missing; "
                              "apt-get install slurmd slurmctld slurm-client munge)"),
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() != 0,
                       reason="this one-host cluster runs slurmd as root (SlurmdUser=root)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(d: Path, host: str) -> str:
    return f"""\
ClusterName=safeguard-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={d}/munge/sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
NodeName={host} CPUs=4 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running one-host Slurm cluster; yields the environment that points srun at it."""
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool"):
        (d / sub).mkdir()
    (d / "munge").chmod(0o700)
    key = d / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(_conf(d, host))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    pid_files = [d / "munge" / "pid", d / "slurmctld.pid", d / "slurmd.pid"]
    try:
        subprocess.run(["munged", "-f", f"--socket={d}/munge/sock", f"--key-file={key}",
                        f"--pid-file={pid_files[0]}", f"--log-file={d}/munged.log",
                        f"--seed-file={d}/munge/seed"], check=True, env=env, timeout=30)
        subprocess.run(["slurmctld", "-f", str(conf)], check=True, env=env, timeout=30)
        subprocess.run(["slurmd", "-f", str(conf)], check=True, env=env, timeout=30)
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                   text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "".join(p.read_text()[-1500:] for p in (d / "slurmctld.log", d / "slurmd.log")
                           if p.exists())
            pytest.fail(f"the one-host Slurm never became idle (state {state!r}):\n{logs}")
        yield env
    finally:
        for pid_file in reversed(pid_files):  # only the daemons this fixture started
            with contextlib.suppress(OSError, ValueError):  # it never started or already left
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        # slurmd does not always leave its pid file behind (seen: slurmd outliving the run):
        # also stop whatever still runs with this fixture's own config path, which no other
        # process can have on its command line.
        for signum in ("TERM", "KILL"):
            if subprocess.run(["pkill", f"-{signum}", "-f", "--", f"-f {conf}"]).returncode != 0:
                break  # nothing left
            time.sleep(1)


def test_srun_fans_out_and_compare_names_the_odd_task(
        slurm: dict[str, str], conda_root: Path, channel, pkg_cache: Path, tmp_path: Path,
        capsys) -> None:
    for task in range(3):
        install_env(conda_root / "envs" / f"ml-{task}", channel, ["python", "liba=1.0", "libb"],
                    cache_dir=pkg_cache)
    install_env(conda_root / "envs" / "ml-2", channel, ["liba=2.0"], cache_dir=pkg_cache)
    add_pip_package(conda_root / "envs" / "ml-0", "plain", "1.0")
    add_pip_package(conda_root / "envs" / "ml-1", "plain", "1.0")
    add_pip_package(conda_root / "envs" / "ml-2", "plain", "1.0")
    fp = tmp_path / "fp"
    fp.mkdir()
    env = {**slurm, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                             slurm["PATH"]])}
    proc = subprocess.run(
        ["srun", "--ntasks=3", f"--output={fp}/%t.json", "sh", "-c",
         f'exec conda-safeguard fingerprint -p "{conda_root}/envs/ml-$SLURM_PROCID" --json '
         '--node "task$SLURM_PROCID"'],
        env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    files = sorted(fp.glob("*.json"))
    assert [f.name for f in files] == ["0.json", "1.json", "2.json"]

    capsys.readouterr()
    code = main(["compare", *map(str, files)])
    out = capsys.readouterr().out
    assert code == 1, out
    rows = {line.split()[0]: line for line in out.splitlines()[2:5]}
    assert rows["task0"].endswith("same") and rows["task1"].endswith("same")
    assert rows["task2"].endswith("DIFFERS: ~liba (version/sha256)")
    assert "task2 vs baseline: differs (1 changed): 3 conda and 1 pip packages compared" in out
