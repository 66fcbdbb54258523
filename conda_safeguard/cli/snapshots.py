"""Verbs over snapshots: backup, list, show, check, prune."""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import TYPE_CHECKING

from ..suggest import plural, shorten
from ..suggest import safeguard as _sg
from .common import add_env_options, add_output_options, resolve_prefix, verb_parser

if TYPE_CHECKING:
    from ..snapshot import EnvState, SnapshotInfo
    from .runtime import Runtime

SHOW_FORMATS = ("yml", "yml-no-builds", "yml-from-history", "explicit", "explicit-sha256", "pip",
                "json")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "backup", "Snapshot an env (or all envs) into the store.", """
examples:
  conda-safeguard backup -n pytorch          snapshot one env
  conda-safeguard backup --all --reason cron  snapshot every env (for a schedule)
An unchanged env adds nothing: its latest snapshot already holds it.""")
    add_env_options(p)
    p.add_argument("--all", action="store_true", help="snapshot every env found")
    p.add_argument("--reason", default="manual", help="why (shown by `list`)")
    p.add_argument("--force", action="store_true",
                   help="write a new snapshot even when the env is unchanged")
    add_output_options(p)
    p.set_defaults(func=cmd_backup)

    p = verb_parser(sub, "list", "List snapshots per env, newest first.", """
examples:
  conda-safeguard list              every env, including envs that no longer exist
  conda-safeguard list pytorch      one env (also -n pytorch, or -p /path/to/env)
  conda-safeguard list --json""")
    p.add_argument("env", nargs="?", help="env name or prefix")
    add_env_options(p)
    add_output_options(p)
    p.set_defaults(func=cmd_list)

    p = verb_parser(sub, "show", "Print a snapshot as environment.yml, explicit lockfile, pip …",
                    """
snapshot ids: an id prefix (a1b2c3d4), ENV (its latest), ENV@latest, ENV@-1 (the one before),
ENV@<id prefix>.
examples:
  conda-safeguard show pytorch                       environment.yml (as `conda env export`)
  conda-safeguard show pytorch@-1 --format explicit -o spec.txt
  conda-safeguard show a1b2c3d4 --format pip""")
    p.add_argument("snapshot", help="snapshot id or ENV[@latest|@-N]")
    p.add_argument("--format", choices=SHOW_FORMATS, default="yml")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--redact", action="store_true",
                   help="mask the values of env vars that look like credentials (to share it)")
    add_output_options(p)
    p.set_defaults(func=cmd_show)

    # diff lives in cli/fleet.py with the other checks (exit 0 same, 1 differs, 2 trouble)

    p = verb_parser(sub, "check", "Re-hash every stored object; report damaged or missing ones.",
                    """
Verifies every object, package pin and snapshot manifest, and the store's config. Repairs
nothing unless --repair is given. Exit status 1 when anything is damaged or missing.
examples:
  conda-safeguard check --json
  conda-safeguard check --repair     rewrite a damaged or missing config (snapshots are kept)""")
    p.add_argument("--repair", action="store_true",
                   help="rewrite a damaged or missing config file, keeping what still reads")
    add_output_options(p)
    p.set_defaults(func=cmd_check)

    p = verb_parser(sub, "prune", "Forget snapshots outside the retention policy.", """
Snapshots of envs that no longer exist are kept (they are the only copy) unless the env is
named with ENV or --include-removed is given.
examples:
  conda-safeguard prune --dry-run
  conda-safeguard prune --keep-last 5 --keep-daily 7 --keep-weekly 4
  conda-safeguard prune old-env --keep-last 0        forget a removed env's snapshots""")
    p.add_argument("env", nargs="?", help="only this env (name or prefix)")
    add_env_options(p)
    p.add_argument("--keep-last", type=int, metavar="N")
    p.add_argument("--keep-daily", type=int, metavar="N")
    p.add_argument("--keep-weekly", type=int, metavar="N")
    p.add_argument("--include-removed", action="store_true",
                   help="also prune snapshots of envs that no longer exist")
    p.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    add_output_options(p)
    p.set_defaults(func=cmd_prune)


# ---------------------------------------------------------------------------------------------


