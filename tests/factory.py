"""Build real conda packages, channels and environments for tests (no network, no conda needed).

Packages are real archives (conda_package_handling), channels are real offline ``file://`` channels
and environments are installed by py-rattler, then touched up to look like conda made them.
See /work/shared/FIXTURES.md for the facts this relies on.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

# Fixed mtime for every payload file and index timestamp: identical inputs -> identical md5s.
FIXED_MTIME = 1_700_000_000  # 2023-11-14T22:13:20Z
FIXED_TIMESTAMP_MS = FIXED_MTIME * 1000
CONDA_VERSION = "26.7.1"
PYTHON_SITE_PACKAGES = "lib/python3.11/site-packages"
SUBDIR = "noarch"

__all__ = [
    "CONDA_VERSION",
    "LocalChannel",
    "PYTHON_SITE_PACKAGES",
    "add_pip_package",
    "add_pip_packages",
    "big_channel",
    "build_package",
    "file_sha256",
    "install_env",
    "make_conda_package_cache",
    "read_history_specs",
    "read_prefix_records",
    "set_env_vars",
    "write_condarc",
]


# --------------------------------------------------------------------------- packages


def file_sha256(path: os.PathLike[str] | str) -> str:
    return _hash_file(Path(path), "sha256")


def _hash_file(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _default_files(name: str, version: str) -> dict[str, bytes]:
    return {f"share/{name}/{name}-{version}.txt": f"{name} {version}\n".encode()}


def _index_json(
    name: str,
    version: str,
    build: str = "0",
    build_number: int = 0,
    depends: Iterable[str] = (),
    noarch: str | None = "generic",
) -> dict[str, Any]:
    index: dict[str, Any] = {
        "arch": None,
        "build": build,
        "build_number": build_number,
        "depends": list(depends),
        "license": "BSD-3-Clause",
        "name": name,
        "platform": None,
        "subdir": SUBDIR,
        "timestamp": FIXED_TIMESTAMP_MS,
        "version": version,
    }
    if noarch:
        index["noarch"] = noarch
    return index


def _mode(rel: str) -> int:
    return 0o755 if rel.startswith("bin/") else 0o644


def build_package(
    out_dir: os.PathLike[str] | str,
    name: str,
    version: str,
    *,
    build: str = "0",
    build_number: int = 0,
    depends: Iterable[str] = (),
    files: Mapping[str, bytes] | None = None,
    fmt: str = ".tar.bz2",
    noarch: str | None = "generic",
) -> Path:
    """Build ``<out_dir>/<name>-<version>-<build><fmt>`` and return its path (overwrites)."""
    if fmt not in (".tar.bz2", ".conda"):
        raise ValueError(f"unsupported package format {fmt!r}")
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = dict(_default_files(name, version) if files is None else files)
    fn = f"{name}-{version}-{build}{fmt}"

    index = _index_json(name, version, build, build_number, depends, noarch)
    paths = [
        {
            "_path": rel,
            "path_type": "hardlink",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data),
        }
        for rel, data in sorted(payload.items())
    ]
    about = {"summary": f"test package {name}", "license": "BSD-3-Clause"}
    meta = {
        "info/about.json": json.dumps(about, indent=2, sort_keys=True) + "\n",
        "info/files": "".join(f"{rel}\n" for rel in sorted(payload)),
        "info/index.json": json.dumps(index, indent=2, sort_keys=True) + "\n",
        "info/paths.json": json.dumps(
            {"paths": paths, "paths_version": 1}, indent=2, sort_keys=True
        )
        + "\n",
    }
    members = {**{k: v.encode() for k, v in meta.items()}, **dict(sorted(payload.items()))}

    target = out_dir / fn
    target.unlink(missing_ok=True)
    if fmt == ".tar.bz2":
        # Written directly (same layout cph produces): ~10x faster than staging files on disk.
        with tarfile.open(target, "w:bz2") as tar:
            for rel, data in members.items():
                ti = tarfile.TarInfo(rel)
                ti.size, ti.mtime, ti.mode = len(data), FIXED_MTIME, _mode(rel)
                tar.addfile(ti, io.BytesIO(data))
        return target

    from conda_package_handling import api as cph

    with tempfile.TemporaryDirectory(prefix="cs-pkg-") as tmp:
        src = Path(tmp)
        for rel, data in members.items():
            f = src / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
            f.chmod(_mode(rel))
        for root, dirs, fnames in os.walk(src):
            for entry in dirs + fnames:
                os.utime(os.path.join(root, entry), (FIXED_MTIME, FIXED_MTIME))
        cph.create(str(src), list(members), fn, str(out_dir))
    return target


# --------------------------------------------------------------------------- channels


def _read_index_json(path: Path) -> dict[str, Any]:
    from conda_package_streaming.package_streaming import stream_conda_info

    for tar, member in stream_conda_info(str(path)):
        if member.name == "info/index.json":
            fobj = tar.extractfile(member)
            assert fobj is not None
            data: dict[str, Any] = json.loads(fobj.read())
            return data
    raise ValueError(f"{path}: no info/index.json")


class LocalChannel:
    """An offline conda channel on disk: packages in ``noarch/``, indexed by :meth:`index`."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = Path(path).absolute()
        (self.path / SUBDIR).mkdir(parents=True, exist_ok=True)
        (self.path / "linux-64").mkdir(parents=True, exist_ok=True)
        self._known: dict[str, tuple[int, dict[str, Any]]] = {}

    @property
    def url(self) -> str:
        return self.path.as_uri()

    @property
    def subdir_url(self) -> str:
        """What conda writes as a record's ``channel`` and uses in history lines."""
        return f"{self.url}/{SUBDIR}"

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:
        return str(self.path)

    def add(self, name: str, version: str, **kw: Any) -> Path:
        """Build a package into the channel (call :meth:`index` afterwards)."""
        path = build_package(self.path / SUBDIR, name, version, **kw)
        # Remember index.json: re-reading it from a .tar.bz2 means decompressing the whole archive.
        meta = {k: kw[k] for k in ("build", "build_number", "depends", "noarch") if k in kw}
        self._known[path.name] = (path.stat().st_mtime_ns, _index_json(name, version, **meta))
        return path

    def packages(self) -> list[Path]:
        noarch = self.path / SUBDIR
        return sorted(p for p in noarch.iterdir() if p.name.endswith((".tar.bz2", ".conda")))

    def find(self, name: str, version: str) -> list[Path]:
        out = []
        for p in self.packages():
            stem = (
                p.name[: -len(".tar.bz2")]
                if p.name.endswith(".tar.bz2")
                else p.name[: -len(".conda")]
            )
            n, v, _build = stem.rsplit("-", 2)
            if (n, v) == (name, version):
                out.append(p)
        return out

    def index(self) -> None:
        packages: dict[str, Any] = {}
        packages_conda: dict[str, Any] = {}
        for p in self.packages():
            known = self._known.get(p.name)
            if known and known[0] == p.stat().st_mtime_ns:
                entry = dict(known[1])
            else:  # dropped in from elsewhere: read it from the archive
                entry = _read_index_json(p)
            entry.update(
                md5=_hash_file(p, "md5"), sha256=_hash_file(p, "sha256"), size=p.stat().st_size
            )
            (packages_conda if p.name.endswith(".conda") else packages)[p.name] = entry
        repodata = {
            "info": {"subdir": SUBDIR},
            "packages": packages,
            "packages.conda": packages_conda,
            "removed": [],
            "repodata_version": 1,
        }
        _write_json(self.path / SUBDIR / "repodata.json", repodata)
        _write_json(
            self.path / "linux-64" / "repodata.json",
            {
                "info": {"subdir": "linux-64"},
                "packages": {},
                "packages.conda": {},
                "removed": [],
                "repodata_version": 1,
            },
        )

    def remove(self, name: str, version: str) -> None:
        """Delete a package's archive(s) and re-index ("the package left the channel")."""
        found = self.find(name, version)
        if not found:
            raise FileNotFoundError(f"{name}-{version} not in {self.path}")
        for p in found:
            p.unlink()
        self.index()

    def __repr__(self) -> str:
        return f"LocalChannel({str(self.path)!r})"


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def big_channel(
    path: os.PathLike[str] | str, n_packages: int = 300, files_per_package: int = 50
) -> LocalChannel:
    """A channel of ``bigNNNN 1.0`` packages (plus the python stub) for benchmarks."""
    ch = LocalChannel(path)
    ch.add("python", "3.11.7", files={f"{PYTHON_SITE_PACKAGES}/.keep": b""})
    for i in range(n_packages):
        name = f"big{i:04d}"
        files = {
            f"share/{name}/f{j:03d}.txt": f"{name} file {j}\n".encode() * (1 + j % 7)
            for j in range(files_per_package)
        }
        ch.add(name, "1.0", files=files)
    ch.index()
    return ch


