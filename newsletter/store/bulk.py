"""Set-based statements for the importer, one implementation per dialect.

The importer moves a million rows, so it talks to the driver directly: SQLAlchemy's per-parameter
type processing alone cost more than the SQLite insert itself. Each method is one statement per
chunk, never one per row: a whole list travels as one parameter (``json_each(?)`` on SQLite, an
array with ``unnest``/``= ANY`` on PostgreSQL) or as one ``executemany``. Values are passed already
in storage form: JSON text, and timestamps as SQLAlchemy's SQLite format or as ``datetime`` for
psycopg, so the ORM reads these rows back exactly like its own.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Connection

__all__ = ["Bulk", "ExistingRow", "NewRow", "bulk_for"]

#: A per-run temporary table of 64-bit fingerprints of the addresses already imported, so that a
#: duplicate in a later chunk is reported with the line of its first occurrence while Python's
#: memory stays constant. Integer keys make it several times cheaper than the addresses themselves;
#: the chance of two of a million addresses sharing a fingerprint is about 3 in 100 million, and
#: even then the row is not lost silently: it is reported as a duplicate in the rejects file.
SEEN = "newsletter_import_seen"


class NewRow(NamedTuple):
    email: str
    normalized: str
    name: str | None
    status: str
    attributes: str  #: JSON text


class ExistingRow(NamedTuple):
    id: int
    normalized: str
    status: str
    name: str | None
    attributes: dict[str, Any]


def _sqlite_time(value: dt.datetime) -> str:
    # SQLAlchemy's SQLite DateTime storage format, in UTC like UTCDateTime.
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class Bulk:
    """The SQLite implementation; :class:`PostgresBulk` overrides what differs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _rows(self, sql: str, params: Any = ()) -> list[Any]:
        # Read the driver's cursor directly: building SQLAlchemy Row objects for every id of a
        # million-row import costs more than the query. Executing through the Connection keeps
        # SQLAlchemy's transaction bookkeeping right, so the caller's commit covers this too.
        result = self.conn.exec_driver_sql(sql, params)
        try:
            return list(result.cursor.fetchall()) if result.returns_rows else []
        finally:
            result.close()

    def _time(self, value: dt.datetime) -> Any:
        return _sqlite_time(value)

    # -- the per-run table of addresses seen, for duplicates across chunks --------------------

    def create_seen(self) -> None:
        self.drop_seen()
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {SEEN} (fingerprint INTEGER PRIMARY KEY, line INTEGER NOT NULL)"
        )
        self.conn.commit()

    def drop_seen(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{SEEN}")
        self.conn.commit()

    def see(self, pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
        """Record (fingerprint, line) pairs; return those an earlier chunk had, with its line."""
        sql = f"SELECT fingerprint, line FROM {SEEN} WHERE fingerprint IN (SELECT value FROM json_each(?))"
        earlier = dict(self._rows(sql, (json.dumps([f for f, _ in pairs]),)))
        self.conn.exec_driver_sql(
            f"INSERT INTO {SEEN} (fingerprint, line) VALUES (?, ?) ON CONFLICT DO NOTHING", pairs
        )
        return earlier

    # -- look-ups ------------------------------------------------------------------------------

    def existing(self, keys: Sequence[str]) -> list[ExistingRow]:
        sql = (
            "SELECT id, email_normalized, status, name, attributes FROM subscribers "
            "WHERE email_normalized IN (SELECT value FROM json_each(?))"
        )
        return [
            ExistingRow(i, n, s, name, json.loads(a) if isinstance(a, str) else a)
            for i, n, s, name, a in self._rows(sql, (json.dumps(keys),))
        ]

    def suppressed(self, hashes: Sequence[str]) -> set[str]:
        sql = "SELECT address_hash FROM suppressions WHERE address_hash IN (SELECT value FROM json_each(?))"
        return {h for (h,) in self._rows(sql, (json.dumps(hashes),))}

    def subscriber_tags(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        sql = (
            "SELECT st.subscriber_id, t.name FROM subscriber_tags st "
            "JOIN tags t ON t.id = st.tag_id "
            "WHERE st.subscriber_id IN (SELECT value FROM json_each(?))"
        )
        return [(i, n) for i, n in self._rows(sql, (json.dumps(list(ids)),))]

    # -- writes --------------------------------------------------------------------------------

    def insert_subscribers(
        self, rows: Sequence[NewRow], *, source: str, now: dt.datetime
    ) -> tuple[int, dict[str, int]]:
        """Insert, skipping addresses that exist by now.

        Returns how many rows were inserted and the ids of the chunk's addresses, for tag links.
        """
        at = self._time(now)
        params = [
            (
                r.email,
                r.normalized,
                r.name,
                r.status,
                source,
                r.attributes,
                at,
                at if r.status == "active" else None,
                at if r.status == "unsubscribed" else None,
                at,
                source,
            )
            for r in rows
        ]
        result = self.conn.exec_driver_sql(
            "INSERT INTO subscribers (email, email_normalized, name, status, source, attributes, "
            "created_at, confirmed_at, unsubscribed_at, consent_at, consent_method) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email_normalized) DO NOTHING",
            params,
        )
        sql = (
            "SELECT email_normalized, id FROM subscribers "
            "WHERE email_normalized IN (SELECT value FROM json_each(?))"
        )
        ids = dict(self._rows(sql, (json.dumps([r.normalized for r in rows]),)))
        return result.rowcount, ids

    def ensure_tags(self, names: Sequence[str]) -> dict[str, int]:
        self.conn.exec_driver_sql(
            "INSERT INTO tags (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
            [(n,) for n in names],
        )
        sql = "SELECT name, id FROM tags WHERE name IN (SELECT value FROM json_each(?))"
        return dict(self._rows(sql, (json.dumps(list(names)),)))

    def link_tags(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Insert (subscriber id, tag id) links that do not exist yet."""
        self.conn.exec_driver_sql(
            "INSERT INTO subscriber_tags (subscriber_id, tag_id) VALUES (?, ?) "
            "ON CONFLICT (subscriber_id, tag_id) DO NOTHING",
            pairs,
        )

    def suppress(self, pairs: Sequence[tuple[str, str]], *, now: dt.datetime) -> None:
        """Insert (hash, reason) suppressions; an address already suppressed keeps its reason."""
        at = self._time(now)
        self.conn.exec_driver_sql(
            "INSERT INTO suppressions (address_hash, reason, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (address_hash) DO NOTHING",
            [(h, reason, at) for h, reason in pairs],
        )


class PostgresBulk(Bulk):
    def _time(self, value: dt.datetime) -> Any:
        return value

    def create_seen(self) -> None:
        self.drop_seen()
        self.conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {SEEN} (fingerprint bigint PRIMARY KEY, line integer NOT NULL)"
        )
        self.conn.commit()

    def drop_seen(self) -> None:
        self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{SEEN}")
        self.conn.commit()

    def see(self, pairs: Sequence[tuple[int, int]]) -> dict[int, int]:
        # One statement: the SELECT reads the snapshot from before the INSERT, so it returns
        # exactly the fingerprints that earlier chunks recorded.
        sql = (
            f"WITH given AS (SELECT * FROM unnest(%b::bigint[], %b::int[]) AS g(fingerprint, line)), "
            f"recorded AS (INSERT INTO {SEEN} (fingerprint, line) SELECT * FROM given "
            "ON CONFLICT DO NOTHING) "
            f"SELECT s.fingerprint, s.line FROM {SEEN} s JOIN given USING (fingerprint)"
        )
        return dict(self._rows(sql, ([f for f, _ in pairs], [line for _, line in pairs])))

    def existing(self, keys: Sequence[str]) -> list[ExistingRow]:
        sql = (
            "SELECT id, email_normalized, status, name, attributes FROM subscribers "
            "WHERE email_normalized = ANY(%b)"
        )
        return [ExistingRow(*row) for row in self._rows(sql, (list(keys),))]

    def suppressed(self, hashes: Sequence[str]) -> set[str]:
        sql = "SELECT address_hash FROM suppressions WHERE address_hash = ANY(%b)"
        return {h for (h,) in self._rows(sql, (list(hashes),))}

    def subscriber_tags(self, ids: Sequence[int]) -> list[tuple[int, str]]:
        sql = (
            "SELECT st.subscriber_id, t.name FROM subscriber_tags st "
            "JOIN tags t ON t.id = st.tag_id WHERE st.subscriber_id = ANY(%b)"
        )
        return [(i, n) for i, n in self._rows(sql, (list(ids),))]

    def insert_subscribers(
        self, rows: Sequence[NewRow], *, source: str, now: dt.datetime
    ) -> tuple[int, dict[str, int]]:
        columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [()] * 5
        result = self.conn.exec_driver_sql(
            "INSERT INTO subscribers (email, email_normalized, name, status, source, attributes, "
            "created_at, confirmed_at, unsubscribed_at, consent_at, consent_method) "
            "SELECT e, n, nm, st, %(source)s, a::jsonb, %(now)s, "
            "CASE WHEN st = 'active' THEN %(now)s END, "
            "CASE WHEN st = 'unsubscribed' THEN %(now)s END, %(now)s, %(source)s "
            "FROM unnest(%(e)b::text[], %(n)b::text[], %(nm)b::text[], %(st)b::text[], "
            "%(a)b::text[]) AS t(e, n, nm, st, a) "
            "ON CONFLICT (email_normalized) DO NOTHING RETURNING email_normalized, id",
            {
                "source": source,
                "now": now,
                "e": list(columns[0]),
                "n": list(columns[1]),
                "nm": list(columns[2]),
                "st": list(columns[3]),
                "a": list(columns[4]),
            },
        )
        ids: dict[str, int] = {normalized: id_ for normalized, id_ in result}
        return len(ids), ids

    def ensure_tags(self, names: Sequence[str]) -> dict[str, int]:
        self.conn.exec_driver_sql(
            "INSERT INTO tags (name) SELECT unnest(%b::text[]) ON CONFLICT (name) DO NOTHING",
            (list(names),),
        )
        return dict(self._rows("SELECT name, id FROM tags WHERE name = ANY(%b)", (list(names),)))

    def link_tags(self, pairs: Sequence[tuple[int, int]]) -> None:
        self.conn.exec_driver_sql(
            "INSERT INTO subscriber_tags (subscriber_id, tag_id) "
            "SELECT * FROM unnest(%b::int[], %b::int[]) ON CONFLICT (subscriber_id, tag_id) DO NOTHING",
            ([s for s, _ in pairs], [t for _, t in pairs]),
        )

    def suppress(self, pairs: Sequence[tuple[str, str]], *, now: dt.datetime) -> None:
        self.conn.exec_driver_sql(
            "INSERT INTO suppressions (address_hash, reason, created_at) "
            "SELECT h, r, %s FROM unnest(%b::text[], %b::text[]) AS p(h, r) "
            "ON CONFLICT (address_hash) DO NOTHING",
            (now, [h for h, _ in pairs], [r for _, r in pairs]),
        )


def bulk_for(conn: Connection) -> Bulk:
    return PostgresBulk(conn) if conn.dialect.name == "postgresql" else Bulk(conn)
