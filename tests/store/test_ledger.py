"""The send ledger on both databases: snapshot, claim, record, leases, counts."""

from __future__ import annotations

import datetime as dt
import itertools
import threading

import pytest
from sqlalchemy import Connection, Engine, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.store.ledger import CUT_AHEAD, Batch, Ledger, Outcome, ledger_for
from newsletter.store.models import (
    BatchMessageIds,
    Claim,
    ClaimState,
    Delivery,
    DeliveryState,
    Send,
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


def test_one_send_per_issue_and_segment(engine: Engine, repo: SubscriberRepository, session: Session) -> None:
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


def test_claims_take_disjoint_ranges_in_order_under_a_lease(
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
    assert first is not None and second is not None and third is None
    assert [c.email for c in first.rows] == [f"reader{i}@example.org" for i in range(3)]
    assert [c.email for c in second.rows] == ["reader3@example.org", "reader4@example.org"]
    assert all(c.attempts == 0 and c.name.startswith("Reader") for c in first.rows + second.rows)
    with engine.connect() as conn:
        claims = conn.execute(select(Claim.after_id, Claim.through_id, Claim.owner, Claim.state)).all()
        counts = ledger_for(conn).counts(send_id)
        stored = {str(state) for state in conn.execute(select(Delivery.state)).scalars()}
    ids = [c.delivery_id for c in first.rows + second.rows]
    assert [(c.after_id < min(ids), c.owner, str(c.state)) for c in claims] == [
        (True, "w1", "open"),
        (False, "w2", "open"),
    ]
    assert claims[0].through_id == claims[1].after_id == first.rows[-1].delivery_id
    # In flight is reported from the open claims; no delivery row was written to claim it.
    assert counts.by_state["sending"] == 5 and counts.by_state["pending"] == 0 and counts.open == 5
    assert stored == {"pending"}


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
        batch = ledger_for(conn).claim(send_id, 10, owner="w", lease=LEASE)
    assert batch is not None and [c.email for c in batch.rows] == ["reader3@example.org"]
    with engine.connect() as conn:
        counts = ledger_for(conn).counts(send_id)
    assert counts.by_state["suppressed"] == 3 and counts.by_state["sending"] == 1


def _suppress_directly(engine: Engine, *addresses: str) -> None:
    """Suppress as a provider webhook or an operator's SQL might: one row in ``suppressions``,
    nothing else, so the subscriber stays ``active`` and only the stored hash can exclude them."""
    with engine.begin() as conn:
        for address in addresses:
            conn.execute(
                text("INSERT INTO suppressions (address_hash, reason) VALUES (:h, 'bounced')"),
                {"h": address_hash(address)},
            )


def test_a_suppression_alone_excludes_an_active_subscriber_from_count_snapshot_and_claim(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    """The send matches ``suppressions`` against the hash stored on each subscriber.

    Non-ASCII addresses too: the stored hash, Python's ``address_hash`` and the suppression agree.
    """
    ids = _subscribers(repo, session, 4)
    zoe = repo.add("Zoë@Example.org").id
    session.commit()
    _suppress_directly(engine, "reader0@example.org", "zoë@example.org")
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert ledger.audience_count("") == 3
        send_id = _send(ledger)
    with engine.connect() as conn:
        snapshot = set(conn.execute(select(Delivery.subscriber_id)).scalars())
        statuses = set(conn.execute(select(Subscriber.status)).scalars())
    assert snapshot == set(ids[1:]) and zoe not in snapshot
    assert statuses == {SubscriberStatus.ACTIVE}  # nothing but the suppression excluded them
    # Suppressed after the snapshot: the next claim marks the row suppressed instead of sending it.
    _suppress_directly(engine, "reader2@example.org")
    with engine.begin() as conn:
        batch = ledger_for(conn).claim(send_id, 10, owner="w", lease=LEASE)
    assert batch is not None
    assert [c.email for c in batch.rows] == ["reader1@example.org", "reader3@example.org"]
    with engine.connect() as conn:
        suppressed = conn.execute(
            select(Delivery.subscriber_id).where(Delivery.state == DeliveryState.SUPPRESSED)
        ).scalar_one()
        assert ledger_for(conn).audience_count("") == 2
    assert suppressed == ids[2]


def test_record_writes_each_outcome_only_while_the_claim_is_the_owners(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 4)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        batch = ledger_for(conn).claim(send_id, 4, owner="w", lease=LEASE)
    assert batch is not None
    a, b, c, d = (row.delivery_id for row in batch.rows)
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        changed = ledger.record(
            batch,
            [
                Outcome(a, DeliveryState.ACCEPTED, "pm-1"),
                Outcome(b, DeliveryState.FAILED, None, "406 inactive recipient"),
                Outcome(c, DeliveryState.PENDING, None, "rate limited"),
            ],
            owner="w",
        )
        assert changed == 3
        assert ledger.record(batch, [Outcome(d, DeliveryState.ACCEPTED, "x")], owner="somebody else") == 0
        assert ledger.record(batch, [Outcome(a, DeliveryState.FAILED, None, "late")], owner="w") == 0
    with engine.connect() as conn:
        rows = {r.delivery_id: r for r in ledger_for(conn).deliveries(send_id)}
        counts = ledger_for(conn).counts(send_id)
    assert rows[a].state is DeliveryState.ACCEPTED and rows[a].message_id == "pm-1"
    assert rows[b].state is DeliveryState.FAILED and rows[b].error == "406 inactive recipient"
    assert rows[c].state is DeliveryState.SENDING and rows[c].attempts == 1  # refused for now: tried once
    assert rows[d].state is DeliveryState.SENDING and rows[d].attempts == 0  # in the open claim
    assert counts.failed_by_reason == {"406 inactive recipient": 1}
    assert counts.by_state["sending"] == 2  # c and d, still in the open claim
    with engine.begin() as conn:  # a closed claim accepts no more outcomes
        ledger = ledger_for(conn)
        ledger.record(
            batch,
            [Outcome(d, DeliveryState.ACCEPTED, "x"), Outcome(c, DeliveryState.ACCEPTED, "y")],
            owner="w",
        )
        ledger.close(batch, owner="w")
        assert ledger.record(batch, [Outcome(d, DeliveryState.FAILED, None, "x")], owner="w") == 0
        assert ledger.finish_if_done(send_id)


def test_expired_and_dead_claims_leave_unknowns_and_retry_unknown_hands_them_out_again(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 3)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        expired = ledger.claim(send_id, 1, owner="expired", lease=LEASE)
        dead = ledger.claim(send_id, 1, owner="dead", lease=LEASE)
        alive = ledger.claim(send_id, 1, owner="alive", lease=LEASE)
        assert expired and dead and alive
        conn.execute(
            update(Claim)
            .where(Claim.owner == "expired")
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert sorted(ledger.lease_owners(send_id)) == ["alive", "dead", "expired"]
        assert ledger.expire(send_id, ["dead"]) == 2
        assert ledger.lease_owners(send_id) == ["alive"]
        assert not ledger.finish_if_done(send_id)  # "alive" still holds a claim
        unknown = ledger.unknown_recipients(send_id)
        # The dead worker's late answer changes nothing: its claim is no longer its own.
        assert (
            ledger.record(
                dead, [Outcome(dead.rows[0].delivery_id, DeliveryState.ACCEPTED, "x")], owner="dead"
            )
            == 0
        )
    assert [email for _, email, _ in unknown] == ["reader0@example.org", "reader1@example.org"]
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        ledger.record(
            alive, [Outcome(alive.rows[0].delivery_id, DeliveryState.ACCEPTED, "id")], owner="alive"
        )
        ledger.close(alive, owner="alive")
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert ledger.finish_if_done(send_id)
        assert ledger.get_send(send_id).state is SendState.FINISHED
        assert ledger.retry_unknown(send_id) == 2
        ledger.set_state(send_id, SendState.SENDING)
    with engine.begin() as conn:  # both claims are handed out again; the accepted row is not
        ledger = ledger_for(conn)
        again = [ledger.claim(send_id, 5, owner="w", lease=LEASE) for _ in range(3)]
    assert [[r.email for r in b.rows] if b else None for b in again] == [
        ["reader0@example.org"],
        ["reader1@example.org"],
        None,
    ]


def test_release_hands_the_unsent_rows_to_the_next_claim(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 3)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        batch = ledger_for(conn).claim(send_id, 3, owner="w", lease=LEASE)
    assert batch is not None
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        ledger.record(batch, [Outcome(batch.rows[0].delivery_id, DeliveryState.ACCEPTED, "x")], owner="w")
        ledger.release(batch, owner="w")
    with engine.begin() as conn:
        taken = ledger_for(conn).claim(send_id, 3, owner="v", lease=LEASE)
    assert taken is not None and taken.claim_id == batch.claim_id
    assert [r.email for r in taken.rows] == ["reader1@example.org", "reader2@example.org"]


def test_a_released_claim_is_taken_with_its_rows_still_to_send_and_its_suppressed_ones_recorded(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    """On PostgreSQL one statement takes a released claim and reads its rows: the same answer."""
    send_id, batch = _claimed(engine, repo, session, 4)
    first, second, third, fourth = (r.delivery_id for r in batch.rows)
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        ledger.record(batch, [Outcome(first, DeliveryState.ACCEPTED, "x")], owner="w")
        ledger.release(batch, owner="w")
    _suppress_directly(engine, "reader2@example.org")
    with engine.begin() as conn:
        taken = ledger_for(conn).claim(send_id, 4, owner="v", lease=LEASE)
    assert taken is not None and taken.claim_id == batch.claim_id
    assert [(r.delivery_id, r.email, r.name) for r in taken.rows] == [
        (second, "reader1@example.org", "Reader 1"),
        (fourth, "reader3@example.org", "Reader 3"),
    ]
    with engine.connect() as conn:
        states = {r.delivery_id: r.state for r in ledger_for(conn).deliveries(send_id)}
    assert states[third] is DeliveryState.SUPPRESSED and states[second] is DeliveryState.SENDING
    # A released claim with nothing left to send is taken empty, and then nothing is left.
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        failed = [Outcome(i, DeliveryState.FAILED, None, "refused") for i in (second, fourth)]
        ledger.record(taken, failed, owner="v")
        ledger.release(taken, owner="v")
    with engine.begin() as conn:
        empty = ledger_for(conn).claim(send_id, 4, owner="x", lease=LEASE)
    assert empty is not None and empty.claim_id == batch.claim_id and empty.rows == []
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        ledger.close(empty, owner="x")
        assert ledger.claim(send_id, 4, owner="x", lease=LEASE) is None


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_claim_commits_durably_and_outcomes_lazily(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    """A claim must be on disk before its batch is sent (lost, its rows would be sent again);
    an outcome lost in a server crash leaves its claim open, to expire into ``unknown``. A claim
    that records suppressed rows in its own transaction stays durable."""
    _subscribers(repo, session, 3)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    _suppress_directly(engine, "reader0@example.org")

    def synchronous(conn: Connection) -> str:
        return str(conn.exec_driver_sql("SELECT current_setting('synchronous_commit')").scalar_one())

    with engine.begin() as conn:
        batch = ledger_for(conn).claim(send_id, 2, owner="w", lease=LEASE)
        assert synchronous(conn) == "on"
    assert batch is not None and len(batch.rows) == 1
    with engine.begin() as conn:
        ledger_for(conn).record(batch, [Outcome(batch.rows[0].delivery_id, DeliveryState.PENDING)], owner="w")
        assert synchronous(conn) == "off"
    with engine.begin() as conn:
        accepted = [Outcome(r.delivery_id, DeliveryState.ACCEPTED, "pm") for r in batch.rows]
        assert ledger_for(conn).close_accepted(batch, accepted, owner="w")
        assert synchronous(conn) == "off"
    with engine.begin() as conn:
        assert synchronous(conn) == "on"
        released = ledger_for(conn).claim(send_id, 2, owner="w", lease=LEASE)
        assert released is not None and synchronous(conn) == "on"


def test_one_turn_on_the_cursor_cuts_ranges_ahead_and_a_smaller_batch_splits_them(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 2 * CUT_AHEAD + 3)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        first = ledger_for(conn).claim(send_id, 2, owner="w1", lease=LEASE)
    assert first is not None and len(first.rows) == 2
    with engine.connect() as conn:
        claims = conn.execute(
            select(Claim.id, Claim.after_id, Claim.through_id, Claim.owner, Claim.state).order_by(Claim.id)
        ).all()
        cursor = conn.execute(text("SELECT claimed_through FROM sends")).scalar_one()
        counts = ledger_for(conn).counts(send_id)
    # One claim for this worker, the next ones handed out without the cursor; contiguous ranges.
    assert [(c.owner, str(c.state)) for c in claims] == [("w1", "open")] + [(None, "released")] * (
        CUT_AHEAD - 1
    )
    assert all(a.through_id == b.after_id for a, b in itertools.pairwise(claims))
    assert cursor == claims[-1].through_id
    assert counts.by_state["sending"] == 2 and counts.by_state["pending"] == 2 * CUT_AHEAD + 1
    # A worker with batches of one takes the next cut range, and the rest of it stays handed out.
    with engine.begin() as conn:
        single = ledger_for(conn).claim(send_id, 1, owner="w2", lease=LEASE)
    assert single is not None and len(single.rows) == 1 and single.claim_id == claims[1].id
    with engine.connect() as conn:
        split = conn.execute(select(Claim.after_id, Claim.through_id, Claim.state).order_by(Claim.id)).all()
    assert (split[1].after_id, split[1].through_id) == (claims[1].after_id, single.rows[0].delivery_id)
    assert (split[-1].after_id, split[-1].through_id) == (single.rows[0].delivery_id, claims[1].through_id)
    assert str(split[-1].state) == "released"
    # Whoever claims next, and with what batch size, every recipient is claimed exactly once.
    taken = [r.delivery_id for r in first.rows + single.rows]
    size = 3
    while True:
        with engine.begin() as conn:
            batch = ledger_for(conn).claim(send_id, size, owner=f"w{size}", lease=LEASE)
        if batch is None:
            break
        assert 1 <= len(batch.rows) <= size
        taken += [r.delivery_id for r in batch.rows]
        size = 1 + size % 3
    with engine.connect() as conn:
        every = conn.execute(select(Delivery.id).order_by(Delivery.id)).scalars().all()
    assert sorted(taken) == every


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_concurrent_claims_never_overlap(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    _subscribers(repo, session, 60)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    taken: list[int] = []
    lock = threading.Lock()

    def work(owner: str) -> None:
        with engine.connect() as conn:
            ledger = ledger_for(conn)
            while True:
                with conn.begin():
                    batch = ledger.claim(send_id, 3, owner=owner, lease=LEASE)
                if batch is None:
                    return
                with lock:
                    taken.extend(r.delivery_id for r in batch.rows)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 60 and len(set(taken)) == 60


def test_a_send_reads_its_own_range_of_ids_and_only_its_own_rows_where_ranges_interleave(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    """Each snapshot records where its ids lie and starts its cursor there; a send's claims,
    counts, deliveries and finish keep to its own rows even where another send's ids fall in its
    range (two snapshots at once on PostgreSQL)."""
    _subscribers(repo, session, 5, tags=["press"])
    for i in range(3):
        repo.add(f"other{i}@example.org")
    session.commit()
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        everyone, press = _send(ledger), _send(ledger, "tag:press")
        first, second = ledger.get_send(everyone), ledger.get_send(press)
    with engine.connect() as conn:
        ids = {
            send: list(
                conn.execute(
                    select(Delivery.id).where(Delivery.send_id == send).order_by(Delivery.id)
                ).scalars()
            )
            for send in (everyone, press)
        }
    assert len(ids[everyone]) == 8 and len(ids[press]) == 5
    for send, info in ((everyone, first), (press, second)):
        assert info.deliveries_after < ids[send][0] and info.deliveries_through >= ids[send][-1]
        assert info.claimed_through == info.deliveries_after
    assert second.deliveries_after >= ids[everyone][-1]  # the next snapshot starts after the last
    with engine.begin() as conn:  # as if the two snapshots had interleaved: each range spans both
        conn.execute(
            update(Send).values(deliveries_after=0, deliveries_through=ids[press][-1], claimed_through=0)
        )
    taken: list[int] = []
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        while (batch := ledger.claim(press, 2, owner="w", lease=LEASE)) is not None:
            taken += [row.delivery_id for row in batch.rows]
            accepted = [Outcome(r.delivery_id, DeliveryState.ACCEPTED, None) for r in batch.rows]
            assert ledger.close_accepted(batch, accepted, owner="w")
        assert taken == ids[press]
        assert ledger.counts(press).total == 5 and ledger.counts(press).by_state["accepted"] == 5
        assert [r.delivery_id for r in ledger.deliveries(press)] == ids[press]
        assert ledger.finish_if_done(press)
        assert ledger.counts(everyone).by_state["pending"] == 8 and not ledger.finish_if_done(everyone)


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


# -- the write-once record path: a batch accepted whole is recorded on its claim ------------------


def _claimed(engine: Engine, repo: SubscriberRepository, session: Session, n: int) -> tuple[int, Batch]:
    _subscribers(repo, session, n)
    with engine.begin() as conn:
        send_id = _send(ledger_for(conn))
    with engine.begin() as conn:
        batch = ledger_for(conn).claim(send_id, n, owner="w", lease=LEASE)
    assert batch is not None
    return send_id, batch


def test_a_batch_accepted_whole_writes_its_claim_and_ids_not_its_rows(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    send_id, batch = _claimed(engine, repo, session, 4)
    ids = [row.delivery_id for row in batch.rows]
    with engine.begin() as conn:
        recorded = [Outcome(i, DeliveryState.ACCEPTED, f"pm-{i}") for i in ids]
        assert ledger_for(conn).close_accepted(batch, recorded, owner="w")
    with engine.connect() as conn:
        ledger = ledger_for(conn)
        stored = conn.execute(select(Delivery.state, Delivery.updated_at)).all()
        claim_state = conn.execute(select(Claim.state)).scalar_one()
        records = ledger.deliveries(send_id)
        counts = ledger.counts(send_id)
        id_rows = conn.execute(select(func.count()).select_from(BatchMessageIds)).scalar_one()
        assert ledger.finish_if_done(send_id)
    assert stored == [(DeliveryState.PENDING, None)] * 4  # the rows were not written again
    assert id_rows == 1  # the batch's ids in one row
    assert claim_state is ClaimState.ACCEPTED
    assert [(r.state, r.message_id) for r in records] == [(DeliveryState.ACCEPTED, f"pm-{i}") for i in ids]
    assert counts.by_state["accepted"] == 4 and counts.open == 0 and counts.total == 4
    with engine.begin() as conn:  # nothing of it is handed out again
        assert ledger_for(conn).claim(send_id, 4, owner="v", lease=LEASE) is None


def test_a_batch_with_exceptions_writes_only_those_rows(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    send_id, batch = _claimed(engine, repo, session, 4)
    a, b, c, d = (row.delivery_id for row in batch.rows)
    recorded = [
        Outcome(a, DeliveryState.ACCEPTED, "pm-a"),
        Outcome(b, DeliveryState.FAILED, None, "406 inactive recipient"),
        Outcome(c, DeliveryState.UNKNOWN, None, "the provider gave no answer"),
        Outcome(d, DeliveryState.ACCEPTED, None),  # a provider that names no message
    ]
    with engine.begin() as conn:
        assert ledger_for(conn).close_accepted(batch, recorded, owner="w")
    with engine.connect() as conn:
        stored = dict(conn.execute(select(Delivery.id, Delivery.state)).all())
        records = {r.delivery_id: r for r in ledger_for(conn).deliveries(send_id)}
        counts = ledger_for(conn).counts(send_id)
    assert stored == {
        a: DeliveryState.PENDING,
        b: DeliveryState.FAILED,
        c: DeliveryState.UNKNOWN,
        d: DeliveryState.PENDING,
    }
    assert {i: (r.state, r.message_id) for i, r in records.items()} == {
        a: (DeliveryState.ACCEPTED, "pm-a"),
        b: (DeliveryState.FAILED, None),
        c: (DeliveryState.UNKNOWN, None),
        d: (DeliveryState.ACCEPTED, None),
    }
    assert {k: v for k, v in counts.by_state.items() if v} == {"accepted": 2, "failed": 1, "unknown": 1}
    # --retry-unknown resends the unknown one alone: the accepted rows are written as accepted
    # before their claim is handed out again, so they are not taken for pending.
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert ledger.retry_unknown(send_id) == 1
        again = ledger.claim(send_id, 4, owner="v", lease=LEASE)
    assert again is not None and [r.delivery_id for r in again.rows] == [c]
    with engine.begin() as conn:
        ledger = ledger_for(conn)
        assert ledger.close_accepted(again, [Outcome(c, DeliveryState.ACCEPTED, "pm-c")], owner="v")
        assert ledger.claim(send_id, 4, owner="v", lease=LEASE) is None
    with engine.connect() as conn:
        records = {r.delivery_id: r for r in ledger_for(conn).deliveries(send_id)}
        counts = ledger_for(conn).counts(send_id)
    assert [(records[i].state, records[i].message_id) for i in (a, c, d)] == [
        (DeliveryState.ACCEPTED, "pm-a"),
        (DeliveryState.ACCEPTED, "pm-c"),
        (DeliveryState.ACCEPTED, None),
    ]
    assert {k: v for k, v in counts.by_state.items() if v} == {"accepted": 3, "failed": 1}


def test_an_answer_recorded_after_the_lease_ran_out_changes_nothing(
    engine: Engine, repo: SubscriberRepository, session: Session
) -> None:
    """The crash window between the provider's answer and the record: the claim expired (its
    worker looked dead), its rows became unknown; the late answer must not turn them accepted."""
    send_id, batch = _claimed(engine, repo, session, 3)
    with engine.begin() as conn:
        conn.execute(update(Claim).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
        assert ledger_for(conn).expire(send_id) == 3
    with engine.begin() as conn:
        recorded = [Outcome(r.delivery_id, DeliveryState.ACCEPTED, "late") for r in batch.rows]
        assert not ledger_for(conn).close_accepted(batch, recorded, owner="w")
    with engine.connect() as conn:
        records = ledger_for(conn).deliveries(send_id)
        messages = conn.execute(select(func.count()).select_from(BatchMessageIds)).scalar_one()
    assert {r.state for r in records} == {DeliveryState.UNKNOWN} and messages == 0