# --------------------------------------------------------------------------- environments


def _channel_url(channel: LocalChannel | os.PathLike[str] | str) -> str:
    if isinstance(channel, LocalChannel):
        return channel.url
    s = str(channel)
    return s if "://" in s else Path(s).absolute().as_uri()


def read_prefix_records(prefix: os.PathLike[str] | str) -> dict[str, dict[str, Any]]:
    """``conda-meta/*.json`` of a prefix, by package name."""
    meta = Path(prefix) / "conda-meta"
    out: dict[str, dict[str, Any]] = {}
    if meta.is_dir():
        for p in sorted(meta.glob("*.json")):
            rec = json.loads(p.read_text())
            out[rec["name"]] = rec
    return out


def _dist_str(rec: Mapping[str, Any]) -> str:
    # conda: "<channel canonical name>/<subdir>::name-version-build"; for file:// channels the
    # canonical name is the channel URL, i.e. the package URL's directory.
    url = rec.get("url") or ""
    where = (
        url.rsplit("/", 1)[0]
        if "/" in url
        else f"{rec.get('channel', '').rstrip('/')}/{rec['subdir']}"
    )
    return f"{where}::{rec['name']}-{rec['version']}-{rec['build']}"


_SPEC_NAME = re.compile(r"^\s*(?:[^:]*::)?([A-Za-z0-9_.\-]+)")


