"""Webhook nonces: ``webhook_nonces``, the one-time tokens of signed webhooks already seen.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Mailgun signs a timestamp and a random token, not the body, so a captured request could be posted
again, with other event-data, while its timestamp is fresh. The token is recorded with the events
it brought, in one transaction; (provider, nonce) is the primary key, so a second request with it
writes nothing and is refused. Rows older than a day are pruned as new ones arrive (``seen_at``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_nonces",
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("nonce", sa.String(length=128), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", "nonce", name=op.f("pk_webhook_nonces")),
    )
    op.create_index("ix_webhook_nonces_seen_at", "webhook_nonces", ["seen_at"])


def downgrade() -> None:
    op.drop_table("webhook_nonces")
