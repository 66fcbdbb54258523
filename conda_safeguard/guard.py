"""Acting on policy decisions: protect marks, the typed-name prompt, snapshot-before-run.

Shared by the conda plugin (hooks.py) and the shell layer (`conda-safeguard guard`), so both
prompt, refuse and snapshot alike. Raises RefusedError to stop a command.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, TYPE_CHECKING

from . import suggest
from .constants import ENV_ALLOW, PROTECT_MARK
from .exceptions import PromptInterrupted, RefusedError, SafeguardError
from .fs import atomic_write
from .policy import (
    Action,
    Decision,
    Effect,
    Invocation,
    Target,
    decide,
    is_protected,
    refusal_message,
)
from .prefix import is_env

if TYPE_CHECKING:
    from .cli.runtime import Runtime

log = logging.getLogger(f"conda.{__name__}")


# ---------------------------------------------------------------------------------------------
# the protect mark: conda-meta/safeguard-protection, inside the env so every user of it sees it


def read_mark(prefix: Path) -> bool | None:
    """True/False when the env was protected/unprotected explicitly; None otherwise.

    An unreadable mark raises: callers that guard fail closed (treat it as protected).
    """
    path = prefix / PROTECT_MARK
    try:
        raw = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise SafeguardError(f"Cannot read the protect mark {path}: {e.strerror}.") from None
    try:
        data = json.loads(raw)
        value = data["protected"]
        if not isinstance(value, bool):
            raise TypeError
        return value
    except (ValueError, KeyError, TypeError):
        raise SafeguardError(
            f"The protect mark {path} is damaged. The env is treated as protected. Fix it with "
            f"`{suggest.safeguard('protect', '-p', prefix)}` (or `unprotect`)."
        ) from None


def write_mark(prefix: Path, protected: bool) -> None:
    try:
        user = os.getlogin()
    except OSError:
        user = os.environ.get("USER", "")
    data = {"protected": protected, "by": user,
            "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    atomic_write(prefix / PROTECT_MARK, json.dumps(data, indent=1).encode() + b"\n", mode=0o644)


def protection(rt: Runtime, prefix: Path) -> bool:
    is_base = rt.locator.root_prefix is not None and \
        os.path.realpath(prefix) == os.path.realpath(rt.locator.root_prefix)
    try:
        mark = read_mark(prefix)
    except SafeguardError as e:
        print(f"conda-safeguard: warning: {e}", file=sys.stderr)
        return True  # fail closed
    return is_protected(rt.locator.short_name(prefix), is_base=is_base, mark=mark,
                        settings=rt.settings)


def make_target(rt: Runtime, prefix: Path, effect: Effect, why: str = "") -> Target:
    # a symlink to an env (`ln -s envs/important quick-tmp`) is that env: its name decides
    # protection and CONDA_SAFEGUARD_ALLOW, never the link's
    prefix = Path(os.path.realpath(prefix))
    exists = is_env(prefix)
    return Target(name=rt.locator.short_name(prefix), prefix=str(prefix), effect=effect,
                  exists=exists, protected=exists and protection(rt, prefix), why=why,
                  named=os.sep not in rt.locator.name_of(prefix))


# ---------------------------------------------------------------------------------------------
# the prompt


def detect_interactive() -> bool:
    """A person can answer: stdin is a terminal and we can open it."""
    if not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        with open("/dev/tty", "rb"):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _terminal() -> Iterator[tuple[IO[str], IO[str]]]:
    try:
        tty_in = open("/dev/tty", encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError:
        yield sys.stdin, sys.stderr
        return
    try:
        yield tty_in, sys.stderr
    finally:
        tty_in.close()


def env_summary(rt: Runtime, prefix: Path) -> str:
    try:
        count = sum(1 for e in os.scandir(prefix / "conda-meta") if e.name.endswith(".json"))
    except OSError:
        count = 0
    size = _disk_usage(prefix)
    latest = None
    with contextlib.suppress(SafeguardError):
        latest = rt.store().latest_of(prefix)
    when = f"last snapshot {latest.short_id} at {latest.created[:19]}Z" if latest else \
        "no snapshot yet"
    return f"{suggest.plural(count, 'package')}, {size / 1e6:.1f} MB on disk, {when}"


def _disk_usage(prefix: Path) -> int:
    total = 0
    seen: set[int] = set()
    for root, _dirs, files in os.walk(prefix):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def unowned_note(target: Target) -> str:
    """What a snapshot cannot bring back: the files in the env no package owns."""
    if target.effect is not Effect.DESTROY or not target.exists:
        return ""
    from .unowned import unowned_summary

    found = unowned_summary(Path(target.prefix))
    if found is None or not found.files:
        return ""
    one = len(found.files) == 1
    if target.keeps_unowned:
        return f"Its {found.describe()} {'is' if one else 'are'} carried over into the " \
            "restored env."
    them = "it" if one else "them"
    return (f"It holds {found.describe()} (user data): {'it' if one else 'they'} will be "
            f"lost, and no snapshot can bring {them} back.")


def confirm_typed_name(rt: Runtime, target: Target) -> str | None:
    """Show what will be lost and read the env's name; None at end of input (Ctrl-D)."""
    summary = env_summary(rt, Path(target.prefix))
    ref = target.name if target.named else target.prefix
    lost = unowned_note(target)
    with _terminal() as (tty_in, out):
        out.write(
            f"\n'{target.name}' is a protected environment ({target.prefix}).\n"
            f"This command will {target.why or 'destroy it'}: {summary}.\n"
            f"A snapshot is taken first, so `{suggest.safeguard('restore', ref)}` can bring "
            "its packages back.\n" + (f"{lost}\n" if lost else "") +
            "Type the environment's name to continue, anything else to abort: "
        )
        out.flush()
        answer = tty_in.readline()
    if not answer:
        return None
    return answer.rstrip("\r\n")


