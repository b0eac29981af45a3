"""Streaming CSV import of subscribers.

The file is read row by row and written in chunks of many thousand rows, each chunk one
transaction of set-based statements (stage the chunk in a temporary table, look up its addresses by
joins, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` the new ones, update the changed ones, link
tags; see :mod:`newsletter.store.bulk`). Memory stays constant whatever the file size, and a killed
import leaves only whole chunks behind: running it again reports those rows as unchanged and
completes the rest.

The rules, in order of importance:

* Nobody who left is ever brought back: an existing subscriber who unsubscribed, bounced or
  complained, and any address whose hash is in ``suppressions`` (which survives ``forget``), is
  skipped. Import never changes an existing subscriber's status except towards leaving: a row whose
  ``status`` column says ``unsubscribed`` unsubscribes an active subscriber, but ``--status active``
  does not confirm a ``pending`` one, because only the person can confirm their address.
* An import only adds information: a non-empty name replaces the stored one, attributes are merged
  key by key, tags are added, never removed. Empty cells change nothing. Hence re-importing a file,
  or importing an export, reports every row unchanged.
* Every bad row is reported with its line number and written, with its reason, to
  ``FILE.rejects.csv`` next to the input; the other rows still import. A bad row is also one the
  database cannot store (a NUL character) or one that breaks the CSV syntax: a quoted field that
  never closes is reported on the line where it opens, with the number of lines it would have
  swallowed, and those lines are read again as rows of their own, so nothing is lost silently.
* The rejects file never keeps the cells of someone who left: a row whose address is suppressed,
  or whose subscriber unsubscribed, bounced or complained, is listed by line and reason only.
* Cells are read through :func:`unescape_cell`, the inverse of the spreadsheet-formula escaping
  that export (and the rejects file) apply, so an export imports back unchanged.
* Imports do not interleave: each holds a lock for its whole run (an advisory lock on PostgreSQL,
  a ``flock`` beside the SQLite file), so a second one waits for the first and both end as if run
  one after the other. A chunk whose insert lost rows to another writer (a ``subscribers add`` at
  the same moment) is rolled back and run again, so those rows are treated as existing; a row is
  never dropped as "added concurrently".

On PostgreSQL the chunks commit with ``synchronous_commit = off``: a server crash during an import
can lose the last few chunks committed before it (each whole, never part of one), which is exactly
what an import killed slightly earlier leaves, and rerunning the import completes it. Nothing is lost
once ``import_csv`` has returned: its last transaction commits synchronously, and that WAL flush
covers every earlier commit.

Columns are mapped by header name: ``email`` (required), ``name``, ``tags`` (``;`` or ``,``
separated), ``status``; any other column becomes an attribute keyed by its lower-cased header.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import json
import os
import pickle
import queue
import re
import subprocess
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, NamedTuple

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.exc import DataError, IntegrityError

from newsletter.errors import BadInput, NewsletterError
from newsletter.store.addresses import InvalidAddress, normalize
from newsletter.store.bulk import ExistingRow, StagedRow, bulk_for
from newsletter.store.models import LEFT_STATUSES, Subscriber, SubscriberStatus, utcnow
from newsletter.store.privacy import address_hash
from newsletter.store.segments import normalize_tag

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ImportSummary",
    "RejectedRow",
    "check_encoding",
    "escape_cell",
    "import_csv",
    "rejects_path_for",
    "unescape_cell",
]

# Larger chunks mean fewer statements and commits per row, smaller ones that the database starts
# sooner and that less is held in memory (in this process, the reader's and the pipe between them).
# Measured on 200,000 rows, 10,000 beat both 5,000 and 20,000 (which also added 40 MB at peak).
# Nothing is bound per row any more, so SQLite's limit on bound parameters does not cap the size.
DEFAULT_CHUNK_SIZE = 10_000
MAX_CHUNK_SIZE = 100_000
PARALLEL_MIN_BYTES = 4 << 20  # below this, starting a reader process costs more than it saves
MAX_REPORTED = 50  # bad rows kept in the summary for printing; the rejects file has them all
#: Runs of a chunk whose insert lost rows to another writer before the import gives up (loudly).
MAX_ATTEMPTS = 3
#: Rows the database refused one by one (see ``_Importer.batch``) before the import stops: past
#: that, the cause is not in the rows.
MAX_REFUSED = 1000

EMAIL_COLUMNS = ("email", "e_mail", "email_address", "mail")
NAME_COLUMNS = ("name", "full_name")
TAGS_COLUMN = "tags"
STATUS_COLUMN = "status"
REJECTS_COLUMNS = ("line", "reason")  # added by the rejects file, so a fixed one imports cleanly
_TAG_SPLIT = re.compile(r"[;,]")
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_HEADER_SPACE = re.compile(r"[\s\-]+")

#: PostgreSQL text cannot hold U+0000; the rejects file shows it as this visible symbol instead, so
#: that the file stays readable by spreadsheets and other CSV tools.
_NUL = "\x00"
_NUL_SHOWN = "\u2400"  # SYMBOL FOR NULL

# -- spreadsheet formulas (OWASP "CSV injection") ----------------------------------------------------

#: What a cell may begin with for a spreadsheet to run it as a formula.
FORMULA_STARTS = "=+-@\t\r"
_FIRST = frozenset(FORMULA_STARTS + "'")
_NEEDS_ESCAPE = re.compile(f"'*[{re.escape(FORMULA_STARTS)}]")
_ESCAPED = re.compile(f"'+[{re.escape(FORMULA_STARTS)}]")


def escape_cell(value: str) -> str:
    """A cell as export and the rejects file write it: safe to open in a spreadsheet.

    A value beginning with ``= + - @``, a tab or a carriage return gets a ``'`` in front, which
    spreadsheets read as "this is text" (the OWASP rule). So that :func:`unescape_cell` can tell an
    escaped value from one that really begins with quotes, a value of quotes followed by such a
    character gets one more quote too: ``unescape_cell(escape_cell(v)) == v`` for every ``v``.
    """
    return "'" + value if value[:1] in _FIRST and _NEEDS_ESCAPE.match(value) else value


def unescape_cell(cell: str) -> str:
    """The value of a cell that :func:`escape_cell` wrote; any other cell is returned as it is."""
    return cell[1:] if cell[:1] == "'" and _ESCAPED.match(cell) else cell


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str


@dataclass
class ImportSummary:
    path: Path
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    invalid: int = 0  #: rows rejected as bad input (a subset of ``skipped``)
    rejects: list[RejectedRow] = field(default_factory=list)  #: the first bad rows
    rejects_path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())


def rejects_path_for(path: Path) -> Path:
    """``list.csv`` -> ``list.rejects.csv``, next to the input where the operator will look."""
    stem = path.stem if path.suffix.lower() == ".csv" else path.name
    return path.with_name(f"{stem}.rejects.csv")


def check_encoding(path: Path, *, block: int = 1 << 20) -> None:
    """Fail before any write unless the file is UTF-8 (with or without a BOM).

    A full pass costs a fraction of the import and saves a half-imported list when a Latin-1 byte
    turns up on line 900,000.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with path.open("rb") as handle:
        head = handle.read(4)
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
            raise BadInput(f"{path}: the file is UTF-16, not UTF-8; save it as UTF-8 (CSV UTF-8)")
        handle.seek(0)
        while data := handle.read(block):
            pending = decoder.getstate()[0]  # the start of a character split across blocks
            try:
                decoder.decode(data)
            except UnicodeDecodeError as exc:
                # exc.start counts from the carried-over bytes, which hold no newline.
                line += data.count(b"\n", 0, max(exc.start - len(pending), 0))
                raise BadInput(
                    f"{path}:{line}: the file is not UTF-8 (byte 0x{(pending + data)[exc.start]:02x}); "
                    "save it as UTF-8 (CSV UTF-8) and import it again"
                ) from None
            line += data.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise BadInput(f"{path}:{line}: the file ends inside a UTF-8 character") from None


