"""The plugin inside real conda: protection matrix, snapshots before changes, settings, prompt."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.factory import read_prefix_records

pexpect = pytest.importorskip("pexpect")


@pytest.fixture
def conda(conda_exe, conda_condarc, tmp_path, channel):
    """Run real conda with no terminal (stdin /dev/null), as scripts and CI do."""

    def run(*args, env=None, check=None):
        full_env = {**os.environ, "CONDARC": str(conda_condarc), **(env or {})}
        proc = subprocess.run([*conda_exe, *map(str, args)], env=full_env, cwd=tmp_path,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if check is not None:
            assert (proc.returncode == 0) == check, (args, proc.stdout, proc.stderr)
        return proc

    return run


@pytest.fixture
def envs(make_env):
    keep = make_env("keep")
    temp = make_env("scratch-tmp")
    return keep, temp


def store_snapshots(capsys) -> list[dict]:
    """`conda-safeguard list --json`, in-process: the store the conda under test wrote
    (`conda safeguard list` itself, on every version: test_subcommand_and_doctor_...)."""
    from conda_safeguard.__main__ import main

    capsys.readouterr()
    code = main(["list", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out) if out.strip() else []


def records(prefix: Path) -> dict:
    return {k: v["sha256"] for k, v in read_prefix_records(prefix).items()}


def offline(channel) -> list[str]:
    return ["--offline", "--override-channels", "-c", channel.url]


def write_env_file(tmp_path: Path, channel, name: str | None) -> Path:
    text = (f"name: {name}\n" if name else "") + \
        f"channels:\n  - {channel.url}\n  - nodefaults\ndependencies:\n  - liba=2.0\n"
    path = tmp_path / "env.yml"
    path.write_text(text)
    return path


# The destructive forms, on every conda version: tests/conda/test_destructive_forms.py


def test_always_yes_from_the_environment_is_refused(conda, envs):
    keep, _ = envs
    proc = conda("remove", "-n", "keep", "--all", env={"CONDA_ALWAYS_YES": "true"})
    assert proc.returncode != 0
    assert (keep / "conda-meta").is_dir()
    assert "-y/--yes or always_yes" in proc.stderr


def test_allow_naming_the_env_proceeds_after_a_snapshot(conda, envs, capsys):
    keep, _ = envs
    before = records(keep)
    conda("remove", "-n", "keep", "--all", "-y", env={"CONDA_SAFEGUARD_ALLOW": "keep"},
          check=True)
    assert not (keep / "conda-meta").exists()
    snaps = [s for s in store_snapshots(capsys) if s["prefix"] == str(keep)]
    assert snaps and snaps[0]["counts"]["conda"] == len(before)


@pytest.mark.newest_conda_only  # how ALLOW is read is ours; that it is read: every version below
@pytest.mark.parametrize("allow", ["other-env", "1", "*", "yes"])
def test_allow_must_name_the_env(conda, envs, allow):
    keep, _ = envs
    conda("remove", "-n", "keep", "--all", "-y", env={"CONDA_SAFEGUARD_ALLOW": allow},
          check=False)
    assert (keep / "conda-meta").is_dir()


@pytest.mark.newest_conda_only  # the temp pattern is ours; a snapshot before a remove on every
# version: test_allow_naming_the_env_proceeds_after_a_snapshot
def test_temp_env_is_removed_with_a_snapshot_first(conda, envs, capsys):
    _, temp = envs
    conda("remove", "-n", "scratch-tmp", "--all", "-y", check=True)
    assert not (temp / "conda-meta").exists()
    assert any(s["prefix"] == str(temp) for s in store_snapshots(capsys))


def test_install_takes_a_snapshot_before_the_change(conda, envs, capsys, channel):
    keep, _ = envs
    conda("install", "-n", "keep", "liba=2.0", "-y", *offline(channel), check=True)
    assert read_prefix_records(keep)["liba"]["version"] == "2.0"
    snap = [s for s in store_snapshots(capsys) if s["prefix"] == str(keep)][0]
    shown = conda("safeguard", "show", snap["id"][:12], "--format", "explicit", check=True)
    assert "liba-1.0-0" in shown.stdout and "liba-2.0-0" not in shown.stdout
    assert snap["reason"] == "before install"


def test_dry_run_neither_prompts_nor_snapshots(conda, envs, capsys):
    keep, _ = envs
    proc = conda("remove", "-n", "keep", "--all", "--dry-run")
    assert "protected" not in proc.stderr
    assert (keep / "conda-meta").is_dir()
    assert store_snapshots(capsys) == []


def set_plugin_setting(conda, condarc: Path, conda_version, verb: str, key: str, value: str):
    """`conda config --set/--append plugins.KEY VALUE`. conda < 25.5 refuses plugins.* keys
    (with its own error); the README's fallback there: the `plugins:` section of .condarc."""
    proc = conda("config", verb, f"plugins.{key}", value)
    if conda_version >= (25, 5):
        assert proc.returncode == 0, proc.stderr
        return
    assert proc.returncode == 1 and "plugins" in proc.stderr and "safeguard" not in \
        proc.stderr.replace(f"plugins.{key}", ""), proc.stderr
    import yaml

    data = yaml.safe_load(condarc.read_text()) or {}
    plugins = data.setdefault("plugins", {})
    if verb == "--append":
        plugins.setdefault(key, []).append(value)
    else:
        plugins[key] = yaml.safe_load(value)
    condarc.write_text(yaml.safe_dump(data))


