"""Every way conda destroys an env, on every conda version, with no terminal: a protected env
survives, and the message says how to proceed.

How each form reaches the plugin differs by version (see hooks.py and the README's
compatibility table): `env create`/`env remove` are conda_env's own CLI on 23.x
(`env_create`/`env_remove`), `env create` has its own pre-command name on 24.x-25.x, and is
`create` on 26.x; `rename` overwrites an existing env with `--force` on 23.x, `--yes` later.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.factory import read_prefix_records

Args = Callable[[str, Path, tuple[int, ...]], list[str]]


def offline(channel_url: str) -> list[str]:
    return ["--offline", "--override-channels", "-c", channel_url]


def env_file(tmp_path: Path, channel_url: str, name: str | None) -> str:
    text = (f"name: {name}\n" if name else "") + \
        f"channels:\n  - {channel_url}\n  - nodefaults\ndependencies:\n  - liba=2.0\n"
    path = tmp_path / "env.yml"
    path.write_text(text)
    return str(path)


def overwrite_flag(version: tuple[int, ...]) -> str:
    return "--force" if version < (24,) else "--yes"  # conda 23.x's rename knows only --force


FORMS: dict[str, Args] = {
    "remove --all -y": lambda ch, tp, v: ["remove", "-n", "keep", "--all", "-y"],
    "remove --all (no tty)": lambda ch, tp, v: ["remove", "-n", "keep", "--all"],
    "remove --all --json": lambda ch, tp, v: ["remove", "-n", "keep", "--all", "--json"],
    "env remove": lambda ch, tp, v: ["env", "remove", "-n", "keep"],
    "env remove -y": lambda ch, tp, v: ["env", "remove", "-n", "keep", "-y"],
    "create over -y": lambda ch, tp, v: ["create", "-n", "keep", "liba=2.0", "-y",
                                         *offline(ch)],
    "create over --json": lambda ch, tp, v: ["create", "-n", "keep", "liba=2.0", "--json",
                                             *offline(ch)],
    "env create -n over": lambda ch, tp, v: ["env", "create", "-n", "keep", "-f",
                                             env_file(tp, ch, None)],
    "env create -n over -y": lambda ch, tp, v: ["env", "create", "-n", "keep", "-y", "-f",
                                                env_file(tp, ch, None)],
    "env create -f (name in file)": lambda ch, tp, v: ["env", "create", "-f",
                                                       env_file(tp, ch, "keep")],
    "rename": lambda ch, tp, v: ["rename", "-n", "keep", "kept2"],
    "rename onto protected": lambda ch, tp, v: ["rename", "-n", "scratch-tmp", "keep",
                                                overwrite_flag(v)],
    "remove every package": lambda ch, tp, v: ["remove", "-n", "keep", "python", "liba",
                                               "libb", "-y"],
}


def records(prefix: Path) -> dict[str, str]:
    return {k: v["sha256"] for k, v in read_prefix_records(prefix).items()}


@pytest.mark.parametrize("form", list(FORMS))
def test_protected_env_survives(form, run_conda, make_env, channel, tmp_path, conda_version):
    keep = make_env("keep")
    make_env("scratch-tmp", ["python", "libc=1.0"])
    (keep / "user-notes.txt").write_text("not tracked by conda\n")
    before = records(keep)
    args = FORMS[form](channel.url, tmp_path, conda_version)
    proc = run_conda(*args, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 4, out  # a refusal, as the README's exit codes say
    assert records(keep) == before, out  # nothing changed
    assert (keep / "user-notes.txt").is_file()
    assert "protected environment 'keep'" in out
    assert "CONDA_SAFEGUARD_ALLOW=keep" in out
    if "--json" in args:
        assert "CONDA_SAFEGUARD_ALLOW=keep" in json.loads(proc.stdout)["message"]


def test_every_form_destroys_without_the_plugin(run_conda, make_env, channel, tmp_path,
                                                conda_version):
    """The forms above are real: with protection off, conda destroys or replaces the env
    (or, where that version of conda refuses by itself, leaves it with its own error)."""
    # offline: online, conda 26.x fetches the env file's `nodefaults` as a channel and conda
    # < 25.9 adds `defaults` to a solve with no channel configured; both then fail reaching the
    # host (3 retries, ~7 s a form), after or before changing the env.
    plugin_off = {"CONDA_PLUGINS_SAFEGUARD_ENABLED": "false", "CONDA_OFFLINE": "true"}
    outcomes = {}
    for form, make_args in FORMS.items():
        keep = make_env("keep")
        make_env("scratch-tmp", ["python", "libc=1.0"])
        before = records(keep)
        proc = run_conda(*make_args(channel.url, tmp_path, conda_version), check=False,
                         env=plugin_off)
        gone = not (keep / "conda-meta").is_dir() or records(keep) != before
        outcomes[form] = "changed" if gone else f"kept, exit {proc.returncode}"
        for name in ("keep", "scratch-tmp", "kept2"):
            subprocess.run(["rm", "-rf", str(keep.parent / name)], check=True)
    assert outcomes == {form: "changed" for form in FORMS} | CONDA_REFUSES_ITSELF.get(
        conda_version[:2], {}), json.dumps(outcomes, indent=0)


#: Forms a conda version does not carry out by itself (the plugin refuses them all the same: a
#: protected env is never left to a version's quirks). conda 23.x-24.x `env create` over an
#: existing env without -y stops at "prefix already exists"; conda 23.11's `rename` fails when
#: no env is active; 23.11's `create --json` over an env exits 0 without replacing it. (Run
#: online, 24.11-25.5 also kept the env at "remove every package": not a refusal, the solve
#: failed to reach the `defaults` they add when no channel is configured.)
CONDA_REFUSES_ITSELF: dict[tuple[int, ...], dict[str, str]] = {
    (23, 11): {"create over --json": "kept, exit 0", "env create -n over": "kept, exit 1",
               "env create -f (name in file)": "kept, exit 1", "rename": "kept, exit 1",
               "rename onto protected": "kept, exit 1"},
    (24, 11): {"env create -n over": "kept, exit 1",
               "env create -f (name in file)": "kept, exit 1"},
}


def test_env_create_yes_at_a_terminal(conda_exe, conda_condarc, make_env, channel, tmp_path,
                                      conda_version):
    """README compatibility note 3: conda 26's `env create` parser defaults to yes, so a typed -y
    cannot be seen there and a person at a terminal gets the typed-name prompt; older conda
    shows the -y, which is refused outright. Either way the env needs the person's consent."""
    pexpect = pytest.importorskip("pexpect")
    keep = make_env("keep")
    before = records(keep)
    args = ["env", "create", "-n", "keep", "-y", "-f", env_file(tmp_path, channel.url, None)]
    child = pexpect.spawn(conda_exe[0], [*conda_exe[1:], *args], cwd=str(tmp_path),
                          env={**os.environ, "CONDARC": str(conda_condarc)}, encoding="utf-8",
                          timeout=60)
    if conda_version >= (26,):
        child.expect("Type the environment's name")
        child.sendline("no")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 4, child.before
    assert ("Aborted" if conda_version >= (26,) else "Refusing") in child.before
    assert records(keep) == before
