"""Read the options of the conda commands the shell layer parses, from conda's own argparse
parsers, as JSON: {"version": ..., "commands": {"": {...}, "remove": {...}, "env create": {...}}}
where each command maps an option string to 1 (takes a value) or 0 (a flag).

Run with the Python of a conda root: `ROOT/bin/python tests/conda/conda_cli_options.py`.
`--write FILE.json ...` (from the project's Python) writes the JSON of several condas into
conda_safeguard/conda_options.py; tests/conda/test_cmdline_tables.py checks it still matches.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: The commands the shell layer reads (conda's `remove` alias `uninstall`, `update` alias
#: `upgrade` share their parser).
COMMANDS = ("install", "update", "upgrade", "remove", "uninstall", "create", "rename")
ENV_COMMANDS = ("create", "update", "remove")
ENV_VARS_COMMANDS = ("set", "unset")


def _options(parser: argparse.ArgumentParser) -> dict[str, int]:
    out: dict[str, int] = {}
    for action in parser._actions:  # argparse has no public API for this
        if isinstance(action, argparse._SubParsersAction):
            continue
        # 0 a flag, 1 one value, 2 any number of values (nargs "*" or "+": greedy)
        takes_value = 0 if action.nargs == 0 else 2 if action.nargs in ("*", "+") else 1
        for opt in action.option_strings:
            out[opt] = takes_value
    return dict(sorted(out.items()))


def _dests(parser: argparse.ArgumentParser) -> dict[str, str]:
    """option string -> the argparse dest it sets (which options are aliases of which)."""
    return {opt: a.dest for a in parser._actions for opt in a.option_strings}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _env_parser(subs: dict[str, argparse.ArgumentParser]) -> argparse.ArgumentParser:
    if "create" in _subparsers(subs.get("env") or argparse.ArgumentParser()):
        return subs["env"]  # conda >= 24: `conda env` is one of conda's own subcommands
    # conda 23.x: `conda env` execs the separate conda_env CLI
    from conda_env.cli.main import create_parser  # type: ignore[import-not-found]

    saved = sys.argv
    sys.argv = ["conda-env", "x"]  # create_parser() adds --help to an empty argv
    try:
        return create_parser()  # type: ignore[no-any-return]
    finally:
        sys.argv = saved


def read_tables() -> dict[str, Any]:
    from conda import __version__
    from conda.base.context import context
    from conda.cli.conda_argparse import generate_parser

    context.__init__()
    top = generate_parser()
    subs = _subparsers(top)
    parsers = {"": top, **{name: subs[name] for name in COMMANDS}}
    env = _subparsers(_env_parser(subs))
    for name in ENV_COMMANDS:
        parsers[f"env {name}"] = env[name]
    vars_parser = _subparsers(_subparsers(env["config"])["vars"])
    for name in ENV_VARS_COMMANDS:
        parsers[f"env config vars {name}"] = vars_parser[name]
    return {"version": __version__,
            "commands": {key: _options(p) for key, p in parsers.items()},
            "dests": {key: _dests(p) for key, p in parsers.items()}}


def split(tables: list[dict[str, Any]]) -> tuple[dict[str, dict[str, int]],
                                                dict[str, dict[str, dict[str, int]]]]:
    """(options every conda has alike, {command: {option: {version: kind}}} for the rest)."""
    versions = [str(t["version"]) for t in tables]
    common: dict[str, dict[str, int]] = {}
    varies: dict[str, dict[str, dict[str, int]]] = {}
    commands = sorted({c for t in tables for c in t["commands"]})
    for command in commands:
        opts = sorted({o for t in tables for o in t["commands"].get(command, {})})
        for opt in opts:
            kinds = {v: t["commands"][command][opt] for v, t in zip(versions, tables, strict=True)
                     if opt in t["commands"].get(command, {})}
            if len(kinds) == len(versions) and len(set(kinds.values())) == 1:
                common.setdefault(command, {})[opt] = next(iter(kinds.values()))
            else:
                varies.setdefault(command, {})[opt] = dict(sorted(kinds.items()))
    return common, varies


def render_module(tables: list[dict[str, Any]]) -> str:
    tables = sorted(tables, key=lambda t: tuple(int(x) for x in str(t["version"]).split(".")))
    versions = tuple(str(t["version"]) for t in tables)
    common, varies = split(tables)
    lines = [
        '"""conda\'s command-line options, generated from conda\'s own argparse parsers by',
        "tests/conda/conda_cli_options.py (do not edit by hand; tests/conda checks it still",
        "matches every conda in VERSIONS).",
        "",
        "Kinds: 0 a flag, 1 takes one value, 2 takes any number of values (nargs '*').",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        f"VERSIONS: Final = {versions!r}",
        "",
        "#: command -> option -> kind, the same in every conda of VERSIONS",
        "COMMON: Final[dict[str, dict[str, int]]] = {",
    ]
    for command, opts in common.items():
        lines.append(f"    {command!r}: {{")
        lines += [f"        {opt!r}: {kind}," for opt, kind in opts.items()]
        lines.append("    },")
    lines += ["}", "",
              "#: command -> option -> {version: kind}: options some condas lack or read otherwise",
              "VARIES: Final[dict[str, dict[str, dict[str, int]]]] = {"]
    for command, opts in varies.items():
        lines.append(f"    {command!r}: {{")
        lines += [f"        {opt!r}: {kinds!r}," for opt, kinds in opts.items()]
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--write":
        out = Path(__file__).resolve().parents[2] / "conda_safeguard" / "conda_options.py"
        tables = [json.loads(Path(p).read_text()) for p in sys.argv[2:]]
        out.write_text(render_module(tables))
        print(f"wrote {out} from {len(tables)} condas")
        return
    json.dump(read_tables(), sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
