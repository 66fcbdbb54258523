"""conda plugin registrations only. Nothing heavy is imported here: conda loads this module on
every command, so the real work is imported inside the actions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conda.plugins import hookimpl

# conda >= 23.7 (pre-commands) has these three; each newer type is imported on its own, so one
# missing type (CondaSetting on conda 23.x) does not take the others (`conda doctor`) with it.
from conda.plugins.types import CondaHealthCheck, CondaPreCommand, CondaSubcommand

try:
    from conda.plugins.types import CondaSetting
except ImportError:  # conda < 24.3 has no plugin settings: hooks.py reads .condarc itself
    CondaSetting = None  # type: ignore[assignment,misc]

try:  # conda >= 24.x: plugins see the solver's result
    from conda.plugins.types import CondaPostSolve
except ImportError:  # pragma: no cover - older conda: the pre-command estimates it
    CondaPostSolve = None  # type: ignore[assignment,misc]

from .constants import RUN_FOR

if TYPE_CHECKING:
    from argparse import ArgumentParser, Namespace
    from collections.abc import Iterable


def _pre_command(command: str) -> None:
    from .hooks import pre_command

    pre_command(command)


def _configure_parser(parser: ArgumentParser) -> None:
    from .cli import configure_parser

    configure_parser(parser)


def _subcommand(args: Namespace) -> int:
    from . import suggest
    from .cli import execute
    from .exceptions import SafeguardError
    from .hooks import runtime_from_context, to_conda_error

    suggest.set_prog(suggest.INSIDE_CONDA)
    try:
        return execute(args, runtime_from_context())
    except SafeguardError as e:
        raise to_conda_error(e) from None


@hookimpl
def conda_pre_commands() -> Iterable[CondaPreCommand]:
    yield CondaPreCommand(name="safeguard", action=_pre_command, run_for=set(RUN_FOR))


def _post_solve(repodata_fn: str, unlink_precs: Any, link_precs: Any) -> None:
    from .postsolve import post_solve

    post_solve(unlink_precs, link_precs)


@hookimpl
def conda_post_solves() -> Iterable[Any]:
    if CondaPostSolve is None:
        return
    yield CondaPostSolve(name="safeguard", action=_post_solve)


@hookimpl
def conda_subcommands() -> Iterable[CondaSubcommand]:
    yield CondaSubcommand(
        name="safeguard",
        summary="Protect, snapshot and restore environments (conda-safeguard).",
        action=_subcommand,
        configure_parser=_configure_parser,
    )


@hookimpl
def conda_settings() -> Iterable[Any]:
    if CondaSetting is None:
        return
    from .settings_plugin import conda_setting_definitions

    yield from conda_setting_definitions(CondaSetting)


@hookimpl
def conda_health_checks() -> Iterable[Any]:
    from .doctor import check_snapshots, check_store, fix_snapshots

    # conda before 26.x knows only name and action: passing more breaks all of `conda doctor`
    known = getattr(CondaHealthCheck, "_fields", None) or \
        getattr(CondaHealthCheck, "__dataclass_fields__", {})
    checks = [dict(name="safeguard-snapshots", action=check_snapshots, fixer=fix_snapshots,
                   summary="Environments with no conda-safeguard snapshot",
                   fix="Take a snapshot of them now"),
              dict(name="safeguard-store", action=check_store,
                   summary="Integrity of the conda-safeguard snapshot store")]
    for check in checks:
        yield CondaHealthCheck(**{k: v for k, v in check.items() if k in known})


__all__ = ["conda_health_checks", "conda_post_solves", "conda_pre_commands", "conda_settings",
           "conda_subcommands"]
