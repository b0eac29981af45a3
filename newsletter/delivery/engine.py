"""Run a send: claim a batch from the ledger, hand it to the ESP adapter, record every answer.

The loop is the whole delivery guarantee, so it is short:

1. claim the next batch (up to the provider's batch size) under a lease: a range of delivery ids;
2. build each recipient's values (a signed unsubscribe token, a Message-ID);
3. wait for the rate limiter, then send; a whole-batch :class:`RetryableError` (429, 5xx, no
   connection) is retried with full-jitter exponential backoff that honours ``Retry-After``
   (tenacity), renewing the lease first so a long wait never lets the batch look abandoned;
4. record the answers: a batch with nothing to send again closes its claim ``accepted`` and
   writes only its exceptions to their rows; recipients refused for now are sent again after a
   pause, under the same claim (every answer written to its row meanwhile); then take the next.

A 401/403 (:class:`AuthError`) hands the claim back and stops the send: every further batch would
fail the same way. A provider still failing after the retries hands the claim back and pauses
the send. Ctrl-C (``stop``) lets each worker finish and record the batch in flight, then pauses
the send; ``send --resume`` continues it.

Workers are threads of one process (``--workers``; a standard-library executor) or separate
processes (``newsletter worker``), each with its own connection and adapter; claims of one send
never overlap (a row lock on the send's cursor on PostgreSQL, the write lock on SQLite).
"""

from __future__ import annotations

import datetime as dt
import os
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_random_exponential

from newsletter.delivery.esp.base import (
    Adapter,
    AuthError,
    ESPError,
    Outcome,
    Outgoing,
    Recipient,
    Result,
    RetryableError,
)
from newsletter.delivery.message import delivery_message_id, list_unsubscribe, new_message_id
from newsletter.delivery.tokens import TokenSigner
from newsletter.errors import NewsletterError
from newsletter.store.db import writing
from newsletter.store.ledger import MAX_ATTEMPTS, Batch, Claimed, Ledger, ledger_for
from newsletter.store.ledger import Outcome as Recorded
from newsletter.store.models import DeliveryState, SendState

__all__ = [
    "Personaliser",
    "RateLimiter",
    "RetryPolicy",
    "RunReport",
    "SendStopped",
    "owner_name",
    "run_send",
    "verp_address",
]


class SendStopped(NewsletterError):
    """The provider refused our credentials; the send is stopped until they are fixed."""


def owner_name() -> str:
    """``host:pid:thread``: who holds a lease, so a resume can tell a dead worker's rows."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident() % 100_000}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_local_owners(owners: Sequence[str]) -> list[str]:
    """Lease owners that were processes of this host which no longer run (crashed, killed)."""
    host = socket.gethostname()
    dead = []
    for owner in owners:
        parts = owner.split(":")
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
            dead.append(owner)
    return dead


@dataclass(frozen=True)
class RetryPolicy:
    """How long a whole batch is retried before the send pauses."""

    attempts: int = 6
    multiplier: float = 0.5  #: the first wait is up to this many seconds, doubling
    max_wait: float = 60.0

    def pause(self, tries: int) -> float:
        """Before sending recipients refused for now again: full jitter, doubling per try."""
        return random.uniform(0, min(self.max_wait, self.multiplier * 2**tries))

    def wait(self, state: RetryCallState) -> float:
        backoff = float(wait_random_exponential(multiplier=self.multiplier, max=self.max_wait)(state))
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after", None)
        return max(backoff, float(asked)) if asked else backoff


class RateLimiter:
    """A token bucket shared by the workers of a process: at most ``rate`` messages a second."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.capacity = max(burst, 1)
        self.tokens = float(self.capacity)
        self.updated = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self, n: int) -> None:
        if self.rate <= 0:
            return
        n = min(n, self.capacity)
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                wait = (n - self.tokens) / self.rate
            time.sleep(wait)


def verp_address(address: str, token: str) -> str:
    """``bounces@example.org`` and a token: ``bounces+TOKEN@example.org``."""
    local, _, domain = address.rpartition("@")
    return f"{local}+{token}@{domain}"


