"""The send ledger: sends, one delivery row per recipient, and the statements that move them.

Every write is set-based. A send's audience is snapshotted by one ``INSERT … SELECT`` in the same
transaction that creates the send, so later sign-ups never join a running send. It records on
the send the range of the primary key its rows lie in, which every query of one send's deliveries
reads (with the send's id as a filter): no index of ``deliveries`` leads with ``send_id``, so the
snapshot writes two index entries per row instead of four. A worker claims a
batch as a *range* of delivery ids: it moves the send's cursor (``claimed_through``) past the next
``limit`` deliveries and records a :class:`~newsletter.store.models.Claim` with its lease, two
small writes however large the batch, where marking each row ``sending`` cost one row write per
recipient. Workers of one send take turns on the cursor (a row lock on PostgreSQL, the write lock
on SQLite) and never get overlapping ranges; a turn cuts the next few ranges at once, and the
workers take those as handed-out claims, so the turns come once per :data:`CUT_AHEAD` batches.

A recipient's row is written once when all goes well, by the snapshot. A batch the provider
accepted whole is recorded on its claim, which closes ``accepted``: every row still ``pending`` in
its range was accepted. Only the exceptions (refused, unknown, suppressed; and, while some are
refused for now and sent again, the whole answer) are written to their rows, by one ``UPDATE``
from a list. The provider's message ids are appended as one ``batch_message_ids`` row per
recorded batch. :meth:`Ledger.deliveries` and :meth:`Ledger.counts` read a row's state through its
claim. Nothing here runs a query per recipient.

A row still ``pending`` inside an open claim is in flight. When a claim's lease runs out, or its
worker is known dead, those rows become ``unknown``: the request may have left. They are resent
only when the editor asks (``send --retry-unknown``), which hands their claims out again.

Suppressions are honoured twice: by the snapshot, and again at every claim, so an unsubscribe,
bounce, complaint or ``forget`` that lands mid-send keeps the remaining batches from that person.
Both compare the subscriber's stored ``address_hash`` with the unique index of ``suppressions``:
no statement hashes an address.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, func, insert, literal, select, text, update

from newsletter.errors import NewsletterError
from newsletter.store.archive import Archive, IssueSnapshot
from newsletter.store.bulk import driver_rows, sqlite_time
from newsletter.store.models import (
    ClaimState,
    Delivery,
    DeliveryState,
    Send,
    SendState,
    Subscriber,
    utcnow,
)
from newsletter.store.subscribers import audience

#: Ranges one turn on a send's cursor cuts: the claiming worker's and seven handed out after it.
CUT_AHEAD = 8

__all__ = [
    "CUT_AHEAD",
    "Batch",
    "Claimed",
    "DeliveryRecord",
    "Ledger",
    "Outcome",
    "SendCounts",
    "SendInfo",
    "SendNotFound",
    "ledger_for",
]

#: How often a recipient is tried before a retryable refusal counts as a failure.
MAX_ATTEMPTS = 5

#: A claimed row as read: delivery id, subscriber id, attempts, email, name, still eligible.
_ClaimRow = tuple[int, int, int, str, str | None, bool]
#: A claim taken: its id, the (after id, through id] range and its rows still to send.
_Taken = tuple[int, int, int, list[_ClaimRow]]


class SendNotFound(NewsletterError):
    """No send matches."""


@dataclass(frozen=True)
class SendInfo:
    """A ``sends`` row as plain data (the ledger works on connections, not ORM sessions)."""

    id: int
    issue_file: str
    issue_date: dt.date
    segment: str
    subject: str
    content_hash: str
    provider: str
    state: SendState
    error: str | None
    recipients: int
    scheduled_at: dt.datetime | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    claimed_through: int
    deliveries_after: int = 0
    deliveries_through: int = 0


class Claimed(NamedTuple):
    """A claimed delivery with what the message needs; ``email`` is None if the person left."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


class Batch(NamedTuple):
    """A claimed batch: the claim that leases it and its rows to send, in id order."""

    claim_id: int
    send_id: int
    rows: list[Claimed]


class Outcome(NamedTuple):
    """What to record for one delivery: a state among accepted/failed/pending/unknown."""

    delivery_id: int
    state: DeliveryState
    message_id: str | None = None
    error: str | None = None


class DeliveryRecord(NamedTuple):
    """One delivery as the ledger reads it: its state through its claim, its provider id."""

    delivery_id: int
    subscriber_id: int | None
    email: str | None  #: None once the subscriber is forgotten
    state: DeliveryState
    message_id: str | None
    error: str | None
    attempts: int


@dataclass(frozen=True)
class SendCounts:
    send_id: int
    by_state: dict[str, int]
    failed_by_reason: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def open(self) -> int:
        return self.by_state.get("pending", 0) + self.by_state.get("sending", 0)