def _spec_name(spec: str) -> str:
    m = _SPEC_NAME.match(spec)
    if not m:
        raise ValueError(f"cannot parse spec {spec!r}")
    return m.group(1).lower()


def read_history_specs(prefix: os.PathLike[str] | str) -> dict[str, str]:
    """Requested specs accumulated over ``conda-meta/history`` (name -> spec), like conda does."""
    hist = Path(prefix) / "conda-meta" / "history"
    specs: dict[str, str] = {}
    if not hist.exists():
        return specs
    for line in hist.read_text(encoding="utf-8").splitlines():
        if line.startswith("# update specs:"):
            for s in ast.literal_eval(line.split(":", 1)[1].strip()):
                specs[_spec_name(s)] = s
        elif line.startswith("# remove specs:"):
            for s in ast.literal_eval(line.split(":", 1)[1].strip()):
                specs.pop(_spec_name(s), None)
    return specs


async def _solve_and_install(
    prefix: Path, channel_url: str, specs: Sequence[str], cache_dir: Path
) -> list[Any]:
    import rattler

    records = await rattler.solve(
        sources=[rattler.Channel(channel_url)],
        specs=list(specs),
        platforms=["linux-64", "noarch"],
        virtual_packages=[],
    )
    await rattler.install(
        records,
        target_prefix=str(prefix),
        cache_dir=cache_dir,
        show_progress=False,
        execute_link_scripts=False,
        platform=rattler.Subdir("linux-64"),
    )
    return list(records)


