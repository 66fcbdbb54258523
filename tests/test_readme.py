"""The README as a tested front door: every command in its code blocks runs, against real envs in
a temporary HOME, and so does every example in each verb's --help.

A command is a code-block line whose first word (after `$ ` and VAR=value assignments) is a program
we know; the other lines of a block are output or file contents. Commands run in README order in
one folder and one store, as a reader following along would. Commands that need real conda run in
tests/conda/test_readme_in_conda.py; the few that cannot run here at all are in NOT_RUN, each with
its reason. `conda safeguard VERB` runs as `conda-safeguard VERB` here (the same verbs).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.factory import LocalChannel, install_env

README = Path(__file__).resolve().parent.parent / "README.md"

#: First words that make a code-block line a command.
PROGRAMS = frozenset({"conda", "conda-safeguard", "mamba", "micromamba", "python", "python3",
                      "eval", "srun", "pdsh", "clush", "bash", "zsh", "pip", "ansible-playbook",
                      "mkdir", "cd", "export", "source", "cat", "ls", "git", "rattler-build"})

#: Commands that cannot run in a test at all, with the reason (matched on the command's start).
NOT_RUN = {
    '"$(conda info --base)/bin/python" -m pip install .':
        "installs into the user's conda base; the real-conda tests install the plugin that way "
        "into their root",
    'python3 -m pip install -e ".[test]" && python3 -m pytest':
        "runs this test suite itself (and installs into the interpreter running it)",
    "srun ": "needs a Slurm cluster",
    "pdsh ": "needs pdsh and ssh to cluster nodes",
    "clush ": "needs ClusterShell and ssh to cluster nodes",
    "conda install -n base conda-safeguard":
        "needs a channel that carries conda-safeguard; tests/conda/test_recipe.py installs the "
        "package from a local channel",
    "rattler-build build": "needs rattler-build (not on PyPI) and minutes of build time",
    "conda install -n base -c ./build conda-safeguard": "needs the rattler-build output above",
    "conda-safeguard pack -n ml -o ml.cspack --force --sign-key":
        "needs the reader's ssh signing key (tests/test_pack.py signs with a generated one)",
    "conda-safeguard unpack ml.cspack -n ml-node2 --allowed-signers":
        "needs a signed archive and the reader's allowed_signers file (tests/test_pack.py)",
    "conda-safeguard schedule install --at":
        "installs a crontab entry or systemd timer for the real user (crontab and systemd are "
        "per user, not per HOME); tests/test_schedule.py runs it against fakes",
    "conda-safeguard schedule remove": "removes the real user's schedule (tests/test_schedule.py)",
    "conda remove -n myenv --all\n":
        "shown at a terminal: the prompt; test_readme_prompt_example_is_what_the_prompt_prints "
        "drives it in a pty",
}

#: Shown outputs whose command must exit this way (anything else exits 0).
EXIT_BY_OUTPUT = {"SafeguardRefusal:": 4}


@dataclass
class Shown:
    """A command as the README shows it."""

    line: int  # 1-based line in README.md
    command: str
    output: list[str] = field(default_factory=list)  # lines shown after a `$ ` command

    @property
    def program(self) -> str:
        return first_program(self.command) or ""

    def not_run_reason(self) -> str | None:
        for start, why in NOT_RUN.items():
            if (self.command + "\n").startswith(start):
                return why
        return None


def first_program(line: str) -> str | None:
    """The program a shell line runs (after VAR=value words), if it is one we know."""
    if line.startswith('"$('):
        return line[3:].split()[0] if line[3:].split() else None
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    for word in words:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", word):
            continue
        return word if word in PROGRAMS else None
    return None


def code_blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of each fenced or 4-space-indented code block."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            start, body = i + 2, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            yield start, body
        elif line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            start, body = i + 1, []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            while body and not body[-1].strip():
                body.pop()
            yield start, body
            continue
        i += 1


def shown_commands(text: str) -> list[Shown]:
    out: list[Shown] = []
    for start, body in code_blocks(text):
        # Without `$ `, a block's commands are its leading command lines: the first other line
        # starts output or file contents (a playbook that runs our command is not one).
        current: Shown | None = None  # the last `$ ` command: what follows is its output
        leading = True
        for offset, raw in enumerate(body):
            if raw.startswith("$ "):
                current = Shown(start + offset, raw[2:].strip())
                out.append(current)
            elif current is not None:
                if raw.strip():
                    current.output.append(raw)
            elif leading and raw.strip():
                if first_program(raw.strip()):
                    out.append(Shown(start + offset, raw.strip()))
                else:
                    leading = False
    return out


# ---------------------------------------------------------------------------------------------
# the world the README talks about


@pytest.fixture
def own_envs(conda_root: Path, channel: LocalChannel, tmp_path: Path) -> Callable[..., Path]:
    """make_env with a package cache of this test's own: other tests may write into env files
    hardlinked to the session's shared cache, and `verify --files` would rightly see that."""

    def make(name: str, specs: tuple[str, ...] | list[str] = ("python", "liba=1.0", "libb"),
             ) -> Path:
        prefix = conda_root / "envs" / name
        install_env(prefix, channel, list(specs), cache_dir=tmp_path / "pkgs")
        return prefix

    return make


