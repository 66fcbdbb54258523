"""Kept wheels: pip packages repacked from their installed files at backup, so a removed env
restores its pip packages offline, with real pip, after their sources are gone."""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conda_safeguard import wheels
from conda_safeguard.condarc import Settings
from conda_safeguard.prefix import read_pip_dists, read_records
from conda_safeguard.store import Store
from tests.factory import PYTHON_SITE_PACKAGES, add_pip_packages, install_env
from tests.restoring_helpers import World, empty_cache, make_world, tree_hashes

#: The env's python: the test python package has no interpreter, so this one runs the real
#: one, and `-m pip install` installs into the env (`--prefix`) as the env's own pip would.
PIP_SHIM = f"""#!/bin/sh
env="$(cd "$(dirname "$0")/.." && pwd)"
if [ "$1" = "-m" ] && [ "$2" = "pip" ] && [ "$3" = "install" ]; then
  shift 3
  exec {sys.executable} -m pip install --prefix "$env" --no-warn-script-location "$@"
fi
exec {sys.executable} "$@"
""".encode()


@pytest.fixture
def world(tmp_path, monkeypatch, conda_root, channel, capsys) -> World:
    w = make_world(tmp_path, monkeypatch, conda_root, channel, capsys)
    w.channel.add("pip", "24.0")
    w.channel.add("python", "3.11.9", files={f"{PYTHON_SITE_PACKAGES}/.keep": b"",
                                             "bin/python": PIP_SHIM})
    w.channel.index()
    for var in [v for v in os.environ if v.startswith("PIP_")]:
        monkeypatch.delenv(var)
    return w