def install_env(
    prefix: os.PathLike[str] | str,
    channel: LocalChannel | os.PathLike[str] | str,
    specs: Iterable[str],
    *,
    cache_dir: os.PathLike[str] | str,
    cmd: str | None = None,
    when: _dt.datetime | None = None,
) -> list[Any]:
    """Solve ``specs`` against ``channel``, install/update ``prefix``; return rattler's records.

    On an existing prefix the new specs are merged with those requested before (as ``conda install``
    does), so ``install_env(p, ch, ["liba=2.0"], ...)`` updates liba and keeps the rest.
    A conda-format history entry is appended (timestamp ``when``, default now).
    """
    prefix = Path(prefix).absolute()
    cache = Path(cache_dir).absolute()
    specs = list(specs)
    before = read_prefix_records(prefix)
    fresh = not before
    requested = read_history_specs(prefix)
    for s in specs:
        requested[_spec_name(s)] = s

    records = asyncio.run(
        _solve_and_install(prefix, _channel_url(channel), list(requested.values()), cache)
    )

    meta = prefix / "conda-meta"
    meta.mkdir(parents=True, exist_ok=True)
    # rattler writes records 0600 and a CACHEDIR.TAG (backup tools skip such dirs); conda doesn't.
    for p in meta.glob("*.json"):
        p.chmod(0o644)
    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)

    after = read_prefix_records(prefix)
    old = {_dist_str(r) for r in before.values()}
    new = {_dist_str(r) for r in after.values()}
    if cmd is None:
        cmd = f"conda {'create' if fresh else 'install'} -p {prefix} {' '.join(specs)}".rstrip()
    when = when or _dt.datetime.now()
    if fresh:
        # conda >= 25 records the creation time (epoch float as text) on the first transaction.
        (meta / "created_at").write_text(str(when.timestamp()))
    stamp = when.strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"==> {stamp} <==", f"# cmd: {cmd}", f"# conda version: {CONDA_VERSION}"]
    lines += [f"-{d}" for d in sorted(old - new)]
    lines += [f"+{d}" for d in sorted(new - old)]
    if specs:
        lines.append(f"# update specs: {specs}")
    with open(meta / "history", "a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return records


# --------------------------------------------------------------------------- pip


def _norm_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def add_pip_package(
    prefix: os.PathLike[str] | str,
    name: str,
    version: str,
    *,
    direct_url: Mapping[str, Any] | None = None,
    editable: bool = False,
) -> Path:
    """pip-install a tiny wheel into ``<prefix>/lib/python3.11/site-packages``; return dist-info.

    Without ``direct_url`` the package looks installed from an index (pip's own
    ``direct_url.json`` for the local wheel file is removed). ``editable=True`` without
    ``direct_url`` writes a PEP 610 ``dir_info.editable`` pointing at a source dir created next to
    the prefix (``<prefix>.src/<name>``) and installs a ``.pth`` instead of the module, like a
    modern editable install.
    """
    return add_pip_packages(
        prefix, [dict(name=name, version=version, direct_url=direct_url, editable=editable)]
    )[0]


def add_pip_packages(
    prefix: os.PathLike[str] | str, packages: Iterable[Mapping[str, Any]]
) -> list[Path]:
    """Batch form of :func:`add_pip_package` (one pip run): items are its keyword arguments."""
    prefix = Path(prefix).absolute()
    site = prefix / PYTHON_SITE_PACKAGES
    site.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, Mapping[str, Any] | None]] = []
    with tempfile.TemporaryDirectory(prefix="cs-whl-") as tmp:
        wheels = []
        for pkg in packages:
            wheel, distinfo, du = _build_wheel(Path(tmp), prefix, **pkg)
            wheels.append(str(wheel))
            out.append((site / distinfo, du))
            # A re-install of another version must not leave the old dist-info behind.
            dist = distinfo.split("-", 1)[0]
            for old in site.glob(f"{dist}-*.dist-info"):
                shutil.rmtree(old)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--no-index",
                "--no-compile",
                "--upgrade",
                "-q",
                "--target",
                str(site),
                *wheels,
            ],
            check=True,
            env=env,
            capture_output=True,
        )
    for distinfo_path, du in out:
        _set_direct_url(distinfo_path, du)
    return [p for p, _ in out]


