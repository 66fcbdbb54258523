"""conda pre-command actions: read conda's context, classify, then guard.enforce().

Imported only when a command in `run_for` runs (plugin.py imports it inside the action), so
`conda list` pays nothing for it. Every conda import is inside a function.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .condarc import truthy
from .constants import ENV_BUILDING, ENV_PLUGIN_ACTIVE, RUN_FOR
from .exceptions import SafeguardError
from .policy import Effect, Invocation, Target, classify

if TYPE_CHECKING:
    from .cli.runtime import Runtime
    from .condarc import Settings

log = logging.getLogger(f"conda.{__name__}")

__all__ = ["RUN_FOR", "pre_command", "runtime_from_context", "to_conda_error"]


# ---------------------------------------------------------------------------------------------
# conda's context -> our Runtime


def settings_from_context() -> Settings:
    """Our settings as conda sees them: conda's plugin settings, or (conda < 24.3, which has
    none) the `plugins:` section of the .condarc files and CONDA_PLUGINS_SAFEGUARD_* variables,
    read the way the standalone command reads them."""
    from conda.base.context import context

    from .condarc import (
        SETTINGS_SCHEMA,
        condarc_paths,
        load_settings,
        read_condarc,
        settings_from_mapping,
    )

    plugins = getattr(context, "plugins", None)
    if plugins is None:
        return load_settings(read_condarc(condarc_paths(Path(context.root_prefix))))
    values: dict[str, Any] = {}
    for name in SETTINGS_SCHEMA:
        value = getattr(plugins, name, None)
        if value is not None:
            values[name] = list(value) if isinstance(value, tuple) else value
    return settings_from_mapping(values)


def runtime_from_context(settings: Settings | None = None) -> Runtime:
    """A Runtime whose env dirs, channels, settings and output mode are exactly conda's."""
    from conda.base.context import context

    from .cli.runtime import Runtime
    from .envs import EnvLocator

    locator = EnvLocator(root_prefix=Path(context.root_prefix),
                         envs_dirs=[Path(d) for d in context.envs_dirs])
    return Runtime(locator=locator,
                   settings=settings if settings is not None else settings_from_context(),
                   configured_channels=list(context.channels),
                   json=bool(context.json), quiet=bool(context.quiet),
                   conda_version=_conda_version())


def _conda_version() -> str:
    from conda import __version__

    return str(__version__)


def to_conda_error(error: SafeguardError) -> Exception:
    """conda prints a CondaError cleanly (and as a JSON object under --json)."""
    from .exceptions import to_conda_error as convert

    return convert(error)


# ---------------------------------------------------------------------------------------------
# what the command is, from what conda parsed (never sys.argv: conda may run inside another
# program, whose command line that is)


def canonical_command(run_for_name: str, args: Any) -> str:
    """conda's pre-command name -> policy's command name.

    How each command arrives, by conda version: `env create` as `env_create` (conda_env's own
    CLI on 23.x; conda.cli.main_env_create on 24.x-25.x) or as `create` with the env-create
    parser's `clone=False` default (26.x, where `conda create` leaves `--clone` at None);
    `env remove` as `env_remove` (23.x) or as `remove` with `all=True` (24.x on).
    """
    if run_for_name == "create" and getattr(args, "clone", None) is False:
        return "env_create"
    if run_for_name == "env_vars":  # `env config vars set|unset` change it; `list` reads
        func = str(getattr(args, "func", ""))
        return "env_vars" if func.endswith(("execute_set", "execute_unset")) else "env_vars_list"
    if run_for_name == "install" and getattr(args, "revision", None) not in (None, ""):
        return "install_revision"
    return run_for_name


def _yes_from_config(context: Any) -> bool:
    """always_yes from .condarc files and CONDA_ALWAYS_YES, not from this command line."""
    for source, data in getattr(context, "raw_data", {}).items():
        if source == "cmd_line":
            continue
        raw = data.get("always_yes") if hasattr(data, "get") else None
        value = getattr(raw, "_raw_value", raw)
        if truthy(value):
            return True
    return False