@dataclass(frozen=True)
class _Columns:
    header: list[str]
    email: int
    name: int | None
    tags: int | None
    status: int | None
    attributes: tuple[tuple[int, str], ...]


def _map_header(path: Path, header: list[str]) -> tuple[_Columns, list[str]]:
    keys = [_HEADER_SPACE.sub("_", cell.strip().lower()) for cell in header]
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key and key in seen:
            raise BadInput(f"{path}:1: column {header[index]!r} appears twice in the header")
        seen[key] = index

    def find(names: Sequence[str]) -> int | None:
        return next((seen[n] for n in names if n in seen), None)

    email = find(EMAIL_COLUMNS)
    if email is None:
        raise BadInput(f"{path}:1: no 'email' column in the header ({', '.join(header) or 'empty'})")
    name, tags, status = find(NAME_COLUMNS), find((TAGS_COLUMN,)), find((STATUS_COLUMN,))
    used = {email, name, tags, status}
    attributes = []
    for index, key in enumerate(keys):
        if index in used:
            continue
        if not key:
            warnings.append(f"column {index + 1} has no header; its values are ignored")
            continue
        if key in REJECTS_COLUMNS:
            warnings.append(f"column {header[index]!r} comes from a rejects file; its values are ignored")
            continue
        attributes.append((index, key))
    return _Columns(header, email, name, tags, status, tuple(attributes)), warnings


