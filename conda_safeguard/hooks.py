"""conda pre-command actions: read conda's context, classify, then guard.enforce().

Imported only when a command in `run_for` runs (plugin.py imports it inside the action), so
`conda list` pays nothing for it. Every conda import is inside a function.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .condarc import truthy
from .constants import ENV_PLUGIN_ACTIVE, RUN_FOR
from .exceptions import SafeguardError
from .policy import Effect, Invocation, Target, classify

if TYPE_CHECKING:
    from .cli.runtime import Runtime

log = logging.getLogger(f"conda.{__name__}")

__all__ = ["RUN_FOR", "pre_command", "runtime_from_context", "to_conda_error"]


# ---------------------------------------------------------------------------------------------
# conda's context -> our Runtime


def runtime_from_context() -> Runtime:
    """A Runtime whose env dirs, channels and settings are exactly conda's."""
    from conda.base.context import context

    from .cli.runtime import Runtime
    from .condarc import SETTINGS_SCHEMA, settings_from_mapping
    from .envs import EnvLocator

    plugins = getattr(context, "plugins", None)
    values: dict[str, Any] = {}
    for name in SETTINGS_SCHEMA:
        value = getattr(plugins, name, None) if plugins is not None else None
        if value is not None:
            values[name] = list(value) if isinstance(value, tuple) else value
    if plugins is None:  # conda < 24.3 has no plugin settings: read .condarc ourselves
        from .condarc import condarc_paths, read_condarc

        values = dict(read_condarc(condarc_paths(Path(context.root_prefix))).get("plugins") or {})
    locator = EnvLocator(root_prefix=Path(context.root_prefix),
                         envs_dirs=[Path(d) for d in context.envs_dirs])
    return Runtime(locator=locator, settings=settings_from_mapping(values),
                   configured_channels=list(context.channels),
                   conda_version=_conda_version())


def _conda_version() -> str:
    from conda import __version__

    return str(__version__)


def to_conda_error(error: SafeguardError) -> Exception:
    """conda prints a CondaError cleanly (and as a JSON object under --json)."""
    from .exceptions import to_conda_error as convert

    return convert(error)


# ---------------------------------------------------------------------------------------------
# what the command is