def _yes(run_for_name: str, command: str, args: Any, context: Any) -> bool:
    """-y/--yes or always_yes, as the user set them.

    conda 26's `env create` parser defaults yes=True, so there a typed -y cannot be told from
    the default: only the config sources count (at a terminal the typed-name prompt then asks,
    which still needs the person's consent). conda 23's conda-env lets its yes=False default
    hide always_yes from context, so config sources are read for every `env create`. rename on
    conda 23.x says --force for --yes.
    """
    if command == "env_create":
        typed = run_for_name != "create" and bool(getattr(args, "yes", False))
        return typed or _yes_from_config(context)
    if command == "rename" and getattr(args, "force", False):
        return True
    return bool(getattr(args, "yes", False)) or bool(context.always_yes)


def _env_file(args: Any) -> str | None:
    files = getattr(args, "file", None)
    if not files:
        return None
    return str(files[0] if isinstance(files, (list, tuple)) else files)


def _readable_or_remote(file: str) -> bool:
    from .cmdline import is_url

    return is_url(file) or os.access(file, os.R_OK)


def _env_file_target(rt: Runtime, args: Any) -> Path | None:
    """`conda env create -f x.yml` (and conda 26's `create -f x.yml`) without -n/-p: the target
    is named in the file. None when the file names none or cannot be read: conda then reports
    that itself (EnvironmentFileNotFound …), and we must not guess another target."""
    from .cmdline import is_url, read_env_file_target

    file = _env_file(args)
    if file is None or is_url(file):
        return None
    try:
        name, prefix = read_env_file_target(file)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        log.debug("could not read env file %s: %s", file, e)
        return None
    if prefix:
        return Path(os.path.abspath(os.path.expanduser(prefix)))
    if name:
        return rt.locator.resolve(name=name, must_exist=False)
    return None


def _conda_release() -> tuple[int, ...]:
    from conda import __version__

    return tuple(int(p) for p in __version__.split(".")[:2] if p.isdigit())


def has_post_solve() -> bool:
    """conda >= 24.x shows plugins its solve (postsolve.py); older conda needs our estimate of
    what a remove prunes."""
    from conda.plugins import hookspec

    return hasattr(hookspec.CondaSpecs, "conda_post_solves")


def _building(prefix: str) -> bool:
    """This conda is the one a restore runs to add packages to the env it builds there: the
    variable names the prefix and a restore's journal is beside it. The variable alone (left
    exported in a shell, or set on purpose) does not turn snapshots off."""
    named = os.environ.get(ENV_BUILDING) or None
    if not _same(named, prefix):
        return False
    from .transaction import restore_under_way

    return restore_under_way(Path(prefix))


def _same(a: Path | str | None, b: Path | str | None) -> bool:
    if not a or not b:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _conda_refuses_rename(rt: Runtime, source: Path, destination: Path | None, yes: bool,
                          context: Any) -> bool:
    """conda refuses these renames with its own error: let it (the env is safe either way)."""
    return (_same(source, rt.locator.root_prefix)
            or _same(source, getattr(context, "active_prefix", None))
            or destination is None
            or (destination.exists() and not yes))


def targets_for(rt: Runtime, run_for_name: str, command: str, args: Any, context: Any
                ) -> list[Target]:
    from .guard import make_target
    from .prefix import is_env, removes_every_package, revision_removed_names

    named = bool(getattr(args, "name", None) or getattr(args, "prefix", None))
    prefix = Path(context.target_prefix)
    if command == "create" and not named and _conda_release() < (26,):
        return []  # conda < 26 requires -n/-p for `create` and says so itself
    env_file = _env_file(args)
    if command in ("env_create", "env_update", "create") and env_file is not None \
            and not _readable_or_remote(env_file):
        return []  # conda stops at the missing file (EnvironmentFileNotFound) before any change
    if command in ("env_create", "env_update", "create") and not named \
            and _env_file(args) is not None:
        from_file = _env_file_target(rt, args)
        if from_file is None:
            return []  # conda will report the file (or the missing name) itself
        prefix = from_file
    elif command in ("env_create", "env_update") and not named:
        return []  # no file: conda reports it
    yes = _yes(run_for_name, command, args, context)
    destination = None
    if command == "rename":
        dest = getattr(args, "destination", None)
        destination = rt.locator.resolve(name=dest, must_exist=False) if dest else None
        if _conda_refuses_rename(rt, prefix, destination, yes, context):
            return []
    packages = tuple(getattr(args, "package_names", None) or ())
    if command == "remove" and packages and _names_conda_cannot_find(prefix, packages):
        return []  # conda stops with PackagesNotFound(InPrefix)Error and changes nothing
    removed_by_revision = revision_removed_names(prefix, str(args.revision)) \
        if command == "install_revision" else []
    effects = classify(
        command,
        remove_all=bool(getattr(args, "all", False)) or command == "env_remove",
        target_exists=is_env(prefix),
        destination_exists=destination is not None and is_env(destination),
        yes=yes,
        revision_removes_packages=bool(removed_by_revision),
        empties_env=command == "remove" and not getattr(args, "all", False)
        and removes_every_package(prefix, packages, prune=not has_post_solve(),
                                  force=bool(getattr(args, "force_remove", False))),
    )
    out = []
    for role, effect, why in effects:
        where = destination if role == "destination" and destination else prefix
        if removed_by_revision and effect is Effect.DESTROY:
            n = len(removed_by_revision)
            why = (f"roll it back to revision {args.revision}, removing {n} "
                   f"package{'s' if n != 1 else ''} ({', '.join(removed_by_revision)})")
        out.append(make_target(rt, where, effect, why))
    return out