# A parsed row, as a plain tuple because millions of them are built and pickled: (line, cells, email,
# normalized, name or None, status value or None, attributes as JSON text, tags as a JSON array text
# or None, fingerprint, suppression hash). Only text and ints: they pickle and stage cheaply, and the
# rare existing subscriber's merge decodes the JSON again.
_Row = tuple[int, list[str], str, str, str | None, str | None, str, str | None, int, str]
_LEFT_VALUES = frozenset(status.value for status in LEFT_STATUSES)


class _RejectsWriter:
    """Writes bad rows to ``FILE.rejects.csv``, created only when there is a first one.

    Cells are written as export writes them (:func:`escape_cell`), so the file is safe to open in a
    spreadsheet and a fixed copy imports the same values; a NUL character is shown as ``\u2400``.
    """

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        # A rejects file re-imported after fixing keeps one line/reason pair, not two.
        self.keep = [i for i, cell in enumerate(header) if cell.strip().lower() not in REJECTS_COLUMNS]
        self.header = [_safe_cell(header[i]) for i in self.keep]
        self.handle: IO[str] | None = None
        self.writer: Any = None

    def write(self, line: int, cells: list[str], reason: str) -> None:
        if self.writer is None:
            self.handle = self.path.open("w", encoding="utf-8", newline="")
            self.writer = csv.writer(self.handle)
            self.writer.writerow([*self.header, "line", "reason"])
        kept = (_safe_cell(cells[i]) if i < len(cells) else "" for i in self.keep)
        self.writer.writerow([*kept, line, _safe_cell(reason)])

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _safe_cell(value: str) -> str:
    return escape_cell(value.replace(_NUL, _NUL_SHOWN) if _NUL in value else value)


class _LostRows(Exception):
    """A chunk's insert lost rows to another writer: roll it back and run it again."""


