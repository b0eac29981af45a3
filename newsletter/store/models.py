"""The tables, as SQLAlchemy 2 declarative models.

One ``Base`` carries a naming convention so every constraint has a stable, predictable name: Alembic
autogenerate then produces the same migration on SQLite and PostgreSQL, and a later migration can
drop a constraint by name. Every column is ``Mapped[...]`` so mypy checks the code that uses them.
``Send`` and ``Delivery`` are the send ledger: one row per recipient of every send, so a crash
resumes without sending anyone twice and every recipient's outcome can be looked up.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Date,
    DateTime,
    Dialect,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    Unicode,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Defined apart so the CLI can offer its values without SQLAlchemy; the store imports it from here.
from newsletter.store.statuses import SubscriberStatus as SubscriberStatus

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EMAIL_MAX = 320  # RFC 3696 erratum; email-validator itself caps addresses at 254
TAG_MAX = 64


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones and hands back naive values, which
    would compare unequal to aware ones. Normalising at the boundary keeps both dialects identical.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: Statuses that mean "this person left": nothing but their own explicit consent may undo them.
LEFT_STATUSES = frozenset(
    {SubscriberStatus.UNSUBSCRIBED, SubscriberStatus.BOUNCED, SubscriberStatus.COMPLAINED}
)


class SuppressionReason(enum.StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    FORGOTTEN = "forgotten"
    MANUAL = "manual"


def _values(enum_cls: type[enum.Enum]) -> list[str]:
    return [str(member.value) for member in enum_cls]


def _states(enum_cls: type[enum.Enum], name: str) -> Enum:
    """A status column: its values as text with a CHECK constraint, not a native ENUM type, so a
    new value is a one-line migration on SQLite and PostgreSQL alike."""
    return Enum(
        enum_cls, name=name, native_enum=False, create_constraint=True, length=20, values_callable=_values
    )


#: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class Subscriber(Base):
    """One address on the list. Rows are never deleted except by ``forget`` (erasure)."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The address exactly as it was given (stripped), for display and export.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX))
    #: email-validator's normalised form, lower-cased: the identity of a subscriber.
    email_normalized: Mapped[str] = mapped_column(String(EMAIL_MAX), unique=True)
    #: ``privacy.address_hash(email_normalized)``, the key of ``suppressions``, stored so that a send
    #: matches suppressions by a plain column: hashing each address inside the statement cost three
    #: hashes per recipient (audience count, snapshot, claim), 7 s per million on SQLite. Whoever
    #: writes ``email_normalized`` writes this too. Not indexed: look-ups go from a subscriber to
    #: ``suppressions``, whose unique index serves them.
    address_hash: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[SubscriberStatus] = mapped_column(
        _states(SubscriberStatus, "subscriber_status"),
        default=SubscriberStatus.PENDING,
    )
    #: Where the row came from: ``cli``, ``import:list.csv``, ``web``.
    source: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    unsubscribed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The consent record: when, how (``import:list.csv``, ``cli``, ``double opt-in``), from where.
    consent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    consent_method: Mapped[str | None] = mapped_column(String(200))
    consent_ip: Mapped[str | None] = mapped_column(String(45))  # an IPv6 text form fits in 45
    #: A web confirmation's browser, the form it came from and the consent text's version id.
    consent_user_agent: Mapped[str | None] = mapped_column(String(500))
    consent_form_url: Mapped[str | None] = mapped_column(String(2000))
    consent_text: Mapped[str | None] = mapped_column(String(100))
    #: The random half of the outstanding confirmation link (double opt-in); cleared once used.
    confirm_nonce: Mapped[str | None] = mapped_column(String(32))

    tags: Mapped[list[Tag]] = relationship(
        secondary="subscriber_tags", order_by="Tag.name", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"<Subscriber {self.id} {self.email_normalized} {self.status}>"


class Tag(Base):
    """A label that segments select on (``tag:press``); names are lower-case."""

    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(TAG_MAX), unique=True)


class SubscriberTag(Base):
    __tablename__ = "subscriber_tags"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True)

    # The primary key serves "which tags has this subscriber"; segments need the other direction.
    __table_args__ = (Index("ix_subscriber_tags_tag_id_subscriber_id", "tag_id", "subscriber_id"),)


class Suppression(Base):
    """An address that must never be mailed again, kept only as a hash.

    It outlives the subscriber row on purpose: after ``forget`` nothing identifies the person, yet a
    re-import of an old list still recognises and skips them.
    """

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    address_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[SuppressionReason] = mapped_column(_states(SuppressionReason, "suppression_reason"))
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )


class SendState(enum.StrEnum):
    """Where a send stands. Only ``sending`` sends are worked on by ``send`` and ``worker``."""

    SCHEDULED = "scheduled"  #: waiting for its time; no deliveries yet
    SENDING = "sending"  #: audience snapshotted; workers claim its pending deliveries
    PAUSED = "paused"  #: stopped by the editor (Ctrl-C) or by a provider outage; ``--resume``
    STOPPED = "stopped"  #: the provider refused our credentials; fix them, then ``--resume``
    FINISHED = "finished"  #: nothing pending or in flight (unknown ones may remain)
    CANCELLED = "cancelled"  #: a scheduled send that was called off
    MISSED = "missed"  #: a scheduled send whose time passed beyond the grace period


class DeliveryState(enum.StrEnum):
    """pending -> sending -> accepted | failed | suppressed; ``unknown`` when nobody can tell."""

    PENDING = "pending"  #: in the audience snapshot, not yet handed to the provider
    #: In flight: a pending row inside an open claim. Reported, never stored: a claim marks a
    #: whole range at once instead of writing every row twice (see ``Claim``).
    SENDING = "sending"
    #: The provider took it (its id, where it gave one, in ``batch_message_ids``). Stored on the row
    #: only for a batch with exceptions; a row of a claim closed ``accepted`` stays ``pending``.
    ACCEPTED = "accepted"
    FAILED = "failed"  #: refused for good (invalid address, inactive recipient, gave up retrying)
    SUPPRESSED = "suppressed"  #: the person left, or was suppressed, after the snapshot
    UNKNOWN = "unknown"  #: the request may or may not have gone through; resent only on request


#: BIGINT on PostgreSQL (a ledger outgrows 2**31 rows), the rowid alias INTEGER on SQLite.
BigId = BigInteger().with_variant(Integer, "sqlite")


class Send(Base):
    """One issue sent to one audience. Unique per issue date and segment, so a second ``send``
    of the same issue resumes the first instead of mailing everyone again."""

    __tablename__ = "sends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_file: Mapped[str] = mapped_column(String(500))
    issue_date: Mapped[dt.date] = mapped_column(Date)
    #: The segment expression, ``""`` for every active subscriber.
    segment: Mapped[str] = mapped_column(String(2000), default="")
    subject: Mapped[str] = mapped_column(String(500))
    #: SHA-256 of the rendered subject, HTML and text: a resume refuses a changed issue.
    content_hash: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(32))
    state: Mapped[SendState] = mapped_column(_states(SendState, "send_state"))
    #: Why the send paused or stopped, for ``status``.
    error: Mapped[str | None] = mapped_column(Text)
    recipients: Mapped[int] = mapped_column(Integer, default=0)
    #: When a scheduled send is due (UTC).
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The highest delivery id handed out in a claim: the next claim starts after it.
    claimed_through: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    #: The snapshot's delivery ids lie in (``deliveries_after``, ``deliveries_through``]: every
    #: query of one send's deliveries reads that range of the primary key (see ``Delivery``).
    deliveries_after: Mapped[int] = mapped_column(BigId, default=0, server_default="0")
    deliveries_through: Mapped[int] = mapped_column(BigId, default=0, server_default="0")

    __table_args__ = (UniqueConstraint("issue_date", "segment", name="uq_sends_issue_date_segment"),)


class ClaimState(enum.StrEnum):
    OPEN = "open"  #: a worker holds it until ``expires_at``
    DONE = "done"  #: every delivery in it has its outcome, written on its row
    #: Closed, and every delivery in it still ``pending`` was accepted by the provider: one write for
    #: the range instead of one per recipient. Only the exceptions (refused, unknown, suppressed)
    #: were written to their rows. ``Ledger.counts`` and ``Ledger.deliveries`` read it so.
    ACCEPTED = "accepted"
    RELEASED = "released"  #: handed back unsent (the send paused or stopped): the next worker takes it
    EXPIRED = "expired"  #: its worker died or ran out of lease: its pending rows became unknown


class Claim(Base):
    """A worker's lease on one batch of a send: the deliveries with ``after_id < id <= through_id``.

    Claiming a range is two small writes (the send's cursor and this row) where marking each row
    ``sending`` was one write per recipient, and PostgreSQL writes a new version of a row for every
    update. A row in an open claim that is still ``pending`` is in flight; when a claim expires,
    those rows become ``unknown``. Claims of one send never overlap, so no row is ever in two.
    """

    __tablename__ = "claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    send_id: Mapped[int] = mapped_column(Integer)
    after_id: Mapped[int] = mapped_column(BigId)
    through_id: Mapped[int] = mapped_column(BigId)
    state: Mapped[ClaimState] = mapped_column(_states(ClaimState, "claim_state"))
    #: ``host:pid:thread`` of the worker, so a resume on the same host can tell a dead one.
    owner: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )

    __table_args__ = (Index("ix_claims_send_id_state", "send_id", "state"),)