def test_setting_via_conda_config_takes_effect(conda, envs, conda_condarc, conda_version):
    keep, _ = envs
    set_plugin_setting(conda, conda_condarc, conda_version, "--set",
                       "safeguard_protect_by_default", "false")
    conda("remove", "-n", "keep", "--all", "-y", check=True)
    assert not (keep / "conda-meta").exists()


def test_protect_pattern_setting_overrides_temp_pattern(conda, envs, conda_condarc,
                                                        conda_version):
    _, temp = envs
    set_plugin_setting(conda, conda_condarc, conda_version, "--append",
                       "safeguard_protect_patterns", "scratch-*")
    proc = conda("remove", "-n", "scratch-tmp", "--all", "-y")
    assert proc.returncode != 0 and (temp / "conda-meta").is_dir()


@pytest.mark.newest_conda_only  # unprotect is ours; the subcommand on every version: below
def test_unprotect_then_remove(conda, envs):
    keep, _ = envs
    conda("safeguard", "unprotect", "-n", "keep", check=True)
    conda("remove", "-n", "keep", "--all", "-y", check=True)
    assert not (keep / "conda-meta").exists()


def test_subcommand_and_doctor_show_our_output(conda, envs):
    conda("safeguard", "backup", "-n", "keep", check=True)
    listing = conda("safeguard", "list", check=True).stdout
    assert "keep" in listing
    # offline: conda's own checks (REQUESTS_CA_BUNDLE, ...) would try the network, 3 retries
    doctor = conda("doctor", "-n", "keep", env={"CONDA_OFFLINE": "true"}).stdout
    assert "conda-safeguard snapshot" in doctor and "conda-safeguard store" in doctor


def test_disabled_plugin_lets_conda_do_what_it_does(conda, envs):
    keep, _ = envs
    conda("remove", "-n", "keep", "--all", "-y", env={"CONDA_PLUGINS_SAFEGUARD_ENABLED": "false"},
          check=True)
    assert not (keep / "conda-meta").exists()


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.newest_conda_only  # our message for a name no envs dir holds
def test_protect_unknown_env_is_a_clear_error(conda, envs):
    proc = conda("safeguard", "protect", "-n", "nosuch")
    assert proc.returncode != 0
    assert "No conda environment named 'nosuch'" in proc.stderr


@pytest.mark.newest_conda_only  # reading our mark; the refusal on every version:
# test_destructive_forms.py
def test_damaged_protect_mark_fails_closed(conda, envs):
    keep, _ = envs
    (keep / "conda-meta" / "safeguard-protection").write_text("{not json")
    proc = conda("remove", "-n", "keep", "--all", "-y")
    assert proc.returncode != 0 and (keep / "conda-meta").is_dir()
    assert "damaged" in proc.stderr


