"""``store.reports.send_figures`` on both databases: who counts as one recipient, which send an
event belongs to, and where events far from the start land."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, insert

from newsletter.events.model import ProviderEvent
from newsletter.store.events import record_events
from newsletter.store.ledger import ledger_for
from newsletter.store.models import EventKind, Send, SendState
from newsletter.store.reports import EventTally, send_figures

START = dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC)


def _send(engine: Engine, day: int) -> int:
    with engine.begin() as conn:
        return conn.execute(
            insert(Send)
            .values(
                issue_file="issues/x.yaml",
                issue_date=dt.date(2026, 11, day),
                subject="x",
                content_hash="0" * 64,
                provider="postmark",
                state=SendState.FINISHED,
                started_at=START,
            )
            .returning(Send.id)
        ).scalar_one()


def _event(n: int, send_id: int, kind: EventKind, hours: float, **fields: object) -> ProviderEvent:
    at = START + dt.timedelta(hours=hours)
    return ProviderEvent("postmark", f"e{n}", kind, at, send_id=send_id, **fields)  # type: ignore[arg-type]


def test_a_recipient_is_its_delivery_else_its_address(engine: Engine) -> None:
    mine, other = _send(engine, 20), _send(engine, 27)
    events = [
        _event(1, mine, EventKind.OPENED, 1, delivery_id=10),
        _event(2, mine, EventKind.OPENED, 2, delivery_id=10),
        _event(3, mine, EventKind.OPENED, 3, email="Reader@Example.org"),  # no delivery id
        _event(4, mine, EventKind.OPENED, 4, email="reader@example.org"),  # the same address
        _event(5, mine, EventKind.OPENED, 5),  # neither: an event, not a recipient
        _event(6, other, EventKind.OPENED, 1, delivery_id=99),  # another send's
    ]
    with engine.begin() as conn:
        record_events(conn, events)
        figures = send_figures(conn, ledger_for(conn).get_send(mine), hours=72)
    assert figures.events == {EventKind.OPENED: EventTally(events=5, recipients=2)}
    assert figures.deliveries.total == 0


def test_far_events_land_in_the_first_or_the_later_bucket(engine: Engine) -> None:
    send_id = _send(engine, 20)
    events = [
        _event(1, send_id, EventKind.CLICKED, -24 * 400),  # a year early (a wrong clock)
        _event(2, send_id, EventKind.CLICKED, 23.99),
        _event(3, send_id, EventKind.CLICKED, 24),
        _event(4, send_id, EventKind.CLICKED, 24 * 365 * 40),  # past 2038: BIGINT epoch seconds
    ]
    with engine.begin() as conn:
        record_events(conn, events)
        series = send_figures(conn, ledger_for(conn).get_send(send_id), hours=24).hourly
    assert series.counts == {EventKind.CLICKED: [1] + [0] * 22 + [1]}
    assert series.later == {EventKind.CLICKED: 1 + 1}
    assert series.start == START


def test_hours_must_be_positive(engine: Engine) -> None:
    send_id = _send(engine, 20)
    with engine.connect() as conn, pytest.raises(ValueError):
        send_figures(conn, ledger_for(conn).get_send(send_id), hours=0)
