"""What an env should hold, read from whatever the user has: a reference for `verify --against`.

Accepted: another node's `fingerprint --json` (or `verify --json`) document, an explicit lockfile
(`@EXPLICIT`, as `conda list --explicit` writes it), a conda-lock v1 file, an environment.yml,
or (decided by the caller) a snapshot in the store. Every file is untrusted input: anything we
cannot read exactly raises BadReferenceError with one line saying what and why, never a guess.

Each source knows different things (an explicit file has no pip packages; an environment.yml
written by hand pins no builds), so a Package leaves unknown fields None and `complete` says
whether packages *absent* from the reference count as extra.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .exceptions import SafeguardError
from .fingerprint import FORMAT, FORMAT_VERSION, Package, PackageSet, norm_name
from .prefix import canonical_channel

_MAX_BYTES = 64 << 20  # a lockfile of 10,000 packages is ~5 MB; bigger is not a reference
_MD5 = re.compile(r"^[0-9a-f]{32}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_PRINTABLE = re.compile(r"^[!-~]{1,500}$")  # visible ASCII: names, versions, URLs, hashes


class BadReferenceError(SafeguardError):
    """A reference that cannot be read. Exit code 2, as for diff(1)'s trouble."""

    exit_code = 2

    def __init__(self, source: str, why: str) -> None:
        super().__init__(f"Cannot use {source} as a reference: {why}. Nothing was compared.")


@dataclass
class Reference:
    label: str  # for headers: "snapshot 4f1c2a9e0b of myenv", "explicit file spec.txt"
    kind: str  # snapshot, fingerprint, explicit, conda-lock, environment.yml
    packages: PackageSet
    complete: bool = True  # lists every conda package: what the env has beyond it is extra
    pip_known: bool = True  # says which pip packages belong: pip extras/missing are compared
    fingerprint: str | None = None  # what the source recorded, if it recorded one


def from_state(state: Any, label: str) -> Reference:
    """A snapshot's EnvState (the caller loads it from the store)."""
    from .fingerprint import conda_package, pip_package

    packages = PackageSet.of((conda_package(r) for r in state.packages),
                             (pip_package(d) for d in state.pip), state.platform)
    return Reference(label, "snapshot", packages)


