"""A sent issue with a known history of provider events, for ``newsletter report``.

The send goes out through the outbox like a real one; then the ledger and the events are set to
what the tests count: eight recipients (six accepted, one failed, one suppressed) and events
that repeat (five opens by one reader, two soft bounces of one address) so unique and total
counts differ, one event with no recipient at all, one before the send started and one days
after it.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.events.model import ProviderEvent
from newsletter.store.db import make_engine
from newsletter.store.events import record_events
from newsletter.store.models import Delivery, DeliveryState, EventKind, Send
from tests.conftest import FIXTURE_ISSUES_DIR

ISSUE = "2026-11-20.yaml"
START = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
READERS = 8

Invoke = Callable[..., Any]


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Invoke:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.setenv("NEWSLETTER_ESP_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "issues").mkdir()
    shutil.copy(FIXTURE_ISSUES_DIR / ISSUE, tmp_path / "issues" / ISSUE)
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    for i in range(READERS):
        assert invoke("subscribers", "add", f"reader{i}@example.org").exit_code == 0
    return invoke


@pytest.fixture
def sent(cli: Invoke, db_url: str) -> list[int]:
    """The issue sent to every reader, started at ``START``; its delivery ids in order."""
    assert cli("send", f"issues/{ISSUE}", "--yes").exit_code == 0
    engine = make_engine(db_url)
    with engine.begin() as conn:
        conn.execute(update(Send).values(started_at=START))
        ids = list(conn.execute(select(Delivery.id).order_by(Delivery.id)).scalars())
    engine.dispose()
    return ids


def _at(hours: float) -> dt.datetime:
    return START + dt.timedelta(hours=hours)


@pytest.fixture
def history(sent: list[int], db_url: str) -> list[int]:
    """The events and outcomes every number in the report tests follows from."""
    d = sent
    engine = make_engine(db_url)
    with engine.begin() as conn:
        send_id = conn.execute(select(Send.id)).scalar_one()
        conn.execute(update(Delivery).where(Delivery.id == d[6]).values(state=DeliveryState.FAILED))
        conn.execute(update(Delivery).where(Delivery.id == d[7]).values(state=DeliveryState.SUPPRESSED))
        plan: list[tuple[EventKind, int | None, float]] = [
            *[(EventKind.DELIVERED, d[i], 0.01) for i in range(4)],
            (EventKind.BOUNCED_HARD, d[4], 0.02),
            (EventKind.BOUNCED_SOFT, d[5], 0.02),
            (EventKind.BOUNCED_SOFT, d[5], 2.5),  # the same address again: two events, one recipient
            (EventKind.COMPLAINED, d[0], 5.0),
            (EventKind.UNSUBSCRIBED, d[1], 1.2),
            *[(EventKind.OPENED, d[0], h) for h in (0.5, 0.6, 1.0, 3.0, 100.0)],  # five opens, one reader
            (EventKind.OPENED, d[1], -0.1),  # stamped before the send started: counted in hour 0
            (EventKind.OPENED, d[2], 1.9),
            (EventKind.OPENED, d[2], 2.0),  # exactly on the hour: hour 2
            (EventKind.OPENED, None, 0.7),  # no delivery id, no address: an event, not a recipient
            (EventKind.CLICKED, d[0], 0.55),
            (EventKind.CLICKED, d[0], 80.0),
        ]
        events = [
            ProviderEvent("postmark", f"e{n}", kind, _at(hours), delivery_id=delivery, send_id=send_id)
            for n, (kind, delivery, hours) in enumerate(plan)
        ]
        assert record_events(conn, events) == len(events)
    engine.dispose()
    return d
