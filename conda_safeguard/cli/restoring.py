"""Verbs that bring envs back: restore, undo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..suggest import safeguard as _sg
from .common import (
    add_confirm_options,
    add_env_options,
    add_output_options,
    resolve_prefix,
    verb_parser,
)

if TYPE_CHECKING:  # the verbs import what they use: registering them must stay cheap
    from ..guard import GuardOutcome
    from ..restore import RestorePlan, RestoreResult
    from ..snapshot import SnapshotInfo
    from ..transaction import Pending
    from .runtime import Runtime

EXIT_NOTES = """
exit status: 0 restored and verified byte-identical; 1 restored with differences (printed), or an
error; 4 refused (a protected env was not replaced)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    summary = "Bring back an env from a snapshot, offline when possible."
    p = verb_parser(sub, "restore", summary, f"""
SNAPSHOT: an id prefix, ENV (its latest snapshot; envs that were removed too), ENV@-1, ENV@<id>.
Without -n/-p the env comes back where it was. The plan is printed first: which packages, from
where (pinned in the store, conda's package cache, a channel), and which tool builds the env.
examples:
  conda-safeguard restore myenv                 bring back a removed env by its old name
  conda-safeguard restore myenv@-1 --dry-run    show the plan for the snapshot before the latest
  conda-safeguard restore a1b2c3d4 -n myenv-copy  restore a snapshot under a new name
  CONDA_SAFEGUARD_ALLOW=myenv conda-safeguard restore myenv --offline --yes
                                                in a script: replace a protected env
Replacing an existing env snapshots it first; a protected env needs its name typed (or
CONDA_SAFEGUARD_ALLOW=<name>). The tool: CONDA_SAFEGUARD_INSTALLER=conda|mamba|micromamba|rattler.
{EXIT_NOTES}""")
    p.add_argument("snapshot", metavar="SNAPSHOT|ENV", help="what to restore")
    add_env_options(p)
    _add_restore_options(p)
    p.set_defaults(func=cmd_restore)

    p = verb_parser(sub, "undo", "Return an env to its state before its last change.", f"""
Restores the newest snapshot whose state differs from the env as it is now (normally the one
taken before the last install/update/remove). The current state is snapshotted first, so an undo
can itself be undone. Works when those packages left the channel: they are pinned in the store.
examples:
  conda-safeguard undo -n myenv --dry-run
  CONDA_SAFEGUARD_ALLOW=myenv conda-safeguard undo -n myenv --yes
{EXIT_NOTES}""")
    add_env_options(p)
    _add_restore_options(p)
    p.set_defaults(func=cmd_undo)

    p = verb_parser(sub, "recover", "Finish or roll back a restore that was interrupted.", """
A restore or undo over an existing env keeps the old env (as .NAME.safeguard-old-ID beside it,
with a journal .NAME.safeguard-journal.json) until the new one is complete and verified. If it
was killed, this puts things right: a new env that had been verified stays and the old one is
removed; anything else is rolled back, the old env back at its path. The next restore into the
same path does this by itself. `status` and `list` show interrupted restores.
examples:
  conda-safeguard recover              every interrupted restore found
  conda-safeguard recover -n myenv""")
    add_env_options(p)
    add_output_options(p)
    p.set_defaults(func=cmd_recover)

    # verify lives in cli/fleet.py with the other checks (exit 0 same, 1 differs, 2 trouble)


def _add_restore_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--offline", action="store_true",
                   help="never use the network: package files from the store and caches only")
    p.add_argument("--solve", action="store_true",
                   help="solve from the snapshot's environment.yml instead of using package files")
    p.add_argument("--rebuild", action="store_true",
                   help="install every package afresh; by default the packages an env at the "
                   "target has exactly as the snapshot does are kept (each file checked first)")
    pip = p.add_argument_group("pip packages", "Reinstalling runs code from the sources the "
                               "snapshot recorded: it is shown and needs a y at the terminal or "
                               "--yes. A package that cannot come back is refused unless named.")
    pip.add_argument("--drop-pip", metavar="NAME", action="append", default=[],
                     help="accept that this pip package is lost if it cannot be reinstalled "
                     "(repeatable)")
    pip.add_argument("--allow-pip-loss", action="store_true",
                     help="accept that any pip package that cannot be reinstalled is lost")
    pip.add_argument("--no-pip", action="store_true",
                     help="restore the conda packages only: no pip package is reinstalled")
    add_confirm_options(p)
    add_output_options(p)


