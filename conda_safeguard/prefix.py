"""A read-only view of a conda environment prefix, without conda.

Reads what a snapshot needs: the `conda-meta/*.json` package records, `conda-meta/history`,
`conda-meta/state` (env vars), the CEP-22 frozen marker, and pip-installed distributions in
site-packages with their PEP 610 `direct_url.json`.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .constants import FROZEN_MARK
from .exceptions import CorruptEnvError, NotAnEnvError

log = logging.getLogger(f"conda.{__name__}")

# conda skips these in `env export` (see conda's PrefixData.get_conda_packages).
_CONDA_PACKAGE_TYPES = (None, "", "noarch_generic", "noarch_python")
# What conda treats as the anchor file of a Python distribution in site-packages.
_ANCHOR_RE = re.compile(r"^(lib/python[^/]+/site-packages|Lib/site-packages)/[^/]+"
                        r"(\.dist-info/RECORD|\.egg-info/PKG-INFO|\.egg-info)$")
# A file changed twice within its filesystem's timestamp granularity (up to 2 s on FAT) can keep
# its size and mtime: caches keyed by stat results do not trust anything that recent.
RACY_NS = 2_000_000_000
_UNSET_ENV_VAR = "***unset***"  # conda's CONDA_ENV_VARS_UNSET_VAR: a var unset in the env


@dataclass(frozen=True)
class CondaRecord:
    """One installed conda package, as much of its conda-meta record as snapshots use."""

    name: str
    version: str
    build: str
    build_number: int
    channel: str  # canonical name, as `conda env export` prints it (conda-forge, defaults, URL)
    subdir: str
    url: str
    fn: str
    md5: str
    sha256: str
    size: int | None
    noarch: str | None
    depends: tuple[str, ...] = ()
    package_type: str | None = None
    requested_spec: str | None = None
    # Where conda found the package: restore uses them to install offline.
    extracted_package_dir: str | None = None
    package_tarball_full_path: str | None = None
    # site-packages anchor files this package owns: pip dists behind them are conda's, not pip's.
    python_anchors: tuple[str, ...] = field(default=(), compare=False)

    @property
    def dist_str(self) -> str:
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def is_exported(self) -> bool:
        return self.package_type in _CONDA_PACKAGE_TYPES

    def to_dict(self) -> dict[str, Any]:
        # every field is a str, int, None or tuple of str: no need for asdict()'s deep copy,
        # which is the slowest step of a snapshot of a changed env
        d = {name: getattr(self, name) for name in _RECORD_FIELDS}
        d["depends"] = list(self.depends)
        d["python_anchors"] = list(self.python_anchors)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CondaRecord:
        d = dict(d)
        d["depends"] = tuple(d.get("depends") or ())
        d["python_anchors"] = tuple(d.get("python_anchors") or ())
        return cls(**d)


_RECORD_FIELDS = tuple(f.name for f in fields(CondaRecord))


@dataclass(frozen=True)
class PipDist:
    """A Python distribution in site-packages that no conda package owns."""

    name: str  # normalised like conda does: lower case, '.' and '_' -> '-'
    version: str
    anchor: str  # path of its metadata, relative to the prefix
    installer: str | None = None
    direct_url: dict[str, Any] | None = None  # PEP 610

    @property
    def editable(self) -> bool:
        return bool(((self.direct_url or {}).get("dir_info") or {}).get("editable"))

    def requirement(self) -> str:
        """A pip requirement line that reinstalls this same thing."""
        du = self.direct_url
        if not du or not du.get("url"):
            return f"{self.name}=={self.version}"
        url = du["url"]
        subdir = du.get("subdirectory")
        fragment = f"#subdirectory={subdir}" if subdir else ""
        if "vcs_info" in du:
            vcs = du["vcs_info"]
            ref = vcs.get("commit_id") or vcs.get("requested_revision")
            at = f"@{ref}" if ref else ""
            return f"{self.name} @ {vcs.get('vcs', 'git')}+{url}{at}{fragment}"
        if self.editable:
            return f"-e {url}{fragment}"
        if "archive_info" in du:
            hashes = (du["archive_info"] or {}).get("hashes") or {}
            if "sha256" in hashes:
                fragment = f"#sha256={hashes['sha256']}"
        return f"{self.name} @ {url}{fragment}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PipDist:
        return cls(**d)


@dataclass(frozen=True)
class HistoryEntry:
    date: str
    cmd: str | None
    conda_version: str | None
    action: str | None
    specs: tuple[str, ...]
    added: tuple[str, ...]  # `+channel::name-version-build` dist strings, without the '+'
    removed: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# channels

# conda's default_channels (msys2 only on Windows, as conda's DEFAULT_CHANNELS)
_DEFAULT_CHANNEL_URLS = ("https://repo.anaconda.com/pkgs/main", "https://repo.anaconda.com/pkgs/r",
                         *(("https://repo.anaconda.com/pkgs/msys2",) if os.name == "nt" else ()))


def canonical_channel(channel: str | None, url: str | None, subdir: str | None) -> str:
    """The channel name `conda env export` prints, derived without conda's context.

    Matches conda's defaults for its channel_alias and default_channels; the plugin computes the
    exact name with conda's own Channel class when conda is there.
    """
    source = channel or ""
    if not source and url:
        source = url.rsplit("/", 1)[0]
    if not source:
        return "<unknown>"
    source = source.rstrip("/")
    if subdir and source.endswith("/" + subdir):
        source = source[: -len(subdir) - 1]
    if "://" not in source:
        return source  # already a name (conda-forge, defaults, bioconda)
    source = re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", source)  # user:password@
    if source in _DEFAULT_CHANNEL_URLS:
        return "defaults"
    for alias in ("https://conda.anaconda.org/", "http://conda.anaconda.org/"):
        if source.startswith(alias):
            name = source[len(alias):]
            return re.sub(r"^t/[^/]+/", "", name)  # strip a token segment
    return source


# ---------------------------------------------------------------------------------------------
# reading


def is_env(path: Path) -> bool:
    return (path / "conda-meta").is_dir()


def require_env(path: Path) -> Path:
    if not path.exists():
        from .exceptions import EnvNotFoundError

        raise EnvNotFoundError(f"at {path}")
    if not is_env(path):
        raise NotAnEnvError(str(path))
    return path


def _record_from_json(data: dict[str, Any]) -> CondaRecord:
    subdir = data.get("subdir") or ""
    url = data.get("url") or ""
    fn = data.get("fn") or (url.rsplit("/", 1)[-1] if url else "")
    anchors = tuple(f for f in data.get("files") or () if _ANCHOR_RE.match(f))
    noarch = data.get("noarch")
    if isinstance(noarch, dict):  # very old records
        noarch = noarch.get("type")
    requested = data.get("requested_spec")
    if not requested and data.get("requested_specs"):
        requested = data["requested_specs"][0]  # rattler writes a list
    return CondaRecord(
        name=data["name"],
        version=str(data["version"]),
        build=str(data.get("build", "")),
        build_number=int(data.get("build_number") or 0),
        channel=canonical_channel(data.get("channel"), url, subdir),
        subdir=subdir,
        url=url,
        fn=fn,
        md5=data.get("md5") or "",
        sha256=data.get("sha256") or "",
        size=data.get("size"),
        noarch=noarch,
        depends=tuple(data.get("depends") or ()),
        package_type=data.get("package_type"),
        requested_spec=requested,
        extracted_package_dir=data.get("extracted_package_dir")
        or (data.get("link") or {}).get("source"),
        package_tarball_full_path=data.get("package_tarball_full_path"),
        python_anchors=anchors,
    )


def record_files(prefix: Path) -> list[os.DirEntry[str]]:
    """The conda-meta/<name>-<version>-<build>.json entries (stat-able without another syscall).

    Other *.json files there are not package records (conda skips `._*`; our protect mark is
    conda-meta/safeguard-protection).
    """
    with os.scandir(prefix / "conda-meta") as it:
        return [e for e in it if e.name.endswith(".json") and not e.name.startswith("._")
                and e.name.count("-") >= 2 and e.is_file()]


_SITE_PACKAGES_RE = re.compile(r"^(?:lib/python[^/]+|Lib)/site-packages/(.+)$")
_SCRIPTS_RE = re.compile(r"^(?:bin|Scripts)/(.+)$")


def paths_in_prefix(data: dict[str, Any]) -> list[Any]:
    """A record's `paths_data` entries, each `_path` where the file is in the env.

    conda writes a noarch: python package's paths_data with the paths the package has
    (`site-packages/x`, `python-scripts/x`) but its `files` with the paths it linked them to
    (`lib/python3.11/site-packages/x`, `bin/x`). Such a path is mapped to the entry of `files`
    it became; anything else is returned as it is (a path in neither stays unmatched).
    """
    paths = data["paths_data"].get("paths") if isinstance(data.get("paths_data"), dict) \
        else None
    if not isinstance(paths, list):
        return []
    raw = data.get("files")
    files = {f for f in raw if isinstance(f, str)} if isinstance(raw, list) else set()
    linked: dict[str, str] | None = None  # "site-packages/x" -> the file it became
    out = []
    for e in paths:
        rel = e.get("_path") if isinstance(e, dict) else None
        if isinstance(rel, str) and rel not in files and \
                rel.startswith(("site-packages/", "python-scripts/")):
            if linked is None:
                linked = {}
                for f in files:
                    for top, pattern in (("site-packages", _SITE_PACKAGES_RE),
                                         ("python-scripts", _SCRIPTS_RE)):
                        m = pattern.match(f)
                        if m:
                            linked[f"{top}/{m.group(1)}"] = f
            if rel in linked:
                e = {**e, "_path": linked[rel]}
        out.append(e)
    return out


def _matches_file_name(record: CondaRecord, file_name: str) -> bool:
    """conda ignores (with a warning) a record whose file name is not its name-version-build."""
    return file_name[: -len(".json")].rsplit("-", 2) == [record.name, record.version, record.build]


def read_record(path: Path) -> CondaRecord:
    return record_from_json(_read_json(path), path)


def _read_json(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except ValueError as e:
        raise CorruptEnvError(str(path), f"not a valid conda-meta record ({e})") from None


def record_from_json(data: object, path: Path) -> CondaRecord:
    """A conda-meta record already read from `path` (named in the error)."""
    try:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return _record_from_json(data)
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptEnvError(str(path), f"not a valid conda-meta record ({e})") from None


def read_records(prefix: Path, cache: dict[str, Any] | None = None,
                 raw: dict[str, dict[str, Any]] | None = None) -> list[CondaRecord]:
    """Every conda record of the env, sorted by name.

    `cache` maps a record file name to `[size, mtime_ns, record-dict]`; entries whose file is
    unchanged are reused, so a warm snapshot parses no JSON (records hold whole `paths` lists).
    `raw`, without `cache`, receives each record's whole JSON by package name.
    """
    records = []
    racy_after = time.time_ns() - RACY_NS
    for entry in record_files(prefix):
        st = entry.stat()
        key = [st.st_size, st.st_mtime_ns]
        hit = cache.get(entry.name) if cache is not None else None
        if hit is not None and hit[:2] == key:
            records.append(CondaRecord.from_dict(hit[2]))
            continue
        data = _read_json(Path(entry.path))
        record = record_from_json(data, Path(entry.path))
        if not _matches_file_name(record, entry.name):
            log.warning("Ignoring malformed prefix record at: %s", entry.path)  # as conda does
            continue
        if cache is not None and st.st_mtime_ns < racy_after:
            cache[entry.name] = [*key, record.to_dict()]
        if raw is not None and isinstance(data, dict):
            raw[record.name] = data
        records.append(record)
    if cache is not None:
        live = {e.name for e in record_files(prefix)} if len(cache) > len(records) else None
        if live is not None:
            for stale in set(cache) - live:
                del cache[stale]
    return sorted(records, key=lambda r: r.name)


def read_env_vars(prefix: Path) -> dict[str, str]:
    """Env vars set with `conda env config vars set` (conda-meta/state)."""
    path = prefix / "conda-meta" / "state"
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        state = json.loads(raw) if raw.strip() else {}
        env_vars = state.get("env_vars") or {}
        return {str(k): str(v) for k, v in env_vars.items() if v != _UNSET_ENV_VAR}
    except (ValueError, AttributeError) as e:
        raise CorruptEnvError(str(path), f"not valid JSON ({e})") from None


def read_frozen(prefix: Path) -> str | None:
    """The CEP-22 frozen marker's message ('' when frozen without one), or None."""
    path = prefix / FROZEN_MARK
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw) if raw.strip() else {}
        return str(data.get("message", "")) if isinstance(data, dict) else ""
    except ValueError:
        return ""


