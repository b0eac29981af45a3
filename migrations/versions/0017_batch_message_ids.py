"""The providers' message ids one row per recorded batch, not one per delivery.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

``delivery_messages`` (0016) held one row per accepted delivery: on PostgreSQL a million rows and
a million primary-key entries per million recipients, appended by ``COPY`` with every batch, for
ids that only ``Ledger.deliveries`` reads (provider events find deliveries by our own id). Now
each recorded batch appends one ``batch_message_ids`` row: its accepted deliveries' ids as a JSON
object of delivery id to message id.

Existing ids move in groups of a thousand consecutive delivery ids of a send (the batches they
were recorded in are not known, and need not be: every delivery id is in at most one row, which
is all the reader needs). Downgrading expands the objects back into one row per delivery.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "batch_message_ids",
        sa.Column("id", _big_id(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("ids", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_message_ids")),
    )
    op.create_index("ix_batch_message_ids_send_id", "batch_message_ids", ["send_id"])
    if op.get_bind().dialect.name == "postgresql":
        grouped = "json_object_agg(CAST(m.delivery_id AS text), m.message_id ORDER BY m.delivery_id)"
    else:
        grouped = "json_group_object(CAST(m.delivery_id AS TEXT), m.message_id)"
    op.execute(
        f"INSERT INTO batch_message_ids (send_id, ids) SELECT d.send_id, CAST({grouped} AS TEXT) "
        "FROM delivery_messages m JOIN deliveries d ON d.id = m.delivery_id "
        "GROUP BY d.send_id, m.delivery_id / 1000 ORDER BY d.send_id, m.delivery_id / 1000"
    )
    op.drop_table("delivery_messages")


def downgrade() -> None:
    op.create_table(
        "delivery_messages",
        sa.Column("delivery_id", _big_id(), autoincrement=False, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_delivery_messages")),
    )
    if op.get_bind().dialect.name == "postgresql":
        expanded = "json_each_text(CAST(b.ids AS json)) AS j"
        key = "CAST(j.key AS bigint)"
    else:
        expanded, key = "json_each(b.ids) AS j", "CAST(j.key AS INTEGER)"
    op.execute(
        f"INSERT INTO delivery_messages (delivery_id, message_id) SELECT {key}, j.value "
        f"FROM batch_message_ids b, {expanded}"
    )
    op.drop_index("ix_batch_message_ids_send_id", table_name="batch_message_ids")
    op.drop_table("batch_message_ids")
