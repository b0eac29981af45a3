"""Reading and validating an import's rows: CSV records, header mapping, checks, chunks.

Nothing here touches the database; :func:`read_ahead` runs :func:`read_batches` in a second
process. A row that passes is a plain tuple (``Row``), a row that fails a ``Reject`` with its line
and reason.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import multiprocessing
import re
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from newsletter.errors import BadInput, NewsletterError
from newsletter.store.addresses import InvalidAddress, normalize
from newsletter.store.models import LEFT_STATUSES, SubscriberStatus
from newsletter.store.privacy import address_hash
from newsletter.store.segments import normalize_tag

__all__ = [
    "FORMULA_STARTS",
    "LEFT_VALUES",
    "NUL",
    "READ_AHEAD",
    "REJECTS_COLUMNS",
    "Batch",
    "Columns",
    "Records",
    "Reject",
    "Row",
    "check_encoding",
    "escape_cell",
    "map_header",
    "parse",
    "read_ahead",
    "read_batches",
    "split_chunk",
    "tag_names",
    "to_copy_text",
    "unescape_cell",
]

#: Batches asked of the reader process before the importer takes one. One is enough to overlap
#: reading the next chunk with writing this one (the next is asked for as this one is taken); two
#: added 20 MB at peak on PostgreSQL, whose batches carry their COPY text too, and were no faster.
READ_AHEAD = 1

EMAIL_COLUMNS = ("email", "e_mail", "email_address", "mail")
NAME_COLUMNS = ("name", "full_name")
TAGS_COLUMN = "tags"
STATUS_COLUMN = "status"
REJECTS_COLUMNS = ("line", "reason")  # added by the rejects file, so a fixed one imports cleanly
_TAG_SPLIT = re.compile(r"[;,]")
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_HEADER_SPACE = re.compile(r"[\s\-]+")

#: PostgreSQL text cannot hold U+0000: a row with one is rejected (see ``rejects.NUL_SHOWN``).
NUL = "\x00"

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
class Columns:
    header: list[str]
    email: int
    name: int | None
    tags: int | None
    status: int | None
    attributes: tuple[tuple[int, str], ...]


def map_header(path: Path, header: list[str]) -> tuple[Columns, list[str]]:
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
    return Columns(header, email, name, tags, status, tuple(attributes)), warnings


# A parsed row, as a plain tuple because millions of them are built and pickled: (line, cells, email,
# normalized, name or None, status value or None, attributes as JSON text, tags as a JSON array text
# or None, fingerprint, suppression hash). Only text and ints: they pickle and stage cheaply, and the
# rare existing subscriber's merge decodes the JSON again.
Row = tuple[int, list[str], str, str, str | None, str | None, str, str | None, int, str]
LEFT_VALUES = frozenset(status.value for status in LEFT_STATUSES)


@lru_cache(maxsize=4096)
def tag_names(tags_json: str) -> tuple[str, ...]:
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


class Reject(NamedTuple):
    line: int
    cells: list[str]
    reason: str
    category: str
    bad: bool = True
    key: str | None = None  #: the row's normalised address, if it has a valid one
    hidden: bool = False  #: the address left or is suppressed: its cells are not written


class Records:
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
        self.rows = 0  # the records read so far, good or bad

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
        if any(NUL in cell for cell in cells):
            raise BadInput(f"{path}:1: the header contains a NUL character")
        self.header = [unescape_cell(cell) for cell in cells]
        return self.header

    def records(self) -> Iterator[tuple[int, list[str]] | Reject]:
        """(first line, cells) for each non-blank record; ``rows`` counts them as they go.

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
                self.rows += 1
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
            self.rows += 1
            # Trimmed before unescaping: an escaped value keeps a leading tab or line break.
            if "'" in text:
                cells = [unescape_cell(cell.strip()) for cell in cells]
            else:
                cells = [cell.strip() for cell in cells]
            if NUL in text:
                yield self._nul(start, cells)
                continue
            yield start, cells

    def _broken(self, start: int, exc: csv.Error) -> Reject:
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
        return Reject(start, [unescape_cell(cell.strip()) for cell in cells], reason, category)

    def _nul(self, start: int, cells: list[str]) -> Reject:
        index = next(i for i, cell in enumerate(cells) if NUL in cell)
        column = repr(self.header[index]) if index < len(self.header) else f"{index + 1}"
        reason = f"a NUL character in column {column}, which the database cannot store"
        return Reject(start, cells, reason, "NUL character")


def _key(cells: list[str], index: int) -> str | None:
    """The normalised address in ``cells[index]``, if it is a valid one."""
    try:
        return normalize(cells[index]).normalized if index < len(cells) else None
    except InvalidAddress:
        return None


