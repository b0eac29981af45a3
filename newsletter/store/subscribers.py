"""``SubscriberRepository``: every query about individual subscribers, lists, counts and export.

It takes a session and never commits; the caller (a CLI command, later a web request) owns the
transaction. Two rules run through it: a person who left (unsubscribed, bounced, complained) or was
forgotten is never reactivated except by their own explicit new consent, and leaving always writes a
suppression hash, which is what survives ``forget``.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, case, delete, func, literal, select, text, update
from sqlalchemy.orm import Session, selectinload

from newsletter.errors import NewsletterError
from newsletter.store.addresses import normalize
from newsletter.store.bulk import bulk_for
from newsletter.store.importer import escape_cell
from newsletter.store.models import (
    LEFT_STATUSES,
    Delivery,
    Subscriber,
    SubscriberStatus,
    SubscriberTag,
    Suppression,
    SuppressionReason,
    Tag,
    utcnow,
)
from newsletter.store.privacy import address_hash
from newsletter.store.segments import audience_filter, compile_segment, normalize_tag

__all__ = [
    "EXPORT_COLUMNS",
    "TAG_SEPARATOR",
    "AlreadySubscribed",
    "NotFound",
    "SignupRequest",
    "SubscriberRepository",
    "Suppressed",
    "audience",
    "leave_all",
]

TAG_SEPARATOR = ";"
#: Addresses per ``IN (...)`` list in :func:`leave_all` (SQLite binds at most 32,766 per statement).
LEAVE_CHUNK = 500
#: What ``forget`` leaves of a delivery error that named the address.
ERASED = "(erased: it named a forgotten address)"
EXPORT_COLUMNS = ("email", "name", "status", "tags")


class NotFound(NewsletterError):
    """No subscriber has this address."""


class AlreadySubscribed(NewsletterError):
    """``add`` of an address that is already on the list."""


class Suppressed(NewsletterError):
    """The address left or was forgotten; only the person's own new consent may bring it back."""


@dataclass(frozen=True)
class ForgetResult:
    erased: bool  #: a subscriber row was deleted
    reason: SuppressionReason  #: the suppression that now stands for the address


@dataclass(frozen=True)
class SignupRequest:
    """An outstanding double opt-in confirmation: whom to mail, and the nonce its link carries."""

    subscriber_id: int
    email: str
    nonce: str


def audience(segment: str | None = None) -> Select[Any]:
    """Ids of the subscribers a send goes to: active ones whose address no suppression names,
    optionally narrowed by a segment.

    The one definition of "would receive the issue": the ledger feeds it to one
    ``INSERT ... SELECT`` to snapshot a send's audience, and ``subscribers count`` counts it.
    """
    suppressed = (
        select(literal(1))
        .select_from(Suppression)
        .where(Suppression.address_hash == Subscriber.address_hash)
        .exists()
    )
    where: ColumnElement[bool] = (Subscriber.status == SubscriberStatus.ACTIVE) & ~suppressed
    if segment:
        where = where & compile_segment(segment)
    return select(Subscriber.id).where(where)


