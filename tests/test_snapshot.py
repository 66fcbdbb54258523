"""snapshot.py: capture an env, fingerprint it, diff two states, the manifest model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conda_safeguard.snapshot import (
    SnapshotInfo,
    canonical_json,
    capture,
    diff_states,
    host_platform,
    new_info,
)
from tests.factory import add_pip_package, install_env, set_env_vars


def test_capture_reads_everything(make_env, channel) -> None:
    prefix = make_env("cap", pip=["plain==1.0"])
    set_env_vars(prefix, {"B": "2", "A": "1"})
    (prefix / "conda-meta" / "frozen").write_text('{"message": "hands off"}')
    state = capture(prefix)
    assert [r.name for r in state.packages] == ["liba", "libb", "python"]
    assert [(d.name, d.version) for d in state.pip] == [("plain", "1.0")]
    assert list(state.variables.items()) == [("B", "2"), ("A", "1")]
    assert state.requested == {"python": "python", "liba": "liba=1.0", "libb": "libb"}
    assert state.history == (prefix / "conda-meta" / "history").read_text()
    assert state.frozen == "hands off"
    assert state.platform == host_platform()  # noarch only: the host's subdir


def test_fingerprint_is_stable_and_content_only(make_env) -> None:
    a = make_env("fp-a")
    b = make_env("fp-b")
    sa, sb = capture(a), capture(b)
    assert sa.fingerprint == sb.fingerprint == capture(a).fingerprint
    assert len(sa.fingerprint) == 64
    set_env_vars(b, {"X": "1"})
    assert capture(b).fingerprint != sa.fingerprint


def test_diff_reports_exactly_the_changed_package(make_env, channel, pkg_cache) -> None:
    prefix = make_env("diff", pip=["plain==1.0", "other==3"])
    before = capture(prefix)
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)
    after_conda = capture(prefix)
    d = diff_states(before, after_conda)
    assert [c.to_dict() for c in d.changes] == [{
        "kind": "conda", "name": "liba", "status": "changed",
        "old": f"1.0 0 ({channel.url})", "new": f"2.0 0 ({channel.url})"}]
    assert d.counts() == {"added": 0, "removed": 0, "changed": 1} and bool(d)

    add_pip_package(prefix, "plain", "1.1")
    d = diff_states(after_conda, capture(prefix))
    assert [(c.kind, c.name, c.old, c.new) for c in d.changes] == [
        ("pip", "plain", "plain==1.0", "plain==1.1")]


def test_diff_added_removed_and_vars(make_env, channel, pkg_cache) -> None:
    prefix = make_env("diff2", ["python", "liba=1.0"])
    before = capture(prefix)
    install_env(prefix, channel, ["libc=1.0"], cache_dir=pkg_cache)
    set_env_vars(prefix, {"K": "v"})
    after = capture(prefix)
    d = diff_states(before, after)
    assert [(c.name, c.status) for c in d.changes] == [("libc", "added")]
    assert d.variables_changed == ["K"]
    back = diff_states(after, before)
    assert [(c.name, c.status, c.new) for c in back.changes] == [("libc", "removed", None)]
    assert not diff_states(after, after)
    assert [c.status for c in diff_states(None, after).changes] == ["added"] * 3


def test_diff_same_version_other_build_hash(make_env) -> None:
    """A rebuilt package (same version and build, other bytes) is a change."""
    prefix = make_env("rebuilt", ["liba=1.0"])
    before = capture(prefix)
    path = next((prefix / "conda-meta").glob("liba-*.json"))
    data = json.loads(path.read_text())
    data["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    (change,) = diff_states(before, capture(prefix)).changes
    assert change.name == "liba" and change.status == "changed" and change.old == change.new


def _info(**kw) -> SnapshotInfo:
    base = dict(id="ab" * 32, env_name="e", prefix="/p", created="2026-11-23T10:04:11.000001Z",
                reason="manual", argv=["x"], fingerprint="f" * 64, channels=["c"],
                objects={"packages": "1" * 64}, counts={"conda": 1, "pip": 0})
    return SnapshotInfo(**{**base, **kw})


def test_snapshot_info_round_trip_ignores_unknown_keys() -> None:
    info = _info(parent="cd" * 32, pins=["e" * 64], change={"added": 1})
    d = info.to_dict()
    assert SnapshotInfo.from_dict(json.loads(json.dumps(d))) == info
    assert SnapshotInfo.from_dict({**d, "from_the_future": 1}) == info
    assert info.short_id == "abababab" + "ab"
    assert info.created_at.isoformat() == "2026-11-23T10:04:11.000001+00:00"
    with pytest.raises(TypeError):
        SnapshotInfo.from_dict({"id": "x"})


def test_new_info_id_is_content_hash(make_env) -> None:
    prefix = make_env("info")
    state = capture(prefix)
    info = new_info(env_name="info", prefix=prefix, state=state, reason="test", argv=["a"],
                    channels=["c"], objects={"packages": "0" * 64}, parent=None,
                    parent_state=None)
    body = {k: v for k, v in info.to_dict().items() if k != "id"}  # every field, pins too
    import hashlib

    assert info.id == hashlib.sha256(canonical_json(body)).hexdigest()
    assert info.counts == {"conda": 3, "pip": 0} and info.change == {}
    assert info.created.endswith("Z") and info.prefix == str(prefix)
    child = new_info(env_name="info", prefix=prefix, state=state, reason="t", argv=[],
                     channels=[], objects={}, parent=info, parent_state=state)
    assert child.parent == info.id and child.change == {"added": 0, "removed": 0, "changed": 0}


@pytest.mark.parametrize(("machine", "platform", "expected"), [
    ("x86_64", "linux", "linux-64"), ("aarch64", "linux", "linux-aarch64"),
    ("arm64", "linux", "linux-aarch64"), ("arm64", "darwin", "osx-arm64"),
    ("x86_64", "darwin", "osx-64"), ("AMD64", "win32", "win-64"), ("ppc64le", "linux",
                                                                 "linux-ppc64le"),
])
def test_host_platform(monkeypatch, machine: str, platform: str, expected: str) -> None:
    import conda_safeguard.snapshot as snap

    monkeypatch.setattr(snap._platform, "machine", lambda: machine)
    monkeypatch.setattr(snap.sys, "platform", platform)
    assert host_platform() == expected


def test_platform_from_records(make_env) -> None:
    prefix = make_env("plat", ["liba=1.0"])
    path = next((prefix / "conda-meta").glob("liba-*.json"))
    data = json.loads(path.read_text())
    data["subdir"] = "osx-arm64"
    path.write_text(json.dumps(data))
    assert capture(Path(prefix)).platform == "osx-arm64"
