"""The database layer: migrations and the revision gate, URL checks, SQLite's pragmas and transactions."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import IntegrityError, OperationalError

from newsletter.errors import ConfigError
from newsletter.store.db import (
    SchemaOutOfDate,
    UnknownRevision,
    current_revision,
    database_url,
    downgrade,
    head_revision,
    make_engine,
    open_database,
    reading,
    require_current_revision,
    session_scope,
    sqlite_file,
    upgrade,
)
from newsletter.store.models import Base
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import SubscriberRepository

TABLES = set(Base.metadata.tables)  # every model has a table in the newest migration


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_then_downgrade_then_upgrade_again(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) == TABLES
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert _tables(engine) == set()
        upgrade(engine)
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()


def test_models_and_newest_migration_agree(empty_db_url: str) -> None:
    """No pending autogenerate diff: whoever changes a model must add a migration."""
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_deliveries_fill_factor_went_to_30_and_back_on_postgresql(empty_db_url: str) -> None:
    """0004 set 30 on PostgreSQL's ``deliveries``; 0006 resets it; their downgrades undo each."""
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        if engine.dialect.name != "postgresql":
            assert current_revision(engine) == head_revision()  # nothing to do on SQLite
            return
        query = text("SELECT reloptions FROM pg_class WHERE relname = 'deliveries'")
        with engine.connect() as conn:
            assert conn.execute(query).scalar_one() is None
        downgrade(engine, "0005")
        with engine.connect() as conn:
            assert conn.execute(query).scalar_one() == ["fillfactor=30"]
        downgrade(engine, "0003")
        with engine.connect() as conn:
            assert conn.execute(query).scalar_one() is None
    finally:
        engine.dispose()


def test_0003_fills_each_subscribers_hash_and_keeps_their_tags(empty_db_url: str) -> None:
    """Rows from before 0003 get ``privacy.address_hash`` of their address, then the column is NOT
    NULL. On SQLite that rebuilds the table: the tag links (ON DELETE CASCADE) must survive it, and
    foreign keys must be enforced again afterwards."""
    engine = make_engine(empty_db_url)
    addresses = ["ann@example.com", "zoë@exämple.org"]
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            for address in addresses:
                conn.execute(
                    text(
                        "INSERT INTO subscribers (email, email_normalized, name, status, attributes) "
                        "VALUES (:a, :a, 'Old', 'active', '{}')"
                    ),
                    {"a": address},
                )
            conn.execute(text("INSERT INTO tags (name) VALUES ('press')"))
            conn.execute(text("INSERT INTO subscriber_tags SELECT s.id, t.id FROM subscribers s, tags t"))
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT email_normalized, address_hash FROM subscribers")).all())
            assert conn.execute(text("SELECT count(*) FROM subscriber_tags")).scalar_one() == 2
            if engine.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert stored == {address: address_hash(address) for address in addresses}
        column = next(c for c in inspect(engine).get_columns("subscribers") if c["name"] == "address_hash")
        assert column["nullable"] is False
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO subscribers (email, email_normalized, name, status, attributes) "
                    "VALUES ('new@example.com', 'new@example.com', 'New', 'active', '{}')"
                )
            )
        downgrade(engine, "0002")
        assert "address_hash" not in {c["name"] for c in inspect(engine).get_columns("subscribers")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM subscriber_tags")).scalar_one() == 2
    finally:
        engine.dispose()


def test_unmigrated_database_is_refused_with_the_fix(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="run `newsletter db upgrade`") as caught:
            require_current_revision(engine)
        assert "empty database" in str(caught.value)
        upgrade(engine)
        require_current_revision(engine)
        downgrade(engine, "base")
        with pytest.raises(SchemaOutOfDate):
            open_database(empty_db_url)
    finally:
        engine.dispose()


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(SchemaOutOfDate, match="does not exist; run `newsletter db upgrade`"):
        open_database(f"sqlite:///{path}")
    assert not path.exists()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert (conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) > 0
    finally:
        engine.dispose()


def test_a_revision_from_a_newer_release_is_refused_in_one_line(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'ffff0000'"))
        for attempt in (current_revision, require_current_revision, upgrade, lambda e: downgrade(e, "base")):
            with pytest.raises(UnknownRevision) as caught:
                attempt(engine)
            assert str(caught.value).startswith(
                "database is at revision ffff0000, which this version does not know "
                "(was it migrated by a newer release?)"
            )
            assert caught.value.exit_code == 2
        with pytest.raises(UnknownRevision):
            open_database(db_url).dispose()
        with engine.connect() as conn:  # nothing was touched
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == "ffff0000"
    finally:
        with engine.begin() as conn:  # the PostgreSQL database is shared by the run's tests
            conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
        engine.dispose()


# -- database URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("nonsense", "'nonsense' is not a database URL"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("mysql://u@h/db", "'mysql' databases are not supported"),
        ("postgresql+psycopg://u:secret@h:abc/db", "the port in 'postgresql+psycopg://u:***@h:abc/db'"),
        ("postgresql+psycopg://u@h:70000/db", "port 70000 is out of range"),
        ("postgresql+psycopg2://u@h/db", "driver 'psycopg2' is not supported"),
        ("sqlite+aiosqlite:///x.db", "driver 'aiosqlite' is not supported"),
        ("sqlite://somehost/x.db", "a SQLite URL names a file"),
    ],
)
def test_bad_database_urls_are_config_errors_naming_the_key(url: str, problem: str) -> None:
    for call in (database_url, make_engine, open_database, sqlite_file):
        with pytest.raises(ConfigError) as caught:
            call(url)
        message = str(caught.value)
        assert message.startswith("database.url: ") and problem in message, message
        assert "\n" not in message and "secret" not in message
        assert caught.value.exit_code == 2


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_a_bare_postgresql_url_means_psycopg_3(scheme: str) -> None:
    url = database_url(f"{scheme}://user:pw@db.example.internal:5432/newsletter")
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.password) == (
        "db.example.internal",
        5432,
        "newsletter",
        "pw",
    )
    engine = make_engine(f"{scheme}://user@db.example.internal/newsletter")  # no connection yet
    try:
        assert engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