def _check_answer(target: Target, answer: str | None) -> None:
    """Raise unless `answer` is the env's name exactly; say what was typed, so a typo shows."""
    if answer is None:
        print(file=sys.stderr)  # the prompt line had no newline
        raise PromptInterrupted(f"Aborted at the prompt for '{target.name}' (end of input). "
                                "Nothing was changed.")
    if answer == target.name:
        return
    if not answer.strip():
        raise RefusedError(f"Aborted: no name was typed (the env's name is '{target.name}'). "
                           "Nothing was changed.")
    raise RefusedError(f"Aborted: you typed {answer!r}, not the env's name '{target.name}' "
                       "(it must match exactly). Nothing was changed.")


# ---------------------------------------------------------------------------------------------
# enforcing a decision


@dataclass
class GuardOutcome:
    decision: Decision
    snapshots: dict[str, str]  # prefix -> snapshot id taken (or reused) before the command


def enforce(rt: Runtime, targets: list[Target], inv: Invocation, *, argv: list[str],
            reason: str) -> GuardOutcome:
    """Decide, prompt, snapshot. Returns when the command may run; raises RefusedError if not.

    A snapshot that fails before a DESTROY refuses the command (fail closed); before a MUTATE it
    warns and lets it run, unless safeguard_require_snapshot is set.
    """
    from .transaction import RestoreUnderWayError, restore_under_way

    for t in targets:  # conda would change (and snapshot) a half-built env a restore then drops
        if t.effect is not Effect.NONE and restore_under_way(Path(t.prefix)):
            raise RefusedError(str(RestoreUnderWayError(Path(t.prefix),
                                                        f"Refusing to change '{t.name}'")))
    if inv.allow is None:
        inv = Invocation(**{**inv.__dict__, "allow": os.environ.get(ENV_ALLOW)})
    decision = decide(targets, inv, rt.settings)
    if decision.action is Action.ALLOW:
        return GuardOutcome(decision, {})
    if decision.action is Action.REFUSE:
        taken = _snapshot_all(rt, decision.refused, argv, f"refused {reason}", strict=False)
        note = ""
        if taken:
            latest = rt.store().get(next(iter(taken.values())))
            note = f"A snapshot was taken: {latest.short_id} ({latest.created[:19]}Z)."
        lost = " ".join(filter(None, (unowned_note(t) for t in decision.refused)))
        note = f"{note} {lost}".strip()
        raise RefusedError(refusal_message(decision, snapshot_note=note))
    if decision.action is Action.CONFIRM:
        for target in decision.confirm:
            try:
                answer = confirm_typed_name(rt, target)
            except KeyboardInterrupt:
                print(file=sys.stderr)
                raise PromptInterrupted(f"Aborted at the prompt for '{target.name}' (Ctrl-C). "
                                        "Nothing was changed.") from None
            _check_answer(target, answer)
    taken = _snapshot_all(rt, decision.snapshot, argv, reason, strict=None)
    return GuardOutcome(decision, taken)


def _snapshot_all(rt: Runtime, targets: list[Target], argv: list[str], reason: str,
                  strict: bool | None) -> dict[str, str]:
    """Snapshot each target. strict None: fail closed for DESTROY targets only."""
    taken: dict[str, str] = {}
    for t in targets:
        if not t.exists:
            continue
        must = t.effect is Effect.DESTROY or rt.settings.require_snapshot if strict is None \
            else strict
        try:
            result = rt.backup(Path(t.prefix), reason=reason, argv=argv)
            taken[t.prefix] = result.snapshot.id
        except (SafeguardError, OSError) as e:
            if must:
                raise RefusedError(
                    f"Refusing to run: the snapshot of '{t.name}' ({t.prefix}) failed ({e}), and "
                    "this command would change it without a way back. Fix the store (see "
                    f"`{suggest.safeguard('check')}`) or set CONDA_SAFEGUARD_HOME to a writable "
                    "folder."
                ) from None
            print(f"conda-safeguard: warning: no snapshot of '{t.name}' before this command: "
                  f"{e}", file=sys.stderr)
    return taken
