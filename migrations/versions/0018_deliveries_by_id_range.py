"""A send's deliveries read as a range of the primary key; two indexes on deliveries instead of four.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

The snapshot writes one row per recipient and one entry in every index of ``deliveries``. Of the
four indexes, ``ix_deliveries_send_id_id`` served what the primary key can serve once a send knows
where its ids lie, and ``ix_deliveries_subscriber_id`` what a unique index led by the subscriber
can serve; at a million recipients the two took a third of the snapshot on PostgreSQL.

Each send now records the range of its snapshot's ids, (``deliveries_after``,
``deliveries_through``]: existing sends get it from their rows (before the old index goes, so it
is quick). A cursor below the range moves to its start: the same place, found without a scan.
The unique constraint on (send, subscriber) becomes a unique index on (subscriber, send): still
nobody twice in a send, and ``forget`` finds a subscriber's rows by its first column. Downgrading
restores the three and drops the two columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("sends") as batch_op:
        for name in ("deliveries_after", "deliveries_through"):
            batch_op.add_column(sa.Column(name, _big_id(), server_default="0", nullable=False))
    op.execute(
        "UPDATE sends SET "
        "deliveries_after = coalesce((SELECT min(d.id) FROM deliveries d WHERE d.send_id = sends.id), 1) - 1, "
        "deliveries_through = coalesce((SELECT max(d.id) FROM deliveries d WHERE d.send_id = sends.id), 0)"
    )
    op.execute("UPDATE sends SET claimed_through = deliveries_after WHERE claimed_through < deliveries_after")
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint("uq_deliveries_send_id_subscriber_id", type_="unique")
        batch_op.drop_index("ix_deliveries_send_id_id")
        batch_op.drop_index("ix_deliveries_subscriber_id")
        batch_op.create_index(
            "uq_deliveries_subscriber_id_send_id", ["subscriber_id", "send_id"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index("uq_deliveries_subscriber_id_send_id")
        batch_op.create_unique_constraint("uq_deliveries_send_id_subscriber_id", ["send_id", "subscriber_id"])
        batch_op.create_index("ix_deliveries_send_id_id", ["send_id", "id"])
        batch_op.create_index("ix_deliveries_subscriber_id", ["subscriber_id"])
    with op.batch_alter_table("sends") as batch_op:
        batch_op.drop_column("deliveries_through")
        batch_op.drop_column("deliveries_after")