def _build_wheel(
    tmp: Path,
    prefix: Path,
    name: str,
    version: str,
    direct_url: Mapping[str, Any] | None = None,
    editable: bool = False,
) -> tuple[Path, str, Mapping[str, Any] | None]:
    dist = _norm_dist(name)
    distinfo = f"{dist}-{version}.dist-info"
    if editable and direct_url is None:
        src = prefix.with_name(prefix.name + ".src") / name
        (src / dist).mkdir(parents=True, exist_ok=True)
        (src / dist / "__init__.py").write_text(f'__version__ = "{version}"\n')
        direct_url = {"url": src.as_uri(), "dir_info": {"editable": True}}
        payload = {f"__editable__.{dist}-{version}.pth": f"{src}\n".encode()}
    else:
        payload = {f"{dist}/__init__.py": f'__version__ = "{version}"\n'.encode()}
    payload[f"{distinfo}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: test package {name}\n"
    ).encode()
    payload[f"{distinfo}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: conda-safeguard-tests\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [f"{rel},sha256={_record_hash(data)},{len(data)}" for rel, data in payload.items()]
    record.append(f"{distinfo}/RECORD,,")
    payload[f"{distinfo}/RECORD"] = ("\n".join(record) + "\n").encode()

    wheel = tmp / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for rel, data in payload.items():
            zi = zipfile.ZipInfo(rel, date_time=(2023, 11, 14, 22, 13, 20))
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, data)
    return wheel, distinfo, direct_url


