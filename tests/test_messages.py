"""What users read: suggested commands run as printed, prompts say what happened, exit codes match
the README. Each test pins the key facts of one message."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conda_safeguard import suggest
from conda_safeguard.__main__ import main
from conda_safeguard.condarc import Settings
from conda_safeguard.constants import EXIT_INTERRUPTED, EXIT_REFUSED
from conda_safeguard.policy import Effect, Invocation, Target, decide, refusal_message


@pytest.fixture(autouse=True)
def standalone(standalone_root: Path) -> Iterator[Path]:
    suggest.set_prog(suggest.STANDALONE)
    yield standalone_root
    suggest.set_prog(suggest.STANDALONE)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- suggest


def test_commands_are_shell_quoted_and_split_back_to_the_same_words() -> None:
    line = suggest.safeguard("unprotect", "-n", "env ü1")
    assert line == "conda-safeguard unprotect -n 'env ü1'"
    assert shlex.split(line) == ["conda-safeguard", "unprotect", "-n", "env ü1"]
    assert suggest.allow(["env ü1", "b"]) == "CONDA_SAFEGUARD_ALLOW='env ü1,b'"
    assert suggest.safeguard("list") == "conda-safeguard list"  # plain words stay plain


def test_inside_conda_the_verbs_are_spelled_conda_safeguard() -> None:
    suggest.set_prog(suggest.INSIDE_CONDA)
    assert suggest.safeguard("restore", "my env") == "conda safeguard restore 'my env'"


def test_env_args_use_the_name_only_when_conda_can_find_it() -> None:
    assert suggest.env_args("x", "/data/x", named=True) == ["-n", "x"]
    assert suggest.env_args("x", "/data/x", named=False) == ["-p", "/data/x"]


@pytest.mark.parametrize(("count", "text"), [(0, "0 packages"), (1, "1 package"),
                                             (2, "2 packages")])
def test_plural(count: int, text: str) -> None:
    assert suggest.plural(count, "package") == text


def test_shorten_cuts_at_a_word_boundary() -> None:
    text = "this command would replace it with a new env"
    short = suggest.shorten(text, 24)
    assert len(short) <= 24 and short.endswith("…")
    assert text.startswith(short[:-1]) and text[len(short) - 1] == " "
    assert suggest.shorten("short", 24) == "short"
    assert suggest.shorten("x" * 40, 10) == "x" * 9 + "…"


def test_listing_names_the_first_few_and_counts_the_rest() -> None:
    assert suggest.listing(["a", "b"]) == "a, b"
    assert suggest.listing([str(i) for i in range(30)], limit=3) == "0, 1, 2 and 27 more"


# --------------------------------------------------------------------------- refusals


def _refusal(*targets: Target) -> str:
    decision = decide(list(targets), Invocation(interactive=False), Settings())
    return refusal_message(decision)


def _suggested_commands(message: str) -> list[list[str]]:
    """The commands a message suggests, split as the shell would split them."""
    tail = message.split("To stop protecting it: ", 1)[1]
    allow = message.split("or put ", 1)[1].split(" in front of it", 1)[0]
    return [shlex.split(tail), shlex.split(allow)]


def test_refusal_for_a_name_with_a_space_suggests_quoted_commands() -> None:
    t = Target("env ü1", "/c/envs/env ü1", Effect.DESTROY, protected=True, why="remove it")
    unprotect, allow = _suggested_commands(_refusal(t))
    assert unprotect == ["conda-safeguard", "unprotect", "-n", "env ü1"]
    assert allow == ["CONDA_SAFEGUARD_ALLOW=env ü1"]


def test_refusal_for_a_path_only_env_suggests_its_prefix() -> None:
    t = Target("userdata2", "/data/u/userdata2", Effect.DESTROY, protected=True, why="remove it",
               named=False)
    unprotect, allow = _suggested_commands(_refusal(t))
    assert unprotect == ["conda-safeguard", "unprotect", "-p", "/data/u/userdata2"]
    assert allow == ["CONDA_SAFEGUARD_ALLOW=/data/u/userdata2"]


def test_refused_allow_value_really_allows_that_env() -> None:
    t = Target("env ü1", "/c/envs/env ü1", Effect.DESTROY, protected=True)
    value = _suggested_commands(_refusal(t))[1][0].split("=", 1)[1]
    assert decide([t], Invocation(interactive=False, allow=value), Settings()).action.value \
        == "snapshot"


# --------------------------------------------------------------------------- verbs


def test_unprotect_base_exits_1_and_says_why(capsys: pytest.CaptureFixture[str],
                                             standalone: Path) -> None:
    code, out, err = run(capsys, "unprotect", "-n", "base")
    assert code == 1 and out == ""
    assert "base" in err and "always protected" in err and "Nothing was changed" in err
    assert not (standalone / "conda-meta" / "safeguard-protection").exists()


def test_invalid_verb_does_not_list_the_hidden_guard(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["nosuch"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "'backup'" in err and "'guard'" not in err


def test_no_verb_prints_usage_as_the_user_called_it(capsys: pytest.CaptureFixture[str]) -> None:
    suggest.set_prog(suggest.INSIDE_CONDA)
    code, out, _ = run(capsys)
    assert code == 2 and out.startswith("usage: conda safeguard ")


# --------------------------------------------------------------------------- the prompt


@pytest.fixture
def pexpect() -> object:
    return pytest.importorskip("pexpect", reason="pexpect is a test dependency")


def _guard(pexpect: object, name: str) -> object:
    """The shell layer's guard for `conda remove -n NAME --all`, in a real terminal."""
    argv = ["-m", "conda_safeguard", "guard", "--tool", "conda", "--",
            "remove", "-n", name, "--all"]
    return pexpect.spawn(sys.executable, argv, env=dict(os.environ),  # type: ignore[attr-defined]
                         encoding="utf-8", timeout=60, dimensions=(40, 200))


