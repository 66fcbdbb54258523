"""`unpack`: verify a pack completely, then place the env at its new prefix.

Order, so that a damaged, tampered or foreign archive never leaves anything behind:
1. read the manifest (refuse a tar that is not ours, or a newer pack format);
2. check the signature against the allowed signers, when asked;
3. hash the payload against the manifest — nothing has been written yet;
4. extract into a hidden staging folder beside the target, checking each member's type and
   sha256 and that the member set equals the manifest's;
5. rewrite the old prefix in the files conda-pack listed (conda-pack's own update_prefix, not
   the archive's conda-unpack script: no code from the archive runs);
6. rename the staging folder to the target. Any failure removes the staging folder.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import shutil
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .exceptions import SafeguardError
from .fs import fsync_dir
from .packformat import (
    CHUNK,
    COMPRESSIONS,
    MANIFEST_NAME,
    PACK_FORMAT,
    PACK_VERSION,
    SIGNATURE_NAME,
    member_entry,
    open_payload_stream,
)

#: conda-pack's relocation script: it holds the list of files to rewrite (read as data here).
UNPACK_SCRIPT = "bin/conda-unpack"
_CONDA_PACK_EXTRAS = ("bin/conda-unpack", "bin/conda_unpack_progress.py")


class PackRefused(SafeguardError):
    """The archive is not ours, is damaged, or does not match its manifest. Nothing written."""


@dataclass
class PackInfo:
    path: Path
    manifest: dict[str, Any]
    manifest_bytes: bytes
    signature: bytes | None
    payload: tarfile.TarInfo

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        return dict(self.manifest["files"])


@dataclass
class UnpackResult:
    prefix: Path
    files_verified: int
    bytes_verified: int
    relocated: int
    signer: str | None
    signed: bool
    packages_identical: bool
    conda: int
    pip: int
    differences: list[str] = field(default_factory=list)


def read_pack(path: Path) -> PackInfo:
    """The manifest (and signature) of the pack at `path`; refuses anything else."""
    def refuse(why: str) -> PackRefused:
        return PackRefused(f"Refusing {path}: {why}. Nothing was written.")

    try:
        tar = tarfile.open(path, mode="r:")  # noqa: SIM115 - closed by the `with` below
    except FileNotFoundError:
        raise SafeguardError(f"No such archive: {path}.") from None
    except (tarfile.TarError, OSError) as e:
        raise refuse(f"it is not a conda-safeguard pack (not a tar archive: {e})") from None
    with tar:
        try:
            members = {m.name: m for m in tar.getmembers()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise refuse(f"it is truncated or damaged ({e})") from None
        if MANIFEST_NAME not in members:
            raise refuse(f"it is not a conda-safeguard pack (no {MANIFEST_NAME}). A plain "
                         "conda-pack archive is unpacked with `tar -xf` and bin/conda-unpack")
        manifest_bytes = _read_member(tar, members[MANIFEST_NAME])
        signature = _read_member(tar, members[SIGNATURE_NAME]) \
            if SIGNATURE_NAME in members else None
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError:
        raise refuse(f"its {MANIFEST_NAME} is not valid JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != PACK_FORMAT:
        raise refuse(f"its {MANIFEST_NAME} is not a conda-safeguard pack manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > PACK_VERSION:
        raise refuse(f"it was made by a newer conda-safeguard (pack format {version!r}; this "
                     f"one reads up to {PACK_VERSION}). Upgrade conda-safeguard")
    payload = manifest.get("payload")
    if (not isinstance(payload, dict) or payload.get("compression") not in COMPRESSIONS
            or payload.get("name") not in members or not isinstance(manifest.get("files"), dict)):
        raise refuse(f"its {MANIFEST_NAME} lacks the payload or the file list")
    extra = set(members) - {MANIFEST_NAME, SIGNATURE_NAME, payload["name"]}
    if extra:
        raise refuse(f"it holds files its manifest does not name ({', '.join(sorted(extra))})")
    return PackInfo(path=path, manifest=manifest, manifest_bytes=manifest_bytes,
                    signature=signature, payload=members[payload["name"]])


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(member)
    if f is None or member.size > 256 << 20:
        raise PackRefused(f"Refusing {tar.name!s}: member {member.name} is not a regular file of "
                          "sane size. Nothing was written.")
    return f.read()


def check_signature(info: PackInfo, allowed_signers: Path | None, *, require: bool) -> str | None:
    """The trusted signer's principal, None when no check was asked for."""
    if allowed_signers is None and not require:
        return None
    if info.signature is None:
        raise PackRefused(f"Refusing {info.path}: it is not signed, and a signature from "
                          f"{allowed_signers or 'an allowed signer'} is required. Nothing was "
                          "written. Ask for a signed pack (`pack --sign-key`).")
    if allowed_signers is None:
        raise SafeguardError("--require-signature needs --allowed-signers FILE to check it "
                             "against.")
    from .signing import verify

    return verify(info.manifest_bytes, info.signature, allowed_signers)