@dataclass
class World:
    cwd: Path
    env: dict[str, str]
    make_env: Callable[..., Path]
    conda: list[str] | None  # real conda, when the test has it

    def sh(self, command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, text=True,
                              capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout)

    def ok(self, command: str) -> str:
        proc = self.sh(command)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        return proc.stdout


def make_world(tmp_path: Path, make_env: Callable[..., Path], conda: list[str] | None = None,
               *, myenv_removed: bool = False) -> World:
    """Envs `myenv`, `ml`, `pytorch` (three snapshots), `pytorch-copy`, `old-env` (removed, with
    a snapshot); files environment.yml, node1..3.json, all.json, gpu01.json and fp/*.json.

    With `myenv_removed`, myenv has two different snapshots and is gone (what --help's restore
    and undo examples start from)."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    bindirs = [str(Path(sys.executable).parent)]
    if conda:
        bindirs.insert(0, str(Path(conda[0]).parent))
    env = {**os.environ, "PATH": os.pathsep.join([*bindirs, os.environ.get("PATH", "")])}
    env.pop("CONDA_SAFEGUARD_PLUGIN_ACTIVE", None)
    w = World(cwd, env, make_env, conda)
    for name in ("myenv", "ml", "pytorch", "pytorch-copy", "old-env"):
        make_env(name)
    w.ok("conda-safeguard backup --all -q")
    pytorch = make_env("pytorch", ["python", "liba=2.0", "libb"])  # two changes: @-2 exists
    w.ok("conda-safeguard backup -n pytorch -q")
    make_env("pytorch", ["python", "liba=2.0", "libb", "libc=1.1"])
    w.ok("conda-safeguard backup -n pytorch -q")
    shutil.rmtree(pytorch.parent / "old-env")
    if myenv_removed:
        make_env("myenv", ["python", "liba=2.0"])
        w.ok("conda-safeguard backup -n myenv -q")
        shutil.rmtree(pytorch.parent / "myenv")
    (cwd / "fp").mkdir()
    w.ok("conda-safeguard show ml > environment.yml && conda-safeguard show pytorch > "
         "pytorch.yml")
    for node in ("node1", "node2", "node3", "gpu01"):
        w.ok(f"conda-safeguard fingerprint -n ml --json --node {node} > {node}.json && "
             f"cp {node}.json fp/{node}.json")
    w.ok("cat node1.json node2.json node3.json > all.json")
    return w


def placeholders(w: World) -> dict[str, str]:
    """Snapshot ids the README and --help make up, mapped to real ones."""
    ids = w.ok("conda-safeguard list pytorch --json | python3 -c 'import json,sys; "
               "print(json.load(sys.stdin)[0][\"id\"])'").strip()
    return {"4f1c2a9e0b": ids[:10], "4f1c2a9e": ids[:8], "a1b2c3d4": ids[:8],
            '"$(hostname)"': "node1"}  # the examples run as if on node1


#: conda subcommands the shell layer guards: without real conda, the guard stands in for conda.
GUARDED = ("remove", "env", "create", "install", "update", "rename")


def guard_stand_in(w: World, command: str) -> subprocess.CompletedProcess[str] | None:
    """Run a `conda ...` line through the shell snippets' guard (the same decisions, prompt and
    snapshots as the plugin), then do what conda would for `remove --all`. None when the guard
    has nothing to do with the command."""
    words = shlex.split(command, comments=True)
    n = next(i for i, word in enumerate(words) if not re.fullmatch(r"\w+=.*", word))
    assigns, tool, args = words[:n], words[n], words[n + 1:]
    if not args or args[0] not in GUARDED:
        return None
    proc = w.sh(shlex.join([*assigns, sys.executable, "-m", "conda_safeguard", "guard", "--tool",
                            tool, "--", *args]))
    if proc.returncode == 0 and args[0] == "remove" and "--all" in args and "-n" in args:
        shutil.rmtree(Path(w.env["CONDA_SAFEGUARD_ROOT"]) / "envs" / args[args.index("-n") + 1])
    return proc


def run_shown(w: World, shown: Shown, subs: dict[str, str]) -> str | None:
    """Run one README command; None when it did what the README says, else what went wrong."""
    command = shown.command
    for fake, real in subs.items():
        command = command.replace(fake, real)
    if w.conda is None:
        command = re.sub(r"(^|[;&|]\s*|=\S+\s+)conda safeguard\b", r"\1conda-safeguard", command)
    proc = guard_stand_in(w, command) if w.conda is None and needs_real_conda(shown) else None
    if proc is None:
        proc = w.sh(command)
    said = proc.stdout + proc.stderr
    expected = next((code for start, code in EXIT_BY_OUTPUT.items()
                     if shown.output and shown.output[0].startswith(start)), 0)
    if proc.returncode != expected or "Traceback" in said:
        return (f"README line {shown.line}: `{shown.command}` exited {proc.returncode} "
                f"(expected {expected}):\n{said[-2000:]}")
    if shown.output:
        head = re.split(r"[('`]", shown.output[0], maxsplit=1)[0].strip()
        if w.conda is None:  # the guard prints our message, not conda's class name
            head = head.removeprefix("SafeguardRefusal: ")
        if head and head not in said:
            return (f"README line {shown.line}: `{shown.command}` does not print what the README "
                    f"shows ({head!r}):\n{said[-2000:]}")
    return None


def needs_real_conda(shown: Shown) -> bool:
    return shown.program in ("conda", "mamba", "micromamba") and \
        not re.search(r"(^|\s)conda safeguard\s", shown.command)


def run_readme(w: World) -> tuple[list[str], list[Shown], dict[int, str]]:
    """Run every README command; (failures, commands run, {line: why not run})."""
    subs = placeholders(w)
    failures, ran, skipped = [], [], {}
    for shown in shown_commands(README.read_text(encoding="utf-8")):
        why = shown.not_run_reason()
        if why is None and w.conda is None and needs_real_conda(shown) and \
                not _guarded(shown.command):
            why = "needs real conda (tests/conda/test_readme_in_conda.py runs it)"
        if why is not None:
            skipped[shown.line] = why
            continue
        ran.append(shown)
        problem = run_shown(w, shown, subs)
        if problem:
            failures.append(problem)
    return failures, ran, skipped


def _guarded(command: str) -> bool:
    words = [w for w in shlex.split(command, comments=True) if not re.fullmatch(r"\w+=.*", w)]
    return len(words) > 1 and words[1] in GUARDED


# ---------------------------------------------------------------------------------------------


def test_the_parser_finds_commands_and_leaves_output_alone() -> None:
    text = ("Intro\n\n    conda-safeguard list\n    out: line\n\n    $ conda remove -n x -y\n"
            "    Refusing\n\nText `inline` and\n\n```\nFOO=1 conda-safeguard show x  # c\n```\n"
            "\n    config   format version\n")
    shown = shown_commands(text)
    assert [(s.line, s.command, s.output) for s in shown] == [
        (3, "conda-safeguard list", []),
        (6, "conda remove -n x -y", ["Refusing"]),
        (12, "FOO=1 conda-safeguard show x  # c", []),
    ]
    playbook = "Text\n\n    - name: x\n      cmd: conda-safeguard list\n"
    assert shown_commands(playbook) == []


def test_every_readme_command_runs(tmp_path: Path, own_envs: Callable[..., Path],
                                   standalone_root: Path) -> None:
    w = make_world(tmp_path, own_envs)
    failures, ran, skipped = run_readme(w)
    assert not failures, "\n\n".join(failures)
    # A parser that found nothing would pass: the README has commands of our own to run.
    assert sum(1 for s in ran if s.program in ("conda-safeguard", "eval")) >= 5, ran
    assert all(why for why in skipped.values())


def test_not_run_names_only_commands_the_readme_shows() -> None:
    shown = shown_commands(README.read_text(encoding="utf-8"))
    for start in NOT_RUN:
        assert any((s.command + "\n").startswith(start) for s in shown), \
            f"NOT_RUN entry {start!r} matches no README command: drop it"


# ---------------------------------------------------------------------------------------------
# the prompt shown in the README is the prompt we print


def _readme_prompt() -> list[str]:
    shown = next(s for s in shown_commands(README.read_text(encoding="utf-8"))
                 if s.command == "conda remove -n myenv --all")
    return shown.output


def _shape(line: str) -> str:
    """A line with its numbers, ids, paths and timestamps made generic."""
    line = line.replace("conda-safeguard ", "conda safeguard ")  # as printed inside conda
    line = re.sub(r"\(/[^)]*\)", "(PATH)", line)
    line = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "TIME", line)  # as printed
    line = re.sub(r"\b[0-9a-f]{10}\b", "ID", line)
    return re.sub(r"\d+(\.\d+)?", "N", line)


def test_readme_prompt_example_is_what_the_prompt_prints(make_env: Callable[..., Path],
                                                         standalone_root: Path) -> None:
    pexpect = pytest.importorskip("pexpect", reason="pexpect is a test dependency")
    prefix = make_env("myenv")
    (prefix / "notes").mkdir()  # user data, so the prompt shows its "no package owns" line
    for note in ("todo.txt", "ideas.txt"):  # two: the README's line says "files"
        (prefix / "notes" / note).write_text("keep me\n")
    subprocess.run([sys.executable, "-m", "conda_safeguard", "backup", "-n", "myenv", "-q"],
                   check=True)
    child = pexpect.spawn(sys.executable, ["-m", "conda_safeguard", "guard", "--tool", "conda",
                                           "--", "remove", "-n", "myenv", "--all"],
                          env=dict(os.environ), encoding="utf-8", timeout=60,
                          dimensions=(40, 250))
    child.expect("abort: ")
    printed = [ln.strip() for ln in (child.before + "abort: ").splitlines() if ln.strip()]
    child.sendline("no")
    child.expect(pexpect.EOF)
    shown = [ln.strip() for ln in _readme_prompt()]
    shown[-1] = shown[-1].rsplit(": ", 1)[0] + ":"  # the README shows the name typed
    assert [_shape(s) for s in shown] == [_shape(p) for p in printed[-len(shown):]]
    assert any("conda-safeguard restore myenv" in p for p in printed)


# ---------------------------------------------------------------------------------------------
# every verb's --help examples


#: --help examples that cannot run in a test, with the reason (matched on the command's start).
HELP_NOT_RUN = {
    "conda-safeguard schedule status": "reads the user's real crontab or systemd timers",
    "conda-safeguard schedule install --at":
        "installs a real crontab entry or systemd timer for the user running the tests",
    "conda-safeguard schedule remove": "removes the user's real schedule",
    "conda-safeguard pack -n pytorch -o pytorch.cspack --sign-key ~/.ssh/id_ed25519":
        "needs the user's ssh signing key",
    "conda-safeguard unpack pytorch.cspack -n pytorch --allowed-signers":
        "needs a signed archive and the user's allowed_signers file",
    "conda-safeguard unpack pytorch.cspack -p /opt/envs/pytorch": "writes into /opt",
}


def help_examples() -> list[tuple[str, str]]:
    """(verb, command) for each example line in each verb's --help, in parser order."""
    from conda_safeguard.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if hasattr(a, "_name_parser_map"))
    out = []
    for verb in sub.choices:
        for line in (sub.choices[verb].epilog or "").splitlines():
            if line.startswith(("  conda-safeguard ", "  CONDA_SAFEGUARD_ALLOW=")):
                # the example, without the description after a run of spaces
                out.append((verb, re.split(r"\s{2,}(?=[a-z])", line.strip(), maxsplit=1)[0]))
    return out


def test_every_help_example_runs(tmp_path: Path, own_envs: Callable[..., Path],
                                 standalone_root: Path) -> None:
    w = make_world(tmp_path, own_envs, myenv_removed=True)
    subs = placeholders(w)
    failures, ran = [], 0
    for verb, command in help_examples():
        if any(command.startswith(start) for start in HELP_NOT_RUN):
            continue
        for fake, real in subs.items():
            command = command.replace(fake, real)
        proc = w.sh(command)
        ran += 1
        # 0, or 1 where the verb answers "differs" (verify, diff, compare, check)
        if proc.returncode not in (0, 1) or "Traceback" in proc.stderr or \
                (proc.returncode == 1 and verb not in ("verify", "diff", "compare", "check")):
            failures.append(f"{verb}: `{command}` exited {proc.returncode}:\n"
                            f"{(proc.stdout + proc.stderr)[-1500:]}")
    assert not failures, "\n\n".join(failures)
    assert ran >= 20


def test_help_not_run_names_only_real_examples() -> None:
    commands = [c for _, c in help_examples()]
    for start in HELP_NOT_RUN:
        assert any(c.startswith(start) for c in commands), \
            f"HELP_NOT_RUN entry {start!r} matches no --help example: drop it"