def test_wrong_type_setting_is_a_clear_error_and_nothing_is_lost(conda, envs, conda_condarc):
    keep, _ = envs
    before = records(keep)
    with open(conda_condarc, "a") as f:
        f.write("plugins:\n  safeguard_keep_last: lots\n")
    proc = conda("remove", "-n", "keep", "--all", "-y")
    assert proc.returncode != 0
    assert "safeguard_keep_last" in proc.stdout + proc.stderr
    assert records(keep) == before


# -- the typed-name prompt, in a real pseudo-terminal --------------------------------------------


def spawn_conda(conda_exe, conda_condarc, tmp_path, *args):
    env = {**os.environ, "CONDARC": str(conda_condarc)}
    return pexpect.spawn(conda_exe[0], [*conda_exe[1:], *args], env=env, cwd=str(tmp_path),
                         encoding="utf-8", timeout=60)


def test_prompt_right_name_proceeds_after_a_snapshot(conda_exe, conda_condarc, tmp_path, envs,
                                                     capsys):
    keep, _ = envs
    child = spawn_conda(conda_exe, conda_condarc, tmp_path, "remove", "-n", "keep", "--all")
    child.expect("Type the environment's name")
    assert "packages" in child.before
    child.sendline("keep")
    while True:  # conda asks its own y/N questions afterwards
        i = child.expect([r"\(\[y\]/n\)\?", r"\(y/\[n\]\)\?", pexpect.EOF])
        if i == 2:
            break
        child.sendline("y")
    child.close()
    assert child.exitstatus == 0, child.before
    assert not (keep / "conda-meta").exists()
    assert any(s["prefix"] == str(keep) for s in store_snapshots(capsys))


@pytest.mark.newest_conda_only  # the prompt is ours; that it shows: every version above
@pytest.mark.parametrize("answer", ["kee", "KEEP", "keep ", ""])
def test_prompt_wrong_name_aborts(conda_exe, conda_condarc, tmp_path, envs, answer):
    keep, _ = envs
    before = records(keep)
    child = spawn_conda(conda_exe, conda_condarc, tmp_path, "remove", "-n", "keep", "--all")
    child.expect("Type the environment's name")
    child.sendline(answer)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0
    assert "Aborted" in child.before
    assert records(keep) == before


def test_prompt_with_yes_at_a_terminal_still_refuses(conda_exe, conda_condarc, tmp_path, envs):
    keep, _ = envs
    child = spawn_conda(conda_exe, conda_condarc, tmp_path, "remove", "-n", "keep", "--all",
                        "-y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0 and (keep / "conda-meta").is_dir()
    assert "Refusing" in child.before



def test_install_revision_that_removes_packages_is_guarded(conda, envs, channel, pkg_cache):
    from tests.factory import install_env

    keep, _ = envs
    install_env(keep, channel, ["libc=1.0"], cache_dir=pkg_cache)  # revision 1 adds libc
    before = records(keep)
    assert "libc" in before
    proc = conda("install", "-n", "keep", "--revision", "0", "-y", *offline(channel))
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "roll it back to revision 0, removing 1 package (libc)" in proc.stderr
    assert records(keep) == before


def test_always_yes_word_in_condarc_refuses_env_create_at_a_terminal(
        conda_exe, conda_condarc, tmp_path, envs, channel):
    # env create defaults its parser to yes=True, so the hook reads always_yes from the config
    # sources itself; conda takes "y" as true, and so must we.
    keep, _ = envs
    before = records(keep)
    with open(conda_condarc, "a") as f:
        f.write("always_yes: y\n")
    child = spawn_conda(conda_exe, conda_condarc, tmp_path, "env", "create", "-n", "keep", "-f",
                        str(write_env_file(tmp_path, channel, None)))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0
    assert "-y/--yes or always_yes is set" in child.before
    assert records(keep) == before
