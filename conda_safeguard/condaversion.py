"""Which conda is in use, and which of the condas we test behaves like it.

conda's behaviour that we mirror (its command-line options, what `conda env export` writes)
changes between releases. The plugin knows its conda (`conda.__version__`); the standalone
command and the shell layer look at the conda the user calls, without running it.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The conda releases tested in CI (../shared/conda); conda_options.VERSIONS lists the same.
TESTED: tuple[str, ...] = ("23.11.0", "24.11.3", "25.5.1", "25.11.1", "26.7.1")


def version_key(version: str) -> tuple[int, ...]:
    out = []
    for piece in version.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def at_least(version: str | None, minimum: str) -> bool:
    """`version` is `minimum` or newer; an unknown version counts as the newest."""
    return version is None or version_key(version) >= version_key(minimum)


def nearest_tested(version: str | None, tested: Sequence[str] = TESTED) -> str:
    """The newest of `tested` not newer than `version` (the oldest for older condas, the newest
    when unknown): the release whose behaviour we assume."""
    if not version:
        return tested[-1]
    key = version_key(version)
    older = [v for v in tested if version_key(v) <= key]
    return older[-1] if older else tested[0]


def version_in_root(root: Path) -> str | None:
    """conda's version in an install: its conda-meta record, else its dist-info (pip)."""
    for pattern in ("conda-meta/conda-[0-9]*.json",
                    "lib/python*/site-packages/conda-[0-9]*.dist-info"):
        for hit in sorted(root.glob(pattern)):
            stem = hit.name.removesuffix(".json").removesuffix(".dist-info")
            version = stem.split("-")[1]  # conda-24.11.3-py311_0, conda-24.11.3
            if version[:1].isdigit():
                return version
    return None


def conda_in_use(environ: Mapping[str, str] | None = None) -> str | None:
    """The version of the conda the user calls (CONDA_EXE, else `conda` on PATH), else of a
    conda importable here; None when no conda is found."""
    environ = os.environ if environ is None else environ
    exe = environ.get("CONDA_EXE") or shutil.which("conda", path=environ.get("PATH"))
    if exe:
        found = version_in_root(Path(os.path.realpath(exe)).parent.parent)
        if found:
            return found
    try:
        return importlib.metadata.version("conda")
    except importlib.metadata.PackageNotFoundError:
        return None