# -- SQLite transactions -------------------------------------------------------------------------


def _read_then_write(engine: Engine, name: str, started: threading.Event, proceed: threading.Event) -> None:
    """One unit of work that reads first (the counter, an address) and writes later."""
    with session_scope(engine) as session:
        repo = SubscriberRepository(session)
        counter = repo.get_by_email("counter@example.com")
        assert counter is not None
        seen = counter.name or ""
        started.set()
        proceed.wait(5)
        time.sleep(0.2)  # the other writer is now trying to begin, or has read too
        counter.name = seen + name
        repo.add(f"{name}@example.com")


def test_two_writers_that_read_first_queue_instead_of_failing(tmp_path: Path) -> None:
    """Two overlapping read-then-write transactions on one SQLite file: both commit, in turn.

    With the driver's deferred BEGIN the second fails at once with "database is locked" (it cannot
    upgrade its read snapshot while the first writes) and one update is lost; BEGIN IMMEDIATE
    makes it wait for the first.
    """
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            SubscriberRepository(session).add("counter@example.com", name="")
        first_started, second_started = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def run(name: str, started: threading.Event, proceed: threading.Event) -> None:
            try:
                _read_then_write(engine, name, started, proceed)
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)

        first = threading.Thread(target=run, args=("a", first_started, threading.Event()))
        first.start()
        assert first_started.wait(5)
        # The second begins while the first holds its transaction open; it proceeds at once.
        proceed_now = threading.Event()
        proceed_now.set()
        second = threading.Thread(target=run, args=("b", second_started, proceed_now))
        second.start()
        first.join(30)
        second.join(30)
        assert errors == []
        with session_scope(engine, read_only=True) as session:
            repo = SubscriberRepository(session)
            counter = repo.get_by_email("counter@example.com")
            assert counter is not None and counter.name == "ab"  # both updates, in order, none lost
            assert repo.get_by_email("a@example.com") and repo.get_by_email("b@example.com")
    finally:
        engine.dispose()


def test_without_begin_immediate_the_second_writer_fails(tmp_path: Path) -> None:
    """The control for the test above: the same work in deferred transactions hits the bug."""
    url = f"sqlite:///{tmp_path / 'deferred.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            SubscriberRepository(session).add("counter@example.com", name="")
        deferred = reading(engine)
        first, second = deferred.connect(), deferred.connect()
        try:
            first.execute(text("SELECT name FROM subscribers")).all()
            second.execute(text("SELECT name FROM subscribers")).all()
            first.execute(text("UPDATE subscribers SET name = 'a'"))
            started = time.monotonic()
            with pytest.raises(OperationalError, match="database is locked"):
                second.execute(text("UPDATE subscribers SET name = 'b'"))
            assert time.monotonic() - started < 5  # at once: the 30 s busy timeout does not apply
        finally:
            first.close()
            second.close()
    finally:
        engine.dispose()


