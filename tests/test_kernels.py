"""Jupyter kernelspecs: captured in snapshots, registered again by restore, listed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conda_safeguard.kernels import capture_kernels, kernel_report, register_kernels
from conda_safeguard.store import Store
from tests.conftest import cli_output


def _kernels_dir() -> Path:
    return Path(os.environ["XDG_DATA_HOME"]) / "jupyter" / "kernels"


def _install_kernel(prefix: Path, name: str, display: str = "") -> Path:
    """What `python -m ipykernel install --user --name NAME` writes."""
    d = _kernels_dir() / name
    d.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [str(prefix / "bin" / "python"), "-m", "ipykernel_launcher", "-f",
                     "{connection_file}"], "display_name": display or name, "language": "python",
            "metadata": {"debugger": True}}
    (d / "kernel.json").write_text(json.dumps(spec, indent=1))
    (d / "logo-32x32.png").write_bytes(b"\x89PNG fake logo")
    return d


def _store() -> Store:
    return Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]), create=False)


def test_capture_only_kernels_running_in_the_env(make_env) -> None:  # type: ignore[no-untyped-def]
    a, b = make_env("nlp-a"), make_env("nlp-b")
    _install_kernel(a, "nlp-a")
    _install_kernel(b, "nlp-b")
    captured = capture_kernels(a)
    assert set(captured) == {"nlp-a"}
    assert set(captured["nlp-a"]["files"]) == {"kernel.json", "logo-32x32.png"}


def test_restore_registers_the_kernel_again(
        make_env, standalone_root: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("vision-train-x1")
    kdir = _install_kernel(prefix, "vision", "Vision (torch)")
    before = {f.name: f.read_bytes() for f in kdir.iterdir()}
    cli_output(capsys, "backup", "-n", "vision-train-x1")
    snap = _store().latest_of(prefix)
    assert snap is not None and "kernels" in snap.objects
    shutil.rmtree(prefix)
    shutil.rmtree(kdir)
    rows = kernel_report([])
    assert rows == []  # the kernel went with its folder here
    capsys.readouterr()
    cli_output(capsys, "restore", "vision-train-x1", "--yes")
    assert {f.name: f.read_bytes() for f in kdir.iterdir()} == before
    # into another prefix: the kernel follows the env
    shutil.rmtree(kdir)
    other = standalone_root / "envs" / "vision-copy"
    cli_output(capsys, "restore", "vision-train-x1", "-p", str(other), "--yes")
    spec = json.loads((kdir / "kernel.json").read_text())
    assert spec["argv"][0] == str(other / "bin" / "python")
    assert spec["display_name"] == "Vision (torch)"


def test_a_different_kernel_of_that_name_is_left_alone(make_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("a-env")
    kdir = _install_kernel(prefix, "shared-name")
    captured = capture_kernels(prefix)
    (kdir / "kernel.json").write_text('{"argv": ["/elsewhere/python"], "display_name": "x"}')
    done = register_kernels(captured, prefix, prefix)
    assert done.written == [] and done.kept == ["shared-name"]
    assert "/elsewhere/python" in (kdir / "kernel.json").read_text()
    evil = {"../../escape": {"files": {"kernel.json": "e30="}},
            "ok": {"files": {"../kernel.json": "e30="}}}
    assert register_kernels(evil, prefix, prefix).written == []
    assert not (tmp_path / "home" / ".local" / "escape").exists()


def test_a_new_kernel_is_noticed_by_the_next_backup(
        make_env, standalone_root: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    prefix = make_env("stats-fit-r4")
    first = json.loads(cli_output(capsys, "backup", "-n", "stats-fit-r4", "--json"))
    assert "kernels" not in _store().latest_of(prefix).objects  # type: ignore[union-attr]
    again = json.loads(cli_output(capsys, "backup", "-n", "stats-fit-r4", "--json"))
    assert again["snapshots"][0]["id"] == first["snapshots"][0]["id"]  # no kernels: same id
    kdir = _install_kernel(prefix, "stats")
    old = kdir.stat().st_mtime - 10  # past the racy window, as a kernel added a while ago
    for p in (kdir, kdir / "kernel.json", kdir.parent):
        os.utime(p, (old, old))
    after = json.loads(cli_output(capsys, "backup", "-n", "stats-fit-r4", "--json"))
    assert after["snapshots"][0]["created"] is True
    assert "kernels" in _store().latest_of(prefix).objects  # type: ignore[union-attr]


def test_kernels_lists_the_ones_whose_env_is_gone(
        make_env, standalone_root: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    alive, gone = make_env("alive-env"), make_env("gone-env")
    _install_kernel(alive, "alive")
    _install_kernel(gone, "gone")
    shutil.rmtree(gone)
    rows = {r["name"]: r for r in json.loads(cli_output(capsys, "kernels", "--json"))}
    assert rows["alive"]["status"] == "ok" and rows["alive"]["env"] == str(alive)
    assert rows["gone"]["status"] == "env missing" and rows["gone"]["env"] == str(gone)
    out = cli_output(capsys, "kernels", "--missing")
    assert "gone" in out and "alive " not in out and "restore" in out