class _Importer:
    """Writes the batches; each batch is one transaction, run again if it lost a race.

    What a batch does to the summary and the rejects file is kept aside (``pending`` and the
    counters) until its transaction has committed, so a batch that is rolled back and run again
    counts nothing twice.
    """

    def __init__(
        self,
        conn: Connection,
        summary: ImportSummary,
        rejects: _RejectsWriter,
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
        self.pending: list[_Reject] = []
        self.added = self.updated = self.unchanged = 0

    # -- one batch, one transaction ------------------------------------------------------------

    def batch(self, skipped: Sequence[_Reject], rows: list[_Row], copy_text: bytes | None) -> None:
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
        self, skipped: Sequence[_Reject], rows: list[_Row], copy_text: bytes | None, exc: DataError
    ) -> None:
        if len(rows) == 1:
            self.refused += 1
            if self.refused > MAX_REFUSED:
                raise exc
            (row,) = rows
            message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            reason = f"refused by the database: {message}"
            refused = _Reject(row[0], row[1], reason, "refused by the database", key=row[3])
            self.batch([*skipped, refused], [], None)
            return
        half = len(rows) // 2
        for part, extra in ((rows[:half], skipped), (rows[half:], ())):
            self.batch(extra, part, _copy_text(part) if copy_text is not None else None)

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
        self.pending.append(_Reject(line, cells, reason, category, False, key, hidden))

    def chunk(self, rows: list[_Row], copy_text: bytes | None) -> int:
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
        any_left = any(row[5] in _LEFT_VALUES for row in rows)
        found = self.bulk.write_chunk(
            staged,
            source=self.source,
            now=(now := utcnow()),
            default_status=self.default_status.value,
            any_left=any_left,
        )
        if found.added < found.candidates:  # someone else added some of these between look-up and insert
            return found.candidates - found.added
        leaving: list[_Row] = []
        for line, first_line in found.duplicates:
            row = by_line[line]
            reason = f"duplicate of line {first_line}"
            if row[5] in _LEFT_VALUES:  # a later row saying the person left is still honoured
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

    def apply_leaving(self, rows: list[_Row], now: dt.datetime) -> None:
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
        names = {name for cell in cells for name in _tag_names(cell)}
        missing = sorted(names - self.tag_ids.keys())
        if not missing:
            return []
        ids, created = self.bulk.ensure_tags(missing)
        self.tag_ids.update(ids)
        return created

    def merge(
        self, rows: list[tuple[_Row, ExistingRow]], now: dt.datetime, links: list[tuple[int, set[str]]]
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
            tags = set(_tag_names(tags_json)) if tags_json is not None else set()
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


@lru_cache(maxsize=4096)
def _tag_names(tags_json: str) -> tuple[str, ...]:
    return tuple(json.loads(tags_json))


@lru_cache(maxsize=4096)
def _tags_json(cell: str, extra: frozenset[str]) -> str | None:
    """A row's tags (its ``tags`` cell plus ``--tag`` options) as the JSON array that is staged.

    Cached: a list has only a handful of distinct cells. Tag names never need JSON escaping.
    """
    tags = _split_tags(cell) | extra if cell else extra
    return '["' + '","'.join(sorted(tags)) + '"]' if tags else None


@lru_cache(maxsize=4096)
def _split_tags(cell: str) -> frozenset[str]:
    """The tags in a ``tags`` cell; cached, since a list has only a handful of distinct cells."""
    return frozenset(normalize_tag(t) for t in _TAG_SPLIT.split(cell) if t.strip())


def _fingerprint(normalized: str) -> int:
    """A signed 64-bit digest of the address (see ``bulk.SEEN``)."""
    digest = hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _Reject(NamedTuple):
    line: int
    cells: list[str]
    reason: str
    category: str
    bad: bool = True
    key: str | None = None  #: the row's normalised address, if it has a valid one
    hidden: bool = False  #: the address left or is suppressed: its cells are not written


class _Records:
    """The records of a CSV file with the line each starts on; broken ones are reported, not fatal.

    Parsing is strict, so a quote that is not followed by the end of its field is an error rather
    than text glued onto the field. A record that fails after running over several lines holds a
    quoted field that never closed (or closed somewhere else than the writer meant): it is
    rejected on the line where it starts, and the lines it ran over are read again as records of
    their own. Those lines cannot reopen the quote that failed, so every line is read at most
    twice, and a quoted field stops at csv's field size limit, which bounds what is kept to read
    again.
    """

    def __init__(self, handle: Iterable[str]) -> None:
        self.handle = iter(handle)
        self.lines: list[str] = []  # the physical lines of the current record
        self.again: deque[str] = deque()  # lines to read again, before the rest of the file
        self.reader = self._reader()
        self.line = 0  # the last line read
        self.header: list[str] = []

    def _reader(self) -> Any:
        lines, again, handle = self.lines, self.again, self.handle

        def read() -> Iterator[str]:
            while again:
                line = again.popleft()
                lines.append(line)
                yield line
            for line in handle:
                lines.append(line)
                yield line

        return csv.reader(read(), strict=True)

    def read_header(self, path: Path) -> list[str]:
        try:
            cells = next(self.reader)
        except StopIteration:
            raise BadInput(f"{path}: the file is empty; it needs a header line") from None
        except csv.Error as exc:
            raise BadInput(f"{path}:1: malformed header: {exc}") from None
        self.line += len(self.lines)
        self.lines.clear()
        if any(_NUL in cell for cell in cells):
            raise BadInput(f"{path}:1: the header contains a NUL character")
        self.header = [unescape_cell(cell) for cell in cells]
        return self.header

    def records(self, summary: ImportSummary) -> Iterator[tuple[int, list[str]] | _Reject]:
        """(first line, cells) for each non-blank record.

        Cells are trimmed of white space, then unescaped (:func:`unescape_cell`).
        """
        lines, reader, line = self.lines, self.reader, self.line
        while True:
            start = line + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                summary.rows += 1
                yield self._broken(start, exc)
                if len(lines) > 1:  # read again what the open quote swallowed
                    self.again.extendleft(reversed(lines[1:]))
                    reader = self.reader = self._reader()
                    line = start
                else:
                    line += len(lines)
                lines.clear()
                continue
            line += len(lines)
            text = lines[0] if len(lines) == 1 else "".join(lines)
            lines.clear()
            if not cells or (len(cells) == 1 and not cells[0].strip()):
                continue
            summary.rows += 1
            # Trimmed before unescaping: an escaped value keeps a leading tab or line break.
            if "'" in text:
                cells = [unescape_cell(cell.strip()) for cell in cells]
            else:
                cells = [cell.strip() for cell in cells]
            if _NUL in text:
                yield self._nul(start, cells)
                continue
            yield start, cells

    def _broken(self, start: int, exc: csv.Error) -> _Reject:
        lines = self.lines
        swallowed = len(lines) - 1
        error = str(exc)
        at_end = error == "unexpected end of data"
        too_large = error.startswith("field larger than field limit")
        limit = f"{csv.field_size_limit():,} characters, the most a field may hold"
        if swallowed > 0 or at_end:
            if at_end:
                closes = "never closes"
            elif too_large:
                closes = f"runs on past {limit} (line {start + swallowed})"
            else:
                closes = f"does not close properly ({error} on line {start + swallowed})"
            reason = f"unterminated quote: the quoted field opening on this line {closes}"
            if swallowed:
                s = "s" if swallowed > 1 else ""
                reason += f"; it swallowed the {swallowed} line{s} after it, which were read again as rows"
            category = "unterminated quote"
        elif too_large:
            reason, category = f"a field longer than {limit}", "field too large"
        else:
            reason, category = f"malformed CSV: {exc}", "malformed CSV"
        # For the rejects file, the line on its own, read leniently (a field too large has none).
        try:
            cells = next(csv.reader([lines[0].rstrip("\r\n")]), []) if lines else []
        except csv.Error:
            cells = []
        return _Reject(start, [unescape_cell(cell.strip()) for cell in cells], reason, category)

    def _nul(self, start: int, cells: list[str]) -> _Reject:
        index = next(i for i, cell in enumerate(cells) if _NUL in cell)
        column = repr(self.header[index]) if index < len(self.header) else f"{index + 1}"
        reason = f"a NUL character in column {column}, which the database cannot store"
        return _Reject(start, cells, reason, "NUL character")


def _key(cells: list[str], index: int) -> str | None:
    """The normalised address in ``cells[index]``, if it is a valid one."""
    try:
        return normalize(cells[index]).normalized if index < len(cells) else None
    except InvalidAddress:
        return None


def _parse(
    records: Iterable[tuple[int, list[str]] | _Reject], columns: _Columns, extra_tags: frozenset[str]
) -> Iterator[_Row | _Reject]:
    """Validate rows one by one; bad ones are rejected here and never reach the database.

    A rejected row carries its address when that is valid, so that the rejects file can leave out
    the cells of someone who left.
    """
    width = len(columns.header)
    email_i, name_i, tags_i, status_i = columns.email, columns.name, columns.tags, columns.status
    attr_columns = columns.attributes
    for record in records:
        if isinstance(record, _Reject):
            yield record._replace(key=_key(record.cells, email_i)) if record.cells else record
            continue
        line, cells = record
        if len(cells) > width:
            extra = ", ".join(repr(c) for c in cells[width:])
            reason = f"{len(cells)} fields, the header has {width} (extra: {extra})"
            yield _Reject(line, cells[:width], reason, "too many fields", key=_key(cells, email_i))
            continue
        if len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        raw = cells[email_i]
        try:
            address = normalize(raw)
        except InvalidAddress as exc:
            if raw.strip():
                yield _Reject(line, cells, f"invalid address: {exc}", "invalid address")
            else:
                yield _Reject(line, cells, "missing email", "missing email")
            continue
        normalized = address.normalized
        status: str | None = None
        if status_i is not None and (value := cells[status_i]):
            try:
                status = SubscriberStatus(value.lower()).value
            except ValueError:
                yield _Reject(line, cells, f"invalid status {value!r}", "invalid status", key=normalized)
                continue
        try:
            tags = _tags_json(cells[tags_i] if tags_i is not None else "", extra_tags)
        except BadInput as exc:
            yield _Reject(line, cells, str(exc), "invalid tag", key=normalized)
            continue
        name = cells[name_i] if name_i is not None else ""
        attributes = {key: v for i, key in attr_columns if (v := cells[i])}
        yield (
            line,
            cells,
            address.email,
            normalized,
            name or None,
            status,
            _to_json(attributes) if attributes else "{}",
            tags,
            _fingerprint(normalized),
            address_hash(normalized),
        )


# The rejected rows (bad, then duplicates within the chunk), the chunk's distinct rows, the same in
# COPY text format (or None), the bytes and rows read so far.
_Batch = tuple[list[_Reject], list[_Row], bytes | None, int, int]

_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: list[_Row]) -> bytes:
    """The rows as PostgreSQL COPY text, in the column order of ``bulk.STAGE_COLUMNS``.

    Made in the reader process, which has time to spare, rather than row by row in the importing
    process, which waits for the database in between: that is on the critical path.
    """
    lines = []
    for line, _, email, normalized, name, status, attributes, tags, fingerprint, digest in rows:
        lines.append(
            f"{line}\t{fingerprint}\t{digest}\t{normalized.translate(_COPY_ESCAPES)}\t"
            f"{email.translate(_COPY_ESCAPES)}\t"
            f"{name.translate(_COPY_ESCAPES) if name is not None else _NULL}\t{status or _NULL}\t"
            f"{attributes.translate(_COPY_ESCAPES)}\t{tags or _NULL}\n"
        )
    return "".join(lines).encode()