# ---------------------------------------------------------------------------------------------


def _target(rt: Runtime, args: argparse.Namespace, info: SnapshotInfo) -> Path:
    if args.name or args.prefix:
        return resolve_prefix(rt, args, must_exist=False)
    return Path(info.prefix)


def _plan(rt: Runtime, args: argparse.Namespace, info: SnapshotInfo, target: Path) -> RestorePlan:
    from ..pins import find_pkgs_dirs
    from ..pip_restore import PipPolicy
    from ..restore import plan_restore

    policy = PipPolicy(drop=args.drop_pip, allow_loss=args.allow_pip_loss, no_pip=args.no_pip)
    return plan_restore(rt.store(create=False), info, target, offline=args.offline,
                        solve=args.solve,
                        pkgs_dirs=find_pkgs_dirs(rt.locator.condarc, rt.locator.root_prefix),
                        progress=rt.info, root_prefix=rt.locator.root_prefix,
                        pip_policy=policy, reuse=not args.rebuild)


def _consent_to_pip(rt: Runtime, args: argparse.Namespace, plan: RestorePlan) -> None:
    """pip runs code from the snapshot's recorded sources (setup.py, build backends, a folder
    anyone could have written to): shown in the plan, then a y at the terminal or --yes."""
    from ..exceptions import RefusedError
    from ..guard import detect_interactive
    from ..pip_restore import needs_consent

    runs = needs_consent(plan.pip)
    if not runs or args.yes:
        return
    if not detect_interactive() or rt.json:
        raise RefusedError(
            f"Refusing to run pip for {len(runs)} package{'s' if len(runs) > 1 else ''} from "
            "the sources the snapshot recorded without consent: pip runs their build code. "
            f"{'--json was given' if rt.json else 'There is no terminal'}; nothing was changed. "
            "Review the commands with --dry-run, then pass --yes to run them, or --no-pip to "
            "restore without pip packages.")
    if not confirm_yn(f"Run these {len(runs)} pip commands (code from the recorded sources "
                      "runs)? [y/N] "):
        raise RefusedError("Aborted: nothing was changed. --no-pip restores without pip "
                           "packages.")


def _confirm_replace(rt: Runtime, args: argparse.Namespace, plan: RestorePlan,
                     why: str, reason: str) -> GuardOutcome:
    """Replacing an env is a destruction: snapshot it first; a protected env needs its typed
    name (or CONDA_SAFEGUARD_ALLOW), any other needs --yes or a y at the terminal."""
    import dataclasses

    from ..exceptions import RefusedError, SafeguardError
    from ..guard import detect_interactive, enforce, make_target
    from ..policy import Effect, Invocation

    target = dataclasses.replace(make_target(rt, plan.target, Effect.DESTROY, why),
                                 keeps_unowned=True)
    interactive = detect_interactive() and not rt.json
    if not target.protected and not args.yes:
        if not interactive:
            raise RefusedError(
                f"Refusing to replace the env '{target.name}' ({target.prefix}) without "
                f"confirmation: {'--json was given' if rt.json else 'there is no terminal'}. "
                "Pass --yes to replace it (a snapshot of it is taken first).")
        if not confirm_yn(f"Replace the env '{target.name}' ({target.prefix}) with snapshot "
                          f"{plan.info.short_id}? A snapshot of it is taken first. [y/N] "):
            raise RefusedError("Aborted: nothing was changed.")
    inv = Invocation(tool="conda-safeguard", interactive=interactive, yes=args.yes, json=rt.json,
                     dry_run=False)
    outcome = enforce(rt, [target], inv, argv=list(sys.argv), reason=reason)
    if str(plan.target) not in outcome.snapshots:  # safeguard disabled: snapshot all the same
        try:
            outcome.snapshots[str(plan.target)] = rt.backup(
                plan.target, reason=reason, argv=list(sys.argv)).snapshot.id
        except SafeguardError as e:
            raise RefusedError(f"Refusing to replace '{target.name}': its snapshot failed ({e}). "
                               "Nothing was changed.") from None
    return outcome


def confirm_yn(question: str) -> bool:
    """Ask at the terminal; only 'y' or 'yes' agrees."""
    try:  # unbuffered bytes: a text-mode "r+" open of a tty fails (it is not seekable)
        with open("/dev/tty", "rb+", buffering=0) as tty:
            tty.write(question.encode())
            answer = tty.readline().decode(errors="replace")
    except OSError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _show_plan(rt: Runtime, plan: RestorePlan) -> None:
    if not rt.json:
        for line in plan.describe():
            rt.out(line)