class Personaliser:
    """Each recipient's slot values and headers: the unsubscribe link, a fresh Message-ID.

    With ``bounce_address`` (``[bounces] address``, SMTP only), each message also gets a VERP
    envelope sender naming its delivery, and the ``mailto:`` of List-Unsubscribe becomes
    ``unsubscribe_address`` with a token of the delivery the same way (see ``tokens.py``).
    """

    def __init__(
        self,
        signer: TokenSigner,
        base_url: str,
        mailto: str,
        message_domain: str,
        *,
        bounce_address: str = "",
        unsubscribe_address: str = "",
    ) -> None:
        self.signer = signer
        self.base_url = base_url.rstrip("/")
        self.mailto = mailto
        self.domain = message_domain
        self.bounce_address = bounce_address
        self.unsubscribe_address = unsubscribe_address or bounce_address

    def recipients(
        self, send_id: int, claimed: Sequence[Claimed], *, test: bool = False
    ) -> list[Recipient]:
        """``test``: copies outside the ledger get random Message-IDs, so each one arrives."""
        out = []
        tag, domain = self.signer.install_tag, self.domain
        for row in claimed:
            url = f"{self.base_url}/u/{self.signer.unsubscribe_token(send_id, row.subscriber_id)}"
            if test:
                message_id = new_message_id(domain)
            else:
                message_id = delivery_message_id(send_id, row.delivery_id, tag, domain)
            mailto, envelope_from = self.mailto, ""
            if self.bounce_address and not test:
                sign = self.signer.verp_token
                envelope_from = verp_address(self.bounce_address, sign("b", send_id, row.delivery_id))
                mailto = verp_address(self.unsubscribe_address, sign("u", send_id, row.delivery_id))
            out.append(
                Recipient(
                    delivery_id=row.delivery_id,
                    email=row.email,
                    name=row.name,
                    values={"unsubscribe_url": url, "email": row.email, "name": row.name},
                    headers={
                        "Message-ID": message_id,
                        "List-Unsubscribe": list_unsubscribe(url, mailto),
                    },
                    envelope_from=envelope_from,
                )
            )
        return out