def leave_all(
    conn: Connection,
    leaving: Mapping[str, tuple[str, SubscriberStatus]],
    *,
    now: dt.datetime | None = None,
) -> None:
    """Every address in ``leaving`` (normalised address -> (its hash, how it leaves)) leaves the list.

    The one rule of leaving, for one address or thousands: a subscriber who has not left takes the
    new status and the time; one who already left keeps the first reason (a bounce never rewrites
    an unsubscribe, and nothing but new consent undoes either); and the address is suppressed with
    the reason the subscriber now has, or, for an address with no row (forgotten, never on the list,
    a test send), with the given one. An address already suppressed keeps its suppression.

    Set-based, for the webhooks that carry a thousand events and the one-click clicks written
    together: per status, one ``UPDATE ... WHERE email_normalized IN (...)`` and one read-back per
    :data:`LEAVE_CHUNK` addresses, then one insert of all the suppressions.
    """
    if not leaving:
        return
    now = utcnow() if now is None else now
    by_status: dict[SubscriberStatus, list[str]] = {}
    for normalized, (_, status) in leaving.items():
        if status not in LEFT_STATUSES:
            raise NewsletterError(f"{status} is not a way of leaving")
        by_status.setdefault(status, []).append(normalized)
    for status, addresses in by_status.items():
        for start in range(0, len(addresses), LEAVE_CHUNK):
            conn.execute(
                update(Subscriber)
                .where(
                    Subscriber.email_normalized.in_(addresses[start : start + LEAVE_CHUNK]),
                    Subscriber.status.not_in(LEFT_STATUSES),
                )
                .values(status=status, unsubscribed_at=now)
            )
    addresses = list(leaving)
    now_left: dict[str, str] = {}
    for start in range(0, len(addresses), LEAVE_CHUNK):
        rows = conn.execute(
            select(Subscriber.email_normalized, Subscriber.status).where(
                Subscriber.email_normalized.in_(addresses[start : start + LEAVE_CHUNK])
            )
        )
        now_left.update((normalized, str(status)) for normalized, status in rows)
    bulk_for(conn).suppress(
        [(digest, now_left.get(normalized, str(status))) for normalized, (digest, status) in leaving.items()],
        now=now,
    )


class SubscriberRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    # -- single subscribers ------------------------------------------------------------------

    def get_by_email(self, email: str) -> Subscriber | None:
        normalized = normalize(email).normalized
        return self.session.scalars(
            select(Subscriber)
            .where(Subscriber.email_normalized == normalized)
            .options(selectinload(Subscriber.tags))
        ).one_or_none()

    def get_suppression(self, email: str) -> Suppression | None:
        digest = address_hash(normalize(email).normalized)
        return self.session.scalars(
            select(Suppression).where(Suppression.address_hash == digest)
        ).one_or_none()

    def tags_by_name(self, names: Iterable[str]) -> list[Tag]:
        """The tags with these (normalised) names, creating the missing ones."""
        wanted = sorted({normalize_tag(name) for name in names})
        if not wanted:
            return []
        found = {t.name: t for t in self.session.scalars(select(Tag).where(Tag.name.in_(wanted)))}
        for name in wanted:
            if name not in found:
                found[name] = Tag(name=name)
                self.session.add(found[name])
        return [found[name] for name in wanted]

    def add(
        self,
        email: str,
        *,
        name: str | None = None,
        tags: Sequence[str] = (),
        status: SubscriberStatus = SubscriberStatus.ACTIVE,
        source: str = "cli",
        consent_method: str = "cli",
        consent_ip: str | None = None,
        resubscribe: bool = False,
    ) -> Subscriber:
        """Add one subscriber with a consent record.

        A suppressed address is refused unless ``resubscribe`` says the person asked to come back;
        then the suppression is lifted and the old row, if any, is reused.
        """
        address = normalize(email)
        if status in LEFT_STATUSES:
            raise NewsletterError(f"cannot add a subscriber as {status}")
        existing = self.get_by_email(address.email)
        suppression = self.get_suppression(address.email)
        left = existing is not None and existing.status in LEFT_STATUSES
        if (suppression is not None or left) and not resubscribe:
            why: str | None = existing.status if existing is not None and left else None
            why = why or (suppression.reason if suppression is not None else None)
            raise Suppressed(
                f"{address.email} is suppressed ({why}); add --resubscribe only if they asked to come back"
            )
        if existing is not None and not left:
            raise AlreadySubscribed(f"{address.email} is already subscribed ({existing.status})")
        if suppression is not None:
            self.session.delete(suppression)
        now = utcnow()
        subscriber = existing or Subscriber(
            email=address.email,
            email_normalized=address.normalized,
            address_hash=address_hash(address.normalized),
            attributes={},
            created_at=now,
        )
        subscriber.name = name or subscriber.name
        subscriber.status = status
        subscriber.source = subscriber.source or source
        subscriber.confirmed_at = now if status is SubscriberStatus.ACTIVE else None
        subscriber.unsubscribed_at = None
        subscriber.consent_at = now
        subscriber.consent_method = consent_method
        subscriber.consent_ip = consent_ip
        subscriber.tags = sorted(
            {t.name: t for t in [*subscriber.tags, *self.tags_by_name(tags)]}.values(),
            key=lambda t: t.name,
        )
        if existing is None:
            self.session.add(subscriber)
        self.session.flush()
        return subscriber

    def _suppress(self, normalized: str, reason: SuppressionReason) -> Suppression:
        digest = address_hash(normalized)
        suppression = self.session.scalars(
            select(Suppression).where(Suppression.address_hash == digest)
        ).one_or_none()
        if suppression is None:
            suppression = Suppression(address_hash=digest, reason=reason, created_at=utcnow())
            self.session.add(suppression)
        return suppression

    def unsubscribe(self, email: str) -> Subscriber:
        """Mark the subscriber unsubscribed at once and record the suppression. Idempotent."""
        return self.leave(email, SubscriberStatus.UNSUBSCRIBED)

    def leave(self, email: str, status: SubscriberStatus) -> Subscriber:
        """Mark the subscriber as having left with ``status`` (unsubscribed, bounced, complained)
        and record the suppression. Idempotent: a subscriber who already left keeps the first
        reason, so a later bounce never rewrites an unsubscribe."""
        subscriber = self.get_by_email(email)
        if subscriber is None:
            raise NotFound(f"{email.strip()} is not a subscriber")
        self.session.flush()
        normalized = subscriber.email_normalized
        leave_all(self.session.connection(), {normalized: (address_hash(normalized), status)})
        self.session.refresh(subscriber, ["status", "unsubscribed_at"])
        return subscriber

    def suppress(self, email: str, reason: SuppressionReason) -> Suppression:
        """Suppress an address that may not be on the list (a provider reports a bounce of an
        address that was forgotten, or of a test send). An existing suppression stays as it is."""
        suppression = self._suppress(normalize(email).normalized, reason)
        self.session.flush()
        return suppression

    def forget(self, email: str) -> ForgetResult:
        """Erase everything about the address but its suppression hash (GDPR art. 17).

        An address that is not on the list is suppressed too: "forget me" also means "and never
        import me again".

        What this guarantees: once the caller commits, no query returns the address, its name,
        tags, attributes or consent record; only the SHA-256 of the normalised address remains, in
        ``suppressions``. What it does not do by itself: a deleted row's bytes stay in the database's
        files (page free space, index pages, SQLite's write-ahead log) until they are overwritten.
        ``newsletter.store.erasure.forget`` commits and then scrubs them (``secure_delete`` plus a
        WAL checkpoint on SQLite, ``VACUUM FULL`` on PostgreSQL); use it, not this method alone,
        for an erasure request. What nothing here can reach: backups, replicas, archived WAL and
        PostgreSQL's ``pg_wal`` keep the address until they are rotated or recycled.

        The send ledger keeps its rows (the counts of past sends stay right) but loses the person:
        their ``deliveries`` get no subscriber id, and an error text that names the address (a
        provider's "inactive recipient ...") is replaced.
        """
        normalized = normalize(email).normalized
        subscriber = self.session.scalars(
            select(Subscriber).where(Subscriber.email_normalized == normalized)
        ).one_or_none()
        reason = SuppressionReason.FORGOTTEN
        if subscriber is not None and subscriber.status in LEFT_STATUSES:
            reason = SuppressionReason(subscriber.status.value)
        suppression = self._suppress(normalized, reason)
        if subscriber is not None:
            names_them = func.lower(Delivery.error).contains(normalized, autoescape=True)
            self.session.execute(
                update(Delivery)
                .where(Delivery.subscriber_id == subscriber.id)
                .values(subscriber_id=None, error=case((names_them, ERASED), else_=Delivery.error))
                .execution_options(synchronize_session=False)
            )
            # Core delete: the FK cascade removes the tag links without loading them.
            self.session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
            self.session.expunge(subscriber)
        self.session.flush()
        return ForgetResult(erased=subscriber is not None, reason=suppression.reason)

    # -- double opt-in (the web sign-up) ------------------------------------------------------

    def request_signup(
        self, email: str, *, name: str | None, tags: Sequence[str], form_url: str | None
    ) -> SignupRequest | None:
        """Record a web sign-up as *pending* and return the confirmation to mail, or None when no
        mail may go: the address is already active, or is suppressed for any reason but its own
        unsubscribe (bounced, complained, forgotten, manual).

        A new address gets a pending row with the name and topics it asked for; a pending one keeps
        its row (a new name and topics replace the unconfirmed ones) and its outstanding nonce, so
        every confirmation mail it was sent works until one is used. An unsubscribed person stays
        unsubscribed (and suppressed) until they confirm: only that lifts the suppression.
        """
        address = normalize(email)
        existing = self.get_by_email(address.email)
        suppression = self.get_suppression(address.email)
        if existing is None:
            if suppression is not None:
                return None
            existing = Subscriber(
                email=address.email,
                email_normalized=address.normalized,
                address_hash=address_hash(address.normalized),
                attributes={},
                status=SubscriberStatus.PENDING,
                source="web",
                created_at=utcnow(),
                name=name or None,
            )
            existing.tags = self.tags_by_name(tags)
            self.session.add(existing)
        elif existing.status is SubscriberStatus.PENDING:
            if suppression is not None:
                return None
            existing.name = name or existing.name
            if tags:
                existing.tags = self.tags_by_name(tags)
        elif existing.status is SubscriberStatus.UNSUBSCRIBED:
            if suppression is not None and suppression.reason is not SuppressionReason.UNSUBSCRIBED:
                return None
        else:  # active (nothing to confirm), bounced or complained (no mail at all)
            return None
        existing.consent_form_url = form_url[:2000] if form_url else None
        existing.confirm_nonce = existing.confirm_nonce or secrets.token_hex(16)
        self.session.flush()
        return SignupRequest(existing.id, existing.email, existing.confirm_nonce)

    def outstanding_signup(self, subscriber_id: int, nonce: str) -> Subscriber | None:
        subscriber = self.session.get(Subscriber, subscriber_id)
        if subscriber is None or subscriber.confirm_nonce is None:
            return None
        if not secrets.compare_digest(subscriber.confirm_nonce, nonce):
            return None
        if subscriber.status not in (SubscriberStatus.PENDING, SubscriberStatus.UNSUBSCRIBED):
            return None
        return subscriber

    def confirm_signup(
        self,
        subscriber_id: int,
        nonce: str,
        *,
        ip: str | None,
        user_agent: str | None,
        text_version: str,
    ) -> bool:
        """Make the subscriber of an outstanding confirmation active and record their consent;
        False (and nothing changed) if the confirmation was used, cancelled or never existed."""
        subscriber = self.outstanding_signup(subscriber_id, nonce)
        if subscriber is None:
            return False
        suppression = self.get_suppression(subscriber.email)
        if suppression is not None:
            if suppression.reason is not SuppressionReason.UNSUBSCRIBED:
                return False
            self.session.delete(suppression)
        now = utcnow()
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = now
        subscriber.unsubscribed_at = None
        subscriber.consent_at = now
        subscriber.consent_method = "double opt-in"
        subscriber.consent_ip = ip[:45] if ip else None
        subscriber.consent_user_agent = user_agent[:500] if user_agent else None
        subscriber.consent_text = text_version[:100]
        subscriber.confirm_nonce = None
        self.session.flush()
        return True

    def cancel_signup(self, subscriber_id: int, nonce: str) -> bool:
        """"This wasn't me": delete the pending row of an outstanding confirmation (an unsubscribed
        person's row stays as it was, without the confirmation); False if there was none."""
        subscriber = self.outstanding_signup(subscriber_id, nonce)
        if subscriber is None:
            return False
        if subscriber.status is SubscriberStatus.PENDING:
            self.session.execute(delete(Subscriber).where(Subscriber.id == subscriber.id))
            self.session.expunge(subscriber)
        else:
            subscriber.confirm_nonce = None
        self.session.flush()
        return True

    def preferences_target(self, email: str) -> int | None:
        """The id of the subscriber whose preferences link may be mailed to ``email``: one who is
        active or unsubscribed and not suppressed for another reason; None for anyone else."""
        subscriber = self.get_by_email(email)
        if subscriber is None:
            return None
        if subscriber.status not in (SubscriberStatus.ACTIVE, SubscriberStatus.UNSUBSCRIBED):
            return None
        suppression = self.get_suppression(email)
        if suppression is not None and suppression.reason is not SuppressionReason.UNSUBSCRIBED:
            return None
        return subscriber.id

    # -- many subscribers --------------------------------------------------------------------

    def count(
        self,
        *,
        status: SubscriberStatus | None = None,
        tags: Sequence[str] = (),
        segment: str | None = None,
    ) -> int:
        where = audience_filter(status=status, tags=list(tags), segment=segment)
        return self.session.scalar(select(func.count()).select_from(Subscriber).where(where)) or 0

    def count_audience(self, *, tags: Sequence[str] = (), segment: str | None = None) -> int:
        """How many subscribers with every one of ``tags`` a send to ``segment`` would reach now."""
        query = audience(segment)
        if tags:
            query = query.where(audience_filter(tags=list(tags)))
        return self.session.scalar(select(func.count()).select_from(query.subquery())) or 0

    def counts_by_status(self) -> dict[SubscriberStatus, int]:
        rows = self.session.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
        counts = dict.fromkeys(SubscriberStatus, 0)
        counts.update({status: n for status, n in rows})
        return counts

    def count_suppressions(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Suppression)) or 0

    def find(
        self,
        *,
        status: SubscriberStatus | None = None,
        tags: Sequence[str] = (),
        segment: str | None = None,
        limit: int | None = 50,
    ) -> list[Subscriber]:
        where = audience_filter(status=status, tags=list(tags), segment=segment)
        query = (
            select(Subscriber)
            .where(where)
            .order_by(Subscriber.id)
            .options(selectinload(Subscriber.tags))
            .limit(limit)
        )
        return list(self.session.scalars(query))

    def attribute_keys(self, *, status: SubscriberStatus | None = None) -> list[str]:
        """Every attribute key in use, sorted: the extra columns of an export."""
        where = "" if status is None else "WHERE s.status = :status"
        if self.session.get_bind().dialect.name == "postgresql":
            sql = f"SELECT DISTINCT jsonb_object_keys(s.attributes) FROM subscribers s {where}"
        else:
            sql = f"SELECT DISTINCT j.key FROM subscribers s, json_each(s.attributes) j {where}"
        params = {} if status is None else {"status": status.value}
        return sorted(self.session.scalars(text(sql), params))

    def export_rows(
        self, *, status: SubscriberStatus | None = None, batch: int = 2000
    ) -> tuple[list[str], Iterator[list[str]]]:
        """Header and a lazy stream of CSV rows in the format ``import`` reads back unchanged.

        Every cell a spreadsheet would run as a formula (one beginning with ``= + - @``, a tab or a
        carriage return) is escaped with a leading ``'`` (:func:`~newsletter.store.importer.escape_cell`),
        which import removes again.
        """
        keys = [k for k in self.attribute_keys(status=status) if k not in EXPORT_COLUMNS]
        tags = (
            select(func.aggregate_strings(Tag.name, TAG_SEPARATOR))
            .join(SubscriberTag, SubscriberTag.tag_id == Tag.id)
            .where(SubscriberTag.subscriber_id == Subscriber.id)
            .scalar_subquery()
        )
        query = select(
            Subscriber.email, Subscriber.name, Subscriber.status, Subscriber.attributes, tags
        ).order_by(Subscriber.id)
        if status is not None:
            query = query.where(Subscriber.status == status)

        def rows() -> Iterator[list[str]]:
            result = self.session.execute(query.execution_options(yield_per=batch))
            for email, name, row_status, attributes, tag_names in result:
                joined = TAG_SEPARATOR.join(sorted((tag_names or "").split(TAG_SEPARATOR)))
                extra = [_cell(attributes.get(key)) for key in keys]
                yield [
                    escape_cell(email),
                    escape_cell(name or ""),
                    row_status.value,
                    joined.strip(TAG_SEPARATOR),
                    *extra,
                ]

        return [*EXPORT_COLUMNS, *(escape_cell(key) for key in keys)], rows()


def _cell(value: Any) -> str:
    """An attribute value as an export cell, escaped for spreadsheets."""
    if value is None:
        return ""
    return escape_cell(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
