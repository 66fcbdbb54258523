"""The README's commands with real conda: the plugin refuses, the ALLOW line removes, `conda
safeguard restore` brings the env back. tests/test_readme.py runs the rest (and these, through the
shell guard, where there is no conda)."""

from __future__ import annotations

from tests.test_readme import make_world, own_envs, run_readme

__all__ = ["own_envs"]  # the fixture, shared with tests/test_readme.py


def test_every_readme_command_runs_with_real_conda(conda_exe, conda_condarc, tmp_path, own_envs,
                                                   standalone_root):
    w = make_world(tmp_path, own_envs, conda_exe)
    failures, ran, skipped = run_readme(w)
    assert not failures, "\n\n".join(failures)
    conda_lines = [s for s in ran if s.program == "conda"]
    assert any("remove" in s.command for s in conda_lines), ran
    assert all(why for why in skipped.values())
