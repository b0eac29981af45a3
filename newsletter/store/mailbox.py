"""The bounce mailbox's messages into the store: each message once, its events through ``record_events``.

``record_messages`` runs in the caller's transaction, one per page of messages: the messages' keys
and their events commit together, so a reader that crashes before moving a page out of the folder
reads it again next time, finds the keys, and changes nothing twice.

Before the events go to :func:`~newsletter.store.events.record_events` (where every suppression
rule lives, for webhooks and mailbox alike), each is tied to a recipient of ours:

- an event naming a delivery (a verified VERP token) is about that delivery's subscriber, whatever
  address the bounce quotes (a forwarding target, an alias): it gets that subscriber's address. A
  delivery that does not exist, or of another send, or of a forgotten subscriber, acts on nobody;
- an event naming only an address (no token) acts only if the address is on the list: a bounce or
  an unsubscribe mail about anyone else is dropped and counted ``unmatched``. Anyone can write to
  the bounce address; this keeps such mail from filling the suppression list.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.events.model import ProviderEvent
from newsletter.store.addresses import InvalidAddress, normalize
from newsletter.store.events import DEFAULT_SOFT_BOUNCE_LIMIT, record_events
from newsletter.store.models import Delivery, MailboxMessage, MailboxPoll, Subscriber, utcnow

__all__ = ["KEPT_POLLS", "LastPoll", "Recorded", "last_poll", "record_messages", "record_poll"]

#: Rows of ``mailbox_polls`` kept: enough for ``status``, never a growing table.
KEPT_POLLS = 100
#: Ids or addresses per ``IN (...)``: far below SQLite's bound-parameter limit.
_CHUNK = 900


@dataclass
class Recorded:
    """What one call stored: new messages, messages seen before, new events, events about nobody."""

    messages: int = 0
    duplicates: int = 0
    events: int = 0
    unmatched: int = 0


def record_messages(
    conn: Connection,
    messages: Sequence[tuple[str, str, Sequence[ProviderEvent]]],
    *,
    soft_bounce_limit: int = DEFAULT_SOFT_BOUNCE_LIMIT,
) -> Recorded:
    """Store ``(key, kind, events)`` of each message not seen before, and apply their events."""
    out = Recorded()
    unique = list({key: (key, kind, events) for key, kind, events in messages}.values())
    out.duplicates = len(messages) - len(unique)
    if not unique:
        return out
    now = utcnow()
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    new_keys: set[str] = set()
    for start in range(0, len(unique), _CHUNK):
        rows = [
            {"key": key, "kind": kind, "events": len(events), "processed_at": now}
            for key, kind, events in unique[start : start + _CHUNK]
        ]
        statement = (
            dialect_insert(MailboxMessage)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(MailboxMessage.key)
        )
        new_keys.update(conn.execute(statement).scalars())
    out.messages = len(new_keys)
    out.duplicates += len(unique) - len(new_keys)
    events = [event for key, _, batch in unique if key in new_keys for event in batch]
    resolved = _resolve(conn, events)
    out.unmatched = len(events) - len(resolved)
    out.events = record_events(conn, resolved, soft_bounce_limit=soft_bounce_limit)
    return out


def _resolve(conn: Connection, events: list[ProviderEvent]) -> list[ProviderEvent]:
    """Each event with the address of the recipient it is about; events about nobody left out."""
    by_delivery = [e for e in events if e.delivery_id is not None]
    by_address = [e for e in events if e.delivery_id is None and e.email]
    owners: dict[int, tuple[int, str]] = {}
    ids = sorted({e.delivery_id for e in by_delivery if e.delivery_id is not None})
    for start in range(0, len(ids), _CHUNK):
        query = (
            select(Delivery.id, Delivery.send_id, Subscriber.email)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.id.in_(ids[start : start + _CHUNK]))
        )
        owners.update({row.id: (row.send_id, row.email) for row in conn.execute(query)})
    out = []
    for event in by_delivery:
        owner = owners.get(event.delivery_id or 0)
        if owner is not None and owner[0] == event.send_id:
            out.append(dataclasses.replace(event, email=owner[1]))
    listed = _listed(conn, [e.email for e in by_address if e.email])
    out.extend(e for e in by_address if e.email and _normalized(e.email) in listed)
    return out


def _listed(conn: Connection, addresses: list[str]) -> set[str]:
    """Which of these addresses (normalised) belong to a subscriber, in any status."""
    wanted = sorted({n for n in (_normalized(a) for a in addresses) if n})
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        query = select(Subscriber.email_normalized).where(
            Subscriber.email_normalized.in_(wanted[start : start + _CHUNK])
        )
        found.update(conn.execute(query).scalars())
    return found


def _normalized(address: str) -> str | None:
    try:
        return normalize(address).normalized
    except InvalidAddress:
        return None


@dataclass(frozen=True)
class LastPoll:
    started_at: dt.datetime
    finished_at: dt.datetime
    held: int
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def record_poll(
    conn: Connection,
    *,
    started_at: dt.datetime,
    held: int,
    counts: Counter[str] | dict[str, int],
    error: str | None = None,
) -> None:
    """One read of the mailbox, for ``status``; older rows past :data:`KEPT_POLLS` are dropped."""
    conn.execute(
        insert(MailboxPoll).values(
            started_at=started_at, finished_at=utcnow(), held=held, counts=dict(counts), error=error
        )
    )
    newest_dropped = (
        select(MailboxPoll.id).order_by(MailboxPoll.id.desc()).offset(KEPT_POLLS).limit(1)
    ).scalar_subquery()
    conn.execute(delete(MailboxPoll).where(MailboxPoll.id <= newest_dropped))


def last_poll(conn: Connection) -> LastPoll | None:
    table = MailboxPoll.__table__
    row = conn.execute(select(table).order_by(table.c.id.desc()).limit(1)).first()
    if row is None:
        return None
    return LastPoll(row.started_at, row.finished_at, row.held, dict(row.counts or {}), row.error)
