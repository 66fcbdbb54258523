"""verify/compare/diff inside real conda, against the files real conda writes: `conda list
--explicit --md5`, `conda env export`, and after a real `conda install`.

    CONDA_SAFEGUARD_TEST_CONDA=ROOT-26.7.1/bin/conda pytest tests/conda/test_verify_with_conda.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.factory import add_pip_package


def offline(channel) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--offline", "--override-channels", "-c", channel.url]


def test_verify_against_what_conda_writes_then_drift(run_conda, make_env, channel,
                                                     tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("ml", ["python", "liba=1.0", "libb"])
    add_pip_package(prefix, "plain", "1.0")
    explicit = tmp_path / "explicit.txt"
    explicit.write_text(run_conda("list", "--explicit", "--md5", "-p", prefix).stdout)
    env_yml = tmp_path / "environment.yml"
    env_yml.write_text(run_conda("env", "export", "-p", prefix).stdout)

    proc = run_conda("safeguard", "verify", "-p", prefix, "--against", explicit)
    assert "same: 3 conda and 0 pip packages compared (fields compared: version 3, build 3, " \
           "channel 3, md5 3)" in proc.stdout
    assert "not checked: 1 pip packages in the env" in proc.stdout  # conda's file drops pip
    proc = run_conda("safeguard", "verify", "-p", prefix, "--against", env_yml)
    assert "same: 3 conda and 1 pip packages compared (fields compared: version 4, build 3)" \
        in proc.stdout

    run_conda("install", "-p", prefix, "liba=2.0", "-y", *offline(channel))
    for ref in (explicit, env_yml):
        proc = run_conda("safeguard", "verify", "-p", prefix, "--against", ref, check=False)
        assert proc.returncode == 1, (ref, proc.stdout, proc.stderr)
        assert "~ liba: version" in proc.stdout, (ref, proc.stdout)


@pytest.mark.newest_conda_only  # our own references (fingerprint, snapshot) and verbs; what
# conda writes, and the drift after a real `conda install`: every version, above
def test_verify_against_our_references_then_drift(run_conda, make_env, channel,
                                                  tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("ml", ["python", "liba=1.0", "libb"])
    add_pip_package(prefix, "plain", "1.0")
    node = tmp_path / "node.json"
    node.write_text(run_conda("safeguard", "fingerprint", "-p", prefix, "--json").stdout)
    assert json.loads(node.read_text())["counts"] == {"conda": 3, "pip": 1}
    run_conda("safeguard", "backup", "-p", prefix)

    run_conda("install", "-p", prefix, "liba=2.0", "-y", *offline(channel))
    for ref in (node, "ml@latest"):
        proc = run_conda("safeguard", "verify", "-p", prefix, "--against", ref, check=False)
        assert proc.returncode == 1, (ref, proc.stdout, proc.stderr)
        assert "~ liba: version" in proc.stdout, (ref, proc.stdout)
    proc = run_conda("safeguard", "diff", "ml", check=False)
    assert proc.returncode == 1 and "~ liba" in proc.stdout

    later = tmp_path / "later.json"
    later.write_text(run_conda("safeguard", "fingerprint", "-p", prefix, "--json").stdout)
    proc = run_conda("safeguard", "compare", node, later, node, check=False)
    assert proc.returncode == 1 and "DIFFERS: ~liba (version/sha256)" in proc.stdout


def test_bad_reference_inside_conda_is_one_error_and_not_exit_0(run_conda, make_env,
                                                                 tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("bad", ["python", "liba=1.0"])
    ref = tmp_path / "future.json"
    ref.write_text('{"format": "conda-safeguard-fingerprint", "format_version": 99, '
                   '"conda": [], "pip": []}')
    proc = run_conda("safeguard", "verify", "-p", prefix, "--against", ref, check=False)
    assert proc.returncode not in (0, 1), proc  # neither "same" nor "differs"
    assert "written by a newer conda-safeguard" in proc.stderr