def test_savepoints_and_reads_work_inside_sqlite_transactions(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'nested.db'}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            conn.execute(text("SELECT count(*) FROM tags")).scalar_one()
            conn.execute(text("INSERT INTO tags (name) VALUES ('kept')"))
            nested = conn.begin_nested()
            conn.execute(text("INSERT INTO tags (name) VALUES ('rolled back')"))
            nested.rollback()
            with conn.begin_nested():
                conn.execute(text("INSERT INTO tags (name) VALUES ('released')"))
            conn.rollback()  # a released savepoint is part of the transaction: all of it goes
            assert conn.execute(text("SELECT count(*) FROM tags")).scalar_one() == 0
            conn.execute(text("INSERT INTO tags (name) VALUES ('kept')"))
            with conn.begin_nested():
                conn.execute(text("INSERT INTO tags (name) VALUES ('released')"))
            conn.commit()
        with engine.connect() as conn:
            # A PRAGMA begins no transaction (a checkpoint could not run in one), what follows does.
            assert conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()[0] == 0
            names = set(conn.execute(text("SELECT name FROM tags")).scalars())
            assert names == {"kept", "released"}
    finally:
        engine.dispose()


def _old_subscribers(conn: Connection, n: int) -> None:
    """``n`` active subscribers, ids 1 to ``n``, written as SQL for a database at an old revision."""
    conn.execute(
        text(
            "INSERT INTO subscribers (id, email, email_normalized, address_hash, name, status, "
            "attributes) VALUES (:id, :a, :a, :h, 'Old', 'active', '{}')"
        ),
        [
            {"id": i + 1, "a": f"reader{i}@example.org", "h": address_hash(f"reader{i}@example.org")}
            for i in range(n)
        ],
    )


def test_0016_moves_a_paused_send_to_the_write_once_ledger_and_it_resumes(empty_db_url: str) -> None:
    """A send paused under 0015 (some rows accepted with their ids, a claim handed back, the rest
    never claimed) and a finished one: after 0016 the ids are in ``delivery_messages``, every state
    reads as before, and resuming sends exactly the rows that were left, each once."""
    from newsletter.store.ledger import Outcome, ledger_for
    from newsletter.store.models import DeliveryState, SendState

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0015")
        with engine.begin() as conn:
            _old_subscribers(conn, 6)
            for send_id, state in ((1, "finished"), (2, "paused")):
                conn.execute(
                    text(
                        "INSERT INTO sends (id, issue_file, issue_date, segment, subject, content_hash, "
                        "provider, state, recipients, claimed_through) VALUES (:id, 'issues/x.yaml', "
                        ":day, :seg, 'S', :h, 'outbox', :state, 3, 0)"
                    ),
                    {"id": send_id, "day": f"2026-11-2{send_id}", "seg": "", "h": "0" * 64, "state": state},
                )
            # send 1: finished, its three rows accepted; send 2: one accepted, one unsent in a
            # released claim, one never claimed.
            rows = [
                (1, 1, 1, "accepted", "old-1"),
                (2, 1, 2, "accepted", "old-2"),
                (3, 1, 3, "accepted", "old-3"),
                (4, 2, 4, "accepted", "old-4"),
                (5, 2, 5, "pending", None),
                (6, 2, 6, "pending", None),
            ]
            for row in rows:
                conn.execute(
                    text(
                        "INSERT INTO deliveries (id, send_id, subscriber_id, state, attempts, "
                        "provider_message_id) VALUES (:id, :send, :sub, :state, 1, :mid)"
                    ),
                    dict(zip(("id", "send", "sub", "state", "mid"), row, strict=True)),
                )
            conn.execute(text("UPDATE sends SET claimed_through = 3 WHERE id = 1"))
            conn.execute(text("UPDATE sends SET claimed_through = 5 WHERE id = 2"))
            conn.execute(
                text(
                    "INSERT INTO claims (send_id, after_id, through_id, state) VALUES "
                    "(1, 0, 3, 'done'), (2, 3, 5, 'released')"
                )
            )
        upgrade(engine)
        with engine.connect() as conn:
            ledger = ledger_for(conn)
            before = [(r.delivery_id, r.state, r.message_id) for r in ledger.deliveries()]
        accepted, pending = DeliveryState.ACCEPTED, DeliveryState.PENDING
        assert before == [
            (1, accepted, "old-1"),
            (2, accepted, "old-2"),
            (3, accepted, "old-3"),
            (4, accepted, "old-4"),
            (5, pending, None),
            (6, pending, None),
        ]
        with engine.begin() as conn:  # send --resume
            ledger_for(conn).set_state(2, SendState.SENDING)
        sent: list[int] = []
        while True:
            with engine.begin() as conn:
                ledger = ledger_for(conn)
                batch = ledger.claim(2, 5, owner="w", lease=dt.timedelta(minutes=5))
                if batch is None:
                    break
                sent += [r.delivery_id for r in batch.rows]
                outcomes = [Outcome(r.delivery_id, accepted, f"new-{r.delivery_id}") for r in batch.rows]
                assert ledger.close_accepted(batch, outcomes, owner="w")
        with engine.begin() as conn:
            ledger = ledger_for(conn)
            assert ledger.finish_if_done(2)
            after = {r.delivery_id: (r.state, r.message_id) for r in ledger.deliveries(2)}
            assert ledger.counts(1).by_state["accepted"] == 3
        assert sorted(sent) == [5, 6]
        assert after == {4: (accepted, "old-4"), 5: (accepted, "new-5"), 6: (accepted, "new-6")}
        downgrade(engine, "0015")  # and back: the accepted claims' rows are written as accepted
        with engine.connect() as conn:
            old = conn.execute(
                text("SELECT id, state, provider_message_id FROM deliveries ORDER BY id")
            ).all()
        assert [tuple(r) for r in old] == [
            (i, "accepted", m)
            for i, m in [(1, "old-1"), (2, "old-2"), (3, "old-3"), (4, "old-4"), (5, "new-5"), (6, "new-6")]
        ]
    finally:
        engine.dispose()


