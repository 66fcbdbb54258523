"""Reading a conda, mamba or micromamba command line the way those tools read it.

`parse()` is pure: argv in, `ToolCommand` out, no I/O, no environment. The shell layer
(`conda-safeguard guard`, called by the bash/zsh snippets) uses it to learn which env a command
targets and how it runs; policy.classify then says what the command does to that env.

conda reads its command line with argparse, so this reads it as argparse does, with conda's own
option tables (conda_options.py, generated from conda's parsers for each conda we test):
- long options by any unique prefix (`--al` is `--all`, `--na X` is `--name X`, `--no-p` is
  `--no-plugins`), with the value inline (`--name=X`, `--na=X`) or as the next word;
- short options with the value attached (`-nX`, `-n=X`) or next, and clusters (`-yn X`);
- an option that takes a value never takes a word that looks like an option (argparse refuses
  the command then, so nothing runs);
- `--` makes the rest positional.
mamba 2 and micromamba parse with CLI11, which knows no abbreviations: their long options must
be spelled out. Options before the subcommand are read too (`conda --no-plugins remove`,
`micromamba -r ROOT create`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .conda_options import COMMON, VARIES, VERSIONS
from .condaversion import nearest_tested

TOOLS = ("conda", "mamba", "micromamba")

#: What the user types -> the canonical name policy.classify takes (conda's `run_for` names).
COMMANDS = {
    "install": "install",
    "update": "update",
    "upgrade": "update",
    "remove": "remove",
    "uninstall": "remove",
    "create": "create",
    "rename": "rename",
}
ENV_COMMANDS = {"create": "env_create", "update": "env_update", "remove": "env_remove"}
#: `env config vars set|unset` change the env's conda-meta/state: snapshot first.
ENV_VARS_COMMANDS = {"set": "env_vars", "unset": "env_vars"}

#: The options whose values or presence we use: option string -> ToolCommand field.
#: Short forms are conda's aliases of the long ones (tests/conda checks them per conda).
MEANINGS = {
    "--name": "name", "-n": "name", "--prefix": "prefix", "-p": "prefix",
    "--file": "file", "--revision": "revision",
    "--all": "all", "--yes": "yes", "-y": "yes", "--json": "json", "--dry-run": "dry_run",
    "-d": "dry_run", "--force": "force", "--force-remove": "force", "--quiet": "quiet",
    "-q": "quiet",
    "--no-plugins": "no_plugins",
}
#: `-f` is --file where it takes a value, --force where it is a flag (conda < 26 create).
_SHORT_F = {0: "force", 1: "file", 2: "file"}
#: mamba and micromamba options conda does not have.
_MAMBA_EXTRA = {"-r": 1, "--root-prefix": 1, "-a": 0}
_MAMBA_MEANINGS = {"-r": "root_prefix", "--root-prefix": "root_prefix", "-a": "all"}

#: Files conda env create/update read when no -f is given.
DEFAULT_ENV_FILE = "environment.yml"


@dataclass(frozen=True)
class ToolCommand:
    """One parsed command line. `command` is None for commands that cannot change an env."""

    tool: str
    words: tuple[str, ...] = ()  # the subcommand as typed: ("install",), ("env", "remove")
    command: str | None = None  # install, install_revision, update, remove, create, rename,
    #                             env_create, env_update, env_remove, env_vars
    name: str | None = None
    prefix: str | None = None
    root_prefix: str | None = None  # mamba/micromamba -r/--root-prefix
    files: tuple[str, ...] = ()
    revision: str | None = None
    all: bool = False
    yes: bool = False
    json: bool = False
    dry_run: bool = False
    force: bool = False
    quiet: bool = False
    no_plugins: bool = False
    positionals: tuple[str, ...] = ()  # packages; for rename: (NEW,)

    @property
    def destination(self) -> str | None:
        """`rename`'s new name (or path)."""
        return self.positionals[0] if self.command == "rename" and self.positionals else None

    @property
    def typed(self) -> str:
        """The command for messages: "conda env remove"."""
        return " ".join((self.tool, *self.words))

    def env_files(self) -> tuple[str, ...]:
        """The YAML files that may name the target when -n/-p are absent."""
        if self.command in ("env_create", "env_update"):
            if self.files or self.tool == "micromamba":  # micromamba has no default file
                return self.files
            return (DEFAULT_ENV_FILE,)
        if self.command == "create":  # conda >= 24.x, mamba and micromamba: create -f env.yml
            return tuple(f for f in self.files if f.endswith((".yml", ".yaml")))
        return ()


def table_version(conda_version: str | None) -> str:
    """The conda of VERSIONS whose options `conda_version` has (condaversion.nearest_tested)."""
    return nearest_tested(conda_version, VERSIONS)


def options_for(command_key: str, conda_version: str | None = None) -> dict[str, int]:
    """option string -> kind (0 flag, 1 one value, 2 many) of one conda subcommand
    ("" for the options before it, "env create", "env config vars set", …)."""
    version = table_version(conda_version)
    table = dict(COMMON.get(command_key, {}))
    for opt, kinds in VARIES.get(command_key, {}).items():
        if version in kinds:
            table[opt] = kinds[version]
    return table


