"""Restore: plan (what will be built, from which files, by which tool), then apply.

`plan_restore` reads only: the snapshot, the store's pins, conda's package caches. `apply_restore`
is the only code that builds an env. It builds next to the target and puts the result in place
only when it is complete; on any failure the half-built env is removed and an env that was
there is put back as it was. Then it reinstalls pip packages from their recorded sources and
verifies the result file by file (verify.py).

Order of preference: (a) offline, no solve: an explicit package list from package files on disk
(pins in the store, conda's package caches); (b) a solve from the snapshot's environment.yml,
with builds, or without them when the snapshot comes from another platform; (c) pip.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import FROZEN_MARK, PROTECT_MARK
from .exceptions import SafeguardError
from .installers import Installer, InstallJob, PackageFile, choose_installer, dist_name, fix_records
from .pins import existing_pin, file_matches, find_pkgs_dirs, tarball_for, url_path
from .pip_restore import (
    PipPolicy,
    PipStep,
    expected_state,
    install_pip,
    loss_problem,
    pip_plan,
)
from .pip_restore import describe as describe_pip
from .prefix import CondaRecord, is_env, read_records
from .render import environment_yml, ordered_for_install
from .reuse import Reused, reusable, seed
from .snapshot import EnvState, SnapshotInfo, host_platform
from .store import Store
from .suggest import plural
from .suggest import safeguard as _sg
from .transaction import (
    exchange,
    finish,
    lock_dir,
    new_journal,
    recover_locked,
    refuse_conda_root,
    resolve_target,
    roll_back,
    settle,
    signals_roll_back,
    target_lock,
)
from .unowned import CarryReport, carry_over, config_summary, unowned, write_config
from .verify import VerifyReport, verify
from .wheels import kept_wheels

Progress = Callable[[str], None]
WORKERS = min(4, (os.cpu_count() or 2) * 2)


class RestoreError(SafeguardError):
    """A restore that cannot be done as asked."""


class TargetNotEnvError(RestoreError):
    def __init__(self, target: Path) -> None:
        super().__init__(
            f"Refusing to restore into {target}: it exists and is not a conda environment (no "
            "conda-meta/ folder), so it may hold someone's files. Nothing was changed. Choose "
            "another place with -p PATH or -n NAME, or move that folder away first.")


class RestoreRefusedError(RestoreError):
    def __init__(self, info: SnapshotInfo, problems: list[str]) -> None:
        super().__init__(
            f"Refusing to restore snapshot {info.short_id} of '{info.env_name}': "
            + " ".join(problems) + " Nothing was changed.")


class RestoreFailedError(RestoreError):
    def __init__(self, target: Path, step: str, error: BaseException, replaced: bool,
                 undone: str = "", snapshot: str = "") -> None:
        what = f"{type(error).__name__}: {error}" if not isinstance(error, SafeguardError) \
            else str(error)
        back = "the env that was there is unchanged" if replaced else \
            f"{target} was not created"
        done = undone or f"The half-built env was removed and {back}; nothing else was changed"
        from .suggest import fix_for

        super().__init__(
            f"Restore into {target} failed while {step} ({what}). {done}. "
            f"{fix_for(error, target.parent)} and run the same command again"
            + (f" (it restores snapshot {snapshot} again; by id: "
               f"`{_sg('restore', snapshot, '-p', target)}`)." if snapshot else "."))


class NothingToUndoError(RestoreError):
    def __init__(self, prefix: Path) -> None:
        super().__init__(
            f"Nothing to undo for {prefix}: every snapshot of it holds its current state (it "
            f"has not changed since it was first snapshotted). `{_sg('list', prefix)}` shows "
            "its snapshots.")


@dataclass
class RestorePlan:
    info: SnapshotInfo
    state: EnvState
    target: Path
    replaces: bool  # an env is at the target: it is replaced (after a snapshot)
    method: str  # "explicit", "solve" or "solve-no-builds"
    installer: Installer | None
    packages: list[PackageFile]
    pip: list[PipStep]
    offline: bool
    pkgs_dirs: list[Path]
    platform: str
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # packages the env being replaced has exactly as the snapshot does: taken over from it
    # (each file checked first), so only the others are installed (reuse.py)
    reuse: set[str] = field(default_factory=set)

    def source_counts(self, packages: list[PackageFile] | None = None) -> dict[str, int]:
        counts = {"pin": 0, "cache": 0, "extracted": 0, "channel": 0, "missing": 0}
        for p in self.packages if packages is None else packages:
            counts[p.kind] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshot": self.info.id, "env": self.info.env_name, "target": str(self.target),
            "replaces": self.replaces, "method": self.method, "offline": self.offline,
            "reuse": sorted(self.reuse),
            "installer": self.installer.name if self.installer else None,
            "sources": self.source_counts(),
            "packages": [{"name": p.record.name, "version": p.record.version,
                          "build": p.record.build,
                          "source": "kept" if p.record.name in self.reuse else p.kind,
                          "path": str(p.path) if p.path else None, "url": p.record.url}
                         for p in self.packages],
            "pip": [s.to_dict() for s in self.pip], "notes": self.notes,
            "problems": self.problems,
        }

    def describe(self) -> list[str]:
        info = self.info
        installed = [p for p in self.packages if p.record.name not in self.reuse]
        c = self.source_counts(installed)
        downloads = sum(p.kind == "channel" and not p.record.url.startswith("file:")
                        for p in installed)
        network = f"needs network: {downloads} package files download from their channels" \
            if downloads else "offline"
        method = {"explicit": f"{network}, no solve: an explicit list of package files",
                  "solve": "solve from the snapshot's environment.yml (exact builds)",
                  "solve-no-builds": "solve from environment.yml without build strings"}
        where = ("an env: it is snapshotted, kept until the new one is complete and verified, "
                 "then replaced; files no package owns are carried over") if self.replaces else \
            "nothing there: it will be created"
        kept = f"{len(self.reuse)} unchanged, kept from the env there (each file checked " \
            "first; a package that fails is installed afresh); " if self.reuse else ""
        out = [f"Restore snapshot {info.short_id} of '{info.env_name}' (taken "
               f"{info.created[:19].replace('T', ' ')}Z, reason: {info.reason})",
               f"  into:      {self.target} ({where})",
               f"  method:    {method[self.method]}",
               f"  installer: {self.installer.describe() if self.installer else 'none found'}",
               f"  packages:  {len(self.packages)}: {kept}{c['pin']} pinned in the store, "
               f"{c['cache'] + c['extracted']} from package caches, {c['channel']} from "
               f"channels, {c['missing']} with no file here"]
        for p in self.packages:
            r = p.record
            if r.name in self.reuse:
                out.append(f"    {r.name:<24} {r.version:<12} {r.build:<18} {'kept':<9} "
                           f"{self.target}")
                continue
            src = str(p.path) if p.path else (r.url if p.kind == "channel" else "-")
            out.append(f"    {r.name:<24} {r.version:<12} {r.build:<18} {p.kind:<9} {src}")
        out += describe_pip(self.pip, self.target)
        extras = _meta_summary(self.state)
        if extras:
            out.append(f"  also:      {extras}")
        out += [f"  note: {n}" for n in self.notes]
        out += [f"  PROBLEM: {p}" for p in self.problems]
        return out


def _meta_summary(state: EnvState) -> str:
    parts = []
    revisions = state.history.count("==> ")
    if revisions:
        parts.append(f"conda-meta/history ({revisions} revision{'s' if revisions > 1 else ''})")
    if state.variables:
        parts.append(f"{len(state.variables)} env vars (conda-meta/state)")
    if state.frozen is not None:
        parts.append("the CEP-22 frozen marker")
    if state.config:
        parts.append(config_summary(state.config))
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# planning


def check_target(target: Path) -> bool:
    """True when an env is at `target`; raises when something else is."""
    if is_env(target):
        return True
    if target.is_dir() and not any(target.iterdir()):
        return False  # an empty folder: conda creates into it too
    if os.path.lexists(target):
        raise TargetNotEnvError(target)
    return False


def _extracted(record: CondaRecord, pkgs_dirs: list[Path]) -> Path | None:
    """A package folder in a conda cache whose repodata_record.json names this exact package."""
    for d in pkgs_dirs:
        folder = d / dist_name(record.fn)
        try:
            rr = json.loads((folder / "info" / "repodata_record.json").read_bytes())
        except (OSError, ValueError):
            continue
        same = rr.get("sha256") == record.sha256 if rr.get("sha256") and record.sha256 \
            else bool(record.md5) and rr.get("md5") == record.md5
        if same and rr.get("url") == record.url and (folder / "info" / "paths.json").is_file():
            return folder
    return None


def locate(store: Store, record: CondaRecord, pkgs_dirs: list[Path],
           offline: bool) -> tuple[PackageFile, str | None]:
    """Where the bytes of `record` can come from, and a problem (a damaged pin) if any.

    A package already extracted in a conda cache first (conda links from those itself; no
    unpacking), then our pin, then a tarball in a cache or a file:// channel, then a download.
    """
    folder = _extracted(record, pkgs_dirs)
    if folder is not None:
        return PackageFile(record, "extracted", folder), None
    problem = None
    pin = existing_pin(store, record)
    if pin is not None:
        if file_matches(pin, record):
            return PackageFile(record, "pin", pin), None
        problem = (f"The pinned package file of {record.dist_str} ({pin}) is damaged: its "
                   f"sha256 is not {record.sha256[:16]}…. Run `{_sg('check')}`; restore "
                   "with --solve to solve from environment.yml instead (needs its channel).")
    found = tarball_for(record, pkgs_dirs)
    if found is not None:
        return PackageFile(record, "cache", found), problem
    if record.url and url_path(record.url) is None and not offline:
        return PackageFile(record, "channel"), problem
    return PackageFile(record, "missing"), problem


def plan_restore(store: Store, info: SnapshotInfo, target: Path, *, offline: bool = False,
                 solve: bool = False, pkgs_dirs: list[Path] | None = None,
                 installer: Installer | None | str = "auto", state: EnvState | None = None,
                 host: str | None = None, progress: Progress | None = None,
                 root_prefix: Path | None = None,
                 pip_policy: PipPolicy | None = None, reuse: bool = True) -> RestorePlan:
    """What restoring `info` into `target` would do. Changes nothing. Refuses a target that is
    a conda installation (base, a root prefix) rather than an env. With `reuse`, the packages
    an env at the target has exactly as the snapshot does are kept rather than installed
    again (an undo of one package changes one package)."""
    target = resolve_target(target)
    replaces = check_target(target)
    if replaces:
        refuse_conda_root(target, root_prefix, info.short_id)
    state = store.load_state(info) if state is None else state
    host = host or host_platform()
    dirs = find_pkgs_dirs() if pkgs_dirs is None else pkgs_dirs
    tool = choose_installer() if installer == "auto" else installer
    assert not isinstance(tool, str)
    if progress is not None:
        progress(f"checking the package files of {plural(len(state.packages), 'package')}")
    packages, damaged, damaged_names, notes = [], [], [], []
    records = ordered_for_install(state)
    with ThreadPoolExecutor(WORKERS) as pool:  # hashing pins: I/O, the GIL is released
        located = list(pool.map(lambda r: locate(store, r, dirs, offline), records))
    for record, (found, problem) in zip(records, located, strict=True):
        if problem and found.kind in ("cache", "extracted"):
            notes.append(f"the pinned file of {record.dist_str} is damaged; using {found.path} "
                         f"instead (run `{_sg('check')}`)")
        elif problem:
            found = PackageFile(record, "missing")
            damaged.append(problem)
            damaged_names.append(record.name)
        packages.append(found)
    plan = RestorePlan(info=info, state=state, target=target, replaces=replaces,
                       method="explicit", installer=tool, packages=packages,
                       pip=pip_plan(state, target if replaces else None, offline, pip_policy,
                                    kept_wheels(store, info)),
                       offline=offline, pkgs_dirs=dirs,
                       platform=host, notes=notes)
    foreign = sorted({r.subdir for r in state.packages if r.subdir not in ("", "noarch", host)})
    if replaces and not solve and not foreign and reuse:
        plan.reuse = reusable(read_records(target), state.package_map())
    missing = [p.record.dist_str for p in packages
               if p.kind == "missing" and p.record.name not in plan.reuse]
    # a damaged pin of a package that is kept matters only if keeping it fails (then it says)
    damaged = [d for d, name in zip(damaged, damaged_names, strict=True)
               if name not in plan.reuse]
    if solve:
        plan.method = "solve"
        plan.notes.append("solving from environment.yml, as asked (--solve)")
    elif foreign:
        plan.method = "solve-no-builds"
        plan.notes.append(
            f"the snapshot was taken on {state.platform} ({', '.join(foreign)} packages) and "
            f"this machine is {host}: those package files cannot be installed here, so the env "
            "is solved again from environment.yml with the same versions but no build strings "
            "(--no-builds). Builds and files will differ from the snapshot.")
    elif damaged:
        plan.problems += damaged
    elif missing:
        plan.method = "solve"
        why = " and --offline forbids downloads" if offline else ""
        plan.notes.append(f"{len(missing)} packages have no package file here{why} "
                          f"({', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}): "
                          "solving from environment.yml with exact builds instead.")
    if tool is None:
        plan.problems.append("No installer was found: install conda, mamba, micromamba or "
                             "py-rattler (pip install py-rattler), or set CONDA_EXE.")
    elif plan.method != "explicit":
        if not tool.can_solve:
            plan.problems.append(f"{tool.name} cannot solve; install conda to restore this.")
        if not info.channels:
            plan.problems.append("the snapshot names no channel to solve from.")
    pip_loss = loss_problem(plan.pip)  # refused before anything is touched
    if pip_loss:
        plan.problems.append(pip_loss)
    return plan


# ---------------------------------------------------------------------------------------------
# applying


@dataclass
class RestoreResult:
    plan: RestorePlan
    report: VerifyReport
    pip: list[PipStep]
    pip_note: str = ""

    carried: CarryReport | None = None  # files no package owns, from the replaced env
    reused: Reused | None = None  # unchanged packages taken over from the replaced env
    rolled_back: bool = False  # it differed: the env that was there was put back (or none left)

    @property
    def ok(self) -> bool:
        return self.report.identical and all(s.settled for s in self.pip)

    @property
    def may_replace(self) -> bool:
        """Good enough to take the place of a working env: identical; or, solved without build
        strings (a snapshot from another platform, as the plan said), every file checked and
        every package there."""
        r = self.report
        if self.plan.method == "solve-no-builds":
            return not (r.bad_files or r.unhashed or r.missing or r.pip_missing) and \
                all(s.settled for s in self.pip)
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return {"target": str(self.plan.target), "verdict": self.report.verdict,
                "verify": self.report.to_dict(), "pip": [s.to_dict() for s in self.pip],
                "pip_note": self.pip_note, "ok": self.ok, "rolled_back": self.rolled_back,
                "kept": {"packages": len(self.reused.packages), "files": self.reused.files,
                         "installed_afresh": self.reused.rejected} if self.reused else None,
                "carried_over": {"files": self.carried.files, "bytes": self.carried.size,
                                 "kept_as_safeguard_kept": self.carried.kept}
                if self.carried else None}


def write_conda_meta(prefix: Path, state: EnvState, old_prefix: Path | None = None) -> None:
    """What conda keeps outside package records and loses with the env: history, env vars
    (conda-meta/state, written as conda writes it), the CEP-22 frozen marker; and our protect
    mark, carried over from the env being replaced."""
    meta = prefix / "conda-meta"
    if state.history:
        (meta / "history").write_text(state.history, encoding="utf-8")
    if state.variables:
        (meta / "state").write_text(json.dumps({"env_vars": state.variables},
                                               ensure_ascii=False, indent=2), encoding="utf-8")
    if state.frozen is not None:
        text = json.dumps({"message": state.frozen}) if state.frozen else ""
        (prefix / FROZEN_MARK).write_text(text, encoding="utf-8")
    if old_prefix is not None and (old_prefix / PROTECT_MARK).is_file():
        shutil.copy2(old_prefix / PROTECT_MARK, prefix / PROTECT_MARK)


def _refuse_unavailable(plan: RestorePlan, reused: Reused) -> None:
    """A package that was to be kept but failed its check needs a package file after all,
    and not one whose bytes were edited along with the env's."""
    if reused.damaged_cache:
        raise RestoreError(
            f"A file of the env was edited in place, and conda's package cache shares it (a "
            f"hardlink), so its cached copy changed too: "
            f"{'; '.join(reused.damaged_cache.values())}. "
            "Installed from there, the package would come back edited, and the restore would "
            "fail its check. Nothing was changed. Delete "
            f"{', '.join(sorted(reused.damaged_cache))} (conda unpacks the package file "
            "again, or downloads it), then run this again.")
    failed = set(plan.reuse) - set(reused.packages)
    lacking = [p.record.dist_str for p in plan.packages
               if p.record.name in failed and p.kind == "missing"]
    if lacking:
        raise RestoreError(
            f"{plural(len(lacking), 'package')} of the env could not be kept as they are "
            f"({'; '.join(reused.rejected[:3])}) and no package file for "
            f"{', '.join(lacking[:5])} is here (no pin, not in conda's package cache"
            f"{', and --offline forbids downloads' if plan.offline else ''}).")


