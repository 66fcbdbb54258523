"""`conda install conda-safeguard`, as recipe/recipe.yaml describes the package: build a real
`.conda` of this checkout, index it into a local channel, install it with real conda into a
fresh conda root, and see the plugin refuse `conda remove --all` of a protected env.

No rattler-build here, so the test builds the package the way the recipe says: its build script
(`pip install . --no-deps`) as a wheel of this checkout unpacked into `site-packages/`, and the
recipe's metadata (name, version, noarch: python, run deps, run_constraints, entry points,
license) as `info/`. The run deps come from a channel of stand-in packages: empty conda packages
named and versioned like the Python distributions the root already has (conda-forge's real
packages would install those same files), and a `python` record matching the root's interpreter
(a make-root.sh root is a venv: conda sees no python there, and a noarch: python package needs
one).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from conda_safeguard import __version__
from tests.factory import LocalChannel, write_condarc

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipe" / "recipe.yaml"
FIXED_MTIME = 1_700_000_000
#: conda-forge names of the run deps -> their Python distribution names
DIST_NAMES = {"pluggy": "pluggy", "pyyaml": "PyYAML", "platformdirs": "platformdirs",
              "ruamel.yaml": "ruamel.yaml", "conda-pack": "conda-pack"}


# ---------------------------------------------------------------------------------------------
# the recipe


def load_recipe(path: Path = RECIPE) -> dict[str, Any]:
    """recipe.yaml with its `${{ var }}` context variables filled in (PYTHON stays)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    context = {k: str(v) for k, v in raw.get("context", {}).items()}

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return re.sub(r"\$\{\{\s*(\w+)\s*\}\}",
                          lambda m: context.get(m.group(1), m.group(0)), value)
        if isinstance(value, list):
            return [fill(v) for v in value]
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return fill({k: v for k, v in raw.items() if k != "context"})  # type: ignore[no-any-return]


def test_recipe_matches_the_project() -> None:
    """What conda-forge would build is this project: same version, deps and entry point."""
    import tomllib

    recipe = load_recipe()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert recipe["package"] == {"name": project["name"], "version": __version__}
    assert recipe["build"]["noarch"] == "python"
    run = recipe["requirements"]["run"]
    assert run[0] == f"python >={project['requires-python'].removeprefix('>=')}"

    def norm(req: str) -> str:
        if " " in req:
            name, _, spec = req.partition(" ")
        else:
            name, spec = [*re.split(r"(?=[<>=!])", req, maxsplit=1), ""][:2]
        return f"{name.lower()} {spec.replace(' ', '')}".strip()

    assert sorted(norm(r) for r in run[1:]) == sorted(
        norm(re.sub(r"^([A-Za-z0-9_.\-]+)", r"\1 ", d)) for d in project["dependencies"])
    assert not any(r.split()[0] == "conda" for r in run)  # conda is a run constraint only
    assert [c.split()[0] for c in recipe["requirements"]["run_constraints"]] == ["conda"]
    assert recipe["build"]["python"]["entry_points"] == [
        f"conda-safeguard = {project['scripts']['conda-safeguard']}"]
    assert recipe["about"]["license"] == project["license"]
    assert (REPO / recipe["about"]["license_file"]).read_text().startswith("BSD 3-Clause")


# ---------------------------------------------------------------------------------------------
# building the package the recipe describes


def _stage_file(stage: Path, rel: str, data: bytes) -> None:
    path = stage / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def build_noarch_python(recipe: dict[str, Any], out_dir: Path, work: Path,
                        wheel: Path | None = None) -> Path:
    """A `.conda` of this checkout: the recipe's build script's files plus its metadata.
    ``wheel``: this checkout already built into a wheel (else it is built here)."""
    from conda_package_handling import api as cph

    if wheel is None:
        wheels = work / "wheel"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                        str(wheels), str(REPO)], check=True, capture_output=True, text=True)
        (wheel,) = wheels.glob("*.whl")
    stage = work / "stage"
    with zipfile.ZipFile(wheel) as zf:  # noarch: python keeps site-packages/ relative
        for member in zf.infolist():
            if not member.is_dir():
                _stage_file(stage, f"site-packages/{member.filename}", zf.read(member))
    payload = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())

    pkg, build = recipe["package"], recipe["build"]
    reqs = recipe["requirements"]
    depends = list(reqs["run"])
    build_hash = hashlib.sha256(json.dumps(depends).encode()).hexdigest()[:7]
    build_string = f"pyh{build_hash}_{build['number']}"
    index = {"name": pkg["name"], "version": pkg["version"], "build": build_string,
             "build_number": build["number"], "depends": depends,
             "constrains": list(reqs.get("run_constraints", [])), "noarch": "python",
             "subdir": "noarch", "license": recipe["about"]["license"],
             "timestamp": FIXED_MTIME * 1000}
    link = {"noarch": {"type": "python", "entry_points": build["python"]["entry_points"]},
            "package_metadata_version": 1}
    about = {k: recipe["about"][k] for k in ("summary", "description", "license")}
    paths = [{"_path": rel, "path_type": "hardlink",
              "sha256": hashlib.sha256((stage / rel).read_bytes()).hexdigest(),
              "size_in_bytes": (stage / rel).stat().st_size} for rel in payload]
    info = {
        "info/index.json": json.dumps(index, indent=2, sort_keys=True),
        "info/link.json": json.dumps(link, indent=2, sort_keys=True),
        "info/about.json": json.dumps(about, indent=2, sort_keys=True),
        "info/paths.json": json.dumps({"paths": paths, "paths_version": 1}, indent=2),
        "info/files": "".join(f"{rel}\n" for rel in payload),
        "info/recipe/recipe.yaml": RECIPE.read_text(encoding="utf-8"),
        "info/licenses/LICENSE": (REPO / recipe["about"]["license_file"]).read_text(),
    }
    for rel, text in info.items():
        _stage_file(stage, rel, text.encode())
    for root, dirs, files in os.walk(stage):
        for entry in dirs + files:
            os.utime(os.path.join(root, entry), (FIXED_MTIME, FIXED_MTIME))
    fn = f"{pkg['name']}-{pkg['version']}-{build_string}.conda"
    out_dir.mkdir(parents=True, exist_ok=True)
    cph.create(str(stage), [*info, *payload], fn, str(out_dir))
    return out_dir / fn


