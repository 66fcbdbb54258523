"""Reading a conda, mamba or micromamba command line the way those tools read it.

`parse()` is pure: argv in, `ToolCommand` out, no I/O, no environment. The shell layer
(`conda-safeguard guard`, called by the bash/zsh snippets) uses it to learn which env a command
targets and how it runs; policy.classify then says what the command does to that env.

What is understood (every other option is kept out of the way):
- the subcommand, including `env create|update|remove`; options may come before it
  (`conda --no-plugins install`, `micromamba -r ROOT create`);
- `-n X`, `--name X`, `--name=X`, `-nX` (and likewise `-p`/`--prefix`, `-r`/`--root-prefix`,
  `-f`/`--file`, `--revision`), short-flag clusters such as `-yn X`;
- `--all`/`-a`, `-y`/`--yes`, `--json`, `-d`/`--dry-run`, `--force`, `-q`/`--quiet`,
  `--no-plugins`, and `--` (the rest is positional).
Long options are matched exactly: the tools' argparse abbreviations (`--pref`) are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

#: Options that take a value, as one token (`--name=X`, `-nX`) or the next one.
_VALUE_LONG = {
    "--name": "name", "--prefix": "prefix", "--file": "file", "--revision": "revision",
    "--root-prefix": "root_prefix",
    # values we do not use, only skip so they are not taken for positionals
    "--channel": None, "--clone": None, "--solver": None, "--experimental-solver": None,
    "--repodata-fn": None, "--subdir": None, "--platform": None, "--rc-file": None,
    "--log-level": None, "--console": None, "--category": None, "--channel-alias": None,
}
_VALUE_SHORT = {"n": "name", "p": "prefix", "f": "file", "r": "root_prefix", "c": None}
_FLAG_LONG = {
    "--all": "all", "--yes": "yes", "--json": "json", "--dry-run": "dry_run", "--force": "force",
    "--quiet": "quiet", "--no-plugins": "no_plugins",
}
_FLAG_SHORT = {"a": "all", "y": "yes", "d": "dry_run", "q": "quiet"}

#: Files conda env create/update read when no -f is given.
DEFAULT_ENV_FILE = "environment.yml"


@dataclass(frozen=True)
class ToolCommand:
    """One parsed command line. `command` is None for commands that cannot change an env."""

    tool: str
    words: tuple[str, ...] = ()  # the subcommand as typed: ("install",), ("env", "remove")
    command: str | None = None  # install, install_revision, update, remove, create, rename,
    #                             env_create, env_update, env_remove
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


def parse(tool: str, argv: list[str]) -> ToolCommand:
    """Parse `tool`'s argv (without the program name). Never raises."""
    values: dict[str, Any] = {"files": [], "positionals": []}
    words: list[str] = []
    want_env_word = False

    def set_value(key: str | None, value: str | None) -> None:
        if key is None or value is None:
            return
        if key == "file":
            values["files"].append(value)
        else:
            values[key] = value

    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            values["positionals"] += argv[i:]
            break
        if tok.startswith("--"):
            opt, eq, inline = tok.partition("=")
            if opt in _VALUE_LONG:
                value: str | None = inline
                if not eq:
                    value = argv[i] if i < len(argv) else None
                    i += 1
                set_value(_VALUE_LONG[opt], value)
            elif opt in _FLAG_LONG:
                values[_FLAG_LONG[opt]] = True
            continue
        if tok.startswith("-") and len(tok) > 1:
            for j, ch in enumerate(tok[1:], start=1):
                if ch in _VALUE_SHORT:
                    rest = tok[j + 1:]
                    if rest:
                        set_value(_VALUE_SHORT[ch], rest)
                    else:
                        set_value(_VALUE_SHORT[ch], argv[i] if i < len(argv) else None)
                        i += 1
                    break
                if ch in _FLAG_SHORT:
                    values[_FLAG_SHORT[ch]] = True
            continue
        # a word
        if not words:
            words.append(tok)
            want_env_word = tok == "env"
        elif want_env_word:
            words.append(tok)
            want_env_word = False
        else:
            values["positionals"].append(tok)

    files = tuple(values.pop("files"))
    positionals = tuple(values.pop("positionals"))
    command = _canonical(words, has_revision=values.get("revision") is not None)
    return ToolCommand(tool=tool, words=tuple(words), command=command, files=files,
                       positionals=positionals, **values)


def _canonical(words: list[str], *, has_revision: bool) -> str | None:
    if not words:
        return None
    if words[0] == "env":
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