PROMPT = "Type the environment's name"


@pytest.mark.parametrize(("send", "status", "said"), [
    ("sendline:work2", EXIT_REFUSED, "you typed 'work2', not the env's name 'work'"),
    ("sendline:", EXIT_REFUSED, "no name was typed"),
    ("sendeof", EXIT_INTERRUPTED, "end of input"),
    ("sendintr", EXIT_INTERRUPTED, "Ctrl-C"),
])
def test_prompt_says_what_was_typed_and_interruptions_exit_130(
        pexpect: object, make_env: Callable[..., Path], send: str, status: int,
        said: str) -> None:
    prefix = make_env("work")
    child = _guard(pexpect, "work")
    child.expect(PROMPT)  # type: ignore[attr-defined]
    assert "conda-safeguard restore work" in child.before  # type: ignore[attr-defined]
    method, _, arg = send.partition(":")
    getattr(child, method)(*([arg] if method == "sendline" else []))
    child.expect(pexpect.EOF)  # type: ignore[attr-defined]
    child.close()  # type: ignore[attr-defined]
    assert child.exitstatus == status, child.before  # type: ignore[attr-defined]
    assert said in child.before and "Nothing was changed" in child.before  # type: ignore
    assert "Traceback" not in child.before  # type: ignore[attr-defined]
    assert (prefix / "conda-meta").is_dir()


