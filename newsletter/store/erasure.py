"""Erasure that erases: ``forget`` some addresses, then remove the bytes the deletion left behind.

A ``DELETE`` removes a row from every query, not from the disk. What the experiments behind
``tests/store/test_erasure.py`` showed, and what :func:`scrub` therefore runs after the forgets have
committed:

SQLite
    Without ``secure_delete`` the deleted record stays in the page's free space (also after a
    checkpoint); with ``secure_delete=FAST`` it stays on freed overflow pages. Every connection
    therefore runs with ``secure_delete=ON`` (see ``store.db``; it costs no measurable time). The
    write-ahead log (``FILE-wal``) still holds the page images from before the delete, and from when
    the row was written, until a checkpoint copies the pages back and the log is truncated:
    ``PRAGMA wal_checkpoint(TRUNCATE)``. An idle second connection does not stop it; a connection
    inside a read transaction does (the checkpoint waits for it up to the busy timeout, then
    reports that the log could not be emptied).

PostgreSQL
    The deleted tuple stays in the heap page, and its key in the unique index, until ``VACUUM``,
    and ``VACUUM`` does not clear them either: it marks the space free and compacts the page, which
    leaves the tuple's bytes in the free space in the middle of the page whenever no live tuple is
    moved over them; and a B-tree keeps copies of keys as page boundaries (high keys and downlinks
    in inner pages) even after the entry itself is gone. Column statistics (``pg_stats``) keep any
    address ANALYZE sampled until the next ANALYZE. Only rewriting the table does it:
    ``VACUUM (FULL, ANALYZE) subscribers`` writes the live rows and fresh indexes into new files,
    drops the old ones and replaces the statistics. It holds an ACCESS EXCLUSIVE lock on
    ``subscribers`` while it runs (about 3 s per million subscribers), so a batch of forgets gets
    one rewrite. It must run outside a transaction, as the table's owner. And it copies a deleted
    row into the new files, bytes and all, as long as any transaction that began before the delete
    is still open, in any database of the server (its xid holds back the snapshot of every later
    transaction, the rewrite's own included), or a replication slot holds old rows: so the scrub
    first waits for those (up to ``wait`` seconds) and reports one that does not end. Its blind
    spot: a read-only transaction of another database role (a ``pg_dump`` that began before the
    forget, say) shows no snapshot to a role without ``pg_read_all_stats``.

What no database command can reach: backups, replicas and archived WAL keep the address until they
are rotated; PostgreSQL's own WAL segments in ``pg_wal`` keep it until checkpoints recycle them
(the rewrite itself is written to the WAL); the old statistics row in ``pg_statistic`` stays in that
catalog's free space until it is vacuumed; and the filesystem may keep freed blocks of deleted
files (the old relation files, the truncated log) until they are reused.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from newsletter.store.db import session_scope, sqlite_file
from newsletter.store.subscribers import ForgetResult, SubscriberRepository

__all__ = ["Erasure", "Scrub", "forget", "limits", "scrub"]
#: How long the scrub waits for other connections (SQLite readers, PostgreSQL locks) before it
#: gives up and reports what is left.
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Scrub:
    """What :func:`scrub` did: ``complete`` if the database files no longer hold erased data."""

    complete: bool
    #: One line for the user: what was run, or what is left and how to finish it.
    detail: str


@dataclass(frozen=True)
class Erasure:
    #: Each address as given (stripped) with what ``SubscriberRepository.forget`` did.
    forgotten: list[tuple[str, ForgetResult]]
    scrub: Scrub
    #: What no command can erase, in words for the user (see :func:`limits`).
    limits: str


def limits(engine: Engine) -> str:
    """What ``forget`` cannot reach on this database, in one line for the user."""
    if engine.dialect.name == "sqlite":
        return (
            "backups and other copies of the database file still hold the erased data until they are rotated"
        )
    return (
        "backups, replicas and archived WAL still hold the erased data until they are rotated, and "
        "the server's pg_wal until checkpoints recycle it"
    )


def forget(engine: Engine, emails: Sequence[str]) -> Erasure:
    """Forget every address in one transaction, then :func:`scrub` once for the whole batch.

    Idempotent: forgetting an address again (say, after an incomplete scrub) changes nothing in the
    tables and runs the scrub again.
    """
    with session_scope(engine) as session:
        repo = SubscriberRepository(session)
        forgotten = [(email.strip(), repo.forget(email)) for email in emails]
    return Erasure(forgotten=forgotten, scrub=scrub(engine), limits=limits(engine))


def scrub(engine: Engine, *, wait: float = WAIT_SECONDS) -> Scrub:
    """Remove what committed deletes left in the database's files (see the module docstring).

    ``wait`` is how many seconds to wait for other connections: SQLite readers that keep the
    write-ahead log in use, PostgreSQL sessions holding a lock on ``subscribers``.
    """
    if engine.dialect.name == "sqlite":
        return _scrub_sqlite(engine, wait)
    return _scrub_postgresql(engine, wait)


def _scrub_sqlite(engine: Engine, wait: float) -> Scrub:
    path = sqlite_file(engine.url)
    log = f"{path}-wal" if path is not None else "the write-ahead log"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(wait * 1000)}")
        try:
            busy, frames, _copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(timeout or 0)}")
    if frames == -1:  # not in WAL mode (an in-memory database): there is no log to empty
        return Scrub(True, "deleted rows were overwritten with zeros (secure_delete)")
    if busy:
        return Scrub(
            False,
            f"another connection is reading the database, so {log} could not be emptied and still "
            "holds the erased data; run the same forget again when nothing else uses the database",
        )
    return Scrub(True, f"deleted rows were overwritten with zeros and {log} was emptied")


#: Sessions in a transaction older than ``:xid`` (the first xid not yet assigned when the scrub
#: began): a running xid anywhere in the cluster (it holds back the snapshot of every later
#: transaction), or a snapshot in this database. Without ``pg_read_all_stats`` only the sessions
#: of our own role show their xids.
_OLDER_SESSION = """
SELECT pid, datname, xact_start FROM pg_stat_activity
WHERE pid <> pg_backend_pid() AND backend_type IS DISTINCT FROM 'autovacuum worker'
  AND (age(backend_xid) > age(CAST(:xid AS xid))
       OR (datname = current_database() AND age(backend_xmin) > age(CAST(:xid AS xid))))
