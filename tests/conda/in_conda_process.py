"""conda driven in-process, with conda's own test fixtures (`conda_cli`, `tmp_env`), plugin on
and off: conda's errors and exit codes come through unchanged, and the plugin reads what conda
parsed, not the host program's command line (here: pytest's).

Not collected by the project's test run (the name does not start with test_):
tests/conda/test_in_process.py runs this file with the interpreter of each conda root, where
conda is importable, as `ROOT/bin/python -m pytest --noconftest -p <conda's fixtures> FILE`.
It reads IN_CONDA_CHANNEL (an offline file:// channel) and IN_CONDA_ENVS (the envs dir, holding
a protected env `keep`) from the environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conda.base.context import context, reset_context

CHANNEL = os.environ.get("IN_CONDA_CHANNEL", "")
ENVS = Path(os.environ.get("IN_CONDA_ENVS", "/nonexistent"))
OFFLINE = ["--offline", "--override-channels", "-c", CHANNEL]


@pytest.fixture(autouse=True)
def _fresh_context() -> Iterator[None]:
    reset_context()
    yield
    reset_context()


@pytest.fixture
def plugin_off() -> Iterator[None]:
    """conda as if the plugin were not installed: unregistered from conda's plugin manager."""
    manager = context.plugin_manager
    name = "conda_safeguard.plugin"  # pluggy names a module plugin by its __name__
    ours = manager.get_plugin(name)
    assert ours is not None, [n for n, _ in manager.list_name_plugin()]
    manager.unregister(ours)
    try:
        yield
    finally:
        manager.register(ours, name=name)


def outcome(run: Callable[..., Any], *argv: str) -> tuple[str, str, int]:
    """(exception class or "", its message, exit code) of one conda command run in-process."""
    try:
        result = run(*argv)
    except SystemExit as e:
        return "SystemExit", "", int(e.code or 0)
    except Exception as e:  # conda's own errors surface as exceptions in-process
        return type(e).__name__, str(e).replace(str(ENVS), "<envs>"), \
            int(getattr(e, "return_code", 1))
    code = result[2] if isinstance(result, tuple) else result
    return "", "", int(code or 0)


def both_ways(conda_cli: Any, request: pytest.FixtureRequest, *argv: str
              ) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    on = outcome(conda_cli, *argv)
    request.getfixturevalue("plugin_off")
    off = outcome(conda_cli, *argv)
    return on, off


def test_host_argv_is_not_read(conda_cli, tmp_path):
    # pytest's argv is the host's: `env create -f` of a new env must create it, not be refused
    # as "replace base" because the host's argv names no env.
    assert "env" not in sys.argv
    env_file = tmp_path / "environment.yml"
    env_file.write_text(f"name: fresh\nchannels:\n  - {CHANNEL}\ndependencies:\n  - liba=1.0\n")
    result = outcome(conda_cli, "env", "create", "-f", str(env_file), "--offline")
    assert result[0] == "", result
    assert (ENVS / "fresh" / "conda-meta").is_dir()


@pytest.mark.parametrize("argv", [
    ("env", "create", "--file=not_a_file.txt"),
    ("remove", "-n", "keep", "nosuchpkg", "-y"),
    ("rename", "-n", "base", "newbase"),
], ids=["missing env file", "remove not installed", "rename base"])
def test_condas_own_error_comes_through(conda_cli, request, argv):
    on, off = both_ways(conda_cli, request, *argv)
    assert on == off
    assert on[0] and "Safeguard" not in on[0], on


def test_a_refusal_is_a_conda_error_with_exit_4(conda_cli, request):
    keep = ENVS / "keep"
    name, message, code = outcome(conda_cli, "remove", "-n", "keep", "--all", "-y")
    assert name.startswith("Safeguard") and code == 4, (name, code)
    assert "CONDA_SAFEGUARD_ALLOW=keep" in message
    assert (keep / "conda-meta").is_dir()


def test_plugin_active_variable_is_not_left_set(conda_cli):
    assert "CONDA_SAFEGUARD_PLUGIN_ACTIVE" not in os.environ
    result = outcome(conda_cli, "install", "-n", "keep", "libc=1.0", "-y", *OFFLINE)
    assert result[0] == "", result
    assert "CONDA_SAFEGUARD_PLUGIN_ACTIVE" not in os.environ


def test_tmp_env_is_protected_and_allow_lets_it_go(tmp_env, conda_cli, monkeypatch):
    with tmp_env("liba=1.0", *OFFLINE) as prefix:
        refused = outcome(conda_cli, "remove", "-p", str(prefix), "--all", "-y")
        assert refused[0].startswith("Safeguard") and refused[2] == 4, refused
        assert (prefix / "conda-meta").is_dir()
        monkeypatch.setenv("CONDA_SAFEGUARD_ALLOW", str(prefix))
        allowed = outcome(conda_cli, "remove", "-p", str(prefix), "--all", "-y")
        assert allowed[0] == "", allowed
        assert not (prefix / "conda-meta").exists()
