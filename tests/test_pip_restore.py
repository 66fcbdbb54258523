"""pip packages in restore and undo: a plan per package, refusal before a loss, consent before
pip runs code from recorded sources, and only changed packages touched."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from conda_safeguard import pip_restore
from conda_safeguard.pip_restore import PipPolicy, pip_plan
from conda_safeguard.prefix import PipDist
from conda_safeguard.snapshot import capture
from conda_safeguard.store import Store
from tests.factory import add_pip_packages, install_env
from tests.restoring_helpers import World, make_world, tree_hashes

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GIT = {"url": "https://example.org/x/gitpkg.git", "vcs_info": {"vcs": "git", "commit_id": COMMIT}}


@pytest.fixture
def world(tmp_path, monkeypatch, conda_root, channel, capsys) -> World:
    w = make_world(tmp_path, monkeypatch, conda_root, channel, capsys)
    w.channel.add("pip", "24.0")  # the env's pip, as a conda package
    w.channel.index()
    return w


@pytest.fixture
def fake_python(world: World, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stands in for the env's interpreter (the test python package has none): answers
    `-m pip --version` and logs every other call to pip-calls.txt."""
    log = world.root / "pip-calls.txt"
    fake = world.root / "fake-python"
    fake.write_text(f'#!/bin/sh\n[ "$3" = "--version" ] && exit 0\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    monkeypatch.setattr(pip_restore, "env_python", lambda p: fake)
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def forget_kept_wheels(world: World) -> None:
    """As a snapshot taken without kept wheels (before they existed, or over the budget):
    restore falls back to each package's recorded source (test_wheels.py covers the wheels)."""
    shutil.rmtree(world.store / "wheels")


def test_a_pip_package_that_would_be_lost_is_refused_before_anything_is_touched(
        world: World) -> None:
    prefix = world.env("lose", ["python", "liba=1.0"])  # no pip in this env
    add_pip_packages(prefix, [{"name": "plainpkg", "version": "1.5"},
                              {"name": "gitpkg", "version": "0.3", "direct_url": GIT}])
    world.run("backup", "-n", "lose")
    add_pip_packages(prefix, [{"name": "plainpkg", "version": "1.6"}])
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    before = tree_hashes(prefix, skip_meta_json=False)

    r = world.run("undo", "-n", "lose", "--yes")
    text = r.out + r.err
    assert r.code == 1
    assert "1 pip package cannot be reinstalled here and would be lost: plainpkg==1.5" in text
    assert "no pip" in text and "--drop-pip plainpkg" in text
    assert "Nothing was changed" in text
    assert "gitpkg                   0.3          keep" in r.out  # unchanged: no pip needed
    assert tree_hashes(prefix, skip_meta_json=False) == before

    r = world.run("undo", "-n", "lose", "--yes", "--drop-pip", "PlainPkg")
    assert r.code == 0, r.out + r.err
    assert "pip plainpkg==1.5 dropped" in r.out and "1 kept, 0 reinstalled" in r.out
    state = capture(prefix)
    assert state.package_map()["liba"].version == "1.0"
    assert [(d.name, d.version) for d in state.pip] == [("gitpkg", "0.3")]


def test_the_plan_says_per_package_where_it_comes_from(world: World, tmp_path: Path) -> None:
    prefix = world.env("plan", ["python", "pip", "liba=1.0"])
    state = capture(prefix)
    src = tmp_path / "localpkg-src"
    src.mkdir()
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "plain_pkg-1.5-py3-none-any.whl").write_bytes(b"")
    dists = [PipDist("gitpkg", "0.3", "x", direct_url=GIT),
             PipDist("localpkg", "1.0", "x", direct_url={"url": src.as_uri(), "dir_info": {}}),
             PipDist("gonepkg", "1.0", "x", direct_url={"url": (tmp_path / "gone").as_uri(),
                                                       "dir_info": {}}),
             PipDist("plain-pkg", "1.5", "x"),
             PipDist("other", "2.0", "x")]
    state = dataclasses.replace(state, pip=dists)
    env = {"PIP_FIND_LINKS": str(wheels)}

    online = {s.dist.name: s for s in pip_plan(state, None, False, PipPolicy(environ=env))}
    assert online["gitpkg"].action == "run" and online["gitpkg"].network
    assert online["gitpkg"].why.startswith("needs network")
    assert online["gitpkg"].args == ["--", f"gitpkg @ git+{GIT['url']}@{COMMIT}"]
    assert online["localpkg"].action == "run" and not online["localpkg"].network
    assert online["gonepkg"].action == "lost" and "gone" in online["gonepkg"].why
    assert online["plain-pkg"].args == ["--no-index", "--find-links", str(wheels), "--",
                                        "plain-pkg==1.5"]
    assert online["other"].network and online["other"].why == \
        "needs network: the package index"

    offline = {s.dist.name: s for s in pip_plan(state, None, True, PipPolicy(environ=env))}
    assert [n for n, s in offline.items() if s.action == "lost"] == ["gitpkg", "gonepkg",
                                                                    "other"]
    assert not any(s.network for s in offline.values())
    assert offline["plain-pkg"].action == "run"
    loose = pip_plan(state, None, True, PipPolicy(environ=env, allow_loss=True))
    assert {s.action for s in loose} == {"run", "drop"}
    assert {s.action for s in pip_plan(state, None, False, PipPolicy(no_pip=True))} == {"drop"}