def test_guard_script_gets_a_one_line_refusal(make_env: Callable[..., Path]) -> None:
    make_env("env ü1")
    proc = subprocess.run([sys.executable, "-m", "conda_safeguard", "guard", "--tool", "mamba",
                           "--", "env", "remove", "-n", "env ü1", "-y"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == EXIT_REFUSED, proc.stderr
    assert "conda-safeguard unprotect -n 'env ü1'" in proc.stderr
    assert "CONDA_SAFEGUARD_ALLOW='env ü1'" in proc.stderr


def test_undo_of_a_removed_env_points_at_restore(capsys: pytest.CaptureFixture[str],
                                                 make_env: Callable[..., Path]) -> None:
    import shutil

    prefix = make_env("gone env")
    assert run(capsys, "backup", "-n", "gone env")[0] == 0
    shutil.rmtree(prefix)
    code, out, err = run(capsys, "undo", "-n", "gone env")
    assert code == 1 and out == ""
    assert "conda-safeguard restore 'gone env'" in err and "nothing to undo" in err


def test_restore_failure_names_the_fix_for_its_cause() -> None:
    import errno

    from conda_safeguard.restore import RestoreFailedError

    full = RestoreFailedError(Path("/e/x"), "linking", OSError(errno.ENOSPC, "No space"), False)
    assert "Free disk space on /e" in str(full) and "permissions" not in str(full)
    denied = RestoreFailedError(Path("/e/x"), "linking", OSError(errno.EACCES, "denied"), False)
    assert "Check you may write there on /e" in str(denied)
    other = RestoreFailedError(Path("/e/x"), "linking", ValueError("bad record"), False)
    assert "ValueError: bad record" in str(other) and "disk space" not in str(other)


# --------------------------------------------------------------------------- settings, noise


@pytest.mark.parametrize(("var", "value", "said"), [
    ("CONDA_PLUGINS_SAFEGUARD_KEEP_LAST", "abc", "a whole number"),
    ("CONDA_PLUGINS_SAFEGUARD_ENABLED", "maybe", "true or false"),
    ("CONDA_PLUGINS_SAFEGUARD_KEEP_PACKAGES", "sometimes", "auto, always, never"),
    ("CONDA_SAFEGUARD_LOCK_TIMEOUT", "abc", "number of seconds"),
])
def test_a_bad_environment_variable_is_named(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             make_env: Callable[..., Path], var: str, value: str,
                                             said: str) -> None:
    make_env("work")
    monkeypatch.setenv(var, value)
    code, out, err = run(capsys, "backup", "-n", "work")
    assert code == 1 and out == ""
    assert f"environment variable {var} is {value!r}" in err and said in err
    assert "conda config" not in err and err.count("\n") == 1


def test_a_bad_condarc_list_setting_says_append(tmp_path: Path) -> None:
    from conda_safeguard.condarc import load_settings
    from conda_safeguard.exceptions import SafeguardError

    with pytest.raises(SafeguardError, match="conda config --append plugins.safeguard_temp_pat"):
        load_settings({"plugins": {"safeguard_temp_patterns": 3}}, environ={})
    with pytest.raises(SafeguardError, match="conda config --set plugins.safeguard_keep_last"):
        load_settings({"plugins": {"safeguard_keep_last": "x"}}, environ={})


def test_user_input_is_echoed_as_typed_and_short_ids_say_so(
        capsys: pytest.CaptureFixture[str], make_env: Callable[..., Path]) -> None:
    make_env("work")
    assert run(capsys, "backup", "-n", "work")[0] == 0
    code, _, err = run(capsys, "show", "ML3")
    assert code == 1 and "'ML3'" in err
    code, _, err = run(capsys, "show", "ab")
    assert code == 1 and "too short" in err and "at least 4 characters" in err


def test_show_to_stdout_is_quiet_and_backup_counts_are_plural(
        capsys: pytest.CaptureFixture[str], make_env: Callable[..., Path]) -> None:
    make_env("one", ["liba=1.0"])
    code, out, err = run(capsys, "backup", "-n", "one")
    assert code == 0 and "(1 conda package, 0 pip packages;" in out, out
    code, out, err = run(capsys, "show", "one")
    assert code == 0 and out.startswith("name: one") and err == ""


def test_list_cuts_long_reasons_at_a_word(capsys: pytest.CaptureFixture[str],
                                         make_env: Callable[..., Path]) -> None:
    make_env("work")
    assert run(capsys, "backup", "-n", "work", "--reason", "before replace it with new")[0] == 0
    code, out, _ = run(capsys, "list", "work")
    assert code == 0 and "before replace it…" in out and "replace it wit" not in out


# --------------------------------------------------------------------------- progress


class _Terminal:
    def __init__(self, tty: bool = True) -> None:
        self.text, self.tty = "", tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_progress_draws_a_bar_on_a_terminal_and_erases_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from conda_safeguard import progress

    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    monkeypatch.setattr(progress, "REDRAWS_PER_SECOND", 10**9)
    term = _Terminal()
    with progress.Progress("backing up envs", 4, stream=term) as bar:  # type: ignore[arg-type]
        bar.advance(2, "ml")
        assert term.text.endswith("backing up envs [" + "#" * 15 + " " * 15 + "] 2/4 ml")
    assert term.text.endswith("\r\x1b[K")  # the result that follows starts on a clean line


@pytest.mark.parametrize("tty, enabled", [(False, True), (True, False)])
def test_progress_is_silent_off_a_terminal_or_when_disabled(monkeypatch: pytest.MonkeyPatch,
                                                            tty: bool, enabled: bool) -> None:
    from conda_safeguard import progress

    monkeypatch.setattr(progress, "SHOW_AFTER", 0.0)
    term = _Terminal(tty)
    with progress.Progress("x", 3, enabled=enabled, stream=term) as bar:  # type: ignore[arg-type]
        bar.advance(3)
    assert term.text == "" and bar.done == 3


@pytest.mark.parametrize("flags, enabled", [((), True), (("json",), False), (("quiet",), False)])
def test_runtime_progress_follows_json_and_quiet(flags: tuple[str, ...], enabled: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from conda_safeguard.cli.runtime import Runtime

    rt = Runtime.from_system()
    for flag in flags:
        setattr(rt, flag, True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert rt.progress("x", 1).enabled is enabled
