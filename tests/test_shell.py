"""The bash and zsh snippets and the `guard` verb they call, in real shells.

Fake `conda`, `mamba` and `micromamba` executables on PATH record their argv (NUL-terminated,
so any byte but NUL survives). Envs are real (tests/factory.py); the store is the isolated one
conftest sets in CONDA_SAFEGUARD_HOME.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conda_safeguard import cmdline
from conda_safeguard.cli.runtime import Runtime
from conda_safeguard.cli.shellcmd import PLACEHOLDER, render, template_path
from conda_safeguard.exceptions import RefusedError, UsageError
from conda_safeguard.guard import write_mark
from conda_safeguard.policy import Effect
from conda_safeguard.shellguard import guard, guard_targets, invocation, plugin_decides
from conda_safeguard.store import Store

# Locally a missing zsh/shellcheck skips with its reason; in CI (.ci/run installs both) a missing
# tool must fail, never skip: the shell issue asks for both shells and shellcheck.
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")


def needs(tool: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(tool) is None and not IN_CI,
                              reason=f"{tool} is not installed (CI installs it)")


SHELLS = ["bash", pytest.param("zsh", marks=needs("zsh"))]
TOOL_NAMES = ("conda", "mamba", "micromamba")
REFUSED = 4

FAKE_TOOL = """#!/bin/sh
# fake {tool}: appends its argc and argv, each NUL-terminated, to $FAKE_LOG/{tool}
{{ printf '%s\\0' "$#"; for a in "$@"; do printf '%s\\0' "$a"; done; }} >> "$FAKE_LOG/{tool}"
if [ -n "${{FAKE_CHANGE-}}" ]; then rm -f "$FAKE_CHANGE"; fi
exit "${{FAKE_STATUS:-0}}"
"""
RECORDER = """#!/bin/sh
# stands in for the baked Python: records that it was started, then says "run it"
{ printf '%s\\0' "$#"; for a in "$@"; do printf '%s\\0' "$a"; done; } >> "$FAKE_LOG/python"
exit "${RECORDER_STATUS:-0}"
"""
# Variables of the user's session that would change what the guard decides.
_CLEARED = ("MAMBA_ROOT_PREFIX", "CONDA_NO_PLUGINS", "CONDA_JSON", "CONDA_DRY_RUN",
            "MAMBA_ALWAYS_YES", "CONDA_SAFEGUARD_SHELL", "CONDA_EXE", "MAMBA_EXE", "PYTHONPATH")


def read_calls(path: Path) -> list[list[str]]:
    """The argv of every call recorded in `path` (argc first, then the arguments)."""
    if not path.exists():
        return []
    fields = path.read_bytes().split(b"\0")[:-1]
    calls = []
    while fields:
        n = int(fields.pop(0))
        calls.append([f.decode("utf-8", "surrogateescape") for f in fields[:n]])
        del fields[:n]
    return calls


@dataclass
class Shell:
    """One shell (bash or zsh) with the snippet and fake tools, for one test."""

    name: str
    root: Path  # the fixture conda root
    tmp: Path
    bin: Path = field(init=False)
    log: Path = field(init=False)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.bin = self.tmp / "fakebin"
        self.log = self.tmp / "calls"
        self.bin.mkdir()
        self.log.mkdir()
        for tool in TOOL_NAMES:
            exe = self.bin / tool
            exe.write_text(FAKE_TOOL.format(tool=tool))
            exe.chmod(0o755)
        self.recorder = self.bin / "recording-python"
        self.recorder.write_text(RECORDER)
        self.recorder.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
        self.env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            FAKE_LOG=str(self.log),
            CONDA_SAFEGUARD_ROOT=str(self.root),
            # a conda outside this Python's prefix: the plugin cannot be the one deciding
            CONDA_EXE=str(self.bin / "conda"),
        )
        self.snippet = self.write_snippet()

    def write_snippet(self, python: str | None = None, name: str = "snippet") -> Path:
        path = self.tmp / f"{name}.{self.name}"
        path.write_text(render(self.name, python))
        return path

    def argv(self, script: str, *args: str, strict: bool = False) -> list[str]:
        if self.name == "bash":
            flags = ["--noprofile", "--norc"] + (["-euo", "pipefail"] if strict else [])
            return ["bash", *flags, "-c", script, "sh", *args]
        prelude = "setopt errexit nounset pipefail; " if strict else ""
        return ["zsh", "--no-rcs", "-c", prelude + script, "zsh", *args]

    def run(self, script: str, *args: str, snippet: Path | None = None, strict: bool = False,
            source: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        """Run `script`, after sourcing the snippet ($_SG_SNIPPET) unless `source` is False;
        "$@" in it are `args`, untouched."""
        full = f'. "$_SG_SNIPPET"; {script}' if source else script
        environ = {**self.env, "_SG_SNIPPET": str(snippet or self.snippet), **env}
        return subprocess.run(self.argv(full, *args, strict=strict), env=environ, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=60)

    def tool(self, tool: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run(f'{tool} "$@"', *args, **env)

    def calls(self, tool: str) -> list[list[str]]:
        return read_calls(self.log / tool)


@pytest.fixture(params=SHELLS)
def sh(request: pytest.FixtureRequest, conda_root: Path, tmp_path: Path) -> Shell:
    return Shell(request.param, conda_root, tmp_path)


@pytest.fixture
def bash(conda_root: Path, tmp_path: Path) -> Shell:
    return Shell("bash", conda_root, tmp_path)


def snapshots_of(prefix: Path) -> list[str]:
    """Reasons of the snapshots of `prefix`, newest first."""
    store = Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]), create=False)
    return [s.reason for s in store.snapshots() if s.prefix == str(prefix)]


# ---------------------------------------------------------------------------------------------
# the snippets as text


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_rendered_snippet(shell: str) -> None:
    text = render(shell, "/opt/my python/bin/python3")
    assert text.startswith("# shellcheck shell=bash\n")
    assert "_SAFEGUARD_PYTHON='/opt/my python/bin/python3'\n" in text
    assert PLACEHOLDER not in text
    assert text.rstrip().endswith(f'eval "$(conda-safeguard shell {shell})"')
    assert template_path(shell).parent.name == "shell"


def test_shell_verb_prints_the_snippet_for_this_python() -> None:
    out = subprocess.run([sys.executable, "-m", "conda_safeguard", "shell", "bash"],
                         capture_output=True, text=True, check=True)
    assert out.stderr == ""
    assert f"_SAFEGUARD_PYTHON={shlex.quote(sys.executable)}\n" in out.stdout
    assert out.stdout == render("bash")


@pytest.mark.parametrize("verb", ["shell", "guard"])
def test_help(verb: str) -> None:
    out = subprocess.run([sys.executable, "-m", "conda_safeguard", verb, "--help"],
                         capture_output=True, text=True)
    assert (out.returncode, out.stderr) == (0, "")
    assert "--tool" in out.stdout if verb == "guard" else "eval" in out.stdout


def test_guard_is_hidden_from_the_verb_list() -> None:
    out = subprocess.run([sys.executable, "-m", "conda_safeguard", "--help"],
                         capture_output=True, text=True, check=True)
    verbs = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("    ")]
    assert "shell" in verbs and "guard" not in verbs


@pytest.mark.parametrize("shell", SHELLS)
def test_syntax(shell: str, tmp_path: Path) -> None:
    f = tmp_path / "snippet"
    f.write_text(render(shell))
    subprocess.run([shell, "-n", str(f)], check=True)


@needs("shellcheck")
@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shellcheck(shell: str, tmp_path: Path) -> None:
    f = tmp_path / "snippet"
    f.write_text(render(shell, "/opt/my python/bin/python"))
    out = subprocess.run(["shellcheck", str(f)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_sourcing_prints_nothing_in_strict_mode(sh: Shell) -> None:
    out = sh.run(". \"$_SG_SNIPPET\"; . \"$_SG_SNIPPET\"; echo ok", strict=True,
                 source=False)
    assert (out.returncode, out.stdout, out.stderr) == (0, "ok\n", "")
    # nothing runs at shell start: not even the baked Python
    out = sh.run("echo ok", snippet=sh.write_snippet(str(sh.recorder)), strict=True)
    assert (out.stdout, out.stderr, sh.calls("python")) == ("ok\n", "", [])


def test_strict_mode_user_shell_keeps_working(sh: Shell, make_env: Callable[..., Path]) -> None:
    make_env("work")
    script = ('conda; conda list; conda install -n work libc; mamba repoquery x; '
              'micromamba --version; echo "done"')
    out = sh.run(script, strict=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("done\n")
    assert sh.calls("conda") == [[], ["list"], ["install", "-n", "work", "libc"]]


# ---------------------------------------------------------------------------------------------
# the protocol, end to end


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_refused_command_never_reaches_the_tool(sh: Shell, make_env: Callable[..., Path],
                                                tool: str) -> None:
    prefix = make_env("work")
    out = sh.tool(tool, "remove", "-n", "work", "--all", MAMBA_ROOT_PREFIX=str(sh.root))
    assert out.returncode == REFUSED, out.stderr
    assert "Refusing" in out.stderr and "'work'" in out.stderr
    assert "CONDA_SAFEGUARD_ALLOW=work" in out.stderr
    assert sh.calls(tool) == []
    assert prefix.is_dir()
    assert snapshots_of(prefix) == ["refused before remove"]


def test_mutating_command_is_snapshotted_before_it_runs(sh: Shell,
                                                        make_env: Callable[..., Path]) -> None:
    prefix = make_env("work")
    liba = next((prefix / "conda-meta").glob("liba-1.0-*.json"))
    # the fake conda deletes liba's record: what a real `conda remove liba` does to conda-meta
    out = sh.tool("conda", "remove", "-n", "work", "liba", FAKE_CHANGE=str(liba))
    assert out.returncode == 0, out.stderr
    assert sh.calls("conda") == [["remove", "-n", "work", "liba"]]
    assert not liba.exists()
    listed = subprocess.run([sys.executable, "-m", "conda_safeguard", "list", "work", "--json"],
                            capture_output=True, text=True, check=True)
    import json

    (snap,) = json.loads(listed.stdout)
    assert snap["reason"] == "before remove"
    store = Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]), create=False)
    state = store.load_state(store.resolve(snap["id"]))
    assert "liba" in {r.name for r in state.packages}  # taken before the fake removed it
    assert "snapshot" in out.stderr and "'work'" in out.stderr


def test_micromamba_default_target_is_the_active_env(sh: Shell,
                                                     make_env: Callable[..., Path]) -> None:
    prefix = make_env("active")
    out = sh.tool("micromamba", "install", "-y", "libc", CONDA_PREFIX=str(prefix))
    assert out.returncode == 0, out.stderr
    assert snapshots_of(prefix) == ["before install"]
    assert sh.calls("micromamba") == [["install", "-y", "libc"]]


@pytest.mark.parametrize(("allow", "status"), [("work", 0), ("other,work", 0), ("1", REFUSED),
                                               ("yes", REFUSED), ("*", REFUSED)])
def test_allow_names_the_env(bash: Shell, make_env: Callable[..., Path], allow: str,
                             status: int) -> None:
    make_env("work")
    out = bash.tool("conda", "env", "remove", "-n", "work", CONDA_SAFEGUARD_ALLOW=allow)
    assert out.returncode == status, out.stderr
    assert bash.calls("conda") == ([["env", "remove", "-n", "work"]] if status == 0 else [])


def test_names_with_spaces_and_unicode(sh: Shell, make_env: Callable[..., Path]) -> None:
    name = "my env ü"
    prefix = make_env(name)
    forms = [["remove", "-n", name, "--all"], ["remove", f"--prefix={prefix}", "--all", "-y"]]
    if sh.name == "bash":  # the parsing is the shell's no more than the tool's: once is enough
        forms += [["remove", f"--name={name}", "--all"], ["remove", f"-n{name}", "--all"],
                  ["remove", "-p", str(prefix), "--all"]]
    for argv in forms:
        out = sh.tool("conda", *argv)
        assert out.returncode == REFUSED, (argv, out.stderr)
        assert f"'{name}'" in out.stderr
    assert sh.calls("conda") == []
    out = sh.tool("conda", "remove", "-n", name, "--all", CONDA_SAFEGUARD_ALLOW=name)
    assert out.returncode == 0, out.stderr
    assert sh.calls("conda") == [["remove", "-n", name, "--all"]]


def test_prefix_with_spaces(bash: Shell, make_env: Callable[..., Path]) -> None:
    prefix = make_env("with space")
    assert " " in str(prefix)
    out = bash.tool("mamba", "install", "-p", str(prefix), "libc")
    assert out.returncode == 0, out.stderr
    assert snapshots_of(prefix) == ["before install"]
    assert bash.calls("mamba") == [["install", "-p", str(prefix), "libc"]]


ODD_ARGS = ["", " two  spaces ", "new\nline", "*", "$HOME", "`id`", "ü", "\\", "'\"", "-",
            "--", "\t"]


def test_arguments_arrive_byte_for_byte(sh: Shell, make_env: Callable[..., Path]) -> None:
    make_env("work")
    out = sh.tool("conda", "install", "-n", "work", *ODD_ARGS)  # guarded path
    assert out.returncode == 0, out.stderr
    out = sh.tool("mamba", "search", *ODD_ARGS)  # pass-through path
    assert out.returncode == 0, out.stderr
    assert sh.calls("conda") == [["install", "-n", "work", *ODD_ARGS]]
    assert sh.calls("mamba") == [["search", *ODD_ARGS]]


@pytest.mark.parametrize("status", [0, 1, 7])
def test_exit_status_of_the_tool_is_returned(sh: Shell, status: int) -> None:
    snippet = sh.write_snippet(str(sh.recorder))
    for script in ('conda list; echo "st=$?"', 'micromamba install x; echo "st=$?"'):
        out = sh.run(script, snippet=snippet, FAKE_STATUS=str(status))
        assert out.stdout == f"st={status}\n", out.stderr


PASS_THROUGH = [
    ["list"], ["frobnicate", "install"], ["activate", "work"], ["deactivate"], ["env", "list"],
    ["env", "export", "-n", "x"], ["env", "config", "vars", "list"], ["search", "remove"],
    ["self-update"], ["run", "-n", "x", "pip", "install", "y"], ["--version"], [],
    ["clean", "--all"], ["config", "--set", "always_yes", "true"], ["info", "--envs"],
    ["-n", "install", "list"], ["--", "install"], ["env", "config", "list"],
    ["env", "config", "vars"], ["env", "vars", "set"],
]


def test_other_commands_pass_through_without_python(sh: Shell) -> None:
    """Unknown and read-only subcommands never start the guard's Python."""
    snippet = sh.write_snippet(str(sh.recorder))
    script = 'for t in conda mamba micromamba; do "$t" "$@"; done'
    for argv in PASS_THROUGH:
        out = sh.run(script, *argv, snippet=snippet)
        assert out.returncode == 0, out.stderr
    assert sh.calls("python") == []
    for tool in TOOL_NAMES:
        assert sh.calls(tool) == PASS_THROUGH
    # the recorder does record: a mutating command starts it, with the protocol's argv
    sh.run('micromamba "$@"', "-r", "/x", "install", "y", snippet=snippet)
    assert sh.calls("python") == [["-m", "conda_safeguard", "guard", "--tool", "micromamba",
                                   "--", "-r", "/x", "install", "y"]]


