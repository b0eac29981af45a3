"""Worker heartbeats: ``newsletter worker`` beats on every pass of its loop; ``doctor`` and
``status`` read the latest one to tell whether any worker is alive."""

from __future__ import annotations

import datetime as dt
import os
import socket
from typing import NamedTuple

from sqlalchemy import Connection, delete, insert, select, update

from newsletter.store.models import WorkerHeartbeat, utcnow

__all__ = ["FORGOTTEN_AFTER", "Heartbeat", "beat", "latest", "this_worker"]

#: A worker not seen for this long is forgotten (its row deleted by the next beat of any worker).
FORGOTTEN_AFTER = dt.timedelta(days=7)


class Heartbeat(NamedTuple):
    worker: str
    started_at: dt.datetime
    seen_at: dt.datetime


def this_worker() -> str:
    return f"{socket.gethostname()[:150]}:{os.getpid()}"


def beat(conn: Connection, worker: str, *, started_at: dt.datetime, now: dt.datetime | None = None) -> None:
    """Record ``worker`` as alive now (one row per worker, moved on)."""
    now = utcnow() if now is None else now
    moved = conn.execute(
        update(WorkerHeartbeat).where(WorkerHeartbeat.worker == worker).values(seen_at=now)
    ).rowcount
    if not moved:
        conn.execute(
            insert(WorkerHeartbeat).values(worker=worker, started_at=started_at, seen_at=now)
        )
    conn.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < now - FORGOTTEN_AFTER))


def latest(conn: Connection) -> Heartbeat | None:
    """The worker seen most recently, or None if no worker ever beat (or all were forgotten)."""
    row = conn.execute(
        select(WorkerHeartbeat.worker, WorkerHeartbeat.started_at, WorkerHeartbeat.seen_at)
        .order_by(WorkerHeartbeat.seen_at.desc())
        .limit(1)
    ).first()
    return None if row is None else Heartbeat(row.worker, row.started_at, row.seen_at)
