"""The tools that build an env for restore: conda, mamba, micromamba, or py-rattler.

A strategy object per tool, chosen at runtime (`choose_installer`) and named in the plan. Each
can install an explicit package list with no solve, from package files on disk, and solve from
an environment.yml. The package files are offered the way each tool looks for them:

- conda / mamba / micromamba: a staging package cache (the tarballs, hardlinked, and a
  `urls.txt` giving each one its original URL) listed after conda's own caches in
  CONDA_PKGS_DIRS; the explicit file names the *original* URLs, so the new env's records (and
  `conda list --explicit`) are the same as before. These tools write the prefix into files as
  they link them, so they build at the final path (`in_place`).
- py-rattler: the packages extracted into a staging cache, installed with
  `alternative_target_prefix`, so it can build in a temporary folder and be moved into place.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .children import run_tied
from .constants import ENV_BUILDING
from .exceptions import SafeguardError
from .fs import rename_noreplace
from .pins import hash_file, named_link
from .verify import SourceDigests

if TYPE_CHECKING:
    from .prefix import CondaRecord

ENV_INSTALLER = "CONDA_SAFEGUARD_INSTALLER"
INSTALLER_CHOICES = ("auto", "conda", "mamba", "micromamba", "rattler")


class InstallerError(SafeguardError):
    def __init__(self, tool: str, what: str, detail: str) -> None:
        super().__init__(f"{tool} could not {what}: {detail}")


@dataclass
class PackageFile:
    """One package to install and where its bytes come from."""

    record: CondaRecord
    kind: str  # "pin" | "cache" (a tarball) | "extracted" (a cache folder) | "channel" | "missing"
    path: Path | None = None


@dataclass
class InstallJob:
    build_prefix: Path  # where the files are written
    final_prefix: Path  # the prefix written into files (differs only for relocatable builds)
    packages: list[PackageFile]  # dependencies first
    staging: Path  # scratch space next to the target, removed afterwards
    pkgs_dirs: list[Path]  # conda's package caches
    offline: bool
    platform: str
    # packages already in build_prefix, taken over from the env being replaced (reuse.py):
    # the installer adds `packages` next to them and leaves them as they are
    kept: frozenset[str] = frozenset()
    # the package files linked from, hashed while the installer runs, for verify to use
    sources: SourceDigests = field(default_factory=SourceDigests)


def dist_name(fn: str) -> str:
    for ext in (".conda", ".tar.bz2"):
        if fn.endswith(ext):
            return fn[: -len(ext)]
    return fn


class Installer(ABC):
    name: str = ""
    in_place: bool = True  # must build at the final path
    can_solve: bool = True

    @abstractmethod
    def describe(self) -> str: ...

    @abstractmethod
    def install_explicit(self, job: InstallJob) -> None: ...

    @abstractmethod
    def install_solved(self, job: InstallJob, yml: Path, specs: list[str],
                       channels: list[str]) -> None: ...


# ---------------------------------------------------------------------------------------------
# conda, mamba, micromamba (subprocesses)


class CondaCLI(Installer):
    def __init__(self, argv: list[str], flavor: str = "conda") -> None:
        self.argv = argv
        self.name = flavor

    def describe(self) -> str:
        return (f"{self.name} ({' '.join(self.argv)}); it writes the prefix into files while "
                "linking, so it builds at the target path (an env already there is moved aside "
                "until the new one is complete)")

    def _env(self, job: InstallJob, extra_cache: Path | None) -> dict[str, str]:
        dirs = [*job.pkgs_dirs, *([extra_cache] if extra_cache else [])]
        return {**os.environ, "CONDA_PKGS_DIRS": ",".join(str(d) for d in dirs)}

    def _run(self, args: list[str], env: dict[str, str], what: str,
             during: AbstractContextManager[object] | None = None) -> None:
        proc = run_tied([*self.argv, *args], env=env, during=during)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-6:])
            raise InstallerError(self.name, what, f"exit status {proc.returncode}\n{tail}")

    def install_explicit(self, job: InstallJob) -> None:
        if not job.packages:
            return  # everything was kept from the env being replaced
        cache = job.staging / "pkgs"
        cache.mkdir(parents=True, exist_ok=True)
        # Every local package file goes into the staging cache under its package file name
        # (a pin is named by its sha256; conda-package-handling finds the parts of a `.conda`
        # by its name) with its original URL in urls.txt: conda sees the cache as its own.
        # Unpacked here in parallel when we can (with the repodata_record.json conda writes),
        # conda only links them; otherwise conda unpacks the tarballs itself.
        local = [p for p in job.packages if p.kind in ("pin", "cache") and p.path is not None]
        named = [PackageFile(p.record, p.kind, named_link(p.path, cache, p.record.fn))
                 for p in local if p.path is not None]
        folders = [p.path for p in job.packages if p.kind == "extracted" and p.path is not None]
        if named and find_unpacker():
            unpacked = unpack_all(named, cache, job.staging)
            folders += hand_over({unpacked[p.record.fn]: p.record.url for p in named},
                                 job.pkgs_dirs)
        (cache / "urls.txt").write_text("".join(f"{p.record.url}\n" for p in named),
                                        encoding="utf-8")
        # conda's explicit parser takes one hash a line; md5 is what conda's cache records
        # carry for a bare tarball (a sha256-only line would not match them).
        lines = ["@EXPLICIT"] + [f"{p.record.url}#{p.record.md5}" if p.record.md5
                                 else f"{p.record.url}#sha256:{p.record.sha256}"
                                 for p in job.packages]
        explicit = job.staging / "explicit.txt"
        explicit.write_text("\n".join(lines) + "\n", encoding="utf-8")
        remote = any(p.kind == "channel" and not p.record.url.startswith("file:")
                     for p in job.packages)
        # into a seeded env: `install` adds the listed packages and touches no other
        verb = "install" if job.kept else "create"
        args = [verb, "-p", str(job.build_prefix), "--file", str(explicit), "--yes", "--quiet"]
        if job.offline or not remote:
            args.append("--offline")
        env = {**self._env(job, cache), **checked_linking(os.environ)}
        if job.kept:  # our own plugin in that conda: this is the restore, not a user's change
            env[ENV_BUILDING] = str(job.build_prefix)
        self._run(args, env, "install the explicit package list",
                  during=job.sources.hashing(folders))

    def install_solved(self, job: InstallJob, yml: Path, specs: list[str],
                       channels: list[str]) -> None:
        verb = ["env", "create"] if self.name == "conda" else ["create"]
        args = [*verb, "-p", str(job.build_prefix), "-f", str(yml), "--yes", "--quiet"]
        if job.offline:
            args.append("--offline")
        env = {**self._env(job, None), **checked_linking(os.environ)}
        self._run(args, env, f"create the env from {yml.name}")


def checked_linking(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """conda's own checks for the env we build, unless the user chose otherwise in the
    environment: `safety_checks: enabled` makes conda check every package file before linking
    and stop on a problem (its default `warn` goes on), and with it conda writes each file's
    sha256 into the record's paths_data (with `disabled` the list is empty, leaving nothing
    for `verify` or `conda doctor` to check). `extra_safety_checks` is left as the user has it
    (conda's default: off): it would hash every file before linking, and restore hashes every
    linked file against those records afterwards anyway (verify.py), removing a new env whose
    files differ. The records are the same either way (tests/conda/test_restore_records.py)."""
    wanted = {"CONDA_SAFETY_CHECKS": "enabled"}
    return {k: v for k, v in wanted.items() if k not in environ}


# ---------------------------------------------------------------------------------------------
# py-rattler (in process)


class Rattler(Installer):
    name = "py-rattler"
    in_place = False

    def describe(self) -> str:
        return ("py-rattler (in process; builds in a temporary folder with the final prefix "
                "written into files, moved into place when complete; runs no link scripts)")

    def _install(self, job: InstallJob, records: list[Any], cache: Path) -> None:
        import rattler

        alternative = str(job.final_prefix) if job.build_prefix != job.final_prefix else None
        _run_async(lambda: rattler.install(
            records, target_prefix=str(job.build_prefix), cache_dir=cache,
            ignored_packages=set(job.kept) or None,
            show_progress=False, execute_link_scripts=False,
            platform=_subdir(job.platform), alternative_target_prefix=alternative))
        _tidy_rattler_prefix(job.build_prefix)

    def install_explicit(self, job: InstallJob) -> None:
        import rattler

        if not job.packages:
            return  # everything was kept from the env being replaced
        cache = job.staging / "pkgs"
        cache.mkdir(parents=True, exist_ok=True)
        unpacked = unpack_all(job.packages, cache, job.staging)
        records = []
        for p in job.packages:
            r = p.record
            package = rattler.PackageRecord.from_index_json(
                unpacked[r.fn] / "info" / "index.json", size=r.size, sha256=r.sha256 or None,
                md5=r.md5 or None)
            channel = r.url.rsplit("/", 2)[0] + "/" if r.url.count("/") > 2 else r.channel
            records.append(rattler.RepoDataRecord(package, r.fn, r.url, channel))
        self._install(job, records, cache)

    def install_solved(self, job: InstallJob, yml: Path, specs: list[str],
                       channels: list[str]) -> None:
        import rattler

        if job.offline and any(not c.startswith("file:") for c in channels):
            raise InstallerError(self.name, "solve offline",
                                 f"the channels {', '.join(channels)} need the network")
        records = _run_async(lambda: rattler.solve(
            sources=[rattler.Channel(c) for c in channels], specs=specs,
            platforms=[_subdir(job.platform), _subdir("noarch")],
            virtual_packages=rattler.VirtualPackage.detect()))
        cache = job.staging / "pkgs"
        cache.mkdir(parents=True, exist_ok=True)
        self._install(job, list(records), cache)


def _run_async(make: Callable[[], Awaitable[Any]]) -> Any:
    """`make()` run to its end on an event loop in a worker thread while this one waits. A
    SIGHUP or SIGTERM (transaction.signals_roll_back) raises here at once; raised inside
    asyncio.run's loop it could hang the process for good, holding the target's lock (the
    loop's clean-up waited on a rattler future nothing woke). Interrupted, the work is
    cancelled (it only writes into the staging folder) and given up to 30 s to stop before the
    rollback removes that folder."""
    import asyncio

    result: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def call() -> Any:
        return await make()

    task = loop.create_task(call())

    def work() -> None:
        try:
            result["value"] = loop.run_until_complete(task)
        except BaseException as e:  # handed to the waiting thread
            result["error"] = e
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    worker = threading.Thread(target=work, daemon=True, name="conda-safeguard-rattler")
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.5)
    except BaseException:
        with contextlib.suppress(RuntimeError):  # the loop closed: the work has ended
            loop.call_soon_threadsafe(task.cancel)
        worker.join(30)
        raise
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _subdir(name: str) -> Any:
    import rattler

    kind = getattr(rattler, "Subdir", None) or rattler.Platform  # Platform before 0.28
    return kind(name)


# ---------------------------------------------------------------------------------------------
# unpacking into a staging package cache

Unpacker = Callable[[Path, Path], "str | None"]  # (tarball, folder) -> its sha256, if computed
WORKERS = min(4, (os.cpu_count() or 2) * 2)


def find_unpacker() -> Unpacker | None:
    """py-rattler's extract (fast, hashes on the way), else conda-package-handling's."""
    if importlib.util.find_spec("rattler") is not None:
        from rattler.package_streaming import extract

        return lambda tarball, dest: extract(tarball, dest)[0].hex()
    if importlib.util.find_spec("conda_package_handling") is not None:
        from conda_package_handling import api  # type: ignore[import-untyped, unused-ignore]

        def cph_extract(tarball: Path, dest: Path) -> str | None:
            api.extract(str(tarball), str(dest))
            return None  # its bytes were checked against the sha256 when it was located

        return cph_extract
    return None


def unpack_all(packages: list[PackageFile], cache: Path, staging: Path) -> dict[str, Path]:
    """Each package's files in `cache/<name-version-build>`, in parallel (I/O bound): linked
    from a conda cache folder, or unpacked from its tarball (sha256 checked on the way), with
    the info/repodata_record.json conda writes. Returns fn -> folder."""
    unpacker = find_unpacker()
    if unpacker is None:
        raise InstallerError("conda-safeguard", "unpack packages",
                             "neither py-rattler nor conda-package-handling is installed")

    def one(p: PackageFile) -> tuple[str, Path]:
        r = p.record
        dest = cache / dist_name(r.fn)
        if p.kind == "extracted" and p.path is not None:
            shutil.copytree(p.path, dest, copy_function=_link_or_copy2, symlinks=True)
            return r.fn, dest
        tarball = p.path if p.kind in ("pin", "cache") else _fetch(r, staging / "downloads")
        assert tarball is not None
        if tarball.name != r.fn:  # a pin, named by its sha256
            tarball = named_link(tarball, staging / "named", r.fn)
        sha256 = unpacker(tarball, dest)
        if r.sha256 and sha256 is not None and sha256 != r.sha256:
            raise InstallerError("conda-safeguard", f"use {tarball}",
                                 f"its sha256 is not that of {r.dist_str}")
        _write_repodata_record(dest, r)
        return r.fn, dest

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(pool.map(one, packages))


def hand_over(unpacked: dict[Path, str], pkgs_dirs: list[Path]) -> list[Path]:
    """Move unpacked package folders into conda's first package cache, where conda would
    have unpacked them itself: nothing is left to delete afterwards (15k files take about a
    second), and the next restore or conda command finds them there. One rename each; a
    folder conda already has under that name is never touched, and when the cache is not
    writable or on another filesystem they stay in the staging cache. `unpacked` maps each
    folder to the URL its package came from; urls.txt gets those lines, as conda appends
    them on a download (conda < 24 ignores a cache without that file). Returns where each
    folder is now."""
    if not pkgs_dirs:
        return list(unpacked)
    conda_cache = pkgs_dirs[0]
    try:
        conda_cache.mkdir(parents=True, exist_ok=True)  # what conda does on its first fetch
    except OSError:
        return list(unpacked)
    if not os.access(conda_cache, os.W_OK | os.X_OK):
        return list(unpacked)
    moved, now = [], []
    for folder, url in unpacked.items():
        dest = conda_cache / folder.name
        # one step, and only onto nothing (an empty folder conda just made to unpack into
        # is left to conda); on another filesystem it fails and ours stays in staging
        if not os.path.lexists(dest) and rename_noreplace(folder, dest):
            moved.append(url)
            now.append(dest)
        else:
            now.append(folder)
    if moved:
        with open(conda_cache / "urls.txt", "a", encoding="utf-8") as urls:  # O_APPEND
            urls.write("".join(f"{u}\n" for u in moved))
    return now


def _write_repodata_record(folder: Path, r: CondaRecord) -> None:
    """info/repodata_record.json as conda writes it after unpacking: index.json plus where the
    package came from and its hashes."""
    data = json.loads((folder / "info" / "index.json").read_bytes())
    data.update(channel=r.url.rsplit("/", 1)[0], fn=r.fn, md5=r.md5, url=r.url,
                sha256=r.sha256, size=r.size)
    data = {k: v for k, v in data.items() if v not in (None, "")}
    (folder / "info" / "repodata_record.json").write_text(json.dumps(data, indent=2),
                                                          encoding="utf-8")


def _link_or_copy2(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fetch(record: CondaRecord, directory: Path) -> Path:
    import urllib.request

    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / record.fn
    try:
        with urllib.request.urlopen(record.url, timeout=60) as response, open(dest, "wb") as f:
            shutil.copyfileobj(response, f)
    except OSError as e:
        raise InstallerError("py-rattler", f"download {record.url}", str(e)) from None
    if record.md5 and hash_file(dest, "md5") != record.md5:
        raise InstallerError("py-rattler", f"download {record.url}", "its md5 does not match")
    return dest


def _tidy_rattler_prefix(prefix: Path) -> None:
    """What rattler writes and conda does not: CACHEDIR.TAG, 0600 records."""
    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)
    meta = prefix / "conda-meta"
    if meta.is_dir():
        for p in meta.glob("*.json"):
            p.chmod(0o644)


# ---------------------------------------------------------------------------------------------
# choosing


def _which_env(var: str, environ: dict[str, str], stem: str) -> str | None:
    value = environ.get(var)
    if value and os.path.basename(value).startswith(stem) and os.access(value, os.X_OK):
        return value
    return None


def _beside_python(name: str) -> str | None:
    """The standalone command installed in conda's base finds that conda even off PATH (cron,
    `env -i`): it sits next to the python running us."""
    exe = os.path.join(os.path.dirname(sys.executable), name)
    return exe if os.path.isfile(exe) and os.access(exe, os.X_OK) else None


def find_installer(kind: str, environ: dict[str, str] | None = None) -> Installer | None:
    environ = dict(os.environ) if environ is None else environ
    path = environ.get("PATH")
    if kind == "conda":
        if "conda.base.context" in sys.modules:  # we run inside conda: use the same conda
            return CondaCLI([sys.executable, "-m", "conda"], "conda")
        exe = _which_env("CONDA_EXE", environ, "conda") or shutil.which("conda", path=path) \
            or _beside_python("conda")
        return CondaCLI([exe], "conda") if exe else None
    if kind in ("mamba", "micromamba"):
        exe = _which_env("MAMBA_EXE", environ, kind) or shutil.which(kind, path=path)
        return CondaCLI([exe], kind) if exe else None
    if kind == "rattler":
        return Rattler() if importlib.util.find_spec("rattler") is not None else None
    raise SafeguardError(f"Unknown installer {kind!r}: {ENV_INSTALLER} takes one of "
                         f"{', '.join(INSTALLER_CHOICES)}.")


def choose_installer(preference: str | None = None,
                     environ: dict[str, str] | None = None) -> Installer | None:
    """The installer to use: `preference` or CONDA_SAFEGUARD_INSTALLER, else the first of conda,
    mamba, micromamba, py-rattler that is there. None when there is none."""
    environ = dict(os.environ) if environ is None else environ
    wanted = (preference or environ.get(ENV_INSTALLER) or "auto").strip().lower()
    if wanted != "auto":
        found = find_installer(wanted, environ)
        if found is None:
            raise SafeguardError(f"{ENV_INSTALLER}={wanted}, but no {wanted} was found. "
                                 f"Install it, or unset {ENV_INSTALLER} to use what is there.")
        return found
    for kind in INSTALLER_CHOICES[1:]:
        found = find_installer(kind, environ)
        if found is not None:
            return found
    return None


def fix_records(prefix: Path, expected: dict[str, CondaRecord]) -> int:
    """Give the new env's records back what an explicit install loses: the package `sha256`
    (conda's cache records of a bare tarball have only md5; the tarball's sha256 was checked
    before install) and `requested_spec(s)`. Returns the number of records rewritten."""
    changed = 0
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        data = json.loads(path.read_bytes())
        want = expected.get(data.get("name", "")) if isinstance(data, dict) else None
        if want is None or data.get("md5") not in (None, "", want.md5) or \
                (data.get("version"), data.get("build")) != (want.version, want.build):
            continue
        before = dict(data)
        if want.sha256 and not data.get("sha256"):
            data = _insert_after(data, "url", "sha256", want.sha256)
        if want.requested_spec:
            if "requested_spec" in data:
                data["requested_spec"] = want.requested_spec
            if "requested_specs" in data:
                data["requested_specs"] = [want.requested_spec]
        if data != before:
            mode = path.stat().st_mode & 0o777
            tmp = path.with_name(f".tmp-{path.name}")
            tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
            tmp.chmod(mode)
            os.replace(tmp, path)
            changed += 1
    return changed


def _insert_after(data: dict[str, object], anchor: str, key: str,
                  value: object) -> dict[str, object]:
    if anchor not in data:
        return {**data, key: value}
    out: dict[str, object] = {}
    for k, v in data.items():
        out[k] = v
        if k == anchor:
            out[key] = value
    return out
