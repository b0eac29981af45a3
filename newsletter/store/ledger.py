"""The send ledger: sends, one delivery row per recipient, and the statements that move them.

Every write is set-based. A send's audience is snapshotted by one ``INSERT … SELECT`` in the same
transaction that creates the send, so later sign-ups never join a running send. A worker claims a
batch with one ``UPDATE … RETURNING`` (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers
share a send without waiting on each other; on SQLite the ``BEGIN IMMEDIATE`` transaction makes the
claim the only writer) and records the provider's answers for the whole batch with one more
``UPDATE`` from a list of (id, state, message id, error). Nothing here runs a query per recipient.

A claimed row carries a lease (owner and expiry). A row still ``sending`` after its lease expired
belonged to a worker that stopped or crashed while the request may have left: it becomes
``unknown``, and is resent only when the editor asks (``send --retry-unknown``), because resending
could mail the person twice.

Suppressions are honoured twice: by the snapshot, and again at every claim, so an unsubscribe,
bounce, complaint or ``forget`` that lands mid-send keeps the remaining batches from that person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, func, insert, literal, select, update

from newsletter.errors import NewsletterError
from newsletter.store.models import (
    Delivery,
    DeliveryState,
    Send,
    SendState,
    Subscriber,
    Suppression,
    utcnow,
)
from newsletter.store.subscribers import audience

__all__ = [
    "Claimed",
    "Ledger",
    "Outcome",
    "SendCounts",
    "SendInfo",
    "SendNotFound",
    "ledger_for",
]

#: How often a recipient is tried before a retryable refusal counts as a failure.
MAX_ATTEMPTS = 5


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


class Claimed(NamedTuple):
    """A claimed delivery with what the message needs; ``email`` is None if the person left."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str
    attempts: int


class Outcome(NamedTuple):
    """What to record for one delivery: a state among accepted/failed/pending/unknown."""

    delivery_id: int
    state: DeliveryState
    message_id: str | None = None
    error: str | None = None


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


def _sha256_hex(value: str | None) -> str | None:
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