MUTATING = [
    ["install", "x"], ["update", "--all"], ["upgrade", "x"], ["remove", "x"],
    ["uninstall", "x"], ["create", "-n", "x"], ["rename", "-n", "a", "b"],
    ["env", "remove", "-n", "x"], ["env", "create"], ["env", "update", "-f", "e.yml"],
    ["install", "--revision", "2"], ["--no-plugins", "remove", "--all"],
    ["-r", "/root", "create", "-n", "x"], ["-v", "env", "--debug", "remove"],
    ["env", "config", "vars", "set", "A=1"], ["env", "config", "vars", "unset", "A"],
    ["--no-p", "remove", "--al"],
]


@pytest.mark.parametrize("shell", SHELLS)
def test_shell_and_python_agree_on_what_is_guarded(shell: str, conda_root: Path,
                                                   tmp_path: Path) -> None:
    """The snippet's `case` starts the guard exactly for the commands cmdline can guard."""
    s = Shell(shell, conda_root, tmp_path)
    script = ('for a in "$@"; do if __safeguard_mutates $a; then echo yes; else echo no; fi; '
              'done')
    if shell == "zsh":
        script = script.replace("$a", "${=a}")  # zsh does not split words unless asked
    cases = PASS_THROUGH + MUTATING
    out = s.run(script, *(" ".join(c) for c in cases))
    assert out.returncode == 0, out.stderr
    shell_says = out.stdout.split()
    python_says = ["yes" if cmdline.parse("conda", c).command else "no" for c in cases]
    assert shell_says == python_says