ORDER BY xact_start LIMIT 1
"""
#: What else keeps old row versions: a running xid older than the bound, whoever runs it (prepared
#: transactions included), or a replication slot (a replica's hot_standby_feedback, a logical slot).
_OLDER_HORIZON = """
SELECT pg_snapshot_xmin(pg_current_snapshot()) < CAST(:xid8 AS xid8)
    OR EXISTS (SELECT FROM pg_replication_slots WHERE age(xmin) > age(CAST(:xid AS xid)))
"""


def _wait_for_older_transactions(conn: Connection, wait: float) -> str | None:
    """Wait until no transaction can still see rows deleted before now; else say what is in the way.

    ``VACUUM FULL`` copies a deleted row into the new table, bytes and all, as long as a transaction
    that began before the delete is open, in any database of the cluster: a running xid holds back
    the snapshot of every later transaction, the rewrite's own included.
    """
    xid8 = conn.exec_driver_sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").scalar_one()
    params = {"xid8": xid8, "xid": str(int(xid8) % 2**32)}
    deadline = time.monotonic() + wait
    while True:
        older = conn.execute(text(_OLDER_SESSION), params).first()
        if older is None and not conn.execute(text(_OLDER_HORIZON), params).scalar_one():
            return None
        if time.monotonic() >= deadline:
            if older is None:
                return "a transaction or replication slot older than the forget still holds old rows"
            since = f", since {older.xact_start:%Y-%m-%d %H:%M:%S %Z}" if older.xact_start else ""
            return (
                f"a transaction that began before the forget is still open (pid {older.pid} in "
                f"database {older.datname}{since})"
            )
        time.sleep(0.1)


def _scrub_postgresql(engine: Engine, wait: float) -> Scrub:
    retry = "run the same forget again to finish"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        waiting = _wait_for_older_transactions(conn, wait)
        if waiting is not None:
            return Scrub(
                False,
                f"{waiting}, so rewriting the subscribers table would keep the erased rows; {retry} "
                "once it has ended",
            )
        before = conn.exec_driver_sql("SELECT pg_relation_filenode('subscribers')").scalar()
        conn.exec_driver_sql(f"SET lock_timeout = {max(1, int(wait * 1000))}")
        try:
            conn.exec_driver_sql("VACUUM (FULL, ANALYZE) subscribers")
        except OperationalError as exc:
            return Scrub(
                False,
                "could not rewrite the subscribers table, so its files still hold the erased data "
                f"({str(exc.orig or exc).strip().splitlines()[0]}); {retry}",
            )
        finally:
            conn.exec_driver_sql("RESET lock_timeout")
        after = conn.exec_driver_sql("SELECT pg_relation_filenode('subscribers')").scalar()
    if after == before:  # VACUUM skips, with only a warning, a table the role does not own
        return Scrub(
            False,
            "VACUUM FULL did not rewrite the subscribers table (is the database user its owner?), "
            f"so its files still hold the erased data; {retry} as the owner",
        )
    return Scrub(True, "the subscribers table and its indexes were rewritten (VACUUM FULL)")
