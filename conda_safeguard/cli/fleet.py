"""Verbs that tell whether envs are the same: fingerprint (one env, JSON for many nodes),
verify (an env against a reference), compare (many nodes' fingerprints), diff."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from .common import add_env_options, add_output_options, resolve_prefix, verb_parser

if TYPE_CHECKING:
    from pathlib import Path

    from ..fingerprint import PackageSet
    from ..references import Reference
    from ..snapshot import EnvState, SnapshotInfo
    from .runtime import Runtime


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "fingerprint", "A stable hash of an env's exact package set.", """
The hash covers every conda package (name, version, build, channel, package sha256) and every
pip package (name, version, git commit or archive hash). Two envs with the same fingerprint hold
the same packages, wherever they live. --json prints the document `compare` reads: collect one
per node and compare them.
examples:
  conda-safeguard fingerprint -n pytorch
  conda-safeguard fingerprint -n pytorch --json --node "$(hostname)" > node1.json""")
    p.add_argument("env", nargs="?", metavar="ENV", help="env name or prefix (or use -n/-p)")
    add_env_options(p)
    p.add_argument("--node", metavar="LABEL", help="name this node in the JSON (default: host)")
    add_output_options(p)
    p.set_defaults(func=cmd_fingerprint)
    register_checks(sub)


def _prefix(rt: Runtime, args: argparse.Namespace) -> Path:
    """The env: a bare ENV argument, or -n/-p, or the active env."""
    from pathlib import Path

    from ..exceptions import UsageError
    from ..prefix import require_env

    if args.env:
        if args.name or args.prefix:
            raise UsageError(f"Give the env once, {args.env!r} or -n/-p, not both (a reference "
                             "to compare with goes behind --against).")
        is_path = "/" in args.env or args.env.startswith(".")
        return require_env(rt.locator.resolve(None if is_path else args.env,
                                              Path(args.env) if is_path else None))
    return require_env(resolve_prefix(rt, args))


def _package_set(rt: Runtime, prefix: Path) -> PackageSet:
    """The env's package set, reusing the parsed records the last backup left in the store's
    cache (read only here; a missing or damaged store or cache just means parsing them all)."""
    import os

    from ..exceptions import SafeguardError
    from ..fingerprint import read_package_set
    from ..store import prefix_key

    cache = None
    if os.path.isfile(rt.store_path / "config"):  # never create a store to read a cache
        try:
            cache = rt.store(create=False).read_cache(f"records-{prefix_key(prefix)}.json")
        except SafeguardError:
            cache = None
    return read_package_set(prefix, cache or None)


def cmd_fingerprint(rt: Runtime, args: argparse.Namespace) -> int:
    from ..fingerprint import fingerprint_doc, summary_lines

    prefix = _prefix(rt, args)
    doc = fingerprint_doc(prefix, env_name=rt.locator.name_of(prefix), node=args.node,
                          packages=_package_set(rt, prefix))
    if rt.json:
        rt.emit_json(doc)
    else:
        for line in summary_lines(doc):
            rt.out(line)
    return 0


# ---------------------------------------------------------------------------------------------
# verify, compare, diff: exit 0 same, 1 differs, 2 trouble (as diff(1))

EXIT_NOTES = """
exit status: 0 the same (with what was compared, counted); 1 differs (printed); 2 trouble: a
reference, env or node file that cannot be read (one line on stderr; nothing compared)."""


def register_checks(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = verb_parser(sub, "verify", "Check an env against a reference, or its files against its "
                    "records.", f"""
REF: a snapshot (an id prefix, ENV, ENV@-1), an environment.yml, an explicit lockfile
(`conda list --explicit`), a conda-lock v1 file, or another node's `fingerprint --json` file
(a REF that names an existing file is read as a file; the format is told from its content).
Drift found: a different version/build/channel/hash, a package missing or extra, a pip package
installed over a conda one (`pip install -U requests`); with --files (the default without
--against), every file conda linked is re-hashed against the package's recorded sha256.
examples:
  conda-safeguard verify -n pytorch --against environment.yml
  conda-safeguard verify -n pytorch --against node1.json --json --node "$(hostname)"
  conda-safeguard verify pytorch --against pytorch@-1 --files
  conda-safeguard verify -n pytorch                       files only
{EXIT_NOTES}""")
    p.add_argument("env", nargs="?", metavar="ENV", help="env name or prefix (or use -n/-p)")
    add_env_options(p)
    p.add_argument("--against", metavar="REF", help="what the env should hold (see above)")
    p.add_argument("--files", action="store_true",
                   help="also re-hash every file against its package's records")
    p.add_argument("--node", metavar="LABEL", help="name this node in the JSON (default: host)")
    add_output_options(p)
    p.set_defaults(func=_trouble_is_2(cmd_verify))

    p = verb_parser(sub, "compare", "Compare the fingerprints collected from many nodes.", f"""
