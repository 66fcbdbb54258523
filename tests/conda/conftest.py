"""Tests needing real conda: skipped unless conda is importable or named by
CONDA_SAFEGUARD_TEST_CONDA."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factory import write_condarc


def _find_conda() -> tuple[list[str] | None, str]:
    """(argv to run conda, or None; the skip reason when None)."""
    # An explicit command wins over an importable module (the dev venv normally has no conda).
    named = os.environ.get("CONDA_SAFEGUARD_TEST_CONDA")
    if named:
        exe = shutil.which(named)
        if exe:
            return [exe], ""
        return None, f"real conda not found: CONDA_SAFEGUARD_TEST_CONDA={named!r} is not executable"
    # Only a regular package with a __main__ is the real thing (tests/ is a package, so this
    # folder is tests.conda and cannot shadow it).
    spec = importlib.util.find_spec("conda")
    if spec is not None and spec.origin and Path(spec.origin).with_name("__main__.py").is_file():
        return [sys.executable, "-m", "conda"], ""
    return None, (
        "real conda not found: set CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda"
        " or run inside a conda install"
    )


CONDA_ARGV, SKIP_REASON = _find_conda()
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest cannot pytest.skip(allow_module_level=True) (pytest loads it before collection),
    # so every test under tests/conda/ is marked skipped instead when conda is missing.
    if CONDA_ARGV is not None:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def conda_exe() -> list[str]:
    """argv words running real conda: ``["/path/to/conda"]`` or ``[python, "-m", "conda"]``."""
    if CONDA_ARGV is None:
        pytest.skip(SKIP_REASON)
    return list(CONDA_ARGV)


@pytest.fixture
def conda_condarc(isolated_home: Path, conda_root: Path, tmp_path: Path) -> Path:
    """The isolated $CONDARC real conda reads: classic solver, envs under conda_root.

    ``add_pip_as_python_dependency: false`` because the test channel has no ``pip`` package
    (conda's classic solver otherwise makes python depend on pip: UnsatisfiableError).
    ``pkgs_dirs`` keeps conda's package cache out of its own install root.
    """
    return write_condarc(
        os.environ["CONDARC"],
        solver="classic",
        channels=[],
        auto_update_conda=False,
        notify_outdated_conda=False,
        add_pip_as_python_dependency=False,
        envs_dirs=[conda_root / "envs"],
        pkgs_dirs=[tmp_path / "conda-pkgs"],
    )


@pytest.fixture
def run_conda(
    conda_exe: list[str], conda_condarc: Path, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_conda(*args, check=True, env=None)`` -> CompletedProcess (text, captured output)."""

    def _run(
        *args: str | os.PathLike[str], check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "CONDARC": str(conda_condarc), **(env or {})}
        proc = subprocess.run(
            [*conda_exe, *map(os.fspath, args)],
            env=full_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"conda {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    return _run