def cmd_backup(rt: Runtime, args: argparse.Namespace) -> int:
    import sys

    from ..exceptions import SafeguardError, StoreError, UsageError

    if args.all and (args.name or args.prefix):
        raise UsageError("Give --all or an env (-n/-p), not both.")
    prefixes = rt.locator.all_envs() if args.all else [resolve_prefix(rt, args)]
    results = []
    failures = []
    with rt.progress("backing up envs", len(prefixes)) as bar:
        for prefix in prefixes:
            bar.advance(0, rt.locator.short_name(prefix))
            try:
                results.append(rt.backup(prefix, reason=args.reason, force=args.force))
            except SafeguardError as e:
                if not args.all or isinstance(e, StoreError):
                    raise  # a store that cannot be used fails every env alike: say it once
                failures.append((prefix, str(e)))
                bar.close()
                # an error, not a routine line: -q never hides it
                print(f"conda-safeguard: skipped {prefix}: {e}", file=sys.stderr)
            bar.advance()
    if args.all:
        from ..schedule import record_backup_all

        created = sum(r.created for r in results)
        record_backup_all(rt.store(), envs=len(prefixes), created=created,
                          unchanged=len(results) - created,
                          failed=[(str(p), e) for p, e in failures], reason=args.reason)
    if rt.json:
        rt.emit_json({"snapshots": [
            {"id": r.snapshot.id, "env": r.snapshot.env_name, "prefix": r.snapshot.prefix,
             "created": r.created, "bytes_added": r.bytes_added} for r in results],
            "failed": [{"prefix": str(p), "error": e} for p, e in failures]})
    elif not rt.quiet:  # -q: only the failures above
        for r in results:
            verb = "snapshot" if r.created else "unchanged, latest snapshot"
            counts = r.snapshot.counts
            rt.out(f"{r.snapshot.env_name}: {verb} {r.snapshot.short_id} "
                   f"({plural(counts.get('conda', 0), 'conda package')}, "
                   f"{plural(counts.get('pip', 0), 'pip package')}; "
                   f"{plural(r.bytes_added, 'byte')} added)")
    return 1 if failures else 0


def _change_text(s: SnapshotInfo) -> str:
    if not s.change:
        return "first snapshot" if s.parent is None else "unchanged"
    parts = [f"{sign}{s.change.get(k, 0)}" for sign, k in
             (("+", "added"), ("-", "removed"), ("~", "changed")) if s.change.get(k)]
    return " ".join(parts) or "same packages"


def _store_absent(rt: Runtime) -> bool:
    """No store there yet. An unreadable one is not absent, nor one whose config is gone but
    which holds snapshots: opening it gives the clear error."""
    from ..store import has_data

    try:
        os.stat(rt.store_path / "config")
    except FileNotFoundError:
        return not has_data(rt.store_path)
    except OSError:
        return False
    return False


def named_env(args: argparse.Namespace) -> str | None:
    """ENV given as a word, -n NAME or -p PATH (a removed env's too: the store resolves it)."""
    from ..exceptions import UsageError

    given = [v for v in (args.env, args.name,
                         os.path.abspath(args.prefix) if args.prefix else None) if v]
    if len(given) > 1:
        raise UsageError("Name the env once: as ENV, with -n NAME or with -p PATH.")
    return given[0] if given else None


