"""The `conda-safeguard` / `conda safeguard` command line: one parser, verbs in submodules.

conda calls configure_parser() for every command it runs (it builds every subcommand's parser),
so verb modules import only argparse at load and the real work inside each cmd_* function.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from .. import __version__

if TYPE_CHECKING:
    from .runtime import Runtime

DESCRIPTION = "Protect, snapshot and restore conda environments."


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the verbs to `parser` (ours, or the one conda gives its subcommand)."""
    from . import snapshots

    parser.description = DESCRIPTION
    parser.add_argument("--version", action="version", version=f"conda-safeguard {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    snapshots.register(sub)
    for name in ("protection", "restoring", "shellcmd"):
        try:
            module = __import__(f"{__name__}.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)


def build_parser(prog: str = "conda-safeguard") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    configure_parser(parser)
    return parser


def execute(args: argparse.Namespace, runtime: Runtime | None = None) -> int:
    """Run the verb in `args`. Errors propagate: the caller converts them at its edge."""
    if getattr(args, "func", None) is None:
        build_parser().print_help()
        return 2
    if runtime is None:
        from .runtime import Runtime

        runtime = Runtime.from_system()
    rt = runtime
    rt.json = bool(getattr(args, "json", False))
    rt.quiet = bool(getattr(args, "quiet", False))
    return int(args.func(rt, args))
