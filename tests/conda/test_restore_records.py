"""Envs restored with real conda are what conda itself writes, and verify proves it.

The standalone `conda-safeguard` runs from the conda root's own python, as a user installs it
into base (`ROOT/bin/pip install .`): py-rattler is not there, only conda and
conda-package-handling. The channel mixes `.conda` and `.tar.bz2` packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factory import LocalChannel, read_prefix_records

Run = Callable[..., subprocess.CompletedProcess[str]]
TOOL_FILES = {"bin/tool": b"#!/bin/sh\necho tool 0.1\n", "share/tool/README": b"tool 0.1\n",
              "etc/tool/tool.conf": b"verbose = false\n"}


def _root_python(conda_exe: list[str]) -> Path:
    if len(conda_exe) > 1:  # [python, -m, conda]
        return Path(conda_exe[0])
    return Path(os.path.realpath(conda_exe[0])).parent / "python"


@pytest.fixture
def root_python(conda_exe: list[str]) -> Path:
    """The python of the conda root, with conda-safeguard installed and no py-rattler."""
    python = _root_python(conda_exe)
    probe = subprocess.run(
        [str(python), "-c", "import conda_safeguard, importlib.util as u; "
         "print(u.find_spec('rattler') is None)"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"conda-safeguard is not installed into the conda root ({python}): "
                    "run ROOT/bin/pip install . first")
    if probe.stdout.strip() != "True":
        pytest.skip(f"py-rattler is importable in the conda root ({python}); these tests need "
                    "conda's base as users have it, without py-rattler")
    return python


@pytest.fixture
def mixed_channel(tmp_path: Path) -> LocalChannel:
    ch = LocalChannel(tmp_path / "mixed-channel")
    ch.add("liba", "1.0", fmt=".conda")
    ch.add("liba", "2.0", fmt=".conda")
    ch.add("libb", "1.0", depends=["liba"])  # .tar.bz2
    ch.add("tool", "0.1", files=TOOL_FILES, fmt=".conda")
    ch.index()
    return ch


@pytest.fixture
def tools(run_conda: Run, conda_exe: list[str], conda_condarc: Path, conda_root: Path,
          root_python: Path, mixed_channel: LocalChannel, tmp_path: Path):
    env = {**os.environ, "CONDARC": str(conda_condarc), "CONDA_EXE": conda_exe[0],
           "CONDA_SAFEGUARD_INSTALLER": "conda", "CONDA_SAFEGUARD_ROOT": str(conda_root)}
    env.pop("PYTHONPATH", None)
    if len(conda_exe) > 1:  # conda importable: a wrapper script CONDA_EXE can name
        exe = tmp_path / "conda-wrapper"
        exe.write_text(f"#!/bin/sh\nexec {' '.join(conda_exe)} \"$@\"\n")
        exe.chmod(0o755)
        env["CONDA_EXE"] = str(exe)

    def safeguard(*args: str | os.PathLike[str], allow: str | None = None,
                  more_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"CONDA_SAFEGUARD_ALLOW": allow} if allow else {}
        return subprocess.run([str(root_python), "-m", "conda_safeguard", *map(os.fspath, args)],
                              env={**env, **extra, **(more_env or {})}, capture_output=True,
                              text=True,
                              stdin=subprocess.DEVNULL, cwd=tmp_path)

    def conda(*args: str | os.PathLike[str], check: bool = True, allow: str | None = None):
        return run_conda(*args, check=check,
                         env={"CONDA_SAFEGUARD_ALLOW": allow} if allow else None)

    channel_args = ["--offline", "--override-channels", "-c", mixed_channel.url]
    return conda, safeguard, channel_args


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def file_hashes(prefix: Path) -> dict[str, dict[str, str | None]]:
    """package -> {path: sha256 conda recorded for it} from the env's conda-meta records."""
    out = {}
    for name, rec in read_prefix_records(prefix).items():
        paths = (rec.get("paths_data") or {}).get("paths") or []
        out[name] = {p["_path"]: p.get("sha256_in_prefix") or p.get("sha256") for p in paths}
    return out


