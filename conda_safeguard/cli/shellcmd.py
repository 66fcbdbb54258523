"""The shell layer: `shell bash|zsh` prints the snippet, the hidden `guard` verb is what it calls.

Python plugins cannot reach mamba 2, micromamba, `conda --no-plugins` (CONDA_NO_PLUGINS=true) or
conda older than 23.7. The snippets wrap `conda`, `mamba` and `micromamba` in shell functions;
for a command that can change or destroy an env they first run

    python -m conda_safeguard guard --tool conda|mamba|micromamba -- ARGV...

The guard protocol (a contract with shell/bash.sh and shell/zsh.sh):
  exit 0    run the command: any snapshot is already taken (or the conda plugin will decide)
  exit 4    refused: the message is on stderr (and a JSON error on stdout under the tool's --json)
  exit 130  interrupted (^C or ^D, also at the typed-name prompt; nothing was changed)
  exit 1/2/3  an error (message or traceback on stderr): the wrapper does not run the command
The guard uses the same code as the plugin: policy.classify, guard.make_target, guard.enforce.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import EXIT_OK
from .common import verb_parser

if TYPE_CHECKING:
    from .runtime import Runtime

SHELLS = ("bash", "zsh")
#: The template's one substitution: the shell-quoted path of the Python that runs the guard.
PLACEHOLDER = "__SAFEGUARD_PYTHON__"
#: The tools the snippets wrap (cmdline.TOOLS; repeated here so loading this module is cheap).
TOOLS = ("conda", "mamba", "micromamba")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "shell", "Print the bash or zsh snippet that guards mamba, micromamba "
                    "and conda without plugins.", """
install (after conda's "conda initialize" block, so the conda function it wraps exists):
  ~/.bashrc:  eval "$(conda-safeguard shell bash)"
  ~/.zshrc:   eval "$(conda-safeguard shell zsh)"
In a shell that has it: __safeguard_doctor checks the setup; CONDA_SAFEGUARD_SHELL=0 turns the
wrappers off. The snippet calls the Python running this command; if that Python disappears,
commands run unguarded after a warning.""")
    p.add_argument("shell", choices=SHELLS)
    p.add_argument("--python", help=argparse.SUPPRESS)  # the Python to bake in (tests, packagers)
    p.set_defaults(func=cmd_shell)

    # Hidden (no help=): called by the snippets only.
    g = sub.add_parser("guard", description="Decide, prompt and snapshot for a conda/mamba/"
                       "micromamba command line; exit 0 to run it, 4 refused, else an error.")
    g.add_argument("--tool", choices=TOOLS, required=True)
    g.add_argument("argv", nargs=argparse.REMAINDER, help="the command's arguments, after --")
    g.set_defaults(func=cmd_guard)


# ---------------------------------------------------------------------------------------------
# the snippet


def template_path(shell: str) -> Path:
    """shell/<shell>.sh: in the wheel as conda_safeguard/shell/, in a checkout at the top."""
    from ..exceptions import SafeguardError

    package = Path(__file__).resolve().parent.parent
    for folder in (package / "shell", package.parent / "shell"):
        candidate = folder / f"{shell}.sh"
        if candidate.is_file():
            return candidate
    raise SafeguardError(f"The {shell} snippet template is missing from {package / 'shell'}: "
                         "reinstall conda-safeguard.")


def render(shell: str, python: str | None = None) -> str:
    from ..exceptions import SafeguardError

    text = template_path(shell).read_text(encoding="utf-8")
    if text.count(PLACEHOLDER) != 1:
        raise SafeguardError(f"The {shell} snippet template is damaged ({PLACEHOLDER} must occur "
                             "once): reinstall conda-safeguard.")
    return text.replace(PLACEHOLDER, shlex.quote(python or sys.executable))


def cmd_shell(rt: Runtime, args: argparse.Namespace) -> int:
    sys.stdout.write(render(args.shell, args.python))
    return EXIT_OK


def cmd_guard(rt: Runtime, args: argparse.Namespace) -> int:
    from .. import cmdline
    from ..condaversion import conda_in_use
    from ..shellguard import guard, wants_json

    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    # conda's options differ by version (`create -f` is --force before 26, --file since)
    version = conda_in_use(os.environ) if args.tool == "conda" else None
    cmd = cmdline.parse(args.tool, argv, version)
    # __main__ prints errors; under the tool's --json it also prints a JSON error object.
    args.json = wants_json(cmd, os.environ)
    guard(rt, cmd, argv)
    return EXIT_OK