def spec_name(spec: str) -> str:
    """The package name of a MatchSpec string: 'conda-forge::numpy >=1.2' -> 'numpy'."""
    spec = spec.strip().split("::")[-1]
    m = re.match(r"[A-Za-z0-9_.\-]+", spec)
    return m.group(0).lower() if m else spec


def _parse_specs(specs_string: str) -> list[str]:
    if specs_string.startswith("["):
        try:
            value = ast.literal_eval(specs_string)
        except (ValueError, SyntaxError):
            return []
        return [str(s) for s in value] if isinstance(value, (list, tuple)) else []
    if "[" in specs_string:
        return []
    specs: list[str] = []
    for spec in specs_string.split(","):  # conda < 4.5: "a >=1,<2,b"
        if re.match(r"^\s*[<>=!~]", spec) and specs:
            specs[-1] = f"{specs[-1]},{spec}"
        else:
            specs.append(spec)
    return specs


_SEP_RE = re.compile(r"==>\s*(.+?)\s*<==")
_CMD_RE = re.compile(r"#\s*cmd:\s*(.+)")
_SPECS_RE = re.compile(r"#\s*(\w+)\s*specs:\s*(.+)?")
_VERSION_RE = re.compile(r"#\s*conda version:\s*(.+)")


def read_history(prefix: Path) -> list[HistoryEntry]:
    """conda-meta/history as conda parses it; lines it cannot place are skipped, as conda does."""
    path = prefix / "conda-meta" / "history"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    entries: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if m := _SEP_RE.match(line):
            entries.append({"date": m.group(1), "cmd": None, "conda_version": None,
                            "action": None, "specs": [], "added": [], "removed": []})
        elif not entries:
            continue
        elif line.startswith("#"):
            cur = entries[-1]
            if m := _CMD_RE.match(line):
                cur["cmd"] = m.group(1)
            elif m := _VERSION_RE.match(line):
                cur["conda_version"] = m.group(1)
            elif m := _SPECS_RE.match(line):
                cur["action"] = m.group(1)
                specs = _parse_specs(m.group(2) or "")
                cur["specs"] = [s for s in specs if s and not s.endswith("@")]
        elif line[0] == "+":
            entries[-1]["added"].append(line[1:])
        elif line[0] == "-":
            entries[-1]["removed"].append(line[1:])
    return [
        HistoryEntry(e["date"], e["cmd"], e["conda_version"], e["action"], tuple(e["specs"]),
                     tuple(e["added"]), tuple(e["removed"]))
        for e in entries
    ]


