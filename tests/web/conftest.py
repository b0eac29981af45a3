"""The subscriber's pages: a list of three, one issue really sent through the outbox, the app on it."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.delivery import runner
from newsletter.delivery.tokens import TokenSigner
from newsletter.store.db import make_engine, session_scope
from newsletter.store.models import Event, Subscriber
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app
from tests.conftest import FIXTURE_ISSUES_DIR

BASE_URL = "https://news.example.org"
READERS = ("ada@example.org", "grace@example.org", "linus@example.org")
TOPICS = [{"tag": "congress", "label": "U.S. Congress"}, {"tag": "photos", "label": "Photos of the week"}]


@dataclass
class Site:
    settings: Settings
    engine: Engine
    client: TestClient
    outbox: Path
    send_id: int

    @property
    def signer(self) -> TokenSigner:
        return TokenSigner(runner.secret_key(self.settings))

    def subscriber(self, address: str) -> Subscriber | None:
        with Session(self.engine) as session:
            found = session.scalars(select(Subscriber).where(Subscriber.email == address)).one_or_none()
            if found is not None:
                _ = list(found.tags)
                session.expunge(found)
            return found

    def token(self, address: str) -> str:
        found = self.subscriber(address)
        assert found is not None
        return self.signer.unsubscribe_token(self.send_id, found.id)

    def events(self) -> list[Event]:
        with Session(self.engine) as session:
            rows = list(session.scalars(select(Event).order_by(Event.id)))
            session.expunge_all()
            return rows

    def messages(self) -> list[email.message.EmailMessage]:
        paths = sorted(self.outbox.rglob("*.eml"))
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]  # type: ignore[misc]

    def csrf(self, page: str, action: str) -> str:
        form = rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"'
        match = re.search(form, page)
        assert match, f"no form posting to {action}"
        return match.group(1)


def make_settings(db_url: str, tmp_path: Path, **web: object) -> Settings:
    return Settings.model_validate(
        {
            "newsletter": {"base_url": BASE_URL},
            "database": {"url": db_url},
            "paths": {"issues": str(tmp_path / "issues")},
            "esp": {"outbox_dir": str(tmp_path / "outbox")},
            "web": {"topics": TOPICS, **web},
        }
    )


@pytest.fixture
def make_site(db_url: str, tmp_path: Path) -> Iterator[object]:
    engines: list[Engine] = []

    def make(**web: object) -> Site:
        settings = make_settings(db_url, tmp_path, **web)
        engine = make_engine(db_url)
        engines.append(engine)
        with session_scope(engine) as session:
            repo = SubscriberRepository(session)
            for address in READERS:
                repo.add(address, name="Reader", tags=["keep-me"])
        prepared = runner.prepare_issue(FIXTURE_ISSUES_DIR / "2026-11-13.yaml", settings)
        outcome = runner.execute(runner.plan(prepared, settings, "", start=True), settings)
        assert outcome.exit_code == 0, outcome.summary()
        client = TestClient(create_app(settings, engine), base_url=BASE_URL, follow_redirects=False)
        return Site(settings, engine, client, tmp_path / "outbox", outcome.send.id)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def site(make_site) -> Site:  # type: ignore[no-untyped-def]
    return make_site()
