"""Migrations: upgrade from empty, downgrade, the revision gate, and models == newest migration."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from newsletter.store.db import (
    SchemaOutOfDate,
    current_revision,
    downgrade,
    head_revision,
    make_engine,
    open_database,
    require_current_revision,
    upgrade,
)
from newsletter.store.models import Base

TABLES = {"subscribers", "tags", "subscriber_tags", "suppressions"}


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_from_empty_then_downgrade_then_upgrade_again(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert _tables(engine) == TABLES
        downgrade(engine, "base")
        assert current_revision(engine) is None
        assert _tables(engine) == set()
        upgrade(engine)
        assert _tables(engine) == TABLES
    finally:
        engine.dispose()


def test_models_and_newest_migration_agree(empty_db_url: str) -> None:
    """No pending autogenerate diff: whoever changes a model must add a migration."""
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_unmigrated_database_is_refused_with_the_fix(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        with pytest.raises(SchemaOutOfDate, match="run `newsletter db upgrade`") as caught:
            require_current_revision(engine)
        assert "empty database" in str(caught.value)
        upgrade(engine)
        require_current_revision(engine)
        downgrade(engine, "base")
        with pytest.raises(SchemaOutOfDate):
            open_database(empty_db_url)
    finally:
        engine.dispose()


def test_missing_sqlite_file_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nothing.db"
    with pytest.raises(SchemaOutOfDate, match="does not exist; run `newsletter db upgrade`"):
        open_database(f"sqlite:///{path}")
    assert not path.exists()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    finally:
        engine.dispose()
