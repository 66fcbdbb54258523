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
    """The payload as a streaming tar (members in order), hashing the compressed bytes."""
    reader = _HashingReader(raw)
    buffered = io.BufferedReader(reader, CHUNK)
    if compression == "zst":
        import zstandard  # conda-pack needs it to write .tar.zst too

        stream: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(buffered)
        tar = tarfile.open(fileobj=stream, mode="r|")  # noqa: SIM115 - closed below
    else:
        tar = tarfile.open(fileobj=buffered, mode="r|gz")  # noqa: SIM115 - closed below
    try:
        yield tar, reader
    finally:
        tar.close()


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