class Ledger:
    """The SQLite implementation; :class:`PostgresLedger` overrides what differs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- dialect differences ---------------------------------------------------------------------

    def _address_hash(self, column: Any) -> ColumnElement[str]:
        """SQL for ``privacy.address_hash`` of an address column (a function we register)."""
        dbapi: Any = self.conn.connection.dbapi_connection
        dbapi.create_function("newsletter_sha256", 1, _sha256_hex, deterministic=True)
        return func.newsletter_sha256(column)

    def _time(self, value: dt.datetime) -> Any:
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")

    def _claim_sql(self) -> str:
        return (
            "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, lease_owner = :owner, "
            "lease_expires_at = :expires, updated_at = :now WHERE id IN (SELECT id FROM deliveries "
            "WHERE send_id = :send AND state = 'pending' ORDER BY id LIMIT :limit) "
            "RETURNING id, subscriber_id, attempts"
        )

    def _ids_param(self, ids: Sequence[int]) -> Any:
        return json.dumps(list(ids))

    _IDS = "(SELECT value FROM json_each(:ids))"

    def _record_sql(self) -> str:
        return (
            "UPDATE deliveries SET state = r.value ->> 1, "
            "provider_message_id = coalesce(r.value ->> 2, provider_message_id), "
            "error = r.value ->> 3, lease_owner = NULL, lease_expires_at = NULL, updated_at = :now "
            "FROM json_each(:rows) r WHERE deliveries.id = r.value ->> 0 AND deliveries.lease_owner = :owner"
        )

    def _record_param(self, outcomes: Sequence[Outcome]) -> Any:
        return json.dumps([[o.delivery_id, str(o.state), o.message_id, o.error] for o in outcomes])

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
        suppressed = (
            select(literal(1))
            .select_from(Suppression)
            .where(Suppression.address_hash == self._address_hash(Subscriber.email_normalized))
            .exists()
        )
        return audience(segment or None).where(~suppressed)

    def create_send(
        self,
        *,
        issue_file: str,
        issue_date: dt.date,
        segment: str,
        subject: str,
        content_hash: str,
        provider: str,
    ) -> SendInfo:
        """Create the send and snapshot its audience in the caller's transaction."""
        now = utcnow()
        send_id = self.conn.execute(
            insert(Send)
            .values(
                issue_file=issue_file,
                issue_date=issue_date,
                segment=segment,
                subject=subject,
                content_hash=content_hash,
                provider=provider,
                state=SendState.SENDING,
                recipients=0,
                created_at=now,
                started_at=now,
            )
            .returning(Send.id)
        ).scalar_one()
        eligible = self._eligible(segment).subquery()
        # No ORDER BY: the scan's order is the subscribers' id order in practice, and claims go
        # by delivery id whatever it is; sorting a million ids spilled to disk on PostgreSQL.
        snapshot = select(
            literal(send_id),
            eligible.c.id,
            literal(DeliveryState.PENDING.value),
            literal(0),
        )
        self.conn.execute(
            insert(Delivery).from_select(["send_id", "subscriber_id", "state", "attempts"], snapshot)
        )
        # Counted, not taken from rowcount: drivers may report -1 for INSERT ... SELECT.
        count = self.conn.execute(
            select(func.count()).select_from(Delivery).where(Delivery.send_id == send_id)
        ).scalar_one()
        self.conn.execute(update(Send).where(Send.id == send_id).values(recipients=count))
        return self.get_send(send_id)

    def set_state(
        self, send_id: int, state: SendState, *, error: str | None = None, only_from: Sequence[SendState] = ()
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
        """Mark the send finished if nothing is pending or in flight; True if it is finished now."""
        open_rows = (
            select(literal(1))
            .select_from(Delivery)
            .where(Delivery.send_id == send_id, Delivery.state.in_(["pending", "sending"]))
            .exists()
        )
        moved = self.conn.execute(
            update(Send)
            .where(Send.id == send_id, Send.state == SendState.SENDING, ~open_rows)
            .values(state=SendState.FINISHED, finished_at=utcnow(), error=None)
        ).rowcount
        return bool(moved)

    def running_sends(self) -> list[int]:
        query = select(Send.id).where(Send.state == SendState.SENDING).order_by(Send.id)
        return list(self.conn.execute(query).scalars())

    # -- deliveries ------------------------------------------------------------------------------

    def claim(self, send_id: int, limit: int, *, owner: str, lease: dt.timedelta) -> list[Claimed]:
        """Take up to ``limit`` pending deliveries of the send under a lease, in id order.

        Rows whose subscriber left, was forgotten or got suppressed since the snapshot are marked
        ``suppressed`` here and not returned.
        """
        now = utcnow()
        rows = self._claim_rows(
            owner=owner, expires=self._time(now + lease), now=self._time(now), send=send_id, limit=limit
        )
        out = [
            Claimed(delivery_id, subscriber_id, email, name or "", attempts)
            for delivery_id, subscriber_id, attempts, email, name, eligible in rows
            if eligible
        ]
        if len(out) < len(rows):
            gone = [
                Outcome(row[0], DeliveryState.SUPPRESSED, None, "left or suppressed after the snapshot")
                for row in rows
                if not row[5]
            ]
            self.record(gone, owner=owner)
        return out

    def _claim_rows(self, **params: Any) -> list[tuple[int, int, int, str, str | None, bool]]:
        """(delivery id, subscriber id, attempts, email, name, still eligible) of a fresh claim."""
        claimed = self._fetch(*self._bind(self._claim_sql(), **params))
        if not claimed:
            return []
        self._address_hash(Subscriber.email_normalized)  # registers the function on this connection
        details = {
            row[0]: row[1:]
            for row in self._fetch(
                "SELECT d.id, s.email, s.name, s.status = 'active' AND NOT EXISTS (SELECT 1 FROM "
                "suppressions p WHERE p.address_hash = newsletter_sha256(s.email_normalized)) "
                "FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id "
                "WHERE d.id IN (SELECT value FROM json_each(?))",
                (json.dumps([row[0] for row in claimed]),),
            )
        }
        out = []
        for delivery_id, subscriber_id, attempts in sorted(claimed):
            email, name, eligible = details.get(delivery_id, ("", None, False))
            out.append((delivery_id, subscriber_id, attempts, email, name, bool(eligible)))
        return out

    def record(self, outcomes: Sequence[Outcome], *, owner: str) -> int:
        """Write a batch's outcomes in one statement; only rows this owner still holds change."""
        if not outcomes:
            return 0
        result = self.conn.exec_driver_sql(
            *self._bind(
                self._record_sql(), rows=self._record_param(outcomes), now=self._time(utcnow()), owner=owner
            )
        )
        return int(result.rowcount)

    def renew_lease(self, ids: Sequence[int], *, owner: str, lease: dt.timedelta) -> None:
        """Extend the lease of rows still in flight (before a retry that may take a while)."""
        if ids:
            self.conn.execute(
                update(Delivery)
                .where(Delivery.id.in_(list(ids)), Delivery.lease_owner == owner)
                .values(lease_expires_at=utcnow() + lease)
            )

    def release(self, ids: Sequence[int], *, owner: str, error: str | None = None) -> None:
        """Hand claimed rows back as pending: nothing was sent (the send paused or stopped)."""
        if ids:
            self.conn.execute(
                update(Delivery)
                .where(Delivery.id.in_(list(ids)), Delivery.lease_owner == owner)
                .values(
                    state=DeliveryState.PENDING,
                    attempts=Delivery.attempts - 1,
                    lease_owner=None,
                    lease_expires_at=None,
                    error=error,
                    updated_at=utcnow(),
                )
            )

    def expire_leases(self, send_id: int) -> int:
        """Rows still ``sending`` after their lease: their worker died mid-request. -> ``unknown``."""
        return int(
            self.conn.execute(
                update(Delivery)
                .where(
                    Delivery.send_id == send_id,
                    Delivery.state == DeliveryState.SENDING,
                    Delivery.lease_expires_at < utcnow(),
                )
                .values(
                    state=DeliveryState.UNKNOWN,
                    error="the worker stopped while sending; it may or may not have been sent",
                    updated_at=utcnow(),
                )
            ).rowcount
        )

    def lease_owners(self, send_id: int) -> list[str]:
        """Who holds rows of this send in flight."""
        query = (
            select(Delivery.lease_owner)
            .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.SENDING)
            .distinct()
        )
        return [owner for owner in self.conn.execute(query).scalars() if owner]

    def expire_owners(self, send_id: int, owners: Sequence[str]) -> int:
        """The rows in flight of workers known to be dead: ``unknown``, whatever their lease says."""
        return int(
            self.conn.execute(
                update(Delivery)
                .where(
                    Delivery.send_id == send_id,
                    Delivery.state == DeliveryState.SENDING,
                    Delivery.lease_owner.in_(list(owners)),
                )
                .values(
                    state=DeliveryState.UNKNOWN,
                    error="the worker died while sending; it may or may not have been sent",
                    updated_at=utcnow(),
                )
            ).rowcount
        )

    def retry_unknown(self, send_id: int) -> int:
        """The editor's decision: resend the ``unknown`` rows (someone may get it twice)."""
        return int(
            self.conn.execute(
                update(Delivery)
                .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.UNKNOWN)
                .values(state=DeliveryState.PENDING, lease_owner=None, lease_expires_at=None)
            ).rowcount
        )

    def counts(self, send_id: int) -> SendCounts:
        by_state = dict.fromkeys((s.value for s in DeliveryState), 0)
        for state, n in self.conn.execute(
            select(Delivery.state, func.count()).where(Delivery.send_id == send_id).group_by(Delivery.state)
        ):
            by_state[str(state)] = n
        reasons = {
            str(error or "unknown reason"): n
            for error, n in self.conn.execute(
                select(Delivery.error, func.count())
                .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.FAILED)
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
            .where(Delivery.send_id == send_id, Delivery.state == DeliveryState.UNKNOWN)
            .order_by(Delivery.id)
            .limit(limit)
        ).all()
        return [(i, e, err) for i, e, err in rows]

    # -- helpers ---------------------------------------------------------------------------------

    def _fetch(self, sql: str, params: Any) -> list[Any]:
        """The driver's own rows (plain tuples): SQLAlchemy Row objects cost more than the query
        for the thousands of rows a claim returns. Executed through the Connection, so its
        transaction bookkeeping stays right."""
        result = self.conn.exec_driver_sql(sql, params)
        try:
            return list(result.cursor.fetchall()) if result.returns_rows and result.cursor else []
        finally:
            result.close()

    def _bind(self, sql: str, **params: Any) -> tuple[str, Any]:
        """``:name`` placeholders in the driver's own style (qmark for sqlite3)."""
        names: list[str] = []

        def sub(match: Any) -> str:
            names.append(match.group(1))
            return "?"

        converted = re.sub(r"(?<!:):([a-z_]+)", sub, sql)
        return converted, tuple(params[name] for name in names)