def test_missing_python_warns_and_passes_through(sh: Shell) -> None:
    snippet = sh.write_snippet(str(sh.tmp / "gone" / "python"))
    out = sh.run('conda remove -n work --all; echo "st=$?"; conda list', snippet=snippet)
    assert out.stdout == "st=0\n"
    assert out.stderr.count("\n") == 1  # one warning, only for the guarded command
    assert "gone/python is missing" in out.stderr and "unguarded" in out.stderr
    assert sh.calls("conda") == [["remove", "-n", "work", "--all"], ["list"]]


def test_guard_error_stops_the_command(sh: Shell, make_env: Callable[..., Path]) -> None:
    make_env("work")
    out = sh.tool("conda", "env", "create", "-f", "https://example.com/env.yml")
    assert out.returncode == 2  # a usage error: which env it would replace cannot be seen
    assert "remote" in out.stderr and "__safeguard_doctor" in out.stderr
    assert "CONDA_SAFEGUARD_SHELL=0" in out.stderr
    assert sh.calls("conda") == []
    # the recorder exits 3: any status other than 0 stops the command and is returned
    snippet = sh.write_snippet(str(sh.recorder))
    out = sh.run('conda install x; echo "st=$?"', snippet=snippet, RECORDER_STATUS="3")
    assert out.stdout == "st=3\n"
    assert sh.calls("conda") == []


