"""Shared fixtures: an isolated HOME for every test, a session-wide local channel, env factories."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from tests.factory import (
    PYTHON_SITE_PACKAGES,
    LocalChannel,
    add_pip_packages,
    install_env,
)

# The user's real default store, captured before any test redirects HOME/XDG: tests can assert it is
# never created or written.
REAL_USER_DATA_DIR = Path(platformdirs.user_data_dir("conda-safeguard"))


@pytest.fixture(scope="session")
def real_user_data_dir() -> Path:
    """:data:`REAL_USER_DATA_DIR` as a fixture (``from conftest import`` is ambiguous:
    tests/conda has its own conftest)."""
    return REAL_USER_DATA_DIR


_REMOVED_VARS = (
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "CONDA_ENVS_PATH",
    "CONDA_ENVS_DIRS",
    "CONDA_PKGS_DIRS",
    "CONDA_SAFEGUARD_ALLOW",
    "CONDA_ALWAYS_YES",
    "CONDA_SHLVL",
    "CONDA_ROOT",
    "CONDA_ROOT_PREFIX",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point HOME, XDG dirs, CONDARC and the safeguard store into tmp_path; drop conda vars."""
    home = tmp_path / "home"
    for sub in ("", ".local/share", ".cache", ".config"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("CONDARC", str(tmp_path / "condarc"))
    monkeypatch.setenv("CONDA_SAFEGUARD_HOME", str(tmp_path / "store"))
    for var in _REMOVED_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith("CONDA_PLUGINS_"):
            monkeypatch.delenv(var, raising=False)
    return home


def _build_test_channel(path: Path) -> LocalChannel:
    ch = LocalChannel(path)
    # python stub: conda finds pip packages through the python record's site-packages dir.
    ch.add("python", "3.11.7", files={f"{PYTHON_SITE_PACKAGES}/.keep": b""})
    ch.add("liba", "1.0")
    ch.add("liba", "2.0")
    ch.add("libb", "1.0", depends=["liba"])
    ch.add("libc", "1.0")
    ch.add("libc", "1.1")
    ch.add(
        "tool",
        "0.1",
        files={
            "bin/tool": b"#!/bin/sh\necho tool 0.1\n",
            "share/tool/README": b"tool 0.1\n",
            "etc/tool/tool.conf": b"verbose = false\n",
        },
    )
    ch.index()
    return ch


@pytest.fixture(scope="session")
def channel(tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    """Offline file:// channel: python 3.11.7 (stub), liba 1.0/2.0, libb 1.0 (-> liba),
    libc 1.0/1.1, tool 0.1 (3 files)."""
    return _build_test_channel(tmp_path_factory.mktemp("channel"))


@pytest.fixture(scope="session")
def pkg_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rattler package cache shared by all installs of the session (NOT a conda package cache)."""
    return tmp_path_factory.mktemp("rattler-pkgs")


@pytest.fixture
def conda_root(tmp_path: Path) -> Path:
    """A directory laid out like a conda install root; envs live in ``<root>/envs``."""
    root = tmp_path / "conda"
    (root / "conda-meta").mkdir(parents=True)
    (root / "conda-meta" / "history").touch()
    (root / "envs").mkdir()
    return root


PipSpec = str | tuple[str, str] | Mapping[str, Any]


def _pip_kwargs(spec: PipSpec) -> dict[str, Any]:
    if isinstance(spec, str):
        name, _, version = spec.partition("==")
        return {"name": name, "version": version or "1.0"}
    if isinstance(spec, tuple):
        return {"name": spec[0], "version": spec[1]}
    return dict(spec)


@pytest.fixture
def make_env(
    conda_root: Path, channel: LocalChannel, pkg_cache: Path
) -> Iterator[Callable[..., Path]]:
    """``make_env(name, specs=("python", "liba=1.0", "libb"), *, pip=())`` -> env path.

    The env is ``<conda_root>/envs/<name>``, installed with :func:`install_env`.

    ``pip`` items: ``"name==version"``, ``(name, version)`` or a dict of :func:`add_pip_package`
    keyword arguments (``{"name": "x", "version": "1", "direct_url": {...}}``).
    """

    def _make(
        name: str,
        specs: Iterable[str] = ("python", "liba=1.0", "libb"),
        *,
        pip: Iterable[PipSpec] = (),
    ) -> Path:
        prefix = conda_root / "envs" / name
        install_env(prefix, channel, list(specs), cache_dir=pkg_cache)
        pip_kwargs = [_pip_kwargs(s) for s in pip]
        if pip_kwargs:
            add_pip_packages(prefix, pip_kwargs)
        return prefix

    yield _make


@pytest.fixture
def standalone_root(monkeypatch: pytest.MonkeyPatch, conda_root: Path) -> Path:
    """The standalone command finds envs in the fixture's conda root (envs/ for -n NAME)."""
    monkeypatch.setenv("CONDA_SAFEGUARD_ROOT", str(conda_root))
    return conda_root


def cli_output(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """stdout of `conda-safeguard ARGV` run in process; fails the test on a non-zero exit."""
    from conda_safeguard.__main__ import main

    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conda_root: Path,
          channel: LocalChannel, capsys: pytest.CaptureFixture[str]) -> Any:
    """A conda root with a package cache, a store and the CLI run in process
    (tests/restoring_helpers.py): the setting of the restore and pins tests."""
    from tests.restoring_helpers import make_world

    return make_world(tmp_path, monkeypatch, conda_root, channel, capsys)
