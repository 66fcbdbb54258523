"""What users read inside real conda: stable error class names, exit codes, commands spelled for
`conda safeguard`, and the usage line."""

from __future__ import annotations

import json


def test_refusal_is_a_stable_class_with_exit_4_and_conda_safeguard_commands(conda, make_env):
    make_env("exp(ü1)")
    proc = conda("remove", "-n", "exp(ü1)", "--all", "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)
    assert error["exception_name"] == "SafeguardRefusal"
    assert error["exception_type"] == "<class 'conda_safeguard.exceptions.SafeguardRefusal'>"
    assert "conda safeguard unprotect -n 'exp(ü1)'" in error["message"]
    assert "CONDA_SAFEGUARD_ALLOW='exp(ü1)'" in error["message"]


def test_errors_are_safeguard_conda_errors_with_exit_1(conda):
    proc = conda("safeguard", "show", "no-such-env", "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    error = json.loads(proc.stdout)
    assert error["exception_type"] == "<class 'conda_safeguard.exceptions.SafeguardCondaError'>"
    assert "`conda safeguard backup --all`" in error["message"]


def test_no_verb_prints_conda_safeguard_usage(conda):
    proc = conda("safeguard")
    assert proc.returncode == 2
    assert "usage: conda safeguard" in proc.stdout + proc.stderr
