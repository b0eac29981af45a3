"""What the webhook tests read back from the database: the audience, the events, a reader's status."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from newsletter.store.ledger import Ledger
from newsletter.store.models import (
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
    WebhookNonce,
)
from newsletter.store.privacy import address_hash


def audience(engine: Engine) -> int:
    with engine.connect() as conn:
        return Ledger(conn).audience_count("")


def events(engine: Engine) -> list[tuple[str, EventKind, str | None]]:
    with engine.connect() as conn:
        query = select(Event.provider_event_id, Event.kind, Event.address_hash).order_by(Event.id)
        return [(event_id, kind, digest) for event_id, kind, digest in conn.execute(query)]


def event_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(Event.__table__).order_by(Event.id)).all())


def status_of(engine: Engine, email: str) -> SubscriberStatus:
    with engine.connect() as conn:
        query = select(Subscriber.status).where(Subscriber.email_normalized == email)
        return conn.execute(query).scalar_one()


def suppression(engine: Engine, email: str) -> SuppressionReason | None:
    with engine.connect() as conn:
        query = select(Suppression.reason).where(Suppression.address_hash == address_hash(email))
        return conn.execute(query).scalar_one_or_none()


def nonces(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(p, n) for p, n in conn.execute(select(WebhookNonce.provider, WebhookNonce.nonce))]
