"""The commands our messages tell people to run, built in one place so each runs as printed.

Three things go wrong when a message pastes words into a command by hand: a name with a space or
a non-ASCII letter breaks the shell (quote every word), an env that conda cannot find by name
needs `-p PATH` (not `-n NAME`), and `conda safeguard VERB` exists only where the conda plugin
runs: mamba and micromamba users, and the shell snippets, need `conda-safeguard VERB`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .constants import ENV_ALLOW

STANDALONE = "conda-safeguard"
INSIDE_CONDA = "conda safeguard"

#: How the user reached our verbs; the conda plugin switches it to INSIDE_CONDA.
_prog = STANDALONE


def set_prog(prog: str) -> None:
    """Called once by each entry point (the conda plugin, `conda-safeguard`)."""
    global _prog
    _prog = prog


def prog() -> str:
    """`conda safeguard` inside conda, `conda-safeguard` everywhere else."""
    return _prog


def quote(word: object) -> str:
    import shlex  # here: the verb modules import this one when conda builds its parsers

    return shlex.quote(str(word))


def command(*words: object) -> str:
    """Words joined into a shell command line, each quoted only when it needs it."""
    return " ".join(quote(w) for w in words)


def env_args(name: str, prefix: str, *, named: bool) -> list[str]:
    """`-n NAME` when conda can find the env by that name, else `-p PATH`."""
    return ["-n", name] if named else ["-p", prefix]


def safeguard(verb: str, *words: object) -> str:
    """One of our verbs, spelled for the tool the user runs."""
    return f"{prog()} {command(verb, *words)}"


def allow(names: Iterable[str]) -> str:
    """The CONDA_SAFEGUARD_ALLOW=... prefix that lets one command destroy these envs."""
    return f"{ENV_ALLOW}={quote(','.join(names))}"


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """`1 package`, `3 packages`."""
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def shorten(text: str, width: int, placeholder: str = "…") -> str:
    """Cut `text` to at most `width` characters at a word boundary, marking the cut."""
    if len(text) <= width:
        return text
    room = width - len(placeholder)
    cut = text[:room + 1].rsplit(" ", 1)[0] if " " in text[:room + 1] else text[:room]
    return cut[:room].rstrip(" ,;:") + placeholder


def listing(items: list[str], limit: int = 5) -> str:
    """`a, b, c and 12 more`: a long list named by its first few items and a count."""
    if len(items) <= limit:
        return ", ".join(items)
    return f"{', '.join(items[:limit])} and {len(items) - limit} more"


def fix_for(error: BaseException, where: object = None) -> str:
    """What to do about an OSError, from its errno; a neutral line for anything else."""
    import errno

    place = f" on {where}" if where is not None else ""
    code = getattr(error, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"Free disk space{place} (or raise your quota)"
    path = getattr(error, "filename", None)
    if code in (errno.EACCES, errno.EPERM) and path:
        return f"Make {path} readable and writable for you (chmod u+rwX), or move it out of the way"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"Check you may write there{place} (permissions, a read-only filesystem)"
    if code in (errno.EMFILE, errno.ENFILE):
        return "Raise the open-file limit (ulimit -n)"
    return "Fix the cause named above"
