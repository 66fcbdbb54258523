"""restore/undo never destroy more than they bring back (issue 9, items 1, 2, 6, 7, 8): each
reproduced failure as a test, on real envs (factory packages installed by py-rattler)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conda_safeguard.policy import Effect, Target
from tests.factory import install_env
from tests.restoring_helpers import World, package_set, tree_hashes, unprivileged


def beside(prefix: Path) -> list[str]:
    return sorted(p.name for p in prefix.parent.iterdir() if "safeguard" in p.name)


def add_user_files(prefix: Path) -> None:
    (prefix / "results").mkdir()
    (prefix / "results" / "run1.csv").write_text("epoch,loss\n1,0.5\n")
    (prefix / "etc/conda/activate.d").mkdir(parents=True)
    (prefix / "etc/conda/activate.d/cuda.sh").write_text("export CUDA_HOME=/opt/cuda\n")
    (prefix / "etc/conda/deactivate.d").mkdir(parents=True)
    (prefix / "etc/conda/deactivate.d/cuda.sh").write_text("unset CUDA_HOME\n")
    (prefix / "conda-meta/pinned").write_text("liba 1.*\n")
    (prefix / ".condarc").write_text("channels: [conda-forge]\n")


# -- 1. a conda root prefix is never replaced ------------------------------------------------


def test_undo_and_restore_refuse_a_conda_root(world: World, conda_root: Path) -> None:
    install_env(conda_root, world.channel, ["python", "liba=1.0"], cache_dir=world.pkgs)
    world.env("child")
    assert world.run("backup", "-p", conda_root).code == 0
    install_env(conda_root, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    before = tree_hashes(conda_root)

    for args in (["undo", "-p", conda_root, "--yes"], ["restore", "base", "--yes"],
                 ["restore", "base", "-p", conda_root, "--yes", "--dry-run"]):
        r = world.run(*args)
        assert r.code == 1, r.out + r.err
        assert f"Refusing to replace {conda_root}" in r.err
        assert "restore" in r.err and "-n NEW_NAME" in r.err and "Nothing was changed" in r.err
    assert tree_hashes(conda_root) == before
    assert (conda_root / "envs" / "child" / "conda-meta").is_dir()
    # restoring base's snapshot into a new env is the way offered, and it works
    r = world.run("restore", "base", "-n", "base-copy", "--yes")
    assert r.code == 0, r.out + r.err
    assert package_set(world.prefix("base-copy"))["liba"][0] == "1.0"


def test_a_prefix_holding_pkgs_is_refused(world: World, tmp_path: Path) -> None:
    prefix = world.env("odd")
    world.run("backup", "-n", "odd")
    (prefix / "pkgs").mkdir()
    r = world.run("restore", "odd", "--yes")
    assert r.code == 1 and "it holds pkgs/" in r.err


# -- 2. files no package owns survive, config comes back from the snapshot --------------------


def test_undo_keeps_user_files_and_env_config(world: World) -> None:
    prefix = world.env("ml", ["python", "liba=1.0", "libb", "tool"])
    add_user_files(prefix)
    world.run("backup", "-n", "ml")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    (prefix / "results" / "run2.csv").write_text("made after the snapshot\n")
    (prefix / "etc/conda/activate.d/cuda.sh").write_text("export CUDA_HOME=/opt/cuda-12\n")

    r = world.run("undo", "-n", "ml", "--yes")
    assert r.code == 0, r.out + r.err
    assert package_set(prefix)["liba"][0] == "1.0"
    assert (prefix / "results/run1.csv").read_text() == "epoch,loss\n1,0.5\n"
    assert (prefix / "results/run2.csv").read_text() == "made after the snapshot\n"
    assert (prefix / "conda-meta/pinned").read_text() == "liba 1.*\n"
    assert (prefix / ".condarc").read_text() == "channels: [conda-forge]\n"
    assert (prefix / "etc/conda/deactivate.d/cuda.sh").read_text() == "unset CUDA_HOME\n"
    # the snapshot's script is back; the edited one is kept beside it, not lost
    assert (prefix / "etc/conda/activate.d/cuda.sh").read_text() == \
        "export CUDA_HOME=/opt/cuda\n"
    assert (prefix / "etc/conda/activate.d/cuda.sh.safeguard-kept").read_text() == \
        "export CUDA_HOME=/opt/cuda-12\n"
    assert "carried over" in r.out and "kept as NAME.safeguard-kept" in r.out
    assert beside(prefix) == []


def test_removed_env_comes_back_with_its_config(world: World) -> None:
    prefix = world.env("cfg")
    add_user_files(prefix)
    world.run("backup", "-n", "cfg")
    shutil.rmtree(prefix)
    r = world.run("restore", "cfg", "--yes")
    assert r.code == 0, r.out + r.err
    assert "byte-identical" in r.out and "wrote 4 config files" in r.out
    assert (prefix / "etc/conda/activate.d/cuda.sh").read_text() == \
        "export CUDA_HOME=/opt/cuda\n"
    assert (prefix / "conda-meta/pinned").read_text() == "liba 1.*\n"
    assert (prefix / ".condarc").exists()
    assert not (prefix / "results").exists()  # user data is not in a snapshot: said so below


def test_a_config_change_alone_makes_a_new_snapshot(world: World) -> None:
    prefix = world.env("c2")
    world.run("backup", "-n", "c2")
    (prefix / "etc/conda/activate.d").mkdir(parents=True)
    (prefix / "etc/conda/activate.d/x.sh").write_text("export X=1\n")
    r = world.run("backup", "-n", "c2", "--json")
    assert r.code == 0 and json.loads(r.out)["snapshots"][0]["created"] is True


def test_guard_says_how_much_user_data_a_destruction_loses(world: World) -> None:
    from conda_safeguard.guard import unowned_note

    prefix = world.env("data")
    add_user_files(prefix)
    (prefix / "results" / "big.bin").write_bytes(b"x" * 2_000_000)
    target = Target("data", str(prefix), Effect.DESTROY, why="remove --all")
    note = unowned_note(target)
    assert "6 files (2.0 MB) that no package owns" in note
    assert "no snapshot can bring them back" in note
    kept = unowned_note(Target("data", str(prefix), Effect.DESTROY, keeps_unowned=True))
    assert "carried over" in kept


def test_refusal_names_the_user_data(world: World) -> None:
    prefix = world.env("prot")
    add_user_files(prefix)
    from conda_safeguard.cli.runtime import Runtime
    from conda_safeguard.exceptions import RefusedError
    from conda_safeguard.guard import enforce
    from conda_safeguard.policy import Invocation

    rt = Runtime.from_system()
    target = Target("prot", str(prefix), Effect.DESTROY, protected=True, why="remove it")
    inv = Invocation(tool="conda", interactive=False, yes=True, json=False, dry_run=False)
    with pytest.raises(RefusedError, match=r"5 files \(0\.0 MB\) that no package owns"):
        enforce(rt, [target], inv, argv=["conda"], reason="remove")


# -- 7. retrying a failed restore restores what was asked --------------------------------------


def failing_conda(tmp_path: Path) -> str:
    exe = tmp_path / "bin" / "conda"
    exe.parent.mkdir(exist_ok=True)
    exe.write_text("#!/bin/sh\necho 'CondaError: disk full' >&2\nexit 1\n")
    exe.chmod(0o755)
    return str(exe)


def test_retry_after_a_failed_restore_restores_the_asked_snapshot(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = world.env("retry", ["python", "liba=1.0", "libb"])
    wanted = world.run("backup", "-n", "retry", "--json").json()["snapshots"][0]["id"]
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)  # no snapshot of it
    before = tree_hashes(prefix)

    monkeypatch.setenv("CONDA_SAFEGUARD_INSTALLER", "conda")
    monkeypatch.setenv("CONDA_EXE", failing_conda(tmp_path))
    r = world.run("restore", "retry", "--yes")
    assert r.code == 1 and "disk full" in r.err and "unchanged" in r.err
    assert f"it restores snapshot {wanted[:10]} again" in r.err
    assert tree_hashes(prefix) == before and beside(prefix) == []

    monkeypatch.setenv("CONDA_SAFEGUARD_INSTALLER", "rattler")
    plan = world.run("restore", "retry", "--dry-run", "--json").json()["plan"]
    assert plan["snapshot"] == wanted
    r = world.run("restore", "retry", "--yes")
    assert r.code == 0, r.out + r.err
    assert package_set(prefix)["liba"][0] == "1.0"
    assert wanted[:10] in r.out


# -- 8. a read-only store --------------------------------------------------------------------


def test_restore_from_a_read_only_store(world: World, tmp_path: Path) -> None:
    prefix = world.env("ro")
    world.run("backup", "-n", "ro")
    before = tree_hashes(prefix)
    shutil.rmtree(prefix)
    ns = ["unshare", "-m"] if os.getuid() == 0 else ["unshare", "-rm"]
    script = (f"mount --bind {world.store} {world.store} && "
              f"mount -o remount,bind,ro {world.store} && "
              f"! touch {world.store}/probe 2>/dev/null && "
              f"exec {sys.executable} -m conda_safeguard restore ro --yes --offline")
    try:
        proc = subprocess.run([*ns, "sh", "-c", script], capture_output=True, text=True,
                              env=dict(os.environ), stdin=subprocess.DEVNULL, timeout=120)
    except FileNotFoundError:
        pytest.skip("unshare is not installed: cannot mount the store read-only")
    if "mount" in proc.stderr and proc.returncode != 0 and not prefix.exists():
        pytest.skip(f"cannot mount read-only here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "byte-identical" in proc.stdout
    assert "no snapshot of the restored env" in proc.stderr  # said, not hidden
    assert tree_hashes(prefix) == before


# -- standalone conda next to our python -------------------------------------------------------


def test_standalone_finds_conda_beside_its_python(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from conda_safeguard import installers

    fake = tmp_path / "root" / "bin"
    fake.mkdir(parents=True)
    (fake / "python").write_text("")
    (fake / "conda").write_text("#!/bin/sh\n")
    (fake / "conda").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(fake / "python"))
    found = installers.find_installer("conda", {"PATH": ""})
    assert found is not None and found.argv == [str(fake / "conda")]  # type: ignore[attr-defined]


# -- 6. a new env that does not verify never replaces the old one --------------------------------


def test_a_tampered_package_rolls_the_restore_back(world: World) -> None:
    prefix = world.env("tam")
    world.run("backup", "-n", "tam")
    before = tree_hashes(prefix)
    cached = world.pkgs / "tool-0.1-0" / "bin" / "tool"
    cached.unlink()  # a new file, not the env's hardlink
    cached.write_text("#!/bin/sh\necho tampered\n")
    r = world.run("restore", "tam", "--yes", "--rebuild")  # every package from the cache
    assert r.code == 1, r.out + r.err
    assert "NOT restored" in r.out and "unchanged" in r.out
    assert "tool: bin/tool: sha256 differs" in r.out
    assert tree_hashes(prefix) == before and beside(prefix) == []


def test_a_new_env_whose_files_differ_is_not_left_behind(world: World) -> None:
    prefix = world.env("gone")
    world.run("backup", "-n", "gone")
    shutil.rmtree(prefix)
    cached = world.pkgs / "tool-0.1-0" / "bin" / "tool"
    cached.unlink()
    cached.write_text("#!/bin/sh\necho tampered\n")
    r = world.run("restore", "gone", "--yes")
    assert r.code == 1, r.out + r.err
    assert "tool: bin/tool: sha256 differs" in r.out
    assert f"nothing was left at {prefix}" in r.out
    assert not prefix.exists() and beside(prefix) == []


def test_systems_without_an_atomic_swap_still_restore(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from conda_safeguard import transaction

    monkeypatch.setattr(transaction, "_atomic_swap", lambda a, b: False)  # e.g. old kernels
    prefix = world.env("noswap", ["python", "liba=1.0"])
    (prefix / "notes.txt").write_text("mine\n")
    world.run("backup", "-n", "noswap")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    r = world.run("undo", "-n", "noswap", "--yes")
    assert r.code == 0, r.out + r.err
    assert package_set(prefix)["liba"][0] == "1.0"
    assert (prefix / "notes.txt").read_text() == "mine\n" and beside(prefix) == []


def test_carry_over_never_gives_up_on_a_clash(tmp_path: Path) -> None:
    from conda_safeguard.unowned import Unowned, carry_over

    old, new = tmp_path / "old", tmp_path / "new"
    for rel, text in {"share/tool": "user file where the new env has a folder",
                      "bin/tool/notes": "a folder where the new env has a file",
                      "same.txt": "same"}.items():
        (old / rel).parent.mkdir(parents=True, exist_ok=True)
        (old / rel).write_text(text)
    (new / "share/tool").mkdir(parents=True)
    (new / "bin").mkdir()
    (new / "bin/tool").write_text("#!/bin/sh\n")
    (new / "same.txt").write_text("same")
    found = Unowned(files=["bin/tool/notes", "same.txt", "share/tool"])
    report = carry_over(old, new, found)
    assert (new / "share/tool.safeguard-kept").read_text().startswith("user file")
    assert (new / "bin/tool.safeguard-kept/notes").read_text().startswith("a folder")
    assert (new / "bin/tool").read_text() == "#!/bin/sh\n"
    assert report.files == 2 and sorted(report.kept) == ["bin/tool/notes", "share/tool"]


def test_undo_of_an_env_reached_through_a_symlink_replaces_it_where_it_is(
        world: World, tmp_path: Path) -> None:
    # envs/big -> a bigger disk: swapping the link itself would build the new env beside the
    # link, copy the user's data over and leave the real env behind, orphaned
    real = tmp_path / "bigdisk" / "big"
    install_env(real, world.channel, ["python", "liba=1.0", "libb", "tool"],
                cache_dir=world.pkgs)
    (real / "results.bin").write_bytes(b"data" * 1000)
    link = world.prefix("big")
    link.symlink_to(real)
    world.run("backup", "-p", link)
    install_env(real, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    r = world.run("undo", "-p", link, "--yes")
    assert r.code == 0, r.out + r.err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert package_set(real)["liba"][0] == "1.0" and (real / "results.bin").is_file()
    assert sorted(p.name for p in real.parent.iterdir()) == ["big"]
    assert sorted(p.name for p in link.parent.iterdir()) == ["big"]


def test_an_unreadable_folder_in_the_env_fails_the_undo_and_survives(world: World) -> None:
    """A folder restore cannot list may hold data it could not carry over: the undo stops and
    the env stays as it was (tested with file permissions in force, also as root)."""
    prefix = world.env("locked", ["python", "liba=1.0"])
    world.run("backup", "-n", "locked")
    install_env(prefix, world.channel, ["liba=2.0"], cache_dir=world.pkgs)
    private = prefix / "results" / "private"
    private.mkdir(parents=True)
    (private / "run.csv").write_text("epoch,loss\n")
    private.chmod(0)
    try:
        proc = unprivileged([sys.executable, "-m", "conda_safeguard", "undo", "-n", "locked",
                             "--yes"], env=dict(os.environ))
    finally:
        private.chmod(0o700)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Permission denied" in proc.stderr and str(private) in proc.stderr
    assert "unchanged" in proc.stderr and f"Make {private} readable" in proc.stderr
    assert (private / "run.csv").read_text() == "epoch,loss\n"
    assert package_set(prefix)["liba"][0] == "2.0" and beside(prefix) == []
