"""Argument helpers shared by the verbs, so every verb spells -n/-p/--json/--dry-run alike."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # verb modules load on every conda command (conda builds every parser)
    from pathlib import Path

    from .runtime import Runtime


def verb_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                summary: str, epilog: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary, description=summary, epilog=epilog.strip("\n"),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_env_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-n", "--name", metavar="ENV", help="env name")
    group.add_argument("-p", "--prefix", metavar="PATH", help="env prefix (full path)")


def add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or notes on stderr")


def add_confirm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-y", "--yes", action="store_true",
                   help="do not ask (a protected env still needs CONDA_SAFEGUARD_ALLOW=<name>)")
    p.add_argument("--dry-run", action="store_true", help="show what would happen; change nothing")


def resolve_prefix(rt: Runtime, args: argparse.Namespace, *, must_exist: bool = True) -> Path:
    return rt.locator.resolve(getattr(args, "name", None), getattr(args, "prefix", None),
                              must_exist=must_exist)