def test_restored_records_carry_paths_data_like_condas_own(tools, conda_root: Path,
                                                           mixed_channel: LocalChannel) -> None:
    conda, safeguard, channel_args = tools
    prefix = conda_root / "envs" / "rec"
    conda("create", "-p", prefix, *channel_args, "liba=1.0", "libb", "tool", "-y")
    written_by_conda = file_hashes(prefix)
    files = {n: set(r["files"]) for n, r in read_prefix_records(prefix).items()}
    ok(safeguard("backup", "-p", prefix))
    conda("remove", "-p", prefix, "--all", "-y", allow="rec")

    proc = ok(safeguard("restore", "rec", "--yes", "--offline"))
    assert "byte-identical" in proc.stdout, proc.stdout
    restored = file_hashes(prefix)
    assert restored == written_by_conda
    for name, paths in restored.items():  # every file of every package has its sha256
        assert set(paths) == files[name] and all(paths.values()), name
    assert "3 packages, 5 files compared" in proc.stdout  # liba, libb: 1 file each; tool: 3


def test_verify_and_conda_doctor_see_an_altered_file_after_restore(
        tools, conda_root: Path, run_conda: Run) -> None:
    conda, safeguard, channel_args = tools
    prefix = conda_root / "envs" / "alter"
    conda("create", "-p", prefix, *channel_args, "tool", "-y")
    ok(safeguard("backup", "-p", prefix))
    conda("remove", "-p", prefix, "--all", "-y", allow="alter")
    ok(safeguard("restore", "alter", "--yes", "--offline"))
    ok(safeguard("verify", "-p", prefix))
    assert "tool-0.1-0" not in run_conda("doctor", "-p", prefix, check=False,
                                         env={"CONDA_OFFLINE": "true"}).stdout

    conf = prefix / "etc" / "tool" / "tool.conf"
    conf.unlink()  # a new file, not a write through a hardlink into conda's cache
    conf.write_bytes(b"verbose = true\n")
    proc = safeguard("verify", "-p", prefix)
    assert proc.returncode == 1 and "tool: etc/tool/tool.conf: sha256 differs" in proc.stdout
    doctor = run_conda("doctor", "-p", prefix, check=False, env={"CONDA_OFFLINE": "true"})
    if "invalid choice" in doctor.stderr:
        pytest.skip("this conda has no `conda doctor`")
    # conda's altered-files check reads the same paths_data: it names the package, 1 file
    assert "Altered Files" in doctor.stdout and "tool-0.1-0: 1" in doctor.stdout, \
        doctor.stdout + doctor.stderr


def test_conda_pins_restore_offline_after_conda_clean_all(
        tools, conda_root: Path, mixed_channel: LocalChannel, tmp_path: Path) -> None:
    conda, safeguard, channel_args = tools
    prefix = conda_root / "envs" / "pinned"
    conda("create", "-p", prefix, *channel_args, "liba=1.0", "libb", "tool", "-y")
    before = conda("list", "--explicit", "--md5", "-p", prefix).stdout
    assert ".conda#" in before and ".tar.bz2#" in before
    hashes = file_hashes(prefix)
    ok(safeguard("backup", "-p", prefix))
    conda("remove", "-p", prefix, "--all", "-y", allow="pinned")
    conda("clean", "--all", "-y")
    # Some conda versions (26.7.1 here) leave `.conda` archives behind in `clean --all`; empty
    # the cache the rest of the way so nothing but the store's pins can serve the restore.
    for left in (tmp_path / "conda-pkgs").iterdir():
        shutil.rmtree(left) if left.is_dir() else left.unlink()
    shutil.rmtree(mixed_channel.path)

    proc = ok(safeguard("restore", "pinned", "--yes", "--offline"))
    assert "3 pinned in the store" in proc.stdout and "byte-identical" in proc.stdout
    assert conda("list", "--explicit", "--md5", "-p", prefix).stdout == before
    assert file_hashes(prefix) == hashes
    # the pins were unpacked where conda would have unpacked them: its own package cache,
    # so nothing was left to delete and the next restore links from there
    cached = sorted(p.name for p in (tmp_path / "conda-pkgs").iterdir() if p.is_dir())
    assert cached == ["liba-1.0-0", "libb-1.0-0", "tool-0.1-0"], cached
    assert not [p for p in prefix.parent.iterdir() if "safeguard" in p.name]
    conda("remove", "-p", prefix, "--all", "-y", allow="pinned")
    proc = ok(safeguard("restore", "pinned", "--yes", "--offline"))
    assert "0 pinned in the store, 3 from package caches" in proc.stdout
    assert conda("list", "--explicit", "--md5", "-p", prefix).stdout == before