def _lookup(tok: str, table: dict[str, int], abbrev: bool) -> str | None:
    """The option `tok` (without an inline value) names: exact, else a unique long prefix."""
    if tok in table:
        return tok
    if not abbrev or not tok.startswith("--") or len(tok) < 3:
        return None
    matches = [o for o in table if o.startswith(tok)]
    return matches[0] if len(matches) == 1 else None  # ambiguous: argparse refuses


def _looks_like_option(tok: str) -> bool:
    return tok.startswith("-") and tok != "-"


def parse(tool: str, argv: list[str], conda_version: str | None = None) -> ToolCommand:
    """Parse `tool`'s argv (without the program name). Never raises.

    `conda_version`: the conda that will run it, for its option table (None: the newest)."""
    values: dict[str, Any] = {"files": [], "positionals": []}
    words: list[str] = []
    abbrev = tool == "conda"
    extra = _MAMBA_EXTRA if tool != "conda" else {}
    meanings = {**MEANINGS, **_MAMBA_MEANINGS}
    # before the subcommand: conda's top-level options, plus the options we interpret, which
    # mamba and micromamba take there (conda refuses them there; reading them as values keeps
    # `conda -n install list` from looking like an install, as the snippets' `case` reads it)
    top = {**options_for("", conda_version), **_MAMBA_EXTRA}
    top.update({o: k for o, k in options_for("remove").items()
                if o in meanings and o not in top})
    top.setdefault("-f", 1)
    top.setdefault("--file", 1)
    table = top

    def meaning(opt: str) -> str | None:
        if opt == "-f":
            return _SHORT_F[table.get(opt, 0)]
        return meanings.get(opt)

    def store(opt: str, value: str | None) -> None:
        key = meaning(opt)
        if key is None:
            return
        if table.get(opt, 0) == 0:
            values[key] = True
        elif value is not None:
            if key == "file":
                values["files"].append(value)
            else:
                values[key] = value

    def take_values(opt: str, i: int) -> int:
        """Consume the value(s) of `opt` starting at argv[i]; returns the next index."""
        kind = table.get(opt, 0)
        if kind == 1:
            if i < len(argv) and not _looks_like_option(argv[i]):
                store(opt, argv[i])
                return i + 1
            return i
        while i < len(argv) and not _looks_like_option(argv[i]):  # kind 2: greedy
            store(opt, argv[i])
            i += 1
        return i

    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            values["positionals"] += argv[i:]
            break
        if tok.startswith("--"):
            head, eq, inline = tok.partition("=")
            opt = _lookup(head, table, abbrev)
            if opt is None:
                continue  # unknown, or ambiguous: conda refuses the command
            if eq:
                store(opt, inline)
            elif table[opt] == 0:
                store(opt, None)
            else:
                i = take_values(opt, i)
            continue
        if _looks_like_option(tok):
            head, eq, inline = tok.partition("=")
            if eq and head in table:  # -n=X
                store(head, inline)
                continue
            # a cluster: flags, then at most one option that takes the rest (or the next word)
            for j in range(1, len(tok)):
                opt = "-" + tok[j]
                if opt not in table:
                    break  # argparse refuses the command
                rest = tok[j + 1:]
                if table[opt] == 0:
                    store(opt, None)
                    continue
                if rest:
                    store(opt, rest[1:] if rest.startswith("=") else rest)
                else:
                    i = take_values(opt, i)
                break
            continue
        # a word: the subcommand (one to four words), else a positional
        if not words or words[0] == "env" and _expects_word(words):
            words.append(tok)
            table = _table_after(tool, words, conda_version, extra)
        else:
            values["positionals"].append(tok)
        if words and _canonical(words, has_revision=False) is None and not _expects_word(words):
            break  # a command that cannot change an env: nothing more to read

    files = tuple(values.pop("files"))
    positionals = tuple(values.pop("positionals"))
    command = _canonical(words, has_revision=values.get("revision") is not None)
    return ToolCommand(tool=tool, words=tuple(words), command=command, files=files,
                       positionals=positionals, **values)


def _expects_word(words: list[str]) -> bool:
    """More subcommand words follow: `env`, `env config`, `env config vars`."""
    return words in (["env"], ["env", "config"], ["env", "config", "vars"])


def _table_after(tool: str, words: list[str], conda_version: str | None,
                 extra: dict[str, int]) -> dict[str, int]:
    key = " ".join(words)
    if key == "upgrade" or key == "uninstall":
        key = {"upgrade": "update", "uninstall": "remove"}[key]
    return {**options_for(key, conda_version), **extra}


def _canonical(words: list[str], *, has_revision: bool) -> str | None:
    if not words:
        return None
    if words[0] == "env":
        if words[1:3] == ["config", "vars"] and len(words) > 3:
            return ENV_VARS_COMMANDS.get(words[3])
        return ENV_COMMANDS.get(words[1]) if len(words) > 1 else None
    command = COMMANDS.get(words[0])
    if command == "install" and has_revision:
        return "install_revision"
    return command


def is_url(path: str) -> bool:
    return "://" in path


def read_env_file_target(path: str) -> tuple[str | None, str | None]:
    """(name, prefix) an environment.yml names; (None, None) when it names neither.

    Raises OSError when the file cannot be read and ValueError when it is not YAML.
    """
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(str(e)) from None
    if not isinstance(data, dict):
        return None, None
    name, prefix = data.get("name"), data.get("prefix")
    return (str(name) if name not in (None, "") else None,
            str(prefix) if prefix not in (None, "") else None)