def load_file(path: Path, *, platform: str | None) -> Reference:
    """Read a reference file, telling the format from its content."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_BYTES + 1)
    except OSError as e:
        raise BadReferenceError(source, e.strerror or str(e)) from None
    if len(data) > _MAX_BYTES:
        raise BadReferenceError(source, f"it is larger than {_MAX_BYTES >> 20} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadReferenceError(source, "it is not UTF-8 text") from None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return node_reference(parse_json(text, source), source)
    if re.search(r"^@EXPLICIT\s*$", text, re.M):
        return _explicit(text, source)
    doc = _yaml(text, source)
    if isinstance(doc, dict) and "package" in doc and "version" in doc:
        return _conda_lock(doc, source, platform)
    if isinstance(doc, dict) and "dependencies" in doc:
        return _environment_yml(doc, source)
    raise BadReferenceError(source, "it is not a format we read (a fingerprint JSON, an @EXPLICIT "
                         "lockfile, a conda-lock v1 file or an environment.yml)")


def parse_json(text: str, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise BadReferenceError(source, f"invalid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise BadReferenceError(source, "the JSON is not an object")
    return doc


def node_reference(doc: dict[str, Any], source: str) -> Reference:
    """A `fingerprint --json` / `verify --json` document (verify nests it under "node")."""
    if doc.get("format") != FORMAT and isinstance(doc.get("node"), dict):
        doc = doc["node"]
    check_node_doc(doc, source)
    try:
        conda = [Package("conda", str(p["name"]), str(p["version"]), _opt(p.get("build")),
                         _opt(p.get("channel")), _opt(p.get("sha256")), _opt(p.get("md5")))
                 for p in doc["conda"]]
        pip = [Package("pip", str(p["name"]), str(p["version"]), source=_opt(p.get("source")))
               for p in doc["pip"]]
    except (KeyError, TypeError) as e:
        raise BadReferenceError(source, f"a package entry lacks {e}") from None
    for p in (*conda, *pip):  # printed in reports: a newline in a name could forge lines
        for value in (p.name, p.version, p.build, p.channel, p.sha256, p.md5, p.source):
            if value is not None and not _PRINTABLE.match(value):
                raise BadReferenceError(source, f"package entry {p.name[:40]!r} holds "
                                     f"{value[:40]!r}, which has spaces or control characters")
    label = f"{doc.get('node', '?')}:{doc.get('env', '?')} ({source})"
    return Reference(label, "fingerprint", PackageSet.of(conda, pip, _opt(doc.get("platform"))),
                     fingerprint=_opt(doc.get("fingerprint")))


def check_node_doc(doc: dict[str, Any], source: str) -> None:
    if doc.get("format") != FORMAT:
        raise BadReferenceError(source, f"it is JSON but not a conda-safeguard fingerprint (no "
                             f"\"format\": \"{FORMAT}\")")
    version = doc.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise BadReferenceError(source, f"format_version {version!r} is not a version")
    if version > FORMAT_VERSION:
        raise BadReferenceError(source, f"it was written by a newer conda-safeguard (format "
                             f"version {version}; this one reads up to {FORMAT_VERSION}): "
                             "upgrade conda-safeguard here")
    if not isinstance(doc.get("conda"), list) or not isinstance(doc.get("pip"), list):
        raise BadReferenceError(source, "its \"conda\" and \"pip\" package lists are missing")


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _yaml(text: str, source: str) -> Any:
    import yaml  # only for YAML references

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise BadReferenceError(source, f"invalid YAML{at}") from None


def _dist_from_url(url: str) -> tuple[str, str, str, str]:
    """(name, version, build, subdir) from a package URL's file name and folder."""
    fn = url.rsplit("/", 1)[-1].split("#", 1)[0]
    for ext in (".conda", ".tar.bz2"):
        if fn.endswith(ext):
            stem = fn[: -len(ext)]
            break
    else:
        raise ValueError(f"{fn!r} is not a .conda or .tar.bz2 package")
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{fn!r} is not name-version-build")
    subdir = url.rsplit("/", 2)[-2] if url.count("/") >= 2 else ""
    return parts[0], parts[1], parts[2], subdir


def _explicit(text: str, source: str) -> Reference:
    conda = []
    platform = None
    started = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("# platform:"):
            platform = line.split(":", 1)[1].strip() or None
        if not line or line.startswith("#"):
            continue
        if line == "@EXPLICIT":
            started = True
            continue
        if not started:
            raise BadReferenceError(source, f"line {n} comes before @EXPLICIT")
        url, _, fragment = line.partition("#")
        md5 = sha256 = None
        fragment = fragment.strip().lower()
        if fragment.startswith("sha256:"):
            sha256 = fragment[7:]
        elif _SHA256.match(fragment):
            sha256 = fragment
        elif _MD5.match(fragment):
            md5 = fragment
        elif fragment:
            raise BadReferenceError(source, f"line {n}: {fragment[:20]!r} is neither an md5 nor a "
                                 "sha256")
        if sha256 is not None and not _SHA256.match(sha256):
            raise BadReferenceError(source, f"line {n}: the sha256 is not 64 hex digits")
        try:
            name, version, build, subdir = _dist_from_url(url.strip())
        except ValueError as e:
            raise BadReferenceError(source, f"line {n}: {e}") from None
        channel = canonical_channel(None, url.strip(), subdir)
        conda.append(Package("conda", name, version, build, channel, sha256, md5))
    if not started:
        raise BadReferenceError(source, "it has no @EXPLICIT line")
    # explicit files list every conda package and never pip's (conda drops them silently)
    return Reference(f"explicit file {source}", "explicit", PackageSet.of(conda, [], platform),
                     complete=True, pip_known=False)


