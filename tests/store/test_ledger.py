"""The send ledger on both databases: snapshot, claim, record, leases, counts."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.store.ledger import Ledger, Outcome, ledger_for
from newsletter.store.models import (
    Delivery,
    DeliveryState,
    SendState,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import SubscriberRepository

DAY = dt.date(2026, 11, 27)
LEASE = dt.timedelta(minutes=5)


def _subscribers(
    repo: SubscriberRepository, session: Session, n: int, tags: list[str] | None = None
) -> list[int]:
    ids = [repo.add(f"reader{i}@example.org", name=f"Reader {i}", tags=tags or []).id for i in range(n)]
    session.commit()
    return ids


def _send(ledger: Ledger, segment: str = "") -> int:
    send = ledger.create_send(
        issue_file="issues/2026-11-27.yaml",
        issue_date=DAY,
        segment=segment,
        subject="Subject",
        content_hash="0" * 64,
        provider="outbox",
    )
    return send.id


def test_snapshot_takes_active_unsuppressed_subscribers_once(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    ids = _subscribers(repo, session, 5)
    repo.add("pending@example.org", status=SubscriberStatus.PENDING)
    repo.unsubscribe("reader0@example.org")
    # A suppression added by a path that did not change the status (e.g. a webhook) is honoured too.
    session.add(Suppression(address_hash=address_hash("reader1@example.org"), reason="bounced"))
    session.commit()
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert ledger.audience_count("") == 3
        send_id = _send(ledger)
        send = ledger.get_send(send_id)
    assert send.recipients == 3 and send.state is SendState.SENDING and send.started_at is not None
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.subscriber_id, Delivery.state).order_by(Delivery.id)).all()
    assert [r[0] for r in rows] == ids[2:]
    assert {r[1] for r in rows} == {DeliveryState.PENDING}
    # A later sign-up does not join the running send.
    repo.add("late@example.org")
    session.commit()
    with engine.connect() as conn:
        assert ledger_for(conn).counts(send_id).total == 3


def test_one_send_per_issue_and_segment(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 2, tags=["press"])
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        _send(ledger)
        press = _send(ledger, "tag:press")
        assert ledger.get_send(press).recipients == 2
        assert ledger.find_send(DAY, "tag:press") is not None
        assert ledger.find_send(DAY, "tag:other") is None
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _send(ledger_for(conn))


def test_claim_takes_pending_rows_in_order_under_a_lease(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 5)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        first = ledger_for(conn).claim(send_id, 3, owner="w1", lease=LEASE)
    with engine.begin() as conn:
        second = ledger_for(conn).claim(send_id, 3, owner="w2", lease=LEASE)
        third = ledger_for(conn).claim(send_id, 3, owner="w2", lease=LEASE)
    assert [c.email for c in first] == [f"reader{i}@example.org" for i in range(3)]
    assert [c.email for c in second] == ["reader3@example.org", "reader4@example.org"]
    assert third == []
    assert all(c.attempts == 1 and c.name.startswith("Reader") for c in first + second)
    with engine.connect() as conn:
        owners = dict(conn.execute(select(Delivery.id, Delivery.lease_owner)).all())
        counts = ledger_for(conn).counts(send_id)
    assert [owners[c.delivery_id] for c in first] == ["w1"] * 3
    assert counts.by_state["sending"] == 5 and counts.open == 5


def test_suppression_mid_send_is_honoured_at_claim(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 4)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    repo.unsubscribe("reader0@example.org")
    repo.forget("reader1@example.org")
    session.add(Suppression(address_hash=address_hash("reader2@example.org"), reason="complained"))
    session.commit()
    with engine.begin() as conn:
        claimed = ledger_for(conn).claim(send_id, 10, owner="w", lease=LEASE)
    assert [c.email for c in claimed] == ["reader3@example.org"]
    with engine.connect() as conn:
        counts = ledger_for(conn).counts(send_id)
    assert counts.by_state["suppressed"] == 3 and counts.by_state["sending"] == 1


def test_record_writes_each_outcome_only_for_the_lease_owner(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 4)
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        send_id = _send(ledger)
    with engine.begin() as conn:
        claimed = ledger_for(conn).claim(send_id, 4, owner="w", lease=LEASE)
    a, b, c, d = (row.delivery_id for row in claimed)
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        changed = ledger.record(
            [
                Outcome(a, DeliveryState.ACCEPTED, "pm-1"),
                Outcome(b, DeliveryState.FAILED, None, "406 inactive recipient"),
                Outcome(c, DeliveryState.PENDING, None, "rate limited"),
            ],
            owner="w",
        )
        assert changed == 3
        assert ledger.record([Outcome(d, DeliveryState.ACCEPTED, "pm-x")], owner="somebody else") == 0
    with engine.connect() as conn:
        rows = {
            r.id: r
            for r in conn.execute(
                select(
                    Delivery.id,
                    Delivery.state,
                    Delivery.provider_message_id,
                    Delivery.error,
                    Delivery.lease_owner,
                )
            )
        }
        counts = ledger_for(conn).counts(send_id)
    assert rows[a].state is DeliveryState.ACCEPTED and rows[a].provider_message_id == "pm-1"
    assert rows[a].lease_owner is None
    assert rows[b].state is DeliveryState.FAILED and rows[b].error == "406 inactive recipient"
    assert rows[c].state is DeliveryState.PENDING
    assert rows[d].state is DeliveryState.SENDING and rows[d].lease_owner == "w"
    assert counts.failed_by_reason == {"406 inactive recipient": 1}
    with engine.begin() as conn:  # the retried row is claimed again, its attempts counted
        again = ledger_for(conn).claim(send_id, 4, owner="w", lease=LEASE)
    assert [(r.delivery_id, r.attempts) for r in again] == [(c, 2)]


def test_expired_leases_and_dead_owners_become_unknown_and_retry_unknown_reopens(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 3)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        ledger.claim(send_id, 1, owner="expired", lease=LEASE)
        ledger.claim(send_id, 1, owner="dead", lease=LEASE)
        alive = ledger.claim(send_id, 1, owner="alive", lease=LEASE)
        conn.execute(
            update(Delivery)
            .where(Delivery.lease_owner == "expired")
            .values(lease_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert sorted(ledger.lease_owners(send_id)) == ["alive", "dead", "expired"]
        assert ledger.expire_leases(send_id) == 1
        assert ledger.expire_owners(send_id, ["dead"]) == 1
        assert not ledger.finish_if_done(send_id)  # "alive" still holds a row
        unknown = ledger.unknown_recipients(send_id)
    assert [email for _, email, _ in unknown] == ["reader0@example.org", "reader1@example.org"]
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        ledger.record([Outcome(alive[0].delivery_id, DeliveryState.ACCEPTED, "id")], owner="alive")
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert ledger.finish_if_done(send_id)
        assert ledger.get_send(send_id).state is SendState.FINISHED
        assert ledger.retry_unknown(send_id) == 2
        assert ledger.counts(send_id).by_state["pending"] == 2


def test_release_hands_rows_back_untouched(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 2)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        ids = [c.delivery_id for c in ledger_for(conn).claim(send_id, 2, owner="w", lease=LEASE)]
    with engine.begin() as conn:
        ledger_for(conn).release(ids, owner="w")
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.state, Delivery.attempts, Delivery.lease_owner)).all()
    assert rows == [(DeliveryState.PENDING, 0, None)] * 2


def test_forget_leaves_the_ledger_without_the_person(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 1)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    repo.forget("reader0@example.org")
    session.commit()
    with engine.connect() as conn:
        assert conn.execute(select(Delivery.subscriber_id)).scalar_one() is None
        assert conn.execute(select(Subscriber.id)).first() is None
        assert ledger_for(conn).counts(send_id).total == 1