def _batch(items: list[_Row | _Reject], copy: bool) -> tuple[list[_Reject], list[_Row], bytes | None]:
    """Split a chunk into rejects and distinct rows: the first occurrence of an address wins."""
    rejects: list[_Reject] = []
    duplicates: list[_Reject] = []
    first: dict[str, _Row] = {}
    for item in items:
        if isinstance(item, _Reject):
            rejects.append(item)
        elif (earlier := first.get(item[3])) is None:
            first[item[3]] = item
        else:
            reason = f"duplicate of line {earlier[0]}"
            if item[5] in _LEFT_VALUES and earlier[5] not in _LEFT_VALUES:
                # The first row wins, except over a later row saying the person left.
                first[item[3]] = (*earlier[:5], item[5], *earlier[6:])
                reason += f"; its status {item[5]} was applied"
            duplicates.append(_Reject(item[0], item[1], reason, "duplicate in file", False, item[3]))
    rows = list(first.values())
    return rejects + duplicates, rows, _copy_text(rows) if copy and rows else None


def _read(path: Path, extra_tags: frozenset[str], chunk_size: int, copy: bool) -> Generator[_Batch]:
    """Parse and validate the file in chunks: the Python half of an import, with no database.

    ``copy``: also format each chunk's rows as COPY text (for PostgreSQL).
    """
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        records = _Records(handle)
        columns, _ = _map_header(path, records.read_header(path))
        counter = ImportSummary(path=path)
        chunk: list[_Row | _Reject] = []
        for item in _parse(records.records(counter), columns, extra_tags):
            chunk.append(item)
            if len(chunk) >= chunk_size:
                yield *_batch(chunk, copy), handle.buffer.tell(), counter.rows  # type: ignore[attr-defined]
                chunk = []
        yield *_batch(chunk, copy), handle.buffer.tell(), counter.rows  # type: ignore[attr-defined]