def cmd_list(rt: Runtime, args: argparse.Namespace) -> int:
    from ..exceptions import SnapshotNotFoundError
    from ..pins import offline_restorable, pinned_names

    args.env = named_env(args)

    if _store_absent(rt):  # listing never creates a store
        if args.env:
            raise SnapshotNotFoundError(args.env, " (nothing has been backed up yet)")
        if rt.json:
            rt.emit_json([])
        else:
            rt.info(f"No snapshots yet in {rt.store_path}. Run `{_sg('backup', '--all')}`.")
        return 0
    store = rt.store(create=False)
    snapshots = store.snapshots()
    if args.env:
        wanted = store.resolve(args.env)  # raises a clear error for an unknown env
        snapshots = [s for s in snapshots if s.prefix == wanted.prefix]
    from .restoring import pending_restores

    for p in pending_restores(rt, snapshots=snapshots):
        rt.info(f"conda-safeguard: {p.describe()}.")
    present = pinned_names(store)  # one listing of packages/ for all snapshots
    offline = {s.id: offline_restorable(store, s, present) for s in snapshots}
    if rt.json:
        from ..redact import redact_argv, redact_url

        rt.emit_json([{**s.to_dict(), "argv": redact_argv(s.argv),
                       "channels": [redact_url(c) for c in s.channels],
                       "exists": os.path.isdir(s.prefix),
                       "offline_restorable": offline[s.id]} for s in snapshots])
        return 0
    if not snapshots:
        rt.info(f"No snapshots yet in {store.root}. Run `{_sg('backup', '--all')}`.")
        return 0
    groups: dict[str, list[SnapshotInfo]] = {}
    for s in snapshots:
        groups.setdefault(s.prefix, []).append(s)
    for prefix, group in groups.items():
        gone = "" if os.path.isdir(os.path.join(prefix, "conda-meta")) else "  [env removed]"
        rt.out(f"{group[0].env_name}  ({prefix}){gone}")
        for i, s in enumerate(group):
            when = s.created[:19].replace("T", " ")
            rt.out(f"  {s.short_id}  @-{i:<3} {when}Z  {shorten(s.reason, 22):<22} "
                   f"{s.counts.get('conda', 0):>4} conda {s.counts.get('pip', 0):>3} pip  "
                   f"{_change_text(s):<16} {'offline' if offline[s.id] else 'needs channel'}")
    return 0


def render_snapshot(info: SnapshotInfo, state: EnvState, fmt: str, *,
                    offline: bool | None = None) -> str:
    from ..render import environment_yml, explicit, pip_requirements

    if fmt == "yml":
        return environment_yml(info, state)
    if fmt == "yml-no-builds":
        return environment_yml(info, state, "no-builds")
    if fmt == "yml-from-history":
        return environment_yml(info, state, "from-history")
    if fmt == "explicit":
        return explicit(info, state)
    if fmt == "explicit-sha256":
        return explicit(info, state, sha256=True)
    if fmt == "pip":
        return pip_requirements(state)
    import json

    return json.dumps({"snapshot": info.to_dict(), "offline_restorable": offline,
                       "packages": [r.to_dict() for r in state.packages],
                       "pip": [d.to_dict() for d in state.pip],
                       "variables": state.variables, "requested": state.requested,
                       "frozen": state.frozen, "platform": state.platform}, indent=2) + "\n"


