"""One-click unsubscribes written together: a group commit in front of the store.

Mailbox providers' robots (Gmail, Yahoo) post one-click unsubscribes as fast as readers press the
button, and a spam wave's "unsubscribe all" presses arrive in bursts. Each request still gets its
answer only after its row is committed (RFC 8058 wants the unsubscribe done, not promised), but
the requests that arrive while one transaction commits go into the next one together: one commit
and a few statements for a batch of them instead of per request.

Everything here runs on the event loop; the store call runs in the thread pool. A batch that fails
is retried one click at a time, so one bad row cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Final

from starlette.concurrency import run_in_threadpool

__all__ = ["ClickWriter"]

log = logging.getLogger(__name__)

#: The most clicks written in one transaction (a burst is split into several).
MAX_BATCH: Final = 500

Write = Callable[[Sequence[tuple[int | None, int]]], object]


class ClickWriter:
    """``await writer.leave(send_id, subscriber_id)`` returns once that click is committed."""

    def __init__(self, write: Write, *, max_batch: int = MAX_BATCH) -> None:
        self._write = write
        self._max_batch = max_batch
        self._pending: list[tuple[int | None, int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        #: Transactions written so far (the benchmark and tests read it).
        self.batches = 0

    async def leave(self, send_id: int | None, subscriber_id: int) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((send_id, subscriber_id, future))
        writer = self._writer
        # A writer of another loop (a test client's earlier portal) can never run again here.
        if writer is None or writer.done() or writer.get_loop() is not future.get_loop():
            self._writer = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                await self._commit(batch)
        finally:
            if self._writer is asyncio.current_task():
                self._writer = None

    async def _commit(self, batch: list[tuple[int | None, int, asyncio.Future[None]]]) -> None:
        self.batches += 1
        try:
            await run_in_threadpool(self._write, [(send_id, subscriber) for send_id, subscriber, _ in batch])
        except Exception:
            if len(batch) == 1:
                log.exception("one-click unsubscribe of subscriber %s not written", batch[0][1])
                _settle(batch, error=True)
                return
            for one in batch:  # one bad row must not fail the rest
                await self._commit([one])
            return
        _settle(batch, error=False)


def _settle(batch: list[tuple[int | None, int, asyncio.Future[None]]], *, error: bool) -> None:
    for *_, future in batch:
        if future.done():
            continue
        if error:
            future.set_exception(RuntimeError("the unsubscribe could not be written"))
        else:
            future.set_result(None)
