"""The layout of a conda-safeguard pack, shared by pack.py (writer) and unpack.py (reader).

A pack is a plain (uncompressed) tar holding, in this order:

    conda-safeguard-pack.json       the manifest: sha256 of the payload and of every file in it,
                                    and the snapshot of the env it was made from
    conda-safeguard-pack.json.sig   optional: `ssh-keygen -Y sign` signature of the manifest
    env.tar.gz | env.tar.zst        conda-pack's archive of the env, untouched

The payload is conda-pack's own format, so `tar -xf` of it plus `bin/conda-unpack` still works
for anyone without conda-safeguard; the manifest is what lets `unpack` refuse a damaged or
tampered archive before anything is written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, Final

MANIFEST_NAME: Final = "conda-safeguard-pack.json"
SIGNATURE_NAME: Final = "conda-safeguard-pack.json.sig"
PACK_FORMAT: Final = "conda-safeguard-pack"
PACK_VERSION: Final = 1
#: ssh-keygen -Y namespace: a signature made for something else cannot pass as ours.
SIGN_NAMESPACE: Final = "conda-safeguard-pack"
#: compression -> (payload member name, conda-pack format)
COMPRESSIONS: Final = {"gz": ("env.tar.gz", "tar.gz"), "zst": ("env.tar.zst", "tar.zst")}
CHUNK: Final = 1 << 20


class _HashingReader(io.RawIOBase):
    """Reads through to `raw` and hashes every byte read (the compressed payload)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha256, self.size = raw, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.size += n
        return n


@contextmanager
def open_payload_stream(raw: IO[bytes], compression: str
                        ) -> Iterator[tuple[tarfile.TarFile, _HashingReader]]:
    """The payload as a tar read front to back, hashing the compressed bytes read."""
    reader = _HashingReader(raw)
    buffered = io.BufferedReader(reader, CHUNK)
    stream: Any
    if compression == "zst":
        import zstandard  # conda-pack needs it to write .tar.zst too

        stream = zstandard.ZstdDecompressor().stream_reader(buffered)
    else:
        stream = gzip.GzipFile(fileobj=buffered, mode="rb")
    # "r:" over a forward-only stream: members are read in order (tarfile's "r|" mode reads
    # in 10 KB steps and is slower by half on envs of many small files)
    tar = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115 - closed below
    try:
        yield tar, reader
    finally:
        tar.close()
        stream.close()


def member_entry(tar: tarfile.TarFile, member: tarfile.TarInfo,
                 sink: IO[bytes] | None = None) -> dict[str, Any]:
    """What the manifest records for one payload member; file content goes to `sink` if given."""
    if member.isfile():
        h = hashlib.sha256()
        f = tar.extractfile(member)
        assert f is not None
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if sink is not None:
                sink.write(chunk)
        return {"type": "file", "sha256": h.hexdigest(), "size": member.size,
                "mode": member.mode & 0o7777}
    if member.isdir():
        return {"type": "dir"}
    if member.issym():
        return {"type": "symlink", "target": member.linkname}
    if member.islnk():
        return {"type": "hardlink", "target": member.linkname}
    return {"type": "other"}


# ---------------------------------------------------------------------------------------------
# pack's single pass: compress the tar conda-pack wrote and hash each member on the way.
# Python's tarfile spends ~75 µs per member; envs have 10^4-10^5 files. Only pack reads tar
# headers this way (its own, just-written file); unpack reads with tarfile, so a walker that
# got anything wrong makes unpack refuse the archive, never accept a wrong file.

_BLOCK = 512
_REG_TYPES = (b"0", b"\0", b"7")


def _octal(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for big numbers
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _cstr(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    out = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        key, _, value = data[space + 1:pos + length - 1].partition(b"=")
        out[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def hash_and_compress_tar(src: IO[bytes], dst: IO[bytes]) -> tuple[dict[str, dict[str, Any]],
                                                                    int]:
    """Copy `src` (an uncompressed tar) to `dst` (a compressing writer), returning what the
    manifest records for each member (as member_entry() would) and their total size."""
    files: dict[str, dict[str, Any]] = {}
    total = 0
    pax: dict[str, str] = {}
    long_name = long_link = None

    out = bytearray()  # the compressor is called per MB, not per 512-byte header

    def take(n: int) -> bytes:
        data = src.read(n)
        if len(data) != n:
            raise ValueError("truncated tar written by conda-pack")
        out.extend(data)
        if len(out) >= CHUNK:
            dst.write(out)
            out.clear()
        return data

    while True:
        header = src.read(_BLOCK)
        out.extend(header)
        if len(header) < _BLOCK or header == b"\0" * _BLOCK:
            break  # end of archive; the rest is copied below
        size = _octal(header[124:136])
        kind = header[156:157]
        padded = -size % _BLOCK
        if kind in (b"x", b"g", b"L", b"K"):  # metadata for the next member
            data = take(size)[:size]
            take(padded)
            if kind == b"x":
                pax = _pax_records(data)
            elif kind == b"L":
                long_name = _cstr(data)
            elif kind == b"K":
                long_link = _cstr(data)
            continue
        name = _cstr(header[0:100])
        prefix = _cstr(header[345:500]) if header[257:262] == b"ustar" else ""
        if prefix:
            name = f"{prefix}/{name}"
        name = pax.get("path", long_name or name)
        link = pax.get("linkpath", long_link or _cstr(header[157:257]))
        size = int(pax["size"]) if "size" in pax else size
        padded = -size % _BLOCK
        mode = _octal(header[100:108])
        pax, long_name, long_link = {}, None, None
        if kind in _REG_TYPES and not name.endswith("/"):
            h = hashlib.sha256()
            left = size
            while left:
                chunk = take(min(CHUNK, left))
                h.update(chunk)
                left -= len(chunk)
            take(padded)
            entry: dict[str, Any] = {"type": "file", "sha256": h.hexdigest(), "size": size,
                                     "mode": mode & 0o7777}
            total += size
        else:
            take(size + padded)
            entry = ({"type": "dir"} if kind == b"5" or kind in _REG_TYPES else
                     {"type": "symlink", "target": link} if kind == b"2" else
                     {"type": "hardlink", "target": link} if kind == b"1" else {"type": "other"})
        files[name.rstrip("/") if entry["type"] == "dir" else name] = entry
    dst.write(out)
    while chunk := src.read(CHUNK):
        dst.write(chunk)
    return files, total
