"""CI runs what it must: a PostgreSQL or browser test that skips fails the run under ``CI=true``,
and ``.ci/run`` sets ``CI=true`` itself."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT

SUITE = """
import pytest

@pytest.fixture
def chromium():
    pytest.skip("chromium is not installed")

@pytest.mark.browser
def test_in_browser(chromium):
    pass

@pytest.mark.postgres
def test_on_postgres():
    pytest.skip("server unreachable")

def test_other():
    pytest.skip("optional")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    browser: b\n    postgres: p\n")
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_skipped_postgres_and_browser_tests_fail_in_ci(suite: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest("-rA")
    result.assert_outcomes(failed=1, errors=1, skipped=1)  # the browser skip is in a fixture: setup
    result.stdout.fnmatch_lines(
        [
            "*browser test skipped in CI (CI=true)*chromium is not installed*",
            "*PostgreSQL test skipped in CI (CI=true)*server unreachable*",
        ]
    )


def test_outside_ci_they_are_skipped(suite: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    suite.runpytest().assert_outcomes(skipped=3)


def test_ci_run_sets_ci_true() -> None:
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "export CI=true" in run and "scripts/test.sh" in run


def test_a_skipped_imap_test_fails_in_ci(pytester: pytest.Pytester, monkeypatch) -> None:
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    imap: i\n")
    pytester.makepyfile(
        test_imap="import pytest\n\n@pytest.mark.imap\ndef test_mailbox():\n    pytest.skip('no dovecot')\n"
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-rA")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*IMAP test skipped in CI (CI=true)*no dovecot*"])
