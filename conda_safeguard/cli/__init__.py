"""The `conda-safeguard` / `conda safeguard` command line: one parser, verbs in submodules.

conda calls configure_parser() for every command it runs (it builds every subcommand's parser),
so verb modules import only argparse at load and the real work inside each cmd_* function.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .. import __version__

if TYPE_CHECKING:
    from .runtime import Runtime

DESCRIPTION = "Protect, snapshot and restore conda environments."


def configure_parser(parser: argparse.ArgumentParser, *, only: str | None = None) -> bool:
    """Add the verbs to `parser` (ours, or the one conda gives its subcommand).

    With `only`, just that verb's parser is built (argparse set-up is most of the standalone
    command's start-up); returns whether a verb of that name exists.
    """
    from . import fleet, fleetops, protection, restoring, shellcmd, snapshots

    parser.description = DESCRIPTION
    parser.add_argument("--version", action="version", version=f"conda-safeguard {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    target: Any = sub if only is None else _OneVerb(sub, only)
    for module in (snapshots, protection, restoring, shellcmd, fleet, fleetops):
        module.register(target)
    sub.choices = _VisibleChoices(sub.choices)
    return only is None or target.found


class _VisibleChoices(dict):  # type: ignore[type-arg]
    """The verbs argparse lists in its "invalid choice" error: every verb but the hidden
    `guard` (which only the shell snippets call). Lookups still find it."""

    HIDDEN = frozenset({"guard"})

    def __iter__(self) -> Any:
        return (verb for verb in dict.__iter__(self) if verb not in self.HIDDEN)


class _OneVerb:
    """Stands in for the subparsers action and keeps only one verb; the others get a throwaway
    parser that is never attached."""

    def __init__(self, sub: argparse._SubParsersAction[argparse.ArgumentParser], verb: str):
        self.sub, self.verb, self.found = sub, verb, False

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        if name == self.verb:
            self.found = True
            return self.sub.add_parser(name, **kwargs)
        return argparse.ArgumentParser(add_help=False, conflict_handler="resolve")


def build_parser(prog: str = "conda-safeguard", argv: list[str] | None = None,
                 ) -> argparse.ArgumentParser:
    """The whole parser, or for `argv` naming a verb, a parser holding only that verb."""
    verb = next((a for a in argv or [] if not a.startswith("-")), None)
    if verb is not None and argv and argv[0] == verb:
        parser = argparse.ArgumentParser(prog=prog)
        if configure_parser(parser, only=verb):
            return parser
    parser = argparse.ArgumentParser(prog=prog)
    configure_parser(parser)
    return parser


def execute(args: argparse.Namespace, runtime: Runtime | None = None) -> int:
    """Run the verb in `args`. Errors propagate: the caller converts them at its edge."""
    if getattr(args, "func", None) is None:
        from ..suggest import prog

        build_parser(prog=prog()).print_help()
        return 2
    if runtime is None:
        from .runtime import Runtime

        runtime = Runtime.from_system()
    rt = runtime
    rt.json = bool(getattr(args, "json", False))
    rt.quiet = bool(getattr(args, "quiet", False))
    return int(args.func(rt, args))
