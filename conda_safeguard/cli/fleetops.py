"""Verbs for many envs and machines: pack, unpack, schedule, retire, kernels."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..suggest import plural
from .common import add_env_options, add_output_options, verb_parser

if TYPE_CHECKING:
    from pathlib import Path

    from .runtime import Runtime


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "pack", "Pack an env into a portable, checksummed archive (conda-pack).",
                    """
The archive holds conda-pack's archive of the env, a manifest with the sha256 of every file and
the env's snapshot, and optionally an ssh-keygen signature of the manifest.
examples:
  conda-safeguard pack -n pytorch -o pytorch.cspack
  conda-safeguard pack -n pytorch -o pytorch.cspack --sign-key ~/.ssh/id_ed25519""")
    add_env_options(p)
    p.add_argument("env", nargs="?", help="env name (same as -n)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="archive to write")
    p.add_argument("--compression", choices=("zst", "gz"),
                   help="payload compression (default: zst when zstandard is installed)")
    p.add_argument("--level", type=int, default=4, help="compression level (default 4)")
    p.add_argument("--threads", type=int, default=1, help="compression threads (-1: all cores)")
    p.add_argument("--sign-key", metavar="KEY", help="sign the manifest with this SSH private key")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    add_output_options(p)
    p.set_defaults(func=cmd_pack)

    p = verb_parser(sub, "unpack", "Verify a pack completely, then place the env at a new prefix.",
                    """
Every file's sha256 is checked before the env appears at PATH; a damaged, tampered or foreign
archive is refused with nothing written. No code from the archive runs (the prefix is rewritten
by conda-pack's library, not by the archive's conda-unpack script).
examples:
  conda-safeguard unpack pytorch.cspack -p /opt/envs/pytorch
  conda-safeguard unpack pytorch.cspack -n pytorch --allowed-signers ~/.ssh/allowed_signers""")
    p.add_argument("archive", help="a file written by `conda-safeguard pack`")
    add_env_options(p)
    p.add_argument("--allowed-signers", metavar="FILE",
                   help="refuse the archive unless a key listed in FILE signed it")
    add_output_options(p)
    p.set_defaults(func=cmd_unpack)
    register_schedule(sub)
    register_retire(sub)
    register_kernels(sub)


def _env_prefix(rt: Runtime, args: argparse.Namespace) -> Path:
    from ..prefix import require_env
    from .common import resolve_prefix

    if getattr(args, "env", None) and not (args.name or args.prefix):
        args.name = args.env
    return require_env(resolve_prefix(rt, args))


def cmd_pack(rt: Runtime, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..pack import pack

    prefix = _env_prefix(rt, args)
    rt.info(f"packing {prefix} with conda-pack …")
    r = pack(prefix, Path(args.output), env_name=rt.locator.name_of(prefix),
             compression=args.compression, level=args.level, threads=args.threads,
             force=args.force, sign_key=Path(args.sign_key).expanduser() if args.sign_key else None)
    if rt.json:
        rt.emit_json({"output": str(r.output), "files": r.files, "bytes": r.bytes,
                      "archive_bytes": r.archive_bytes, "conda": r.conda, "pip": r.pip,
                      "fingerprint": r.fingerprint, "signed": r.signed})
    else:
        rt.out(f"wrote {r.output}: {r.files} files ({r.bytes} bytes) with their sha256, "
               f"{r.conda} conda and {r.pip} pip packages, {r.archive_bytes} bytes"
               f"{', signed' if r.signed else ''}")
    return 0


def cmd_unpack(rt: Runtime, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..exceptions import UsageError
    from ..unpack import unpack

    if not (args.name or args.prefix):
        raise UsageError("Say where the env goes: -p PATH (or -n NAME for the envs folder).")
    dest = rt.locator.resolve(args.name, args.prefix, must_exist=False)
    signers = Path(args.allowed_signers).expanduser() if args.allowed_signers else None
    r = unpack(Path(args.archive), dest, allowed_signers=signers)
    if rt.json:
        rt.emit_json({"prefix": str(r.prefix), "files_verified": r.files_verified,
                      "bytes_verified": r.bytes_verified, "relocated": r.relocated,
                      "signed": r.signed, "signer": r.signer,
                      "packages_identical": r.packages_identical, "conda": r.conda,
                      "pip": r.pip, "differences": r.differences})
        return 0 if r.packages_identical else 1
    trust = f"signed by {r.signer}" if r.signer else \
        "signed, signature not checked (no --allowed-signers)" if r.signed else "not signed"
    rt.out(f"unpacked {r.prefix}: {r.files_verified} files ({r.bytes_verified} bytes) matched "
           f"their sha256; {r.relocated} files relocated; {trust}")
    if r.packages_identical:
        rt.out(f"package set identical to the packed env: {r.conda} conda, {r.pip} pip")
        return 0
    rt.out("package set differs from the packed env: " + "; ".join(r.differences))
    return 1


def register_schedule(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "schedule", "Back up every env daily: a systemd user timer or a crontab "
                    "line.", """
