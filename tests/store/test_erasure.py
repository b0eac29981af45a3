"""Erasure that erases: after ``forget`` the address is gone from the bytes of the database's files.

Each test reads what the database really stores, not what queries return: on SQLite the bytes of
the database file and of its write-ahead log, on PostgreSQL every page of the subscribers table and
of its indexes (through pageinspect, which reads the shared buffers) and the relation files on disk
after a CHECKPOINT. A second connection stays open throughout, as a running web process would.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, insert, text
from sqlalchemy.exc import DBAPIError

from newsletter.store import erasure
from newsletter.store.db import make_engine, session_scope, sqlite_file, upgrade
from newsletter.store.models import Subscriber, SubscriberStatus, Suppression
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import SubscriberRepository
from tests.databases import PG_ADMIN_URL

ROWS = 1000  # enough for a multi-page table and a unique index with inner pages
UPDATED = "Person0500@Example.com"  # unsubscribed before it is forgotten: two row versions


@pytest.fixture
def fresh_url(empty_db_url: str) -> str:
    """A migrated database of the test's own (PostgreSQL: one it may add pageinspect to)."""
    engine = make_engine(empty_db_url)
    upgrade(engine)
    engine.dispose()
    return empty_db_url


@pytest.fixture
def engine(fresh_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_url)
    yield engine
    engine.dispose()


def _fill(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "email": f"Person{i:04d}@Example.com",
            "email_normalized": f"person{i:04d}@example.com",
            "address_hash": address_hash(f"person{i:04d}@example.com"),
            "name": f"Name of person {i:04d}",
            "status": SubscriberStatus.ACTIVE,
            "attributes": {"city": f"City{i:04d}"},
            "created_at": now,
        }
        for i in range(ROWS)
    ]
    with session_scope(engine) as session:
        session.execute(insert(Subscriber), rows)
    with session_scope(engine) as session:
        SubscriberRepository(session).add("tagged@example.com", tags=["press"])
    with session_scope(engine) as session:
        SubscriberRepository(session).unsubscribe(UPDATED)


def _traces(index: int) -> list[bytes]:
    """Everything the row of person ``index`` held that would identify them."""
    return [
        f"Person{index:04d}@Example.com".encode(),
        f"person{index:04d}@example.com".encode(),
        f"Name of person {index:04d}".encode(),
        f"City{index:04d}".encode(),
    ]


def _index(address: str) -> int:
    return int(address.lower().removeprefix("person").split("@")[0])


# -- what the database stores ---------------------------------------------------------------------


def _pg_relations(conn: Connection) -> list[str]:
    """The subscribers table, its TOAST table and every index of both."""
    return list(
        conn.execute(
            text(
                "SELECT c.oid::regclass::text FROM pg_class c WHERE c.oid = 'subscribers'::regclass "
                "OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = 'subscribers'::regclass) "
                "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN ('subscribers'::regclass, "
                "(SELECT reltoastrelid FROM pg_class WHERE oid = 'subscribers'::regclass)))"
            )
        ).scalars()
    )


def _stored_bytes(engine: Engine) -> bytes:
    """Every byte the database keeps for the subscribers table, lower-cased."""
    if engine.dialect.name == "sqlite":
        path = sqlite_file(engine.url)
        assert path is not None
        files = [path, Path(f"{path}-wal")]
        return b"".join(file.read_bytes() for file in files if file.exists()).lower()
    chunks: list[bytes] = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("CHECKPOINT")
        for relation in _pg_relations(conn):
            blocks = conn.execute(
                text("SELECT pg_relation_size(:r) / current_setting('block_size')::int"), {"r": relation}
            ).scalar_one()
            for block in range(blocks):
                page = conn.execute(text("SELECT get_raw_page(:r, :b)"), {"r": relation, "b": block})
                chunks.append(bytes(page.scalar_one()))
            path = conn.execute(text("SELECT pg_relation_filepath(:r)"), {"r": relation}).scalar_one()
            chunks.append(
                bytes(conn.execute(text("SELECT pg_read_binary_file(:p)"), {"p": path}).scalar_one())
            )
    return b"".join(chunks).lower()


def _pg_stats_text(engine: Engine) -> str:
    with engine.connect() as conn:
        return " ".join(
            conn.execute(
                text(
                    "SELECT coalesce(histogram_bounds::text, '') || coalesce(most_common_vals::text, '') "
                    "FROM pg_stats WHERE tablename = 'subscribers'"
                )
            ).scalars()
        ).lower()


def _pg_leaf_high_key(engine: Engine) -> str:
    """An address that is the high key of a leaf page of the unique index: a copy of the key that
    stays in the index (and in its parent page) when the entry itself is removed."""
    with engine.connect() as conn:
        blocks = conn.execute(
            text("SELECT pg_relation_size('uq_subscribers_email_normalized') / 8192")
        ).scalar_one()
        for block in range(1, blocks):
            stats = conn.execute(
                text("SELECT type, btpo_next FROM bt_page_stats('uq_subscribers_email_normalized', :b)"),
                {"b": block},
            ).one()
            if stats.type == "l" and stats.btpo_next != 0:
                data = conn.execute(
                    text(
                        "SELECT data FROM bt_page_items('uq_subscribers_email_normalized', :b) "
                        "WHERE itemoffset = 1"
                    ),
                    {"b": block},
                ).scalar_one()
                key = bytes.fromhex(data.replace(" ", ""))[1:].split(b"\0")[0].decode()
                assert key.startswith("person"), key
                return key
    raise AssertionError("the unique index has a single leaf page; add rows")


