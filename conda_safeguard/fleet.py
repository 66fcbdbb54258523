"""Are these envs the same? One env against a reference, and many nodes against each other.

`compare_to_reference` says, package by package, where an env's package set differs from a
reference, and counts what it compared (a check that compared nothing must not say "same").
Only fields both sides know are compared: an explicit file has hashes but no pip packages, a
hand-written environment.yml has versions but no builds. `compare_nodes` groups many nodes'
fingerprint documents by fingerprint and explains each minority group against the majority.
conda-free.
"""

from __future__ import annotations

import fnmatch
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .fingerprint import Package, PackageSet, norm_name
from .references import BadReferenceError, Reference, check_node_doc, node_reference

_FIELDS = ("version", "build", "channel", "sha256", "md5")


@dataclass
class Difference:
    kind: str  # conda | pip
    name: str
    status: str  # missing | extra | changed | shadowed
    expected: str | None = None
    found: str | None = None
    fields: list[str] = field(default_factory=list)  # for changed: which fields differ

    def line(self) -> str:
        where = "" if self.kind == "conda" else " (pip)"
        if self.status == "missing":
            return f"- {self.name}{where}: missing (expected {self.expected})"
        if self.status == "extra":
            return f"+ {self.name}{where}: extra ({self.found})"
        if self.status == "shadowed":
            return f"! {self.name}: {self.found} shadows {self.expected}"
        return (f"~ {self.name}{where}: {', '.join(self.fields)} differ: expected "
                f"{self.expected}, found {self.found}")

    def short(self) -> str:
        if self.status == "missing":
            return f"-{self.name}"
        if self.status == "extra":
            return f"+{self.name}"
        if self.status == "shadowed":
            return f"!{self.name} (pip over conda)"
        return f"~{self.name} ({'/'.join(self.fields)})"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Comparison:
    reference: str
    differences: list[Difference] = field(default_factory=list)
    conda_compared: int = 0  # names looked at on both sides (present, missing or extra)
    pip_compared: int = 0
    fields: Counter[str] = field(default_factory=Counter)  # field -> packages it was compared on
    not_checked: list[str] = field(default_factory=list)  # what the reference could not say

    @property
    def same(self) -> bool:
        return not self.differences

    def compared_text(self) -> str:
        by = ", ".join(f"{f} {n}" for f, n in sorted(self.fields.items(),
                                                       key=lambda kv: _FIELDS.index(kv[0])
                                                       if kv[0] in _FIELDS else 99))
        text = f"{self.conda_compared} conda and {self.pip_compared} pip packages compared"
        return text + (f" (fields compared: {by})" if by else " (by name only)")

    def verdict(self) -> str:
        if self.conda_compared + self.pip_compared == 0:
            return "nothing compared: the reference lists no packages"
        if self.same:
            return f"same: {self.compared_text()}"
        counts = Counter(d.status for d in self.differences)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"differs ({parts}): {self.compared_text()}"

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "same": self.same, "verdict": self.verdict(),
                "compared": {"conda": self.conda_compared, "pip": self.pip_compared,
                             "fields": dict(self.fields)},
                "not_checked": self.not_checked,
                "differences": [d.to_dict() for d in self.differences]}


def _version_matches(want: Package, have: Package) -> bool:
    if want.version is None or have.version is None:
        return True
    if want.fuzzy:  # environment.yml `name=1.2` is conda's 1.2.*
        return have.version == want.version or have.version.startswith(want.version + ".")
    return have.version == want.version


def _field_diffs(want: Package, have: Package, counted: Counter[str]) -> list[str]:
    """Fields known on both sides that differ; counts each field compared."""
    diffs = []
    if want.version is not None and have.version is not None:
        counted["version"] += 1
        if not _version_matches(want, have):
            diffs.append("version")
    if want.build is not None and have.build is not None:
        counted["build"] += 1
        if not fnmatch.fnmatchcase(have.build, want.build):
            diffs.append("build")
    if want.channel is not None and have.channel is not None:
        counted["channel"] += 1
        if want.channel != have.channel:
            diffs.append("channel")
    if want.sha256 and have.sha256:  # the strongest hash both know, not both
        counted["sha256"] += 1
        if want.sha256 != have.sha256:
            diffs.append("sha256")
    elif want.md5 and have.md5:
        counted["md5"] += 1
        if want.md5 != have.md5:
            diffs.append("md5")
    if want.kind == "pip" and want.source and have.source:
        counted["source"] += 1
        if want.source != have.source:
            diffs.append("source")
    return diffs


