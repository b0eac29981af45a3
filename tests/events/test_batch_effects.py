"""One request's events applied together (``store/events.py``, ``subscribers.leave_all``): the same
outcome as if they had come one by one, on SQLite and PostgreSQL.

A SendGrid POST carries up to a thousand events; they are applied set-based, so these tests pin
the rules that a loop over them gave for free: the first event that makes an address leave gives
the reason, a subscriber who already left keeps theirs, an address with no row is suppressed
anyway, soft bounces count those of the same request, and an invalid address changes nothing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import Engine, func, select

from newsletter.events.model import ProviderEvent
from newsletter.store.db import session_scope
from newsletter.store.events import record_events
from newsletter.store.importer import import_csv
from newsletter.store.models import (
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import LEAVE_CHUNK, SubscriberRepository

AT = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _event(n: int, kind: EventKind, email: str | None) -> ProviderEvent:
    return ProviderEvent("sendgrid", f"ev-{n}", kind, AT, email=email)


def _state(engine: Engine, email: str) -> tuple[SubscriberStatus | None, SuppressionReason | None]:
    with engine.connect() as conn:
        status = conn.execute(
            select(Subscriber.status).where(Subscriber.email_normalized == email)
        ).scalar_one_or_none()
        reason = conn.execute(
            select(Suppression.reason).where(Suppression.address_hash == address_hash(email))
        ).scalar_one_or_none()
    return status, reason


def test_a_batch_applies_as_if_its_events_came_one_by_one(engine: Engine) -> None:
    with session_scope(engine) as session:
        repo = SubscriberRepository(session)
        for name in ("ann", "bob", "cat", "dan", "eve"):
            repo.add(f"{name}@example.org")
        repo.unsubscribe("dan@example.org")
    events = [
        _event(1, EventKind.COMPLAINED, "Ann@Example.org"),  # first reason wins...
        _event(2, EventKind.BOUNCED_HARD, "ann@example.org"),  # ...over a later one
        _event(3, EventKind.BOUNCED_HARD, "bob@example.org"),
        _event(4, EventKind.BOUNCED_SOFT, "cat@example.org"),
        _event(5, EventKind.BOUNCED_SOFT, "cat@example.org"),
        _event(6, EventKind.BOUNCED_SOFT, "cat@example.org"),  # the third in one request: the limit
        _event(7, EventKind.BOUNCED_HARD, "dan@example.org"),  # left before: keeps "unsubscribed"
        _event(8, EventKind.UNSUBSCRIBED, "gone@example.org"),  # no row: suppressed anyway
        _event(9, EventKind.BOUNCED_SOFT, "eve@example.org"),  # below the limit: stays
        _event(10, EventKind.DELIVERED, "eve@example.org"),
        _event(11, EventKind.BOUNCED_HARD, "not an address"),  # could never be mailed: ignored
        _event(12, EventKind.BOUNCED_HARD, None),
    ]
    with engine.begin() as conn:
        assert record_events(conn, events, soft_bounce_limit=3) == len(events)
    assert _state(engine, "ann@example.org") == (SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED)
    assert _state(engine, "bob@example.org") == (SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED)
    assert _state(engine, "cat@example.org") == (SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED)
    left_before = (SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED)
    assert _state(engine, "dan@example.org") == left_before
    assert _state(engine, "gone@example.org") == (None, SuppressionReason.UNSUBSCRIBED)
    assert _state(engine, "eve@example.org") == (SubscriberStatus.ACTIVE, None)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Suppression)).scalar_one() == 5
    # A replay of the whole request is stored as nothing and changes nothing.
    with engine.begin() as conn:
        assert record_events(conn, events, soft_bounce_limit=3) == 0
    assert _state(engine, "ann@example.org") == (SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED)


def test_a_batch_larger_than_one_statement_leaves_every_address(engine: Engine, tmp_path: Path) -> None:
    count = LEAVE_CHUNK * 2 + 7
    csv = tmp_path / "list.csv"
    csv.write_text("email\n" + "".join(f"r{i}@example.org\n" for i in range(count)), encoding="utf-8")
    with engine.connect() as conn:
        import_csv(conn, csv)
    events = [_event(i, EventKind.BOUNCED_HARD, f"r{i}@example.org") for i in range(count)]
    with engine.begin() as conn:
        assert record_events(conn, events) == count
    with engine.connect() as conn:
        statuses = conn.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
        suppressed = conn.execute(select(func.count()).select_from(Suppression)).scalar_one()
    assert statuses == [(SubscriberStatus.BOUNCED, count)]
    assert suppressed == count


def test_a_nul_in_a_providers_text_is_stored_without_it(engine: Engine) -> None:
    """PostgreSQL's jsonb refuses \\u0000: a bounce reason carrying one must not make the request fail."""
    import orjson

    from newsletter.events import sendgrid

    record = {"email": "a@example.org", "timestamp": 1_796_000_000, "event": "bounce",
              "sg_event_id": "nul-1", "type": "bounce", "reason": "550 \x00 no\x00 such user"}
    events = sendgrid.parse(orjson.dumps([record]))
    with engine.begin() as conn:
        assert record_events(conn, events) == 1
    with engine.connect() as conn:
        detail = conn.execute(select(Event.detail)).scalar_one()
    assert detail["reason"] == "550  no such user"
