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

Leaving and suppressing go through :func:`~newsletter.store.subscribers.leave_all`, which owns
the rule that nothing but new consent undoes them, for all of a request's events at once.
Deliveries keep their state (``accepted``): a bounce is a fact about the address after the
provider took the message, and lives here, in ``events``, joined by ``delivery_id``. A
suppression written here mid-send is honoured by the send's remaining batches: every claim
checks ``suppressions``.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import orjson
from sqlalchemy import Connection, Insert, Table, func, select
from sqlalchemy.dialects import sqlite

from newsletter.events.model import ProviderEvent
from newsletter.store.addresses import InvalidAddress, normalize
from newsletter.store.models import Event, EventKind, SubscriberStatus, utcnow
from newsletter.store.nonces import Nonce, claim
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import LEAVE_CHUNK, leave_all

__all__ = ["DEFAULT_SOFT_BOUNCE_LIMIT", "record_events"]

DEFAULT_SOFT_BOUNCE_LIMIT = 3

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
    addresses = [_address(e.email) for e in unique]
    rows = [
        {
            "provider": e.provider,
            "provider_event_id": e.event_id,
            "kind": e.kind,
            "delivery_id": e.delivery_id,
            "send_id": e.send_id,
            "address_hash": address.hash if address else None,
            "occurred_at": e.occurred_at,
            "received_at": now,
            "detail": e.detail,
        }
        for e, address in zip(unique, addresses, strict=True)
    ]
    written = _insert_new(conn, rows)
    new = [
        (e, address)
        for e, address in zip(unique, addresses, strict=True)
        if (e.provider, e.event_id) in written
    ]
    _apply(conn, new, soft_bounce_limit, now)
    return len(new)


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert the rows not stored before; the (provider, event id) of each one written.

    One statement per request whatever its size, and never one compiled per request: a
    ``.values(rows)`` statement was, and that compilation was two thirds of a SendGrid batch's time.
    """
    if conn.dialect.name == "postgresql":
        return _insert_new_postgresql(conn, rows)
    return {(provider, event_id) for provider, event_id in conn.execute(_sqlite_insert(), rows)}


@functools.cache
def _sqlite_insert() -> Insert:
    """Built once and run as an ``executemany``: SQLAlchemy's "insertmanyvalues" sends the rows as
    multi-row ``VALUES`` pages within SQLite's 32,766 parameters per statement."""
    table = cast(Table, Event.__table__)
    return (
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["provider", "provider_event_id"])
        .returning(table.c.provider, table.c.provider_event_id)
    )


#: PostgreSQL: the rows as nine arrays, unnested. The query text stays short and the same for every
#: request, so psycopg parses it once; multi-row ``VALUES`` of a thousand rows were parsed anew
#: each time, and cost more than the insert.
_ARRAYS = (
    ("provider", "text"),
    ("provider_event_id", "text"),
    ("kind", "text"),
    ("delivery_id", "bigint"),
    ("send_id", "integer"),
    ("address_hash", "text"),
    ("occurred_at", "timestamptz"),
    ("received_at", "timestamptz"),
    ("detail", "jsonb"),
)
_COLUMNS = tuple(name for name, _ in _ARRAYS)
_UNNEST_INSERT = (
    f"INSERT INTO events ({', '.join(_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{kind}[]' for _, kind in _ARRAYS)}) "
    "ON CONFLICT (provider, provider_event_id) DO NOTHING RETURNING provider, provider_event_id"
)


def _insert_new_postgresql(conn: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    for row in rows:
        if row["occurred_at"].tzinfo is None:  # the rule of ``models.UTCDateTime``
            raise ValueError("naive datetime given to a UTC column")
    arrays: list[list[Any]] = [[row[name] for row in rows] for name in _COLUMNS]
    arrays[2] = [str(kind) for kind in arrays[2]]
    arrays[8] = [orjson.dumps(detail).decode() for detail in arrays[8]]
    written = conn.exec_driver_sql(_UNNEST_INSERT, tuple(arrays))
    return {(provider, event_id) for provider, event_id in written}


def _apply(
    conn: Connection,
    events: Sequence[tuple[ProviderEvent, _Address | None]],
    limit: int,
    now: dt.datetime,
) -> None:
    """Suppress or unsubscribe for the events that call for it (their rows are already written).

    All of a request's events at once: the soft-bounce counts in one grouped query, the leaving in
    one :func:`~newsletter.store.subscribers.leave_all`. Within the request the first event that
    makes an address leave gives the reason, as if they had come one by one.
    """
    acting = [
        (e, address)
        for e, address in events
        if address is not None and (e.kind in _LEAVES or e.kind is EventKind.BOUNCED_SOFT)
    ]
    if not acting:
        return
    soft = {address.hash for e, address in acting if e.kind is EventKind.BOUNCED_SOFT}
    over_limit = _soft_bounced(conn, sorted(soft), limit) if soft else set()
    leaving: dict[str, tuple[str, SubscriberStatus]] = {}
    for event, address in acting:
        status = _LEAVES.get(event.kind)
        if status is None and address.hash in over_limit:
            status = SubscriberStatus.BOUNCED
        if status is not None:
            leaving.setdefault(address.normalized, (address.hash, status))
    leave_all(conn, leaving, now=now)


def _soft_bounced(conn: Connection, hashes: Sequence[str], limit: int) -> set[str]:
    """The addresses among ``hashes`` with at least ``limit`` soft bounces on record."""
    over: set[str] = set()
    for start in range(0, len(hashes), LEAVE_CHUNK):
        query = (
            select(Event.address_hash)
            .where(
                Event.address_hash.in_(hashes[start : start + LEAVE_CHUNK]),
                Event.kind == EventKind.BOUNCED_SOFT,
            )
            .group_by(Event.address_hash)
            .having(func.count() >= limit)
        )
        over.update(h for h in conn.execute(query).scalars() if h is not None)
    return over


class _Address(NamedTuple):
    normalized: str
    hash: str


def _address(email: str | None) -> _Address | None:
    """The identity and suppression key of a reported address; None for one we could never have mailed."""
    if not email:
        return None
    try:
        normalized = normalize(email).normalized
    except InvalidAddress:
        return None
    return _Address(normalized, address_hash(normalized))