def _finish(rt: Runtime, args: argparse.Namespace, plan: RestorePlan, verb: str,
            before: GuardOutcome | None) -> int:
    if args.dry_run:
        if rt.json:
            rt.emit_json({"dry_run": True, "plan": plan.to_dict()})
        else:
            rt.out("dry run: nothing was changed")
        return 1 if plan.problems else 0
    from ..exceptions import SafeguardError
    from ..restore import apply_restore

    taken = next(iter(before.snapshots.values()), None) if before else None
    result = apply_restore(plan, store=rt.store(create=False), progress=rt.info, before=taken)
    after = None
    if not result.rolled_back:
        try:
            after = rt.backup(plan.target, reason=verb, argv=list(sys.argv)).snapshot.id
        except (SafeguardError, OSError) as e:  # a read-only store: restored all the same
            rt.info(f"conda-safeguard: warning: no snapshot of the restored env: {e}")
    _report(rt, plan, result, before, after)
    return 0 if result.ok else 1


def _report(rt: Runtime, plan: RestorePlan, result: RestoreResult, before: GuardOutcome | None,
            after: str | None) -> None:
    taken = next(iter(before.snapshots.values()), None) if before else None
    if rt.json:
        rt.emit_json({"dry_run": False, "plan": plan.to_dict(), "result": result.to_dict(),
                      "snapshot_before": taken, "snapshot_after": after})
        return
    if result.rolled_back:
        undone = "the env that was there is unchanged (put back)" if plan.replaces else \
            f"nothing was left at {plan.target}"
        rt.out(f"NOT restored: {plan.target} built from snapshot {plan.info.short_id} "
               f"{result.report.verdict.replace('byte-identical', 'is identical but pip failed')}"
               f"; {undone}")
    else:
        rt.out(f"restored {plan.target} from snapshot {plan.info.short_id}: "
               f"{result.report.verdict}")
    if result.reused is not None:
        rt.out(f"  {result.reused.describe()}")
    if result.carried is not None:
        rt.out(f"  {result.carried.describe()}")
    if plan.state.config:
        rt.out(f"  wrote {len(plan.state.config)} config files from the snapshot "
               "(activate.d, pinned, .condarc)")
    rt.out(f"  {result.report.summary}")
    for line in result.report.details():
        rt.out(f"  {line}")
    if result.pip_note:  # no interpreter: one note lists every line
        rt.out(f"  {result.pip_note}")
    if result.pip:
        kept = sum(s.action == "keep" and s.done for s in result.pip)
        ran = sum(s.action == "run" and s.done for s in result.pip)
        dropped = sum(s.action == "drop" for s in result.pip)
        rt.out(f"  pip: {len(result.pip)} packages: {kept} kept, {ran} reinstalled, "
               f"{dropped} dropped as allowed")
    for s in result.pip:
        if s.action == "drop":
            rt.out(f"  pip {s.dist.name}=={s.dist.version} dropped: {s.why}")
        elif not s.done and not result.pip_note:
            rt.out(f"  pip {s.dist.name} NOT reinstalled: {s.error or s.why} "
                   f"({' '.join(s.args)})")
    if taken:
        rt.out(f"  the env it {'would have ' if result.rolled_back else ''}replaced is "
               f"snapshot {taken[:10]}" + ("" if result.rolled_back else
                                           f" (`{_sg('restore', taken[:10])}`)"))
    if after:
        rt.out(f"  the restored env is snapshot {after[:10]}")


def _settle_interrupted(rt: Runtime, args: argparse.Namespace, target: Path) -> None:
    """A restore into `target` that was interrupted left a half-built env there, maybe: finish
    or roll it back before that env is read, planned against or snapshotted."""
    from ..transaction import (
        RestoreUnderWayError,
        lock_dir,
        recover,
        resolve_target,
        restore_under_way,
    )

    target = resolve_target(target)
    if not restore_under_way(target):
        return
    if args.dry_run:
        raise RestoreUnderWayError(target, f"Cannot plan for {target}")
    recover(target, lock_dir(rt.store_path), rt.info)  # busy: says a restore is running


