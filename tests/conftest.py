"""Shared fixtures and rules for every test.

- Issue files come from ``tests/fixtures/issues/`` (copies of the sample issues), never from the
  live ``issues/`` folder, where editors keep work in progress.
- No ``NEWSLETTER_*`` variable of the shell that runs the tests reaches a test or a process it
  starts (a ``NEWSLETTER_DATABASE_URL`` would send test data to that database), except
  ``NEWSLETTER_TEST_POSTGRES_URL``, which names the tests' own PostgreSQL server.
- In CI (``CI=true``) a skipped PostgreSQL, browser or IMAP test is a failure: those paths must really run.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from newsletter.config import NewsletterSettings, Settings

#: The database fixtures (``db_url``, ``engine``, ``session``, ``repo``, …) and the Dovecot ones
#: (``dovecot``, ``imap_user``) for every folder, and
#: pytester: tests/test_ci.py runs small suites under the hook below.
pytest_plugins = ["tests.databases", "tests.imap_server", "pytester"]

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_ISSUES_DIR = FIXTURES / "issues"
SAMPLE_ISSUES = sorted(FIXTURE_ISSUES_DIR.glob("*.yaml"))

#: ``NEWSLETTER_*`` variables the tests may read from the shell.
KEPT_VARIABLES = frozenset({"NEWSLETTER_TEST_POSTGRES_URL"})
#: Markers whose tests must not be skipped in CI, with what a skip there means.
REQUIRED_IN_CI = {
    "postgres": "PostgreSQL test skipped in CI (CI=true)",
    "browser": "browser test skipped in CI (CI=true)",
    "imap": "IMAP test skipped in CI (CI=true)",
}


def clean_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: ``os.environ``) without the newsletter's settings: for subprocesses.

    One setting is added: ``[check] links = "off"``, so a ``send`` or worker subprocess never
    resolves the ``*.example.*`` hosts of the fixture issues (in-process, :func:`_loopback_names_only`
    stops that); the link check's own tests turn it back on.
    """
    environ = os.environ if environ is None else environ
    kept = {
        name: value
        for name, value in environ.items()
        if not name.startswith("NEWSLETTER_") or name in KEPT_VARIABLES
    }
    return {**kept, "NEWSLETTER_CHECK_LINKS": "off"}


def _clear_newsletter_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("NEWSLETTER_") and name not in KEPT_VARIABLES:
            monkeypatch.delenv(name)


@pytest.fixture(scope="session", autouse=True)
def _session_without_newsletter_variables() -> Iterator[None]:
    """Also for session fixtures, which are set up before any function fixture."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _clear_newsletter_variables(monkeypatch)
        yield


@pytest.fixture(autouse=True)
def _without_newsletter_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Again for each test, in case something set one outside ``monkeypatch``."""
    _clear_newsletter_variables(monkeypatch)


_real_getaddrinfo = socket.getaddrinfo
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})


def _loopback_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Names resolve only to this machine: no test makes a DNS query that could leave it."""
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name.lower() in LOOPBACK_NAMES:
        return _real_getaddrinfo(host, *args, **kwargs)
    try:
        ipaddress.ip_address(str(name).split("%", 1)[0])
    except ValueError:
        refused = f"the tests resolve no name but localhost ({name})"
        raise socket.gaierror(socket.EAI_NONAME, refused) from None
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def _loopback_names_only(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No name but localhost resolves (the link check of a fixture issue fails at once instead of
    asking the network), and the link check's cache lives in a folder of the test run's own."""
    monkeypatch.setattr(socket, "getaddrinfo", _loopback_getaddrinfo)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped PostgreSQL or browser test fails: those paths must really be tested."""
    outcome: Any = yield
    report = outcome.get_result()
    if not (report.skipped and os.environ.get("CI") == "true"):
        return
    for marker, message in REQUIRED_IN_CI.items():
        if item.get_closest_marker(marker):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            report.outcome = "failed"
            report.longrepr = f"{message}: {reason}"
            return


@pytest.fixture
def settings() -> NewsletterSettings:
    return Settings().newsletter


@pytest.fixture
def write_issue(tmp_path: Path):
    """Write YAML text to an issue file in a temporary folder and return its path."""

    def write(text: str, name: str = "2026-11-27.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
