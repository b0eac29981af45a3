"""Provider events into the ledger: stored once, applied once, in the caller's transaction.

A provider retries a webhook until it gets a 200, and may deliver one twice; the unique
(provider, provider_event_id) makes the insert skip a replay (``ON CONFLICT DO NOTHING``), and only
the events the insert actually wrote are applied. A provider that signs a one-time nonce rather
than the body (Mailgun) has it claimed in the same transaction (``store/nonces.py``): a request
that repeats one raises :class:`~newsletter.store.nonces.Replayed` and leaves nothing behind.
What applying means:

- hard bounce: the subscriber becomes ``bounced`` and the address is suppressed;
- complaint: ``complained`` and suppressed;
- soft bounce: suppressed (as bounced) once the address has ``soft_bounce_limit`` soft bounces;
- unsubscribe through the provider: ``unsubscribed`` and suppressed;
- delivered, opened, clicked, other: stored only.

Leaving and suppressing go through :class:`~newsletter.store.subscribers.SubscriberRepository`,
which owns the rule that nothing but new consent undoes them. Deliveries keep their state
(``accepted``): a bounce is a fact about the address after the provider took the message, and lives
here, in ``events``, joined by ``delivery_id``. A suppression written here mid-send is honoured by
the send's remaining batches: every claim checks ``suppressions``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.events.model import ProviderEvent
from newsletter.store.addresses import InvalidAddress, normalize
from newsletter.store.models import Event, EventKind, SubscriberStatus, SuppressionReason, utcnow
from newsletter.store.nonces import Nonce, claim
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import NotFound, SubscriberRepository

__all__ = ["DEFAULT_SOFT_BOUNCE_LIMIT", "record_events"]

DEFAULT_SOFT_BOUNCE_LIMIT = 3
#: Events per INSERT: one POST may carry thousands (SendGrid batches), and SQLite binds at most
#: 32,766 parameters per statement (nine per event here).
INSERT_BATCH = 1000

#: What leaving looks like for each event kind that means it.
_LEAVES = {
    EventKind.BOUNCED_HARD: SubscriberStatus.BOUNCED,
    EventKind.COMPLAINED: SubscriberStatus.COMPLAINED,
    EventKind.UNSUBSCRIBED: SubscriberStatus.UNSUBSCRIBED,
}


def record_events(
    conn: Connection,
    events: Sequence[ProviderEvent],
    *,
    soft_bounce_limit: int = DEFAULT_SOFT_BOUNCE_LIMIT,
    nonce: Nonce | None = None,
) -> int:
    """Store the events not seen before and apply them; return how many were new.

    Runs in the caller's transaction on ``conn``: the events, their effects and the request's
    ``nonce`` commit together, so a failure leaves the provider's retry to do all of it again.
    Raises :class:`~newsletter.store.nonces.Replayed` (the caller rolls back) for a used nonce.
    """
    now = utcnow()
    if nonce is not None:
        claim(conn, nonce, now=now)
    unique = list({(e.provider, e.event_id): e for e in events}.values())
    if not unique:
        return 0
    rows = [
        {
            "provider": e.provider,
            "provider_event_id": e.event_id,
            "kind": e.kind,
            "delivery_id": e.delivery_id,
            "send_id": e.send_id,
            "address_hash": _hash(e.email),
            "occurred_at": e.occurred_at,
            "received_at": now,
            "detail": e.detail,
        }
        for e in unique
    ]
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    written: set[tuple[str, str]] = set()
    for start in range(0, len(rows), INSERT_BATCH):
        statement = (
            dialect_insert(Event)
            .values(rows[start : start + INSERT_BATCH])
            .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
            .returning(Event.provider, Event.provider_event_id)
        )
        written.update((provider, event_id) for provider, event_id in conn.execute(statement))
    new = [e for e in unique if (e.provider, e.event_id) in written]
    _apply(conn, new, soft_bounce_limit)
    return len(new)


def _apply(conn: Connection, events: Sequence[ProviderEvent], limit: int) -> None:
    """Suppress or unsubscribe for the events that call for it (their rows are already written)."""
    acting = [e for e in events if e.email and _hash(e.email)]
    if not acting:
        return
    # A session on the caller's connection joins its transaction and never commits it.
    with Session(bind=conn) as session:
        repo = SubscriberRepository(session)
        for event in acting:
            assert event.email is not None
            if event.kind in _LEAVES:
                _leave(repo, event.email, _LEAVES[event.kind])
            elif event.kind is EventKind.BOUNCED_SOFT and _soft_bounces(conn, event.email) >= limit:
                _leave(repo, event.email, SubscriberStatus.BOUNCED)
        session.flush()


def _leave(repo: SubscriberRepository, email: str, status: SubscriberStatus) -> None:
    """The subscriber leaves; an address no longer (or never) on the list is suppressed anyway."""
    try:
        repo.leave(email, status)
    except NotFound:
        repo.suppress(email, SuppressionReason(status.value))


def _soft_bounces(conn: Connection, email: str) -> int:
    query = (
        select(func.count())
        .select_from(Event)
        .where(Event.address_hash == _hash(email), Event.kind == EventKind.BOUNCED_SOFT)
    )
    return int(conn.execute(query).scalar_one())


def _hash(email: str | None) -> str | None:
    """The suppression key of a reported address; None for one we could never have mailed."""
    if not email:
        return None
    try:
        return address_hash(normalize(email).normalized)
    except InvalidAddress:
        return None
