"""Webhook samples (written from each provider's documented payloads), their signatures, and the app
under test with every provider's secrets in the environment.

SendGrid's are signed with a P-256 key pair made for the test run (the verification key goes in the
environment as SendGrid shows it: base64 DER); Mailgun's with a signing key of our own; SNS's
signing is played by the tests (``sns_signing.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from newsletter.config import Settings, WebhooksSettings
from newsletter.events import sns
from newsletter.events.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app
from tests.events.sns_signing import CERT_URL, TOPIC, FakeFetcher, Signer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
SAMPLES = FIXTURES / "postmark"
USER, PASSWORD = "postmark-hook", "s3cret-pass:word"
READERS = [f"reader{i}@example.org" for i in range(5)]
MAILGUN_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-webhook-signing"
#: SendGrid's signing key: one per test run, as SendGrid keeps one per account.
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())


def sample(name: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    record.update(changes)
    return record


def sendgrid_sample(name: str, **changes: Any) -> list[dict[str, Any]]:
    """A SendGrid POST of one event, with ``changes`` made to the event."""
    events: list[dict[str, Any]] = json.loads((FIXTURES / "sendgrid" / f"{name}.json").read_text())
    events[0].update(changes)
    return events


def mailgun_sample(name: str, **changes: Any) -> dict[str, Any]:
    """A Mailgun POST, with ``changes`` made to its event-data (the signature is :func:`mailgun_signed`'s)."""
    record: dict[str, Any] = json.loads((FIXTURES / "mailgun" / f"{name}.json").read_text())
    record["event-data"].update(changes)
    return record


def public_key_text(key: ec.EllipticCurvePrivateKey = SENDGRID_KEY) -> str:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def now_seconds() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


def sendgrid_headers(
    body: bytes, *, timestamp: int | None = None, key: ec.EllipticCurvePrivateKey = SENDGRID_KEY
) -> dict[str, str]:
    """The headers SendGrid sends with ``body``: its ECDSA signature of timestamp + body."""
    stamp = str(now_seconds() if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}


def mailgun_signed(
    record: dict[str, Any],
    *,
    timestamp: int | None = None,
    token: str | None = None,
    key: str = MAILGUN_KEY,
) -> dict[str, Any]:
    """``record`` with a signature block as Mailgun signs it: HMAC-SHA256 of timestamp + token."""
    stamp = str(now_seconds() if timestamp is None else timestamp)
    token = secrets.token_hex(25) if token is None else token
    digest = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {**record, "signature": {"timestamp": stamp, "token": token, "signature": digest}}


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every provider's secrets, in the variables ``[webhooks]`` names by default."""
    monkeypatch.setenv("POSTMARK_WEBHOOK_USER", USER)
    monkeypatch.setenv("POSTMARK_WEBHOOK_PASSWORD", PASSWORD)
    monkeypatch.setenv("SENDGRID_WEBHOOK_PUBLIC_KEY", public_key_text())
    monkeypatch.setenv("MAILGUN_WEBHOOK_SIGNING_KEY", MAILGUN_KEY)


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