def _subcommand_words(argv: list[str]) -> list[str]:
    """The non-option words after conda's program name: ['env', 'create'], ['remove'], …"""
    words = []
    for word in argv[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    return words[:2]


def canonical_command(run_for_name: str, args: Any, argv: list[str]) -> str:
    words = _subcommand_words(argv)
    if run_for_name == "remove" and words[:2] == ["env", "remove"]:
        return "env_remove"
    if run_for_name == "create" and words[:1] == ["env"]:
        return "env_create"
    if run_for_name == "env_vars":  # `env config vars set|unset` change it; `list` reads
        func = str(getattr(args, "func", ""))
        return "env_vars" if func.endswith(("execute_set", "execute_unset")) else "env_vars_list"
    if run_for_name == "install" and getattr(args, "revision", None) not in (None, ""):
        return "install_revision"
    return run_for_name


def _explicit_yes(context: Any, argv: list[str]) -> bool:
    """-y or always_yes as the user set it. `env create` defaults its parser to yes=True
    (so context.always_yes is True there without the user asking): look at argv and the
    non-command-line config sources instead."""
    if any(a in ("-y", "--yes") for a in argv[1:]):
        return True
    for source, data in getattr(context, "raw_data", {}).items():
        if source == "cmd_line":
            continue
        raw = data.get("always_yes") if hasattr(data, "get") else None
        value = getattr(raw, "_raw_value", raw)
        if truthy(value):
            return True
    return False


def _env_file_target(args: Any) -> Path | None:
    """`conda env create/update -f x.yml` without -n/-p: the target is named in the file."""
    from conda.base.context import context
    from conda.cli.common import get_name_prefix_from_env_file

    files = getattr(args, "file", None)
    if not files:
        return None
    file = files[0] if isinstance(files, (list, tuple)) else files
    try:
        name, prefix = get_name_prefix_from_env_file(file)
    except Exception as e:  # conda's helper already swallows most; never crash conda here
        log.debug("could not read env file %s: %s", file, e)
        return None
    if prefix:
        return Path(prefix)
    if name:
        from conda.base.context import locate_prefix_by_name

        try:
            return Path(locate_prefix_by_name(name))
        except Exception:
            return Path(context.envs_dirs[0]) / name
    return None


def _rename_destination(args: Any) -> Path | None:
    dest = getattr(args, "destination", None)
    if not dest:
        return None
    if os.sep in dest:
        return Path(os.path.abspath(os.path.expanduser(dest)))
    from conda.core.prefix_data import PrefixData

    return Path(PrefixData.from_name(dest).prefix_path)


def has_post_solve() -> bool:
    """conda >= 24.x shows plugins its solve (postsolve.py); older conda needs our estimate of
    what a remove prunes."""
    from conda.plugins import hookspec

    return hasattr(hookspec.CondaSpecs, "conda_post_solves")


def targets_for(rt: Runtime, command: str, args: Any, context: Any, argv: list[str]
                ) -> list[Target]:
    from .guard import make_target
    from .prefix import is_env, removes_every_package, revision_removes_packages

    prefix = Path(context.target_prefix)
    if command in ("env_create", "env_update") and not (getattr(args, "name", None)
                                                         or getattr(args, "prefix", None)):
        prefix = _env_file_target(args) or prefix
    destination = _rename_destination(args) if command == "rename" else None
    yes = bool(getattr(args, "yes", False)) or bool(context.always_yes)
    effects = classify(
        command,
        remove_all=bool(getattr(args, "all", False)) or command == "env_remove",
        target_exists=is_env(prefix),
        destination_exists=destination is not None and is_env(destination),
        yes=yes,
        revision_removes_packages=command == "install_revision"
        and revision_removes_packages(prefix, str(args.revision)),
        empties_env=command == "remove" and not getattr(args, "all", False)
        and removes_every_package(prefix, tuple(getattr(args, "package_names", None) or ()),
                                  prune=not has_post_solve()),
    )
    out = []
    for role, effect, why in effects:
        where = destination if role == "destination" and destination else prefix
        out.append(make_target(rt, where, effect, why))
    return out


# ---------------------------------------------------------------------------------------------
# the action


def advise(rt: Runtime, command: str, args: Any, prefix: Path) -> None:
    """Frozen marker on conda < 25.5, base-install warning, naming lint (advice.py)."""
    from conda import __version__ as conda_version

    from . import advice

    is_base = rt.locator.root_prefix is not None and prefix == rt.locator.root_prefix
    refusal = advice.frozen_refusal(command, prefix, rt.locator.short_name(prefix),
                                    conda_version)
    if refusal is not None:
        raise refusal
    notes = []
    if rt.settings.warn_base_installs:
        notes.append(advice.base_install_warning(command, is_base))
    name = getattr(args, "name", None)
    if rt.settings.name_lint and command in ("create", "env_create") and name:
        notes.append(advice.name_lint(os.path.basename(str(name))))
    for note in notes:
        if note:
            print(note, file=sys.stderr)


def pre_command(run_for_name: str) -> None:
    """conda's pre-command action. Raises a CondaError to stop the command."""
    from conda.base.context import context

    from . import suggest
    from .guard import detect_interactive, enforce

    suggest.set_prog(suggest.INSIDE_CONDA)
    args = getattr(context, "_argparse_args", None)  # private: guarded, tested per conda
    if args is None:
        return
    argv = list(sys.argv)
    try:
        rt = runtime_from_context()
        if not rt.settings.enabled:
            return
        command = canonical_command(run_for_name, args, argv)
        advise(rt, command, args, Path(context.target_prefix))
        targets = targets_for(rt, command, args, context, argv)
        if not any(t.effect is not Effect.NONE for t in targets):
            return
        yes = _explicit_yes(context, argv) if command == "env_create" else \
            bool(getattr(args, "yes", False)) or bool(context.always_yes)
        inv = Invocation(tool="conda", interactive=detect_interactive(), yes=yes,
                         json=bool(context.json), dry_run=bool(context.dry_run))
        os.environ[ENV_PLUGIN_ACTIVE] = "1"  # children (e.g. conda run) see one layer decided
        enforce(rt, targets, inv, argv=["conda", *argv[1:]], reason=f"before {command}")
    except SafeguardError as e:
        raise to_conda_error(e) from None
