"""guard.py and the protection verbs, on real fixture envs (no conda needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conda_safeguard.__main__ import main
from conda_safeguard.cli.runtime import Runtime
from conda_safeguard.condarc import Settings
from conda_safeguard.envs import EnvLocator
from conda_safeguard.exceptions import RefusedError
from conda_safeguard.guard import enforce, make_target, protection, read_mark, write_mark
from conda_safeguard.policy import Action, Effect, Invocation
from tests.factory import read_prefix_records


@pytest.fixture
def rt(conda_root: Path, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("CONDA_SAFEGUARD_ROOT", str(conda_root))
    return Runtime(locator=EnvLocator(conda_root, [conda_root / "envs"]), settings=Settings())


NO_TTY = Invocation(interactive=False)


def test_refused_destruction_leaves_env_and_takes_a_snapshot(rt, make_env):
    env = make_env("pytorch")
    before = read_prefix_records(env)
    target = make_target(rt, env, Effect.DESTROY, "remove it")
    with pytest.raises(RefusedError) as e:
        enforce(rt, [target], NO_TTY, argv=["conda", "remove"], reason="before remove")
    assert "CONDA_SAFEGUARD_ALLOW=pytorch" in str(e.value)
    assert "A snapshot was taken" in str(e.value)
    assert read_prefix_records(env) == before
    assert rt.store().latest_of(env) is not None


def test_allow_env_var_names_the_env(rt, make_env, monkeypatch):
    env = make_env("pytorch")
    monkeypatch.setenv("CONDA_SAFEGUARD_ALLOW", "pytorch")
    outcome = enforce(rt, [make_target(rt, env, Effect.DESTROY)], NO_TTY, argv=[], reason="x")
    assert outcome.decision.action is Action.SNAPSHOT
    assert str(env) in outcome.snapshots


def test_mutation_snapshots_before(rt, make_env):
    env = make_env("pytorch")
    outcome = enforce(rt, [make_target(rt, env, Effect.MUTATE)], NO_TTY, argv=[], reason="x")
    snap = rt.store().get(outcome.snapshots[str(env)])
    assert snap.counts["conda"] == len(read_prefix_records(env))


def _break_store(rt: Runtime, tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store should be")
    monkeypatch.setenv("CONDA_SAFEGUARD_HOME", str(blocker / "store"))
    rt._store = None


def test_failed_snapshot_before_destruction_fails_closed(rt, make_env, tmp_path, monkeypatch):
    env = make_env("scratch-tmp")  # unprotected: only the snapshot failure can stop it
    _break_store(rt, tmp_path, monkeypatch)
    with pytest.raises(RefusedError, match="snapshot of 'scratch-tmp'"):
        enforce(rt, [make_target(rt, env, Effect.DESTROY)], NO_TTY, argv=[], reason="x")


def test_failed_snapshot_before_mutation_warns_and_proceeds(rt, make_env, tmp_path, monkeypatch,
                                                           capsys):
    env = make_env("pytorch")
    _break_store(rt, tmp_path, monkeypatch)
    outcome = enforce(rt, [make_target(rt, env, Effect.MUTATE)], NO_TTY, argv=[], reason="x")
    assert outcome.snapshots == {}
    assert "warning: no snapshot of 'pytorch'" in capsys.readouterr().err


def test_require_snapshot_setting_refuses_the_mutation(rt, make_env, tmp_path, monkeypatch):
    env = make_env("pytorch")
    rt.settings.require_snapshot = True
    _break_store(rt, tmp_path, monkeypatch)
    with pytest.raises(RefusedError):
        enforce(rt, [make_target(rt, env, Effect.MUTATE)], NO_TTY, argv=[], reason="x")


def test_dry_run_neither_snapshots_nor_refuses(rt, make_env):
    env = make_env("pytorch")
    outcome = enforce(rt, [make_target(rt, env, Effect.DESTROY)],
                      Invocation(interactive=False, dry_run=True), argv=[], reason="x")
    assert outcome.decision.action is Action.ALLOW
    assert not (Path(os.environ["CONDA_SAFEGUARD_HOME"]) / "snapshots").exists()


def test_marks_round_trip_and_base_stays_protected(rt, make_env, conda_root):
    env = make_env("scratch-tmp")
    assert read_mark(env) is None and not protection(rt, env)
    write_mark(env, True)
    assert read_mark(env) is True and protection(rt, env)
    write_mark(env, False)
    assert not protection(rt, env)
    write_mark(conda_root, False)
    assert protection(rt, conda_root)


def test_damaged_mark_is_treated_as_protected(rt, make_env, capsys):
    env = make_env("scratch-tmp")
    (env / "conda-meta" / "safeguard-protection").write_text("{garbage")
    assert protection(rt, env)
    assert "damaged" in capsys.readouterr().err


# -- the verbs ---------------------------------------------------------------------------------


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_protect_unprotect_status(rt, make_env, capsys):
    make_env("exp-tmp")
    code, out, _ = run(capsys, "status", "-n", "exp-tmp", "--json")
    assert code == 0 and json.loads(out)[0]["protected"] is False
    assert run(capsys, "protect", "exp-tmp")[0] == 0
    code, out, _ = run(capsys, "status", "-n", "exp-tmp", "--json")
    assert json.loads(out)[0]["protected"] is True and json.loads(out)[0]["mark"] is True
    assert run(capsys, "unprotect", "-n", "exp-tmp")[0] == 0
    code, out, _ = run(capsys, "status", "--json")
    assert {r["env"]: r["protected"] for r in json.loads(out)}["exp-tmp"] is False


def test_protect_unknown_env_fails_cleanly(rt, make_env, capsys):
    code, out, err = run(capsys, "protect", "-n", "nosuch")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "No conda environment named 'nosuch'" in err


def test_freeze_writes_conda_cep22_marker(rt, make_env, capsys):
    env = make_env("pytorch")
    assert run(capsys, "freeze", "-n", "pytorch", "--message", "ask ops")[0] == 0
    assert json.loads((env / "conda-meta" / "frozen").read_text()) == {"message": "ask ops"}
    code, out, _ = run(capsys, "status", "-n", "pytorch", "--json")
    assert json.loads(out)[0]["frozen"] is True
    assert run(capsys, "unfreeze", "-n", "pytorch")[0] == 0
    assert not (env / "conda-meta" / "frozen").exists()
