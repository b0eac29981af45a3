"""Writing an import's chunks: each one transaction of set-based statements, run again on a lost race.

The statements themselves are :mod:`newsletter.store.bulk`'s; this module decides what a chunk
means for each row (added, merged into an existing subscriber, skipped) and keeps the summary and
the rejects file in step with what has committed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.exc import DataError, IntegrityError

from newsletter.errors import NewsletterError
from newsletter.store.bulk import ExistingRow, StagedRow, bulk_for
from newsletter.store.importer.rejects import RejectsWriter
from newsletter.store.importer.rows import LEFT_VALUES, Reject, Row, tag_names, to_copy_text
from newsletter.store.importer.summary import ImportSummary, RejectedRow
from newsletter.store.models import LEFT_STATUSES, Subscriber, SubscriberStatus, utcnow
from newsletter.store.privacy import address_hash

__all__ = ["MAX_ATTEMPTS", "MAX_REFUSED", "MAX_REPORTED", "ChunkWriter"]

MAX_REPORTED = 50  # bad rows kept in the summary for printing; the rejects file has them all
#: Runs of a chunk whose insert lost rows to another writer before the import gives up (loudly).
MAX_ATTEMPTS = 3
#: Rows the database refused one by one (see ``ChunkWriter.batch``) before the import stops: past
#: that, the cause is not in the rows.
MAX_REFUSED = 1000


class _LostRows(Exception):
    """A chunk's insert lost rows to another writer: roll it back and run it again."""


