"""The send loop against a scripted adapter, on both databases: every answer an ESP can give."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from newsletter.delivery.engine import Personaliser, RetryPolicy, run_send
from newsletter.delivery.esp.base import (
    AuthError,
    Outcome,
    Outgoing,
    Recipient,
    Result,
    RetryableError,
)
from newsletter.delivery.esp.outbox import OutboxAdapter
from newsletter.delivery.tokens import TokenSigner
from newsletter.store.ledger import ledger_for
from newsletter.store.models import DeliveryState, SendState
from newsletter.store.subscribers import SubscriberRepository

FAST = RetryPolicy(attempts=3, multiplier=0.001, max_wait=0.01)
SIGNER = TokenSigner("test-secret-key-0123456789")


def _message(send_id: int) -> Outgoing:
    return Outgoing(
        send_id=send_id,
        key="k" * 64,
        subject="The weekly brief",
        html="<p>Hello %%name%%</p><a href='%%unsubscribe_url%%'>Unsubscribe</a>",
        text="Hello %%name%%\nUnsubscribe: %%unsubscribe_url%%",
        from_address="news@example.org",
        from_name="The Weekly Brief",
        reply_to="editors@example.org",
        list_id="weekly.example.org",
        headers={
            "List-Id": "The Weekly Brief <weekly.example.org>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    )


PERSONALISER = Personaliser(SIGNER, "https://news.example.org", "unsubscribe@example.org", "example.org")


class Scripted:
    """An adapter whose answers the test decides, batch by batch; it keeps what it was given."""

    name = "scripted"

    def __init__(
        self, script: Callable[[int, Sequence[Recipient]], list[Result]], max_batch: int = 2
    ) -> None:
        self.script = script
        self.max_batch = max_batch
        self.calls: list[list[str]] = []
        self.finished: list[int] = []

    def prepare(self, message: Outgoing) -> None:
        pass

    def finish(self, message: Outgoing) -> None:
        self.finished.append(message.send_id)

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        self.calls.append([r.email for r in recipients])
        return self.script(len(self.calls), recipients)

    def close(self) -> None:
        pass


def accept(_: int, recipients: Sequence[Recipient]) -> list[Result]:
    return [Result(r.delivery_id, Outcome.ACCEPTED, f"id-{r.email}") for r in recipients]


@pytest.fixture
def send_id(engine: Engine, repo: SubscriberRepository, session: Session) -> int:
    for i in range(5):
        repo.add(f"reader{i}@example.org", name=f"Reader {i}")
    session.commit()
    with engine.begin() as conn:
        return (
            ledger_for(conn)
            .create_send(
                issue_file="issues/2026-11-27.yaml",
                issue_date=dt.date(2026, 11, 27),
                segment="",
                subject="The weekly brief",
                content_hash="k" * 64,
                provider="scripted",
            )
            .id
        )


def _states(engine: Engine) -> dict[str, str]:

    with engine.connect() as conn:
        rows = ledger_for(conn).deliveries()
    return {r.email: str(r.state) for r in rows if r.email}


def _run(engine: Engine, send_id: int, adapter: Scripted, **kwargs: object):  # type: ignore[no-untyped-def]
    return run_send(engine, send_id, _message(send_id), lambda: adapter, PERSONALISER, retry=FAST, **kwargs)  # type: ignore[arg-type]


def test_every_recipient_once_in_provider_sized_batches(engine: Engine, send_id: int) -> None:
    adapter = Scripted(accept)
    report = _run(engine, send_id, adapter)
    assert adapter.calls == [
        ["reader0@example.org", "reader1@example.org"],
        ["reader2@example.org", "reader3@example.org"],
        ["reader4@example.org"],
    ]
    assert report.outcomes == {"accepted": 5} and report.stopped is None
    assert adapter.finished == [send_id]  # what prepare made at the provider is dropped, once
    with engine.connect() as conn:
        ledger = ledger_for(conn)
        assert ledger.get_send(send_id).state is SendState.FINISHED
        ids = {r.delivery_id: r.message_id for r in ledger.deliveries(send_id)}
    assert sorted(ids.values()) == [f"id-reader{i}@example.org" for i in range(5)]
    # Running again finds nothing to do: nobody gets it twice.
    again = Scripted(accept)
    _run(engine, send_id, again)
    assert again.calls == []


def test_personalised_values_and_headers(engine: Engine, send_id: int) -> None:
    seen: list[Recipient] = []

    def keep(_: int, recipients: Sequence[Recipient]) -> list[Result]:
        seen.extend(recipients)
        return accept(_, recipients)

    _run(engine, send_id, Scripted(keep))
    first = seen[0]
    token = first.values["unsubscribe_url"].rsplit("/u/", 1)[1]
    assert SIGNER.read_unsubscribe_token(token)[0] == send_id
    assert first.values["name"] == "Reader 0" and first.values["email"] == "reader0@example.org"
    assert first.headers["List-Unsubscribe"] == (
        f"<{first.values['unsubscribe_url']}>, <mailto:unsubscribe@example.org?subject=unsubscribe>"
    )
    assert len({r.message_id for r in seen}) == 5 and all(
        r.message_id.endswith("@example.org>") for r in seen
    )


def test_per_recipient_failures_and_retries(engine: Engine, send_id: int) -> None:
    def mixed(call: int, recipients: Sequence[Recipient]) -> list[Result]:
        out = []
        for r in recipients:
            if r.email == "reader1@example.org":
                out.append(Result(r.delivery_id, Outcome.FAILED, error="406 inactive recipient"))
            elif r.email == "reader2@example.org" and call == 2:
                out.append(Result(r.delivery_id, Outcome.RETRY, error="slow down"))
            elif r.email == "reader3@example.org":
                continue  # the provider said nothing about this one
            else:
                out.append(Result(r.delivery_id, Outcome.ACCEPTED, "x"))
        return out

    adapter = Scripted(mixed)
    _run(engine, send_id, adapter)
    assert _states(engine) == {
        "reader0@example.org": "accepted",
        "reader1@example.org": "failed",
        "reader2@example.org": "accepted",  # retried in a later batch
        "reader3@example.org": "unknown",
        "reader4@example.org": "accepted",
    }
    assert sum(batch.count("reader2@example.org") for batch in adapter.calls) == 2
    with engine.connect() as conn:
        counts = ledger_for(conn).counts(send_id)
    assert counts.failed_by_reason == {"406 inactive recipient": 1}


def test_a_recipient_refused_for_now_gives_up_after_max_attempts(engine: Engine, send_id: int) -> None:
    def never(_: int, recipients: Sequence[Recipient]) -> list[Result]:
        return [
            Result(r.delivery_id, Outcome.RETRY, error="mailbox busy")
            if r.email == "reader0@example.org"
            else Result(r.delivery_id, Outcome.ACCEPTED, "x")
            for r in recipients
        ]

    adapter = Scripted(never)
    _run(engine, send_id, adapter)
    assert _states(engine)["reader0@example.org"] == "failed"
    assert sum(batch.count("reader0@example.org") for batch in adapter.calls) == 5
    with engine.connect() as conn:
        reasons = ledger_for(conn).counts(send_id).failed_by_reason
    assert reasons == {"gave up after 5 attempts: mailbox busy": 1}


def test_whole_batch_errors_are_retried_with_backoff(engine: Engine, send_id: int) -> None:
    def flaky(call: int, recipients: Sequence[Recipient]) -> list[Result]:
        if call in (1, 2):
            raise RetryableError("503 service unavailable", retry_after=0.01)
        return accept(call, recipients)

    adapter = Scripted(flaky)
    report = _run(engine, send_id, adapter)
    assert report.outcomes == {"accepted": 5}
    assert adapter.calls[0] == adapter.calls[1] == adapter.calls[2]  # the same batch, three times


def test_provider_down_pauses_the_send_and_resume_finishes(engine: Engine, send_id: int) -> None:
    def down(call: int, recipients: Sequence[Recipient]) -> list[Result]:
        if call >= 2:
            raise RetryableError("500 internal server error")
        return accept(call, recipients)

    report = _run(engine, send_id, Scripted(down))
    assert report.stopped == "provider" and "500 internal server error" in (report.error or "")
    with engine.connect() as conn:
        ledger = ledger_for(conn)
        send = ledger.get_send(send_id)
        counts = ledger.counts(send_id)
    assert send.state is SendState.PAUSED and "--resume" in (send.error or "")
    assert counts.by_state == {**counts.by_state, "accepted": 2, "pending": 3, "sending": 0}
    with engine.begin() as conn:
        ledger_for(conn).set_state(send_id, SendState.SENDING)
    _run(engine, send_id, Scripted(accept))
    assert set(_states(engine).values()) == {"accepted"}


def test_auth_error_stops_the_send_with_nothing_lost(engine: Engine, send_id: int) -> None:
    def refused(call: int, recipients: Sequence[Recipient]) -> list[Result]:
        raise AuthError("401 invalid server token")

    adapter = Scripted(refused)
    report = _run(engine, send_id, adapter)
    assert report.stopped == "auth" and len(adapter.calls) == 1  # not retried
    with engine.connect() as conn:
        ledger = ledger_for(conn)
        send = ledger.get_send(send_id)
        rows = [(r.state, r.attempts) for r in ledger.deliveries(send_id)]
    assert send.state is SendState.STOPPED and "401" in (send.error or "")
    assert rows == [(DeliveryState.PENDING, 0)] * 5


def test_stop_finishes_the_batch_in_flight_then_pauses(engine: Engine, send_id: int) -> None:
    stop = threading.Event()

    def then_stop(call: int, recipients: Sequence[Recipient]) -> list[Result]:
        stop.set()  # Ctrl-C arrives while this batch is with the provider
        return accept(call, recipients)

    adapter = Scripted(then_stop)
    report = _run(engine, send_id, adapter, stop=stop)
    assert report.stopped == "paused" and report.outcomes == {"accepted": 2}
    assert adapter.finished == []  # a paused send keeps its template for the resume
    with engine.connect() as conn:
        ledger = ledger_for(conn)
        assert ledger.get_send(send_id).state is SendState.PAUSED
        assert ledger.counts(send_id).by_state["pending"] == 3


def test_workers_in_threads_share_one_send(engine: Engine, send_id: int) -> None:
    lock = threading.Lock()
    sent: list[str] = []

    def record(call: int, recipients: Sequence[Recipient]) -> list[Result]:
        with lock:
            sent.extend(r.email for r in recipients)
        return accept(call, recipients)

    adapters: list[Scripted] = []

    def make() -> Scripted:
        adapters.append(Scripted(record, max_batch=1))
        return adapters[-1]

    run_send(engine, send_id, _message(send_id), make, PERSONALISER, workers=3, retry=FAST)  # type: ignore[arg-type]
    assert sorted(sent) == [f"reader{i}@example.org" for i in range(5)]


def test_outbox_writes_one_parseable_message_per_recipient(
    engine: Engine, send_id: int, tmp_path: Path
) -> None:
    report = run_send(engine, send_id, _message(send_id), lambda: OutboxAdapter(tmp_path), PERSONALISER)
    assert report.outcomes == {"accepted": 5}
    files = sorted((tmp_path / str(send_id)).glob("*.eml"))
    assert len(files) == 5 and not list((tmp_path / str(send_id)).glob(".*"))
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.strict)
    assert message["To"] is not None and message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "Hello Reader" in html and "https://news.example.org/u/" in html


def test_a_resent_unknown_delivery_keeps_its_message_id(engine: Engine, send_id: int) -> None:
    first: dict[int, str] = {}
    second: dict[int, str] = {}

    def unknown(_: int, recipients: Sequence[Recipient]) -> list[Result]:
        first.update((r.delivery_id, r.message_id) for r in recipients)
        return [Result(r.delivery_id, Outcome.UNKNOWN, error="read timeout") for r in recipients]

    def keep(_: int, recipients: Sequence[Recipient]) -> list[Result]:
        second.update((r.delivery_id, r.message_id) for r in recipients)
        return accept(_, recipients)

    _run(engine, send_id, Scripted(unknown))
    assert set(_states(engine).values()) == {"unknown"}
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert ledger.get_send(send_id).state is SendState.FINISHED  # finished, with unknowns listed
        assert ledger.retry_unknown(send_id) == 5
        ledger.set_state(send_id, SendState.SENDING)
    _run(engine, send_id, Scripted(keep))
    assert second == first  # mailbox providers deduplicate a resend on its Message-ID