class Ledger:
    """The SQLite implementation; :class:`PostgresLedger` overrides what differs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- dialect differences ---------------------------------------------------------------------

    def _time(self, value: dt.datetime) -> Any:
        return sqlite_time(value)

    # -- sends -----------------------------------------------------------------------------------

    def find_send(self, issue_date: dt.date, segment: str) -> SendInfo | None:
        row = self.conn.execute(
            select(*Send.__table__.c).where(Send.issue_date == issue_date, Send.segment == segment)
        ).first()
        return _send(row) if row else None

    def get_send(self, send_id: int) -> SendInfo:
        row = self.conn.execute(select(*Send.__table__.c).where(Send.id == send_id)).first()
        if row is None:
            raise SendNotFound(f"no send with id {send_id}")
        return _send(row)

    def sends(self, issue_date: dt.date | None = None) -> list[SendInfo]:
        query = select(*Send.__table__.c).order_by(Send.id)
        if issue_date is not None:
            query = query.where(Send.issue_date == issue_date)
        return [_send(row) for row in self.conn.execute(query)]

    def audience_count(self, segment: str) -> int:
        """How many subscribers a send to ``segment`` would snapshot right now."""
        query = select(func.count()).select_from(self._eligible(segment).subquery())
        return int(self.conn.execute(query).scalar_one())

    def _eligible(self, segment: str) -> Any:
        """Active subscribers of the segment whose address is not suppressed by any path."""
        return audience(segment or None)

    def create_send(
        self,
        *,
        issue_file: str,
        issue_date: dt.date,
        segment: str,
        subject: str,
        content_hash: str,
        provider: str,
        issue: IssueSnapshot | None = None,
    ) -> SendInfo:
        """Create the send and snapshot its audience in the caller's transaction.

        ``issue`` is what the send renders from: published in the web archive in that same
        transaction (None only for ledger tests that send no issue).
        """
        now = utcnow()
        send_id = self._insert_send(
            issue_file=issue_file,
            issue_date=issue_date,
            segment=segment,
            subject=subject,
            content_hash=content_hash,
            provider=provider,
            state=SendState.SENDING,
            created_at=now,
            started_at=now,
        )
        self._snapshot(send_id, segment)
        if issue is not None:
            Archive(self.conn).publish(send_id, content_hash, issue, now)
        return self.get_send(send_id)

    def _insert_send(self, **values: Any) -> int:
        """One ``sends`` row, its audience not yet counted; its id."""
        statement = insert(Send).values(recipients=0, **values).returning(Send.id)
        return int(self.conn.execute(statement).scalar_one())

    def _snapshot(self, send_id: int, segment: str) -> None:
        """Insert one pending delivery per eligible subscriber; count them, and record the range
        their ids lie in, on the send (the cursor at its start)."""
        after = self._id_floor()
        eligible = self._eligible(segment).subquery()
        # No ORDER BY: the scan's order is the subscribers' id order in practice, and claims go
        # by delivery id whatever it is; sorting a million ids spilled to disk on PostgreSQL.
        snapshot = select(
            literal(send_id),
            eligible.c.id,
            literal(DeliveryState.PENDING.value),
            literal(0),
        )
        inserted = self.conn.execute(
            insert(Delivery).from_select(["send_id", "subscriber_id", "state", "attempts"], snapshot)
        ).rowcount
        through = self._id_ceiling()
        # sqlite3 and psycopg report the rows an INSERT ... SELECT wrote; a driver that says -1
        # (DB-API allows it) gets them counted, a third of a second at a million on PostgreSQL.
        count = (
            inserted
            if inserted is not None and inserted >= 0
            else self.conn.execute(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.send_id == send_id, Delivery.id > after, Delivery.id <= through)
            ).scalar_one()
        )
        self.conn.execute(
            update(Send)
            .where(Send.id == send_id)
            .values(
                recipients=count, deliveries_after=after, deliveries_through=through, claimed_through=after
            )
        )
        self._after_snapshot()

    def _id_floor(self) -> int:
        """An id below every delivery id this transaction inserts from now on.

        On SQLite the transaction holds the write lock, and a new row's id is above the largest.
        """
        return int(self.conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM deliveries").scalar_one())

    def _id_ceiling(self) -> int:
        """An id at or above every delivery id this transaction has inserted."""
        return self._id_floor()

    #: One send's deliveries: its snapshot's range of the primary key, and its id, which stays a
    #: condition because on PostgreSQL two snapshots at once may interleave their ids. ``{d}`` is
    #: the deliveries table as the statement names it.
    _OF_SEND = (
        "{d}.send_id = :send AND {d}.id > (SELECT deliveries_after FROM sends WHERE id = :send) "
        "AND {d}.id <= (SELECT deliveries_through FROM sends WHERE id = :send)"
    )

    def _of_send(self, send_id: int) -> Any:
        """:data:`_OF_SEND` as a condition of a statement built on ``Delivery``."""
        return text(self._OF_SEND.format(d="deliveries")).bindparams(send=send_id)

    def _after_snapshot(self) -> None:
        """Dialect hook: PostgreSQL refreshes the table's statistics (see there)."""

    def _outcomes_commit_lazily(self) -> None:
        """Dialect hook: on PostgreSQL a transaction recording outcomes does not wait for its
        flush (see there); a claim's does."""

    def set_state(
        self,
        send_id: int,
        state: SendState,
        *,
        error: str | None = None,
        only_from: Sequence[SendState] = (),
    ) -> bool:
        """Move a send to ``state`` (only from one of ``only_from``, if given); True if it moved."""
        values: dict[str, Any] = {"state": state, "error": error}
        if state is SendState.FINISHED:
            values["finished_at"] = utcnow()
        if state is SendState.SENDING:
            values["finished_at"] = None
        query = update(Send).where(Send.id == send_id).values(**values)
        if only_from:
            query = query.where(Send.state.in_(list(only_from)))
        return bool(self.conn.execute(query).rowcount)

    def finish_if_done(self, send_id: int) -> bool:
        """Mark the send finished if nothing is left to claim and no claim is open or handed back."""
        moved = self.conn.exec_driver_sql(
            *self._bind(
                "UPDATE sends SET state = 'finished', finished_at = :now, error = NULL "
                "WHERE id = :send AND state = 'sending' "
                "AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = :send "
                "AND d.id > sends.claimed_through AND d.id <= sends.deliveries_through) "
                "AND NOT EXISTS (SELECT 1 FROM claims c WHERE c.send_id = :send "
                "AND c.state IN ('open', 'released'))",
                now=self._time(utcnow()),
                send=send_id,
            )
        ).rowcount
        return bool(moved)

    def running_sends(self) -> list[int]:
        query = select(Send.id).where(Send.state == SendState.SENDING).order_by(Send.id)
        return list(self.conn.execute(query).scalars())

    # -- scheduled sends -------------------------------------------------------------------------

    def create_scheduled(
        self,
        *,
        issue_file: str,
        issue_date: dt.date,
        segment: str,
        subject: str,
        content_hash: str,
        provider: str,
        scheduled_at: dt.datetime,
    ) -> SendInfo:
        """A send waiting for ``scheduled_at`` (UTC): no audience yet, that is taken when it starts."""
        send_id = self._insert_send(
            issue_file=issue_file,
            issue_date=issue_date,
            segment=segment,
            subject=subject,
            content_hash=content_hash,
            provider=provider,
            state=SendState.SCHEDULED,
            scheduled_at=scheduled_at,
            created_at=utcnow(),
        )
        return self.get_send(send_id)

    def reschedule(
        self, send_id: int, scheduled_at: dt.datetime, *, only_from: Sequence[SendState], **values: Any
    ) -> bool:
        """Set a new time (and state ``scheduled``) on a send in one of ``only_from``; True if it moved.

        ``move`` passes ``scheduled``; scheduling a cancelled or missed send again passes those, with
        the issue's current ``subject``/``content_hash``/``issue_file`` in ``values``.
        """
        query = (
            update(Send)
            .where(Send.id == send_id, Send.state.in_(list(only_from)), Send.recipients == 0)
            .values(state=SendState.SCHEDULED, scheduled_at=scheduled_at, error=None, **values)
        )
        return bool(self.conn.execute(query).rowcount)

    def scheduled_sends(self) -> list[SendInfo]:
        query = select(*Send.__table__.c).where(Send.state == SendState.SCHEDULED).order_by(Send.scheduled_at)
        return [_send(row) for row in self.conn.execute(query)]

    def start_scheduled(
        self,
        send_id: int,
        *,
        issue_file: str,
        subject: str,
        content_hash: str,
        provider: str,
        issue: IssueSnapshot | None = None,
    ) -> bool:
        """Start a scheduled send: ``scheduled`` -> ``sending`` and the audience snapshot, at most once.

        The ``UPDATE … WHERE state = 'scheduled'`` is the guard: of two workers firing the same send
        (two schedulers on one database, a job and its reconciled twin), the one whose update
        changes the row wins; on PostgreSQL the other waits for the row lock, then finds the state
        changed and changes nothing. Only the winner snapshots, in the same transaction. The
        subject and content hash are the issue as rendered now: an edited file goes out edited.
        """
        now = utcnow()
        moved = self.conn.execute(
            update(Send)
            .where(Send.id == send_id, Send.state == SendState.SCHEDULED)
            .values(
                state=SendState.SENDING,
                started_at=now,
                issue_file=issue_file,
                subject=subject,
                content_hash=content_hash,
                provider=provider,
                error=None,
            )
        ).rowcount
        if moved != 1:
            return False
        segment = self.conn.execute(select(Send.segment).where(Send.id == send_id)).scalar_one()
        self._snapshot(send_id, segment)
        if issue is not None:
            Archive(self.conn).publish(send_id, content_hash, issue, now)
        return True

    # -- claims and outcomes ---------------------------------------------------------------------

    def claim(self, send_id: int, limit: int, *, owner: str, lease: dt.timedelta) -> Batch | None:
        """Lease the next batch of the send: a released claim first, else the next ``limit`` ids.

        A released claim holding more than ``limit`` rows to send is split, and only ``limit`` taken.

        Rows whose subscriber left, was forgotten or got suppressed since the snapshot are marked
        ``suppressed`` here and not returned. None when nothing is left to claim.
        """
        expires = self._time(utcnow() + lease)
        self._before_claim()
        taken = self._take_released(send_id, owner, expires)
        if taken is None:
            found = self._take_next(send_id, limit, owner, expires)
            if found is None:
                return None
            claim_id, after_id, through_id = found
            rows = self._claim_rows(send=send_id, after=after_id, through=through_id)
        else:
            claim_id, after_id, through_id, rows = taken
        if len(rows) > limit:  # cut by a worker whose provider takes larger batches: split it
            rows = rows[:limit]
            self._split(claim_id, send_id, at=rows[-1][0], through=through_id)
        out = [
            Claimed(delivery_id, subscriber_id, email, name or "", attempts)
            for delivery_id, subscriber_id, attempts, email, name, eligible in rows
            if eligible
        ]
        batch = Batch(claim_id, send_id, out)
        if len(out) < len(rows):
            gone = [
                Outcome(row[0], DeliveryState.SUPPRESSED, None, "left or suppressed after the snapshot")
                for row in rows
                if not row[5]
            ]
            # Written here, not by ``record``: this transaction is the claim, which must be
            # durable before its batch is sent, so it does not commit lazily as outcomes do.
            self._write(batch, gone, owned=owner)
        return batch

    def _split(self, claim_id: int, send_id: int, *, at: int, through: int) -> None:
        """Keep the claim's range up to ``at``; the rest becomes a released claim of its own."""
        self.conn.exec_driver_sql(
            *self._bind("UPDATE claims SET through_id = :at WHERE id = :claim", at=at, claim=claim_id)
        )
        self._hand_out(send_id, [(at, through)])

    def _hand_out(self, send_id: int, ranges: Sequence[tuple[int, int]]) -> None:
        """Released claims of these (after id, through id] ranges, in order: the next to be taken."""
        if not ranges:
            return
        insert = (
            "INSERT INTO claims (send_id, after_id, through_id, state, created_at) "
            "VALUES (:send, :after, :through, 'released', :now)"
        )
        now = self._time(utcnow())
        bound = [self._bind(insert, send=send_id, after=a, through=t, now=now) for a, t in ranges]
        self.conn.exec_driver_sql(bound[0][0], [params for _, params in bound])

    def _before_claim(self) -> None:
        """Dialect hook: PostgreSQL sets how a claim's transaction plans its joins (see there)."""

    #: The next released claim of a send, taken by this owner (on PostgreSQL passing over the ones
    #: another worker is taking).
    _TAKE_RELEASED = (
        "UPDATE claims SET state = 'open', owner = :owner, expires_at = :expires "
        "WHERE id = (SELECT id FROM claims WHERE send_id = :send AND state = 'released' "
        "ORDER BY id LIMIT 1{skip_locked}) RETURNING id, after_id, through_id"
    )

    def _take_released(self, send_id: int, owner: str, expires: Any) -> _Taken | None:
        """The next released claim, taken: its id, its range and its rows (as :meth:`_claim_rows`)."""
        taken = self._fetch(
            *self._bind(
                self._TAKE_RELEASED.format(skip_locked=self._skip_locked),
                owner=owner,
                expires=expires,
                send=send_id,
            )
        )
        if not taken:
            return None
        claim_id, after_id, through_id = taken[0]
        rows = self._claim_rows(send=send_id, after=after_id, through=through_id)
        return claim_id, after_id, through_id, rows

    _skip_locked = ""

    def _take_next(self, send_id: int, limit: int, owner: str, expires: Any) -> tuple[int, int, int] | None:
        """Move the send's cursor past the next ranges of ``limit`` deliveries and record them.

        The cursor is read under a row lock (PostgreSQL; on SQLite the transaction holds the write
        lock), so a second worker waits and then reads the moved cursor: ranges never overlap. The
        lock is held until the claim is durable (its commit flushed): with a turn per batch, a fifth
        of the workers' time on PostgreSQL went to waiting for it. So one turn cuts up to
        :data:`CUT_AHEAD` ranges: this worker keeps the first, the others become ``released``
        claims, handed out by :meth:`_take_released` without touching the cursor (and on
        PostgreSQL passing over the ones another worker is taking).
        """
        locked = self._fetch(
            *self._bind(
                f"SELECT claimed_through, deliveries_through FROM sends WHERE id = :send{self._for_update}",
                send=send_id,
            )
        )
        if not locked:
            return None
        after_id, last_id = locked[0]
        bounds = [
            row[0]
            for row in self._fetch(
                *self._bind(
                    "SELECT max(id) FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM "
                    "(SELECT id FROM deliveries WHERE send_id = :send AND id > :after AND id <= :last "
                    "ORDER BY id LIMIT :span) AS nxt) AS numbered GROUP BY (n - 1) / :limit ORDER BY 1",
                    send=send_id,
                    after=after_id,
                    last=last_id,
                    span=limit * CUT_AHEAD,
                    limit=limit,
                )
            )
        ]
        if not bounds:
            return None
        self.conn.exec_driver_sql(
            *self._bind(
                "UPDATE sends SET claimed_through = :through WHERE id = :send",
                through=bounds[-1],
                send=send_id,
            )
        )
        ours = self._fetch(
            *self._bind(
                "INSERT INTO claims (send_id, after_id, through_id, state, owner, expires_at, created_at) "
                "VALUES (:send, :after, :through, 'open', :owner, :expires, :now) RETURNING id",
                send=send_id,
                after=after_id,
                through=bounds[0],
                owner=owner,
                expires=expires,
                now=self._time(utcnow()),
            )
        )
        self._hand_out(send_id, list(pairwise(bounds)))  # after ours: taken in the cursor's order
        return ours[0][0], after_id, bounds[0]

    #: Dialect pieces: a row lock, passing over locked rows, a JSON list of text as a subquery.
    _for_update = ""
    _json_texts = "(SELECT value FROM json_each({}))"

    #: What a claimed row is sent with: its subscriber, and whether they may still be sent to
    #: (active, not suppressed); ``d`` a delivery, ``s`` its subscriber.
    _ROW_COLUMNS = (
        "d.id, d.subscriber_id, d.attempts, s.email, s.name, coalesce(s.status = 'active' "
        "AND NOT EXISTS (SELECT 1 FROM suppressions p WHERE p.address_hash = s.address_hash), false)"
    )
    #: The rows of a claimed range still to send, the range's bounds given as SQL.
    _PENDING_IN = "d.send_id = :send AND d.id > {after} AND d.id <= {through} AND d.state = 'pending'"

    def _claim_rows(self, **params: Any) -> list[_ClaimRow]:
        """(delivery id, subscriber id, attempts, email, name, still eligible) of a claimed range."""
        return self._fetch(
            *self._bind(
                f"SELECT {self._ROW_COLUMNS} FROM deliveries d "
                "LEFT JOIN subscribers s ON s.id = d.subscriber_id "
                f"WHERE {self._PENDING_IN.format(after=':after', through=':through')} ORDER BY d.id",
                **params,
            )
        )

    def record(self, batch: Batch, outcomes: Sequence[Outcome], *, owner: str) -> int:
        """Write these outcomes to their rows, while the claim is still this owner's and open.

        For the exceptions, and for a whole answer while some of it is sent again: the claim
        stays open, and a worker that dies now must leave the accepted ones known. Returns how
        many rows were written; the accepted ones among them get their message ids.
        """
        if not outcomes:
            return 0
        self._outcomes_commit_lazily()
        return self._write(batch, outcomes, owned=owner)

    def close_accepted(self, batch: Batch, outcomes: Sequence[Outcome], *, owner: str) -> bool:
        """The batch's last answer, with nothing left to send again: close the claim ``accepted``.

        ``outcomes`` covers every row of the claim still pending. The claim moves first (on
        PostgreSQL its row lock keeps :meth:`expire` out until this commits); then only the
        exceptions are written to their rows, and the accepted rows stay ``pending``, which inside
        an accepted claim means accepted. False, with nothing recorded, if the claim is no longer
        this owner's (its lease ran out and its rows were made unknown).
        """
        exceptions = [o for o in outcomes if o.state is not DeliveryState.ACCEPTED]
        ids = _message_ids(outcomes)
        if not exceptions and ids:  # nearly every batch
            return self._accept_whole(batch, ids, owner=owner)
        self._outcomes_commit_lazily()
        moved = self._fetch(*self._bind(self._ACCEPT_CLAIM, claim=batch.claim_id, owner=owner))
        if not moved:
            return False
        if exceptions:
            self._write(batch, exceptions, owned=None)
        self._append_messages(batch, ids)
        return True

    _ACCEPT_CLAIM = (
        "UPDATE claims SET state = 'accepted' WHERE id = :claim AND owner = :owner "
        "AND state = 'open' RETURNING id"
    )

    def _accept_whole(self, batch: Batch, ids: dict[int, str], *, owner: str) -> bool:
        """A batch accepted whole: its claim closed ``accepted`` and its provider ids appended."""
        self._outcomes_commit_lazily()
        if not self._fetch(*self._bind(self._ACCEPT_CLAIM, claim=batch.claim_id, owner=owner)):
            return False
        self._append_messages(batch, ids)
        return True

    _OWNED = "EXISTS (SELECT 1 FROM claims c WHERE c.id = :claim AND c.owner = :owner AND c.state = 'open')"

    def _write(self, batch: Batch, outcomes: Sequence[Outcome], *, owned: str | None) -> int:
        """One ``UPDATE`` of the rows still pending; ``owned``: only while the claim is this owner's."""
        guard = f" AND {self._OWNED}" if owned is not None else ""
        written = self._fetch(
            *self._bind(
                self._write_sql(guard),
                **self._write_params(outcomes),
                now=self._time(utcnow()),
                owner=owned,
                claim=batch.claim_id,
            )
        )
        ids = {row[0] for row in written}
        self._append_messages(batch, _message_ids(outcomes, only=ids))
        return len(ids)

    def _write_sql(self, guard: str) -> str:
        return (
            "UPDATE deliveries SET state = r.value ->> 1, attempts = attempts + 1, "
            "error = r.value ->> 2, updated_at = :now "
            "FROM json_each(:rows) r WHERE deliveries.id = r.value ->> 0 AND deliveries.state = 'pending'"
            f"{guard} RETURNING deliveries.id"
        )

    def _write_params(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        return {"rows": orjson.dumps([[o.delivery_id, o.state, o.error] for o in outcomes]).decode()}

    def _append_messages(self, batch: Batch, ids: dict[int, str]) -> None:
        """The providers' ids of a batch's accepted deliveries: one row appended, whatever the size."""
        if ids:
            self.conn.exec_driver_sql(
                *self._bind(
                    "INSERT INTO batch_message_ids (send_id, ids) VALUES (:send, :ids)",
                    send=batch.send_id,
                    ids=_ids_json(ids),
                )
            )

    def close(self, batch: Batch, *, owner: str) -> None:
        """Every row of the claim has its outcome: the claim is done."""
        self._outcomes_commit_lazily()
        self._set_claim(batch, owner, "state = 'done'")

    def renew(self, batch: Batch, *, owner: str, lease: dt.timedelta) -> None:
        """Extend the lease (before a retry that may take a while): one row, whatever the batch."""
        self._set_claim(batch, owner, "expires_at = :expires", expires=self._time(utcnow() + lease))

    def release(self, batch: Batch, *, owner: str) -> None:
        """Hand the claim back: its rows still pending were not sent, and the next worker takes it."""
        self._set_claim(batch, owner, "state = 'released', owner = NULL, expires_at = NULL")

    def _set_claim(self, batch: Batch, owner: str, assignments: str, **params: Any) -> None:
        self.conn.exec_driver_sql(
            *self._bind(
                f"UPDATE claims SET {assignments} WHERE id = :claim AND owner = :owner AND state = 'open'",
                claim=batch.claim_id,
                owner=owner,
                **params,
            )
        )

    def lease_owners(self, send_id: int) -> list[str]:
        """Who holds open claims of this send."""
        rows = self._fetch(
            *self._bind(
                "SELECT DISTINCT owner FROM claims WHERE send_id = :send AND state = 'open'", send=send_id
            )
        )
        return [owner for (owner,) in rows if owner]

    def expire(self, send_id: int, dead_owners: Sequence[str] = ()) -> int:
        """Open claims past their lease, or of workers known dead: their pending rows -> ``unknown``.

        Returns how many deliveries became unknown.
        """
        expired = self._fetch(
            *self._bind(
                "UPDATE claims SET state = 'expired' WHERE send_id = :send AND state = 'open' "
                f"AND (expires_at < :now OR owner IN {self._json_texts.format(':dead')}) "
                "RETURNING after_id, through_id",
                send=send_id,
                now=self._time(utcnow()),
                dead=json.dumps(list(dead_owners)),
            )
        )
        return self._settle_pending(
            send_id,
            expired,
            "state = 'unknown', error = 'the worker stopped while sending; it may or may not have been sent'",
        )

    def _settle_pending(self, send_id: int, ranges: Sequence[Any], assignments: str) -> int:
        """Write the rows still pending in each (after id, through id] range; how many changed."""
        changed = 0
        for after_id, through_id in ranges:
            changed += self.conn.exec_driver_sql(
                *self._bind(
                    f"UPDATE deliveries SET {assignments}, updated_at = :now "
                    "WHERE send_id = :send AND id > :after AND id <= :through AND state = 'pending'",
                    now=self._time(utcnow()),
                    send=send_id,
                    after=after_id,
                    through=through_id,
                )
            ).rowcount
        return changed

    def retry_unknown(self, send_id: int) -> int:
        """The editor's decision: resend the ``unknown`` rows (someone may get it twice).

        Their claims are handed out again; a released claim sends only its rows still pending. An
        ``accepted`` claim's pending rows are accepted: before such a claim is handed out again
        they are written as accepted, so it resends only its unknown ones.
        """
        with_unknown = (
            "EXISTS (SELECT 1 FROM deliveries d WHERE d.send_id = :send AND d.id > claims.after_id "
            "AND d.id <= claims.through_id AND d.state = 'unknown')"
        )
        accepted = self._fetch(
            *self._bind(
                "UPDATE claims SET state = 'done' WHERE send_id = :send AND state = 'accepted' "
                f"AND {with_unknown} RETURNING after_id, through_id",
                send=send_id,
            )
        )
        self._settle_pending(send_id, accepted, "state = 'accepted', attempts = attempts + 1")
        self.conn.exec_driver_sql(
            *self._bind(
                "UPDATE claims SET state = 'released', owner = NULL, expires_at = NULL "
                f"WHERE send_id = :send AND state IN ('done', 'expired') AND {with_unknown}",
                send=send_id,
            )
        )
        return int(
            self.conn.execute(
                update(Delivery)
                .where(self._of_send(send_id), Delivery.state == DeliveryState.UNKNOWN)
                .values(state=DeliveryState.PENDING, error=None)
            ).rowcount
        )

    def counts(self, send_id: int) -> SendCounts:
        by_state = dict.fromkeys((s.value for s in DeliveryState), 0)
        for state, n in self.conn.execute(
            select(Delivery.state, func.count()).where(self._of_send(send_id)).group_by(Delivery.state)
        ):
            by_state[str(state)] = n
        # Pending rows of open claims are in flight (``sending`` is reported, not stored); of
        # accepted claims, accepted (the batch was recorded on its claim).
        for claim_state, n in self._fetch(
            *self._bind(
                "SELECT c.state, count(*) FROM claims c JOIN deliveries d ON d.send_id = c.send_id "
                "AND d.id > c.after_id AND d.id <= c.through_id "
                "WHERE c.send_id = :send AND c.state IN ('open', 'accepted') AND d.state = 'pending' "
                "GROUP BY c.state",
                send=send_id,
            )
        ):
            as_state = "sending" if claim_state == ClaimState.OPEN else DeliveryState.ACCEPTED.value
            by_state[as_state] += n
            by_state["pending"] -= n
        reasons = {
            str(error or "unknown reason"): n
            for error, n in self.conn.execute(
                select(Delivery.error, func.count())
                .where(self._of_send(send_id), Delivery.state == DeliveryState.FAILED)
                .group_by(Delivery.error)
                .order_by(func.count().desc())
            )
        }
        return SendCounts(send_id, by_state, reasons)

    def unknown_recipients(self, send_id: int, limit: int = 100) -> list[tuple[int, str | None, str | None]]:
        """(delivery id, address or None if forgotten, error) of the send's ``unknown`` rows."""
        rows = self.conn.execute(
            select(Delivery.id, Subscriber.email, Delivery.error)
            .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(self._of_send(send_id), Delivery.state == DeliveryState.UNKNOWN)
            .order_by(Delivery.id)
            .limit(limit)
        ).all()
        return [(i, e, err) for i, e, err in rows]

    def deliveries(self, send_id: int | None = None) -> list[DeliveryRecord]:
        """Every delivery of the send (of every send: None) in id order, each state read through
        its claim as :meth:`counts` reads it, with its provider id from its batch's row."""
        where = "" if send_id is None else f"WHERE {self._OF_SEND.format(d='d')} "
        rows = self._fetch(
            *self._bind(
                "SELECT d.id, d.subscriber_id, s.email, CASE WHEN d.state <> 'pending' THEN d.state "
                "WHEN c.state = 'accepted' THEN 'accepted' WHEN c.state = 'open' THEN 'sending' "
                "ELSE 'pending' END, d.error, d.attempts "
                "FROM deliveries d LEFT JOIN claims c ON c.send_id = d.send_id AND d.id > c.after_id "
                "AND d.id <= c.through_id AND c.state IN ('open', 'accepted') "
                f"LEFT JOIN subscribers s ON s.id = d.subscriber_id {where}ORDER BY d.id",
                send=send_id,
            )
        )
        message_ids = self._stored_message_ids(send_id)
        return [
            DeliveryRecord(i, sub, email, DeliveryState(state), message_ids.get(i), err, attempts)
            for i, sub, email, state, err, attempts in rows
        ]

    def _stored_message_ids(self, send_id: int | None) -> dict[int, str]:
        """Delivery id to provider id, as recorded for the send's batches (every send's: None)."""
        where = "" if send_id is None else " WHERE send_id = :send"
        out: dict[int, str] = {}
        for (ids,) in self._fetch(*self._bind(f"SELECT ids FROM batch_message_ids{where}", send=send_id)):
            out.update((int(key), value) for key, value in orjson.loads(ids).items())
        return out

    # -- helpers ---------------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Any) -> list[Any]:
        return driver_rows(self.conn, sql, params)

    def _bind(self, sql: str, **params: Any) -> tuple[str, Any]:
        """``:name`` placeholders in the driver's own style (qmark for sqlite3)."""
        names: list[str] = []

        def sub(match: Any) -> str:
            names.append(match.group(1))
            return "?"

        converted = re.sub(r"(?<!:):([a-z_]+)", sub, sql)
        return converted, tuple(params[name] for name in names)


class PostgresLedger(Ledger):
    _for_update = " FOR UPDATE"
    _skip_locked = " FOR UPDATE SKIP LOCKED"
    _json_texts = "(SELECT json_array_elements_text(CAST({} AS json)))"

    def _time(self, value: dt.datetime) -> Any:
        return value

    def _after_snapshot(self) -> None:
        # A snapshot can multiply the table's size in one statement. Until autovacuum's next
        # ANALYZE the planner still believes it nearly empty, and recorded every batch with a
        # sequential scan of all deliveries (64 ms instead of 3 for 500 rows at 200,000 rows).
        # The same holds for a list imported minutes ago: each claim joined its 500 rows to the
        # subscribers by hashing the whole table (19 ms a batch instead of 1). ANALYZE samples a
        # fixed number of rows, so both take a fraction of a second at a million.
        self.conn.exec_driver_sql("ANALYZE deliveries, subscribers")

    # The sequence gives each session's values in increasing order whatever other sessions take
    # (even with a cache), so this transaction's rows lie after the value it takes here and up to
    # the last one it took. The one value taken here is never used: a gap of one id per send.
    _SEQUENCE = "pg_get_serial_sequence('deliveries', 'id')"

    def _id_floor(self) -> int:
        return int(self.conn.exec_driver_sql(f"SELECT nextval({self._SEQUENCE})").scalar_one())

    def _id_ceiling(self) -> int:
        return int(self.conn.exec_driver_sql(f"SELECT currval({self._SEQUENCE})").scalar_one())

    def _before_claim(self) -> None:
        # A claimed range is a few hundred rows: each one's subscriber is one primary-key probe.
        # The planner's costs (random_page_cost for pages that are all in memory) and psycopg's
        # prepared statements, whose generic plan guesses the range's size, made it prefer a
        # hash join over the whole subscribers table at some list sizes: 29 ms a batch instead
        # of 1 at 100,000 subscribers. For this transaction only, nested loops are the only way.
        # And no JIT: a range whose bounds come from the claim taken in the same statement is
        # guessed at a ninth of the table, a cost above ``jit_above_cost``, and compiling the
        # query took 15 ms at 200,000 rows and far more at a million, where running it takes 1.
        self.conn.exec_driver_sql(
            "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), "
            "set_config('jit', 'off', true)"
        )

    def _take_released(self, send_id: int, owner: str, expires: Any) -> _Taken | None:
        # One statement, not two: the claim taken and its rows read. Every statement of a
        # transaction is a round trip to a server sharing the cores with the workers, and cost
        # about as much as the work it carried (see ``close_accepted``).
        taken = self._TAKE_RELEASED.format(skip_locked=self._skip_locked)
        found = self._fetch(
            *self._bind(
                f"WITH taken AS ({taken}) SELECT t.id, t.after_id, t.through_id, {self._ROW_COLUMNS} "
                f"FROM taken t LEFT JOIN deliveries d ON "
                f"{self._PENDING_IN.format(after='t.after_id', through='t.through_id')} "
                "LEFT JOIN subscribers s ON s.id = d.subscriber_id ORDER BY d.id",
                owner=owner,
                expires=expires,
                send=send_id,
            )
        )
        if not found:
            return None
        claim_id, after_id, through_id = found[0][:3]
        return claim_id, after_id, through_id, [tuple(row[3:]) for row in found if row[3] is not None]

    def _accept_whole(self, batch: Batch, ids: dict[int, str], *, owner: str) -> bool:
        # One statement where there were four (SET LOCAL, the claim, the ids; and BEGIN before
        # them): a worker waited on these round trips a tenth of its time, and the server spent
        # its own CPU on each. ``lazy`` is the SET LOCAL of ``_outcomes_commit_lazily``, read only
        # when the claim moved: otherwise nothing is written.
        moved = self._fetch(
            *self._bind(
                f"WITH moved AS ({self._ACCEPT_CLAIM}), "
                "lazy AS (SELECT set_config('synchronous_commit', 'off', true)) "
                "INSERT INTO batch_message_ids (send_id, ids) SELECT :send, :ids FROM moved, lazy "
                "RETURNING id",
                claim=batch.claim_id,
                owner=owner,
                send=batch.send_id,
                ids=_ids_json(ids),
            )
        )
        return bool(moved)

    def _outcomes_commit_lazily(self) -> None:
        # Outcomes commit without waiting for their WAL flush (claims still wait for theirs). If
        # the server crashes, the last outcomes recorded before it may be lost; their claim,
        # durable, is then still open, expires, and its rows become ``unknown``: never resent
        # without the editor, so never sent twice. The flush wait was half of each batch's time.
        self.conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def _write_sql(self, guard: str) -> str:
        return (
            "UPDATE deliveries d SET state = r.state, attempts = d.attempts + 1, error = r.err, "
            "updated_at = :now FROM unnest(:ids::bigint[], :states::text[], :errs::text[]) "
            f"AS r(id, state, err) WHERE d.id = r.id AND d.state = 'pending'{guard} RETURNING d.id"
        )

    def _write_params(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        return {
            "ids": [o.delivery_id for o in outcomes],
            "states": [str(o.state) for o in outcomes],
            "errs": [o.error for o in outcomes],
        }

    def _bind(self, sql: str, **params: Any) -> tuple[str, Any]:
        return re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", sql), params


def _ids_json(ids: dict[int, str]) -> str:
    return orjson.dumps(ids, option=orjson.OPT_NON_STR_KEYS).decode()


def _message_ids(outcomes: Sequence[Outcome], only: set[int] | None = None) -> dict[int, str]:
    """Delivery id to provider id, of the accepted outcomes that carry one; ``only`` those rows."""
    return {
        o.delivery_id: o.message_id
        for o in outcomes
        if o.state is DeliveryState.ACCEPTED and o.message_id and (only is None or o.delivery_id in only)
    }


def ledger_for(conn: Connection) -> Ledger:
    return PostgresLedger(conn) if conn.dialect.name == "postgresql" else Ledger(conn)


def _send(row: Any) -> SendInfo:
    return SendInfo(**row._mapping)
