"""Rate-limit counters in the database (``store/ratelimits.py``), on SQLite and PostgreSQL: shared by
two engines as by two ``serve`` processes, exact under concurrent requests, windows that end,
nothing counted for a refused request, and no key stored in the clear."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from newsletter.store import ratelimits
from newsletter.store.db import make_engine
from newsletter.store.models import RateLimitHit
from newsletter.store.ratelimits import Window

NOW = 1_796_000_000.0  # a fixed clock: windows are tested by moving it, never by waiting
TEN_MINUTES = Window(1, 600, "1 per 10 minutes")
DAILY = Window(3, 86_400, "3 per day")


@pytest.fixture
def other_engine(db_url: str) -> Iterator[Engine]:
    """A second engine on the same database: another ``serve`` process."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def test_two_processes_share_one_count(engine: Engine, other_engine: Engine) -> None:
    assert ratelimits.allow(engine, "address", "ann@example.org", [DAILY], now=NOW)
    assert ratelimits.allow(other_engine, "address", "ann@example.org", [DAILY], now=NOW + 1)
    assert ratelimits.allow(engine, "address", "ann@example.org", [DAILY], now=NOW + 2)
    assert not ratelimits.allow(other_engine, "address", "ann@example.org", [DAILY], now=NOW + 3)
    # Another key and another scope have counts of their own.
    assert ratelimits.allow(other_engine, "address", "bob@example.org", [DAILY], now=NOW)
    assert ratelimits.allow(other_engine, "ip", "ann@example.org", [DAILY], now=NOW)


def test_a_window_ends_and_a_refused_request_counts_against_nothing(engine: Engine) -> None:
    both = [TEN_MINUTES, DAILY]
    start = NOW // 600 * 600
    assert ratelimits.allow(engine, "address", "ann@example.org", both, now=start)
    # Refused by the ten-minute limit: the daily count must not grow.
    for second in (1, 60, 599):
        assert not ratelimits.allow(engine, "address", "ann@example.org", both, now=start + second)
    assert ratelimits.allow(engine, "address", "ann@example.org", both, now=start + 600)
    assert ratelimits.allow(engine, "address", "ann@example.org", both, now=start + 1200)
    # Three a day, then the daily limit refuses though the ten-minute window has room.
    assert not ratelimits.allow(engine, "address", "ann@example.org", both, now=start + 1800)
    with engine.connect() as conn:
        daily = conn.execute(
            select(RateLimitHit.hits).where(
                RateLimitHit.key_hash == ratelimits.key_hash("address", DAILY, "ann@example.org")
            )
        ).scalar_one()
    assert daily == 3


def test_concurrent_requests_never_share_the_last_slot(engine: Engine, other_engine: Engine) -> None:
    limit = Window(5, 3600, "5 per hour")
    allowed: list[bool] = []
    barrier = threading.Barrier(8)

    def ask(index: int) -> None:
        barrier.wait()
        process = engine if index % 2 else other_engine
        for _ in range(5):
            allowed.append(ratelimits.allow(process, "ip", "10.0.0.1", [limit], now=NOW))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 40
    assert allowed.count(True) == 5


def test_keys_are_hashed_and_ended_windows_purged(engine: Engine) -> None:
    address = "secret.person@example.org"
    assert ratelimits.allow(engine, "address", address, [TEN_MINUTES, DAILY], now=NOW)
    with engine.connect() as conn:
        stored = conn.execute(select(RateLimitHit.key_hash)).scalars().all()
    assert len(stored) == 2
    assert all(address not in key and len(key) == 64 for key in stored)
    with engine.begin() as conn:
        assert ratelimits.purge(conn, now=NOW + 601) == 1  # the ten-minute window ended
        assert ratelimits.purge(conn, now=NOW + 86_401) == 1
        assert conn.execute(select(func.count()).select_from(RateLimitHit)).scalar_one() == 0


def test_hostile_keys_are_just_keys(engine: Engine) -> None:
    for key in ("", "\x00" * 10, "é" * 10_000, "'; DROP TABLE rate_limits; --"):
        assert ratelimits.allow(engine, "address", key, [TEN_MINUTES], now=NOW)
        assert not ratelimits.allow(engine, "address", key, [TEN_MINUTES], now=NOW)
