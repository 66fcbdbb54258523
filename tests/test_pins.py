"""Package pins: hardlinks into the store, once per tarball; they outlive conda's cache."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from conda_safeguard import pins
from conda_safeguard.condarc import Settings
from conda_safeguard.prefix import read_records
from conda_safeguard.snapshot import capture
from conda_safeguard.store import Store
from tests.factory import install_env
from tests.restoring_helpers import World, empty_cache


def pinned(world: World) -> dict[str, os.stat_result]:
    return {p.name: p.stat() for p in (world.store / "packages").iterdir()}


def test_pins_are_hardlinks_once_per_tarball(world: World) -> None:
    a = world.env("a", ["python", "liba=1.0", "libb"])
    b = world.env("b", ["python", "liba=1.0", "libc=1.0"])
    assert world.run("backup", "-n", "a").code == 0
    assert world.run("backup", "-n", "b").code == 0
    install_env(a, world.channel, ["tool"], cache_dir=world.pkgs)
    assert world.run("backup", "-n", "a").code == 0  # a second snapshot of a
    store = Store.open(world.store)
    assert len(store.snapshots()) == 3
    records = {r.fn: r for p in (a, b) for r in read_records(p)}
    files = pinned(world)
    # python, liba, libb, libc, tool: one file each, however many snapshots need them
    assert sorted(files) == sorted(f"{r.sha256}.tar.bz2" for r in records.values())
    for fn, r in records.items():
        cached = (world.pkgs / fn).stat()
        pin = files[f"{r.sha256}.tar.bz2"]
        assert (pin.st_ino, pin.st_dev) == (cached.st_ino, cached.st_dev)
        assert pin.st_nlink == cached.st_nlink == 2
    for s in store.snapshots():
        assert pins.offline_restorable(store, s)
        assert len(s.pins) == s.counts["conda"]


def test_conda_clean_keeps_the_pins(world: World) -> None:
    world.env("c")
    world.run("backup", "-n", "c")
    before = {n: pins.sha256_file(world.store / "packages" / n) for n in pinned(world)}
    empty_cache(world.pkgs)  # conda clean --all
    after = pinned(world)
    assert set(after) == set(before)
    for name, st in after.items():
        assert st.st_nlink == 1
        assert name.startswith(before[name])
    assert "offline" in world.run("list", "c").out
    assert world.run("check").code == 0


def test_prune_releases_pins_no_snapshot_needs(world: World) -> None:
    prefix = world.env("p", ["python", "liba=1.0"])
    world.run("backup", "-n", "p")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    world.run("backup", "-n", "p")
    old = json.loads(world.run("show", "p@-1", "--format", "json").out)["packages"]
    liba_1 = next(r["sha256"] for r in old if r["name"] == "liba")
    new_liba = capture(prefix).package_map()["liba"].sha256
    assert {f"{liba_1}.tar.bz2", f"{new_liba}.tar.bz2"} <= set(pinned(world))
    r = world.run("prune", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0")
    assert r.code == 0 and "1 package (" in r.out
    left = set(pinned(world))
    assert f"{liba_1}.tar.bz2" not in left and f"{new_liba}.tar.bz2" in left
    # a hardlink shared with the cache frees nothing: the cache still has liba 1.0
    assert (world.pkgs / "liba-1.0-0.tar.bz2").is_file()


def test_check_reports_a_flipped_byte_in_a_pin(world: World) -> None:
    world.env("k", ["python", "liba=1.0"])
    world.run("backup", "-n", "k")
    pin = sorted((world.store / "packages").iterdir())[0]
    data = bytearray(pin.read_bytes())
    data[-5] ^= 0x01
    pin.unlink()
    pin.write_bytes(bytes(data))
    r = world.run("check")
    assert r.code == 1 and f"corrupt: packages/{pin.name}" in r.out


def test_across_filesystems_copies_within_the_budget(world: World,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    prefix = world.env("x", ["python", "liba=1.0"])
    store = Store.open(world.store)
    state = capture(prefix)

    def cross_device(src, dst, *a, **kw):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(pins.os, "link", cross_device)
    report = pins.pin_records(store, state.packages, mode="auto", budget_bytes=0)
    assert report.pinned == [] and len(report.not_kept) == 2
    assert all("pin budget" in n for n in report.not_kept)
    with caplog.at_level(logging.WARNING):
        kept = pins.pinner(Settings(keep_packages="auto", pin_budget_mb=0))(store, state)
    assert kept == [] and "liba-1.0-0" in caplog.text and "pin budget" in caplog.text

    report = pins.pin_records(store, state.packages, mode="auto", budget_bytes=1 << 20)
    assert report.copied == 2 and report.linked == 0 and len(report.pinned) == 2
    for p in (world.store / "packages").iterdir():
        assert p.stat().st_nlink == 1  # a copy
    assert pins.copied_bytes(store) == report.bytes_copied
    assert pins.pinner(Settings(keep_packages="never")) is None


def test_tarball_for_reads_what_conda_and_rattler_write(world: World, tmp_path: Path) -> None:
    prefix = world.env("t", ["liba=1.0"])
    (record,) = read_records(prefix)
    # rattler: extracted_package_dir / link.source point into the (conda-style) cache
    assert record.extracted_package_dir == str(world.pkgs / "liba-1.0-0")
    assert record.package_tarball_full_path is None
    assert pins.tarball_for(record, []) == world.pkgs / "liba-1.0-0.tar.bz2"
    # conda: package_tarball_full_path
    conda_style = type(record)(**{**record.__dict__, "extracted_package_dir": None,
                                  "package_tarball_full_path": str(world.pkgs / record.fn)})
    assert pins.tarball_for(conda_style, []) == world.pkgs / record.fn
    # rattler's own cache holds no tarball: found through the pkgs dirs, else the channel
    elsewhere = type(record)(**{**record.__dict__, "extracted_package_dir": str(tmp_path / "x")})
    assert pins.tarball_for(elsewhere, [world.pkgs]) == world.pkgs / record.fn
    assert pins.tarball_for(elsewhere, []) == world.channel.path / "noarch" / record.fn
    # a file with that name but other bytes is not the package
    (world.pkgs / record.fn).write_bytes(b"not the package")
    assert pins.tarball_for(record, [world.pkgs]) == world.channel.path / "noarch" / record.fn
    world.channel.remove("liba", "1.0")
    assert pins.tarball_for(record, [world.pkgs]) is None


def test_find_pkgs_dirs_follows_conda(tmp_path: Path) -> None:
    home = Path.home()
    assert pins.find_pkgs_dirs({}, tmp_path / "root", {}) == [tmp_path / "root" / "pkgs",
                                                             home / ".conda" / "pkgs"]
    assert pins.find_pkgs_dirs({"pkgs_dirs": ["~/p1", "/x/p2"]}, None, {}) == \
        [home / "p1", Path("/x/p2")]
    assert pins.find_pkgs_dirs({"pkgs_dirs": ["/x/p2"]}, tmp_path,
                               {"CONDA_PKGS_DIRS": "/a,/b"}) == [Path("/a"), Path("/b")]


def test_offline_restorable_needs_every_pin(world: World) -> None:
    world.env("o", ["python", "liba=1.0"])
    world.run("backup", "-n", "o")
    store = Store.open(world.store)
    info = store.resolve("o")
    assert pins.offline_restorable(store, info)
    next((world.store / "packages").iterdir()).unlink()
    assert not pins.offline_restorable(store, info)
    assert "needs channel" in world.run("list", "o").out
    info.pins = info.pins[:1]
    assert not pins.offline_restorable(store, info, present=pins.pinned_names(store))


def test_a_conda_format_pin_unpacks_without_py_rattler(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """conda-package-handling (what conda's base has; no py-rattler there) finds the parts of a
    `.conda` by its file name: a pin named by its sha256 is offered under its package name."""
    from conda_package_handling import api as cph

    from conda_safeguard import installers
    from conda_safeguard.prefix import CondaRecord
    from tests.factory import build_package, file_sha256

    built = build_package(tmp_path / "channel", "liba", "1.0", fmt=".conda")
    sha = file_sha256(built)
    pin = tmp_path / "store" / "packages" / f"{sha}.conda"
    pin.parent.mkdir(parents=True)
    os.link(built, pin)
    with pytest.raises(Exception, match="info-"):  # the failure pins used to hit
        cph.extract(str(pin), str(tmp_path / "direct"))

    def cph_only() -> installers.Unpacker:
        def extract(tarball: Path, dest: Path) -> None:
            cph.extract(str(tarball), str(dest))
        return extract

    monkeypatch.setattr(installers, "find_unpacker", cph_only)
    record = CondaRecord(name="liba", version="1.0", build="0", build_number=0,
                         channel="file:///c/noarch", subdir="noarch", fn=built.name,
                         url=f"file:///c/noarch/{built.name}", md5="", sha256=sha,
                         size=built.stat().st_size, noarch="generic")
    staging = tmp_path / "staging"
    out = installers.unpack_all([installers.PackageFile(record, "pin", pin)],
                                staging / "pkgs", staging)
    folder = out[built.name]
    assert (folder / "info" / "index.json").is_file()
    assert json.loads((folder / "info" / "repodata_record.json").read_text())["sha256"] == sha
    assert (staging / "named" / built.name).stat().st_ino == pin.stat().st_ino  # a hardlink
    with pytest.raises(ValueError, match="not a package file name"):
        pins.named_link(pin, staging, "../evil.conda")


def test_conda_format_pins_restore_offline_with_py_rattler(world: World) -> None:
    """The py-rattler installer, conda's cache emptied and the channel gone: only the store's
    pins (a `.conda` and a `.tar.bz2`) serve the restore."""
    import shutil

    world.channel.add("libd", "1.0", fmt=".conda")
    world.channel.index()
    prefix = world.env("fmt", ["python", "libd"])
    assert {r.fn for r in read_records(prefix)} == {"libd-1.0-0.conda", "python-3.11.7-0.tar.bz2"}
    assert world.run("backup", "-n", "fmt").code == 0
    shutil.rmtree(prefix)
    empty_cache(world.pkgs)
    shutil.rmtree(world.channel.path)
    r = world.run("restore", "fmt", "--offline", "--yes")
    assert r.code == 0, r.out + r.err
    assert "2 pinned in the store" in r.out
    assert ": byte-identical\n  2 packages, 2 files compared" in r.out
