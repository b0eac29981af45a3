"""``deliveries`` back to PostgreSQL's default fill factor: full pages beat heap-only updates at scale.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

0004 filled ``deliveries`` pages to 30% so a recorded outcome could be written beside its pending
row (a heap-only update, no index entries): on 100,000 recipients recording took half the time.
At a million it cost more than it saved. The table became three times larger than PostgreSQL's
default 128 MB of shared buffers, so claims and records read and wrote pages through the operating
system's cache instead. The send benchmark on this project's machine, 1,000,000 recipients
through Postmark templates: 35.7 s at fill factor 30, 23.0 s at 100, and 23.3 s at 70 (where
hardly any outcome fits beside its row anyway). Full pages and the default it is.

Pages already written keep their layout until they are rewritten (``VACUUM FULL``); new sends'
rows are packed. SQLite has no fill factor, so there this revision does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What 0004 set, restored by the downgrade.
PREVIOUS_FILLFACTOR = 30


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE deliveries SET (fillfactor = {PREVIOUS_FILLFACTOR})")