def _names_conda_cannot_find(prefix: Path, packages: tuple[str, ...]) -> bool:
    """`remove` naming a package that is not installed: conda stops with its own
    PackagesNotFoundInPrefixError and removes nothing."""
    from .exceptions import CorruptEnvError
    from .prefix import read_records, spec_name_pattern

    try:
        installed = {r.name for r in read_records(prefix)}
    except (CorruptEnvError, OSError):
        return False
    names = [spec_name_pattern(p) for p in packages]  # globs kept: 'p*' is not a name
    return any(not any(ch in n for ch in "*?[") and n not in installed for n in names)


def _command_line(command: str, args: Any, prefix: str) -> list[str]:
    """What the snapshot records as the command: rebuilt from what conda parsed."""
    typed = {"install_revision": ["install"], "env_vars": ["env", "config", "vars"]}
    words = ["conda", *typed.get(command, command.split("_")), "-p", prefix]
    words += [str(p) for p in getattr(args, "package_names", None) or ()]
    words += [str(p) for p in getattr(args, "packages", None) or ()]
    if getattr(args, "all", False) and command == "remove":
        words.append("--all")
    if getattr(args, "revision", None):
        words += ["--revision", str(args.revision)]
    if getattr(args, "destination", None):
        words.append(str(args.destination))
    return words


# ---------------------------------------------------------------------------------------------
# the action


@contextlib.contextmanager
def _plugin_active() -> Iterator[None]:
    """While we decide and snapshot, children we start see that the plugin decided; the
    variable is gone again when conda goes on (it may run more commands in this process)."""
    before = os.environ.get(ENV_PLUGIN_ACTIVE)
    os.environ[ENV_PLUGIN_ACTIVE] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_PLUGIN_ACTIVE, None)
        else:
            os.environ[ENV_PLUGIN_ACTIVE] = before


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
            rt.info(note)  # nothing of ours under --json or -q: conda's output stays conda's


def pre_command(run_for_name: str) -> None:
    """conda's pre-command action. Raises a CondaError to stop the command."""
    from conda.base.context import context

    from . import suggest
    from .guard import detect_interactive, enforce

    suggest.set_prog(suggest.INSIDE_CONDA)
    args = getattr(context, "_argparse_args", None)  # private: guarded, tested per conda
    if args is None:
        return
    try:
        settings = settings_from_context()
        if not settings.enabled:
            return  # off means off: nothing else of conda's is read
        rt = runtime_from_context(settings)
        command = canonical_command(run_for_name, args)
        if command == "install" and _building(context.target_prefix):
            return  # restore adding packages to the env it builds: its transaction keeps the old
        advise(rt, command, args, Path(context.target_prefix))
        targets = targets_for(rt, run_for_name, command, args, context)
        if not any(t.effect is not Effect.NONE for t in targets):
            return
        inv = Invocation(tool="conda", interactive=detect_interactive(),
                         yes=_yes(run_for_name, command, args, context),
                         json=bool(context.json), dry_run=bool(context.dry_run))
        with _plugin_active():
            enforce(rt, targets, inv, argv=_command_line(command, args, targets[0].prefix),
                    reason=f"before {command}")
    except SafeguardError as e:
        raise to_conda_error(e) from None
