"""Rendering a snapshot as files users and tools know: environment.yml, explicit lockfile, pip.

`environment_yml()` is byte-identical to `conda env export` for the same env: the same fields in
the same order, dumped by ruamel.yaml configured exactly as conda configures it.
"""

from __future__ import annotations

import io
import re
from typing import Any

from . import __version__
from .snapshot import EnvState, SnapshotInfo

EXPLICIT_MARKER = "@EXPLICIT"
YML_FORMS = ("full", "no-builds", "from-history")


def _dump_yaml(data: dict[str, Any]) -> str:
    from ruamel.yaml import YAML  # imported here: only rendering pays for it

    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, offset=2, sequence=4)  # as conda.common.serialize.yaml
    yaml.default_flow_style = False
    stream = io.StringIO()
    yaml.dump(data, stream)
    return stream.getvalue()


# ---------------------------------------------------------------------------------------------
# `channels:` as each conda writes it

#: The first conda whose `env export` lists the packages' channels in order, then the
#: configured ones (conda.models.environment); before it, each package channel not yet listed
#: was inserted at the front of the configured ones (conda.env.env.from_environment).
_CHANNELS_IN_ORDER_SINCE = "25.11.1"
#: Before it, conda added `defaults` when no channels were configured (25.11: none).
_NO_IMPLICIT_DEFAULTS_SINCE = "25.11.1"
#: conda 23.x added `defaults` only when `channels` was not set at all (`[]` meant none).
_EMPTY_LIST_MEANS_DEFAULTS_SINCE = "24.11.3"


def configured_channels(condarc_channels: object, conda_version: str | None) -> list[str]:
    """What conda's `context.channels` holds for a .condarc `channels:` value (None: unset),
    for the standalone command; the plugin reads context.channels itself."""
    from .condaversion import nearest_tested, version_key

    channels = [str(c) for c in condarc_channels] if isinstance(condarc_channels, list) else []
    if channels:
        return channels
    behaves_like = version_key(nearest_tested(conda_version))
    if behaves_like >= version_key(_NO_IMPLICIT_DEFAULTS_SINCE):
        return []
    if condarc_channels is None or behaves_like >= version_key(_EMPTY_LIST_MEANS_DEFAULTS_SINCE):
        return ["defaults"]
    return []


def export_channels(package_channels: list[str], configured: list[str],
                    conda_version: str | None) -> list[str]:
    """The `channels:` list `conda env export` writes, from the exported packages' channel
    names (in name order, as conda iterates them) and conda's configured channels."""
    from .condaversion import nearest_tested, version_key

    if version_key(nearest_tested(conda_version)) >= version_key(_CHANNELS_IN_ORDER_SINCE):
        known = [c for c in package_channels if c != "<unknown>"]
        return list(dict.fromkeys([*known, *configured]))
    channels = list(configured)
    for channel in package_channels:
        if channel not in channels:
            channels.insert(0, channel)
    return channels


def environment_dict(info: SnapshotInfo, state: EnvState, form: str = "full", *,
                     include_prefix: bool = True) -> dict[str, Any]:
    if form not in YML_FORMS:
        raise ValueError(f"unknown environment.yml form {form!r}")
    data: dict[str, Any] = {"name": info.env_name}
    if info.channels:
        data["channels"] = list(info.channels)
    deps: list[Any] = []
    if form == "from-history":
        # conda's --from-history drops versions (c#10345); ours keeps the installed version of
        # each requested package, so the file recreates what was there, not the latest.
        installed = state.package_map()
        for name in state.requested:
            record = installed.get(name)
            deps.append(f"{name}={record.version}" if record else state.requested[name])
    else:
        for r in state.packages:
            if r.is_exported:
                deps.append(f"{r.name}={r.version}" if form == "no-builds"
                            else f"{r.name}={r.version}={r.build}")
    if deps and state.pip:
        # conda writes name==version and loses VCS/editable sources; from-history is ours, so
        # it keeps them.
        deps.append({"pip": [d.requirement() if form == "from-history"
                             else f"{d.name}=={d.version}" for d in state.pip]})
    data["dependencies"] = deps
    if state.variables:
        data["variables"] = dict(state.variables)
    if include_prefix:
        data["prefix"] = info.prefix
    return data


def environment_yml(info: SnapshotInfo, state: EnvState, form: str = "full", *,
                    include_prefix: bool = True) -> str:
    return _dump_yaml(environment_dict(info, state, form, include_prefix=include_prefix))


def _strip_auth(url: str) -> str:
    if url.startswith("file:"):
        return url  # no tokens or passwords; a folder named `t` is just a folder
    url = re.sub(r"/t/[^/]*/", "/", url, count=1)  # anaconda.org token segment
    return re.sub(r"^([a-z+]+://)[^/@]*@", r"\1", url)  # user:password@


def explicit(info: SnapshotInfo, state: EnvState, *, sha256: bool = False) -> str:
    """An explicit lockfile `conda create --file` accepts: one URL a package, with its hash.

    conda's parser takes one hash a line: md5 (as `conda list --explicit --md5`) or, with
    `sha256=True`, `#sha256:<hex>` where the record has one.
    """
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {state.platform}",
        f"# created-by: conda-safeguard {__version__} (snapshot {info.short_id} of "
        f"{info.env_name}, {info.created})",
        EXPLICIT_MARKER,
    ]
    for r in ordered_for_install(state):
        if not r.url or r.url.startswith("<unknown>"):
            lines.append(f"# no URL for: {r.fn}")
            continue
        url = _strip_auth(r.url)
        if sha256 and r.sha256:
            lines.append(f"{url}#sha256:{r.sha256}")
        elif r.md5:
            lines.append(f"{url}#{r.md5}")
        else:
            lines.append(url)
    return "\n".join(lines) + "\n"


def pip_requirements(state: EnvState) -> str:
    """pip requirement lines that reinstall the same distributions from the same sources."""
    lines = []
    for d in state.pip:
        if d.editable:
            lines.append(f"# editable install of {d.name} {d.version}; its source must still "
                         "exist at this path")
        lines.append(d.requirement())
    return "\n".join(lines) + ("\n" if lines else "")


def ordered_for_install(state: EnvState) -> list[Any]:
    """Dependencies before dependents (a stable topological order), as explicit files list them."""
    by_name = state.package_map()
    done: set[str] = set()
    order = []

    def visit(name: str, stack: set[str]) -> None:
        if name in done or name in stack or name not in by_name:
            return
        stack.add(name)
        for dep in by_name[name].depends:
            visit(re.split(r"[\s=<>!~\[]", dep.strip(), maxsplit=1)[0], stack)
        stack.discard(name)
        done.add(name)
        order.append(by_name[name])

    for r in state.packages:
        visit(r.name, set())
    return order
