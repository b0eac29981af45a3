"""Worker heartbeats: one row per worker, moved on each beat; the latest is what doctor and status read."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, func, select

from newsletter.store.db import writing
from newsletter.store.heartbeats import FORGOTTEN_AFTER, beat, latest
from newsletter.store.models import WorkerHeartbeat

T0 = dt.datetime(2026, 12, 4, 9, 0, tzinfo=dt.UTC)


def test_each_worker_has_one_row_and_the_latest_beat_wins(engine: Engine) -> None:
    with writing(engine).begin() as conn:
        assert latest(conn) is None
        beat(conn, "a:1", started_at=T0, now=T0)
        beat(conn, "b:2", started_at=T0, now=T0 + dt.timedelta(seconds=10))
        beat(conn, "a:1", started_at=T0, now=T0 + dt.timedelta(seconds=20))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(WorkerHeartbeat)).scalar_one() == 2
        found = latest(conn)
    assert found is not None and found.worker == "a:1"
    assert found.seen_at == T0 + dt.timedelta(seconds=20) and found.started_at == T0


def test_a_worker_gone_for_a_week_is_forgotten(engine: Engine) -> None:
    with writing(engine).begin() as conn:
        beat(conn, "old:1", started_at=T0, now=T0)
        beat(conn, "new:2", started_at=T0, now=T0 + FORGOTTEN_AFTER + dt.timedelta(seconds=1))
    with engine.connect() as conn:
        assert [row.worker for row in conn.execute(select(WorkerHeartbeat.worker))] == ["new:2"]
