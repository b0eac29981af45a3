"""The one-click group commit: clicks arriving together are written together, each answered only
after its own commit, and a batch that fails is retried click by click."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from newsletter.web.batching import ClickWriter


class Store:
    def __init__(self, bad: int | None = None) -> None:
        self.bad = bad
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def write(self, clicks: Sequence[tuple[int | None, int]]) -> None:
        self.gate.wait(5)
        ids = [subscriber for _, subscriber in clicks]
        if self.bad in ids:
            raise RuntimeError("constraint")
        self.batches.append(ids)


def test_clicks_arriving_while_one_commits_share_the_next_commit() -> None:
    store = Store()
    writer = ClickWriter(store.write)

    async def main() -> None:
        store.gate.clear()
        first = asyncio.create_task(writer.leave(1, 1))
        await asyncio.sleep(0.05)  # the first batch is in its commit, held by the gate
        rest = [asyncio.create_task(writer.leave(1, n)) for n in range(2, 202)]
        await asyncio.sleep(0.05)
        assert not first.done()  # answered only after its commit
        store.gate.set()
        await asyncio.gather(first, *rest)

    asyncio.run(main())
    assert store.batches[0] == [1]
    assert sorted(n for batch in store.batches[1:] for n in batch) == list(range(2, 202))
    assert len(store.batches) <= 3 and writer.batches == len(store.batches)


def test_a_burst_is_split_at_the_batch_limit() -> None:
    store = Store()
    writer = ClickWriter(store.write, max_batch=50)

    async def main() -> None:
        await asyncio.gather(*(writer.leave(None, n) for n in range(1, 121)))

    asyncio.run(main())
    assert max(len(batch) for batch in store.batches) <= 50
    assert sorted(n for batch in store.batches for n in batch) == list(range(1, 121))


def test_a_failing_batch_is_retried_one_click_at_a_time_and_only_the_bad_one_fails() -> None:
    store = Store(bad=7)
    writer = ClickWriter(store.write)

    async def main() -> list[object]:
        return await asyncio.gather(*(writer.leave(1, n) for n in range(1, 11)), return_exceptions=True)

    results = asyncio.run(main())
    assert [isinstance(r, Exception) for r in results] == [n == 7 for n in range(1, 11)]
    assert sorted(n for batch in store.batches for n in batch) == [n for n in range(1, 11) if n != 7]


def test_a_writer_survives_its_event_loop() -> None:
    store = Store()
    writer = ClickWriter(store.write)
    for n in (1, 2, 3):  # a new loop each time, as a test client's portal makes
        asyncio.run(asyncio.wait_for(writer.leave(None, n), 5))
    assert [n for batch in store.batches for n in batch] == [1, 2, 3]


@pytest.mark.parametrize("clicks", [[(1, 0)], [(None, -5)], []])
def test_leave_many_ignores_nobody(clicks, db_url: str) -> None:  # type: ignore[no-untyped-def]
    from newsletter.store.db import make_engine
    from newsletter.store.preferences import leave_many

    engine = make_engine(db_url)
    assert leave_many(engine, clicks, source="one-click") == set()
    engine.dispose()


def test_leave_many_leaves_each_once_and_skips_who_left(site) -> None:  # type: ignore[no-untyped-def]
    from newsletter.store.preferences import leave, leave_many

    ada, grace, linus = (site.subscriber(f"{n}@example.org").id for n in ("ada", "grace", "linus"))
    assert leave(site.engine, linus, send_id=site.send_id, source="page")
    send = site.send_id
    clicks = [(send, ada), (send, grace), (send, ada), (send, linus), (None, 999_999)]
    assert leave_many(site.engine, clicks, source="one-click") == {ada, grace}
    assert leave_many(site.engine, clicks, source="one-click") == set()
    left = [e for e in site.events() if e.kind == "unsubscribed"]
    assert sorted((e.detail or {}).get("source") for e in left) == ["one-click", "one-click", "page"]
    assert all(e.send_id == site.send_id for e in left)
    assert {site.subscriber(a).status for a in ("ada@example.org", "grace@example.org")} == {"unsubscribed"}