def _open_payload(info: PackInfo) -> tuple[tarfile.TarFile, IO[bytes]]:
    outer = tarfile.open(info.path, mode="r:")  # noqa: SIM115 - the caller closes it
    raw = outer.extractfile(info.payload)
    assert raw is not None
    return outer, raw


def verify_payload(info: PackInfo) -> None:
    """Hash the compressed payload against the manifest, writing nothing."""
    import hashlib

    expected = info.manifest["payload"]
    outer, raw = _open_payload(info)
    h = hashlib.sha256()
    with outer:
        while chunk := raw.read(CHUNK):
            h.update(chunk)
    if h.hexdigest() != expected.get("sha256"):
        raise PackRefused(f"Refusing {info.path}: {_first_bad_member(info)}. The archive was "
                          "damaged or changed after it was packed. Nothing was written.")


def _first_bad_member(info: PackInfo) -> str:
    """Name what differs, for the error message (a second, read-only pass)."""
    expected = info.files
    outer, raw = _open_payload(info)
    try:
        with outer, open_payload_stream(raw, info.manifest["payload"]["compression"]) \
                as (tar, _):
            for member in tar:
                entry = member_entry(tar, member)
                if expected.get(member.name) != entry:
                    return (f"file {member.name} does not match its sha256 in the manifest"
                            if member.name in expected else
                            f"file {member.name} is not in the manifest")
    except Exception as e:  # any decoding failure is the answer itself
        return f"its env payload cannot be read ({type(e).__name__}: {e})"
    return f"its payload {info.payload.name} does not match its sha256 in the manifest"


