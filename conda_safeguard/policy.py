"""Pure decisions: given what a command will do to which envs, and how it runs, what do we do?

No I/O here. The plugin (hooks.py) and the shell layer (guard.py via `conda-safeguard guard`)
gather the facts and act on the Decision, so both layers decide alike.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from enum import Enum

from .condarc import Settings

#: Values that would allow everything: CONDA_SAFEGUARD_ALLOW must name the env instead.
BLANKET_ALLOW_VALUES = frozenset({"1", "true", "yes", "y", "on", "all", "*", "any"})


class Effect(str, Enum):
    """What a command does to one env."""

    NONE = "none"  # reads only
    MUTATE = "mutate"  # changes packages: snapshot first
    DESTROY = "destroy"  # deletes or replaces the env: snapshot first, and protect


class Action(str, Enum):
    ALLOW = "allow"  # run, nothing to do
    SNAPSHOT = "snapshot"  # snapshot, then run
    CONFIRM = "confirm"  # ask for the typed env name at the terminal, snapshot, then run
    REFUSE = "refuse"  # do not run


@dataclass(frozen=True)
class Target:
    """One env a command touches, with the facts policy needs about it."""

    name: str  # the env's name (or its folder name for path-only envs)
    prefix: str
    effect: Effect
    exists: bool = True
    protected: bool = False
    why: str = ""  # why this is a DESTROY: "remove --all", "create over an existing env", …
    keeps_unowned: bool = False  # files no package owns survive it (restore/undo carry them)
    named: bool = True  # `-n name` finds it (else messages suggest `-p prefix`)


@dataclass(frozen=True)
class Invocation:
    """How the command runs."""

    tool: str = "conda"  # conda, mamba, micromamba
    interactive: bool = False  # a terminal we can prompt on
    yes: bool = False  # -y/--yes, always_yes, CONDA_ALWAYS_YES
    json: bool = False
    dry_run: bool = False
    allow: str | None = None  # CONDA_SAFEGUARD_ALLOW


@dataclass(frozen=True)
class Decision:
    action: Action
    snapshot: list[Target] = field(default_factory=list)  # envs to snapshot before running
    confirm: list[Target] = field(default_factory=list)  # envs whose name must be typed
    refused: list[Target] = field(default_factory=list)
    reason: str = ""  # for REFUSE: why no prompt was possible


def allowed_names(allow: str | None) -> set[str]:
    """The env names/prefixes CONDA_SAFEGUARD_ALLOW names; blanket values name nothing."""
    if not allow:
        return set()
    names = {part.strip() for part in allow.split(",") if part.strip()}
    return {n for n in names if n.lower() not in BLANKET_ALLOW_VALUES}


def is_protected(name: str, *, is_base: bool, mark: bool | None, settings: Settings) -> bool:
    """base always; then an explicit protect/unprotect mark; then patterns; then the default."""
    if is_base:
        return True
    if mark is not None:
        return mark
    if settings.matches_protect_pattern(name):
        return True
    if settings.is_temp(name):
        return False
    return settings.protect_by_default


def non_interactive_reason(inv: Invocation) -> str | None:
    if inv.json:
        return "--json was given"
    if inv.yes:
        return "-y/--yes or always_yes is set"
    if not inv.interactive:
        return "there is no terminal to confirm at"
    return None


def decide(targets: list[Target], inv: Invocation, settings: Settings) -> Decision:
    """The one decision table both layers use."""
    if not settings.enabled or inv.dry_run:
        return Decision(Action.ALLOW)  # a dry run changes nothing: no prompt, no snapshot
    touched = [t for t in targets if t.effect is not Effect.NONE]
    if not touched:
        return Decision(Action.ALLOW)
    snapshot = [t for t in touched if t.exists]
    guarded = [t for t in touched if t.effect is Effect.DESTROY and t.exists and t.protected]
    allow = allowed_names(inv.allow)
    needs_consent = [t for t in guarded if t.name not in allow and t.prefix not in allow]
    if not needs_consent:
        return Decision(Action.SNAPSHOT if snapshot else Action.ALLOW, snapshot=snapshot)
    reason = non_interactive_reason(inv)
    if reason is not None:
        return Decision(Action.REFUSE, snapshot=snapshot, refused=needs_consent, reason=reason)
    return Decision(Action.CONFIRM, snapshot=snapshot, confirm=needs_consent)


def refusal_message(decision: Decision, *, snapshot_note: str = "") -> str:
    """What was refused, why, and the two ways to proceed (commands that run as printed)."""
    from . import suggest

    t = decision.refused[0]
    allow = suggest.allow(r.name if r.named else r.prefix for r in decision.refused)
    extra = f" (and {len(decision.refused) - 1} more)" if len(decision.refused) > 1 else ""
    note = f" {snapshot_note}" if snapshot_note else ""
    unprotect = suggest.safeguard("unprotect", *suggest.env_args(t.name, t.prefix, named=t.named))
    return (
        f"Refusing to change protected environment '{t.name}' ({t.prefix}){extra}: this command "
        f"would {t.why or 'destroy it'}, and {decision.reason}.{note} To proceed, run the command "
        f"in a terminal and type the env's name when asked, or put {allow} in front of it "
        f"(for this one command). To stop protecting it: {unprotect}"
    )


def matches_any(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


#: Canonical command names (conda's `run_for` names, plus the forms conda folds into them).
MUTATING_COMMANDS = frozenset({"install", "update", "remove", "env_update", "install_revision",
                               "env_vars"})
DESTRUCTIVE_COMMANDS = frozenset({"remove", "env_remove", "create", "env_create", "rename",
                                  "install_revision"})


def classify(command: str, *, remove_all: bool = False, target_exists: bool = True,
             destination_exists: bool = False, yes: bool = False,
             revision_removes_packages: bool = False, empties_env: bool = False,
             ) -> list[tuple[str, Effect, str]]:
    """What `command` does: [(role, effect, why)], role "target" or "destination" (rename)."""
    if command == "env_remove" or (command == "remove" and (remove_all or empties_env)):
        why = "remove all packages from it" if empties_env and not remove_all else "remove it"
        return [("target", Effect.DESTROY, why)]
    if command in ("create", "env_create"):
        if target_exists:
            return [("target", Effect.DESTROY, "replace it with a new env (create over it)")]
        return []
    if command == "rename":
        out = [("target", Effect.DESTROY, "rename it (conda clones it, then deletes it)")]
        if destination_exists and yes:
            out.append(("destination", Effect.DESTROY, "overwrite it with the renamed env"))
        return out
    if command == "install_revision":
        if revision_removes_packages:
            return [("target", Effect.DESTROY, "roll it back to an older revision, removing "
                                                "packages")]
        return [("target", Effect.MUTATE, "roll it back to an older revision")]
    if command in MUTATING_COMMANDS:
        return [("target", Effect.MUTATE, command.replace("_", " "))]
    return []
