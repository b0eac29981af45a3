"""The tables, as SQLAlchemy 2 declarative models.

One ``Base`` carries a naming convention so every constraint has a stable, predictable name: Alembic
autogenerate then produces the same migration on SQLite and PostgreSQL, and a later migration can
drop a constraint by name. Every column is ``Mapped[...]`` so mypy checks the code that uses them.
The deliver issue will add ``Send`` and ``Delivery`` here; they reference ``subscribers.id``.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

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


class SubscriberStatus(enum.StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


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
    name: Mapped[str | None] = mapped_column(Text)
    status: Mapped[SubscriberStatus] = mapped_column(
        Enum(
            SubscriberStatus,
            name="subscriber_status",
            native_enum=False,
            create_constraint=True,
            length=20,
            values_callable=_values,
        ),
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
    reason: Mapped[SuppressionReason] = mapped_column(
        Enum(
            SuppressionReason,
            name="suppression_reason",
            native_enum=False,
            create_constraint=True,
            length=20,
            values_callable=_values,
        )
    )
    created_at: Mapped[dt.datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.current_timestamp()
    )