def requested_specs(history: list[HistoryEntry], installed: set[str]) -> dict[str, str]:
    """name -> the spec the user last asked for, as conda's History.get_requested_specs_map."""
    spec_map: dict[str, str] = {}
    for entry in history:
        if entry.cmd is None:
            continue
        if entry.action in ("remove", "uninstall"):
            for spec in entry.specs:
                spec_map.pop(spec_name(spec), None)
        elif entry.action in ("update", "install", "create", "neutered"):
            for spec in entry.specs:
                spec_map[spec_name(spec)] = spec
    return {name: spec for name, spec in spec_map.items() if name in installed}


# ---------------------------------------------------------------------------------------------
# pip


def norm_pip_name(name: str) -> str:
    return name.replace(".", "-").replace("_", "-").lower()


def _read_metadata_headers(path: Path) -> dict[str, str]:
    headers: dict[str, str] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                break  # the body (long description) follows the first blank line
            if ":" in line and not line[0].isspace():
                key, _, value = line.partition(":")
                headers.setdefault(key.strip().lower(), value.strip())
    return headers


def site_packages(prefix: Path, python: CondaRecord | None) -> Path | None:
    """site-packages of the env's conda python, where pip puts what it installs."""
    if python is None:
        return None
    major_minor = ".".join(python.version.split(".")[:2])
    for candidate in (prefix / "lib" / f"python{major_minor}" / "site-packages",
                      prefix / "Lib" / "site-packages"):
        if candidate.is_dir():
            return candidate
    return None