install writes a systemd user timer where systemd runs, else one crontab line; both run
`conda-safeguard backup --all -q` (quiet unless something fails). Installing twice changes
nothing; remove takes away exactly what install added.
examples:
  conda-safeguard schedule install --dry-run       print what would be installed
  conda-safeguard schedule install --at 02:30
  conda-safeguard schedule status                  what is installed, the last run, envs never
                                                   snapshotted
  conda-safeguard schedule remove""")
    p.add_argument("action", choices=("install", "remove", "uninstall", "status"))
    p.add_argument("--backend", choices=("auto", "systemd", "cron"), default="auto",
                   help="auto: systemd when it is the init system, else cron")
    p.add_argument("--at", metavar="HH:MM", help="time of day (default 03:17)")
    p.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    add_output_options(p)
    p.set_defaults(func=cmd_schedule)


def cmd_schedule(rt: Runtime, args: argparse.Namespace) -> int:
    from .. import schedule as sch

    if args.action == "status":
        return _schedule_status(rt, args)
    if args.action == "install":
        job = sch.Job.current(at=args.at, root_prefix=rt.locator.root_prefix)
        out = sch.install(job, args.backend, dry_run=args.dry_run)
    else:
        out = sch.remove(args.backend, dry_run=args.dry_run)
    if rt.json:
        rt.emit_json({"action": args.action, "backend": out.backend, "changed": out.changed,
                      "dry_run": args.dry_run, "files": out.files,
                      "commands": [" ".join(c) for c in out.commands], "text": out.text,
                      "notes": out.notes})
        return 0
    if args.dry_run:
        if args.action == "install":
            rt.out(out.text.rstrip("\n"))
        what = "would change" if out.changed else "nothing to change"
        rt.info(f"dry run ({out.backend}): {what}; " +
                "; ".join(f"would run `{' '.join(c)}`" for c in out.commands))
        return 0
    verb = {"install": "installed", "remove": "removed", "uninstall": "removed"}[args.action]
    if not out.changed:
        rt.out(f"schedule already {verb} ({out.backend}): nothing changed")
    else:
        where = ", ".join(out.files) if out.files else "your crontab"
        rt.out(f"schedule {verb} ({out.backend}): {where}")
    for note in out.notes:
        rt.info(f"note: {note}")
    return 0


def _schedule_status(rt: Runtime, args: argparse.Namespace) -> int:
    from .. import schedule as sch
    from ..exceptions import SafeguardError

    backend, what = sch.installed(args.backend)
    try:
        store = rt.store(create=False)
        snapshotted = {s.prefix for s in store.snapshots()}
    except SafeguardError:  # no store yet: nothing was ever backed up
        store, snapshotted = None, set()
    run = sch.last_backup_all(store)
    never = [str(p) for p in rt.locator.all_envs() if str(p) not in snapshotted]
    if rt.json:
        rt.emit_json({"backend": backend, "installed": what, "last_run": run,
                      "never_snapshotted": never})
        return 0
    rt.out(f"schedule ({backend}): {what or 'not installed'}")
    if backend == "cron" and what:
        rt.out(f"log of failed runs: {sch.cron_log()}")
    rt.out(sch.describe_last_run(run))
    rt.out(f"envs never snapshotted: {len(never)}" + "".join(f"\n  {p}" for p in never))
    return 0


def register_retire(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "retire", "Remove temporary envs, each after a snapshot of it.", """
Envs whose names match the temp patterns (setting safeguard_temp_patterns, or --match) are
listed; with --yes they are removed, each only after a snapshot (restore brings it back).
Never retired: base, the active env, protected envs, and envs holding files no package owns
(a snapshot cannot bring those back). Without --yes nothing is removed.
examples:
  conda-safeguard retire                              list what would go
  conda-safeguard retire --older-than 7d --yes
  conda-safeguard retire --match 'ci-*' --match '*-scratch' --yes""")
    p.add_argument("--match", action="append", metavar="PATTERN",
                   help="env name pattern (fnmatch; repeatable; default: the temp patterns)")
    p.add_argument("--older-than", metavar="AGE", help="only envs unchanged for AGE (7d, 12h, 2w)")
    p.add_argument("-y", "--yes", action="store_true", help="remove them (default: only list)")
    p.add_argument("--dry-run", action="store_true", help="only list (the default without --yes)")
    add_output_options(p)
    p.set_defaults(func=cmd_retire)


def cmd_retire(rt: Runtime, args: argparse.Namespace) -> int:
    from ..retire import parse_age, retire, select

    patterns = args.match or list(rt.settings.temp_patterns)
    older = parse_age(args.older_than) if args.older_than else None
    dry_run = args.dry_run or not args.yes
    report = retire(rt, select(rt, patterns, older), dry_run=dry_run)
    if rt.json:
        rt.emit_json({"dry_run": dry_run, "patterns": patterns,
                      "envs": [c.to_dict() for c in report.candidates],
                      "finished_interrupted": report.leftovers})
        return 0
    going = [c for c in report.candidates if c.action == "retire"]
    kept = [c for c in report.candidates if c.action == "keep"]
    done = len(going) if dry_run else len(report.retired)
    listed = ":" if report.candidates else ""  # a list follows only when there is one
    rt.out(f"{'would retire' if dry_run else 'retired'} {done} of "
           f"{plural(len(report.candidates), 'env')} matching {', '.join(patterns)}{listed}")
    for c in going:
        rt.out(f"  - {c.name:<24} {c.age_seconds / 86400:6.1f} days  {c.why}   {c.prefix}")
    for c in kept:
        rt.out(f"  = {c.name:<24} {c.age_seconds / 86400:6.1f} days  kept: {c.why}")
    for path in report.leftovers:
        rt.out(f"  finished an interrupted retire: removed {path}")
    if dry_run and going:
        rt.info("Nothing was removed. Run again with --yes to retire them (each is snapshotted "
                "first; `conda-safeguard restore NAME` brings one back).")
    return 0


def register_kernels(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "kernels", "List Jupyter kernels and the conda env each one runs in.",
                    """