@dataclass
class RunReport:
    """What this run did (the ledger's counts are the whole truth; see ``Ledger.counts``)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    stopped: str | None = None  #: why the run ended early: "paused", "auth", "provider"
    error: str | None = None

    def add(self, recorded: Sequence[Recorded]) -> None:
        self.batches += 1
        self.outcomes.update(str(r.state) for r in recorded)


def _recorded(results: Sequence[Result], claimed: Sequence[Claimed], tries: int) -> list[Recorded]:
    """Map the adapter's answers to ledger states; a recipient it did not answer for is unknown.

    ``tries``: how often these recipients were handed to the provider in this claim, this time
    included; a recipient refused for now (``retry``) stays pending until it reaches
    ``MAX_ATTEMPTS``, then fails.
    """
    by_id = {r.delivery_id: r for r in results}
    out = []
    accepted, ACCEPTED = Outcome.ACCEPTED, DeliveryState.ACCEPTED
    for row in claimed:
        result = by_id.get(row.delivery_id)
        if result is not None and result.outcome is accepted:  # nearly all of them
            out.append(Recorded(row.delivery_id, ACCEPTED, result.message_id, None))
            continue
        attempts = row.attempts + tries
        if result is None:
            out.append(
                Recorded(row.delivery_id, DeliveryState.UNKNOWN, None, "the provider gave no answer")
            )
        elif result.outcome is Outcome.FAILED:
            out.append(Recorded(row.delivery_id, DeliveryState.FAILED, None, result.error or "refused"))
        elif result.outcome is Outcome.RETRY and attempts < MAX_ATTEMPTS:
            out.append(Recorded(row.delivery_id, DeliveryState.PENDING, None, result.error))
        elif result.outcome is Outcome.RETRY:
            error = f"gave up after {attempts} attempts: {result.error or 'refused for now'}"
            out.append(Recorded(row.delivery_id, DeliveryState.FAILED, None, error))
        else:
            out.append(Recorded(row.delivery_id, DeliveryState.UNKNOWN, result.message_id, result.error))
    return out


@dataclass
class _Run:
    engine: Engine
    send_id: int
    message: Outgoing
    make_adapter: Callable[[], Adapter]
    personaliser: Personaliser
    limiter: RateLimiter
    retry: RetryPolicy
    lease: dt.timedelta
    stop: threading.Event
    on_batch: Callable[[Sequence[Recorded]], None] | None
    report: RunReport
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self) -> None:
        owner = owner_name()
        adapter = self.make_adapter()
        prepared = False
        try:
            with writing(self.engine).connect() as conn:
                ledger = ledger_for(conn)
                while not self.stop.is_set():
                    with conn.begin():
                        batch = ledger.claim(self.send_id, adapter.max_batch, owner=owner, lease=self.lease)
                    if batch is None:
                        return
                    if not prepared:  # only with work in hand: a worker arriving after the end
                        adapter.prepare(self.message)  # would make the template again
                        prepared = True
                    self._batch(conn, ledger, adapter, owner, batch)
        finally:
            adapter.close()

    def _batch(self, conn: Any, ledger: Ledger, adapter: Adapter, owner: str, batch: Batch) -> None:
        """Send the claimed batch until every row has its outcome, then close the claim.

        Recipients the provider refused for now are sent again by this worker, after a pause,
        under the same claim (and with the same Message-ID) until they are taken or give up.
        """
        recipients = dict(
            zip(
                (row.delivery_id for row in batch.rows),
                self.personaliser.recipients(self.send_id, batch.rows),
                strict=True,
            )
        )
        rows = list(batch.rows)
        tries = 0
        while rows:
            tries += 1
            answers = self._send(
                conn, ledger, adapter, owner, batch, [recipients[r.delivery_id] for r in rows]
            )
            if answers is None:
                return
            recorded = _recorded(answers, rows, tries)
            again = {r.delivery_id for r in recorded if r.state is DeliveryState.PENDING}
            with conn.begin():
                if again:  # some are sent again: every answer on its row, the claim stays open
                    ledger.record(batch, recorded, owner=owner)
                else:  # the usual case: the batch recorded on its claim, only exceptions on rows
                    ledger.close_accepted(batch, recorded, owner=owner)
            final = [r for r in recorded if r.state is not DeliveryState.PENDING] if again else recorded
            with self.lock:
                self.report.add(final)
            if self.on_batch is not None:
                self.on_batch(final)
            if not again:
                return
            rows = [row for row in rows if row.delivery_id in again]
            if self.stop.wait(self.retry.pause(tries)):
                break  # stopping: the rows still pending go back with the claim
        with conn.begin():
            if rows:
                ledger.release(batch, owner=owner)
            else:
                ledger.close(batch, owner=owner)

    def _send(
        self,
        conn: Any,
        ledger: Ledger,
        adapter: Adapter,
        owner: str,
        batch: Batch,
        recipients: list[Recipient],
    ) -> list[Result] | None:
        """One request (retried as a whole on 429, 5xx, no connection); None if the run must halt."""
        self.limiter.acquire(len(recipients))

        def before_retry(state: RetryCallState) -> None:
            with conn.begin():
                ledger.renew(batch, owner=owner, lease=self.lease)

        try:
            answers: list[Result] = Retrying(
                retry=retry_if_exception_type(RetryableError),
                wait=self.retry.wait,
                stop=stop_after_attempt(self.retry.attempts),
                before_sleep=before_retry,
                reraise=True,
            )(adapter.send_batch, self.message, recipients)
        except AuthError as exc:
            self._halt(
                conn, ledger, owner, batch, SendState.STOPPED, "auth", f"the provider refused: {exc}"
            )
            return None
        except RetryableError as exc:
            message = f"the provider kept failing ({exc}); resume later with --resume"
            self._halt(conn, ledger, owner, batch, SendState.PAUSED, "provider", message)
            return None
        return answers

    def _halt(
        self, conn: Any, ledger: Ledger, owner: str, batch: Batch, state: SendState, why: str, error: str
    ) -> None:
        """Hand the batch back (its rows still pending were not sent) and stop every worker."""
        with conn.begin():
            ledger.release(batch, owner=owner)
            ledger.set_state(self.send_id, state, error=error, only_from=[SendState.SENDING])
        with self.lock:
            if self.report.stopped is None:
                self.report.stopped, self.report.error = why, error
        self.stop.set()


def run_send(
    engine: Engine,
    send_id: int,
    message: Outgoing,
    make_adapter: Callable[[], Adapter],
    personaliser: Personaliser,
    *,
    workers: int = 1,
    rate: float = 0.0,
    retry: RetryPolicy | None = None,
    lease: dt.timedelta = dt.timedelta(minutes=10),
    stop: threading.Event | None = None,
    on_batch: Callable[[Sequence[Recorded]], None] | None = None,
    batch_size: int | None = None,
) -> RunReport:
    """Send every pending delivery of ``send_id``; return when none is left or the run stops.

    ``stop`` set from outside (Ctrl-C) lets the batches in flight finish and pauses the send.
    """
    stop = stop or threading.Event()
    report = RunReport()
    probe = make_adapter()
    burst = probe.max_batch
    probe.close()
    if batch_size:
        make_adapter = _capped(make_adapter, batch_size)
        burst = min(burst, batch_size)
    with writing(engine).begin() as conn:
        ledger = ledger_for(conn)
        _expire_dead(ledger, send_id)
    run = _Run(
        engine,
        send_id,
        message,
        make_adapter,
        personaliser,
        RateLimiter(rate, burst),
        retry or RetryPolicy(),
        lease,
        stop,
        on_batch,
        report,
    )
    if workers <= 1:
        run.worker()
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="newsletter-send") as pool:
            for future in [pool.submit(run.worker) for _ in range(workers)]:
                future.result()
    finished = False
    with writing(engine).begin() as conn:
        ledger = ledger_for(conn)
        if report.stopped is None and stop.is_set():
            report.stopped = "paused"
            ledger.set_state(
                send_id, SendState.PAUSED, error="paused by the editor", only_from=[SendState.SENDING]
            )
        elif report.stopped is None:
            _expire_dead(ledger, send_id)
            finished = ledger.finish_if_done(send_id)
    if finished:  # only the worker that finished the send cleans up after it
        adapter = make_adapter()
        try:
            adapter.finish(message)
        except ESPError as exc:
            report.error = f"finished, but the provider kept what the send made there: {exc}"
        finally:
            adapter.close()
    return report


def _expire_dead(ledger: Ledger, send_id: int) -> None:
    """Rows in flight by a process of this host that died, or whose lease ran out: ``unknown``."""
    ledger.expire(send_id, dead_local_owners(ledger.lease_owners(send_id)))


def _capped(make_adapter: Callable[[], Adapter], size: int) -> Callable[[], Adapter]:
    def make() -> Adapter:
        adapter = make_adapter()
        adapter.max_batch = min(adapter.max_batch, size)
        return adapter

    return make