def test_0017_moves_each_deliverys_message_id_into_rows_of_a_thousand_and_back(empty_db_url: str) -> None:
    """Ids of two sends under 0016, one row a delivery: after 0017 every delivery reads the same id
    from a row per thousand consecutive deliveries of a send, and downgrading restores each row."""
    from newsletter.store.ledger import ledger_for

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0016")
        ids = {i: f"pm-{i}-{'x' * (i % 7)}" for i in (*range(1, 2501), 2600, 2601)}
        ids[2601] = 'pm-"quoted"\\back-ünï-\u2028'  # what JSON must escape, both ways
        with engine.begin() as conn:
            for send_id in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO sends (id, issue_file, issue_date, segment, subject, content_hash, "
                        "provider, state, recipients, claimed_through) VALUES (:id, 'issues/x.yaml', "
                        ":day, '', 'S', :h, 'postmark', 'finished', 0, 0)"
                    ),
                    {"id": send_id, "day": f"2026-11-2{send_id}", "h": "0" * 64},
                )
            conn.execute(
                text(
                    "INSERT INTO deliveries (id, send_id, subscriber_id, state, attempts) "
                    "VALUES (:id, :send, NULL, 'accepted', 1)"
                ),
                [{"id": i, "send": 1 if i <= 2500 else 2} for i in (*ids, 2602)],  # 2602: no id
            )
            conn.execute(
                text("INSERT INTO delivery_messages (delivery_id, message_id) VALUES (:id, :mid)"),
                [{"id": i, "mid": mid} for i, mid in ids.items()],
            )
        upgrade(engine)
        with engine.connect() as conn:
            per_send = conn.execute(
                text("SELECT send_id, count(*) FROM batch_message_ids GROUP BY send_id ORDER BY send_id")
            ).all()
            read = {r.delivery_id: r.message_id for r in ledger_for(conn).deliveries()}
            second = {r.delivery_id: r.message_id for r in ledger_for(conn).deliveries(2)}
        assert [tuple(r) for r in per_send] == [(1, 3), (2, 1)]  # ids 1-999, 1000-1999, 2000-2500
        assert read == {**ids, 2602: None}
        assert second == {2600: ids[2600], 2601: ids[2601], 2602: None}
        downgrade(engine, "0016")
        with engine.connect() as conn:
            back = dict(conn.execute(text("SELECT delivery_id, message_id FROM delivery_messages")).all())
        assert back == ids
    finally:
        engine.dispose()