def test_built_package_holds_the_project(tmp_path: Path) -> None:
    """The archive conda installs: every module, the shell snippets, the plugin entry point."""
    from conda_package_streaming.package_streaming import stream_conda_component

    pkg = build_noarch_python(load_recipe(), tmp_path / "out", tmp_path / "work")
    names: dict[str, bytes] = {}
    for component in ("info", "pkg"):
        with open(pkg, "rb") as f:
            for tar, member in stream_conda_component(str(pkg), f, component):
                if member.isfile():
                    fobj = tar.extractfile(member)
                    names[member.name] = fobj.read() if fobj else b""
    modules = sorted(p.name for p in (REPO / "conda_safeguard").glob("*.py"))
    shipped = sorted(Path(n).name for n in names
                     if re.fullmatch(r"site-packages/conda_safeguard/[^/]+\.py", n))
    assert shipped == modules
    assert {"site-packages/conda_safeguard/shell/bash.sh",
            "site-packages/conda_safeguard/shell/zsh.sh"} <= set(names)
    entry_points = next(v for n, v in names.items() if n.endswith(".dist-info/entry_points.txt"))
    assert b"[conda]\nconda-safeguard = conda_safeguard.plugin" in entry_points
    index = json.loads(names["info/index.json"])
    assert (index["noarch"], index["subdir"], index["constrains"]) == \
        ("python", "noarch", ["conda >=23.11"])
    files = names["info/files"].decode().split()
    assert len(files) == len(json.loads(names["info/paths.json"])["paths"]) > len(modules)


# ---------------------------------------------------------------------------------------------
# installing it with real conda


def _make_root_script() -> Path | None:
    named = os.environ.get("CONDA_SAFEGUARD_CONDA_WHEELS")
    candidates = [Path(named)] if named else [
        parent / "shared" / "conda" for parent in REPO.parents]
    return next((c / "make-root.sh" for c in candidates if (c / "make-root.sh").is_file()),
                None)


