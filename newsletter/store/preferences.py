"""What a subscriber does through the personal link of an email: leave, come back, change what they get.

The web side (``web/unsubscribe.py``) reads a signed token and calls these; the CLI's
``subscribers`` commands and the providers' webhooks reach the same rules by other doors. Leaving
is written as an ``unsubscribed`` event with the send it came from and how (``one-click``, ``page``)
and goes through :func:`~newsletter.store.events.record_events`, the one place that turns events
into suppressions, so a click here and a provider's unsubscribe webhook leave exactly alike and
``report`` counts both.

A subscriber who already left (unsubscribed, bounced, complained) is left alone: a second
one-click is a no-op, and a bounce is never rewritten as an unsubscribe. A forgotten subscriber has
no row: every function here then does nothing, and the caller answers as for a bad token.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, selectinload

from newsletter.events.model import ProviderEvent
from newsletter.store.db import reading, writing
from newsletter.store.erasure import Erasure
from newsletter.store.erasure import forget as erase
from newsletter.store.events import record_events
from newsletter.store.models import LEFT_STATUSES, EventKind, Subscriber, SubscriberStatus, utcnow
from newsletter.store.subscribers import SubscriberRepository

__all__ = ["LEAVING_REASONS", "LinkHolder", "forget", "holder", "leave", "leave_many", "resubscribe", "save"]

#: The provider name of events that came through the subscriber's own link.
PROVIDER = "web"
#: The short fixed list offered for leaving (key -> what the page says); free text goes beside it.
LEAVING_REASONS = {
    "too-many": "Too many emails",
    "not-relevant": "The content is not relevant to me",
    "never-signed-up": "I never signed up",
    "other-source": "I get this news elsewhere",
    "other": "Another reason",
}


@dataclass(frozen=True)
class LinkHolder:
    """The subscriber a token names, as their page needs them."""

    id: int
    email: str
    name: str | None
    status: SubscriberStatus
    unsubscribed_at: dt.datetime | None
    tags: frozenset[str]

    @property
    def left(self) -> bool:
        return self.status in LEFT_STATUSES

    def may_resubscribe(self, window: dt.timedelta, now: dt.datetime | None = None) -> bool:
        """Only an unsubscribe is undone here (a bounce or a complaint is not), and only for a while."""
        if self.status is not SubscriberStatus.UNSUBSCRIBED or self.unsubscribed_at is None:
            return False
        return (now or utcnow()) - self.unsubscribed_at <= window


def _load(session: Session, subscriber_id: int) -> Subscriber | None:
    if subscriber_id <= 0:
        return None
    return session.get(Subscriber, subscriber_id, options=[selectinload(Subscriber.tags)])


def _holder(subscriber: Subscriber) -> LinkHolder:
    return LinkHolder(
        id=subscriber.id,
        email=subscriber.email,
        name=subscriber.name,
        status=subscriber.status,
        unsubscribed_at=subscriber.unsubscribed_at,
        tags=frozenset(tag.name for tag in subscriber.tags),
    )


def holder(engine: Engine, subscriber_id: int) -> LinkHolder | None:
    """The subscriber, or None when there is none (never was, or forgotten). Reads only."""
    with Session(reading(engine)) as session:
        subscriber = _load(session, subscriber_id)
        return None if subscriber is None else _holder(subscriber)


def leave(
    engine: Engine,
    subscriber_id: int,
    *,
    send_id: int | None,
    source: str,
    reason: str | None = None,
    note: str | None = None,
    soft_bounce_limit: int = 3,
) -> bool:
    """Unsubscribe at once, recorded as an event of ``send_id`` with its ``source``. Idempotent:
    True when this call unsubscribed them, False when they had left already or are not there."""
    now = utcnow()
    with writing(engine).begin() as conn:
        found = conn.execute(
            select(Subscriber.email, Subscriber.status).where(Subscriber.id == subscriber_id)
        ).one_or_none()
        if subscriber_id <= 0 or found is None or found.status in LEFT_STATUSES:
            return False
        detail: dict[str, str] = {"source": source}
        if reason:
            detail["reason"] = reason
        if note:
            detail["note"] = note
        event = ProviderEvent(
            provider=PROVIDER,
            # Unique per act: after a resubscribe, the same link may unsubscribe again.
            event_id=f"{source}:{send_id or 0}.{subscriber_id}:{now.isoformat()}",
            kind=EventKind.UNSUBSCRIBED,
            occurred_at=now,
            send_id=send_id or None,
            email=found.email,
            detail=detail,
        )
        record_events(conn, [event], soft_bounce_limit=soft_bounce_limit)
        return True


def leave_many(
    engine: Engine,
    clicks: Sequence[tuple[int | None, int]],
    *,
    source: str,
    soft_bounce_limit: int = 3,
) -> set[int]:
    """:func:`leave` for many ``(send_id, subscriber_id)`` at once, in one transaction: the web
    app's one-click unsubscribes arriving together are written together (one commit, a few
    statements), which is what lets the endpoint keep up with a mailbox provider's robots.

    The same rules as :func:`leave`: whoever has left already (or never was) is skipped, a
    subscriber clicked twice in the batch leaves once. Returns the ids this call unsubscribed."""
    now = utcnow()
    wanted: dict[int, int | None] = {}
    for send_id, subscriber_id in clicks:
        if subscriber_id > 0:
            wanted.setdefault(subscriber_id, send_id)
    if not wanted:
        return set()
    with writing(engine).begin() as conn:
        rows = conn.execute(
            select(Subscriber.id, Subscriber.email, Subscriber.status).where(Subscriber.id.in_(list(wanted)))
        ).all()
        events = [
            ProviderEvent(
                provider=PROVIDER,
                event_id=f"{source}:{wanted[row.id] or 0}.{row.id}:{now.isoformat()}",
                kind=EventKind.UNSUBSCRIBED,
                occurred_at=now,
                send_id=wanted[row.id] or None,
                email=row.email,
                detail={"source": source},
            )
            for row in rows
            if row.status not in LEFT_STATUSES
        ]
        if events:
            record_events(conn, events, soft_bounce_limit=soft_bounce_limit)
        return {row.id for row in rows if row.status not in LEFT_STATUSES}


def resubscribe(engine: Engine, subscriber_id: int, *, window: dt.timedelta, ip: str | None) -> bool:
    """Undo an unsubscribe made within ``window``: new consent, given on the subscriber's own page."""
    with writing(engine).begin() as conn, Session(bind=conn) as session:
        subscriber = _load(session, subscriber_id)
        if subscriber is None or not _holder(subscriber).may_resubscribe(window):
            return False
        SubscriberRepository(session).add(
            subscriber.email, consent_method="preferences page", consent_ip=ip, resubscribe=True
        )
        session.flush()
        return True


def save(
    engine: Engine, subscriber_id: int, *, name: str | None, topics: Sequence[str], offered: Sequence[str]
) -> bool:
    """Set the name and which of the ``offered`` topic tags the subscriber has; other tags stay."""
    with writing(engine).begin() as conn, Session(bind=conn) as session:
        subscriber = _load(session, subscriber_id)
        if subscriber is None or subscriber.status in LEFT_STATUSES:
            return False
        repo = SubscriberRepository(session)
        offered_names = {tag.name for tag in repo.tags_by_name(offered)}
        kept = [tag for tag in subscriber.tags if tag.name not in offered_names]
        chosen = repo.tags_by_name([topic for topic in topics if topic in offered])
        subscriber.tags = sorted({t.name: t for t in [*kept, *chosen]}.values(), key=lambda t: t.name)
        subscriber.name = name or None
        session.flush()
        return True


def forget(engine: Engine, subscriber_id: int) -> Erasure | None:
    """Erase the subscriber exactly as ``newsletter subscribers forget`` does (and scrub)."""
    found = holder(engine, subscriber_id)
    return None if found is None else erase(engine, [found.email])
