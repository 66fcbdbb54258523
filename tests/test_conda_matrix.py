"""The conda version matrix's own bookkeeping (tests/conda/conftest.py): which (test, version)
pairs are known failures, and how versions sort."""

from __future__ import annotations

import pytest

from tests.conda.conftest import KNOWN_FAILURES, CondaUnderTest, known_failure, version_key


def conda(version: str) -> CondaUnderTest:
    return CondaUnderTest(version, version=version)


def test_known_failure_matches_test_case_and_version_prefix(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(KNOWN_FAILURES, ("test_x", "form a", "23.11"), "23.11 cannot")
    assert known_failure("test_x", {"conda_under_test": conda("23.11.0"),
                                    "form": "form a"}) == "23.11 cannot"
    assert known_failure("test_x", {"conda_under_test": conda("23.11.0"), "form": "b"}) is None
    assert known_failure("test_x", {"conda_under_test": conda("24.11.3"),
                                    "form": "form a"}) is None
    assert known_failure("test_y", {"conda_under_test": conda("23.11.0"),
                                    "form": "form a"}) is None


def test_a_version_prefix_is_matched_on_whole_parts(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(KNOWN_FAILURES, ("test_x", "", "25.1"), "25.1 cannot")
    assert known_failure("test_x", {"conda_under_test": conda("25.1.2")}) == "25.1 cannot"
    assert known_failure("test_x", {"conda_under_test": conda("25.11.1")}) is None


def test_a_given_conda_has_no_known_failures(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(KNOWN_FAILURES, ("test_x", "", "23.11"), "why")
    given = CondaUnderTest("external", argv=("/opt/conda/bin/conda",))
    assert known_failure("test_x", {"conda_under_test": given}) is None


def test_versions_sort_numerically():
    assert sorted(["25.11.1", "25.5.1", "23.11.0", "26.7.1", "24.11.3"], key=version_key) == [
        "23.11.0", "24.11.3", "25.5.1", "25.11.1", "26.7.1"]