def cmd_restore(rt: Runtime, args: argparse.Namespace) -> int:
    store = rt.store(create=False)
    info = store.resolve(args.snapshot)
    target = _target(rt, args, info)
    _settle_interrupted(rt, args, target)
    plan = _plan(rt, args, info, target)
    _show_plan(rt, plan)
    before = None
    if not args.dry_run and not plan.problems:
        _consent_to_pip(rt, args, plan)
    if not args.dry_run and not plan.problems and plan.replaces:
        before = _confirm_replace(rt, args, plan,
                                  f"replace it with snapshot {info.short_id}",
                                  f"before restore: replaced by snapshot {info.short_id}")
    return _finish(rt, args, plan, "restore", before)


def cmd_undo(rt: Runtime, args: argparse.Namespace) -> int:
    from ..restore import undo_snapshot
    from ..snapshot import capture

    prefix = _undo_target(rt, args)
    _settle_interrupted(rt, args, prefix)
    store = rt.store(create=False)
    current = capture(prefix)
    info = undo_snapshot(store, prefix, current)
    plan = _plan(rt, args, info, prefix)
    _show_plan(rt, plan)
    before = None
    if not args.dry_run and not plan.problems:
        _consent_to_pip(rt, args, plan)
        before = _confirm_replace(rt, args, plan,
                                  f"undo: return it to snapshot {info.short_id}",
                                  f"before undo: returned to snapshot {info.short_id}")
    return _finish(rt, args, plan, "undo", before)


def _undo_target(rt: Runtime, args: argparse.Namespace) -> Path:
    """The env to undo; a removed env cannot be undone, but its snapshots restore it."""
    from ..exceptions import EnvNotFoundError, NotAnEnvError, SafeguardError
    from ..prefix import require_env
    from ..suggest import safeguard

    try:
        return require_env(resolve_prefix(rt, args))
    except (EnvNotFoundError, NotAnEnvError) as e:
        ref = args.name or args.prefix
        try:
            info = rt.store(create=False).resolve(ref)
        except SafeguardError:
            raise e from None
        raise SafeguardError(
            f"Cannot undo: {str(e).split('. ')[0]}, so there is nothing to undo. It has "
            f"snapshots: to bring it back as it was last, run `{safeguard('restore', ref)}` "
            f"(snapshot {info.short_id}); `{safeguard('list', ref)}` shows the others."
        ) from None


def pending_restores(rt: Runtime, only: Path | None = None,
                     snapshots: list[SnapshotInfo] | None = None) -> list[Pending]:
    """Interrupted restores in the envs dirs and beside every env the store knows (from
    `snapshots` when the caller has read them already)."""
    from ..exceptions import SafeguardError
    from ..transaction import lock_dir, pending

    folders = [only.parent] if only is not None else list(rt.locator.envs_dirs)
    if only is None:
        try:
            if snapshots is None:
                snapshots = rt.store(create=False).snapshots()
            known = {Path(s.prefix).parent for s in snapshots}
        except SafeguardError:
            known = set()
        folders += sorted(known - set(folders))
    found = pending(folders, lock_dir(rt.store_path))
    return [p for p in found if only is None or p.target == only]


def cmd_recover(rt: Runtime, args: argparse.Namespace) -> int:
    from ..exceptions import SafeguardError
    from ..transaction import TargetBusyError, lock_dir, recover

    only = resolve_prefix(rt, args, must_exist=False) if args.name or args.prefix else None
    rows: list[dict[str, str]] = []
    code = 0
    for p in pending_restores(rt, only):
        row = {"target": str(p.target), "snapshot": p.journal.snapshot,
               "step": p.journal.phase, "kept_old": p.kept_old or ""}
        try:
            row["outcome"] = recover(p.target, lock_dir(rt.store_path), rt.info) or "nothing"
        except TargetBusyError as e:
            row["outcome"], row["error"], code = "running", str(e), 1
        except (SafeguardError, OSError) as e:
            row["outcome"], row["error"], code = "failed", str(e), 1
        rows.append(row)
    if only is not None and not rows:  # no journal: still sweep what a kill left beside it
        try:
            recover(only, lock_dir(rt.store_path), rt.info)
        except TargetBusyError as e:
            rt.info(str(e))
    if rt.json:
        rt.emit_json(rows)
        return code
    if not rows:
        rt.out(f"nothing to recover{f' at {only}' if only else ''}: no interrupted restore")
    for r in rows:
        rt.out(f"{r['target']}: {r['outcome']} (snapshot {r['snapshot'][:10]}, interrupted at "
               f"step {r['step']})")
        if r.get("error"):
            print(f"conda-safeguard: error: {r['error']}", file=sys.stderr)
    return code