def test_wrappers_off(sh: Shell, make_env: Callable[..., Path]) -> None:
    make_env("work")
    out = sh.tool("conda", "remove", "-n", "work", "--all", CONDA_SAFEGUARD_SHELL="0")
    assert out.returncode == 0, out.stderr
    assert sh.calls("conda") == [["remove", "-n", "work", "--all"]]


def test_no_plugins_conda_is_guarded(bash: Shell, make_env: Callable[..., Path]) -> None:
    make_env("work")
    for argv, env in ((["--no-plugins", "remove", "-n", "work", "--all"], {}),
                      (["remove", "-n", "work", "--all"], {"CONDA_NO_PLUGINS": "true"})):
        out = bash.tool("conda", *argv, **env)
        assert out.returncode == REFUSED, out.stderr
    assert bash.calls("conda") == []


def _fake_conda_install(site: Path, version: str) -> None:
    """A `conda` distribution importlib.metadata can see (the plugin's entry point is ours)."""
    dist = site / f"conda-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: conda\nVersion: {version}\n")


def test_shell_layer_steps_aside_when_the_plugin_decides(bash: Shell, tmp_path: Path,
                                                          make_env: Callable[..., Path]) -> None:
    make_env("work")
    site = tmp_path / "site"
    _fake_conda_install(site, "26.7.1")
    env = {"PYTHONPATH": str(site), "CONDA_EXE": str(Path(sys.prefix) / "bin" / "conda")}
    out = bash.tool("conda", "remove", "-n", "work", "--all", **env)
    assert out.returncode == 0, out.stderr  # the plugin (in conda) decides: one layer only
    assert bash.calls("conda") == [["remove", "-n", "work", "--all"]]
    out = bash.tool("conda", "--no-plugins", "remove", "-n", "work", "--all", **env)
    assert out.returncode == REFUSED
    out = bash.tool("mamba", "remove", "-n", "work", "--all", **env)
    assert out.returncode == REFUSED


@pytest.mark.parametrize(("version", "conda_exe", "argv", "environ", "decides"), [
    ("26.7.1", "ours", ["remove", "--all"], {}, True),
    ("23.7.0", "ours", ["remove", "--all"], {}, True),
    ("23.5.2", "ours", ["remove", "--all"], {}, False),  # no pre-command hooks before 23.7
    (None, "ours", ["remove", "--all"], {}, False),  # conda not in the guard's Python
    ("26.7.1", "other", ["remove", "--all"], {}, False),  # another conda install runs
    ("26.7.1", "ours", ["--no-plugins", "remove", "--all"], {}, False),
    ("26.7.1", "ours", ["remove", "--all"], {"CONDA_NO_PLUGINS": "true"}, False),
    ("26.7.1", "ours", ["remove", "--all"], {"CONDA_NO_PLUGINS": "0"}, True),
])
def test_plugin_decides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, version: str | None,
                        conda_exe: str, argv: list[str], environ: dict[str, str],
                        decides: bool) -> None:
    if version:
        _fake_conda_install(tmp_path / "site", version)
        monkeypatch.syspath_prepend(str(tmp_path / "site"))
    exe = Path(sys.prefix) / "bin" / "conda" if conda_exe == "ours" else tmp_path / "bin/conda"
    env = {"CONDA_EXE": str(exe), **environ}
    assert plugin_decides(cmdline.parse("conda", argv), env) is decides
    for tool in ("mamba", "micromamba"):
        assert plugin_decides(cmdline.parse(tool, argv), env) is False