def unpack(archive: Path, dest: Path, *, allowed_signers: Path | None = None,
           require_signature: bool = False) -> UnpackResult:
    archive = Path(os.path.abspath(archive))
    dest = Path(os.path.abspath(dest))
    info = read_pack(archive)
    if os.path.lexists(dest):
        raise SafeguardError(f"Refusing to unpack into {dest}: it exists. Nothing was written. "
                             "Give a new path with -p (unpack never replaces an env).")
    signer = check_signature(info, allowed_signers, require=require_signature)
    verify_payload(info)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_staging(dest)
    staging = dest.parent / f".{dest.name}.unpacking-{os.getpid()}"
    staging.mkdir(mode=0o700)
    try:
        count, size = _extract_verified(info, staging)
        relocated = _relocate(info, staging, dest)
        for extra in _CONDA_PACK_EXTRAS:  # its job is done; running it again would do nothing
            with contextlib.suppress(FileNotFoundError):
                (staging / extra).unlink()
        staging.chmod(0o755)
        os.rename(staging, dest)
        fsync_dir(dest.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    identical, differences, conda, pip = _compare_snapshot(info, dest)
    return UnpackResult(prefix=dest, files_verified=count, bytes_verified=size,
                        relocated=relocated, signer=signer, signed=info.signature is not None,
                        packages_identical=identical, conda=conda, pip=pip,
                        differences=differences)


def _remove_dead_staging(dest: Path) -> None:
    """A killed unpack leaves its hidden staging folder (never a half env at `dest`): remove
    those whose process is gone. They only ever held a copy of an archive's content."""
    from .retire import owner_alive

    for leftover in dest.parent.glob(f".{dest.name}.unpacking-*"):
        if leftover.is_dir() and not owner_alive(leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)


def _extract_verified(info: PackInfo, staging: Path) -> tuple[int, int]:
    expected = info.files
    seen: set[str] = set()
    size = 0

    def refuse(name: str, why: str) -> PackRefused:
        return PackRefused(f"Refusing {info.path}: file {name} {why}. Nothing was written.")

    outer, raw = _open_payload(info)
    with outer, open_payload_stream(raw, info.manifest["payload"]["compression"]) as (tar, _):
        for member in tar:
            name = member.name
            want = expected.get(name)
            if want is None:
                raise refuse(name, "is not in the manifest")
            if name in seen:
                raise refuse(name, "appears twice")
            target = _safe_target(staging, name, refuse)
            if member.isfile():
                with open(target, "xb") as out:
                    got = member_entry(tar, member, out)
                os.chmod(target, got["mode"] & 0o777)
            elif member.isdir():
                target.mkdir(exist_ok=True)
                got = member_entry(tar, member)
            elif member.issym():
                try:
                    tarfile.data_filter(member, str(staging))
                except tarfile.FilterError as e:
                    raise refuse(name, f"is a link that leaves the env ({e})") from None
                os.symlink(member.linkname, target)
                got = member_entry(tar, member)
            elif member.islnk():
                source = _safe_target(staging, member.linkname, refuse)
                if member.linkname not in seen or not source.is_file():
                    raise refuse(name, "is a hard link to a file not extracted before it")
                os.link(source, target)
                got = member_entry(tar, member)
            else:
                raise refuse(name, "is a device, fifo or other special file")
            if got != want:
                raise refuse(name, "does not match its sha256 in the manifest")
            seen.add(name)
            size += got.get("size", 0)
    missing = sorted(set(expected) - seen)
    if missing:
        raise refuse(missing[0], f"is in the manifest but not in the archive ({len(missing)} "
                     "missing)")
    return len(seen), size


def _safe_target(staging: Path, name: str, refuse: Any) -> Path:
    parts = Path(name).parts
    if not name or os.path.isabs(name) or ".." in parts:
        raise refuse(name, "has a path outside the env")
    target = staging.joinpath(*parts)
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    # a symlinked folder extracted earlier must not redirect later files outside staging
    root = os.path.realpath(staging)
    if os.path.commonpath([root, os.path.realpath(existing)]) != root:
        raise refuse(name, "would be written through a link outside the env")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def prefix_records(script: Path) -> list[tuple[str, str, str]]:
    """(path, placeholder, mode) rows from conda-pack's conda-unpack, read as a literal."""
    text = script.read_text(encoding="utf-8")
    start = text.find("_prefix_records = [")
    end = text.find("\n]\n", start)
    if start < 0 or end < 0:
        raise PackRefused(f"Cannot relocate: {UNPACK_SCRIPT} in the archive has no prefix "
                          "list (not written by conda-pack?). Nothing was written.")
    rows = ast.literal_eval(text[start + len("_prefix_records = "):end + 2])
    if not all(isinstance(r, tuple) and len(r) == 3 and all(isinstance(x, str) for x in r)
               for r in rows):
        raise PackRefused(f"Cannot relocate: the prefix list in {UNPACK_SCRIPT} is malformed. "
                          "Nothing was written.")
    return list(rows)


def _relocate(info: PackInfo, staging: Path, dest: Path) -> int:
    from conda_pack.prefixes import update_prefix

    script = staging / UNPACK_SCRIPT
    if not script.is_file():
        return 0  # packed with a fixed destination prefix: nothing to rewrite
    files = info.files
    count = 0
    for path, placeholder, mode in prefix_records(script):
        entry = files.get(path)
        target = staging / path
        if entry is None or entry.get("type") != "file" or \
                not stat.S_ISREG(os.lstat(target).st_mode):
            raise PackRefused(f"Cannot relocate {path}: it is not a file of the archive. "
                              "Nothing was written.")
        if mode not in ("text", "binary"):
            raise PackRefused(f"Cannot relocate {path}: unknown mode {mode!r}. Nothing was "
                              "written.")
        update_prefix(str(target), str(dest), placeholder, mode=mode)
        count += 1
    return count


def _compare_snapshot(info: PackInfo, dest: Path) -> tuple[bool, list[str], int, int]:
    from .snapshot import capture

    doc = info.manifest.get("snapshot") or {}
    state = capture(dest)
    packed = {(p["name"], p["version"], p["build"]) for p in doc.get("packages", [])}
    now = {(r.name, r.version, r.build) for r in state.packages}
    packed_pip = {(d["name"], d["version"]) for d in doc.get("pip", [])}
    now_pip = {(d.name, d.version) for d in state.pip}
    differences = [f"missing {n}={v}={b}" for n, v, b in sorted(packed - now)]
    differences += [f"extra {n}={v}={b}" for n, v, b in sorted(now - packed)]
    differences += [f"missing pip {n}=={v}" for n, v in sorted(packed_pip - now_pip)]
    differences += [f"extra pip {n}=={v}" for n, v in sorted(now_pip - packed_pip)]
    identical = not differences and state.fingerprint == doc.get("fingerprint")
    if not differences and not identical:
        differences.append("same names and versions, but channels, hashes or env vars differ")
    return identical, differences, len(state.packages), len(state.pip)
