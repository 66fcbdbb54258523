"""policy.py as tables: (command, how it runs, which env) -> decision."""

from __future__ import annotations

import pytest

from conda_safeguard.condarc import Settings
from conda_safeguard.policy import (
    Action,
    Effect,
    Invocation,
    Target,
    allowed_names,
    classify,
    decide,
    is_protected,
    refusal_message,
)

SETTINGS = Settings()

# command -> classify() keyword facts for the destructive form
DESTRUCTIVE_FORMS = {
    "remove --all": ("remove", {"remove_all": True}),
    "env remove": ("env_remove", {}),
    "create over existing": ("create", {"target_exists": True}),
    "env create over existing": ("env_create", {"target_exists": True}),
    "rename": ("rename", {}),
    "install --revision removing packages": ("install_revision",
                                             {"revision_removes_packages": True}),
    "remove emptying the env": ("remove", {"empties_env": True}),
}
MUTATING_FORMS = {
    "install": ("install", {}),
    "update": ("update", {}),
    "remove some": ("remove", {}),
    "env update": ("env_update", {}),
    "install --revision": ("install_revision", {}),
}
MODES = {
    "tty": Invocation(interactive=True),
    "no tty": Invocation(interactive=False),
    "-y": Invocation(interactive=True, yes=True),
    "--json": Invocation(interactive=True, json=True),
    "always_yes": Invocation(interactive=True, yes=True),
    "dry-run": Invocation(interactive=True, dry_run=True),
}
# env kind -> (name, is_base, mark)
ENVS = {
    "protected": ("pytorch", False, None),
    "unprotected": ("pytorch", False, False),
    "temp": ("exp-tmp", False, None),
    "base": ("base", True, False),  # even an unprotect mark does not unprotect base
}


def targets(form: tuple[str, dict], env: str) -> list[Target]:
    command, facts = form
    name, is_base, mark = ENVS[env]
    protected = is_protected(name, is_base=is_base, mark=mark, settings=SETTINGS)
    return [Target(name=name, prefix=f"/envs/{name}", effect=effect, protected=protected, why=why)
            for _, effect, why in classify(command, **facts)]


def expected_destructive(mode: str, env: str) -> Action:
    if mode == "dry-run":
        return Action.ALLOW
    if env in ("unprotected", "temp"):
        return Action.SNAPSHOT
    return Action.CONFIRM if mode == "tty" else Action.REFUSE


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", DESTRUCTIVE_FORMS)
def test_destructive_matrix(form, mode, env):
    decision = decide(targets(DESTRUCTIVE_FORMS[form], env), MODES[mode], SETTINGS)
    assert decision.action is expected_destructive(mode, env)
    if decision.action is Action.REFUSE:
        assert decision.refused and decision.refused[0].name == ENVS[env][0]
    if decision.action in (Action.SNAPSHOT, Action.CONFIRM, Action.REFUSE):
        assert decision.snapshot, "every allowed or refused destruction snapshots first"


@pytest.mark.parametrize("env", ENVS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", MUTATING_FORMS)
def test_mutations_snapshot_and_never_prompt(form, mode, env):
    decision = decide(targets(MUTATING_FORMS[form], env), MODES[mode], SETTINGS)
    assert decision.action is (Action.ALLOW if mode == "dry-run" else Action.SNAPSHOT)
    assert not decision.confirm and not decision.refused


def test_create_of_a_new_env_is_not_guarded():
    assert classify("create", target_exists=False) == []
    assert decide([], Invocation(), SETTINGS).action is Action.ALLOW


def test_rename_yes_onto_existing_destination_guards_both():
    effects = classify("rename", destination_exists=True, yes=True)
    assert [(role, effect) for role, effect, _ in effects] == [
        ("target", Effect.DESTROY), ("destination", Effect.DESTROY)]
    # without --yes conda itself refuses an existing destination
    assert len(classify("rename", destination_exists=True, yes=False)) == 1


@pytest.mark.parametrize("allow, proceeds", [
    ("pytorch", True), ("other,pytorch", True), ("/envs/pytorch", True),
    ("pytorc", False), ("1", False), ("*", False), ("yes", False), ("all", False), ("", False),
])
def test_allow_must_name_the_env(allow, proceeds):
    target = Target("pytorch", "/envs/pytorch", Effect.DESTROY, protected=True)
    decision = decide([target], Invocation(interactive=False, yes=True, allow=allow), SETTINGS)
    assert (decision.action is Action.SNAPSHOT) is proceeds


def test_blanket_values_name_nothing():
    assert allowed_names("1,true,*,pytorch") == {"pytorch"}


def test_disabled_settings_allow_everything():
    target = Target("pytorch", "/envs/pytorch", Effect.DESTROY, protected=True)
    decision = decide([target], Invocation(), Settings(enabled=False))
    assert decision.action is Action.ALLOW


@pytest.mark.parametrize("name, settings, mark, expected", [
    ("pytorch", Settings(), None, True),
    ("exp-tmp", Settings(), None, False),
    ("tmp-exp", Settings(), None, False),
    ("exp-tmp", Settings(), True, True),  # an explicit mark beats the temp pattern
    ("pytorch", Settings(), False, False),
    ("pytorch", Settings(protect_by_default=False), None, False),
    ("prod-api", Settings(protect_by_default=False, protect_patterns=["prod-*"]), None, True),
    ("prod-tmp", Settings(protect_patterns=["prod-*"]), None, True),  # protect beats temp
    ("x", Settings(temp_patterns=["*"]), None, False),
])
def test_is_protected(name, settings, mark, expected):
    assert is_protected(name, is_base=False, mark=mark, settings=settings) is expected


def test_base_is_always_protected():
    assert is_protected("base", is_base=True, mark=False,
                        settings=Settings(protect_by_default=False, temp_patterns=["*"]))


def test_missing_env_is_not_guarded_but_nothing_to_snapshot():
    target = Target("ghost", "/envs/ghost", Effect.DESTROY, exists=False, protected=False)
    decision = decide([target], Invocation(), SETTINGS)
    assert decision.action is Action.ALLOW and not decision.snapshot


def test_refusal_message_says_what_why_and_how():
    target = Target("pytorch-exp1", "/home/u/envs/pytorch-exp1", Effect.DESTROY, protected=True,
                    why="remove it")
    decision = decide([target], Invocation(interactive=False), SETTINGS)
    message = refusal_message(decision, snapshot_note="A snapshot was taken: abc (2026-11-23).")
    assert message.startswith("Refusing to change protected environment 'pytorch-exp1' "
                              "(/home/u/envs/pytorch-exp1): this command would remove it, and "
                              "there is no terminal to confirm at.")
    assert "CONDA_SAFEGUARD_ALLOW=pytorch-exp1" in message
    assert "A snapshot was taken" in message


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("True", True), ("yes", True), ("on", True), ("y", True), ("1", True),
    (True, True), (" yes ", True),
    ("false", False), ("no", False), ("off", False), ("0", False), ("", False), (None, False),
    (False, False), ("maybe", False),
])
def test_truthy_reads_values_as_conda_does(value, expected):
    from conda_safeguard.condarc import truthy

    assert truthy(value) is expected
