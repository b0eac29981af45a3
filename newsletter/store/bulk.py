"""Set-based statements for the importer, one implementation per dialect.

The importer moves a million rows, so it talks to the driver directly: SQLAlchemy's per-parameter
type processing alone cost more than the SQLite insert itself. Each chunk is first loaded into a
temporary *staging* table in one bulk operation (``COPY`` on PostgreSQL, one ``executemany`` on
SQLite), and every decision after that is a join against it: which addresses an earlier chunk had,
which exist, which are suppressed, the insert of the new ones and their tag links are each one
``INSERT ... SELECT`` or ``SELECT ... JOIN``. Nothing per row crosses the connection twice, and no
list travels as a huge array parameter (building those in Python cost more than the statements).

On PostgreSQL the classification and the writes of a chunk are a single statement (data-modifying
CTEs all see the snapshot from before the statement, so "seen before" means "seen by an earlier
chunk"); SQLite runs in-process, where several small statements cost nothing in round trips.

Values are staged already in storage form: JSON text, and timestamps as SQLAlchemy's SQLite format
or as ``datetime`` for psycopg, so the ORM reads these rows back exactly like its own.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from typing import IO, Any, NamedTuple

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: imports of one SQLite file are not queued
    fcntl = None  # type: ignore[assignment]

__all__ = ["Bulk", "ChunkResult", "ExistingRow", "StagedRow", "bulk_for", "driver_rows", "sqlite_time"]

#: A per-run temporary table of 64-bit fingerprints of the addresses already imported, so that a
#: duplicate in a later chunk is reported with the line of its first occurrence while Python's
#: memory stays constant. Integer keys make it several times cheaper than the addresses themselves;
#: the chance of two of a million addresses sharing a fingerprint is about 3 in 100 million, and
#: even then the row is not lost silently: it is reported as a duplicate in the rejects file.
SEEN = "newsletter_import_seen"

#: The per-run temporary staging table: the current chunk's rows, emptied before each chunk (on
#: PostgreSQL by ``ON COMMIT DELETE ROWS``), so it never holds more than one chunk.
STAGE = "newsletter_import_chunk"

#: The staged columns, in the order of a :data:`StagedRow`.
STAGE_COLUMNS = "line, fingerprint, hash, normalized, email, name, status, attributes, tags"

#: Memory for temporary tables of the import's PostgreSQL session (the server's, not ours).
TEMP_BUFFERS = "256MB"

#: The PostgreSQL advisory lock an import holds for its whole run (per database), so that imports
#: queue instead of interleaving their chunks: ``int.from_bytes(b"nl-impor", "big")``. (SQLite:
#: a lock on a file beside the database, see :meth:`Bulk.lock_imports`.)
IMPORT_LOCK = 0x6E6C2D696D706F72

#: (line, fingerprint, address hash, normalized, email, name or None, status or None for the
#: default, attributes JSON text, tags as a JSON array text or None): a plain tuple, since a million
#: are built.
StagedRow = tuple[int, int, str, str, str, str | None, str | None, str, str | None]

_LEFT = "('unsubscribed', 'bounced', 'complained')"  # models.LEFT_STATUSES, as SQL
#: What an import writes of a new subscriber; ``address_hash`` comes from the staged ``hash``.
_SUBSCRIBER_COLUMNS = (
    "email, email_normalized, address_hash, name, status, source, attributes, "
    "created_at, confirmed_at, unsubscribed_at, consent_at, consent_method"
)


class ExistingRow(NamedTuple):
    id: int
    normalized: str
    status: str
    name: str | None
    attributes: dict[str, Any]


class ChunkResult(NamedTuple):
    """What :meth:`Bulk.write_chunk` found and did; every list is in line order."""

    duplicates: list[tuple[int, int]]  #: (line, line of the first occurrence in an earlier chunk)
    existing: list[tuple[int, ExistingRow]]  #: (line, the stored subscriber), left to the caller
    suppressed: list[int]  #: lines whose address hash is in ``suppressions``
    candidates: int  #: rows offered to the insert
    #: rows inserted: fewer than candidates if another writer added some of these addresses
    #: between the look-up and the insert (the importer then rolls the chunk back and runs it again)
    added: int


def sqlite_time(value: dt.datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format, in UTC like UTCDateTime.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def driver_rows(conn: Connection, sql: str, params: Any = ()) -> list[Any]:
    """The driver's own rows (plain tuples) of a statement in the driver's parameter style.

    Reading the cursor directly skips building SQLAlchemy Row objects, which for the ids of a
    million-row import or a send's claims cost more than the query. Executing through the
    Connection keeps SQLAlchemy's transaction bookkeeping right: the caller's commit covers it.
    """
    result = conn.exec_driver_sql(sql, params)
    try:
        return list(result.cursor.fetchall()) if result.returns_rows and result.cursor else []
    finally:
        result.close()


class Bulk:
    """The SQLite implementation; :class:`PostgresBulk` overrides what differs."""

    #: Whether write_chunk takes the rows as COPY text (else as StagedRow tuples).
    stages_copy_text = False

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock: IO[str] | None = None

    def _rows(self, sql: str, params: Any = ()) -> list[Any]:
        return driver_rows(self.conn, sql, params)

    def _time(self, value: dt.datetime) -> Any:
        return sqlite_time(value)

    # -- one import at a time -----------------------------------------------------------------

    def lock_imports(self, on_wait: Callable[[], None] | None = None) -> float | None:
        """Wait until no other import of this database runs; return the seconds waited, or ``None``
        if none was running. ``on_wait`` is called first when there is something to wait for.

        SQLite: an exclusive ``flock`` on ``DATABASE-import-lock`` next to the database file, kept
        (empty) for the next import; the kernel releases it if this process dies. Without it the
        chunks of two imports take turns (each is a ``BEGIN IMMEDIATE`` write transaction), and a
        row the two files disagree on could end with a value of each. An in-memory database, or a
        system without ``flock``, has no lock.
        """
        database = self.conn.engine.url.database
        if fcntl is None or database in (None, "", ":memory:") or database.startswith("file:"):
            return None
        try:
            handle = open(f"{database}-import-lock", "a")  # noqa: SIM115 - held until unlock_imports
        except OSError:  # say a read-only directory: the chunks still take turns
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            waited = None
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            started = time.monotonic()
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
            except BaseException:
                handle.close()
                raise
            waited = time.monotonic() - started
        except BaseException:
            handle.close()
            raise
        self._lock = handle
        return waited

    def unlock_imports(self) -> None:
        """Let the next import run."""
        handle, self._lock = self._lock, None
        if handle is not None:
            handle.close()  # which releases the flock

    # -- the per-run temporary tables ----------------------------------------------------------

    def create_tables(self) -> None:
        self.drop_tables()
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {SEEN} (fingerprint INTEGER PRIMARY KEY, line INTEGER NOT NULL)"
        )
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {STAGE} (line INTEGER PRIMARY KEY, fingerprint INTEGER NOT NULL, "
            "hash TEXT NOT NULL, normalized TEXT NOT NULL, email TEXT NOT NULL, name TEXT, "
            "status TEXT, attributes TEXT NOT NULL, tags TEXT)"
        )
        self.conn.commit()

    def drop_tables(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{SEEN}")
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{STAGE}")
        self.conn.commit()

    # -- one chunk -----------------------------------------------------------------------------

    def _drop_lines(self, lines: Sequence[int]) -> None:
        if lines:
            self.conn.exec_driver_sql(
                f"DELETE FROM {STAGE} WHERE line IN (SELECT value FROM json_each(?))", (json.dumps(lines),)
            )

    def write_chunk(
        self,
        rows: Sequence[StagedRow] | bytes,
        *,
        source: str,
        now: dt.datetime,
        default_status: str,
        any_left: bool,
    ) -> ChunkResult:
        """Stage ``rows`` (distinct addresses), record them as seen, insert the new ones.

        The new subscribers' tags are linked too (the tags must exist: see :meth:`ensure_tags`);
        existing subscribers are left to the caller. Rows an earlier chunk had, rows whose address
        exists and suppressed rows are taken out of the staging table as they are found, so what
        remains is exactly what the insert offers. ``any_left``: whether some row has a leaving
        status (then its address is also suppressed), to skip that statement otherwise.
        """
        assert not isinstance(rows, bytes)
        self.conn.exec_driver_sql(f"DELETE FROM {STAGE}")
        self.conn.exec_driver_sql(
            f"INSERT INTO {STAGE} ({STAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
        )
        self.conn.exec_driver_sql(f"UPDATE {STAGE} SET status = ? WHERE status IS NULL", (default_status,))
        duplicates = self._rows(
            f"SELECT c.line, s.line FROM {STAGE} c JOIN {SEEN} s ON s.fingerprint = c.fingerprint "
            "ORDER BY c.line"
        )
        self._drop_lines([line for line, _ in duplicates])
        self.conn.exec_driver_sql(
            f"INSERT INTO {SEEN} (fingerprint, line) SELECT fingerprint, line FROM {STAGE} WHERE true "
            "ON CONFLICT DO NOTHING"
        )
        existing = [
            (line, ExistingRow(i, n, s, name, json.loads(a) if isinstance(a, str) else a))
            for line, i, n, s, name, a in self._rows(
                f"SELECT c.line, x.id, x.email_normalized, x.status, x.name, x.attributes FROM {STAGE} c "
                "JOIN subscribers x ON x.email_normalized = c.normalized ORDER BY c.line"
            )
        ]
        self._drop_lines([line for line, _ in existing])
        suppressed = [
            line
            for (line,) in self._rows(
                f"SELECT c.line FROM {STAGE} c JOIN suppressions p ON p.address_hash = c.hash ORDER BY c.line"
            )
        ]
        self._drop_lines(suppressed)
        candidates = len(rows) - len(duplicates) - len(existing) - len(suppressed)
        added = 0
        if candidates:
            at = self._time(now)
            added = self.conn.exec_driver_sql(
                f"INSERT INTO subscribers ({_SUBSCRIBER_COLUMNS}) "
                "SELECT email, normalized, hash, name, status, ?, attributes, ?, "
                "CASE WHEN status = 'active' THEN ? END, "
                f"CASE WHEN status IN {_LEFT} THEN ? END, "
                f"?, ? FROM {STAGE} WHERE true ORDER BY line ON CONFLICT (email_normalized) DO NOTHING",
                (source, at, at, at, at, source),
            ).rowcount
            if any_left:
                self.conn.exec_driver_sql(
                    "INSERT INTO suppressions (address_hash, reason, created_at) "
                    f"SELECT hash, status, ? FROM {STAGE} WHERE status IN {_LEFT} "
                    "ON CONFLICT (address_hash) DO NOTHING",
                    (at,),
                )
            # The staged tags name tags that exist: the caller runs ensure_tags first.
            self.conn.exec_driver_sql(
                "INSERT INTO subscriber_tags (subscriber_id, tag_id) "
                f"SELECT x.id, t.id FROM {STAGE} c JOIN subscribers x ON x.email_normalized = c.normalized "
                "JOIN json_each(c.tags) j JOIN tags t ON t.name = j.value WHERE c.tags IS NOT NULL "
                "ON CONFLICT (subscriber_id, tag_id) DO NOTHING"
            )
        return ChunkResult(duplicates, existing, suppressed, candidates, added)

    def link_tags(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Insert (subscriber id, tag id) links that do not exist yet."""
        self.conn.exec_driver_sql(
            "INSERT INTO subscriber_tags (subscriber_id, tag_id) VALUES (?, ?) "
            "ON CONFLICT (subscriber_id, tag_id) DO NOTHING",
            pairs,
        )

    # -- look-ups ------------------------------------------------------------------------------

    def subscriber_tags(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        sql = (
            "SELECT st.subscriber_id, t.name FROM subscriber_tags st "
            "JOIN tags t ON t.id = st.tag_id "
            "WHERE st.subscriber_id IN (SELECT value FROM json_each(?))"
        )
        return [(i, n) for i, n in self._rows(sql, (json.dumps(list(ids)),))]

    def gone(self, keys: Sequence[tuple[str, str]]) -> set[str]:
        """Of these (normalised address, address hash) pairs, the addresses of people who left:
        suppressed, or a subscriber who unsubscribed, bounced or complained."""
        by_hash = dict((digest, key) for key, digest in keys)
        suppressed = self._rows(
            "SELECT address_hash FROM suppressions WHERE address_hash IN (SELECT value FROM json_each(?))",
            (json.dumps(list(by_hash)),),
        )
        left = self._rows(
            f"SELECT email_normalized FROM subscribers WHERE status IN {_LEFT} "
            "AND email_normalized IN (SELECT value FROM json_each(?))",
            (json.dumps([key for key, _ in keys]),),
        )
        return {by_hash[digest] for (digest,) in suppressed} | {key for (key,) in left}

    # -- writes --------------------------------------------------------------------------------

    def ensure_tags(self, names: Sequence[str]) -> tuple[dict[str, int], list[int]]:
        """Create the tags that do not exist; return the ids of all and those of the new ones."""
        created = self._rows(
            "INSERT INTO tags (name) SELECT value FROM json_each(?) WHERE true "
            "ON CONFLICT (name) DO NOTHING RETURNING id",
            (json.dumps(list(names)),),
        )
        sql = "SELECT name, id FROM tags WHERE name IN (SELECT value FROM json_each(?))"
        return dict(self._rows(sql, (json.dumps(list(names)),))), [i for (i,) in created]

    def drop_unused_tags(self, ids: Sequence[int]) -> list[str]:
        """Delete those of these tags that nothing links to; return their names."""
        return [
            name
            for (name,) in self._rows(
                "DELETE FROM tags WHERE id IN (SELECT value FROM json_each(?)) AND NOT EXISTS "
                "(SELECT 1 FROM subscriber_tags st WHERE st.tag_id = tags.id) RETURNING name",
                (json.dumps(list(ids)),),
            )
        ]

    def suppress(self, pairs: Sequence[tuple[str, str]], *, now: dt.datetime) -> None:
        """Insert (hash, reason) suppressions; an address already suppressed keeps its reason."""
        at = self._time(now)
        self.conn.exec_driver_sql(
            "INSERT INTO suppressions (address_hash, reason, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (address_hash) DO NOTHING",
            [(h, reason, at) for h, reason in pairs],
        )


class PostgresBulk(Bulk):
    stages_copy_text = True

    def _time(self, value: dt.datetime) -> Any:
        return value

    def lock_imports(self, on_wait: Callable[[], None] | None = None) -> float | None:
        # A session lock: it outlives the chunks' commits and rollbacks, and the server releases it
        # if this process dies. Without it two imports of overlapping files interleave: each
        # chunk's look-up misses the other's uncommitted rows, its insert then skips them.
        (got,) = self._rows("SELECT pg_try_advisory_lock(%s)", (IMPORT_LOCK,))[0]
        waited = None
        if not got:
            if on_wait is not None:
                on_wait()
            started = time.monotonic()
            self._rows("SELECT pg_advisory_lock(%s)", (IMPORT_LOCK,))
            waited = time.monotonic() - started
        self.conn.commit()
        return waited

    def unlock_imports(self) -> None:
        self._rows("SELECT pg_advisory_unlock(%s)", (IMPORT_LOCK,))
        self.conn.commit()

    def create_tables(self) -> None:
        self.drop_tables()
        # SEEN reaches tens of MB for a million rows; in the default 8 MB of temp_buffers every
        # chunk's look-ups and inserts go through the kernel. The setting can only change before the
        # session first uses a temporary table, so on a connection that did, keep the default.
        try:
            with self.conn.begin_nested():
                self.conn.exec_driver_sql(f"SET temp_buffers = '{TEMP_BUFFERS}'")
        except DBAPIError:
            pass
        # Not unique: only fingerprints not recorded yet are inserted, so a plain index insert does
        # instead of ON CONFLICT's probe-then-insert. Two addresses of one chunk sharing a
        # fingerprint (see SEEN) would both be recorded; look-ups take the first line.
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {SEEN} (fingerprint bigint NOT NULL, line integer NOT NULL)"
        )
        self.conn.exec_driver_sql(f"CREATE INDEX ON {SEEN} (fingerprint)")
        # ON COMMIT DELETE ROWS: each chunk's transaction starts with an empty staging table.
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {STAGE} (line integer NOT NULL, fingerprint bigint NOT NULL, "
            "hash text NOT NULL, normalized text NOT NULL, email text NOT NULL, name text, "
            "status text, attributes text NOT NULL, tags text) "
            "ON COMMIT DELETE ROWS"
        )
        # The staging table has no statistics, so row estimates are guesses; with JIT on, a guess
        # too high costs more in compiling than the statement takes to run.
        self.conn.exec_driver_sql("SET jit = off")
        # Chunks commit without waiting for their WAL flush. A server crash can then lose the
        # last few chunks committed before it (never part of one: each is still atomic), which is
        # what an import killed a moment earlier leaves, and a rerun completes it. It cannot lose
        # anything once the import has returned: drop_tables, which always runs last, commits
        # synchronously, and that flush covers every earlier commit.
        self.conn.exec_driver_sql("SET synchronous_commit = off")
        # The reader formats COPY text as UTF-8 bytes, which the server reads in the client
        # encoding: in a database of another encoding that would store "Zoë" as "ZoÃ«". In UTF-8
        # the server converts, and refuses a character its encoding lacks (the row is rejected).
        self.conn.exec_driver_sql("SET client_encoding = 'UTF8'")
        self.conn.commit()

    def drop_tables(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{SEEN}")
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{STAGE}")
        self.conn.exec_driver_sql("RESET jit")  # temp_buffers cannot be reset any more
        self.conn.exec_driver_sql("RESET synchronous_commit")  # before the commit: see create_tables
        self.conn.exec_driver_sql("RESET client_encoding")
        self.conn.commit()

    def _copy(self, rows: Sequence[StagedRow] | bytes) -> None:
        if not self.conn.in_transaction():
            self.conn.begin()  # so that the caller's commit() commits what the COPY wrote
        dbapi: Any = self.conn.connection.dbapi_connection  # a psycopg Connection
        statement = f"COPY {STAGE} ({STAGE_COLUMNS}) FROM STDIN"
        driver_error = self.conn.dialect.loaded_dbapi.Error
        try:
            with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
                if isinstance(rows, bytes):
                    copy.write(rows)
                else:
                    for row in rows:
                        copy.write_row(row)
        except driver_error as exc:
            # Raised as SQLAlchemy raises the errors of the other statements (a refused character
            # is a sqlalchemy.exc.DataError), so the importer handles them alike.
            raise DBAPIError.instance(statement, None, exc, driver_error, dialect=self.conn.dialect) from None

    def write_chunk(
        self,
        rows: Sequence[StagedRow] | bytes,
        *,
        source: str,
        now: dt.datetime,
        default_status: str,
        any_left: bool,
    ) -> ChunkResult:
        # One statement. Every CTE reads the snapshot from before it, so `looked` sees in SEEN
        # exactly what earlier chunks recorded, not what `recorded` adds. The look-ups into the
        # big tables are correlated subqueries (and an OFFSET 0 lateral), which PostgreSQL runs as
        # one index probe per staged row: as joins, the planner, misled by a staging table without
        # statistics and a growing subscribers table, chose full scans of both, per chunk.
        # `linked` links the new subscribers' tags (new rows have no links yet: no conflicts).
        self._copy(rows)
        sql = f"""
            WITH looked AS MATERIALIZED (
                SELECT c.*,
                    (SELECT min(s.line) FROM {SEEN} s WHERE s.fingerprint = c.fingerprint) AS first_line,
                    (SELECT x.id FROM subscribers x WHERE x.email_normalized = c.normalized) AS old_id,
                    EXISTS (SELECT FROM suppressions p WHERE p.address_hash = c.hash) AS banned
                FROM {STAGE} c
            ), recorded AS (
                INSERT INTO {SEEN} (fingerprint, line)
                SELECT fingerprint, line FROM looked WHERE first_line IS NULL
            ), new AS (
                SELECT line, hash, normalized, email, name, coalesce(status, %(default)s) AS status,
                    attributes, tags
                FROM looked WHERE first_line IS NULL AND old_id IS NULL AND NOT banned
            ), added AS (
                INSERT INTO subscribers ({_SUBSCRIBER_COLUMNS})
                SELECT email, normalized, hash, name, status, %(source)s, attributes::jsonb, %(now)s,
                    CASE WHEN status = 'active' THEN %(now)s END,
                    CASE WHEN status IN {_LEFT} THEN %(now)s END, %(now)s, %(source)s
                FROM new ORDER BY line
                ON CONFLICT (email_normalized) DO NOTHING RETURNING id, email_normalized
            ), linked AS (
                INSERT INTO subscriber_tags (subscriber_id, tag_id)
                SELECT a.id, t.id FROM added a JOIN {STAGE} c ON c.normalized = a.email_normalized
                CROSS JOIN LATERAL json_array_elements_text(c.tags::json) AS g(name)
                JOIN tags t ON t.name = g.name
                WHERE c.tags IS NOT NULL
            ), gone AS (
                INSERT INTO suppressions (address_hash, reason, created_at)
                SELECT hash, status, %(now)s FROM new WHERE %(any_left)s AND status IN {_LEFT}
                ON CONFLICT (address_hash) DO NOTHING
            )
            SELECT 'd', line, first_line, NULL, NULL, NULL, NULL::jsonb FROM looked
                WHERE first_line IS NOT NULL
            UNION ALL SELECT 'e', l.line, x.id, x.email_normalized, x.status, x.name, x.attributes
                FROM looked l CROSS JOIN LATERAL (
                    SELECT * FROM subscribers x WHERE x.id = l.old_id OFFSET 0
                ) x WHERE l.first_line IS NULL
            UNION ALL SELECT 's', line, NULL, NULL, NULL, NULL, NULL FROM looked
                WHERE first_line IS NULL AND old_id IS NULL AND banned
            UNION ALL SELECT 'c', count(*), NULL, NULL, NULL, NULL, NULL FROM new
            UNION ALL SELECT 'a', count(*), NULL, NULL, NULL, NULL, NULL FROM added
        """
        found = self._rows(
            sql, {"source": source, "now": now, "default": default_status, "any_left": any_left}
        )
        duplicates: list[tuple[int, int]] = []
        existing: list[tuple[int, ExistingRow]] = []
        suppressed: list[int] = []
        candidates = added = 0
        for kind, line, ref, normalized, status, name, attributes in found:
            if kind == "d":
                duplicates.append((line, ref))
            elif kind == "e":
                existing.append((line, ExistingRow(ref, normalized, status, name, attributes)))
            elif kind == "s":
                suppressed.append(line)
            elif kind == "c":
                candidates = line
            else:
                added = line
        duplicates.sort()
        existing.sort()
        suppressed.sort()
        return ChunkResult(duplicates, existing, suppressed, candidates, added)

    def link_tags(self, pairs: Sequence[tuple[int, int]]) -> None:
        self.conn.exec_driver_sql(
            "INSERT INTO subscriber_tags (subscriber_id, tag_id) "
            "SELECT * FROM unnest(%b::int[], %b::int[]) ON CONFLICT (subscriber_id, tag_id) DO NOTHING",
            ([s for s, _ in pairs], [t for _, t in pairs]),
        )

    def subscriber_tags(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        sql = (
            "SELECT st.subscriber_id, t.name FROM subscriber_tags st "
            "JOIN tags t ON t.id = st.tag_id WHERE st.subscriber_id = ANY(%b)"
        )
        return [(i, n) for i, n in self._rows(sql, (list(ids),))]

    def gone(self, keys: Sequence[tuple[str, str]]) -> set[str]:
        by_hash = dict((digest, key) for key, digest in keys)
        suppressed = self._rows(
            "SELECT address_hash FROM suppressions WHERE address_hash = ANY(%b)", (list(by_hash),)
        )
        left = self._rows(
            f"SELECT email_normalized FROM subscribers WHERE status IN {_LEFT} "
            "AND email_normalized = ANY(%b)",
            ([key for key, _ in keys],),
        )
        return {by_hash[digest] for (digest,) in suppressed} | {key for (key,) in left}

    def ensure_tags(self, names: Sequence[str]) -> tuple[dict[str, int], list[int]]:
        created = self._rows(
            "INSERT INTO tags (name) SELECT unnest(%b::text[]) ON CONFLICT (name) DO NOTHING RETURNING id",
            (list(names),),
        )
        ids = dict(self._rows("SELECT name, id FROM tags WHERE name = ANY(%b)", (list(names),)))
        return ids, [i for (i,) in created]

    def drop_unused_tags(self, ids: Sequence[int]) -> list[str]:
        return [
            name
            for (name,) in self._rows(
                "DELETE FROM tags t WHERE t.id = ANY(%b) AND NOT EXISTS "
                "(SELECT FROM subscriber_tags st WHERE st.tag_id = t.id) RETURNING name",
                (list(ids),),
            )
        ]

    def suppress(self, pairs: Sequence[tuple[str, str]], *, now: dt.datetime) -> None:
        self.conn.exec_driver_sql(
            "INSERT INTO suppressions (address_hash, reason, created_at) "
            "SELECT h, r, %s FROM unnest(%b::text[], %b::text[]) AS p(h, r) "
            "ON CONFLICT (address_hash) DO NOTHING",
            (now, [h for h, _ in pairs], [r for _, r in pairs]),
        )


def bulk_for(conn: Connection) -> Bulk:
    return PostgresBulk(conn) if conn.dialect.name == "postgresql" else Bulk(conn)
