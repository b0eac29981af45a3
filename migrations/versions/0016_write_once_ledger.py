"""A ledger that writes each recipient once: batches accepted whole are recorded on their claim.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

A claim gets the state ``accepted``: closed, and each of its deliveries still ``pending`` was
accepted (see ``Claim`` and ``Delivery`` in the models). The providers' message ids move from
``deliveries.provider_message_id`` to ``delivery_messages``, appended once per accepted delivery.

Existing rows need no other change: before this revision every outcome was written to its row, so
every closed claim is ``done`` and means what it meant, a paused send's released claims and a
running send's open ones included; such a send resumes under the new rules. Downgrading writes
the accepted claims' pending rows as accepted and puts the ids back.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_CLAIM_STATE = ("open", "done", "released", "expired")
NEW_CLAIM_STATE = (*OLD_CLAIM_STATE, "accepted")


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _claim_state(*values: str) -> sa.Enum:
    return sa.Enum(*values, name="claim_state", native_enum=False, create_constraint=True, length=20)


def _claim_states(old: Sequence[str], new: Sequence[str]) -> None:
    """The CHECK constraint of ``claims.state`` (SQLite rebuilds the small table to change it)."""
    with op.batch_alter_table("claims") as batch_op:
        batch_op.alter_column(
            "state", existing_type=_claim_state(*old), type_=_claim_state(*new), existing_nullable=False
        )


def upgrade() -> None:
    op.create_table(
        "delivery_messages",
        sa.Column("delivery_id", _big_id(), autoincrement=False, nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", name=op.f("pk_delivery_messages")),
    )
    # Only accepted deliveries keep an id (no adapter ever gave one with another outcome).
    op.execute(
        "INSERT INTO delivery_messages (delivery_id, message_id) SELECT id, provider_message_id "
        "FROM deliveries WHERE state = 'accepted' AND provider_message_id IS NOT NULL"
    )
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("provider_message_id")
    _claim_states(OLD_CLAIM_STATE, NEW_CLAIM_STATE)


def downgrade() -> None:
    op.execute(
        "UPDATE deliveries SET state = 'accepted' WHERE state = 'pending' AND EXISTS (SELECT 1 FROM "
        "claims c WHERE c.send_id = deliveries.send_id AND c.state = 'accepted' "
        "AND deliveries.id > c.after_id AND deliveries.id <= c.through_id)"
    )
    op.execute("UPDATE claims SET state = 'done' WHERE state = 'accepted'")
    _claim_states(NEW_CLAIM_STATE, OLD_CLAIM_STATE)
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("provider_message_id", sa.String(length=255), nullable=True))
    op.execute(
        "UPDATE deliveries SET provider_message_id = (SELECT m.message_id FROM delivery_messages m "
        "WHERE m.delivery_id = deliveries.id) WHERE state = 'accepted'"
    )
    op.drop_table("delivery_messages")
