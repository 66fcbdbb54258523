"""Tests needing real conda, run against every conda version we support.

Where conda comes from, first match wins:
1. ``CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda``: that one conda (the plugin must already be
   installed into it);
2. conda importable by this interpreter (pytest runs inside a conda install);
3. the conda wheels in ``CONDA_SAFEGUARD_CONDA_WHEELS`` (default: the first ``shared/conda``
   folder holding ``make-root.sh`` beside this checkout or above it): every test here runs once
   per version. A root per version is built lazily with ``make-root.sh`` (into the session's temp
   dir, or into ``CONDA_SAFEGUARD_TEST_ROOTS/<version>`` to reuse it across runs), and this
   checkout, built into a wheel once per session, is pip-installed into it as a user would.
Otherwise every test here is skipped with the reason; in CI (``CI=true``) that is a failure.

``KNOWN_FAILURES`` lists the (test, version) pairs a conda version truly cannot do; they run as
strict xfails, so a version that starts passing is noticed. The README's compatibility table
says the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factory import write_condarc

_HERE = Path(__file__).parent
REPO = _HERE.parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


@dataclass(frozen=True)
class CondaUnderTest:
    """One conda the tests run against: a wheel version to build a root from, or a given argv."""

    id: str  # the test-id part: "23.11.0", or "external"/"importable"
    version: str | None = None  # known up front for wheels
    argv: tuple[str, ...] = ()  # known up front for a given conda
    wheel: Path | None = None


def wheels_dir() -> Path | None:
    named = os.environ.get("CONDA_SAFEGUARD_CONDA_WHEELS")
    if named:
        return Path(named)
    for parent in (REPO, *REPO.parents):
        candidate = parent / "shared" / "conda"
        if (candidate / "make-root.sh").is_file():
            return candidate
    return None


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


def _find_condas() -> tuple[list[CondaUnderTest], str]:
    """(the condas to test against; the skip reason when there are none)."""
    named = os.environ.get("CONDA_SAFEGUARD_TEST_CONDA")
    if named:
        exe = shutil.which(named)
        if exe:
            return [CondaUnderTest("external", argv=(exe,))], ""
        return [], f"real conda not found: CONDA_SAFEGUARD_TEST_CONDA={named!r} is not executable"
    # Only a regular package with a __main__ is the real thing (tests/ is a package, so this
    # folder is tests.conda and cannot shadow it).
    spec = importlib.util.find_spec("conda")
    if spec is not None and spec.origin and Path(spec.origin).with_name("__main__.py").is_file():
        return [CondaUnderTest("importable", argv=(sys.executable, "-m", "conda"))], ""
    found = wheels_dir()
    wheels = sorted(found.glob("conda-*-py3-none-any.whl")) if found else []
    condas = []
    for wheel in wheels:
        version = wheel.name[len("conda-"):-len("-py3-none-any.whl")]
        condas.append(CondaUnderTest(version, version=version, wheel=wheel))
    condas.sort(key=lambda c: version_key(c.version or ""))
    if condas:
        return condas, ""
    return [], ("real conda not found: set CONDA_SAFEGUARD_TEST_CONDA=/path/to/conda, run inside "
                "a conda install, or point CONDA_SAFEGUARD_CONDA_WHEELS at a folder of conda "
                "wheels with make-root.sh")


CONDAS, SKIP_REASON = _find_condas()

#: (test function, its other parameter or "", conda version prefix) -> why that version cannot do
#: it. Each runs as xfail(strict=True), so a version that starts passing is noticed. Keep the
#: README's compatibility table in step.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "newest_conda_only: the test checks our own logic through conda, the same on "
        "every version (e.g. each wrong answer to the prompt): it runs on the newest conda only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "conda_under_test" in metafunc.fixturenames and CONDAS:
        condas = CONDAS[-1:] if metafunc.definition.get_closest_marker("newest_conda_only") \
            else CONDAS
        # with pytest-xdist (--dist loadgroup) one worker runs all of a version's tests: it
        # builds that root and installs the plugin into it, no other worker touches it
        metafunc.parametrize("conda_under_test", [
            pytest.param(c, id=c.id, marks=pytest.mark.xdist_group(f"conda-{c.id}"))
            for c in condas], indirect=True, scope="session")


def known_failure(test: str, params: dict[str, object]) -> str | None:
    conda = params.get("conda_under_test")
    if not isinstance(conda, CondaUnderTest) or conda.version is None:
        return None
    others = {str(v) for k, v in params.items() if k != "conda_under_test"}
    for (name, case, version), reason in KNOWN_FAILURES.items():
        if name == test and (not case or case in others) and \
                (conda.version == version or conda.version.startswith(version + ".")):
            return reason
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A conftest cannot pytest.skip(allow_module_level=True) (pytest loads it before collection),
    # so every test under tests/conda/ is marked instead when conda is missing.
    ours = [item for item in items if _HERE in item.path.parents]
    if ours and not CONDAS:
        if IN_CI:
            raise pytest.UsageError(f"CI must run the conda tests, but {SKIP_REASON}")
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
        return
    for item in ours:
        callspec = getattr(item, "callspec", None)
        reason = known_failure(getattr(item, "originalname", item.name),
                               dict(callspec.params) if callspec else {})
        if reason:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))


# ---------------------------------------------------------------------------------------------
# roots: built once per session (or reused), with this checkout installed as a user would


def _run(argv: list[str], what: str, **kwargs: object) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        pytest.fail(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}", pytrace=False)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two pytest runs sharing CONDA_SAFEGUARD_TEST_ROOTS build a root once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


class Roots:
    def __init__(self, tmp_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_factory
        reuse = os.environ.get("CONDA_SAFEGUARD_TEST_ROOTS")
        self.dir = Path(reuse) if reuse else tmp_factory.mktemp("conda-roots")
        self._wheel: Path | None = None
        self._ready: dict[str, Path] = {}

    def plugin_wheel(self) -> Path:
        if self._wheel is None:
            out = self._tmp.mktemp("plugin-wheel")
            _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                  str(REPO)], "building this checkout into a wheel")
            self._wheel = next(out.glob("conda_safeguard-*.whl"))
        return self._wheel

    def root(self, conda: CondaUnderTest) -> Path:
        assert conda.version is not None and conda.wheel is not None
        if conda.version in self._ready:
            return self._ready[conda.version]
        root = self.dir / conda.version
        with _locked(self.dir / f".{conda.version}.lock"):
            reused = (root / "bin" / "conda").is_file()
            if not reused:
                if root.exists():
                    shutil.rmtree(root)  # a build that died half-way
                _run([str(conda.wheel.parent / "make-root.sh"), conda.version, str(root)],
                     f"make-root.sh {conda.version}")
            python = str(root / "bin" / "python")
            wheel = str(self.plugin_wheel())
            # as a user installs it: dependencies from the index, then this checkout's code
            _run([python, "-m", "pip", "install", "-q", wheel], "pip install of the plugin")
            if reused:  # it may hold an older build of the same version: pip kept that one
                _run([python, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps",
                      wheel], "pip reinstall of the plugin")
        self._ready[conda.version] = root
        return root

    def ensure_pytest(self, python: str) -> None:
        """pytest in a root, for the tests that run conda in-process with conda's fixtures."""
        probe = subprocess.run([python, "-c", "import pytest"], capture_output=True)
        if probe.returncode != 0:
            _run([python, "-m", "pip", "install", "-q", "pytest"], "pip install pytest")


