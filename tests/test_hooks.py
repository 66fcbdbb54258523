"""How the plugin reads a command from what conda parsed (no conda needed: conda's parsed
arguments are plain namespaces; the real thing runs in tests/conda on every version)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from conda_safeguard.hooks import _command_line, _yes, canonical_command


def context(always_yes=None, config_yes=None):
    raw = {"/home/u/.condarc": {"always_yes": SimpleNamespace(_raw_value=config_yes)}
           if config_yes is not None else {},
           "cmd_line": {"always_yes": SimpleNamespace(_raw_value=True)}}
    return SimpleNamespace(always_yes=always_yes, raw_data=raw)


@pytest.mark.parametrize(("run_for", "args", "expected"), [
    ("create", SimpleNamespace(clone=False), "env_create"),  # conda 26's env create parser
    ("create", SimpleNamespace(clone=None), "create"),  # `conda create` without --clone
    ("create", SimpleNamespace(clone="src"), "create"),
    ("env_create", SimpleNamespace(), "env_create"),  # conda 23.x-25.x
    ("env_remove", SimpleNamespace(), "env_remove"),  # conda 23.x's conda-env
    ("remove", SimpleNamespace(all=True), "remove"),  # env remove from 24.x on
    ("install", SimpleNamespace(revision="2"), "install_revision"),
    ("install", SimpleNamespace(revision=None), "install"),
])
def test_canonical_command(run_for, args, expected):
    assert canonical_command(run_for, args) == expected


def test_env_create_on_conda_26_counts_only_configured_yes():
    # its parser defaults yes=True: that is not the user's -y
    args = SimpleNamespace(yes=True, clone=False)
    assert not _yes("create", "env_create", args, context(always_yes=True))
    assert _yes("create", "env_create", args, context(always_yes=True, config_yes="y"))


def test_env_create_before_26_sees_typed_yes_and_configured_yes():
    assert _yes("env_create", "env_create", SimpleNamespace(yes=True), context())
    # conda 23's conda-env: the parser's yes=False hides always_yes from context
    assert _yes("env_create", "env_create", SimpleNamespace(yes=False),
                context(always_yes=False, config_yes="yes"))
    assert not _yes("env_create", "env_create", SimpleNamespace(yes=False), context())


def test_rename_force_is_yes_on_conda_23():
    assert _yes("rename", "rename", SimpleNamespace(force=True), context())
    assert not _yes("rename", "rename", SimpleNamespace(force=False, yes=False), context())


def test_snapshot_command_line_comes_from_parsed_args():
    args = SimpleNamespace(package_names=["liba"], all=False, revision=None, destination=None)
    assert _command_line("remove", args, "/envs/x") == ["conda", "remove", "-p", "/envs/x",
                                                        "liba"]
    args = SimpleNamespace(all=True)
    assert _command_line("env_remove", args, "/envs/x") == ["conda", "env", "remove", "-p",
                                                            "/envs/x"]
    args = SimpleNamespace(revision="0")
    assert _command_line("install_revision", args, "/envs/x") == [
        "conda", "install", "-p", "/envs/x", "--revision", "0"]


def test_every_setting_is_described_for_conda() -> None:
    """conda registers each setting with its description: one missing breaks every conda
    command on conda >= 24.3 (a KeyError while loading the plugin)."""
    from conda_safeguard.condarc import SETTINGS_SCHEMA
    from conda_safeguard.settings_plugin import DESCRIPTIONS

    assert set(DESCRIPTIONS) == set(SETTINGS_SCHEMA)