def _read_in_subprocess(
    path: Path, extra_tags: frozenset[str], chunk_size: int, copy: bool
) -> Generator[_Batch]:
    """:func:`_read` in a child process, so validation runs on a second core beside the writes.

    Batches come back pickled over a pipe, whose small buffer keeps the child at most about a chunk
    ahead: memory stays bounded. A thread of this process unpickles the next batch while the caller
    works on the current one (mostly waiting for the database, which releases the GIL), so neither
    the transfer nor the unpickling is on the critical path; it loads one batch ahead, no more. If
    this process dies, the child's next write fails and it exits.
    """
    command = [
        sys.executable,
        "-m",
        "newsletter.store._reader",
        str(path),
        str(chunk_size),
        "copy" if copy else "rows",
        *sorted(extra_tags),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    stdout = child.stdout
    wanted: queue.SimpleQueue[bool] = queue.SimpleQueue()  # True: load one more; False: stop
    loaded: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()  # (ok, item or exception)

    def load() -> None:
        while wanted.get():
            try:
                item = pickle.load(stdout)
            except BaseException as exc:  # handed over to the generator, which raises it
                loaded.put((False, exc))
                return
            loaded.put((True, item))
            if item is None or isinstance(item, NewsletterError):
                return

    loader = threading.Thread(target=load, name="newsletter-import-reader", daemon=True)
    loader.start()
    try:
        wanted.put(True)
        while True:
            ok, item = loaded.get()
            if not ok:
                if isinstance(item, EOFError):
                    error = child.stderr.read().decode(errors="replace").strip()
                    raise NewsletterError(f"the CSV reader process failed: {error}") from None
                raise item
            if item is None:
                return
            if isinstance(item, NewsletterError):
                raise item
            wanted.put(True)  # the next batch loads while the caller writes this one
            yield item
    finally:
        wanted.put(False)
        if child.poll() is None:
            child.kill()
        child.wait()
        loader.join()  # the child is gone: a pending load ends with EOFError
        child.stdout.close()
        child.stderr.close()


def reader_main(argv: Sequence[str]) -> int:
    """The reader process (``python -m newsletter.store._reader FILE CHUNK_SIZE copy|rows [TAG...]``)."""
    path, chunk_size, copy, tags = Path(argv[0]), int(argv[1]), argv[2] == "copy", frozenset(argv[3:])
    out = sys.stdout.buffer
    try:
        for batch in _read(path, tags, chunk_size, copy):
            pickle.dump(batch, out, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.dump(None, out)
    except NewsletterError as exc:
        pickle.dump(exc, out)
    except BrokenPipeError:  # the importing process is gone
        return 1
    out.flush()
    return 0


def import_csv(
    conn: Connection,
    path: Path,
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    tags: Sequence[str] = (),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    rejects_path: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    parallel: bool | None = None,
    on_wait: Callable[[], None] | None = None,
) -> ImportSummary:
    """Import ``path`` into the database on ``conn``, committing after every chunk.

    ``conn`` must not be inside a transaction the caller wants to keep: the import commits as it
    goes, so that a large file is never one huge transaction and an interrupted run keeps its
    progress. ``on_progress`` receives the bytes read so far after each chunk. ``parallel`` reads
    and validates in a child process (default: for files over 4 MB on a multi-core machine).

    Imports of one database run one at a time: if another is running, this one waits for it to
    finish (``on_wait`` is called when it starts waiting) and says so in ``summary.warnings``.
    """
    if status in LEFT_STATUSES:
        raise BadInput("--status must be active or pending")
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise BadInput(f"chunk size must be between 1 and {MAX_CHUNK_SIZE}")
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    extra_tags = frozenset(normalize_tag(tag) for tag in tags)
    check_encoding(path)
    summary = ImportSummary(path=path)
    rejects_file = rejects_path or rejects_path_for(path)
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        header = _Records(handle).read_header(path)
    columns, summary.warnings = _map_header(path, header)  # fail fast, before any child starts
    if parallel is None:
        parallel = path.stat().st_size > PARALLEL_MIN_BYTES and (os.cpu_count() or 1) > 1
    rejects = _RejectsWriter(rejects_file, columns.header)
    importer = _Importer(conn, summary, rejects, default_status=status, source=f"import:{path.name}"[:200])
    copy = importer.bulk.stages_copy_text
    batches = (_read_in_subprocess if parallel else _read)(path, extra_tags, chunk_size, copy)
    locked = False
    try:
        waited = importer.bulk.lock_imports(on_wait)
        locked = True
        if waited is not None:
            summary.warnings.append(f"waited {waited:,.1f} s for another import to finish first")
        importer.bulk.create_tables()
        for skipped, rows, copy_text, position, rows_read in batches:
            importer.batch(skipped, rows, copy_text)
            summary.rows = rows_read
            if on_progress is not None:
                on_progress(position)
    except BaseException:
        conn.rollback()
        raise
    finally:
        batches.close()  # stops the reader process, if any
        rejects.close()
        importer.bulk.drop_tables()
        if locked:
            importer.bulk.unlock_imports()
    if rejects.handle is not None:
        summary.rejects_path = rejects_file
    elif rejects_file.exists():
        rejects_file.unlink()  # a stale file from an earlier run would mislead
    return summary
