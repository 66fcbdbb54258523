"""redact.py and where it applies: credentials never reach the store or the screen; `show -o`
is private; new env names follow conda's rule (issue 11, items 7 and 8)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from conda_safeguard.backup import backup
from conda_safeguard.envs import check_new_env_name
from conda_safeguard.exceptions import UsageError
from conda_safeguard.redact import MASK, redact_argv, redact_url, redact_variables
from conda_safeguard.store import Store
from tests.conftest import cli_output
from tests.factory import set_env_vars
from tests.test_cli import assert_one_line_error, run


@pytest.mark.parametrize(("url", "clean"), [
    ("https://user:pass@repo.example.com/conda/main", "https://repo.example.com/conda/main"),
    ("https://tok@repo.example.com/c", "https://repo.example.com/c"),
    ("https://conda.anaconda.org/t/ab-12345/my-org", "https://conda.anaconda.org/my-org"),
    ("https://conda.anaconda.org/t/ab-12345", "https://conda.anaconda.org"),
    ("https://h/c?token=s3cr3t&x=1", f"https://h/c?token={MASK}&x=1"),
    ("https://h/c?X-Amz-Signature=abc", f"https://h/c?X-Amz-Signature={MASK}"),
    ("conda-forge", "conda-forge"),
    ("https://conda.anaconda.org/conda-forge", "https://conda.anaconda.org/conda-forge"),
    ("file:///opt/channel", "file:///opt/channel"),
])
def test_redact_url(url: str, clean: str) -> None:
    assert redact_url(url) == clean


def test_redact_argv_and_variables() -> None:
    argv = ["conda", "install", "-c", "https://u:p@h/c", "--token", "abc", "x",
            "API_TOKEN=abc", "MODE=fast", "--password=hunter2"]
    assert redact_argv(argv) == ["conda", "install", "-c", "https://h/c", "--token", MASK, "x",
                                 f"API_TOKEN={MASK}", "MODE=fast", f"--password={MASK}"]
    assert redact_variables({"GH_TOKEN": "x", "URL": "https://a:b@h/", "MODE": "fast"}) == {
        "GH_TOKEN": MASK, "URL": "https://h/", "MODE": "fast"}


def test_credentials_never_reach_the_store(make_env, tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store")
    prefix = make_env("cred")
    snap = backup(store, prefix, env_name="cred",
                  argv=["conda", "install", "-c", "https://alice:s3cr3t@repo.example.com/c",
                        "--token", "tok-999", "x"],
                  configured_channels=["https://conda.example.com/t/tok-999/private"]).snapshot
    assert "https://repo.example.com/c" in snap.argv
    assert snap.channels[-1] == "https://conda.example.com/private"
    stored = b"".join(p.read_bytes() for p in store.root.rglob("*") if p.is_file())
    assert b"s3cr3t" not in stored and b"tok-999" not in stored and b"alice" not in stored


def test_show_output_is_private_and_redact_masks_secrets(make_env, standalone_root, capsys,
                                                         tmp_path: Path) -> None:
    prefix = make_env("sh")
    set_env_vars(prefix, {"HF_TOKEN": "hf_abc", "MODE": "fast"})
    cli_output(capsys, "backup", "-n", "sh")
    out = tmp_path / "env.yml"
    old = os.umask(0)
    try:
        cli_output(capsys, "show", "sh", "-o", str(out))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "hf_abc" in out.read_text()  # the owner's own copy keeps it
    shared = cli_output(capsys, "show", "sh", "--redact")
    assert "hf_abc" not in shared and "HF_TOKEN: <redacted>" in shared and "MODE: fast" in shared
    data = json.loads(cli_output(capsys, "show", "sh", "--redact", "--json"))
    assert data["variables"]["HF_TOKEN"] == MASK


def test_list_json_hides_credentials_of_old_snapshots(make_env, standalone_root, capsys) -> None:
    """Snapshots taken before backup redacted (an edited manifest would not verify, so this
    writes one the way an old version did, with a valid id)."""
    from conda_safeguard.snapshot import capture, new_info

    prefix = make_env("old")
    store = Store.open(Path(os.environ["CONDA_SAFEGUARD_HOME"]))
    state = capture(prefix)
    objects, _ = store.put_state(state)
    info = new_info(env_name="old", prefix=prefix, state=state, reason="manual",
                    argv=["conda", "install", "-c", "https://bob:pw@h/c"],
                    channels=["https://bob:pw@h/c"], objects=objects, parent=None,
                    parent_state=None)
    store.write_manifest(info)
    text = cli_output(capsys, "list", "--json")
    assert "bob" not in text and "pw@" not in text and "https://h/c" in text
    assert "bob:pw" not in cli_output(capsys, "show", "old", "--format", "json")


@pytest.mark.parametrize("name", ["../../x", "a/b", "with space", "a:b", "a#b", "line\nbreak",
                                  "..", "."])
def test_new_env_names_follow_condas_rule(name: str) -> None:
    with pytest.raises(UsageError, match="Invalid environment name"):
        check_new_env_name(name)


def test_restore_to_a_bad_new_name_is_refused(make_env, standalone_root, capsys,
                                              tmp_path: Path) -> None:
    make_env("src")
    cli_output(capsys, "backup", "-n", "src")
    for name in ("../../outside", "bad\nname"):
        assert_one_line_error(*run(capsys, "restore", "src", "-n", name, "--yes"),
                              "Invalid environment name", "Nothing was created", exit_code=2)
    assert not (tmp_path / "outside").exists()
    assert not (standalone_root.parent / "outside").exists()
    check_new_env_name("fine-name_1.0")
