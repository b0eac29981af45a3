"""Provider events: ``events``, one row per webhook event, deduplicated by the provider's id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Like ``deliveries`` it has no foreign keys (a delivery or send id may name a row of another
database, or nothing, when a provider reports a test message) and no addresses: only the same
SHA-256 hash ``suppressions`` holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_KIND = (
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "unsubscribed",
    "opened",
    "clicked",
    "other",
)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("provider_event_id", sa.String(length=128), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(*EVENT_KIND, name="event_kind", native_enum=False, create_constraint=True, length=20),
            nullable=False,
        ),
        sa.Column("delivery_id", _big_id(), nullable=True),
        sa.Column("send_id", sa.Integer(), nullable=True),
        sa.Column("address_hash", sa.String(length=64), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "detail",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("provider", "provider_event_id", name="uq_events_provider_provider_event_id"),
    )
    op.create_index("ix_events_send_id_kind", "events", ["send_id", "kind"])
    op.create_index("ix_events_address_hash_kind", "events", ["address_hash", "kind"])


def downgrade() -> None:
    op.drop_table("events")
