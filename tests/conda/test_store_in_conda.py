"""The store's robustness as conda users meet it (issue 11): a damaged cache never breaks a conda
command, damage is said, credentials given to conda stay out of the store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.factory import read_prefix_records


def offline(channel) -> list[str]:
    return ["--offline", "--override-channels", "-c", channel.url]


def settle(prefix: Path) -> None:
    """Backdate the env so the snapshot's stat key and records cache are used."""
    old = time.time() - 60
    for p in [prefix / "conda-meta", *(prefix / "conda-meta").iterdir()]:
        os.utime(p, (old, old))


@pytest.mark.newest_conda_only  # the cache is ours; conda only runs the hook
def test_a_damaged_records_cache_never_breaks_conda(make_env, run_conda, channel) -> None:
    """It once made every later `conda install`/`remove` on the env fail with conda's error
    report, and gave snapshots wrong records."""
    prefix = make_env("cached", ["python", "liba=1.0"])
    settle(prefix)
    run_conda("safeguard", "backup", "-p", prefix)
    store = Path(os.environ["CONDA_SAFEGUARD_HOME"])
    (cache,) = (store / "cache").glob("records-*.json")
    raw = cache.read_bytes()
    for garbage in (raw.replace(b'"1.0"', b'"7.7"', 1), raw[: len(raw) // 2], b"\x00" * 40):
        cache.write_bytes(garbage)
        run_conda("install", "-y", "-p", prefix, "libc=1.0", *offline(channel))
        run_conda("remove", "-y", "-p", prefix, "libc", *offline(channel))
    newest = json.loads(run_conda("safeguard", "list", "--json").stdout)[0]
    shown = json.loads(run_conda("safeguard", "show", newest["id"], "--format", "json").stdout)
    assert {r["name"]: r["version"] for r in shown["packages"]}["liba"] == "1.0"
    assert "liba" in read_prefix_records(prefix)
    check = run_conda("safeguard", "check")
    assert "ok" in check.stdout.splitlines()[0]


@pytest.mark.newest_conda_only
def test_an_edited_manifest_is_said_not_used(make_env, run_conda, channel) -> None:
    prefix = make_env("edited", ["python", "liba=1.0"])
    run_conda("install", "-y", "-p", prefix, "libc=1.0", *offline(channel))  # snapshot before
    listed = json.loads(run_conda("safeguard", "list", "--json").stdout)
    manifest = Path(os.environ["CONDA_SAFEGUARD_HOME"]) / "snapshots" / f"{listed[0]['id']}.json"
    data = json.loads(manifest.read_text())
    data["prefix"] = "/somewhere/else"  # restore would have gone there
    manifest.write_text(json.dumps(data))
    proc = run_conda("safeguard", "list")
    assert "damaged snapshot manifest" in proc.stderr and manifest.name in proc.stderr
    check = run_conda("safeguard", "check", check=False)
    assert check.returncode == 1
    assert f"damaged manifest: snapshots/{manifest.name}" in check.stdout
    assert "do not match its id" in check.stdout


@pytest.mark.newest_conda_only
def test_channel_credentials_stay_out_of_the_store(make_env, run_conda, channel) -> None:
    prefix = make_env("cred", ["python", "liba=1.0"])
    run_conda("install", "-y", "-p", prefix, "libc=1.0", "--offline", "--override-channels",
              "-c", channel.url, "-c", "https://alice:s3cr3t@repo.invalid/t/tk-12345/private",
              check=False)  # conda may fail to reach it: the snapshot before it is what counts
    store = Path(os.environ["CONDA_SAFEGUARD_HOME"])
    stored = b"".join(p.read_bytes() for p in store.rglob("*") if p.is_file())
    assert b"s3cr3t" not in stored and b"tk-12345" not in stored and b"alice" not in stored
    listed = json.loads(run_conda("safeguard", "list", "--json").stdout)
    argvs = [" ".join(s["argv"] + s["channels"]) for s in listed]
    assert any("https://repo.invalid/private" in a for a in argvs), argvs  # it was recorded
