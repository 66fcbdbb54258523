"""The shell layer's guard: what a conda/mamba/micromamba command line will do, decided and
enforced with the same code the plugin uses (policy.classify, guard.make_target, guard.enforce).

The protocol with shell/bash.sh and shell/zsh.sh is documented in cli/shellcmd.py.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from . import cmdline
from .condarc import truthy
from .constants import ENV_ALLOW
from .envs import EnvLocator
from .exceptions import UsageError
from .guard import detect_interactive, enforce, make_target
from .policy import Effect, Invocation, Target, classify
from .prefix import is_env, removes_every_package, revision_removes_packages

if TYPE_CHECKING:
    from .cli.runtime import Runtime

log = logging.getLogger(f"conda.{__name__}")

#: The first conda whose plugins get pre-command hooks.
PLUGIN_MIN_CONDA = (23, 7)


# ---------------------------------------------------------------------------------------------
# exactly one layer decides


def _version_tuple(version: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in version.split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def plugin_installed() -> bool:
    """conda >= 23.7 and our `conda` entry point are installed in this Python."""
    try:
        version = importlib.metadata.version("conda")
    except importlib.metadata.PackageNotFoundError:
        return False
    if _version_tuple(version) < PLUGIN_MIN_CONDA:
        return False
    return any(ep.value.split(":")[0].split(".")[0] == "conda_safeguard"
               for ep in importlib.metadata.entry_points(group="conda"))


def runs_our_conda(environ: Mapping[str, str]) -> bool:
    """The conda the user calls (CONDA_EXE, else PATH) lives in this Python's prefix."""
    exe = environ.get("CONDA_EXE") or shutil.which("conda", path=environ.get("PATH"))
    if not exe:
        return False
    ours = os.path.realpath(sys.prefix)
    return os.path.commonpath([os.path.realpath(exe), ours]) == ours


def plugin_decides(cmd: cmdline.ToolCommand, environ: Mapping[str, str]) -> bool:
    """True when the conda plugin will guard this very call, so the shell layer steps aside."""
    if cmd.tool != "conda" or cmd.no_plugins or truthy(environ.get("CONDA_NO_PLUGINS")):
        return False
    return plugin_installed() and runs_our_conda(environ)


# ---------------------------------------------------------------------------------------------
# the guard


def mamba_locator(base: EnvLocator, root: Path, environ: Mapping[str, str],
                  ) -> EnvLocator:
    """Where micromamba (and mamba 2 with a root prefix) look for -n NAME: configured envs
    dirs, then ROOT/envs; `base` is ROOT."""
    dirs = [Path(p) for p in (environ.get("CONDA_ENVS_PATH") or "").split(os.pathsep) if p]
    dirs += [Path(os.path.expanduser(str(p))) for p in base.condarc.get("envs_dirs") or []
             if isinstance(p, str)]
    dirs.append(root / "envs")
    unique = [Path(os.path.abspath(d)) for d in dict.fromkeys(dirs)]
    return EnvLocator(root_prefix=root, envs_dirs=unique, condarc=base.condarc)


def _env_file_target(cmd: cmdline.ToolCommand) -> tuple[str | None, str | None]:
    """(name, prefix) from the env file of `env create|update` / `create -f x.yml`.

    A missing or broken local file: (None, None), the tool itself fails on it. A remote file is
    a usage error (exit 2): we cannot see which env it would replace.
    """
    for path in cmd.env_files():
        if cmdline.is_url(path):
            raise UsageError(
                f"Cannot tell which environment `{cmd.typed} -f {path}` would replace: the file "
                "is remote. Pass the env's name with -n NAME (or -p PATH), which overrides the "
                "file, so it can be checked.")
        try:
            name, prefix = cmdline.read_env_file_target(path)
        except (OSError, ValueError) as e:
            log.debug("cannot read %s: %s", path, e)
            continue
        if name or prefix:
            return name, prefix
    return None, None