class PostgresLedger(Ledger):
    def _address_hash(self, column: Any) -> ColumnElement[str]:
        return func.encode(func.sha256(func.convert_to(column, "UTF8")), "hex")

    def _time(self, value: dt.datetime) -> Any:
        return value

    def _claim_rows(self, **params: Any) -> list[tuple[int, int, int, str, str | None, bool]]:
        # One round trip: claim, join the subscriber, and check eligibility in the same statement.
        sql = (
            "WITH c AS (SELECT id FROM deliveries WHERE send_id = :send AND state = 'pending' "
            "ORDER BY id LIMIT :limit FOR UPDATE SKIP LOCKED), "
            "u AS (UPDATE deliveries d SET state = 'sending', attempts = d.attempts + 1, "
            "lease_owner = :owner, lease_expires_at = :expires, updated_at = :now FROM c "
            "WHERE d.id = c.id RETURNING d.id, d.subscriber_id, d.attempts) "
            "SELECT u.id, u.subscriber_id, u.attempts, s.email, s.name, "
            "coalesce(s.status = 'active' AND NOT EXISTS (SELECT FROM suppressions p WHERE "
            "p.address_hash = encode(sha256(convert_to(s.email_normalized, 'UTF8')), 'hex')), false) "
            "FROM u LEFT JOIN subscribers s ON s.id = u.subscriber_id ORDER BY u.id"
        )
        return self._fetch(*self._bind(sql, **params))

    def _record_sql(self) -> str:
        return (
            "UPDATE deliveries d SET state = r.state, "
            "provider_message_id = coalesce(r.mid, d.provider_message_id), error = r.err, "
            "lease_owner = NULL, lease_expires_at = NULL, updated_at = :now "
            "FROM unnest(:ids::bigint[], :states::text[], :mids::text[], :errs::text[]) "
            "AS r(id, state, mid, err) "
            "WHERE d.id = r.id AND d.lease_owner = :owner"
        )

    def record(self, outcomes: Sequence[Outcome], *, owner: str) -> int:
        if not outcomes:
            return 0
        result = self.conn.exec_driver_sql(
            *self._bind(
                self._record_sql(),
                ids=[o.delivery_id for o in outcomes],
                states=[str(o.state) for o in outcomes],
                mids=[o.message_id for o in outcomes],
                errs=[o.error for o in outcomes],
                now=utcnow(),
                owner=owner,
            )
        )
        return int(result.rowcount)

    def _bind(self, sql: str, **params: Any) -> tuple[str, Any]:
        return re.sub(r"(?<!:):([a-z_]+)", r"%(\1)s", sql), params


def ledger_for(conn: Connection) -> Ledger:
    return PostgresLedger(conn) if conn.dialect.name == "postgresql" else Ledger(conn)


def _send(row: Any) -> SendInfo:
    return SendInfo(**row._mapping)