@pytest.fixture
def pageinspect(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        try:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pageinspect")
        except DBAPIError as exc:  # not a superuser on NEWSLETTER_TEST_POSTGRES_URL
            pytest.skip(f"pageinspect is not available: {exc.orig}")


# -- the tests ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("pageinspect")
def test_forget_leaves_no_bytes_of_the_address_behind(engine: Engine) -> None:
    _fill(engine)
    forgotten = [UPDATED]
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE subscribers")
        high_key = _pg_leaf_high_key(engine)
        sampled = next(
            f"Person{i:04d}@Example.com"
            for i in range(ROWS)
            if f"person{i:04d}@example.com" in _pg_stats_text(engine) and i != _index(high_key)
        )
        forgotten += [high_key, sampled]
    kept = _traces(_index(UPDATED) + 1)
    stored = _stored_bytes(engine)
    for address in forgotten:  # the test can see them before: it would see them after
        assert all(trace.lower() in stored for trace in _traces(_index(address)))
    if engine.dialect.name == "postgresql":
        # VACUUM alone is not enough: the high key's copies survive it in the index, as can the
        # tuple in the free space of its heap page.
        assert stored.count(forgotten[1].encode()) >= 3  # leaf entry, high key, parent downlink

    other = engine.connect()  # another process's connection, idle but open
    other.execute(text("SELECT count(*) FROM subscribers")).scalar_one()
    other.commit()
    try:
        done = erasure.forget(engine, [f"  {address}  " for address in forgotten])
        assert done.scrub.complete, done.scrub.detail
        assert [(email, result.erased) for email, result in done.forgotten] == [
            (address, True) for address in forgotten
        ]
        stored = _stored_bytes(engine)
        for address in forgotten:
            left = [trace for trace in _traces(_index(address)) if trace.lower() in stored]
            assert left == [], f"{address}: still stored: {left}"
        assert all(trace.lower() in stored for trace in kept)  # the reading really reads the data
        if engine.dialect.name == "postgresql":
            assert not any(address.lower() in _pg_stats_text(engine) for address in forgotten)
        with session_scope(engine, read_only=True) as session:
            repo = SubscriberRepository(session)
            assert repo.count() == ROWS + 1 - len(forgotten)
            assert repo.get_by_email("tagged@example.com") is not None
            hashes = set(session.scalars(text("SELECT address_hash FROM suppressions")))
            assert {address_hash(address.lower()) for address in forgotten} <= hashes
        assert other.execute(text("SELECT count(*) FROM subscribers")).scalar_one() == ROWS + 1 - len(
            forgotten
        )
    finally:
        other.close()


@pytest.mark.usefixtures("pageinspect")
def test_a_busy_database_is_reported_and_a_second_forget_finishes(engine: Engine) -> None:
    """A reader in an open transaction keeps SQLite's log in use and holds PostgreSQL's lock: the
    scrub says what is left, and forgetting the same address again completes it."""
    _fill(engine)
    reader = engine.connect()
    reader.execute(text("SELECT count(*) FROM subscribers")).scalar_one()  # and stays in the transaction
    try:
        with session_scope(engine) as session:
            assert SubscriberRepository(session).forget(UPDATED).erased
        stuck = erasure.scrub(engine, wait=0.3)
        assert not stuck.complete
        assert "run the same forget again" in stuck.detail
        assert b"person0500@example.com" in _stored_bytes(engine)
    finally:
        reader.close()
    again = erasure.forget(engine, [UPDATED])
    assert again.scrub.complete, again.scrub.detail
    assert not again.forgotten[0][1].erased  # the row was already gone; only the scrub was left
    assert not any(trace.lower() in _stored_bytes(engine) for trace in _traces(500))


def test_forgetting_an_unknown_address_suppresses_it_and_still_scrubs(engine: Engine) -> None:
    done = erasure.forget(engine, ["Nobody@Example.org"])
    assert done.scrub.complete
    assert not done.forgotten[0][1].erased
    with session_scope(engine, read_only=True) as session:
        suppression = session.scalars(text("SELECT reason FROM suppressions")).one()
        assert suppression == "forgotten"
        assert session.query(Suppression).count() == 1


def test_every_sqlite_connection_zeroes_what_it_deletes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "empty_db_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.usefixtures("pageinspect")
def test_an_older_transaction_anywhere_in_the_cluster_is_waited_for(engine: Engine) -> None:
    """VACUUM FULL copies a deleted row into the new table while any transaction older than the
    delete runs, even in another database (its xid holds back every later snapshot): the scrub
    waits for it, says so if it does not end, and a second forget finishes the job."""
    _fill(engine)
    elsewhere = make_engine(PG_ADMIN_URL)  # another database of the same server
    blocker = elsewhere.connect()
    try:
        blocker.execute(text("SELECT pg_current_xact_id()")).scalar_one()  # a transaction with an xid
        pid = blocker.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with session_scope(engine) as session:
            assert SubscriberRepository(session).forget(UPDATED).erased
        stuck = erasure.scrub(engine, wait=0.3)
        assert not stuck.complete
        assert f"a transaction that began before the forget is still open (pid {pid}" in stuck.detail
        assert b"person0500@example.com" in _stored_bytes(engine)
        # What the scrub avoids: rewriting now keeps the row, bytes and all.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (FULL) subscribers")
        assert b"person0500@example.com" in _stored_bytes(engine)
    finally:
        blocker.close()
        elsewhere.dispose()
    again = erasure.forget(engine, [UPDATED])
    assert again.scrub.complete, again.scrub.detail
    assert not any(trace.lower() in _stored_bytes(engine) for trace in _traces(500))
