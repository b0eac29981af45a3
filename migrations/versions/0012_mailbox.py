"""The bounce mailbox: ``mailbox_messages`` (each processed message, once) and ``mailbox_polls``.

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-06

``newsletter worker`` reads the ``smtp`` provider's bounces, complaints and unsubscribe mails from
an IMAP mailbox. A message's key (sha256 of its Message-ID) is written in the transaction that
stores its events: a reader that crashed between that commit and moving the message away, or the
same DSN delivered twice, finds the key and does nothing again. Each read is a row of
``mailbox_polls`` (when, how many messages the folder held, what they were, the error if any), so
``newsletter status`` says when the mailbox was last read; only the latest 100 are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mailbox_messages",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_mailbox_messages")),
    )
    op.create_table(
        "mailbox_polls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_polls")),
    )
    op.create_index("ix_mailbox_polls_started_at", "mailbox_polls", ["started_at"])


def downgrade() -> None:
    op.drop_table("mailbox_polls")
    op.drop_table("mailbox_messages")