def parse(
    records: Iterable[tuple[int, list[str]] | Reject], columns: Columns, extra_tags: frozenset[str]
) -> Iterator[Row | Reject]:
    """Validate rows one by one; bad ones are rejected here and never reach the database.

    A rejected row carries its address when that is valid, so that the rejects file can leave out
    the cells of someone who left.
    """
    width = len(columns.header)
    email_i, name_i, tags_i, status_i = columns.email, columns.name, columns.tags, columns.status
    attr_columns = columns.attributes
    for record in records:
        if isinstance(record, Reject):
            yield record._replace(key=_key(record.cells, email_i)) if record.cells else record
            continue
        line, cells = record
        if len(cells) > width:
            extra = ", ".join(repr(c) for c in cells[width:])
            reason = f"{len(cells)} fields, the header has {width} (extra: {extra})"
            yield Reject(line, cells[:width], reason, "too many fields", key=_key(cells, email_i))
            continue
        if len(cells) < width:
            cells = cells + [""] * (width - len(cells))
        raw = cells[email_i]
        try:
            address = normalize(raw)
        except InvalidAddress as exc:
            if raw.strip():
                yield Reject(line, cells, f"invalid address: {exc}", "invalid address")
            else:
                yield Reject(line, cells, "missing email", "missing email")
            continue
        normalized = address.normalized
        status: str | None = None
        if status_i is not None and (value := cells[status_i]):
            try:
                status = SubscriberStatus(value.lower()).value
            except ValueError:
                yield Reject(line, cells, f"invalid status {value!r}", "invalid status", key=normalized)
                continue
        try:
            tags = _tags_json(cells[tags_i] if tags_i is not None else "", extra_tags)
        except BadInput as exc:
            yield Reject(line, cells, str(exc), "invalid tag", key=normalized)
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
Batch = tuple[list[Reject], list[Row], bytes | None, int, int]

_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def to_copy_text(rows: list[Row]) -> bytes:
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


def split_chunk(items: list[Row | Reject], copy: bool) -> tuple[list[Reject], list[Row], bytes | None]:
    """Split a chunk into rejects and distinct rows: the first occurrence of an address wins."""
    rejects: list[Reject] = []
    duplicates: list[Reject] = []
    first: dict[str, Row] = {}
    for item in items:
        if isinstance(item, Reject):
            rejects.append(item)
        elif (earlier := first.get(item[3])) is None:
            first[item[3]] = item
        else:
            reason = f"duplicate of line {earlier[0]}"
            if item[5] in LEFT_VALUES and earlier[5] not in LEFT_VALUES:
                # The first row wins, except over a later row saying the person left.
                first[item[3]] = (*earlier[:5], item[5], *earlier[6:])
                reason += f"; its status {item[5]} was applied"
            duplicates.append(Reject(item[0], item[1], reason, "duplicate in file", False, item[3]))
    rows = list(first.values())
    return rejects + duplicates, rows, to_copy_text(rows) if copy and rows else None


def read_batches(path: Path, extra_tags: frozenset[str], chunk_size: int, copy: bool) -> Generator[Batch]:
    """Parse and validate the file in chunks: the Python half of an import, with no database.

    ``copy``: also format each chunk's rows as COPY text (for PostgreSQL).
    """
    with path.open("r", encoding="utf-8-sig", newline="") as handle:
        records = Records(handle)
        columns, _ = map_header(path, records.read_header(path))
        chunk: list[Row | Reject] = []
        for item in parse(records.records(), columns, extra_tags):
            chunk.append(item)
            if len(chunk) >= chunk_size:
                yield *split_chunk(chunk, copy), handle.buffer.tell(), records.rows  # type: ignore[attr-defined]
                chunk = []
        yield *split_chunk(chunk, copy), handle.buffer.tell(), records.rows  # type: ignore[attr-defined]


# -- reading ahead in a second process ---------------------------------------------------------------

#: The reader process's batches, one file per process: set by :func:`_open_in_worker`.
_worker_batches: Iterator[Batch] | None = None


def _open_in_worker(path: Path, extra_tags: frozenset[str], chunk_size: int, copy: bool) -> None:
    global _worker_batches
    _worker_batches = read_batches(path, extra_tags, chunk_size, copy)


def _next_in_worker() -> Batch | None:
    """The reader process's next batch, or None once the file is done."""
    assert _worker_batches is not None
    return next(_worker_batches, None)


def read_ahead(
    path: Path, extra_tags: frozenset[str], chunk_size: int, copy: bool, *, ahead: int = READ_AHEAD
) -> Generator[Batch]:
    """:func:`read_batches` in a process of its own, so validation runs on a second core beside the writes.

    A pool of one worker holds the file's batch generator; each task asks it for the next batch,
    and ``ahead`` tasks are kept submitted, so the reader works at most that many batches ahead of
    the caller and memory stays bounded. The executor's own thread receives and unpickles each
    batch while the caller works on the one before (mostly waiting for the database, which
    releases the GIL). Closing the generator cancels what has not started; the worker is started
    with ``spawn``, as the send's process pool is, so it inherits no database connection or lock of
    this process (and, as with any spawned pool, a script calling this needs the
    ``if __name__ == "__main__":`` guard).
    """
    pool = ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_open_in_worker,
        initargs=(path, extra_tags, chunk_size, copy),
    )
    try:
        pending = deque(pool.submit(_next_in_worker) for _ in range(max(ahead, 1)))
        while True:
            try:
                batch = pending.popleft().result()
            except BrokenProcessPool as exc:
                raise NewsletterError(f"{path}: the CSV reader process failed: {exc}") from None
            if batch is None:
                return
            pending.append(pool.submit(_next_in_worker))
            yield batch
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