@pytest.mark.parametrize(("name", "version", "direct_url", "why"), [
    ("--index-url=http://evil.example", "1.0", None, "not a Python package name"),
    ("-e", "1.0", None, "not a Python package name"),
    ("okname", "1.0 --pre", None, "is not a version"),
    ("okname", "1.0", {"url": "--extra-index-url=http://evil"}, "is not a URL"),
    ("okname", "1.0", {"url": "https://x.example/p.git --upgrade"}, "is not a URL"),
    ("okname", "1.0", {"url": "javascript://x"}, "scheme pip is not run for"),
    ("okname", "1.0", {"url": "https://x.example/p.git",
                       "vcs_info": {"vcs": "git", "commit_id": "-x --pre"}}, "not a revision"),
    ("okname", "1.0", {"url": "https://x.example/p.git", "vcs_info": {"vcs": "cvs"}},
     "git, hg, svn or bzr"),
    ("okname", "1.0", {"url": "file:///src", "subdirectory": "../../etc"}, "plain relative"),
])
def test_recorded_names_and_sources_never_become_pip_options(
        world: World, name: str, version: str, direct_url: dict | None, why: str) -> None:
    state = dataclasses.replace(capture(world.env("bad", ["python", "pip"])),
                                pip=[PipDist(name, version, "x", direct_url=direct_url)])
    (step,) = pip_plan(state, None, False)
    assert step.action == "lost" and why in step.why and step.args == []


def test_running_pip_from_recorded_sources_needs_consent(world: World, fake_python: Path) -> None:
    prefix = world.env("consent", ["python", "pip", "liba=1.0"])
    add_pip_packages(prefix, [{"name": "gitpkg", "version": "0.3", "direct_url": GIT},
                              {"name": "devpkg", "version": "0.1", "editable": True}])
    world.run("backup", "-n", "consent")
    snap = Store.open(world.store).resolve("consent").id
    shutil.rmtree(prefix)
    forget_kept_wheels(world)

    r = world.run("restore", snap)  # no terminal (stdin is not a tty here), no --yes
    assert r.code == 4
    assert "Refusing to run pip for 2 packages" in r.err + r.out
    assert "--yes" in r.err + r.out and "--no-pip" in r.err + r.out
    assert not prefix.exists() and calls(fake_python) == []
    assert f"$ {prefix}/bin/python -m pip install --no-deps --disable-pip-version-check -- " \
        f"gitpkg @ git+https://example.org/x/gitpkg.git@{COMMIT}" in r.out  # shown first

    world.run("restore", snap, "--yes")
    assert calls(fake_python) == [
        "-m pip install --no-deps --disable-pip-version-check -e "
        f"{prefix.parent / 'consent.src' / 'devpkg'}",
        "-m pip install --no-deps --disable-pip-version-check -- "
        f"gitpkg @ git+https://example.org/x/gitpkg.git@{COMMIT}",
    ]

    shutil.rmtree(prefix)
    fake_python.unlink()
    r = world.run("restore", snap, "--no-pip")  # nothing to run: no consent needed
    assert r.code == 0, r.out + r.err
    assert calls(fake_python) == [] and "2 dropped as allowed" in r.out