FILE: `fingerprint --json` or `verify --json` output of one node each ('-' or none: stdin, which
may hold many documents one after another). Nodes are grouped by fingerprint; every node
outside the most common group (or --baseline NODE's) is explained package by package.
examples:
  srun --nodes=4 --ntasks-per-node=1 conda-safeguard fingerprint -n ml --json > all.json
  conda-safeguard compare all.json
  conda-safeguard compare node1.json node2.json node3.json --baseline node1
{EXIT_NOTES}""")
    p.add_argument("files", nargs="*", metavar="FILE", help="node documents (default: stdin)")
    p.add_argument("--baseline", metavar="NODE", help="compare every node with this one")
    add_output_options(p)
    p.set_defaults(func=_trouble_is_2(cmd_compare))

    p = verb_parser(sub, "diff", "What differs between two snapshots or envs, or an env and its "
                    "last snapshot.", f"""
A and B: an env as it is now (a name or prefix), or a snapshot (an id prefix, ENV@latest,
ENV@-1, ENV@<id>, or the name of an env that no longer exists). With A alone: an env is compared
with its latest snapshot (what changed since), a snapshot with its env as it is now.
examples:
  conda-safeguard diff pytorch                what changed since the last snapshot
  conda-safeguard diff pytorch@-1 pytorch     that snapshot vs the env now
  conda-safeguard diff pytorch pytorch-copy   two envs as they are now
  conda-safeguard diff pytorch@-2 pytorch@-1
{EXIT_NOTES}""")
    p.add_argument("a", metavar="A", help="env or snapshot")
    p.add_argument("b", nargs="?", metavar="B", help="env or snapshot (see above)")
    add_output_options(p)
    p.set_defaults(func=_trouble_is_2(cmd_diff))


def _trouble_is_2(fn: Callable[[Runtime, argparse.Namespace], int],
                  ) -> Callable[[Runtime, argparse.Namespace], int]:
    """1 means "differs" for these verbs: an error is trouble, exit 2 (as diff(1))."""
    def run(rt: Runtime, args: argparse.Namespace) -> int:
        from ..exceptions import SafeguardError

        try:
            return fn(rt, args)
        except SafeguardError as e:
            if e.exit_code == 1:
                e.exit_code = 2
            raise
    run.__doc__ = fn.__doc__
    return run


def _reference(rt: Runtime, ref: str, platform: str | None) -> Reference:
    """A file if REF names one, else a snapshot in the store."""
    import os
    from pathlib import Path

    from ..references import BadReferenceError, from_state, load_file

    if os.path.isfile(ref):
        return load_file(Path(ref), platform=platform)
    if os.path.isdir(ref):
        raise BadReferenceError(ref, "it is a folder (to compare two envs use `diff ENV_A ENV_B`)")
    from ..exceptions import SafeguardError

    try:
        store = rt.store(create=False)
        info = store.resolve(ref)
    except SafeguardError as e:
        raise BadReferenceError(ref, f"it is not a file, and not a snapshot ({e})") from None
    return from_state(store.load_state(info), f"snapshot {info.short_id} of {info.env_name} "
                      f"({info.created[:19]}Z)")


def cmd_verify(rt: Runtime, args: argparse.Namespace) -> int:
    from ..fingerprint import fingerprint_doc
    from ..fleet import compare_to_reference
    from ..verify import verify

    prefix = _prefix(rt, args)
    if not args.against:  # the files against the env's own records
        report = verify(prefix, None, progress=rt.info)
        same = report.identical and report.files_checked > 0
        if rt.json:
            rt.emit_json({**report.to_dict(), "same": same})
        else:
            verdict = report.verdict if report.files_checked or not report.identical else \
                "nothing compared (no file has a recorded hash)"
            rt.out(f"{prefix}: {verdict} ({report.summary})")
            for line in report.details():
                rt.out(f"  {line}")
        return 0 if same else 1
    packages = _package_set(rt, prefix)
    ref = _reference(rt, args.against, packages.platform)
    cmp = compare_to_reference(packages, ref)
    files = verify(prefix, None, progress=rt.info) if args.files else None
    nothing = cmp.conda_compared + cmp.pip_compared == 0
    same = cmp.same and not nothing and (files is None or files.identical)
    if rt.json:
        doc = fingerprint_doc(prefix, env_name=rt.locator.name_of(prefix), node=args.node,
                              packages=packages)
        # "same" last: the package comparison's own "same" does not know about --files
        rt.emit_json({"against": ref.label, "reference_kind": ref.kind, **cmp.to_dict(),
                      "files": files.to_dict() if files else None, "node": doc, "same": same})
        return 0 if same else 1
    name = rt.locator.name_of(prefix)
    rt.out(f"{name if name == str(prefix) else f'{name} ({prefix})'} against {ref.label}:")
    rt.out(f"  {cmp.verdict()}")
    for d in cmp.differences:
        rt.out(f"  {d.line()}")
    for note in cmp.not_checked:
        rt.out(f"  not checked: {note}")
    if files is not None:
        rt.out(f"  files: {files.verdict} ({files.summary})")
        for line in files.details():
            rt.out(f"    {line}")
    return 0 if same else 1


def cmd_compare(rt: Runtime, args: argparse.Namespace) -> int:
    import sys

    from ..fleet import compare_nodes, make_node, read_node_docs
    from ..references import BadReferenceError

    sources = args.files or ["-"]
    if "-" in sources and sys.stdin.isatty():
        from ..exceptions import UsageError

        raise UsageError("compare reads node documents from stdin, and stdin is a terminal: "
                         "give the files (compare fp/*.json) or pipe them in.")
    nodes = []
    taken: set[str] = set()
    for source in sources:
        if source == "-":
            text, name = sys.stdin.read(), "stdin"
        else:
            try:
                with open(source, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise BadReferenceError(source, getattr(e, "strerror", None) or str(e)) from None
            name = source
        for doc in read_node_docs(text, name):
            nodes.append(make_node(doc, name, taken))
    report = compare_nodes(nodes, args.baseline)
    if rt.json:
        rt.emit_json(report.to_dict())
        return 0 if report.same else 1
    groups = report.groups()
    sizes = sorted({(len(n.ref.packages.conda), len(n.ref.packages.pip)) for n in nodes})
    rt.out(f"{len(nodes)} nodes, {len(groups)} fingerprint{'s' if len(groups) != 1 else ''}; "
           f"baseline {report.baseline[:12]} ({report.baseline_why}); packages per node: "
           + ", ".join(f"{c} conda + {p} pip" for c, p in sizes))
    for line in report.table():
        rt.out(line)
    for label, cmp in report.against_baseline.items():
        rt.out(f"{label} vs baseline: {cmp.verdict()}")
        for d in cmp.differences:
            rt.out(f"  {d.line()}")
    for problem in report.problems:
        rt.out(f"problem: {problem}")
    if report.same:
        rt.out(f"all {len(nodes)} nodes hold the same packages")
    return 0 if report.same else 1


# -- diff


def _diff_side(rt: Runtime, ref: str) -> tuple[str, EnvState, str | None, SnapshotInfo | None]:
    """(label, state, prefix of an env as it is now, snapshot) for one side of `diff`."""
    import os
    from pathlib import Path

    from ..prefix import is_env
    from ..snapshot import capture

    if "@" not in ref:
        path = Path(ref) if os.sep in ref or ref.startswith(".") else None
        prefix = (path if path is not None and is_env(path)
                  else rt.locator.prefix_for_name(ref) if path is None else None)
        if prefix is not None:
            prefix = Path(os.path.abspath(prefix))
            return f"{rt.locator.name_of(prefix)} now", capture(prefix), str(prefix), None
    store = rt.store(create=False)
    info = store.resolve(ref)
    return (f"{info.env_name} snapshot {info.short_id} ({info.created[:19].replace('T', ' ')}Z)",
            store.load_state(info), None, info)


def cmd_diff(rt: Runtime, args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..exceptions import SnapshotNotFoundError
    from ..prefix import require_env
    from ..snapshot import capture, diff_states

    a_label, a_state, a_prefix, a_info = _diff_side(rt, args.a)
    if args.b:
        b_label, b_state, _, b_info = _diff_side(rt, args.b)
    elif a_prefix is not None:  # an env alone: its latest snapshot -> now
        store = rt.store(create=False)
        latest = store.latest_of(a_prefix)
        if latest is None:
            raise SnapshotNotFoundError(args.a, " (the env has no snapshot yet: run "
                                        f"`conda-safeguard backup -p {a_prefix}`)")
        b_label, b_state, b_info = a_label, a_state, None
        a_label, a_state, a_info = (f"{latest.env_name} snapshot {latest.short_id} "
                                    f"({latest.created[:19].replace('T', ' ')}Z)",
                                    store.load_state(latest), latest)
    else:  # a snapshot alone: -> its env now
        assert a_info is not None
        prefix = require_env(Path(a_info.prefix))
        b_label, b_state, b_info = f"{a_info.env_name} now", capture(prefix), None
    d = diff_states(a_state, b_state)
    if rt.json:
        rt.emit_json({"same": not d, "from": {"label": a_label, "snapshot": a_info.id if a_info
                                              else None},
                      "to": {"label": b_label, "snapshot": b_info.id if b_info else None},
                      "changes": [c.to_dict() for c in d.changes],
                      "variables_changed": d.variables_changed, "counts": d.counts(),
                      "compared": {"a": {"conda": len(a_state.packages), "pip": len(a_state.pip)},
                                   "b": {"conda": len(b_state.packages),
                                         "pip": len(b_state.pip)}}})
        return 1 if d else 0
    rt.out(f"{a_label} -> {b_label}")
    if not d:
        rt.out(f"  no differences ({len(a_state.packages)} conda and {len(a_state.pip)} pip "
               "packages compared, and env vars)")
    for c in d.changes:
        mark = {"added": "+", "removed": "-", "changed": "~"}[c.status]
        kind = "" if c.kind == "conda" else " (pip)"
        detail = c.new if c.status == "added" else c.old if c.status == "removed" \
            else f"{c.old} -> {c.new}"
        rt.out(f"  {mark} {c.name}{kind}  {detail}")
    for var in d.variables_changed:
        rt.out(f"  ~ env var {var}")
    return 1 if d else 0
