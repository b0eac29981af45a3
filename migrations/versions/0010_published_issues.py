"""The web archive's record of what each send published: ``published_issues``.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06

Each send writes the issue it rendered (the validated issue model as JSON) in the transaction that
starts it, so the archive shows an issue as sent even after its file is edited, and never a draft.
Sends started before this revision have no row and are not listed in the archive: what they sent
is known only by its hash, and today's file may differ from it. No data is migrated.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "published_issues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("send_id", sa.Integer(), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("preheader", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_issues")),
        sa.UniqueConstraint("send_id", name=op.f("uq_published_issues_send_id")),
    )
    op.create_index("ix_published_issues_issue_date_id", "published_issues", ["issue_date", "id"])


def downgrade() -> None:
    op.drop_table("published_issues")
