"""Verbs that tell whether envs are the same: fingerprint (one env, JSON for many nodes)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .common import add_env_options, add_output_options, resolve_prefix, verb_parser

if TYPE_CHECKING:
    from .runtime import Runtime


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "fingerprint", "A stable hash of an env's exact package set.", """
The hash covers every conda package (name, version, build, channel, package sha256) and every
pip package (name, version, git commit or archive hash). Two envs with the same fingerprint hold
the same packages, wherever they live. --json prints the document `compare` reads: collect one
per node and compare them.
examples:
  conda-safeguard fingerprint -n pytorch
  conda-safeguard fingerprint -n pytorch --json --node "$(hostname)" > node1.json""")
    p.add_argument("env", nargs="?", metavar="ENV", help="env name or prefix (or use -n/-p)")
    add_env_options(p)
    p.add_argument("--node", metavar="LABEL", help="name this node in the JSON (default: host)")
    add_output_options(p)
    p.set_defaults(func=cmd_fingerprint)


def _prefix(rt: Runtime, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The env: a bare ENV argument, or -n/-p, or the active env."""
    from pathlib import Path

    from ..exceptions import UsageError
    from ..prefix import require_env

    if args.env:
        if args.name or args.prefix:
            raise UsageError(f"Give the env once: {args.env!r} or -n/-p, not both.")
        is_path = "/" in args.env or args.env.startswith(".")
        return require_env(rt.locator.resolve(None if is_path else args.env,
                                              Path(args.env) if is_path else None))
    return require_env(resolve_prefix(rt, args))


def cmd_fingerprint(rt: Runtime, args: argparse.Namespace) -> int:
    from ..fingerprint import fingerprint_doc, summary_lines

    prefix = _prefix(rt, args)
    doc = fingerprint_doc(prefix, env_name=rt.locator.name_of(prefix), node=args.node)
    if rt.json:
        rt.emit_json(doc)
    else:
        for line in summary_lines(doc):
            rt.out(line)
    return 0
