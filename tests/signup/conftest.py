"""Sign-up fixtures: the ``newsletter serve`` app on SQLite and PostgreSQL, mailing to the outbox.

The proof of work is made cheap (``altcha_cost``) so a test solves a real challenge in milliseconds
with the ``altcha`` library, as the widget does in a browser.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import altcha
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.store.db import make_engine, session_scope
from newsletter.store.models import Subscriber
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app

BASE_URL = "https://news.example.org"
TOPICS = [{"tag": "press", "label": "Press releases"}, {"tag": "events", "label": "Events"}]


@dataclass
class Signup:
    settings: Settings
    engine: Engine
    outbox: Path
    client: TestClient

    def solution(self) -> str:
        """A freshly solved challenge of the app's, as the widget posts it."""
        answer = self.client.get("/altcha/challenge")
        assert answer.status_code == 200
        challenge = altcha.Challenge.from_dict(answer.json())
        solved = altcha.solve_challenge(challenge)
        assert solved is not None
        return altcha.Payload(challenge, solved).to_base64()

    def post(self, path: str = "/subscribe", *, altcha_payload: str | None = None, **fields: Any) -> Any:
        data: dict[str, Any] = {"altcha": self.solution() if altcha_payload is None else altcha_payload}
        data.update(fields)
        return self.client.post(path, data=data)

    def messages(self) -> list[EmailMessage]:
        found = []
        for path in sorted(self.outbox.rglob("*.eml"), key=lambda p: p.stat().st_mtime_ns):
            parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found

    def subscriber(self, address: str) -> Subscriber | None:
        with session_scope(self.engine, read_only=True) as session:
            found = SubscriberRepository(session).get_by_email(address)
            if found is not None:
                session.expunge(found)
            return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def link(message: EmailMessage, pattern: str) -> str:
    """The path of the first link in ``message``'s text matching ``pattern`` (under BASE_URL)."""
    match = re.search(re.escape(BASE_URL) + pattern, text_of(message))
    assert match is not None, text_of(message)
    return match.group(0).removeprefix(BASE_URL)


def make_settings(db_url: str, tmp_path: Path, **web: Any) -> Settings:
    return Settings.model_validate(
        {
            "newsletter": {"base_url": BASE_URL},
            "database": {"url": db_url},
            "esp": {"outbox_dir": str(tmp_path / "outbox")},
            "web": {"topics": TOPICS, "altcha_cost": 20, **web},
        }
    )


@pytest.fixture
def make_signup(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Signup]]:
    engines: list[Engine] = []

    def make(**web: Any) -> Signup:
        settings = make_settings(db_url, tmp_path, **web)
        engine = make_engine(db_url)
        engines.append(engine)
        client = TestClient(create_app(settings, engine), base_url=BASE_URL)
        return Signup(settings, engine, tmp_path / "outbox", client)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def signup(make_signup: Callable[..., Signup]) -> Signup:
    return make_signup()