def build_wheel(folder: Path, name: str = "toolpkg", version: str = "1.0") -> Path:
    """A wheel with a module, a console script, a plain script and a data file."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\ndef main():\n    print("hi")\n',
        f"{name}/data.txt": "payload\n",
        f"{dist}.data/scripts/plain-script": "#!/bin/sh\necho plain\n",
        f"{dist}.data/data/share/{name}/notes.txt": "shared notes\n",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
        f"{dist}.dist-info/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n",
    }
    rows = [(path, "", "") for path in files] + [(f"{dist}.dist-info/RECORD", "", "")]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    files[f"{dist}.dist-info/RECORD"] = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zi = zipfile.ZipInfo(path)
            zi.external_attr = (0o755 if "scripts" in path else 0o644) << 16
            zf.writestr(zi, text)
    return wheel


def pip_install(prefix: Path, wheel: Path) -> None:
    subprocess.run([prefix / "bin" / "python", "-m", "pip", "install", "--no-deps",
                    "--no-index", "--disable-pip-version-check", "-q", wheel],
                   check=True, capture_output=True)


def pip_files(prefix: Path) -> dict[str, str]:
    """Every file pip put there, but what pip writes anew on each install (RECORD,
    __pycache__): those are compared by the names RECORD lists."""
    return {k: v for k, v in tree_hashes(prefix).items()
            if not k.startswith("conda-meta/") and "__pycache__" not in k
            and not k.endswith("/RECORD") and k != "bin/python"}


def record_names(prefix: Path, name: str) -> set[str]:
    (info,) = (prefix / PYTHON_SITE_PACKAGES).glob(f"{name}-*.dist-info")
    rows = csv.reader(io.StringIO((info / "RECORD").read_text()))
    return {r[0] for r in rows if r and "__pycache__" not in r[0]}


def test_a_removed_env_restores_its_pip_package_offline_after_the_source_is_gone(
        world: World, tmp_path: Path) -> None:
    prefix = world.env("tools", ["python=3.11.9", "pip", "liba=1.0"])
    wheel = build_wheel(tmp_path / "src")
    pip_install(prefix, wheel)
    before = pip_files(prefix)
    assert "bin/toolpkg" in before and "share/toolpkg/notes.txt" in before  # outside site-pkgs
    records = record_names(prefix, "toolpkg")
    assert world.run("backup", "-n", "tools").code == 0
    info = Store.open(world.store).resolve("tools")
    assert list(info.wheels) == ["toolpkg"]
    assert info.wheels["toolpkg"].endswith("/toolpkg-1.0-py3-none-any.whl")

    shutil.rmtree(tmp_path / "src")  # the wheel it was installed from is gone
    shutil.rmtree(prefix)
    empty_cache(world.pkgs)  # conda packages come from their pins
    r = world.run("restore", info.id, "--offline", "--dry-run")
    assert "toolpkg                  1.0          reinstall  offline, from its kept wheel " \
        "toolpkg-1.0-py3-none-any.whl" in r.out
    assert "0 lost" in r.out

    r = world.run("restore", info.id, "--offline", "--yes")
    assert r.code == 0, r.out + r.err
    assert pip_files(prefix) == before  # module, data, both scripts, dist-info: same bytes
    assert record_names(prefix, "toolpkg") == records
    (dist,) = [d for d in read_pip_dists(prefix, read_records(prefix)) if d.name == "toolpkg"]
    assert dist.direct_url and dist.direct_url["url"] == wheel.as_uri()  # as first installed
    assert world.run("verify", "-n", "tools").code == 0


def test_a_record_naming_paths_outside_the_env_is_not_followed(world: World,
                                                                tmp_path: Path) -> None:
    prefix = world.env("evil", ["python", "pip"])
    (info,) = add_pip_packages(prefix, [{"name": "evilpkg", "version": "1.0"}])
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours\n")
    rel = os.path.relpath(secret, info.parent)
    assert rel.startswith("../../../../")
    with open(info / "RECORD", "a") as f:
        f.write(f"{rel},,\n")
    (dist,) = read_pip_dists(prefix, read_records(prefix))
    with pytest.raises(wheels.NotPackable, match="outside the env: not followed"):
        wheels.plan_wheel(prefix, dist)

    # a symlink inside site-packages that leads out of the env: the same
    lines = (info / "RECORD").read_text().splitlines()[:-1]
    (info / "RECORD").write_text("\n".join([*lines, "evilpkg/link.txt,,"]) + "\n")
    (info.parent / "evilpkg" / "link.txt").symlink_to(secret)
    with pytest.raises(wheels.NotPackable, match="outside the env"):
        wheels.plan_wheel(prefix, dist)

    assert world.run("backup", "-n", "evil").code == 0  # the snapshot is still taken
    assert Store.open(world.store).resolve("evil").wheels == {}
    assert not (world.store / "wheels").exists() or wheels.wheel_files(
        Store.open(world.store)) == []


def test_the_wheel_is_named_by_the_tag_of_its_wheel_file(world: World) -> None:
    prefix = world.env("tags", ["python", "pip"])
    (info,) = add_pip_packages(prefix, [{"name": "Fancy.Pkg", "version": "2.0"}])
    (dist,) = read_pip_dists(prefix, read_records(prefix))
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nTag: cp311-cp311-manylinux_2_17_x86_64\n"
                                "Tag: cp311-cp311-manylinux2014_x86_64\n")
    packed = wheels.plan_wheel(prefix, dist)
    assert wheels.wheel_name(dist, packed.tag) == \
        "fancy_pkg-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"

    (info / "WHEEL").unlink()  # no WHEEL (nor in RECORD): pure python only
    rows = (info / "RECORD").read_text().splitlines()
    (info / "RECORD").write_text("\n".join(r for r in rows if "/WHEEL," not in r) + "\n")
    assert wheels.plan_wheel(prefix, dist).tag == "py3-none-any"
    module = next((info.parent / "fancy_pkg").iterdir())
    shutil.copy(module, info.parent / "fancy_pkg" / "_speedups.so")
    with open(info / "RECORD", "a") as f:
        f.write("fancy_pkg/_speedups.so,,\n")
    with pytest.raises(wheels.NotPackable, match="compiled files and no WHEEL"):
        wheels.plan_wheel(prefix, dist)


def test_an_unchanged_dist_is_not_repacked_and_the_same_files_make_the_same_wheel(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = world.env("again", ["python", "pip"])
    add_pip_packages(prefix, [{"name": "onepkg", "version": "1.0"},
                              {"name": "twopkg", "version": "1.0"}])
    store = Store.open(world.store)
    dists = read_pip_dists(prefix, read_records(prefix))
    monkeypatch.setattr(wheels, "NOTE_FROM_BYTES", 0)  # as if they were big: each is said
    said: list[str] = []
    first = wheels.keep_wheels(store, prefix, dists, budget_bytes=None, progress=said.append)
    assert first.packed == 2 and set(first.kept) == {"onepkg", "twopkg"}
    assert said[0].startswith("keeping pip package onepkg 1.0 as a wheel") and len(said) == 2
    again = wheels.keep_wheels(store, prefix, dists, budget_bytes=None, progress=said.append)
    assert again.packed == 0 and again.kept == first.kept  # keyed by each RECORD's sha256
    assert len(said) == 2  # nothing repacked, nothing said

    (store.root / "cache" / wheels.CACHE_NAME).unlink()  # without the cache: repacked, deduped
    third = wheels.keep_wheels(store, prefix, dists, budget_bytes=None)
    assert third.kept == first.kept and third.bytes_added == 0
    assert len(wheels.wheel_files(store)) == 2


def test_over_the_budget_the_snapshot_is_taken_with_one_warning(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    prefix = world.env("big", ["python", "pip"])
    add_pip_packages(prefix, [{"name": f"bulk{i}", "version": "1.0"} for i in range(4)])
    store = Store.open(world.store)
    from conda_safeguard.snapshot import capture

    state = capture(prefix)
    with caplog.at_level(logging.WARNING):
        kept = wheels.wheel_keeper(Settings(wheel_budget_mb=0))(store, prefix, state)
    assert kept == {}
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "4 pip packages" in line and "wheel budget of 0 MB" in line
    assert "plugins.safeguard_wheel_budget_mb 1" in line
    assert wheels.wheel_keeper(Settings(keep_packages="never")) is None
    assert set(wheels.wheel_keeper(Settings())(store, prefix, state)) == {
        f"bulk{i}" for i in range(4)}

    # through the CLI: the budget from .condarc, the snapshot still taken
    (world.store / "wheels").rename(world.root / "old-wheels")
    (world.store / "cache" / wheels.CACHE_NAME).unlink()
    condarc = Path(os.environ["CONDARC"])
    condarc.write_text(condarc.read_text().replace(
        "plugins:\n", "plugins:\n  safeguard_wheel_budget_mb: 0\n"))
    r = world.run("backup", "-n", "big")
    assert r.code == 0 and Store.open(world.store).resolve("big").wheels == {}


def test_prune_keeps_a_wheel_still_needed_and_removes_one_no_snapshot_needs(
        world: World) -> None:
    prefix = world.env("pr", ["python", "pip", "liba=1.0"])
    add_pip_packages(prefix, [{"name": "keeper", "version": "1.0"},
                              {"name": "changer", "version": "1.0"}])
    world.run("backup", "-n", "pr")
    add_pip_packages(prefix, [{"name": "changer", "version": "2.0"}])
    world.run("backup", "-n", "pr")
    store = Store.open(world.store)
    old, new = store.snapshots_of(prefix)[1], store.snapshots_of(prefix)[0]
    assert old.wheels["keeper"] == new.wheels["keeper"]  # stored once
    assert old.wheels["changer"] != new.wheels["changer"]
    assert len(wheels.wheel_files(store)) == 3

    r = world.run("prune", "-n", "pr", "--keep-last", "1", "--keep-daily", "0",
                  "--keep-weekly", "0")
    assert r.code == 0, r.out + r.err
    assert "1 pip wheel" in r.out
    left = {f"{sha}/{p.name}" for sha, p in wheels.wheel_files(store)}
    assert left == set(new.wheels.values())
    assert not (world.store / "wheels" / old.wheels["changer"]).parent.exists()
    assert world.run("check").code == 0


def test_check_finds_a_damaged_wheel_and_restore_does_not_install_it(world: World) -> None:
    prefix = world.env("rot", ["python=3.11.9", "pip"])
    add_pip_packages(prefix, [{"name": "rotpkg", "version": "1.0"}])
    world.run("backup", "-n", "rot")
    info = Store.open(world.store).resolve("rot")
    path = world.store / "wheels" / info.wheels["rotpkg"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    r = world.run("check")
    assert r.code == 1
    assert f"corrupt: wheels/{info.wheels['rotpkg']}" in r.out
    assert "1 pip wheel" in r.out

    shutil.rmtree(prefix)
    r = world.run("restore", info.id, "--offline", "--yes")
    assert r.code == 1
    assert "kept wheel" in r.out + r.err and "damaged" in r.out + r.err
    assert not list((world.root / "envs").glob("rot/" + PYTHON_SITE_PACKAGES + "/rotpkg*"))

    path.unlink()  # gone altogether: check names what the snapshot lacks
    r = world.run("check")
    assert r.code == 1 and f"missing wheel: wheels/{info.wheels['rotpkg']}" in r.out


def test_a_manifest_naming_a_path_as_a_wheel_is_not_trusted(world: World) -> None:
    import json

    from conda_safeguard.snapshot import manifest_id

    prefix = world.env("forged", ["python", "pip"])
    add_pip_packages(prefix, [{"name": "somepkg", "version": "1.0"}])
    world.run("backup", "-n", "forged")
    store = Store.open(world.store)
    info = store.resolve("forged")
    path = world.store / "snapshots" / f"{info.id}.json"
    d = json.loads(path.read_text())
    d["wheels"] = {"somepkg": f"{'0' * 64}/../../../../etc/x-1-py3-none-any.whl"}
    d["id"] = manifest_id(d)
    path.unlink()
    (world.store / "snapshots" / f"{d['id']}.json").write_text(json.dumps(d))
    assert "not <sha256>/<name>.whl" in dict(store.manifest_problems())[f"{d['id']}.json"]


def test_a_changed_env_does_not_repack_its_unchanged_pip_dists(world: World) -> None:
    """Keyed by each RECORD's sha256: a conda change reads the RECORDs, never the dists'
    files (an installed file edited behind pip's back is not re-read: a repack would show)."""
    prefix = world.env("fast", ["python", "pip", "liba=1.0"])
    add_pip_packages(prefix, [{"name": "fastpkg", "version": "1.0"}])
    world.run("backup", "-n", "fast")
    before = {f"{sha}/{p.name}" for sha, p in wheels.wheel_files(Store.open(world.store))}
    (prefix / PYTHON_SITE_PACKAGES / "fastpkg" / "__init__.py").write_text("edited = 1\n")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    r = world.run("backup", "-n", "fast")
    assert r.code == 0, r.out + r.err
    info = Store.open(world.store).resolve("fast")
    assert info.change == {"added": 0, "removed": 0, "changed": 1}
    assert set(info.wheels.values()) == before
    assert {f"{sha}/{p.name}" for sha, p in wheels.wheel_files(Store.open(world.store))} == before
