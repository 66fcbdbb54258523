"""cmdline.parse: conda/mamba/micromamba command lines as those tools read them (pure, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conda_safeguard.cmdline import TOOLS, ToolCommand, parse, read_env_file_target


def p(*argv: str, tool: str = "conda") -> ToolCommand:
    return parse(tool, list(argv))


# (argv, command) -- the canonical names policy.classify takes
COMMANDS = [
    (["install", "numpy"], "install"),
    (["install", "--revision", "3"], "install_revision"),
    (["install", "--revision=3"], "install_revision"),
    (["update", "--all"], "update"),
    (["upgrade", "numpy"], "update"),
    (["remove", "numpy"], "remove"),
    (["uninstall", "numpy"], "remove"),
    (["create", "-n", "x"], "create"),
    (["rename", "-n", "a", "b"], "rename"),
    (["env", "remove", "-n", "x"], "env_remove"),
    (["env", "create", "-f", "e.yml"], "env_create"),
    (["env", "update", "-f", "e.yml"], "env_update"),
    (["--no-plugins", "install", "x"], "install"),
    (["-v", "--debug", "remove", "--all"], "remove"),
    (["list"], None),
    (["env", "list"], None),
    (["env", "export", "-n", "x"], None),
    (["env", "config", "vars", "set", "A=1"], "env_vars"),
    (["env", "config", "vars", "unset", "A"], "env_vars"),
    (["env", "config", "vars", "list"], None),
    (["env"], None),
    (["activate", "install"], None),
    (["self-update"], None),
    (["run", "-n", "x", "pip", "install", "y"], None),
    (["frobnicate", "install"], None),
    ([], None),
    (["--version"], None),
    (["--", "install"], None),
]


@pytest.mark.parametrize(("argv", "command"), COMMANDS)
@pytest.mark.parametrize("tool", TOOLS)
def test_subcommand(tool: str, argv: list[str], command: str | None) -> None:
    assert parse(tool, argv).command == command


def test_options_before_the_subcommand_per_tool() -> None:
    # micromamba takes -r ROOT (and -n) before the subcommand; conda's argparse refuses both,
    # and reading them alike keeps the snippets' `case` and this parser in agreement
    assert p("-r", "/root", "install", "x", tool="micromamba").command == "install"
    assert p("-r", "/root", "install", "x", tool="mamba").root_prefix == "/root"
    assert p("-r", "/root", "install", "x").command == "install"
    # after the subcommand, -a is micromamba's --all, nothing in conda
    assert p("remove", "-a", tool="micromamba").all and not p("remove", "-a").all
    assert p("-n", "x", "remove", "--all", tool="micromamba").name == "x"


@pytest.mark.parametrize("argv", [
    ["remove", "-n", "my env ü", "--all"],
    ["remove", "--name", "my env ü", "--all"],
    ["remove", "--name=my env ü", "--all"],
    ["remove", "-nmy env ü", "--all"],
    ["remove", "-yn", "my env ü", "--all"],
    ["remove", "--all", "-n", "my env ü"],
    ["remove", "--na", "my env ü", "--al"],
    ["remove", "--nam=my env ü", "--a"],
    ["remove", "-n=my env ü", "--all"],
    ["remove", "-yn=my env ü", "--all"],
    ["--no-p", "remove", "-n", "my env ü", "--all"],
])
def test_name_forms(argv: list[str]) -> None:
    cmd = parse("conda", argv)
    assert (cmd.command, cmd.name, cmd.prefix, cmd.all) == ("remove", "my env ü", None, True)


@pytest.mark.parametrize("argv", [
    ["install", "-p", "/a b/env", "x"],
    ["install", "--prefix", "/a b/env", "x"],
    ["install", "--prefix=/a b/env", "x"],
    ["install", "-p/a b/env", "x"],
])
def test_prefix_forms(argv: list[str]) -> None:
    cmd = parse("conda", argv)
    assert (cmd.prefix, cmd.name, cmd.positionals) == ("/a b/env", None, ("x",))


def test_flags() -> None:
    cmd = p("--no-plugins", "remove", "-n", "x", "--all", "-y", "--json", "--dry-run", "-q")
    assert (cmd.all, cmd.yes, cmd.json, cmd.dry_run, cmd.quiet, cmd.no_plugins) == \
        (True, True, True, True, True, True)
    cmd = p("remove", "-ydq", "numpy")
    assert (cmd.yes, cmd.dry_run, cmd.quiet, cmd.all, cmd.positionals) == \
        (True, True, True, False, ("numpy",))
    assert p("remove", "-a", "-n", "x", tool="micromamba").all
    plain = p("install", "numpy")
    assert not (plain.yes or plain.json or plain.dry_run or plain.all or plain.no_plugins)


def test_option_values_are_not_positionals() -> None:
    cmd = p("remove", "-c", "conda-forge", "--channel", "bioconda", "-n", "x", "--solver",
            "classic", "liba", "libb")
    assert cmd.positionals == ("liba", "libb")
    assert p("install", "--", "-weird-name").positionals == ("-weird-name",)
    # a value that looks like a subcommand is still a value
    assert p("-n", "install", "list", tool="micromamba").command is None


def test_flags_after_double_dash_are_positional() -> None:
    cmd = p("remove", "numpy", "--", "--all", "-y")
    assert (cmd.all, cmd.yes, cmd.positionals) == (False, False, ("numpy", "--all", "-y"))


def test_missing_value_at_the_end_does_not_raise() -> None:
    assert p("remove", "-n").name is None
    assert p("remove", "--name").name is None
    assert p("install", "--revision").command == "install"


def test_rename() -> None:
    cmd = parse("conda", ["rename", "-n", "old", "new", "--force"], conda_version="23.11.0")
    assert (cmd.command, cmd.name, cmd.destination, cmd.force) == ("rename", "old", "new", True)
    cmd = p("rename", "-p", "/envs/old env", "/envs/new env", "--yes")
    assert (cmd.prefix, cmd.destination, cmd.yes) == ("/envs/old env", "/envs/new env", True)
    assert p("rename", "-n", "old").destination is None
    assert p("install", "x").destination is None


ABBREVIATIONS = [  # argparse takes any unique prefix of a long option (conda; not mamba 2)
    (["remove", "-n", "x", "--al", "-y"], {"all": True, "yes": True, "name": "x"}),
    (["remove", "--na", "x", "--a", "--ye"], {"all": True, "yes": True, "name": "x"}),
    (["--no-p", "remove", "--name", "x", "--all"], {"no_plugins": True, "all": True}),
    (["--no-plug", "remove", "-n", "x"], {"no_plugins": True}),
    (["install", "--pre=/e", "--rev", "2"], {"prefix": "/e", "revision": "2",
                                             "command": "install_revision"}),
    (["remove", "--dry", "-n", "x", "--js"], {"dry_run": True, "json": True}),
    # --n is ambiguous (--name, --no-deps, …): argparse refuses, so it names nothing
    (["remove", "--n", "x", "--all"], {"name": None, "positionals": ("x",)}),
    (["env", "create", "--fi", "e.yml"], {"files": ("e.yml",), "command": "env_create"}),
    (["env", "remove", "--na", "x", "-y"], {"name": "x", "yes": True}),
    (["env", "config", "vars", "set", "--na", "x", "A=1"], {"name": "x",
                                                           "positionals": ("A=1",)}),
]


@pytest.mark.parametrize(("argv", "expected"), ABBREVIATIONS)
def test_abbreviations(argv: list[str], expected: dict[str, object]) -> None:
    cmd = parse("conda", argv)
    assert {k: getattr(cmd, k) for k in expected} == expected


def test_no_abbreviations_for_mamba() -> None:
    assert not p("remove", "-n", "x", "--al", tool="mamba").all
    assert p("remove", "--na", "x", tool="micromamba").name is None


def test_value_never_taken_from_an_option() -> None:
    # argparse: `-n -y` is "expected one argument": conda refuses, we name nothing
    cmd = p("remove", "-n", "--all")
    assert (cmd.name, cmd.all) == (None, True)


def test_options_follow_the_conda_version() -> None:
    # conda 26 create -f FILE; conda < 26 create -f is --force
    assert parse("conda", ["create", "-fn", "x"], conda_version="25.11.1").name == "x"
    assert parse("conda", ["create", "-f", "e.yml", "-n", "x"]).files == ("e.yml",)
    assert parse("conda", ["create", "-f", "e.yml"], conda_version="23.11.0").files == ()
    # versions between or beyond those tested take the nearest older table
    assert parse("conda", ["create", "-fn", "x"], conda_version="25.9.0").name == "x"
    assert parse("conda", ["create", "-fn", "x"], conda_version="4.14.0").name == "x"


def test_revision() -> None:
    cmd = p("install", "-n", "x", "--revision", "2")
    assert (cmd.command, cmd.revision, cmd.name) == ("install_revision", "2", "x")


def test_files_and_root_prefix() -> None:
    cmd = p("-r", "/mm root", "create", "-f", "a.yml", "--file=b.yaml", "-fc.txt",
            tool="micromamba")
    assert cmd.root_prefix == "/mm root"
    assert cmd.files == ("a.yml", "b.yaml", "c.txt")
    assert cmd.env_files() == ("a.yml", "b.yaml")  # create: YAML files only
    assert p("--root-prefix=/r", "install", "x", tool="micromamba").root_prefix == "/r"


def test_env_files_defaults() -> None:
    assert p("env", "create").env_files() == ("environment.yml",)
    assert p("env", "update").env_files() == ("environment.yml",)
    assert p("env", "create", tool="mamba").env_files() == ("environment.yml",)
    assert p("env", "create", tool="micromamba").env_files() == ()
    assert p("env", "create", "-f", "x.yml").env_files() == ("x.yml",)
    assert p("install", "--file", "x.yml").env_files() == ()
    assert p("env", "remove", "-f", "x.yml").env_files() == ()


def test_typed() -> None:
    assert p("--no-plugins", "env", "remove", "-n", "x").typed == "conda env remove"
    assert p("install", tool="micromamba").typed == "micromamba install"


def test_byte_exact_arguments_survive() -> None:
    odd = ["", " ", "a\nb", "*", "$HOME", "ü", "\\", "'\""]
    cmd = p("install", "-n", "x", *odd)
    assert cmd.positionals == tuple(odd)


@pytest.mark.parametrize(("text", "expected"), [
    ("name: work\ndependencies: [python]\n", ("work", None)),
    ("name: my env ü\n", ("my env ü", None)),
    ("prefix: /opt/envs/x\n", (None, "/opt/envs/x")),
    ("dependencies: [python]\n", (None, None)),
    ("", (None, None)),
    ("- just\n- a list\n", (None, None)),
    ("name: 3\n", ("3", None)),
])
def test_read_env_file_target(tmp_path: Path, text: str,
                              expected: tuple[str | None, str | None]) -> None:
    f = tmp_path / "environment.yml"
    f.write_text(text, encoding="utf-8")
    assert read_env_file_target(str(f)) == expected


def test_read_env_file_target_errors(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        read_env_file_target(str(tmp_path / "missing.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ValueError):
        read_env_file_target(str(bad))