def test_records_are_what_conda_writes_with_its_extra_checks_on(
        tools, conda_root: Path) -> None:
    """Restore leaves conda's extra_safety_checks as the user has it (off by default) and
    hashes every linked file itself afterwards: the records conda writes are the same as with
    the extra checks on, byte for byte."""
    conda, safeguard, channel_args = tools
    prefix = conda_root / "envs" / "extra"
    conda("create", "-p", prefix, *channel_args, "liba=1.0", "libb", "tool", "-y")
    ok(safeguard("backup", "-p", prefix))
    records = {}
    for extra in ("true", None):
        conda("remove", "-p", prefix, "--all", "-y", allow="extra")
        ok(safeguard("restore", "extra", "--yes", "--offline",
                     more_env={"CONDA_EXTRA_SAFETY_CHECKS": extra} if extra else None))
        records[extra] = {p.name: p.read_bytes() for p in (prefix / "conda-meta").glob("*.json")}
    assert len(records["true"]) == 3 and records["true"] == records[None]


def test_a_tampered_package_cache_is_refused(tools, conda_root: Path, tmp_path: Path) -> None:
    """A file in conda's cache changed with its size kept: only a sha256 check sees it
    (restore's own check of every linked file against conda's records); restore fails and
    leaves nothing at the path."""
    conda, safeguard, channel_args = tools
    prefix = conda_root / "envs" / "tamper"
    conda("create", "-p", prefix, *channel_args, "tool", "-y")
    ok(safeguard("backup", "-p", prefix))
    conda("remove", "-p", prefix, "--all", "-y", allow="tamper")
    cached = tmp_path / "conda-pkgs" / "tool-0.1-0" / "share" / "tool" / "README"
    assert cached.read_bytes() == b"tool 0.1\n"
    cached.unlink()
    cached.write_bytes(b"tool 6.6\n")

    proc = safeguard("restore", "tamper", "--yes", "--offline")
    assert proc.returncode != 0, proc.stdout
    assert "byte-identical" not in proc.stdout
    assert "tool: share/tool/README: sha256 differs" in proc.stdout + proc.stderr
    assert not prefix.exists()


def test_records_written_with_checks_disabled_fail_verify(tools, run_conda: Run,
                                                         conda_root: Path) -> None:
    """What conda writes with CONDA_SAFETY_CHECKS=disabled (the setting restore used to
    force) leaves nothing to compare: verify says so and fails instead of passing."""
    _conda, safeguard, channel_args = tools
    prefix = conda_root / "envs" / "nochecks"
    run_conda("create", "-p", prefix, *channel_args, "liba=1.0", "tool", "-y",
              env={"CONDA_SAFETY_CHECKS": "disabled"})
    assert all(not p for p in file_hashes(prefix).values())  # conda's own fact
    proc = safeguard("verify", "-p", prefix)
    assert proc.returncode == 1 and "(2 packages, 0 files compared)" in proc.stdout
    assert "no recorded sha256" in proc.stdout