def _compare_kind(cmp: Comparison, kind: str, want_by_name: dict[str, Package],
                  have_by_name: dict[str, Package], complete: bool,
                  reported_elsewhere: set[str] | frozenset[str] = frozenset()) -> int:
    """Adds the differences of one kind (conda or pip) to `cmp`; returns how many were compared.
    An extra package counts only against a complete reference, and not when it is one of
    `reported_elsewhere` (a pip dist shadowing a conda package is reported once, as such)."""
    compared = 0
    for name in sorted(set(want_by_name) | set(have_by_name)):
        want, have = want_by_name.get(name), have_by_name.get(name)
        if have is None and want is not None:
            cmp.differences.append(Difference(kind, name, "missing", expected=want.label()))
        elif want is None and have is not None:
            if not complete or norm_name(name) in reported_elsewhere:
                continue
            cmp.differences.append(Difference(kind, name, "extra", found=have.label()))
        elif want is not None and have is not None:
            diffs = _field_diffs(want, have, cmp.fields)
            if diffs:
                cmp.differences.append(Difference(kind, name, "changed", want.label(),
                                                  have.label(), diffs))
        compared += 1
    return compared


def compare_to_reference(env: PackageSet, ref: Reference) -> Comparison:
    """Where `env` differs from `ref`, and how much was compared."""
    cmp = Comparison(ref.label)
    want_c, have_c = ref.packages.conda, env.conda
    cmp.conda_compared += _compare_kind(cmp, "conda", want_c, have_c, ref.complete)
    if not ref.complete:
        extra = len(set(have_c) - set(want_c))
        cmp.not_checked.append(f"the reference names {len(want_c)} conda packages, not every "
                               f"package: {extra} others in the env were not checked")
    if ref.pip_known:
        shadowed = {norm_name(p.name) for _, p in env.shadowed()}
        cmp.pip_compared += _compare_kind(cmp, "pip", ref.packages.pip, env.pip, ref.complete,
                                          shadowed)
    elif env.pip:
        cmp.not_checked.append(f"{len(env.pip)} pip packages in the env: the reference "
                               "({}) cannot list pip packages".format(ref.kind))
    ref_pip = {norm_name(n) for n in ref.packages.pip}
    for conda_pkg, pip_pkg in env.shadowed():
        if norm_name(pip_pkg.name) not in ref_pip:  # the reference has the same shadowing: same
            cmp.differences.append(Difference(
                "pip", pip_pkg.name, "shadowed", expected=f"conda's {conda_pkg.label()}",
                found=f"pip's {pip_pkg.name} {pip_pkg.version}"))
    return cmp


# ---------------------------------------------------------------------------------------------
# many nodes


@dataclass
class Node:
    label: str
    doc: dict[str, Any]
    ref: Reference
    fingerprint: str  # recomputed from the lists, not taken on trust


@dataclass
class NodeReport:
    nodes: list[Node]
    baseline: str  # the fingerprint the others are compared with
    baseline_why: str
    against_baseline: dict[str, Comparison]  # node label -> comparison, for differing nodes
    problems: list[str]  # documents whose recorded fingerprint does not match their lists

    @property
    def same(self) -> bool:
        return not self.against_baseline and not self.problems

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for n in self.nodes:
            out.setdefault(n.fingerprint, []).append(n.label)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "same": self.same,
            "nodes": len(self.nodes),
            "fingerprints": len(self.groups()),
            "baseline": self.baseline,
            "baseline_why": self.baseline_why,
            "problems": self.problems,
            "table": [{"node": n.label, "env": n.doc.get("env"), "host": n.doc.get("host"),
                       "fingerprint": n.fingerprint, "platform": n.ref.packages.platform,
                       "conda": len(n.ref.packages.conda), "pip": len(n.ref.packages.pip),
                       "same": n.fingerprint == self.baseline,
                       "differences": [d.to_dict() for d in
                                       self.against_baseline[n.label].differences]
                       if n.label in self.against_baseline else []}
                      for n in self.nodes],
        }

    def table(self) -> list[str]:
        width = max(4, *(len(n.label) for n in self.nodes))
        env_w = max(3, *(len(printable(n.doc.get("env", ""))) for n in self.nodes))
        lines = [f"{'NODE':<{width}}  {'ENV':<{env_w}}  FINGERPRINT    CONDA   PIP  "
                 f"VS BASELINE"]
        for n in self.nodes:
            pk = n.ref.packages
            if n.fingerprint == self.baseline:
                status = "same"
            else:
                diffs = self.against_baseline[n.label].differences
                shown = ", ".join(d.short() for d in diffs[:6])
                status = f"DIFFERS: {shown}" + (f", … {len(diffs) - 6} more" if
                                                len(diffs) > 6 else "")
            lines.append(f"{n.label:<{width}}  {printable(n.doc.get('env', '')):<{env_w}}  "
                         f"{n.fingerprint[:12]}  {len(pk.conda):>6} {len(pk.pip):>5}  {status}")
        return lines


