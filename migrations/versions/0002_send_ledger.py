"""The send ledger: ``sends`` and one ``deliveries`` row per recipient of each send.

Deliveries carry no foreign keys: see ``Delivery`` in the models (a trigger per row on
PostgreSQL cost more than half of a million-recipient snapshot).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEND_STATE = ("scheduled", "sending", "paused", "stopped", "finished", "cancelled", "missed")
DELIVERY_STATE = ("pending", "sending", "accepted", "failed", "suppressed", "unknown")
CLAIM_STATE = ("open", "done", "released", "expired")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _state(*values: str, name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=20)


def upgrade() -> None:
    op.create_table(
        "sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_file", sa.String(length=500), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("segment", sa.String(length=2000), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("state", _state(*SEND_STATE, name="send_state"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_through", _big_id(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sends")),
        sa.UniqueConstraint("issue_date", "segment", name="uq_sends_issue_date_segment"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("state", _state(*DELIVERY_STATE, name="delivery_state"), nullable=False),
        sa.Column("attempts", sa.SmallInteger(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("send_id", "subscriber_id", name="uq_deliveries_send_id_subscriber_id"),
    )
    op.create_index("ix_deliveries_send_id_id", "deliveries", ["send_id", "id"])
    op.create_index("ix_deliveries_subscriber_id", "deliveries", ["subscriber_id"])
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("after_id", _big_id(), nullable=False),
        sa.Column("through_id", _big_id(), nullable=False),
        sa.Column("state", _state(*CLAIM_STATE, name="claim_state"), nullable=False),
        sa.Column("owner", sa.String(length=64), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_claims")),
    )
    op.create_index("ix_claims_send_id_state", "claims", ["send_id", "state"])


def downgrade() -> None:
    op.drop_table("claims")
    op.drop_table("deliveries")
    op.drop_table("sends")