def _install(plan: RestorePlan, job: InstallJob) -> None:
    assert plan.installer is not None
    if plan.method == "explicit":
        plan.installer.install_explicit(job)
        fix_records(job.build_prefix, plan.state.package_map())
        return
    no_builds = plan.method == "solve-no-builds"
    yml = job.staging / "environment.yml"
    yml.write_text(environment_yml(plan.info, EnvState(**{**plan.state.__dict__, "pip": []}),
                                   "no-builds" if no_builds else "full", include_prefix=False),
                   encoding="utf-8")
    specs = [f"{r.name}={r.version}" + ("" if no_builds else f"={r.build}")
             for r in plan.state.packages if r.is_exported]
    plan.installer.install_solved(job, yml, specs, list(plan.info.channels))


def apply_restore(plan: RestorePlan, *, store: Store, progress: Progress | None = None,
                  before: str | None = None) -> RestoreResult:
    """Build the env the plan describes and put it in place, reinstall pip packages, verify.

    An env at the target is replaced transactionally (transaction.py): it stays whole until
    the new one is complete and verified; a failure or a difference puts it back as it was.
    `before` is the id of the snapshot taken of it, for the journal.
    """
    if plan.problems or plan.installer is None:
        raise RestoreRefusedError(plan.info, plan.problems)
    say = progress or (lambda _: None)
    plan.target.parent.mkdir(parents=True, exist_ok=True)
    with target_lock(plan.target, lock_dir(store.root)), signals_roll_back():
        recover_locked(plan.target, say)  # what a killed restore into this path left
        if check_target(plan.target) != plan.replaces:
            raise RestoreError(
                f"{plan.target} changed since the plan was made (an env "
                f"{'disappeared from' if plan.replaces else 'appeared at'} it). Nothing was "
                "changed. Run the command again to plan anew.")
        return _replace(plan, store, say, before)