@pytest.fixture(scope="session")
def conda_roots(tmp_path_factory: pytest.TempPathFactory) -> Roots:
    return Roots(tmp_path_factory)


@pytest.fixture(scope="session")
def conda_under_test(request: pytest.FixtureRequest) -> CondaUnderTest:
    if not CONDAS:
        pytest.skip(SKIP_REASON)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def conda_root_prefix(conda_under_test: CondaUnderTest, conda_roots: Roots) -> Path | None:
    """The root prefix of the conda under test (None for a given conda: not ours to know)."""
    if conda_under_test.version is None:
        return None
    return conda_roots.root(conda_under_test)


@pytest.fixture(scope="session")
def conda_exe(conda_under_test: CondaUnderTest, conda_root_prefix: Path | None) -> list[str]:
    """argv words running real conda: ``["/path/to/conda"]`` or ``[python, "-m", "conda"]``."""
    if conda_root_prefix is not None:
        return [str(conda_root_prefix / "bin" / "conda")]
    return list(conda_under_test.argv)


@pytest.fixture(scope="session")
def conda_version(conda_under_test: CondaUnderTest, conda_exe: list[str]) -> tuple[int, ...]:
    """The version of the conda under test, e.g. (25, 11, 1)."""
    if conda_under_test.version is not None:
        return version_key(conda_under_test.version)
    out = subprocess.run([*conda_exe, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"(\d+(?:\.\d+)+)", out)
    assert match, f"cannot read the version of {conda_exe}: {out!r}"
    return version_key(match.group(1))


@pytest.fixture(autouse=True)
def no_cuda_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``__cuda`` virtual package: without this, every solving conda command (and every
    restore that runs conda) spawns a process looking for libcuda first, 0.5-0.8 s each, the
    largest single cost of a test here. The test channel is noarch; a GPU changes nothing the
    tests check (it would only add ``__cuda`` to conda's solve on a machine that has one)."""
    monkeypatch.setenv("CONDA_OVERRIDE_CUDA", "")


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
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"conda {' '.join(map(str, args))} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
            )
        return proc

    return _run


@pytest.fixture
def conda(
    run_conda: Callable[..., subprocess.CompletedProcess[str]],
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``conda(*args, env=None)``: real conda with no terminal (stdin /dev/null), as scripts and
    CI run it; the exit status is the test's to assert."""
    return functools.partial(run_conda, check=False)

