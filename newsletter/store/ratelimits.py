"""Rate-limit counters in the service's database, shared by every ``serve`` process on it.

``[web] limit_storage = "database"`` keeps the sign-up and manage limits here rather than in one
process's memory, so two ``serve`` processes behind a load balancer (or one restarted) cannot be
played against each other by a list-bomber. Each limit ("3 per day") is a *fixed window*: one row
per key and window, ``hits`` counted up to the limit. A fixed window lets through at most twice
the limit across a window's edge, which these limits (a few mails per address a day) can bear.

A request passes when every limit of its key has room, and then counts against all of them, in one
transaction: each ``INSERT ... ON CONFLICT DO UPDATE SET hits = hits + 1 WHERE hits < limit``
either counts it or returns no row, and a full limit rolls back the counts already made, so a
refused request costs nothing against the others. The row lock the upsert takes on PostgreSQL (and
SQLite's single writer) serialises concurrent requests for one key: two processes can never both
take the last slot. Keys are stored as SHA-256 hashes, never as the address or IP itself, and
expired windows are deleted every :data:`PURGE_EVERY` calls.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Connection, Engine, delete
from sqlalchemy.dialects import postgresql, sqlite

from newsletter.store.db import writing
from newsletter.store.models import RateLimitHit

__all__ = ["PURGE_EVERY", "Window", "allow", "key_hash", "purge"]

#: Expired windows are deleted once per this many calls of :func:`allow` in a process.
PURGE_EVERY = 100
_calls = itertools.count(1)


class Window(NamedTuple):
    """One limit: at most ``amount`` hits per ``seconds``; ``name`` tells it apart in the key."""

    amount: int
    seconds: int
    name: str


def key_hash(scope: str, window: Window, key: str) -> str:
    """What the table stores for ``key`` under one limit: its SHA-256, not the key."""
    return hashlib.sha256(f"{scope}\0{window.name}\0{key}".encode()).hexdigest()


def allow(
    engine: Engine, scope: str, key: str, windows: Sequence[Window], *, now: float | None = None
) -> bool:
    """Count one request for ``key`` against every window; False (and nothing counted) if one is full."""
    now = time.time() if now is None else now
    with writing(engine).connect() as conn:
        if next(_calls) % PURGE_EVERY == 0:
            with conn.begin():
                purge(conn, now=now)
        with conn.begin() as transaction:
            for window in windows:
                if not _count(conn, key_hash(scope, window, key), window, now):
                    transaction.rollback()
                    return False
    return True


def _count(conn: Connection, digest: str, window: Window, now: float) -> bool:
    start = int(now) // window.seconds * window.seconds
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    row = dialect_insert(RateLimitHit).values(
        key_hash=digest, window_start=start, hits=1, expires_at=start + window.seconds
    )
    statement = row.on_conflict_do_update(
        index_elements=["key_hash", "window_start"],
        set_={"hits": RateLimitHit.hits + 1},
        where=RateLimitHit.hits < window.amount,
    ).returning(RateLimitHit.hits)
    hits = conn.execute(statement).scalar_one_or_none()
    return hits is not None and hits <= window.amount


def purge(conn: Connection, *, now: float | None = None) -> int:
    """Delete the windows that have ended; how many rows went."""
    now = time.time() if now is None else now
    return conn.execute(delete(RateLimitHit).where(RateLimitHit.expires_at <= int(now))).rowcount
