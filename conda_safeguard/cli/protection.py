"""Verbs about protection: protect, unprotect, freeze, unfreeze, status."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ..constants import FROZEN_MARK
from ..suggest import safeguard as _sg
from .common import add_env_options, add_output_options, resolve_prefix, verb_parser

if TYPE_CHECKING:
    from pathlib import Path

    from .runtime import Runtime


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, summary, func in (
        ("protect", "Mark an env protected: destroying it needs its name typed.", cmd_protect),
        ("unprotect", "Mark an env unprotected (base stays protected).", cmd_unprotect),
    ):
        p = verb_parser(sub, verb, summary, f"""
The mark lives in the env (conda-meta/safeguard-protection): every user of a shared install
sees it.
example:
  conda-safeguard {verb} -n pytorch""")
        add_env_options(p)
        p.add_argument("env", nargs="?", help="env name (same as -n)")
        add_output_options(p)
        p.set_defaults(func=func)

    p = verb_parser(sub, "freeze", "Freeze an env (CEP 22): conda refuses to change it.", """
Writes conda's own conda-meta/frozen marker; conda >= 25.5 then blocks install, update and
remove. conda-safeguard covers what the marker does not: create over the env, and rename.
example:
  conda-safeguard freeze -n base --message "cluster image; ask ops before changing" """)
    add_env_options(p)
    p.add_argument("env", nargs="?", help="env name (same as -n)")
    p.add_argument("--message", default="", help="shown by conda when it refuses")
    add_output_options(p)
    p.set_defaults(func=cmd_freeze)

    p = verb_parser(sub, "unfreeze", "Remove an env's CEP 22 frozen marker.", """
example:
  conda-safeguard unfreeze -n base""")
    add_env_options(p)
    p.add_argument("env", nargs="?", help="env name (same as -n)")
    add_output_options(p)
    p.set_defaults(func=cmd_unfreeze)

    p = verb_parser(sub, "status", "Is an env protected, frozen, snapshotted?", """
