"""Errors of conda-safeguard. conda-free: hooks.py and cli convert them at the edge.

Each error takes data and builds its message, which says what was refused or failed,
why, and how to proceed.

Inside conda, errors are raised as `conda_safeguard.exceptions.SafeguardCondaError` (a
CondaError: exit 1) and refusals as `conda_safeguard.exceptions.SafeguardRefusal` (exit 4).
Those two subclass conda's CondaError, so they are built on first use (module __getattr__):
importing this module never imports conda.
"""

from __future__ import annotations

from typing import Any

from .constants import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_REFUSED, EXIT_USAGE


def _suggest(verb: str, *words: str) -> str:
    from .suggest import safeguard

    return safeguard(verb, *words)


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
            f"`{_suggest('status')}` lists the envs it can see; `{_suggest('list')}` also shows "
            "removed envs that have snapshots (`restore` brings them back)."
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
            f"No snapshot matches {ref!r}{hint}. Run `{_suggest('list')}` to see snapshot ids."
        )


class SnapshotIdTooShortError(SafeguardError):
    def __init__(self, ref: str, minimum: int) -> None:
        super().__init__(
            f"Snapshot id {ref!r} is too short: give at least {minimum} characters of the id "
            "(or an env name, ENV@-1, ENV@<id>)."
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
            f"Store object {object_id[:16]} is damaged ({why}). Run `{_suggest('check')}` to "
            "see every damaged object; other snapshots of this env may still be intact."
        )


class RefusedError(SafeguardError):
    """A protected env was not destroyed. Exit code 4 (the shell snippets rely on it)."""

    exit_code = EXIT_REFUSED


class PromptInterrupted(SafeguardError):
    """Ctrl-C or Ctrl-D at our prompt: nothing was changed. Exit code 130, like any ^C."""

    exit_code = EXIT_INTERRUPTED


class UsageError(SafeguardError):
    """Arguments that make no sense together, found after argparse: exit 2, as argparse's."""

    exit_code = EXIT_USAGE


# ---------------------------------------------------------------------------------------------
# the same errors as conda errors, with stable importable names (conda prints the class under
# --json as "exception_type")

_CONDA_ERRORS: dict[str, type] = {}


def _conda_error_classes() -> dict[str, type]:
    if not _CONDA_ERRORS:
        from conda.exceptions import CondaError

        class SafeguardCondaError(CondaError):  # type: ignore[misc]
            """An expected conda-safeguard error inside conda (exit 1)."""

            return_code = EXIT_ERROR

        class SafeguardRefusal(SafeguardCondaError):
            """A protected env was not destroyed (exit 4, as from `conda-safeguard`)."""

            return_code = EXIT_REFUSED

        for cls in (SafeguardCondaError, SafeguardRefusal):
            cls.__module__ = __name__
            cls.__qualname__ = cls.__name__
            _CONDA_ERRORS[cls.__name__] = cls
    return _CONDA_ERRORS


def __getattr__(name: str) -> Any:
    if name in ("SafeguardCondaError", "SafeguardRefusal"):
        return _conda_error_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def to_conda_error(error: SafeguardError) -> Exception:
    """The CondaError conda prints for `error` (and renders as a JSON object under --json)."""
    classes = _conda_error_classes()
    refused = error.exit_code in (EXIT_REFUSED, EXIT_INTERRUPTED)
    cls = classes["SafeguardRefusal" if refused else "SafeguardCondaError"]
    converted: Exception = cls(str(error))
    converted.return_code = error.exit_code  # type: ignore[attr-defined]
    converted.__cause__ = error
    return converted
