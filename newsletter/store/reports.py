"""What ``newsletter report`` counts for one send, in a few aggregate statements.

Three reads per send, each bounded however many recipients and events it has:

- recipients by delivery state: the ledger's own :meth:`~newsletter.store.ledger.Ledger.counts`
  (it alone knows that ``sending`` is the pending rows of open claims);
- per event kind, the events and the *distinct recipients* they concern, so a reader who opened
  five times is one opener (and five opens). A recipient is its delivery id, which every adapter
  sends along and the provider hands back; an event without one (a provider that dropped the
  metadata) falls back to its address hash. Events with neither count as events only;
- per event kind and hour since the send started, how many events: the first ``hours`` hours one
  by one, everything after in one "later" bucket, and anything stamped before the start (clock
  skew) in hour 0. At most ``(hours + 1) * len(EventKind)`` rows come back.

Events belong to a send by their ``send_id``, as the webhook recorded it. Nothing here computes a
rate: that, and what counts as too many complaints, is ``newsletter.report``'s business.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import BigInteger, Connection, String, case, cast, func, literal, select
from sqlalchemy.sql.elements import ColumnElement

from newsletter.store.ledger import SendCounts, SendInfo, ledger_for
from newsletter.store.models import Event, EventKind

__all__ = ["EventTally", "HourlySeries", "SendFigures", "send_figures"]

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class EventTally:
    """One kind of event for one send: how many events, about how many distinct recipients."""

    events: int
    recipients: int


@dataclass(frozen=True)
class HourlySeries:
    """Events per kind in each hour after ``start``: ``counts[kind][h]`` is hour ``h`` (0-based).

    Every list has ``hours`` entries; ``later`` holds what came after them. Kinds without any
    event are absent from both.
    """

    start: dt.datetime
    hours: int
    counts: dict[EventKind, list[int]]
    later: dict[EventKind, int]


@dataclass(frozen=True)
class LeavingReasons:
    """What readers who left through their page said: a count per reason, and their own words."""

    counts: dict[str, int]
    notes: tuple[str, ...]  #: newest first


@dataclass(frozen=True)
class SendFigures:
    """Everything counted for one send; kinds with no events are absent from ``events``."""

    send: SendInfo
    deliveries: SendCounts
    events: dict[EventKind, EventTally]
    hourly: HourlySeries
    leaving: LeavingReasons


def send_figures(conn: Connection, send: SendInfo, *, hours: int) -> SendFigures:
    """Count one send's deliveries and events (``hours``: how many hourly buckets, at least 1)."""
    if hours < 1:
        raise ValueError("hours must be at least 1")
    start = send.started_at or send.created_at
    return SendFigures(
        send=send,
        deliveries=ledger_for(conn).counts(send.id),
        events=_tallies(conn, send.id),
        hourly=_hourly(conn, send.id, start, hours),
        leaving=_leaving(conn, send.id),
    )


def _leaving(conn: Connection, send_id: int) -> LeavingReasons:
    """The reasons given with the send's unsubscribes (read in Python: JSON paths differ by database,
    and a send's unsubscribes are a few per thousand recipients)."""
    query = (
        select(Event.detail)
        .where(Event.send_id == send_id, Event.kind == EventKind.UNSUBSCRIBED)
        .order_by(Event.occurred_at.desc())
    )
    counts: dict[str, int] = {}
    notes: list[str] = []
    for (detail,) in conn.execute(query):
        reason = (detail or {}).get("reason")
        if isinstance(reason, str):
            counts[reason] = counts.get(reason, 0) + 1
        note = (detail or {}).get("note")
        if isinstance(note, str):
            notes.append(note)
    return LeavingReasons(counts, tuple(notes))


def _tallies(conn: Connection, send_id: int) -> dict[EventKind, EventTally]:
    recipient = func.coalesce(
        literal("d") + cast(Event.delivery_id, String), literal("h") + Event.address_hash
    )
    query = (
        select(Event.kind, func.count(), func.count(recipient.distinct()))
        .where(Event.send_id == send_id)
        .group_by(Event.kind)
    )
    return {EventKind(kind): EventTally(int(n), int(unique)) for kind, n, unique in conn.execute(query)}


def _hourly(conn: Connection, send_id: int, start: dt.datetime, hours: int) -> HourlySeries:
    hour = _hours_since(conn, start)
    bucket = case((hour < 0, 0), (hour >= hours, hours), else_=hour)
    inner = select(Event.kind.label("kind"), bucket.label("bucket")).where(Event.send_id == send_id)
    rows = inner.subquery()
    query = select(rows.c.kind, rows.c.bucket, func.count()).group_by(rows.c.kind, rows.c.bucket)
    counts: dict[EventKind, list[int]] = {}
    later: dict[EventKind, int] = {}
    for kind, index, n in conn.execute(query):
        key = EventKind(kind)
        per_hour = counts.setdefault(key, [0] * hours)
        later.setdefault(key, 0)
        if int(index) >= hours:
            later[key] = int(n)
        else:
            per_hour[int(index)] = int(n)
    return HourlySeries(start, hours, counts, later)


def _hours_since(conn: Connection, start: dt.datetime) -> ColumnElement[int]:
    """Whole hours from ``start`` to an event's ``occurred_at``, rounded down (negative before ``start``).

    The one dialect difference: SQLite keeps timestamps as UTC text, which ``strftime('%s')``
    turns into epoch seconds; PostgreSQL extracts them from ``timestamptz``. Integer seconds, so
    an event exactly on the hour lands in the hour it starts, never a float's rounding away
    (and BIGINT: epoch seconds outgrow INTEGER in 2038).
    """
    start_epoch = int(start.timestamp())
    if conn.dialect.name == "postgresql":
        seconds = cast(func.floor(func.extract("epoch", Event.occurred_at)), BigInteger) - start_epoch
    else:
        seconds = cast(func.strftime("%s", Event.occurred_at), BigInteger) - start_epoch
    # Integer division; the first hour before the start may round to 0 rather than -1, which
    # changes nothing: anything before the start is counted in hour 0.
    return seconds // SECONDS_PER_HOUR