def test_0018_gives_each_send_its_range_of_ids_and_a_paused_send_resumes_on_two_indexes(
    empty_db_url: str,
) -> None:
    """Sends under 0017 (finished, paused with a claim handed back, started but never claimed,
    scheduled): after 0018 each knows the range of its deliveries' ids, the cursor of the unclaimed
    one stands at its start, and resuming sends exactly the rows left, each once; the table keeps
    nobody twice in a send with two indexes, and downgrading restores the four."""
    from newsletter.store.ledger import Outcome, ledger_for
    from newsletter.store.models import DeliveryState, SendState

    engine = make_engine(empty_db_url)
    try:
        upgrade(engine, "0017")
        with engine.begin() as conn:
            _old_subscribers(conn, 8)
            for send_id, state, cursor in (
                (1, "finished", 3),
                (2, "paused", 5),
                (3, "paused", 0),
                (4, "scheduled", 0),
            ):
                conn.execute(
                    text(
                        "INSERT INTO sends (id, issue_file, issue_date, segment, subject, content_hash, "
                        "provider, state, recipients, claimed_through) VALUES (:id, 'issues/x.yaml', "
                        ":day, '', 'S', :h, 'outbox', :state, 3, :cursor)"
                    ),
                    {
                        "id": send_id,
                        "day": f"2026-11-2{send_id}",
                        "h": "0" * 64,
                        "state": state,
                        "cursor": cursor,
                    },
                )
            # send 1: rows 1-3 recorded on an accepted claim; send 2: row 4 accepted, row 5 in a
            # released claim, row 6 never claimed; send 3: rows 7-8 never claimed; send 4: none yet.
            rows = [(1, 1, 1), (2, 1, 2), (3, 1, 3), (4, 2, 1), (5, 2, 2), (6, 2, 3), (7, 3, 1), (8, 3, 2)]
            conn.execute(
                text(
                    "INSERT INTO deliveries (id, send_id, subscriber_id, state, attempts) "
                    "VALUES (:id, :send, :sub, :state, 0)"
                ),
                [
                    {"id": i, "send": s, "sub": sub, "state": "accepted" if i == 4 else "pending"}
                    for i, s, sub in rows
                ],
            )
            conn.execute(
                text(
                    "INSERT INTO claims (send_id, after_id, through_id, state) VALUES "
                    "(1, 0, 3, 'accepted'), (2, 3, 4, 'done'), (2, 4, 5, 'released')"
                )
            )
        upgrade(engine)
        with engine.connect() as conn:
            spans = conn.execute(
                text(
                    "SELECT id, deliveries_after, deliveries_through, claimed_through FROM sends ORDER BY id"
                )
            ).all()
        assert [tuple(r) for r in spans] == [(1, 0, 3, 3), (2, 3, 6, 5), (3, 6, 8, 6), (4, 0, 0, 0)]
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("deliveries")}
        assert indexes == {"uq_deliveries_subscriber_id_send_id": ["subscriber_id", "send_id"]}
        with pytest.raises(IntegrityError), engine.begin() as conn:  # still nobody twice in a send
            conn.execute(
                text(
                    "INSERT INTO deliveries (send_id, subscriber_id, state, attempts) "
                    "VALUES (3, 1, 'pending', 0)"
                )
            )
        sent: dict[int, list[int]] = {2: [], 3: []}
        for send_id in sent:
            with engine.begin() as conn:  # send --resume
                ledger_for(conn).set_state(send_id, SendState.SENDING)
            while True:
                with engine.begin() as conn:
                    ledger = ledger_for(conn)
                    batch = ledger.claim(send_id, 5, owner="w", lease=dt.timedelta(minutes=5))
                    if batch is None:
                        assert ledger.finish_if_done(send_id)
                        break
                    sent[send_id] += [r.delivery_id for r in batch.rows]
                    outcomes = [Outcome(r.delivery_id, DeliveryState.ACCEPTED, None) for r in batch.rows]
                    assert ledger.close_accepted(batch, outcomes, owner="w")
        assert sent == {2: [5, 6], 3: [7, 8]}
        with engine.connect() as conn:
            ledger = ledger_for(conn)
            assert [ledger.counts(s).by_state["accepted"] for s in (1, 2, 3)] == [3, 3, 2]
            assert [r.delivery_id for r in ledger.deliveries(2)] == [4, 5, 6]
        downgrade(engine, "0017")
        indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("deliveries")}
        assert {"ix_deliveries_send_id_id", "ix_deliveries_subscriber_id"} <= set(indexes)
        unique = [set(u["column_names"]) for u in inspect(engine).get_unique_constraints("deliveries")]
        assert {"send_id", "subscriber_id"} in unique
        assert "deliveries_after" not in {c["name"] for c in inspect(engine).get_columns("sends")}
    finally:
        engine.dispose()