def cmd_show(rt: Runtime, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..exceptions import SafeguardError
    from ..fs import atomic_write
    from ..pins import offline_restorable

    store = rt.store(create=False)
    info = store.resolve(args.snapshot)
    offline = offline_restorable(store, info)
    state = store.load_state(info)
    info, state = redacted(info, state, variables=args.redact)
    text = render_snapshot(info, state, "json" if rt.json else args.format, offline=offline)
    if args.output:
        out = Path(args.output)
        if out.exists() and not args.force:
            raise SafeguardError(f"Refusing to overwrite {out}: it exists. Pass --force, or "
                                 "choose another file.")
        # private: it can hold env vars (tokens); a temp file that fails is removed
        atomic_write(out, text.encode(), mode=0o600)
        # Said once, when a file is written; printing to stdout stays quiet (`list` shows it).
        rt.info(f"wrote {out}: snapshot {info.short_id} of {info.env_name} "
                f"({info.created[:19]}Z), "
                + ("restorable offline (every package is pinned in the store)" if offline else
                   "not restorable offline (some packages need their channel)"))
    else:
        print(text, end="")
    return 0


def redacted(info: SnapshotInfo, state: EnvState, *, variables: bool
             ) -> tuple[SnapshotInfo, EnvState]:
    """Credentials out of what is printed: always from URLs in argv and channels (snapshots
    taken before backup redacted them), and with `variables` from env var values too."""
    import dataclasses

    from ..redact import redact_argv, redact_url, redact_variables

    info = dataclasses.replace(info, argv=redact_argv(info.argv),
                               channels=[redact_url(c) for c in info.channels])
    if variables:
        state = dataclasses.replace(state, variables=redact_variables(state.variables))
    return info, state


def cmd_check(rt: Runtime, args: argparse.Namespace) -> int:
    from ..exceptions import DamagedConfigError
    from ..store import Store
    from ..storecheck import check_store, repair_config

    root = rt.store_path
    # A missing, unreadable, untrusted or newer store raises its error; a damaged config does
    # not stop check: a damaged store is when it is needed most.
    with contextlib.suppress(DamagedConfigError):
        rt.store(create=False)
    repaired = []
    if args.repair:
        with Store(root, shared=rt.settings.store_shared).exclusive_lock():
            done = repair_config(root)
            repaired += [done] if done else []
    # Store(), not Store.open(): check must run on a store whose config is damaged.
    with rt.progress("checking the store") as bar:
        report = check_store(Store(root, lambda _: None,  # check reports damage itself
                                   shared=rt.settings.store_shared), tick=bar.advance)
    report.repaired = repaired
    if rt.json:
        rt.emit_json(report.to_dict())
        return 0 if report.ok else 1
    for line in repaired:
        rt.out(f"  repaired: {line}")
    wheels = f", {plural(report.wheels, 'pip wheel')}" if report.wheels else ""
    rt.out(f"checked {plural(report.objects, 'object')}, {plural(report.packages, 'package')}"
           f"{wheels}, {plural(report.snapshots, 'snapshot')}: "
           f"{'ok' if report.ok else 'PROBLEMS FOUND'}")
    if report.config:
        rt.out(f"  config: {report.config} (run `{_sg('check', '--repair')}`)")
    for oid in report.corrupt:
        rt.out(f"  corrupt: {oid}")
    for sid, oid in report.missing:
        rt.out(f"  missing: object {oid[:16]} of snapshot {sid[:10]}")
    for sid, sha in report.missing_pins:
        rt.out(f"  missing pin: package {sha[:16]} of snapshot {sid[:10]} (restoring it needs "
               "the channel)")
    for sid, ref in report.missing_wheels:
        rt.out(f"  missing wheel: wheels/{ref} of snapshot {sid[:10]} (restoring that pip "
               "package needs its source)")
    for name in report.unreadable:
        rt.out(f"  damaged manifest: snapshots/{name}: {report.why.get(name, '')}; move it out "
               "of the store (that snapshot is lost)")
    for name in report.stray:
        rt.out(f"  stray file (not written by conda-safeguard, left alone): {name}")
    for name in report.leftovers:
        rt.out(f"  leftover temp file (harmless): {name} (the next prune removes it)")
    return 0 if report.ok else 1


def cmd_prune(rt: Runtime, args: argparse.Namespace) -> int:
    from ..exceptions import UsageError
    from ..retention import RetentionPolicy, prune

    args.env = named_env(args)
    s = rt.settings
    for flag in ("keep_last", "keep_daily", "keep_weekly"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be 0 or more.")
    policy = RetentionPolicy(
        keep_last=s.keep_last if args.keep_last is None else args.keep_last,
        keep_daily=s.keep_daily if args.keep_daily is None else args.keep_daily,
        keep_weekly=s.keep_weekly if args.keep_weekly is None else args.keep_weekly,
    )
    store = rt.store(create=False)
    prefixes = [store.resolve(args.env).prefix] if args.env else None
    if prefixes and policy.keep_last == 0 and not os.path.isdir(prefixes[0]):
        policy = RetentionPolicy(0, 0, 0)  # a removed env, named: forget it entirely
    report = prune(store, policy, prefixes=prefixes, include_removed=args.include_removed,
                   dry_run=args.dry_run)
    if rt.json:
        rt.emit_json({"dry_run": args.dry_run, **report.to_dict()})
        return 0
    verb = "would forget" if args.dry_run else "forgot"
    wheels = f", {plural(report.wheels_removed, 'pip wheel')}" if report.wheels_removed else ""
    rt.out(f"{verb} {plural(len(report.forgotten), 'snapshot')}, kept {report.kept}; "
           f"{plural(report.objects_removed, 'object')}{wheels} and "
           f"{plural(report.packages_removed, 'package')} "
           f"({plural(report.bytes_freed, 'byte')}) {'would be ' if args.dry_run else ''}freed")
    for snap in report.forgotten:
        rt.out(f"  {snap.short_id}  {snap.env_name}  {snap.created[:19]}")
    for prefix in report.removed_envs_skipped:
        rt.info(f"kept snapshots of removed env {prefix} (name it to prune them)")
    if report.others_kept:
        rt.info(f"kept {report.others_kept} snapshots of other users (a team store: each user "
                "prunes their own)")
    if report.temp_removed:
        rt.info(f"removed {report.temp_removed} temp files of interrupted runs")
    return 0
