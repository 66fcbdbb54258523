"""conda's post-solve hook: a `conda remove` whose solve empties a protected env.

`conda remove -n X pkga` also takes out what depends on pkga and prunes what nothing requested
needs any more, so one name can leave X empty. The pre-command sees only the names typed; this
sees conda's own answer (the packages the transaction unlinks and links) before anything is
unlinked, and stops the command the way the pre-command would (conda >= 24.x; older conda
gets the pre-command's estimate, prefix.packages_left_after_remove).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .exceptions import SafeguardError

log = logging.getLogger(f"conda.{__name__}")

WHY = ("remove all packages from it (conda's solver also removes the packages that depend on "
       "those named and prunes what nothing else needs)")


def empties_env(installed: set[str], unlink: Iterable[Any], link: Iterable[Any]) -> bool:
    """The transaction leaves no package in an env that had some."""
    after = (installed - {p.name for p in unlink}) | {p.name for p in link}
    return bool(installed) and not after


def post_solve(unlink_precs: Iterable[Any], link_precs: Iterable[Any]) -> None:
    from conda.base.context import context

    from .guard import detect_interactive, enforce, make_target
    from .hooks import runtime_from_context, to_conda_error
    from .policy import Effect, Invocation
    from .prefix import is_env, read_records, removes_every_package

    args = getattr(context, "_argparse_args", None)  # private: guarded, tested per conda
    if args is None or getattr(args, "cmd", None) not in ("remove", "uninstall") \
            or getattr(args, "all", False):
        return
    prefix = Path(context.target_prefix)
    specs = tuple(getattr(args, "package_names", None) or ())
    if not is_env(prefix) or removes_every_package(
            prefix, specs, prune=False, force=bool(getattr(args, "force_remove", False))):
        return  # the pre-command already decided on this one (the names cover the env)
    try:
        installed = {r.name for r in read_records(prefix)}
        if not empties_env(installed, unlink_precs, link_precs):
            return
        rt = runtime_from_context()
        if not rt.settings.enabled:
            return
        target = make_target(rt, prefix, Effect.DESTROY, WHY)
        inv = Invocation(tool="conda", interactive=detect_interactive(),
                         yes=bool(getattr(args, "yes", False)) or bool(context.always_yes),
                         json=bool(context.json), dry_run=bool(context.dry_run))
        enforce(rt, [target], inv, argv=["conda", "remove", *specs],
                reason="before remove (solved to empty the env)")
    except SafeguardError as e:
        raise to_conda_error(e) from None
