"""conda_options.py (the option tables the shell layer parses conda's command line with) still
matches the argparse parsers of the conda under test, and cmdline.MEANINGS names conda's own
aliases (-n is --name, -y is --yes, ...)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conda_safeguard import cmdline
from conda_safeguard.conda_options import VERSIONS

SCRIPT = Path(__file__).with_name("conda_cli_options.py")


@pytest.fixture(scope="module")
def tables(conda_exe: list[str]) -> dict:
    # the Python that runs this conda: `python -m conda`, or the bin/python beside bin/conda
    python = conda_exe[0] if conda_exe[1:2] == ["-m"] else \
        str(Path(conda_exe[0]).with_name("python"))
    proc = subprocess.run([python, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_version_is_one_the_tables_were_generated_from(tables: dict) -> None:
    assert tables["version"] in VERSIONS, (
        f"conda {tables['version']} is not in conda_options.VERSIONS {VERSIONS}: regenerate "
        f"with {SCRIPT.name} --write")


def test_tables_match_conda(tables: dict) -> None:
    version = tables["version"]
    checked = 0
    for command, options in tables["commands"].items():
        assert cmdline.options_for(command, version) == options, command
        checked += len(options)
    assert checked > 300, checked  # every command the shell layer reads, with all its options


def test_meanings_are_condas_aliases(tables: dict) -> None:
    """Every option cmdline interprets sets the same argparse dest as the long form it maps to."""
    checked = 0
    for command, dests in tables["dests"].items():
        by_meaning: dict[str, set[str]] = {}
        for opt, dest in dests.items():
            meaning = cmdline.MEANINGS.get(opt)
            if opt == "-f":
                meaning = cmdline._SHORT_F[tables["commands"][command][opt]]
            if meaning is not None:
                by_meaning.setdefault(meaning, set()).add(dest)
                checked += 1
        for meaning, found in by_meaning.items():
            assert len(found) == 1, (command, meaning, found)
    assert checked > 50, checked

