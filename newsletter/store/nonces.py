"""One-time webhook nonces (Mailgun's signed tokens): the first request with one wins.

:func:`claim` runs in the transaction that stores the request's events (``store/events.py``), so a
nonce is remembered exactly when its events are. The insert skips a nonce already there
(``ON CONFLICT DO NOTHING``, which on PostgreSQL waits for a concurrent request with the same nonce
to commit or roll back), and a skipped insert is a replay: :class:`Replayed` rolls the whole
transaction back. Each claim also forgets nonces older than :data:`KEPT_FOR`; a signed timestamp
stays acceptable for at most twice ``[webhooks] timestamp_tolerance`` (12 hours at most), so a
forgotten nonce could only come back with a timestamp that is refused anyway.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import Connection, delete
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.store.models import WebhookNonce, utcnow

__all__ = ["KEPT_FOR", "Nonce", "Replayed", "claim"]

KEPT_FOR = dt.timedelta(days=1)


class Nonce(NamedTuple):
    """A provider's one-time value, as the webhook app hands it to the store."""

    provider: str
    value: str


class Replayed(Exception):
    """The nonce was seen before: the request is a replay (answered 401, nothing stored)."""


def claim(conn: Connection, nonce: Nonce, *, now: dt.datetime | None = None) -> None:
    """Record ``nonce`` as seen, or raise :class:`Replayed` if it already was."""
    now = utcnow() if now is None else now
    conn.execute(delete(WebhookNonce).where(WebhookNonce.seen_at < now - KEPT_FOR))
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    statement = (
        dialect_insert(WebhookNonce)
        .values(provider=nonce.provider, nonce=nonce.value, seen_at=now)
        .on_conflict_do_nothing(index_elements=["provider", "nonce"])
        .returning(WebhookNonce.nonce)
    )
    if conn.execute(statement).first() is None:
        raise Replayed(f"{nonce.provider} nonce seen before")