class ChunkWriter:
    """Writes the batches; each batch is one transaction, run again if it lost a race.

    What a batch does to the summary and the rejects file is kept aside (``pending`` and the
    counters) until its transaction has committed, so a batch that is rolled back and run again
    counts nothing twice.
    """

    def __init__(
        self,
        conn: Connection,
        summary: ImportSummary,
        rejects: RejectsWriter,
        *,
        default_status: SubscriberStatus,
        source: str,
    ) -> None:
        self.conn = conn
        self.summary = summary
        self.rejects = rejects
        self.default_status = default_status
        self.source = source
        self.bulk = bulk_for(conn)
        self.tag_ids: dict[str, int] = {}
        self.refused = 0
        self.pending: list[Reject] = []
        self.added = self.updated = self.unchanged = 0

    # -- one batch, one transaction ------------------------------------------------------------

    def batch(self, skipped: Sequence[Reject], rows: list[Row], copy_text: bytes | None) -> None:
        """Write a batch from the reader and commit it.

        A chunk whose insert lost rows to another writer (an address added between the look-up
        and the insert) is rolled back and run again: the second run finds those rows existing and
        merges into them. Should every run lose a race, the import stops with an error rather
        than drop a row. A chunk the database refuses as bad data (say a character the
        database's encoding lacks) is split in halves until the refused rows are found; they are
        rejected with the database's message and the others are written.
        """
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.added = self.updated = self.unchanged = 0
            self.pending = list(skipped)
            try:
                if rows:
                    lost = self.chunk(rows, copy_text)
                    if lost:
                        raise _LostRows(lost)
                self.hide_people_who_left()
                self.conn.commit()
            except (_LostRows, IntegrityError) as exc:
                # IntegrityError: a tag or subscriber this chunk links to was deleted meanwhile.
                self.conn.rollback()
                self.tag_ids.clear()  # the rolled-back chunk may have created some
                if not rows:
                    raise
                if attempt == MAX_ATTEMPTS:
                    raise NewsletterError(
                        f"{self.summary.path}: lines {rows[0][0]}-{rows[-1][0]}: other writers "
                        f"changed these subscribers during each of {MAX_ATTEMPTS} tries; nothing of "
                        "these lines was written, the lines before them were; import the file again"
                    ) from (None if isinstance(exc, _LostRows) else exc)
                continue
            except DataError as exc:
                self.conn.rollback()
                self.tag_ids.clear()
                if not rows:
                    raise
                self.bisect(skipped, rows, copy_text, exc)
                return
            self.publish()
            return

    def bisect(
        self, skipped: Sequence[Reject], rows: list[Row], copy_text: bytes | None, exc: DataError
    ) -> None:
        if len(rows) == 1:
            self.refused += 1
            if self.refused > MAX_REFUSED:
                raise exc
            (row,) = rows
            message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            reason = f"refused by the database: {message}"
            refused = Reject(row[0], row[1], reason, "refused by the database", key=row[3])
            self.batch([*skipped, refused], [], None)
            return
        half = len(rows) // 2
        for part, extra in ((rows[:half], skipped), (rows[half:], ())):
            self.batch(extra, part, to_copy_text(part) if copy_text is not None else None)

    def hide_people_who_left(self) -> None:
        """Blank the cells of pending rejects whose address is suppressed or whose subscriber left.

        Asked inside the batch's transaction, after its writes, so that a row of this file that
        unsubscribes someone also hides their other rows.
        """
        keys = {item.key for item in self.pending if item.key is not None and not item.hidden}
        if not keys:
            return
        gone = self.bulk.gone([(key, address_hash(key)) for key in sorted(keys)])
        if gone:
            self.pending = [item._replace(hidden=True) if item.key in gone else item for item in self.pending]

    def publish(self) -> None:
        """Add the committed batch to the summary and the rejects file."""
        summary = self.summary
        summary.added += self.added
        summary.updated += self.updated
        summary.unchanged += self.unchanged
        for item in self.pending:
            summary.skipped[item.category] += 1
            reason = item.reason
            if item.hidden and item.bad:
                # The reason of a bad row may quote its cells; say only what was wrong.
                reason = f"{item.category} (the address is suppressed: its cells are not kept)"
            if item.bad:
                summary.invalid += 1
                if len(summary.rejects) < MAX_REPORTED:
                    summary.rejects.append(RejectedRow(item.line, reason))
            self.rejects.write(item.line, [] if item.hidden else item.cells, reason)
        self.pending = []

    # -- one chunk -----------------------------------------------------------------------------

    def skip(
        self, line: int, cells: list[str], reason: str, category: str, *, key: str, hidden: bool
    ) -> None:
        self.pending.append(Reject(line, cells, reason, category, False, key, hidden))

    def chunk(self, rows: list[Row], copy_text: bytes | None) -> int:
        """Write one chunk of distinct addresses in the current transaction; the caller commits.

        ``copy_text``: the same rows in COPY text format, made by the reader (PostgreSQL only).
        Returns how many rows the insert lost to another writer (then the caller rolls back).
        """
        by_line = {row[0]: row for row in rows}
        created = self.ensure_tags({row[7] for row in rows if row[7] is not None})
        staged: bytes | list[StagedRow] = (
            copy_text
            if copy_text is not None
            else [
                (line, fingerprint, digest, normalized, email, name, status, attributes, tags)
                for line, _, email, normalized, name, status, attributes, tags, fingerprint, digest in rows
            ]
        )
        any_left = any(row[5] in LEFT_VALUES for row in rows)
        found = self.bulk.write_chunk(
            staged,
            source=self.source,
            now=(now := utcnow()),
            default_status=self.default_status.value,
            any_left=any_left,
        )
        if found.added < found.candidates:  # someone else added some of these between look-up and insert
            return found.candidates - found.added
        leaving: list[Row] = []
        for line, first_line in found.duplicates:
            row = by_line[line]
            reason = f"duplicate of line {first_line}"
            if row[5] in LEFT_VALUES:  # a later row saying the person left is still honoured
                leaving.append(row)
                reason += f"; its status {row[5]} was applied"
            self.skip(line, row[1], reason, "duplicate in file", key=row[3], hidden=False)
        if leaving:
            self.apply_leaving(leaving, now)
        for line in found.suppressed:
            reason = "suppressed (unsubscribed or forgotten earlier)"
            self.skip(line, by_line[line][1], reason, "suppressed", key=by_line[line][3], hidden=True)
        self.added += found.added
        if found.existing:
            links: list[tuple[int, set[str]]] = []
            self.merge([(by_line[line], stored) for line, stored in found.existing], now, links)
            if links:
                self.bulk.link_tags(
                    [(subscriber_id, self.tag_ids[name]) for subscriber_id, names in links for name in names]
                )
        if created:  # an import creates a tag only to link it: not for skipped rows alone
            for name in self.bulk.drop_unused_tags(created):
                del self.tag_ids[name]
        return 0

    def apply_leaving(self, rows: list[Row], now: dt.datetime) -> None:
        """Rows repeating an address an earlier chunk wrote, with a leaving status: apply it.

        First occurrence wins for everything else, but never over someone's leaving: that would
        keep mailing a person the file itself says has left.
        """
        self.conn.execute(
            update(Subscriber)
            .where(
                Subscriber.email_normalized == bindparam("b_key"),
                Subscriber.status.not_in(list(LEFT_STATUSES)),
            )
            .values(status=bindparam("b_status"), unsubscribed_at=bindparam("b_at")),
            [{"b_key": row[3], "b_status": SubscriberStatus(str(row[5])), "b_at": now} for row in rows],
        )
        self.bulk.suppress([(row[9], str(row[5])) for row in rows], now=now)

    def ensure_tags(self, cells: set[str]) -> list[int]:
        """Create the tags named in these JSON arrays that this run has not met yet, before the
        chunk's statements link them; return the ids of those created."""
        names = {name for cell in cells for name in tag_names(cell)}
        missing = sorted(names - self.tag_ids.keys())
        if not missing:
            return []
        ids, created = self.bulk.ensure_tags(missing)
        self.tag_ids.update(ids)
        return created

    def merge(
        self, rows: list[tuple[Row, ExistingRow]], now: dt.datetime, links: list[tuple[int, set[str]]]
    ) -> None:
        """Apply what an import may change on existing subscribers: add, never take away."""
        current_tags: dict[int, set[str]] = {stored.id: set() for _, stored in rows}
        for subscriber_id, tag_name in self.bulk.subscriber_tags(list(current_tags)):
            current_tags[subscriber_id].add(tag_name)
        changes: list[dict[str, Any]] = []
        leaving: list[dict[str, Any]] = []
        for (line, cells, _email, normalized, name, value, attributes_json, tags_json, *_), stored in rows:
            status = SubscriberStatus(stored.status)
            row_status = SubscriberStatus(value) if value is not None else None
            if status in LEFT_STATUSES:
                if row_status is status:
                    self.unchanged += 1
                else:
                    reason = f"{status.value} earlier; never reactivated by import"
                    self.skip(line, cells, reason, status.value, key=normalized, hidden=True)
                continue
            attributes: dict[str, str] = json.loads(attributes_json)
            tags = set(tag_names(tags_json)) if tags_json is not None else set()
            merged = {**stored.attributes, **attributes}
            new_name = name or stored.name
            new_tags = tags - current_tags[stored.id]
            leaves = row_status in LEFT_STATUSES
            same = merged == stored.attributes and new_name == stored.name and not new_tags
            if same and not leaves:
                self.unchanged += 1
                continue
            self.updated += 1
            changes.append({"b_id": stored.id, "b_name": new_name, "b_attributes": merged})
            if new_tags:
                links.append((stored.id, new_tags))
            if leaves:
                leaving.append(
                    {"b_id": stored.id, "b_status": row_status, "b_at": now, "hash": address_hash(normalized)}
                )
        if changes:
            self.conn.execute(
                update(Subscriber)
                .where(Subscriber.id == bindparam("b_id"))
                .values(name=bindparam("b_name"), attributes=bindparam("b_attributes")),
                changes,
            )
        if leaving:
            self.conn.execute(
                update(Subscriber)
                .where(Subscriber.id == bindparam("b_id"))
                .values(status=bindparam("b_status"), unsubscribed_at=bindparam("b_at")),
                [{k: v for k, v in p.items() if k != "hash"} for p in leaving],
            )
            self.bulk.suppress([(p["hash"], str(p["b_status"])) for p in leaving], now=now)
