"""Scheduling fixtures: settings on a migrated database (SQLite and PostgreSQL), three subscribers,
an issue folder with the fixture issues, the outbox as provider and one editor to tell."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from newsletter.config import Settings, load_settings
from newsletter.schedule.jobs import install
from newsletter.store.db import make_engine
from newsletter.store.subscribers import SubscriberRepository
from tests.conftest import FIXTURE_ISSUES_DIR

ISSUE_DATE = dt.date(2026, 11, 27)
EDITOR = "desk@example.org"
READERS = [f"reader{i}@example.org" for i in range(3)]


@pytest.fixture
def issues(tmp_path: Path) -> Path:
    directory = tmp_path / "issues"
    directory.mkdir()
    for path in FIXTURE_ISSUES_DIR.glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    return directory


@pytest.fixture
def settings(db_url: str, tmp_path: Path, issues: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.chdir(tmp_path)  # no newsletter.toml of the checkout
    environ = {
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_ESP_OUTBOX_DIR": str(tmp_path / "outbox"),
        "NEWSLETTER_PATHS_ISSUES": str(issues),
        "NEWSLETTER_NEWSLETTER_EDITORS": EDITOR,
    }
    return load_settings(None, environ)


@pytest.fixture
def db(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings.database.url)
    with Session(engine) as session:
        repo = SubscriberRepository(session)
        for address in READERS:
            repo.add(address)
        session.commit()
    yield engine
    engine.dispose()


class Journal:
    """What the firing code logged and told the editors, for assertions."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.notes: list[tuple[str, str]] = []

    def log(self, line: str) -> None:
        self.lines.append(line)

    def notify(self, subject: str, body: str) -> None:
        self.notes.append((subject, body))

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def journal(settings: Settings) -> Journal:
    journal = Journal()
    install(settings, journal.log, journal.notify)
    return journal


def outbox_recipients(settings: Settings) -> list[str]:
    """Every To address in the outbox, one per message."""
    found = []
    for path in sorted(settings.esp.outbox_dir.glob("*/*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        found.append(str(message["To"]))
    return found


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=dt.UTC)


def make_it_fail_check(path: Path) -> None:
    """An empty subject: the file loads, and ``check`` fails it."""
    text = path.read_text(encoding="utf-8")
    changed = re.sub(r"(?m)^subject: .*$", 'subject: ""', text, count=1)
    assert changed != text
    path.write_text(changed, encoding="utf-8")