Kernelspecs that run in an env are kept in its snapshots; `restore` registers them again.
A kernel whose env is gone fails to start in Jupyter: --missing lists only those.
examples:
  conda-safeguard kernels
  conda-safeguard kernels --missing --json""")
    p.add_argument("--missing", action="store_true", help="only kernels whose env is gone")
    add_output_options(p)
    p.set_defaults(func=cmd_kernels)


def cmd_kernels(rt: Runtime, args: argparse.Namespace) -> int:
    from ..kernels import kernel_dirs, kernel_report

    rows = kernel_report(rt.locator.all_envs())
    if args.missing:
        rows = [r for r in rows if r["status"] == "env missing"]
    if rt.json:
        rt.emit_json(rows)
        return 0
    if not rows:
        searched = ", ".join(str(d) for d in kernel_dirs())
        rt.info(f"no {'kernels with a missing env' if args.missing else 'kernelspecs'} found "
                f"(searched {searched})")
        return 0
    for r in rows:
        where = r["env"] or r["executable"]
        hint = "" if r["status"] != "env missing" else \
            f"  (`conda-safeguard restore {r['env']}` brings the env back if it was snapshotted)"
        rt.out(f"{r['name']:<24} {r['status']:<16} {where}{hint}")
    missing = sum(r["status"] == "env missing" for r in rows)
    rt.info(f"{plural(len(rows), 'kernel')}, {missing} with a missing env")
    return 0