def _conda_lock(doc: dict[str, Any], source: str, platform: str | None) -> Reference:
    if doc.get("version") != 1:
        raise BadReferenceError(source, f"conda-lock version {doc.get('version')!r}; only "
                             "version 1 is read")
    entries = doc.get("package")
    if not isinstance(entries, list):
        raise BadReferenceError(source, "its \"package\" entry is not a list")
    platforms = sorted({str(e.get("platform")) for e in entries if isinstance(e, dict)})
    if platform is None or platform not in platforms:
        raise BadReferenceError(source, f"it has no packages for {platform} (it has: "
                             f"{', '.join(platforms) or 'none'})")
    conda, pip = [], []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or e.get("platform") != platform or e.get("optional"):
            continue  # optional categories are installed only on request: not expected
        try:
            name, version, url = str(e["name"]), str(e["version"]), str(e["url"])
            hashes = e.get("hash") or {}
            if e.get("manager") == "pip":
                pip.append(Package("pip", norm_name(name), version))
            elif e.get("manager") == "conda":
                _, _, build, subdir = _dist_from_url(url)
                conda.append(Package("conda", name, version, build,
                                     canonical_channel(None, url, subdir),
                                     _opt(hashes.get("sha256")), _opt(hashes.get("md5"))))
            else:
                raise ValueError(f"manager {e.get('manager')!r} is not conda or pip")
        except (KeyError, ValueError, AttributeError) as err:
            raise BadReferenceError(source, f"package entry {i + 1}: {err}") from None
    return Reference(f"conda-lock file {source} ({platform})", "conda-lock",
                     PackageSet.of(conda, pip, platform))


# after an optional `channel::` (the channel may be a URL, colons and all)
_YML_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)"
                       r"(?:(?P<op>==?)(?P<version>[^=\s]+)(?:=(?P<build>[^=\s]+))?)?$")


def _environment_yml(doc: dict[str, Any], source: str) -> Reference:
    deps = doc.get("dependencies")
    if not isinstance(deps, list):
        raise BadReferenceError(source, "\"dependencies\" is not a list")
    conda, pip = [], []
    exact = True
    for dep in deps:
        if isinstance(dep, dict) and set(dep) == {"pip"} and isinstance(dep["pip"], list):
            for line in dep["pip"]:
                name, sep, version = str(line).partition("==")
                if sep and re.fullmatch(r"[A-Za-z0-9_.\-]+", name.strip()):
                    pip.append(Package("pip", norm_name(name.strip()), version.strip()))
                else:  # -e path, pkg @ url, >= specs: by name only where there is one
                    m = re.match(r"^([A-Za-z0-9_.\-]+)", str(line).strip())
                    if m and not str(line).startswith("-"):
                        pip.append(Package("pip", norm_name(m.group(1))))
            continue
        if not isinstance(dep, str):
            raise BadReferenceError(source, f"dependency {dep!r} is not a string or a pip list")
        channel, _, spec = dep.strip().rpartition("::")
        m = _YML_SPEC.match(spec)
        if m is None:  # a range (numpy>=1.2): we can only check that it is there
            named = re.match(r"^([A-Za-z0-9_.\-]+)", spec)
            if named is None:
                raise BadReferenceError(source, f"dependency {dep!r} names no package")
            conda.append(Package("conda", named.group(1).lower()))
            exact = False
            continue
        if m["build"] is None:
            exact = False
        fuzzy = m["op"] == "=" and m["build"] is None  # `=1.2` is conda's 1.2.*
        conda.append(Package("conda", m["name"].lower(), m["version"], m["build"],
                             canonical_channel(channel, None, None) if channel else None,
                             fuzzy=fuzzy))
    # `conda env export` lists every package as name=version=build. Without builds the file may
    # be --from-history (requested packages only, even when it pins versions) or hand-written:
    # it says nothing about the packages it leaves out, so they are not called extra.
    return Reference(f"environment file {source}", "environment.yml",
                     PackageSet.of(conda, pip), complete=exact and bool(conda))