# ---------------------------------------------------------------------------------------------
# the existing conda function, and evaluating twice


EXISTING = """
conda() {
    case "${1-}" in
    activate) _FAKE_ACTIVE="$2"; set -o noclobber ;;
    *) echo "orig conda: $*"; \\command conda "$@" ;;
    esac
}
micromamba() { echo "orig micromamba: $*"; \\command micromamba "$@"; }
"""


def test_existing_functions_are_kept_and_delegated_to(sh: Shell) -> None:
    snippet = sh.write_snippet(str(sh.recorder))
    script = EXISTING + """
. "$_SG_SNIPPET"
conda activate work; echo "active=$_FAKE_ACTIVE"; [[ -o noclobber ]] && echo "options kept"
conda install -n work x
micromamba list
mamba list
__safeguard_doctor
"""
    out = sh.run(script, snippet=snippet, source=False)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:5] == ["active=work", "options kept", "orig conda: install -n work x",
                         "orig micromamba: list",
                         "conda-safeguard shell snippet: loaded (" + sh.name + ")"]
    assert "  conda: guarded (delegates to the earlier conda function)" in lines
    assert "  mamba: guarded" in lines
    assert sh.calls("python") == [
        ["-m", "conda_safeguard", "guard", "--tool", "conda", "--", "install", "-n", "work", "x"],
        ["-m", "conda_safeguard", "--version"],  # the doctor's check
    ]
    assert sh.calls("conda") == [["install", "-n", "work", "x"]]
    assert sh.calls("micromamba") == [["list"]]


