"""Helpers shared by test_restore.py and test_pins.py: envs installed from a conda-style
package cache (tarballs + extracted folders + urls.txt, as conda leaves it), so their records
point at tarballs the way conda's do; a private copy of the channel; the CLI run in-process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conda_safeguard.__main__ import main
from tests.factory import LocalChannel, install_env, make_conda_package_cache, write_condarc


def channel_records(channel: LocalChannel) -> list[dict]:
    repodata = json.loads((channel.path / "noarch" / "repodata.json").read_text())
    return [{**entry, "fn": fn} for fn, entry in repodata["packages"].items()]


def tree_hashes(prefix: Path, *, skip_meta_json: bool = True) -> dict[str, str]:
    """relative path -> sha256 of every file (conda-meta/*.json left out: they name caches)."""
    from conda_safeguard.pins import sha256_file

    out = {}
    for root, _dirs, files in os.walk(prefix):
        for f in files:
            full = Path(root) / f
            rel = full.relative_to(prefix).as_posix()
            if skip_meta_json and rel.startswith("conda-meta/") and (
                    rel.endswith(".json") or rel == "conda-meta/created_at"):
                continue  # they name package caches; created_at is not in snapshots
            out[rel] = sha256_file(full)
    return out


def package_set(prefix: Path) -> dict[str, tuple[str, str, str]]:
    from tests.factory import read_prefix_records

    return {n: (r["version"], r["build"], r.get("sha256") or r["md5"])
            for n, r in read_prefix_records(prefix).items()}


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


@dataclass
class World:
    root: Path  # conda root; envs in root/envs
    pkgs: Path  # the conda package cache named by pkgs_dirs
    channel: LocalChannel
    store: Path
    run: Callable[..., Result]
    env: Callable[..., Path]

    def prefix(self, name: str) -> Path:
        return self.root / "envs" / name


def copy_channel(channel: LocalChannel, tmp_path: Path) -> LocalChannel:
    """A copy of the session channel a test may delete or remove packages from."""
    shutil.copytree(channel.path, tmp_path / "own-channel")
    return LocalChannel(tmp_path / "own-channel")


def make_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conda_root: Path,
               channel: LocalChannel, capsys: pytest.CaptureFixture[str],
               protect_by_default: bool = False, enabled: bool = True) -> World:
    channel = copy_channel(channel, tmp_path)
    pkgs = make_conda_package_cache(tmp_path / "pkgs", channel, channel_records(channel))
    write_condarc(os.environ["CONDARC"], channels=[], envs_dirs=[conda_root / "envs"],
                  pkgs_dirs=[pkgs],
                  plugins={"safeguard_protect_by_default": protect_by_default,
                           "safeguard_enabled": enabled})
    monkeypatch.setenv("CONDA_SAFEGUARD_ROOT", str(conda_root))
    monkeypatch.setenv("CONDA_SAFEGUARD_INSTALLER", "rattler")

    def run(*args: str | os.PathLike[str]) -> Result:
        capsys.readouterr()
        code = main([os.fspath(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def env(name: str, specs: Iterable[str] = ("python", "liba=1.0", "libb", "tool")) -> Path:
        prefix = conda_root / "envs" / name
        install_env(prefix, channel, list(specs), cache_dir=pkgs)
        return prefix

    return World(conda_root, pkgs, channel, Path(os.environ["CONDA_SAFEGUARD_HOME"]), run, env)


def empty_cache(pkgs: Path) -> None:
    """What `conda clean --all` leaves: nothing."""
    for p in pkgs.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def unprivileged(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `argv` so that file permissions apply to it. As root (tests in CI), without the
    capabilities that let root read and search through any mode (chmod 000 stops it then);
    as anyone else, as it is."""
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.fail("running as root needs setpriv (util-linux) to test permissions")
        argv = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          **kwargs)
