"""Engines, sessions and the schema-revision gate.

SQLite is the embedded default and gets the pragmas that make it a sound store: WAL (readers do not
block the writer), foreign keys (off by default in SQLite!), a busy timeout instead of an instant
"database is locked", and ``synchronous=NORMAL``, which in WAL mode is durable against a crashed
process and only risks the last commits on power loss. PostgreSQL needs nothing special.

Every command except ``db upgrade`` opens the database through :func:`open_database`, which refuses
a database that is not at the newest Alembic revision: running new code on an old schema is how rows
get lost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.errors import ConfigError, NewsletterError

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaOutOfDate",
    "alembic_config",
    "current_revision",
    "head_revision",
    "make_engine",
    "make_session_factory",
    "open_database",
    "require_current_revision",
    "session_scope",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
UPGRADE_HINT = "run `newsletter db upgrade`"


class SchemaOutOfDate(NewsletterError):
    """The database schema is older (or newer) than this code; the message names the fix."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def make_url_safe(url: str) -> str:
    """The URL for an error message, without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite connections get WAL, foreign keys and a busy timeout."""
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise ConfigError(f"database.url: cannot use {make_url_safe(url)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: the CLI prints objects after committing them.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error. For the CLI and scripts."""
    with make_session_factory(engine)() as session, session.begin():
        yield session


def alembic_config(engine: Engine | None = None, url: str | None = None) -> Config:
    """An Alembic config that finds ``migrations/`` wherever the command runs from.

    With ``engine``, migrations run on one of its connections (``env.py`` picks it up from
    ``config.attributes``), so callers and tests control exactly which database is migrated.
    """
    ini = MIGRATIONS_DIR.parent / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the repository always ships migrations
        raise NewsletterError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)


def require_current_revision(engine: Engine) -> None:
    """Raise :class:`SchemaOutOfDate` unless the database is at the newest migration."""
    head = head_revision()
    current = current_revision(engine)
    if current != head:
        found = "an empty database" if current is None else f"revision {current}"
        raise SchemaOutOfDate(
            f"database is not at the newest revision ({found}, newest is {head}); {UPGRADE_HINT}"
        )


def open_database(url: str) -> Engine:
    """The engine every command but ``db upgrade`` uses: it must be migrated to the newest revision.

    A missing SQLite file is reported as such rather than created empty as a side effect.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database or "")
        if not path.exists():
            raise SchemaOutOfDate(f"database {path} does not exist; {UPGRADE_HINT}")
    engine = make_engine(url)
    try:
        require_current_revision(engine)
    except Exception:
        engine.dispose()
        raise
    return engine