def _replace(plan: RestorePlan, store: Store, say: Progress, before: str | None,
             ) -> RestoreResult:
    target, tool = plan.target, plan.installer
    assert tool is not None
    journal = new_journal(target, in_place=tool.in_place, replaces=plan.replaces,
                          snapshot=plan.info.id, before=before)
    journal.save()
    staging = Path(journal.staging)
    staging.mkdir(mode=0o700)
    old = Path(journal.old_path) if journal.old_path else None
    build = Path(journal.new_path)
    step = "preparing"
    try:
        found = None
        if plan.replaces:
            step = "listing the files no package owns in the env being replaced"
            found = unowned(target)
        # the new env starts as a folder we made (its inode tells recover it is ours), seeded
        # with the unchanged packages of the env being replaced
        fresh = staging / "prefix"
        fresh.mkdir()
        journal.new_ino = os.lstat(fresh).st_ino
        journal.save()
        reused = None
        if plan.reuse:
            step = "checking the unchanged packages of the env being replaced"
            say(f"{step} ({plural(len(plan.reuse), 'package')})")
            wanted = plan.state.package_map()
            cached = {p.record.name: p.path for p in plan.packages
                      if p.kind == "extracted" and p.path is not None}
            reused = seed(target, fresh, {n: wanted[n] for n in plan.reuse}, cached)
            say(reused.describe())
            _refuse_unavailable(plan, reused)
        if tool.in_place:
            # conda fills it at the path, swapped in for the old env in one step: the path is
            # never empty
            if old is not None:
                exchange(target, fresh)  # the journal already says where each one goes
                os.rename(fresh, old)
            else:
                if target.is_dir():
                    target.rmdir()  # an empty folder the user made
                os.rename(fresh, target)
        seeded = frozenset(reused.packages if reused else ())
        todo = [p for p in plan.packages if p.record.name not in seeded]
        step = f"installing {plural(len(todo), 'package')} with {tool.name}"
        say(f"{step} ({plan.method})")
        job = InstallJob(build, target, todo, staging, plan.pkgs_dirs, plan.offline,
                         plan.platform, kept=seeded)
        with store.reading_lock():  # prune must not take pins away while we read them
            _install(plan, job)
        step = "restoring conda-meta (history, env vars, frozen marker) and env config"
        say(step)
        old_now = old if tool.in_place else (target if plan.replaces else None)
        write_conda_meta(build, plan.state, old_now)
        write_config(build, plan.state.config)
        carried = None
        if old_now is not None and found is not None:
            step = "carrying over the files no package owns"
            carried = carry_over(old_now, build, found)
            say(carried.describe())
        journal.new_ino = os.lstat(build).st_ino
        if not tool.in_place:
            step = f"moving the new env into place at {target}"
            say(step)
            if old is not None:
                journal.set("swapping")
                exchange(target, build)  # one step: the path always holds an env
                os.rename(build, old)
            else:
                if target.is_dir():
                    target.rmdir()
                os.rename(build, target)
        journal.set("swapped")
        step = "reinstalling pip packages"
        pip_note = install_pip(target, plan.pip, offline=plan.offline, progress=say, old=old)
        step = "verifying"
        say(f"verifying {target} against snapshot {plan.info.short_id}")
        report = verify(target, expected_state(plan.state, plan.pip),
                        checked=reused.checked if reused else None, sources=job.sources)
        result = RestoreResult(plan, report, plan.pip, pip_note, carried=carried,
                               reused=reused)
        # never trade a working env for a worse one, and never leave one whose files differ
        # from what conda recorded (a damaged package cache: conda's extra checks are off)
        if not result.may_replace and (old is not None or report.bad_files):
            roll_back(journal, say)
            result.rolled_back = True
            return result
        journal.set("verified")
        finish(journal, lambda _: None)
        if plan.state.kernels:  # kernelspecs live outside the env: put them back too
            from .kernels import register_kernels

            say(register_kernels(plan.state.kernels, Path(plan.info.prefix), target).describe())
        return result
    except BaseException as e:
        try:
            outcome = settle(journal, say)
        except BaseException as again:
            raise RestoreFailedError(target, step, e, replaced=plan.replaces,
                                     snapshot=plan.info.short_id,
                                     undone=f"Rolling back failed too ({again}); run "
                                     f"`{_sg('recover', '-p', target)}`") from e
        if not isinstance(e, Exception):
            raise
        kept = f"The new env is at {target} (its conda packages complete) but this step did " \
            f"not finish; check it with `{_sg('verify', '-p', target)}`" \
            if outcome == "finished" else ""
        raise RestoreFailedError(target, step, e, replaced=plan.replaces,
                                 snapshot=plan.info.short_id, undone=kept) from e


def undo_snapshot(store: Store, prefix: Path, current: EnvState) -> SnapshotInfo:
    """The newest snapshot of `prefix` whose state differs from `current`."""
    for s in store.snapshots_of(prefix):
        if s.fingerprint != current.fingerprint:
            return s
    raise NothingToUndoError(prefix)