def _conda_version(conda_exe: list[str]) -> str:
    out = subprocess.run([*conda_exe, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.split()[-1]


def _root_python_facts(root: Path) -> dict[str, Any]:
    """The root's Python version and the versions of the run deps' files in it. Those conda's
    own dependencies do not bring are pip-installed first (the files conda-forge's packages
    would bring), at the versions this test's Python has."""
    import importlib.metadata

    python = str(root / "bin" / "python")
    code = ("import importlib.metadata as m, json, platform, sys\n"
            "def v(n):\n"
            "    try: return m.version(n)\n"
            "    except m.PackageNotFoundError: return None\n"
            "print(json.dumps({'python': platform.python_version(), "
            "'mm': '%d.%d' % sys.version_info[:2], "
            f"'dists': {{n: v(n) for n in {sorted(DIST_NAMES.values())!r}}}}}))")

    def facts() -> dict[str, Any]:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    found = facts()
    missing = [f"{d}=={importlib.metadata.version(d)}" for d, v in found["dists"].items()
               if v is None]
    if missing:
        subprocess.run([python, "-m", "pip", "install", "-q", *missing], check=True,
                       capture_output=True, text=True)
        found = facts()
    return found


def copy_root(source: Path, dest: Path) -> None:
    """A make-root.sh root copied to ``dest``, its envs and package cache left out. A venv
    names its own path (the scripts' #! lines, `conda init`'s files): rewritten to ``dest``."""
    shutil.copytree(source, dest, symlinks=True,
                    ignore=lambda d, names: [n for n in names if Path(d) == source and
                                             n in ("envs", "pkgs")])
    for sub in ("envs", "pkgs"):
        (dest / sub).mkdir()
    old, new = str(source).encode(), str(dest).encode()
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.suffix != ".pyc":  # marshalled
            data = path.read_bytes()
            if old in data:
                path.write_bytes(data.replace(old, new))


@pytest.fixture
def fresh_root(conda_under_test: Any, conda_exe: list[str], conda_root_prefix: Path | None,
               tmp_path: Path) -> Path:
    """A conda root of the version under test without this project in it: the root the other
    tests share (made by make-root.sh, this project pip-installed) copied and the project
    pip-uninstalled, as a user removes it; a new root from make-root.sh (~15 s) for a conda
    given from outside."""
    if conda_root_prefix is not None:
        root = tmp_path / f"root-{conda_under_test.version}"
        copy_root(conda_root_prefix, root)
        proc = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "uninstall", "-y",
                               "conda-safeguard"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return root
    wheel = getattr(conda_under_test, "wheel", None)
    script = wheel.parent / "make-root.sh" if wheel is not None else _make_root_script()
    if script is None:
        pytest.skip("make-root.sh not found: set CONDA_SAFEGUARD_CONDA_WHEELS to the folder "
                    "holding it and the conda wheels")
    version = getattr(conda_under_test, "version", None) or _conda_version(conda_exe)
    root = tmp_path / f"root-{version}"
    proc = subprocess.run([str(script), version, str(root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return root


def test_conda_install_from_a_local_channel_protects(fresh_root: Path, conda_roots: Any,
                                                     tmp_path: Path) -> None:
    root = fresh_root
    facts = _root_python_facts(root)
    recipe = load_recipe()
    channel = LocalChannel(tmp_path / "channel")
    pkg = build_noarch_python(recipe, channel.path / "noarch", tmp_path / "work",
                              wheel=conda_roots.plugin_wheel())  # built once a session
    # stand-ins for conda-forge's python and run deps, matching what the root already has
    channel.add("python", facts["python"],
                files={f"lib/python{facts['mm']}/site-packages/.conda-python-stub": b""})
    for conda_name, dist in DIST_NAMES.items():
        channel.add(conda_name, facts["dists"][dist], depends=["python"])
    channel.index()
    repodata = json.loads((channel.path / "noarch" / "repodata.json").read_text())
    assert pkg.name in repodata["packages.conda"]

    condarc = write_condarc(tmp_path / "condarc.yml", solver="classic", channels=[],
                            add_pip_as_python_dependency=False, auto_update_conda=False,
                            notify_outdated_conda=False, envs_dirs=[root / "envs"],
                            pkgs_dirs=[tmp_path / "pkgs"])
    env = {**os.environ, "CONDARC": str(condarc), "CONDA_SAFEGUARD_HOME": str(tmp_path / "store")}
    env.pop("CONDA_SAFEGUARD_ROOT", None)
    conda = [str(root / "bin" / "conda")]
    source = ["--offline", "--override-channels", "-c", channel.url]

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*conda, *args], env={**env, **extra}, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, cwd=tmp_path)

    # before: no conda-safeguard in the root, neither conda's record nor its files
    site = root / "lib" / f"python{facts['mm']}" / "site-packages"
    base = json.loads(run("list", "-n", "base", "--json").stdout)
    assert not [p for p in base if p["name"] == "conda-safeguard"]
    assert not (site / "conda_safeguard").exists()
    proc = run("install", "-n", "base", *source, "conda-safeguard", "-y")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = json.loads(run("list", "-n", "base", "--json").stdout)
    ours = next(p for p in listed if p["name"] == "conda-safeguard")
    assert (ours["version"], ours["base_url"], ours["platform"]) == \
        (__version__, channel.url, "noarch"), ours
    assert (site / "conda_safeguard" / "plugin.py").is_file()
    assert (site / "conda_safeguard" / "__pycache__").is_dir()  # conda compiled it
    script = root / "bin" / "conda-safeguard"  # from the recipe's entry point
    assert subprocess.run([str(script), "--version"], capture_output=True, text=True,
                          env=env).stdout.strip().endswith(__version__)

    # the plugin, loaded by conda from the conda package, protects an env
    proc = run("create", "-n", "important", *source, "pluggy", "-y")
    assert proc.returncode == 0, proc.stderr
    important = root / "envs" / "important"
    before = sorted(p.name for p in (important / "conda-meta").glob("*.json"))
    proc = run("remove", "-n", "important", "--all", "-y")
    assert proc.returncode != 0
    assert "Refusing to change protected environment 'important'" in proc.stderr
    assert sorted(p.name for p in (important / "conda-meta").glob("*.json")) == before
    # conda's own checks still see a consistent base
    assert run("list", "-n", "base", "conda-safeguard").returncode == 0
    # and a script that names the env may remove it
    proc = run("remove", "-n", "important", "--all", "-y", CONDA_SAFEGUARD_ALLOW="important")
    assert proc.returncode == 0, proc.stderr
    assert not (important / "conda-meta").exists()
    shutil.rmtree(root, ignore_errors=True)  # a root is ~100 MB