def read_node_docs(text: str, source: str) -> list[dict[str, Any]]:
    """Every JSON document in `text`: one object, a list of them, or several one after another
    (what `cat node*.json` or a collector's output gives)."""
    decoder = json.JSONDecoder()
    docs: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        try:
            value, pos = decoder.raw_decode(text, pos)
        except ValueError as e:
            raise BadReferenceError(source, f"invalid JSON ({e})") from None
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, dict):
                raise BadReferenceError(source, "a JSON value is not an object")
            docs.append(item)
    if not docs:
        raise BadReferenceError(source, "it holds no JSON document")
    return docs


def printable(value: Any, limit: int = 60) -> str:
    """A label from an untrusted document, safe to print in one table cell: no control
    characters (a newline or an escape sequence could forge rows), no spaces, bounded."""
    text = "".join(c if c.isprintable() and not c.isspace() else "?" for c in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def make_node(doc: dict[str, Any], source: str, taken: set[str]) -> Node:
    if doc.get("format") is None and isinstance(doc.get("node"), dict):
        doc = doc["node"]  # a `verify --json` document carries the node's fingerprint document
    check_node_doc(doc, source)
    ref = node_reference(doc, source)
    label = printable(doc.get("node") or doc.get("host") or source)
    if label in taken:  # nodes named alike (a shared hostname): tell them apart by source
        label = f"{label} ({source})"
    n = 2
    base = label
    while label in taken:
        label, n = f"{base} #{n}", n + 1
    taken.add(label)
    return Node(label, doc, ref, ref.packages.fingerprint())


def compare_nodes(nodes: list[Node], baseline_node: str | None = None) -> NodeReport:
    """Group nodes by fingerprint; explain every node outside the baseline group."""
    problems = [f"{n.label}: the recorded fingerprint {str(n.ref.fingerprint)[:12]} does not "
                f"match its package lists ({n.fingerprint[:12]}): the document was edited"
                for n in nodes if n.ref.fingerprint and n.ref.fingerprint != n.fingerprint]
    platforms = {n.ref.packages.platform for n in nodes}
    if len(platforms) > 1:
        problems.append(f"the nodes run {len(platforms)} platforms ("
                        f"{', '.join(sorted(str(p) for p in platforms))}): their package sets "
                        "cannot be the same")
    if baseline_node is not None:
        chosen = next((n for n in nodes if n.label == baseline_node), None)
        if chosen is None:
            raise BadReferenceError(f"--baseline {baseline_node}", "no node has that label "
                                 f"(labels: {', '.join(n.label for n in nodes)})")
        baseline, why = chosen.fingerprint, f"node {chosen.label}, as asked"
    else:
        counts = Counter(n.fingerprint for n in nodes)
        baseline, top = counts.most_common(1)[0]
        tied = sum(1 for c in counts.values() if c == top) > 1
        why = (f"the fingerprint of {top} of {len(nodes)} nodes" if not tied else
               f"no majority: the first node's ({nodes[0].label})")
        if tied:
            baseline = nodes[0].fingerprint
    base_node = next(n for n in nodes if n.fingerprint == baseline)
    base_ref = Reference(base_node.label, "fingerprint", base_node.ref.packages)
    against = {n.label: compare_to_reference(n.ref.packages, base_ref)
               for n in nodes if n.fingerprint != baseline}
    return NodeReport(nodes, baseline, why, against, problems)
