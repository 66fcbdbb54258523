"""Signing pack manifests with `ssh-keygen -Y sign` and checking them against allowed signers.

OpenSSH (>= 8.1) is on every machine that has ssh: no new key infrastructure. The signature
covers the manifest, and the manifest holds the sha256 of the payload and of every file, so a
valid signature vouches for every byte that unpack writes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from .exceptions import SafeguardError
from .packformat import SIGN_NAMESPACE


class SignatureError(SafeguardError):
    """A signature is missing, invalid, or made by nobody the allowed-signers file trusts."""


def _ssh_keygen() -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise SafeguardError("ssh-keygen was not found on PATH; signing needs OpenSSH >= 8.1. "
                             "Install openssh-client, or pack/unpack without signing.")
    return exe


def sign(data: bytes, key: Path) -> bytes:
    """The armored SSH signature of `data` made with private key `key`."""
    if not key.is_file():
        raise SafeguardError(f"Signing key {key} does not exist. Give the private key "
                             "(e.g. ~/.ssh/id_ed25519) to --sign-key.")
    with tempfile.TemporaryDirectory(prefix="cs-sign-") as tmp:
        msg = Path(tmp) / "manifest"
        msg.write_bytes(data)
        proc = subprocess.run([_ssh_keygen(), "-Y", "sign", "-q", "-f", str(key), "-n",
                               SIGN_NAMESPACE, str(msg)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        sig = Path(str(msg) + ".sig")
        if proc.returncode != 0 or not sig.exists():
            why = (proc.stderr.strip().splitlines() or ["no signature written"])[-1]
            raise SafeguardError(f"Could not sign with {key}: {why}. Nothing was written.")
        return sig.read_bytes()


def verify(data: bytes, signature: bytes, allowed_signers: Path) -> str:
    """The principal (from `allowed_signers`) whose key made `signature` over `data`.

    Raises SignatureError when no allowed signer made it (or the data was changed after).
    """
    if not allowed_signers.is_file():
        raise SafeguardError(f"Allowed-signers file {allowed_signers} does not exist. It lists "
                             "`PRINCIPAL namespaces=\"conda-safeguard-pack\" KEYTYPE KEY` lines "
                             "(see ssh-keygen(1), ALLOWED SIGNERS).")
    exe = _ssh_keygen()
    with tempfile.TemporaryDirectory(prefix="cs-verify-") as tmp:
        sig = Path(tmp) / "manifest.sig"
        sig.write_bytes(signature)
        found = subprocess.run([exe, "-Y", "find-principals", "-s", str(sig), "-f",
                                str(allowed_signers)], capture_output=True, text=True,
                               stdin=subprocess.DEVNULL)
        principals = [p for p in found.stdout.splitlines() if p.strip()]
        if found.returncode != 0 or not principals:
            raise SignatureError(f"The archive is signed by a key that {allowed_signers} does "
                                 "not list. Nothing was written. Add the signer's public key "
                                 "there if you trust it.")
        for principal in principals:
            proc = subprocess.run([exe, "-Y", "verify", "-f", str(allowed_signers), "-I",
                                   principal, "-n", SIGN_NAMESPACE, "-s", str(sig)],
                                  input=data, capture_output=True)
            if proc.returncode == 0:
                return principal
        raise SignatureError("The archive's signature does not match its manifest (the manifest "
                             "was changed after signing). Nothing was written.")
