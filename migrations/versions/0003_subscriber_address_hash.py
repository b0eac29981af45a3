"""Each subscriber's suppression hash, stored: ``subscribers.address_hash``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28

A send excluded suppressed addresses by hashing every subscriber's address inside its statements
(three times per recipient: the audience count, the snapshot, each claim), which on SQLite meant a
Python function call per row. The column holds the same value, the hex SHA-256 of
``email_normalized`` (``newsletter.store.privacy.address_hash``), so those statements compare two
columns. It is added nullable, filled in one ``UPDATE``, then made NOT NULL.

On SQLite making it NOT NULL rebuilds the table (batch mode: copy, drop, rename). With foreign keys
enforced, dropping ``subscribers`` would first delete every row, and the ON DELETE CASCADE of
``subscriber_tags`` would take every tag link with it; and ``PRAGMA foreign_keys`` cannot change
inside a transaction. So the upgrade runs in a transaction of its own with enforcement off, as
SQLite's own procedure for altering a table prescribes, and checks the references before it commits
and enforcement returns.
(PostgreSQL alters the table in place, in the same transaction as the rest of the upgrade.)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: A name of our own for the SQLite function, removed again after the backfill.
_SQLITE_SHA256 = "newsletter_migration_sha256"


def _sha256_hex(value: str | None) -> str | None:
    # privacy.address_hash, repeated here: a migration must not change when the application does.
    return None if value is None else hashlib.sha256(value.encode("utf-8")).hexdigest()


def _backfill() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(
            "UPDATE subscribers "
            "SET address_hash = encode(sha256(convert_to(email_normalized, 'UTF8')), 'hex')"
        )
        return
    dbapi: Any = op.get_bind().connection.dbapi_connection
    dbapi.create_function(_SQLITE_SHA256, 1, _sha256_hex, deterministic=True)
    try:
        op.execute(f"UPDATE subscribers SET address_hash = {_SQLITE_SHA256}(email_normalized)")
    finally:
        dbapi.create_function(_SQLITE_SHA256, 1, None)


@contextmanager
def _sqlite_foreign_keys_off() -> Iterator[None]:
    """SQLite: run the body in a transaction of its own with foreign keys unenforced; else nothing.

    The pragma changes only outside a transaction, so the transaction before the body commits, and
    the body's commits before enforcement returns on this (pooled) connection; Alembic then records
    the revision in the next one. References are checked before that commit. A failure rolls the
    body back.
    """
    context = op.get_context()
    if context.dialect.name != "sqlite":
        yield
        return
    bind = op.get_bind()
    with context.autocommit_block():
        enforced = bool(bind.exec_driver_sql("PRAGMA foreign_keys").scalar())
        bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        yield
        broken = bind.exec_driver_sql("PRAGMA foreign_key_check").first()
        if broken is not None:
            raise RuntimeError(f"the rebuilt subscribers table breaks a foreign key: {tuple(broken)}")
    except BaseException:
        # Not committed, and not handed back to the pool without enforcement: closing the driver's
        # connection rolls the body back, and the pool opens a new one (with its pragmas) next time.
        bind.invalidate()
        raise
    if enforced:
        with context.autocommit_block():
            bind.exec_driver_sql("PRAGMA foreign_keys=ON")


def _columns(table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(op.get_bind()).get_columns(table)}


def upgrade() -> None:
    with _sqlite_foreign_keys_off():
        # Already there only if a SQLite upgrade stopped between its commit and Alembic's: see
        # _sqlite_foreign_keys_off. Filling it again is then harmless. (``--sql``: nothing to ask.)
        if op.get_context().as_sql or "address_hash" not in _columns("subscribers"):
            with op.batch_alter_table("subscribers") as batch_op:
                batch_op.add_column(sa.Column("address_hash", sa.String(length=64), nullable=True))
        _backfill()
        with op.batch_alter_table("subscribers") as batch_op:
            batch_op.alter_column("address_hash", existing_type=sa.String(length=64), nullable=False)


def downgrade() -> None:
    with _sqlite_foreign_keys_off(), op.batch_alter_table("subscribers") as batch_op:
        batch_op.drop_column("address_hash")
