"""advice.py: frozen refusals on conda < 25.5, base-install warning, naming lint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conda_safeguard import advice
from conda_safeguard.condarc import settings_from_mapping
from conda_safeguard.exceptions import RefusedError
from tests.conftest import cli_output


@pytest.mark.parametrize(("name", "generic"), [
    ("test", True), ("myenv", True), ("env2", True), ("my-env", True), ("Test_3", True),
    ("new", True), ("tmp", True), ("nlp-finetune-torch2.3", False), ("pytorch", False),
    ("testing-harness", False), ("cv-segment-jax0.4", False), ("envoy", False),
])
def test_name_lint(name: str, generic: bool) -> None:
    note = advice.name_lint(name)
    assert (note is not None) == generic
    if note:
        assert f"'{name}'" in note and advice.NAME_FORM in note and "safeguard_name_lint" in note


@pytest.mark.parametrize(("command", "is_base", "warns"), [
    ("install", True, True), ("update", True, True), ("install", False, False),
    ("remove", True, False), ("create", True, False),
])
def test_base_install_warning(command: str, is_base: bool, warns: bool) -> None:
    assert (advice.base_install_warning(command, is_base) is not None) == warns


@pytest.mark.parametrize(("version", "enforces"), [
    ("23.11.0", False), ("24.11.3", False), ("25.3.1", False), ("25.5.1", True),
    ("25.11.1", True), ("26.7.1", True),
])
def test_who_enforces_the_frozen_marker(version: str, enforces: bool) -> None:
    assert advice.conda_enforces_frozen(version) == enforces


def test_frozen_refusal_only_where_conda_does_not(conda_root: Path) -> None:
    prefix = conda_root
    assert advice.frozen_refusal("install", prefix, "base", "23.11.0") is None  # not frozen
    (prefix / "conda-meta" / "frozen").write_text(json.dumps({"message": "ops owns this"}))
    err = advice.frozen_refusal("install", prefix, "base", "23.11.0")
    assert isinstance(err, RefusedError) and "(ops owns this)" in str(err)
    assert "unfreeze -n base" in str(err) and "conda create -n" in str(err)
    assert advice.frozen_refusal("install", prefix, "base", "26.7.1") is None  # conda does it
    assert advice.frozen_refusal("create", prefix, "base", "23.11.0") is None
    for command in advice.FROZEN_BLOCKS:
        assert advice.frozen_refusal(command, prefix, "base", "24.11.3") is not None


def test_settings_turn_them_off() -> None:
    s = settings_from_mapping({"safeguard_warn_base_installs": "false",
                               "safeguard_name_lint": False})
    assert (s.warn_base_installs, s.name_lint) == (False, False)
    assert settings_from_mapping({}).name_lint is True


def test_freeze_base_says_to_create_a_named_env(standalone_root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = cli_output(capsys, "freeze", "-n", "base")
    assert "frozen" in out
    marker = json.loads((standalone_root / "conda-meta" / "frozen").read_text())
    assert "create a named env" in marker["message"] and "conda create -n" in marker["message"]