def test_evaluating_twice_wraps_once(sh: Shell) -> None:
    snippet = sh.write_snippet(str(sh.recorder))
    script = EXISTING + '. "$_SG_SNIPPET"; . "$_SG_SNIPPET"; conda install x; micromamba remove y'
    out = sh.run(script, snippet=snippet, source=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "orig conda: install x\norig micromamba: remove y\n"
    assert len(sh.calls("python")) == 2  # one guard per command, not two
    assert sh.calls("conda") == [["install", "x"]]


def test_eval_line_from_the_cli(sh: Shell) -> None:
    """The README's install line, with the real command; evaluated twice."""
    exe = f"{sys.executable} -m conda_safeguard"
    script = (f'eval "$({exe} shell {sh.name})"; eval "$({exe} shell {sh.name})"; '
              'conda list; __safeguard_doctor')
    out = subprocess.run(sh.argv(script), env=sh.env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "  conda: guarded\n" in out.stdout
    assert sh.calls("conda") == [["list"]]


def test_alias_proof(sh: Shell) -> None:
    """Aliases of the builtins it calls, or of the tool names, do not bend the snippet."""
    snippet = sh.write_snippet(str(sh.recorder))
    broken = "command builtin local return shift printf emulate eval unset declare whence type"
    script = ("shopt -s expand_aliases\n" if sh.name == "bash" else "") + "".join(
        f"alias {name}='echo BROKEN'\n" for name in broken.split()) + """alias mamba='echo BROKEN'
\\eval '. "$_SG_SNIPPET"'
\\eval 'conda install x; conda list; \\mamba remove y; __safeguard_doctor >/dev/null'
"""
    out = sh.run(script, snippet=snippet, source=False)
    assert "BROKEN" not in out.stdout + out.stderr
    assert sh.calls("conda") == [["install", "x"], ["list"]]
    assert sh.calls("mamba") == [["remove", "y"]]
    assert [c[4] for c in sh.calls("python")[:2]] == ["conda", "mamba"]  # both were guarded


def test_doctor_reports_problems(sh: Shell) -> None:
    snippet = sh.write_snippet(str(sh.tmp / "gone" / "python"))
    script = '. "$_SG_SNIPPET"; conda() { echo redefined; }; __safeguard_doctor; echo "st=$?"'
    out = sh.run(script, snippet=snippet)
    assert "PROBLEM: its Python" in out.stdout and "gone/python is missing" in out.stdout
    assert "PROBLEM: conda: a conda function defined after the snippet" in out.stdout
    assert out.stdout.endswith("st=1\n")


# ---------------------------------------------------------------------------------------------
# the typed-name prompt, in a real terminal


@pytest.fixture
def pexpect() -> object:
    return pytest.importorskip("pexpect", reason="pexpect is a test dependency")


PROMPT = "Type the environment's name"


def _spawn(pexpect: object, sh: Shell, argv: list[str]) -> object:
    script = '. "$_SG_SNIPPET"; conda "$@"; echo "status=$?"'
    cmd = sh.argv(script, *argv)
    env = {**sh.env, "_SG_SNIPPET": str(sh.snippet)}
    return pexpect.spawn(cmd[0], cmd[1:], env=env, encoding="utf-8",  # type: ignore[attr-defined]
                         timeout=30, dimensions=(40, 200))


@pytest.mark.parametrize(("answer", "reached"), [("my env ü", True), ("my env", False)])
def test_prompt_in_a_terminal(pexpect: object, sh: Shell, make_env: Callable[..., Path],
                              answer: str, reached: bool) -> None:
    prefix = make_env("my env ü")
    child = _spawn(pexpect, sh, ["remove", "-n", "my env ü", "--all"])
    child.expect(PROMPT)  # type: ignore[attr-defined]
    assert "'my env ü' is a protected environment" in child.before  # type: ignore[attr-defined]
    child.sendline(answer)  # type: ignore[attr-defined]
    child.expect(r"status=(\d+)")  # type: ignore[attr-defined]
    status = int(child.match.group(1))  # type: ignore[attr-defined]
    after_prompt = child.before  # type: ignore[attr-defined]
    child.expect(pexpect.EOF)  # type: ignore[attr-defined]
    if reached:
        assert status == 0
        assert sh.calls("conda") == [["remove", "-n", "my env ü", "--all"]]
        assert snapshots_of(prefix) == ["before remove"]
    else:
        assert status == REFUSED
        assert "Aborted" in after_prompt
        assert sh.calls("conda") == []


def test_ctrl_c_at_the_prompt_in_an_interactive_shell(pexpect: object, sh: Shell,
                                                      make_env: Callable[..., Path]) -> None:
    """The user's own shell: ^C at the prompt aborts (status 130) and the shell carries on."""
    make_env("work")
    argv = ["bash", "--noprofile", "--norc", "-i"] if sh.name == "bash" else \
        ["zsh", "--no-rcs", "-i"]
    env = {**sh.env, "PS1": "READY> ", "PROMPT": "READY> "}
    child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8",  # type: ignore
                          timeout=30, dimensions=(40, 200))
    child.expect("READY> ")  # type: ignore[attr-defined]
    child.sendline(f'. "{sh.snippet}"')  # type: ignore[attr-defined]
    child.expect("READY> ")  # type: ignore[attr-defined]
    child.sendline("conda env remove -n work")  # type: ignore[attr-defined]
    child.expect(PROMPT)  # type: ignore[attr-defined]
    child.sendintr()  # type: ignore[attr-defined]
    child.expect("READY> ")  # type: ignore[attr-defined]
    assert "Aborted" in child.before and "Traceback" not in child.before  # type: ignore
    child.sendline("echo status=$?")  # type: ignore[attr-defined]
    child.expect(r"status=(\d+)")  # type: ignore[attr-defined]
    assert child.match.group(1) == "130"  # type: ignore[attr-defined]
    assert sh.calls("conda") == []
    child.sendline("conda env remove -n work")  # type: ignore[attr-defined]
    child.expect(PROMPT)  # type: ignore[attr-defined]
    child.sendline("work")  # type: ignore[attr-defined]
    child.expect("READY> ")  # type: ignore[attr-defined]
    child.sendline("exit")  # type: ignore[attr-defined]
    child.expect(pexpect.EOF)  # type: ignore[attr-defined]
    assert sh.calls("conda") == [["env", "remove", "-n", "work"]]


# ---------------------------------------------------------------------------------------------
# guard(), in process: which envs, what effect


@pytest.fixture
def rt(conda_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    monkeypatch.setenv("CONDA_SAFEGUARD_ROOT", str(conda_root))
    monkeypatch.chdir(conda_root.parent)
    yield Runtime.from_system()


def targets(rt: Runtime, tool: str, *argv: str) -> list[tuple[str, Effect, bool]]:
    return [(Path(t.prefix).name, t.effect, t.exists)
            for t in guard_targets(rt, cmdline.parse(tool, list(argv)))]


def run_guard(rt: Runtime, tool: str, *argv: str, **environ: str) -> None:
    guard(rt, cmdline.parse(tool, list(argv)), list(argv), {**os.environ, **environ})


def test_targets_by_command(rt: Runtime, make_env: Callable[..., Path], tmp_path: Path) -> None:
    make_env("work")
    make_env("other")
    d, m = Effect.DESTROY, Effect.MUTATE
    assert targets(rt, "conda", "install", "-n", "work", "x") == [("work", m, True)]
    assert targets(rt, "conda", "update", "-n", "work", "--all") == [("work", m, True)]
    assert targets(rt, "conda", "remove", "-n", "work", "x") == [("work", m, True)]
    assert targets(rt, "conda", "remove", "-n", "work", "--all") == [("work", d, True)]
    assert targets(rt, "micromamba", "remove", "-a", "-n", "work") == [("work", d, True)]
    # naming every installed package empties the env
    assert targets(rt, "conda", "remove", "-n", "work", "python", "liba", "libb=1.0") == \
        [("work", d, True)]
    assert targets(rt, "conda", "env", "remove", "-n", "work") == [("work", d, True)]
    assert targets(rt, "conda", "create", "-n", "work", "python") == [("work", d, True)]
    assert targets(rt, "conda", "create", "-n", "new", "python") == []
    assert targets(rt, "conda", "rename", "-n", "work", "fresh") == [("work", d, True)]
    assert targets(rt, "conda", "rename", "-n", "work", "other") == [("work", d, True)]
    assert targets(rt, "conda", "rename", "-n", "work", "other", "--yes") == \
        [("work", d, True), ("other", d, True)]
    assert targets(rt, "conda", "install", "-n", "missing", "x") == [("missing", m, False)]
    assert targets(rt, "conda", "list", "-n", "work") == []


def test_env_file_names_the_target(rt: Runtime, make_env: Callable[..., Path],
                                   conda_root: Path) -> None:
    make_env("work")
    env_file = conda_root.parent / "environment.yml"  # the default file, in the cwd
    env_file.write_text("name: work\ndependencies: [python]\n")
    d = Effect.DESTROY
    assert targets(rt, "conda", "env", "create") == [("work", d, True)]
    assert targets(rt, "conda", "env", "create", "-f", str(env_file)) == [("work", d, True)]
    assert targets(rt, "micromamba", "create", "-f", str(env_file)) == [("work", d, True)]
    assert targets(rt, "conda", "env", "update", "-f", str(env_file)) == \
        [("work", Effect.MUTATE, True)]
    assert targets(rt, "conda", "env", "create", "-n", "new", "-f", str(env_file)) == []
    assert targets(rt, "conda", "env", "create", "-f", "missing.yml") == []  # conda fails
    with pytest.raises(UsageError, match="remote"):
        targets(rt, "conda", "env", "create", "-f", "https://example.com/e.yml")
    assert targets(rt, "conda", "env", "create", "-n", "x", "-f", "https://example.com/e.yml") \
        == []


def test_install_revision(rt: Runtime, make_env: Callable[..., Path], channel: object,
                          pkg_cache: Path) -> None:
    from tests.factory import install_env

    prefix = make_env("work", ["python", "liba=1.0"])  # revision 0
    install_env(prefix, channel, ["libc"], cache_dir=pkg_cache)  # revision 1 adds libc
    install_env(prefix, channel, ["liba=2.0"], cache_dir=pkg_cache)  # revision 2 updates liba
    d, m = Effect.DESTROY, Effect.MUTATE
    # back to 0 removes libc; back to 1 only changes liba's version back
    assert targets(rt, "conda", "install", "-n", "work", "--revision", "0") == [("work", d, True)]
    assert targets(rt, "conda", "install", "-n", "work", "--revision=1") == [("work", m, True)]
    assert targets(rt, "conda", "install", "-n", "work", "--revision", "2") == [("work", m, True)]
    # a revision that does not exist: the tool refuses it and changes nothing
    assert targets(rt, "conda", "install", "-n", "work", "--revision", "9") == [("work", m, True)]


def test_micromamba_root_prefix(rt: Runtime, make_env: Callable[..., Path],
                                tmp_path: Path, channel: object, pkg_cache: Path) -> None:
    from tests.factory import install_env

    make_env("work")  # in the conda root: micromamba with another root does not see it
    mm_root = tmp_path / "mm root"
    install_env(mm_root / "envs" / "work", channel, ["python"], cache_dir=pkg_cache)
    with pytest.raises(RefusedError) as e:
        run_guard(rt, "micromamba", "-r", str(mm_root), "remove", "-n", "work", "--all")
    assert str(mm_root / "envs" / "work") in str(e.value)


@pytest.mark.parametrize(("argv", "environ"), [
    (["remove", "-n", "work", "--all"], {}),
    (["remove", "-n", "work", "--all", "-y"], {}),
    (["remove", "-n", "work", "--all", "--json"], {}),
    (["remove", "-n", "work", "--all"], {"CONDA_ALWAYS_YES": "true"}),
    (["create", "-n", "work", "python"], {}),
    (["rename", "-n", "work", "new"], {}),
])
def test_refusals(rt: Runtime, make_env: Callable[..., Path], argv: list[str],
                  environ: dict[str, str]) -> None:
    make_env("work")
    with pytest.raises(RefusedError, match="protected environment 'work'"):
        run_guard(rt, "conda", *argv, **environ)


def test_invocation_reads_the_tools_environment(conda_root: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.factory import write_condarc

    monkeypatch.setenv("CONDA_SAFEGUARD_ROOT", str(conda_root))
    rt = Runtime.from_system()

    def inv(tool: str, *argv: str, **environ: str) -> tuple[bool, bool, bool]:
        i = invocation(rt, cmdline.parse(tool, list(argv)), environ)
        return i.yes, i.json, i.dry_run

    assert inv("conda", "remove") == (False, False, False)
    assert inv("conda", "remove", "-y", "--json", "-d") == (True, True, True)
    assert inv("conda", "remove", CONDA_ALWAYS_YES="true", CONDA_JSON="1",
               CONDA_DRY_RUN="yes") == (True, True, True)
    assert inv("conda", "remove", MAMBA_ALWAYS_YES="1") == (False, False, False)
    assert inv("micromamba", "remove", MAMBA_ALWAYS_YES="1") == (True, False, False)
    assert inv("mamba", "remove", CONDA_ALWAYS_YES="on") == (True, False, False)
    assert inv("conda", "remove", CONDA_ALWAYS_YES="false") == (False, False, False)
    write_condarc(os.environ["CONDARC"], always_yes=True)
    rt = Runtime.from_system()
    assert inv("micromamba", "remove") == (True, False, False)


def test_what_is_allowed(rt: Runtime, make_env: Callable[..., Path]) -> None:
    prefix = make_env("work")
    run_guard(rt, "conda", "remove", "-n", "work", "--all", "--dry-run")
    run_guard(rt, "conda", "remove", "-n", "work", "--all", CONDA_SAFEGUARD_ALLOW="work")
    run_guard(rt, "conda", "install", "-n", "work", "-y", "x")
    write_mark(prefix, False)  # unprotected: no prompt, still a snapshot
    run_guard(rt, "mamba", "remove", "-n", "work", "--all", "-y")
    assert len(snapshots_of(prefix)) == 1  # unchanged env: the first snapshot stands


def test_json_refusal_is_a_json_object(bash: Shell, make_env: Callable[..., Path]) -> None:
    import json

    make_env("work")
    out = bash.tool("conda", "remove", "-n", "work", "--all", "--json")
    assert out.returncode == REFUSED
    data = json.loads(out.stdout)
    assert data["exit_code"] == REFUSED and "work" in data["message"]


# The shell layer's share of issue 10's bypasses: every spelling argparse accepts, glob specs,
# dependency pruning, symlinked paths and `env config vars`, in bash and zsh, with real envs.
BYPASSES = [
    ["--no-plugins", "remove", "-n", "work", "--al", "-y"],
    ["--no-p", "remove", "--na", "work", "--all", "-y"],
    ["--no-plugins", "remove", "--name=work", "--a"],
    ["--no-plugins", "remove", "-nwork", "--all", "--ye"],
    ["--no-plugins", "remove", "-yn", "work", "--all"],
    ["--no-plugins", "remove", "-n=work", "--all"],
    ["--no-plugins", "env", "remove", "--na", "work"],
    ["--no-plugins", "remove", "-n", "work", "*", "-y"],
    ["--no-plugins", "remove", "-n", "work", "p*", "l*", "-y"],
    ["--no-plugins", "remove", "-n", "work", "lib*", "python", "-y"],
    ["--no-plugins", "remove", "-n", "work", "libb", "-y"],  # liba is pruned after it
]


@pytest.mark.parametrize("argv", BYPASSES, ids=" ".join)
def test_bypass_spellings_are_refused(sh: Shell, make_env: Callable[..., Path],
                                      argv: list[str]) -> None:
    work = make_env("work", ["libb"] if argv[-2:] == ["libb", "-y"] else
                    ["python", "liba=1.0", "libb"])
    out = sh.tool("conda", *argv)
    assert out.returncode == REFUSED, out.stderr
    assert "'work'" in out.stderr
    assert sh.calls("conda") == []
    # the snapshot is of work, not of base (`--na X` used to snapshot base)
    assert snapshots_of(work) and not snapshots_of(sh.root)


def test_remove_that_leaves_packages_runs(sh: Shell, make_env: Callable[..., Path]) -> None:
    make_env("work", ["python", "libb"])
    make_env("lone", ["libb"])
    for argv in (["--no-plugins", "remove", "-n", "work", "liba", "-y"],  # python stays
                 ["--no-plugins", "remove", "-n", "work", "nothere*", "-y"],  # conda refuses
                 # --force-remove: neither dependents nor pruning, liba stays
                 ["--no-plugins", "remove", "-n", "lone", "libb", "--force-r", "-y"]):
        out = sh.tool("conda", *argv)
        assert out.returncode == 0, out.stderr
    assert len(sh.calls("conda")) == 3


def test_symlink_named_like_a_temp_env(sh: Shell, make_env: Callable[..., Path]) -> None:
    important = make_env("important")
    link = sh.tmp / "quick-tmp"
    link.symlink_to(important)
    for allow in ("", "quick-tmp", str(link)):
        out = sh.tool("conda", "--no-plugins", "remove", "-p", str(link), "--all", "-y",
                      CONDA_SAFEGUARD_ALLOW=allow)
        assert out.returncode == REFUSED, out.stderr
        assert "'important'" in out.stderr
    assert sh.calls("conda") == []
    out = sh.tool("conda", "--no-plugins", "remove", "-p", str(link), "--all", "-y",
                  CONDA_SAFEGUARD_ALLOW="important")
    assert out.returncode == 0, out.stderr
    assert sh.calls("conda") == [["--no-plugins", "remove", "-p", str(link), "--all", "-y"]]


def test_env_config_vars_set_takes_a_snapshot(sh: Shell, make_env: Callable[..., Path]) -> None:
    work = make_env("work")
    for tool, argv in (("conda", ["--no-plugins", "env", "config", "vars", "set", "--na", "work",
                                  "A=1"]),
                       ("mamba", ["env", "config", "vars", "unset", "-n", "work", "A"])):
        out = sh.tool(tool, *argv)
        assert out.returncode == 0, out.stderr
    # one snapshot: the fake tools change nothing, and an unchanged env adds none
    assert snapshots_of(work) == ["before env_vars"]
    assert not snapshots_of(sh.root)
    assert len(sh.calls("conda")) == len(sh.calls("mamba")) == 1


@pytest.mark.parametrize("tool", ["mamba", "micromamba"])
def test_base_installs_and_nameless_names_get_the_plugins_notes(sh: Shell, tool: str) -> None:
    out = sh.tool(tool, "install", "-y", "-p", str(sh.root), "libc",
                  MAMBA_ROOT_PREFIX=str(sh.root))
    assert out.returncode == 0, out.stderr
    assert "warning: installing into base" in out.stderr
    assert "`conda-safeguard freeze -n base`" in out.stderr  # our standalone verb, not conda's
    out = sh.tool(tool, "create", "-y", "-n", "test2", "libc", MAMBA_ROOT_PREFIX=str(sh.root))
    assert "the env name 'test2' says nothing" in out.stderr
    out = sh.tool(tool, "create", "-y", "-n", "speech-asr-py311", "libc",
                  MAMBA_ROOT_PREFIX=str(sh.root))
    assert "says nothing" not in out.stderr and "installing into base" not in out.stderr
    out = sh.tool(tool, "install", "-y", "-q", "-p", str(sh.root), "libc",
                  MAMBA_ROOT_PREFIX=str(sh.root))
    assert "warning" not in out.stderr  # quiet means quiet
