"""Webhook samples (written from the providers' documented payloads), SNS's signing played by the
tests (``sns_signing.py``), and the app under test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from newsletter.config import Settings, WebhooksSettings
from newsletter.events import sns
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app
from tests.events.sns_signing import CERT_URL, TOPIC, FakeFetcher, Signer

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "postmark"
USER, PASSWORD = "postmark-hook", "s3cret-pass:word"
READERS = [f"reader{i}@example.org" for i in range(5)]


def sample(name: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    record.update(changes)
    return record


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTMARK_WEBHOOK_USER", USER)
    monkeypatch.setenv("POSTMARK_WEBHOOK_PASSWORD", PASSWORD)


@pytest.fixture
def readers(repo: SubscriberRepository, session: Session) -> list[int]:
    ids = [repo.add(email).id for email in READERS]
    session.commit()
    return ids


@pytest.fixture
def client(engine: Engine, credentials: None) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), engine)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def signer() -> Signer:
    """SNS's key, as far as the tests go: its certificate is served at ``CERT_URL``."""
    return Signer.make()


@pytest.fixture(scope="session")
def stranger() -> Signer:
    """Somebody else's key and certificate."""
    return Signer.make()


@pytest.fixture
def fetcher(signer: Signer, monkeypatch: pytest.MonkeyPatch) -> FakeFetcher:
    """The process's certificate cache, fresh, fetching from the tests instead of SNS."""
    fake = FakeFetcher({CERT_URL: signer.pem})
    monkeypatch.setattr(sns, "CERTIFICATES", sns.Certificates(fake))
    return fake


@pytest.fixture
def confirmed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SubscribeURLs the app visited (instead of visiting them)."""
    visited: list[str] = []
    monkeypatch.setattr(sns, "confirm_subscription", visited.append)
    return visited


@pytest.fixture
def ses_client(engine: Engine, fetcher: FakeFetcher, confirmed: list[str]) -> Iterator[TestClient]:
    settings = Settings(webhooks=WebhooksSettings(ses_topic_arns=(TOPIC,)))
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client
