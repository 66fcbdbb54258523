"""`pack`: a portable archive of an env — conda-pack's archive plus a sha256 manifest.

conda-pack does the hard part (which files, shebangs, prefix records for relocation); this
module hashes every member of what conda-pack wrote, records the env's snapshot, optionally
signs the manifest, and wraps the three in one tar (layout in packformat.py). The output file
appears only when complete: it is written to a temp file beside it and renamed.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from . import __version__
from .exceptions import SafeguardError
from .fs import fsync_dir
from .packformat import (
    CHUNK,
    COMPRESSIONS,
    MANIFEST_NAME,
    PACK_FORMAT,
    PACK_VERSION,
    SIGNATURE_NAME,
    hash_and_compress_tar,
)
from .prefix import require_env
from .snapshot import EnvState, capture


class PackError(SafeguardError):
    """An env cannot be packed as asked."""


@dataclass
class PackResult:
    output: Path
    files: int  # payload members hashed into the manifest
    bytes: int  # their uncompressed size
    archive_bytes: int
    conda: int
    pip: int
    fingerprint: str
    signed: bool


def default_compression() -> str:
    """zstd when the zstandard module is there (faster, smaller), else gzip."""
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return "gz"
    return "zst"


def snapshot_document(state: EnvState) -> dict[str, Any]:
    """The env's content as the manifest carries it (unpack compares the result with it)."""
    return {
        "fingerprint": state.fingerprint,
        "platform": state.platform,
        "packages": [r.to_dict() for r in state.packages],
        "pip": [d.to_dict() for d in state.pip],
        "variables": [[k, v] for k, v in state.variables.items()],
        "requested": state.requested,
        "frozen": state.frozen,
    }


def pack(prefix: Path, output: Path, *, env_name: str, compression: str | None = None,
         level: int = 4, threads: int = 1, force: bool = False,
         sign_key: Path | None = None) -> PackResult:
    prefix = require_env(Path(os.path.abspath(prefix)))
    output = Path(os.path.abspath(output))
    compression = compression or default_compression()
    if compression not in COMPRESSIONS:
        raise PackError(f"Unknown compression {compression!r}; use one of "
                        f"{', '.join(COMPRESSIONS)}.")
    if output.exists() and not force:
        raise PackError(f"Refusing to overwrite {output}: it exists. Pass --force, or choose "
                        "another file.")
    if not output.parent.is_dir():
        raise PackError(f"Cannot write {output}: folder {output.parent} does not exist.")
    state = capture(prefix)
    editable = sorted(d.name for d in state.pip if d.editable)
    if editable:
        raise PackError(
            f"Cannot pack {env_name}: editable pip packages ({', '.join(editable)}) live in "
            "source folders outside the env, and conda-pack cannot carry them. Reinstall them "
            "non-editable (`pip install --no-editable PATH`) or uninstall them, then pack again.")
    payload_name, _ = COMPRESSIONS[compression]
    stamp = f"{os.getpid()}.{time.monotonic_ns()}"
    plain_tar = output.parent / f".{output.name}.tar-{stamp}"
    inner = output.parent / f".{output.name}.payload-{stamp}"
    outer = output.parent / f".{output.name}.tmp-{stamp}"
    try:
        # conda-pack chooses the files, rewrites what must be rewritten and writes the tar;
        # compressing it here hashes every member in the same pass (one read, no decompress).
        _conda_pack(prefix, plain_tar, "tar", level, threads)
        files, total, payload = _compress_and_hash(plain_tar, inner, compression, level,
                                                   threads)
        plain_tar.unlink()
        manifest = {
            "format": PACK_FORMAT, "version": PACK_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "made_by": f"conda-safeguard {__version__}",
            "source": {"env_name": env_name, "prefix": str(prefix)},
            "payload": {"name": payload_name, "compression": compression, **payload},
            "files": files,
            "snapshot": snapshot_document(state),
        }
        manifest_bytes = json.dumps(manifest, separators=(",", ":"), sort_keys=True).encode()
        signature = None
        if sign_key is not None:
            from .signing import sign

            signature = sign(manifest_bytes, sign_key)
        _write_outer(outer, manifest_bytes, signature, inner, payload_name)
        os.replace(outer, output)
        fsync_dir(output.parent)
    finally:
        for leftover in (plain_tar, inner, outer):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return PackResult(output=output, files=len(files), bytes=total,
                      archive_bytes=output.stat().st_size, conda=len(state.packages),
                      pip=len(state.pip), fingerprint=state.fingerprint,
                      signed=signature is not None)


def _conda_pack(prefix: Path, inner: Path, fmt: str, level: int, threads: int) -> None:
    from conda_pack import CondaEnv, CondaPackException

    try:
        # conda-pack's own error for editable packages stays on as a second line of defence.
        env = CondaEnv.from_prefix(str(prefix))
        env.pack(output=str(inner), format=fmt, compress_level=level, n_threads=threads,
                 force=True)
    except CondaPackException as e:
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), str(e))
        raise PackError(f"conda-pack cannot pack {prefix}: {first}. Nothing was written.") \
            from None


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        self.raw.write(data)
        n = len(data)
        self.size += n
        return n


def _compress_and_hash(plain_tar: Path, inner: Path, compression: str, level: int,
                       threads: int) -> tuple[dict[str, dict[str, Any]], int, dict[str, Any]]:
    """Compress conda-pack's tar into `inner`; sha256 of every member and of the result."""
    fd = os.open(inner, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(plain_tar, "rb", buffering=CHUNK) as src, os.fdopen(fd, "wb") as raw:
        hashed = _HashingWriter(raw)
        compressor: Any
        if compression == "zst":
            import zstandard

            # with a content checksum: zstd can then name corruption itself
            compressor = zstandard.ZstdCompressor(
                level=level, threads=threads, write_checksum=True).stream_writer(
                cast(IO[bytes], hashed), closefd=False)
        else:
            compressor = gzip.GzipFile(fileobj=hashed, mode="wb", compresslevel=level, mtime=0)
        with compressor:
            files, total = hash_and_compress_tar(src, compressor)
        raw.flush()
    return files, total, {"sha256": hashed.sha256.hexdigest(), "size": hashed.size}


def _write_outer(outer: Path, manifest: bytes, signature: bytes | None, inner: Path,
                 payload_name: str) -> None:
    now = int(time.time())
    fd = os.open(outer, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w",
                                                format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((MANIFEST_NAME, manifest), (SIGNATURE_NAME, signature)):
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
        info = tar.gettarinfo(str(inner), arcname=payload_name)
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o644, 0, 0, "", ""
        with open(inner, "rb") as payload:
            tar.addfile(info, payload)
        tar.close()
        f.flush()
        os.fsync(f.fileno())
