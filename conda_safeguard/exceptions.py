"""Errors of conda-safeguard. conda-free: hooks.py and cli convert them at the edge.

Each error takes data and builds its message, which says what was refused or failed,
why, and how to proceed.
"""

from __future__ import annotations

from .constants import EXIT_ERROR, EXIT_REFUSED


class SafeguardError(Exception):
    """Base of expected errors: printed as one message, exit code 1."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class EnvNotFoundError(SafeguardError):
    def __init__(self, what: str, searched: list[str] | None = None) -> None:
        where = f" (searched: {', '.join(searched)})" if searched else ""
        super().__init__(
            f"No conda environment {what}{where}. "
            "Run `conda-safeguard list` to see the envs that have snapshots."
        )


class NotAnEnvError(SafeguardError):
    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is not a conda environment (it has no conda-meta/ folder). "
            "Pass the env's prefix with -p, or its name with -n."
        )


class CorruptEnvError(SafeguardError):
    def __init__(self, path: str, why: str) -> None:
        super().__init__(
            f"Cannot read {path}: {why}. Nothing was changed; fix or remove that file, "
            "or reinstall the package it belongs to."
        )


class StoreError(SafeguardError):
    """The store cannot be used as asked."""


class BackupError(SafeguardError):
    """A snapshot of one env failed (an OSError reading the env or writing the store)."""


class DamagedConfigError(StoreError):
    """The store's config is damaged or missing while its snapshots are there."""


class StoreFormatError(StoreError):
    def __init__(self, path: str, found: object, supported: int) -> None:
        super().__init__(
            f"The store at {path} has format {found!r}; this conda-safeguard understands up to "
            f"format {supported}. Nothing was written. Upgrade conda-safeguard, or point "
            "CONDA_SAFEGUARD_HOME at another store."
        )


class StoreLockTimeout(StoreError):
    def __init__(self, path: str, seconds: float) -> None:
        super().__init__(
            f"Gave up waiting {seconds:g}s for the store lock {path}: another conda-safeguard "
            "process holds it (a prune or a large backup). Try again when it has finished, or "
            "raise CONDA_SAFEGUARD_LOCK_TIMEOUT."
        )


class SnapshotNotFoundError(SafeguardError):
    def __init__(self, ref: str, hint: str = "") -> None:
        super().__init__(
            f"No snapshot matches {ref!r}{hint}. Run `conda-safeguard list` to see snapshot ids."
        )


class AmbiguousSnapshotError(SafeguardError):
    def __init__(self, ref: str, candidates: list[str]) -> None:
        shown = ", ".join(candidates[:5]) + (" …" if len(candidates) > 5 else "")
        super().__init__(
            f"Snapshot id {ref!r} is ambiguous: it matches {len(candidates)} snapshots "
            f"({shown}). Give more characters."
        )


class AmbiguousEnvError(SafeguardError):
    def __init__(self, env: str, prefixes: list[str]) -> None:
        shown = ", ".join(prefixes[:5]) + (" …" if len(prefixes) > 5 else "")
        super().__init__(
            f"{env!r} names snapshots of {len(prefixes)} different envs ({shown}). Give the "
            f"env's full prefix instead, e.g. {prefixes[0]}@latest."
        )


class CorruptObjectError(StoreError):
    def __init__(self, object_id: str, why: str) -> None:
        super().__init__(
            f"Store object {object_id[:16]} is damaged ({why}). Run `conda-safeguard check` to "
            "see every damaged object; other snapshots of this env may still be intact."
        )


class RefusedError(SafeguardError):
    """A protected env was not destroyed. Exit code 4 (the shell snippets rely on it)."""

    exit_code = EXIT_REFUSED


class UsageError(SafeguardError):
    """Arguments that make no sense together, found after argparse."""