def test_undo_keeps_unchanged_pip_packages_and_reinstalls_only_a_changed_one(
        world: World, fake_python: Path) -> None:
    prefix = world.env("keep", ["python", "pip", "liba=1.0"])
    add_pip_packages(prefix, [{"name": "plainpkg", "version": "1.5"},
                              {"name": "gitpkg", "version": "0.3", "direct_url": GIT}])
    world.run("backup", "-n", "keep")
    pip_files = {k: v for k, v in tree_hashes(prefix).items() if "site-packages" in k}
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)

    r = world.run("undo", "-n", "keep", "--yes")  # no pip runs, so no consent is asked
    assert r.code == 0, r.out + r.err
    assert "2 kept as they are, 0 to reinstall" in r.out
    assert "pip: 2 packages: 2 kept, 0 reinstalled" in r.out and "byte-identical" in r.out
    assert calls(fake_python) == []
    assert {k: v for k, v in tree_hashes(prefix).items() if "site-packages" in k} == pip_files

    # one pip package changed since: only that one is reinstalled
    world.run("backup", "-n", "keep")
    add_pip_packages(prefix, [{"name": "plainpkg", "version": "1.6"}])
    world.run("undo", "-n", "keep", "--yes")
    (call,) = calls(fake_python)  # from the wheel kept at the first backup: no network
    assert call.startswith("-m pip install --no-deps --disable-pip-version-check --no-index "
                           f"--find-links {world.store / 'wheels'}/")
    assert call.endswith(" -- plainpkg==1.5")


def test_a_package_whose_files_changed_is_reinstalled_not_kept(world: World) -> None:
    prefix = world.env("tamper", ["python", "pip", "liba=1.0"])
    (distinfo,) = add_pip_packages(prefix, [{"name": "plainpkg", "version": "1.5"}])
    state = capture(prefix)
    assert [s.action for s in pip_plan(state, prefix, False)] == ["keep"]
    rows = (distinfo / "RECORD").read_text().splitlines()
    module = next(r.split(",")[0] for r in rows if r.endswith(".py") or ".py," in r)
    (distinfo.parent / module).write_text("changed = True\n")
    assert [s.action for s in pip_plan(state, prefix, False)] == ["run"]


def test_an_env_whose_python_cannot_run_pip_says_so(world: World) -> None:
    """The test python package has no interpreter: pip is in the plan but cannot run."""
    prefix = world.env("nopy", ["python", "pip", "liba=1.0"])
    add_pip_packages(prefix, [{"name": "plainpkg", "version": "1.5"}])
    world.run("backup", "-n", "nopy")
    snap = Store.open(world.store).resolve("nopy").id
    shutil.rmtree(prefix)
    r = world.run("restore", snap, "--yes")
    assert r.code == 1
    assert "no usable python" in r.out and "plainpkg==1.5" in r.out
    assert "1 pip package missing" in r.out


LOGGING_PYTHON = (b'#!/bin/sh\n'  # an env's python that answers for pip and logs each install
                  b'[ "$3" = "--version" ] && exit 0\n'
                  b'echo "$@" >> "$(dirname "$0")/../../pip-calls.txt"\n')


@pytest.mark.parametrize(("answer", "status", "ran"), [("n", 4, False), ("y", 1, True)])
def test_at_a_terminal_pip_runs_only_after_a_yes(world: World, answer: str, status: int,
                                                 ran: bool) -> None:
    pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency")
    import os
    import sys

    from tests.factory import PYTHON_SITE_PACKAGES

    world.channel.add("python", "3.11.9", files={f"{PYTHON_SITE_PACKAGES}/.keep": b"",
                                                 "bin/python": LOGGING_PYTHON})
    world.channel.index()
    prefix = world.env("tty", ["python=3.11.9", "pip", "liba=1.0"])
    add_pip_packages(prefix, [{"name": "gitpkg", "version": "0.3", "direct_url": GIT}])
    world.run("backup", "-n", "tty")
    snap = Store.open(world.store).resolve("tty").id
    shutil.rmtree(prefix)
    forget_kept_wheels(world)

    child = pexpect.spawn(sys.executable, ["-m", "conda_safeguard", "restore", snap],
                          env=dict(os.environ), encoding="utf-8", timeout=120,
                          dimensions=(40, 250))
    child.expect(r"Run these 1 pip commands")
    assert f"gitpkg @ git+{GIT['url']}@{COMMIT}" in child.before  # shown before the question
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == status, child.before
    log = world.root / "envs" / "pip-calls.txt"
    if ran:  # (the logging python installs nothing, so verify then finds gitpkg missing)
        assert calls(log) == ["-m pip install --no-deps --disable-pip-version-check -- "
                              f"gitpkg @ git+{GIT['url']}@{COMMIT}"]
    else:
        assert "Aborted: nothing was changed" in child.before
        assert not prefix.exists() and calls(log) == []