examples:
  conda-safeguard status            every env
  conda-safeguard status -n pytorch --json""")
    add_env_options(p)
    p.add_argument("env", nargs="?", help="env name (same as -n)")
    add_output_options(p)
    p.set_defaults(func=cmd_status)


def _prefix(rt: Runtime, args: argparse.Namespace) -> Path:
    from ..prefix import require_env

    if args.env and not (args.name or args.prefix):
        args.name = args.env
    return require_env(resolve_prefix(rt, args))


def _set_mark(rt: Runtime, args: argparse.Namespace, protected: bool) -> int:
    from ..guard import protection, write_mark

    prefix = _prefix(rt, args)
    name = rt.locator.short_name(prefix)
    is_base = rt.locator.root_prefix is not None and prefix == rt.locator.root_prefix
    if not protected and is_base:
        from .. import suggest
        from ..exceptions import SafeguardError

        raise SafeguardError(
            f"base ({prefix}) is always protected: conda itself lives there, so it cannot be "
            "unprotected. Nothing was changed. To let one command replace or remove it anyway, "
            f"type its name at the prompt, or put {suggest.allow(['base'])} in front of the "
            "command.")
    write_mark(prefix, protected)
    effective = protection(rt, prefix)
    if rt.json:
        rt.emit_json({"env": name, "prefix": str(prefix), "protected": effective})
    else:
        rt.out(f"{name}: {'protected' if effective else 'not protected'}")
    return 0


def cmd_protect(rt: Runtime, args: argparse.Namespace) -> int:
    return _set_mark(rt, args, True)


def cmd_unprotect(rt: Runtime, args: argparse.Namespace) -> int:
    return _set_mark(rt, args, False)


def cmd_freeze(rt: Runtime, args: argparse.Namespace) -> int:
    from ..fs import atomic_write

    prefix = _prefix(rt, args)
    message = args.message
    if not message and rt.locator.root_prefix is not None and prefix == rt.locator.root_prefix:
        from ..advice import BASE_FROZEN_MESSAGE

        message = BASE_FROZEN_MESSAGE  # conda shows it when it refuses: say what to do instead
    body = json.dumps({"message": message}).encode() if message else b""
    atomic_write(prefix / FROZEN_MARK, body, mode=0o644)
    if rt.json:
        rt.emit_json({"prefix": str(prefix), "frozen": True, "message": message})
    else:
        rt.out(f"{rt.locator.short_name(prefix)}: frozen (conda >= 25.5 refuses changes; on "
               "older conda the conda-safeguard plugin does; "
               f"`{_sg('unfreeze', '-p', prefix)}` undoes it)")
    return 0


def cmd_unfreeze(rt: Runtime, args: argparse.Namespace) -> int:
    prefix = _prefix(rt, args)
    marker = prefix / FROZEN_MARK
    was = marker.exists()
    if was:
        marker.unlink()
    if rt.json:
        rt.emit_json({"prefix": str(prefix), "frozen": False, "was_frozen": was})
    else:
        rt.out(f"{rt.locator.short_name(prefix)}: {'unfrozen' if was else 'was not frozen'}")
    return 0


def cmd_status(rt: Runtime, args: argparse.Namespace) -> int:
    from ..exceptions import SafeguardError
    from ..guard import protection, read_mark
    from ..prefix import read_frozen

    if args.env or args.name or args.prefix:
        try:
            prefixes = [_prefix(rt, args)]
        except SafeguardError:  # killed mid-restore, the path may hold an unfinished env
            from .restoring import pending_restores

            path = resolve_prefix(rt, args, must_exist=False)
            if not pending_restores(rt, path):
                raise
            prefixes = [path]
    else:
        prefixes = rt.locator.all_envs()
    store = None
    try:
        store = rt.store(create=False)
        snapshots = store.snapshots()
    except SafeguardError:  # no store yet: nothing snapshotted, which status reports
        snapshots = []
    rows: list[dict[str, Any]] = []
    for prefix in prefixes:
        latest = next((s for s in snapshots if s.prefix == str(prefix)), None)
        try:
            mark = read_mark(prefix)
        except SafeguardError:
            mark = None  # protection() already treats a damaged mark as protected
        rows.append({
            "env": rt.locator.short_name(prefix), "prefix": str(prefix),
            "protected": protection(rt, prefix), "mark": mark,
            "frozen": read_frozen(prefix) is not None,
            "latest_snapshot": latest.id if latest else None,
            "latest_created": latest.created if latest else None,
        })
    from .restoring import pending_restores

    interrupted = pending_restores(rt, prefixes[0] if len(prefixes) == 1 and (
        args.env or args.name or args.prefix) else None)
    for p in interrupted:
        row = next((r for r in rows if r["prefix"] == str(p.target)), None)
        if row is None:  # nothing at the path: the env is only in the kept old folder
            row = {"env": p.target.name, "prefix": str(p.target), "protected": None,
                   "mark": None, "frozen": False, "latest_snapshot": None,
                   "latest_created": None}
            rows.append(row)
        row["interrupted_restore"] = {"snapshot": p.journal.snapshot, "step": p.journal.phase,
                                      "kept_old": p.kept_old, "running": p.running}
    if rt.json:
        rt.emit_json(rows)
        return 0
    for p in interrupted:
        rt.info(f"conda-safeguard: {p.describe()}.")
    for r in rows:
        flags = ["protected" if r["protected"] else "unprotected"]
        if r.get("interrupted_restore"):
            flags.append("INTERRUPTED RESTORE")
        if r["frozen"]:
            flags.append("frozen")
        snap = f"last snapshot {r['latest_snapshot'][:10]} {r['latest_created'][:19]}Z" \
            if r["latest_snapshot"] else "no snapshot"
        rt.out(f"{r['env']:<24} {', '.join(flags):<22} {snap}   {r['prefix']}")
    if not (args.env or args.name or args.prefix):  # the whole picture: add the last run
        from ..schedule import describe_last_run, last_backup_all

        rt.out(describe_last_run(last_backup_all(store)))
    return 0
