"""The webhook tests' pytest fixtures: the readers, and the app under test with every provider's
secrets in place. How each provider's requests are built and signed is in ``providers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from newsletter.config import Settings, WebhooksSettings
from newsletter.events import sns
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app
from tests.events.providers import READERS, SNS_SIGNER, STRANGER, WEBHOOKS
from tests.events.sns_signing import CERT_URL, TOPIC, FakeFetcher, Signer


def app_settings(**webhooks: Any) -> Settings:
    """Settings under which every provider's requests are accepted (SES's needs our topic)."""
    return Settings(webhooks=WebhooksSettings(ses_topic_arns=(TOPIC,), **webhooks))


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch, fetcher: FakeFetcher) -> None:
    """Every provider's secrets, in the variables ``[webhooks]`` names by default, and SNS's
    certificate served to the process's cache."""
    for webhook in WEBHOOKS.values():
        webhook.install(monkeypatch)


@pytest.fixture
def readers(repo: SubscriberRepository, session: Session) -> list[int]:
    ids = [repo.add(email).id for email in READERS]
    session.commit()
    return ids


@pytest.fixture
def client(engine: Engine, credentials: None) -> Iterator[TestClient]:
    with TestClient(create_app(app_settings(), engine)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def signer() -> Signer:
    """SNS's key, as far as the tests go: its certificate is served at ``CERT_URL``."""
    return SNS_SIGNER


@pytest.fixture(scope="session")
def stranger() -> Signer:
    """Somebody else's key and certificate."""
    return STRANGER


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
