"""Double opt-in sign-up: the pending confirmation and a fuller consent record on ``subscribers``.

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-06

``confirm_nonce`` is the random half of an outstanding confirmation link (``/confirm/TOKEN``): a
link works while its nonce is the row's, and confirming (or "this wasn't me") clears it, so each
link works once. The consent record gains what a web confirmation knows besides time, method and
IP: the browser's user agent, the URL of the form that was filled in and the version id of the
consent text it showed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


COLUMNS = {"confirm_nonce": 32, "consent_user_agent": 500, "consent_form_url": 2000, "consent_text": 100}


def upgrade() -> None:
    # Plain nullable columns: an ALTER TABLE on both databases (no SQLite table rebuild, which would
    # cascade-delete the subscribers' tag links).
    for name, length in COLUMNS.items():
        op.add_column("subscribers", sa.Column(name, sa.String(length=length), nullable=True))


def downgrade() -> None:
    # SQLite (3.35+) drops a plain column in place too; Alembic would rebuild the table.
    for name in reversed(COLUMNS):
        if op.get_context().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE subscribers DROP COLUMN {name}")
        else:
            op.drop_column("subscribers", name)