def guard_targets(rt: Runtime, cmd: cmdline.ToolCommand) -> list[Target]:
    """The envs `cmd` touches, with what it does to each (empty: nothing to guard)."""
    if cmd.command is None:
        return []
    name, prefix = cmd.name, cmd.prefix
    if not (name or prefix) and cmd.env_files():
        name, prefix = _env_file_target(cmd)
    if not (name or prefix) and cmd.command in ("create", "env_create"):
        return []  # no env named anywhere: the tool refuses to create one
    try:
        target = rt.locator.resolve(name, prefix, must_exist=False)
    except UsageError:  # -n and -p together (the tool refuses that too), or no env at all
        if name or prefix or any(e is Effect.DESTROY for _, e, _ in
                                 classify(cmd.command, remove_all=cmd.all)):
            raise
        print(f"conda-safeguard: warning: cannot tell which env `{cmd.typed}` changes (none is "
              "active and no root prefix was found): no snapshot before it.", file=sys.stderr)
        return []
    destination = None
    if cmd.command == "rename":
        if cmd.destination is None:
            return []  # the tool reports the usage error
        destination = rt.locator.resolve(name=cmd.destination, must_exist=False)
    effects = classify(
        cmd.command, remove_all=cmd.all, target_exists=is_env(target),
        destination_exists=destination is not None and is_env(destination),
        yes=cmd.yes or cmd.force,
        revision_removes_packages=cmd.command == "install_revision"
        and revision_removes_packages(target, cmd.revision),
        empties_env=cmd.command == "remove" and not cmd.all
        and removes_every_package(target, cmd.positionals, force=cmd.force),
    )
    return [make_target(rt, destination if role == "destination" and destination else target,
                        effect, why) for role, effect, why in effects]


def wants_json(cmd: cmdline.ToolCommand, environ: Mapping[str, str]) -> bool:
    return cmd.json or (cmd.tool != "micromamba" and truthy(environ.get("CONDA_JSON")))


def invocation(rt: Runtime, cmd: cmdline.ToolCommand,
               environ: Mapping[str, str]) -> Invocation:
    yes_vars = ("CONDA_ALWAYS_YES",) if cmd.tool == "conda" else \
        ("MAMBA_ALWAYS_YES", "CONDA_ALWAYS_YES")
    yes = cmd.yes or any(truthy(environ.get(v)) for v in yes_vars) \
        or truthy(rt.locator.condarc.get("always_yes"))
    json = wants_json(cmd, environ)
    dry_run = cmd.dry_run or (cmd.tool == "conda" and truthy(environ.get("CONDA_DRY_RUN")))
    return Invocation(tool=cmd.tool, interactive=detect_interactive(), yes=yes, json=json,
                      dry_run=dry_run, allow=environ.get(ENV_ALLOW, ""))


def guard(rt: Runtime, cmd: cmdline.ToolCommand, argv: list[str],
          environ: Mapping[str, str] | None = None) -> None:
    """Decide, prompt and snapshot for `cmd` (parsed from `argv`). Returns when it may run;
    raises RefusedError (exit 4) or another SafeguardError (exit 1) when it may not."""
    environ = os.environ if environ is None else environ
    if cmd.command is None:
        return
    if plugin_decides(cmd, environ):
        log.debug("the conda plugin guards this call: the shell layer steps aside")
        return
    tool = cmd.tool
    root = cmd.root_prefix or (environ.get("MAMBA_ROOT_PREFIX") if tool != "conda" else None)
    if root:
        rt.locator = mamba_locator(rt.locator, Path(os.path.abspath(os.path.expanduser(root))),
                                   environ)
    inv = invocation(rt, cmd, environ)
    rt.json = inv.json
    targets = guard_targets(rt, cmd)
    # the reason the plugin gives too: `list` reads the same whichever layer took the snapshot
    outcome = enforce(rt, targets, inv, argv=[tool, *argv], reason=f"before {cmd.command}")
    if not (inv.json or cmd.quiet):
        for t in targets:
            if t.prefix in outcome.snapshots:
                print(f"conda-safeguard: snapshot {outcome.snapshots[t.prefix][:10]} of "
                      f"'{t.name}' before `{cmd.typed}`", file=sys.stderr)
        for note in advice_notes(rt, cmd, targets):
            print(note, file=sys.stderr)


def advice_notes(rt: Runtime, cmd: cmdline.ToolCommand, targets: list[Target]) -> list[str]:
    """What the plugin says inside conda, for mamba, micromamba and conda without the plugin:
    a warning on installs into base, a note on a name that says nothing (advice.py)."""
    from . import advice

    notes = []
    root = rt.locator.root_prefix
    if rt.settings.warn_base_installs and cmd.command in ("install", "update") and targets \
            and root is not None and Path(targets[0].prefix) == Path(os.path.abspath(root)):
        notes.append(advice.base_install_warning(cmd.command, is_base=True))
    if rt.settings.name_lint and cmd.command in ("create", "env_create") and cmd.name:
        notes.append(advice.name_lint(os.path.basename(cmd.name)))
    return [n for n in notes if n]