def _record_hash(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _set_direct_url(distinfo: Path, direct_url: Mapping[str, Any] | None) -> None:
    """Replace pip's direct_url.json (it points at our temporary wheel); keep RECORD consistent."""
    du_file = distinfo / "direct_url.json"
    du_file.unlink(missing_ok=True)
    rel = f"{distinfo.name}/direct_url.json"
    record_file = distinfo / "RECORD"
    lines = [ln for ln in record_file.read_text().splitlines() if ln.split(",", 1)[0] != rel]
    if direct_url is not None:
        data = json.dumps(dict(direct_url), sort_keys=True).encode()
        du_file.write_bytes(data)
        lines.append(f"{rel},sha256={_record_hash(data)},{len(data)}")
    record_file.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- conda package cache


def _record_dict(rec: Any) -> dict[str, Any]:
    if isinstance(rec, Mapping):
        return dict(rec)
    # rattler RepoDataRecord / PrefixRecord
    return json.loads(rec.to_json()) if hasattr(rec, "to_json") else dict(vars(rec))


def _conda_record(rec: Mapping[str, Any], channel_url: str) -> dict[str, Any]:
    """The ``info/repodata_record.json`` conda 26 writes (same keys, same order; null/empty
    ``arch``/``platform``/``track_features`` are left out, ``package_type`` is added for noarch)."""
    fn = rec.get("fn") or rec.get("file_name") or rec["url"].rsplit("/", 1)[1]
    subdir = rec.get("subdir", SUBDIR)
    out: dict[str, Any] = {
        "name": rec["name"],
        "version": rec["version"],
        "build": rec["build"],
        "build_number": rec.get("build_number", 0),
        "channel": f"{channel_url}/{subdir}",
        "subdir": subdir,
        "fn": fn,
        "md5": rec["md5"],
        "url": f"{channel_url}/{subdir}/{fn}",
        "sha256": rec["sha256"],
        "depends": list(rec.get("depends", [])),
        "constrains": list(rec.get("constrains", [])),
    }
    for key in ("arch", "platform", "track_features"):
        if rec.get(key):
            out[key] = rec[key]
    if rec.get("noarch"):
        out["noarch"] = rec["noarch"]
    for key in ("license", "license_family"):
        if rec.get(key):
            out[key] = rec[key]
    if rec.get("noarch"):
        out["package_type"] = f"noarch_{rec['noarch']}"
    for key in ("timestamp", "size"):
        if rec.get(key) is not None:
            out[key] = rec[key]
    return out


def make_conda_package_cache(
    pkgs_dir: os.PathLike[str] | str,
    channel: LocalChannel | os.PathLike[str] | str,
    records: Iterable[Any],
) -> Path:
    """Make ``pkgs_dir`` a package cache real conda accepts: tarball + extracted dir with
    ``info/repodata_record.json`` + a ``urls.txt`` line per record. ``records`` are rattler records
    (as returned by :func:`install_env`) or dicts from ``conda-meta/*.json`` / repodata."""
    from conda_package_handling import api as cph

    pkgs = Path(pkgs_dir).absolute()
    pkgs.mkdir(parents=True, exist_ok=True)
    ch_url = _channel_url(channel)
    ch_path = Path(channel.path if isinstance(channel, LocalChannel) else _url_to_path(ch_url))
    repodata = json.loads((ch_path / SUBDIR / "repodata.json").read_text())
    by_fn = {**repodata.get("packages", {}), **repodata.get("packages.conda", {})}

    urls = []
    for raw in records:
        rec = _record_dict(raw)
        fn = rec.get("fn") or rec.get("file_name") or rec["url"].rsplit("/", 1)[1]
        # Prefer the channel's repodata entry: it is exactly what conda would have downloaded.
        base = {**rec, **by_fn.get(fn, {}), "fn": fn}
        conda_rec = _conda_record(base, ch_url)
        src = ch_path / conda_rec["subdir"] / fn
        shutil.copy2(src, pkgs / fn)
        extracted = pkgs / (
            fn[: -len(".tar.bz2")] if fn.endswith(".tar.bz2") else fn[: -len(".conda")]
        )
        if extracted.exists():
            shutil.rmtree(extracted)
        cph.extract(str(pkgs / fn), str(extracted))
        (extracted / "info" / "repodata_record.json").write_text(json.dumps(conda_rec, indent=2))
        urls.append(conda_rec["url"])
    with open(pkgs / "urls.txt", "a") as f:
        f.writelines(f"{u}\n" for u in urls)
    return pkgs


def _url_to_path(url: str) -> Path:
    from urllib.parse import unquote, urlparse

    return Path(unquote(urlparse(url).path))


# --------------------------------------------------------------------------- config helpers


def write_condarc(path: os.PathLike[str] | str, **settings: Any) -> Path:
    """Write a .condarc (YAML). Path values are stringified."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(_plain(settings), sort_keys=False) if settings else "")
    return path


def _plain(v: Any) -> Any:
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def set_env_vars(prefix: os.PathLike[str] | str, env_vars: Mapping[str, str]) -> Path:
    """Like ``conda env config vars set``: merge into ``conda-meta/state``, keeping other keys.

    Byte-identical to conda 26: PrefixData._write_environment_state_file uses conda's own
    ``common.serialize.json.dumps`` (defaults ``indent=2``) with ``ensure_ascii=False``, insertion
    order, no trailing newline -> ``{\n  "env_vars": {\n    "FOO": "bar"\n  }\n}``.
    """
    state_file = Path(prefix) / "conda-meta" / "state"
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    current = state.get("env_vars")
    if current:
        current.update(env_vars)
    else:
        state["env_vars"] = dict(env_vars)
    state_file.write_text(json.dumps(state, ensure_ascii=False, indent=2))
    return state_file