class Delivery(Base):
    """One recipient of one send: the row that makes "nobody twice, nobody missed" checkable.

    It holds no address: the worker joins ``subscribers`` when it claims a batch, so ``forget``
    (which deletes the subscriber and sets ``subscriber_id`` NULL here) leaves nothing in the ledger
    that could identify the person.

    A row is written once when all goes well: by the snapshot, as ``pending``. A batch the provider
    accepts whole is recorded on its claim (``ClaimState.ACCEPTED``), not here; only the
    exceptions (refused, unknown, suppressed, refused for now) are written to their rows. So a
    ``pending`` row is accepted inside an ``accepted`` claim, in flight inside an ``open`` one, and
    waiting otherwise: ``Ledger.deliveries`` and ``Ledger.counts`` read every state so.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign keys, on purpose: PostgreSQL checks them with a trigger per row, which took more
    # than half of the snapshot of a million recipients (6.8 s of 12.6 s). Both ids come from the
    # same INSERT ... SELECT that reads them, sends are never deleted, and ``forget``, the one
    # delete of subscribers, clears its ids here in the same transaction.
    send_id: Mapped[int] = mapped_column(Integer)
    subscriber_id: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[DeliveryState] = mapped_column(
        _states(DeliveryState, "delivery_state"),
        default=DeliveryState.PENDING,
    )
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # Two indexes where there were four: the snapshot of a million recipients took 6.6 s
        # instead of 9.8 on PostgreSQL, the index sets measured alone (migration 0018). A send's
        # deliveries are a range of the primary key (``Send.deliveries_after`` to
        # ``deliveries_through``), read with ``send_id`` as a filter: so nothing indexes
        # ``send_id`` first, and no planner can prefer scanning a whole send to a claim's range.
        # Nobody twice in one send; and ``forget`` finds a subscriber's rows by the first column.
        # Nothing indexes ``state``: recording an outcome changes no index entry.
        Index("uq_deliveries_subscriber_id_send_id", "subscriber_id", "send_id", unique=True),
        # PostgreSQL's default fill factor: 0004 left room on each page for heap-only updates,
        # which halved recording at 100,000 recipients but made a million-row table three times
        # larger than the default shared buffers, and the send a third slower (migration 0006).
    )


class BatchMessageIds(Base):
    """The provider's ids for the accepted deliveries of one recorded batch, for looking a message
    up at the provider: one row per batch, ``ids`` a JSON object of delivery id to message id.

    Appended with the batch's record, never updated. One row a batch, not one a delivery: on
    PostgreSQL a row per delivery (``delivery_messages``, migration 0016) wrote a million index
    entries per million recipients, through ``COPY``, for ids that only ``Ledger.deliveries``
    reads; provider events find their delivery by our own id, which every adapter sends along as
    metadata. Only accepted deliveries have one, and a delivery is accepted once, so each delivery
    id is in at most one row.
    """

    __tablename__ = "batch_message_ids"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    send_id: Mapped[int] = mapped_column(Integer)
    ids: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_batch_message_ids_send_id", "send_id"),)


class EventKind(enum.StrEnum):
    """What a provider told us happened to a message after it accepted it."""

    DELIVERED = "delivered"
    BOUNCED_HARD = "bounced_hard"  #: the address does not exist: suppressed at once
    BOUNCED_SOFT = "bounced_soft"  #: a temporary failure: suppressed after ``soft_bounce_limit``
    COMPLAINED = "complained"  #: marked as spam: suppressed at once
    UNSUBSCRIBED = "unsubscribed"  #: unsubscribed through the provider: unsubscribed here
    OPENED = "opened"
    CLICKED = "clicked"
    OTHER = "other"  #: recorded, changes nothing


class Event(Base):
    """One provider webhook event, stored once: (provider, provider_event_id) deduplicates replays.

    Like ``deliveries`` it holds no address and no foreign keys: ``address_hash`` is the same
    pseudonymous key as ``suppressions`` (soft bounces are counted by it), and ``detail`` keeps
    only small non-identifying facts (a bounce description, a clicked URL).
    """

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_event_id: Mapped[str] = mapped_column(String(128))
    kind: Mapped[EventKind] = mapped_column(_states(EventKind, "event_kind"))
    delivery_id: Mapped[int | None] = mapped_column(BigId)
    send_id: Mapped[int | None] = mapped_column(Integer)
    address_hash: Mapped[str | None] = mapped_column(String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)

    __table_args__ = (
        UniqueConstraint("provider", "provider_event_id", name="uq_events_provider_provider_event_id"),
        Index("ix_events_send_id_kind", "send_id", "kind"),
        # Soft bounces are counted per address.
        Index("ix_events_address_hash_kind", "address_hash", "kind"),
    )


class WebhookNonce(Base):
    """A one-time value a provider signed (Mailgun's token), seen once: a second request with it is
    a replay. Kept a day (``newsletter.store.nonces``), longer than a signed timestamp stays fresh."""

    __tablename__ = "webhook_nonces"

    provider: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    # Pruning deletes by age.
    __table_args__ = (Index("ix_webhook_nonces_seen_at", "seen_at"),)


class RateLimitHit(Base):
    """One fixed window's count of one rate-limited key (``newsletter.store.ratelimits``), shared by
    every ``serve`` process on the database. The key is a hash: no address is stored in the clear."""

    __tablename__ = "rate_limits"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # Unix seconds
    hits: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[int] = mapped_column(BigInteger)  # Unix seconds

    # Pruning deletes by age.
    __table_args__ = (Index("ix_rate_limits_expires_at", "expires_at"),)


class ScheduleRule(Base):
    """A standing weekly send: on ``weekday`` at ``send_time`` in ``timezone``, send that day's issue
    file to ``segment``. One rule per audience.

    The worker keeps an APScheduler job per rule whose only argument is the rule's id. The local
    time and the zone are stored, not a UTC instant, so 09:00 stays 09:00 across DST changes.
    """

    __tablename__ = "schedule_rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    weekday: Mapped[str] = mapped_column(String(9))
    send_time: Mapped[dt.time] = mapped_column(Time)
    timezone: Mapped[str] = mapped_column(String(64))
    segment: Mapped[str] = mapped_column(String(2000), default="")
    #: The last occurrence a worker took on (UTC): moving it is the guard that makes two workers
    #: handle one occurrence once (one send, or one note to the editors).
    last_occurrence: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )

    __table_args__ = (UniqueConstraint("segment", name="uq_schedule_rules_segment"),)


class MailboxMessage(Base):
    """One message of the bounce mailbox, processed: its key (sha256 of its Message-ID) is stored in
    the transaction that stores its events, so a reader that crashed before moving it away, or a
    message delivered twice, is recognised and changes nothing again."""

    __tablename__ = "mailbox_messages"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    events: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MailboxPoll(Base):
    """One read of the bounce mailbox, for ``newsletter status``: when, what it held, what it did."""

    __tablename__ = "mailbox_polls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    #: Messages in the folder when it was read (before any was moved).
    held: Mapped[int] = mapped_column(Integer, default=0)
    #: Messages processed, by class (bounce, complaint, unsubscribe, duplicate, ...), and events.
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_mailbox_polls_started_at", "started_at"),)


class WorkerHeartbeat(Base):
    """A running ``newsletter worker`` (``host:pid``) and when it was last seen alive."""

    __tablename__ = "worker_heartbeats"

    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_worker_heartbeats_seen_at", "seen_at"),)


#: APScheduler 3's ``SQLAlchemyJobStore`` table, column for column, so the migration creates it
#: (``db upgrade`` makes every table) and the job store finds it there. A job holds only a send or
#: rule id; the send row stays the truth (see ``newsletter.schedule``).
APSCHEDULER_JOBS = Table(
    "apscheduler_jobs",
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)


class PublishedIssue(Base):
    """An issue as a send rendered it, written in the transaction that starts the send: the web
    archive's only source, so a later edit of the issue file never changes what it shows, and a
    draft nobody sent never appears. ``document`` is the validated issue (its model as JSON), not
    the file's path. One row per started send; the archive shows, for each date, the newest.
    Sends started before this table existed (migration 0010) have none, and are not listed.
    """

    __tablename__ = "published_issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    send_id: Mapped[int] = mapped_column(Integer, unique=True)
    issue_date: Mapped[dt.date] = mapped_column(Date)
    subject: Mapped[str] = mapped_column(String(500))
    preheader: Mapped[str] = mapped_column(Text, default="")
    #: The send's content hash (of what recipients got), for tracing a page back to its send.
    content_hash: Mapped[str] = mapped_column(String(64))
    document: Mapped[str] = mapped_column(Text)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    # The archive's listing: newest row per date.
    __table_args__ = (Index("ix_published_issues_issue_date_id", "issue_date", "id"),)