def read_pip_dists(prefix: Path, records: list[CondaRecord]) -> list[PipDist]:
    """pip-installed distributions: site-packages anchors that no conda record owns."""
    python = next((r for r in records if r.name == "python"), None)
    sp = site_packages(prefix, python)
    if sp is None:
        return []
    owned = {a for r in records for a in r.python_anchors}
    rel_sp = sp.relative_to(prefix).as_posix()
    dists = []
    with os.scandir(sp) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        fname = entry.name
        if fname.endswith(".dist-info"):
            anchor, meta = f"{rel_sp}/{fname}/RECORD", sp / fname / "METADATA"
        elif fname.endswith(".egg-info"):
            if entry.is_dir():
                anchor, meta = f"{rel_sp}/{fname}/PKG-INFO", sp / fname / "PKG-INFO"
            else:
                anchor, meta = f"{rel_sp}/{fname}", sp / fname
        else:
            continue
        if anchor in owned:
            continue
        try:
            headers = _read_metadata_headers(meta)
        except OSError:
            continue  # conda ignores a dist it cannot read; so do we
        if "name" not in headers:
            continue
        info = sp / fname
        direct_url = None
        installer = None
        if info.is_dir():
            try:
                direct_url = json.loads((info / "direct_url.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                direct_url = None
            try:
                installer = (info / "INSTALLER").read_text(encoding="utf-8").strip() or None
            except OSError:
                installer = None
        dists.append(PipDist(
            name=norm_pip_name(headers["name"]),
            version=headers.get("version", ""),
            anchor=f"{rel_sp}/{fname}",
            installer=installer,
            direct_url=direct_url if isinstance(direct_url, dict) else None,
        ))
    return sorted(dists, key=lambda d: d.name)


# ---------------------------------------------------------------------------------------------
# what a command would leave behind (shared by the plugin and the shell guard)


def spec_name_pattern(spec: str) -> str:
    """The name part of a spec as conda matches it, globs kept: 'p*' -> 'p*', 'c::x>=1' -> 'x'."""
    spec = spec.strip().split("::")[-1]
    m = re.match(r"[A-Za-z0-9_.\-*?]+", spec)
    return m.group(0).lower() if m else spec.lower()


def _dep_names(record: CondaRecord) -> set[str]:
    return {spec_name(d) for d in record.depends}


def packages_removed(records: list[CondaRecord], specs: tuple[str, ...], *,
                     dependents: bool = True) -> set[str]:
    """The names `conda remove SPECS` takes out for certain: the packages the specs match
    (conda matches glob names: `'*'`, `'p*'`) and (unless --force-remove) everything that
    depends on them."""
    patterns = [spec_name_pattern(s) for s in specs if s.strip()]
    removed = {r.name for r in records
               if any(fnmatch.fnmatchcase(r.name.lower(), pat) for pat in patterns)}
    if not removed or not dependents:
        return removed  # nothing matches: conda refuses (PackagesNotFoundError)
    grew = True
    while grew:  # a package whose dependency goes goes too
        grew = False
        for r in records:
            if r.name not in removed and _dep_names(r) & removed:
                removed.add(r.name)
                grew = True
    return removed


def packages_left_after_remove(prefix: Path, specs: tuple[str, ...]) -> set[str] | None:
    """An estimate of what `conda remove SPECS` leaves, for where conda's own solve cannot be
    seen (the shell layer; conda without post-solve hooks): the removed packages and their
    dependents go, then conda prunes what no requested package (conda-meta/history) needs any
    more. None when the specs match nothing installed (conda refuses the command)."""
    records = read_records(prefix)
    removed = packages_removed(records, specs)
    if not removed:
        return None
    left = {r.name: r for r in records if r.name not in removed}
    requested = set(requested_specs(read_history(prefix), {r.name for r in records}))
    if not requested:
        return set(left)  # nothing known to be requested: assume conda keeps the rest
    keep: set[str] = set()
    todo = list(requested)
    while todo:
        name = todo.pop()
        if name in keep or name not in left:
            continue
        keep.add(name)
        todo += _dep_names(left[name])
    return keep


def removes_every_package(prefix: Path, specs: tuple[str, ...], *, prune: bool = True,
                          force: bool = False) -> bool:
    """`remove SPECS` leaves the env without a package: every package named or matched by a
    glob, their dependents, and (`prune`) what conda prunes after them. With `force`
    (--force-remove) conda removes only what the specs match."""
    if not specs or not is_env(prefix):
        return False
    try:
        if prune and not force:
            left = packages_left_after_remove(prefix, specs)
            return left is not None and not left
        records = read_records(prefix)
    except (CorruptEnvError, OSError):
        return True  # unreadable: assume the worst (it is only used to protect)
    removed = packages_removed(records, specs, dependents=not force)
    return bool(records) and removed >= {r.name for r in records}


def revision_removes_packages(prefix: Path, revision: str | None) -> bool:
    """Would `install --revision N` remove packages present now? (as hooks.py decides it)"""
    return bool(revision_removed_names(prefix, revision))


def revision_removed_names(prefix: Path, revision: str | None) -> list[str]:
    """The installed packages `install --revision N` would remove, sorted."""
    history = read_history(prefix)
    try:
        rev = int(revision or "")
    except ValueError:
        return []  # the tool itself reports a bad revision and changes nothing
    if not 0 <= rev < len(history):
        return []
    state: set[str] = set()
    for entry in history[:rev + 1]:  # conda's History.construct_states, up to revision N
        state = (state - set(entry.removed)) | set(entry.added)
    target_names = {dist.split("::")[-1].rsplit("-", 2)[0] for dist in state}
    return sorted({r.name for r in read_records(prefix)} - target_names)
