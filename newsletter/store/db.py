"""Engines, sessions and the schema-revision gate.

Only SQLite and PostgreSQL (through psycopg 3) are supported; :func:`database_url` turns any other
``database.url`` into a one-line :class:`~newsletter.errors.ConfigError` naming the key.

SQLite is the embedded default and gets the pragmas that make it a sound store: WAL (readers do not
block the writer), foreign keys (off by default in SQLite!), a busy timeout instead of an instant
"database is locked", ``synchronous=NORMAL``, which in WAL mode is durable against a crashed process
and only risks the last commits on power loss, and ``secure_delete``, so that deleted and
overwritten rows are zeroed in the file rather than left in free space (``forget`` relies on it; it
costs no measurable time).

SQLite transactions are begun by us, not by the sqlite3 driver (see :func:`_sqlite_begin`). A
transaction that reads first and writes later must begin with ``BEGIN IMMEDIATE``: a deferred
``BEGIN`` starts a read transaction, and SQLite cannot wait to upgrade it to a write one while
another connection writes (the busy timeout does not apply), so of two such writers the second fails
at once with "database is locked" instead of queueing. :func:`session_scope` and :func:`writing` ask
for ``BEGIN IMMEDIATE``; so does any transaction whose first statement writes. One that starts by
reading, or comes from :func:`reading`, begins deferred and never holds the write lock, so an open
read session never blocks an import. PostgreSQL needs nothing special.

Every command except ``db upgrade`` opens the database through :func:`open_database`, which refuses
a database that is not at the newest Alembic revision: running new code on an old schema is how rows
get lost. A database at a revision this code does not know (migrated by a newer release) is refused
by every command, ``db upgrade`` included.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import URL, Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from newsletter.errors import ConfigError, NewsletterError

__all__ = [
    "MIGRATIONS_DIR",
    "SchemaOutOfDate",
    "UnknownRevision",
    "alembic_config",
    "current_revision",
    "database_url",
    "head_revision",
    "make_engine",
    "make_session_factory",
    "open_database",
    "reading",
    "require_current_revision",
    "session_scope",
    "sqlite_file",
    "upgrade",
    "writing",
]

# The repository's top-level migrations/, shipped inside the package as ``newsletter.migrations``
# (pyproject.toml maps it), so an installed wheel can migrate without a checkout.
MIGRATIONS_DIR = Path(str(files("newsletter.migrations")))
UPGRADE_HINT = "run `newsletter db upgrade`"


#: The execution option that tells :func:`_sqlite_begin` how to begin: "IMMEDIATE" or "DEFERRED".
BEGIN_OPTION = "newsletter_sqlite_begin"
_FIRST_WORD = re.compile(r"\s*(\w+)")
_READS = frozenset({"SELECT", "WITH", "VALUES", "EXPLAIN"})
URL_EXAMPLES = "sqlite:///PATH or postgresql://USER@HOST/DATABASE"
#: Drivers we accept, per database; a bare ``postgresql://`` or ``postgres://`` means psycopg 3.
DRIVERS = {"sqlite": ("pysqlite",), "postgresql": ("psycopg",), "postgres": ("psycopg",)}


class SchemaOutOfDate(NewsletterError):
    """The database schema is older than this code (or missing); the message names the fix."""


class UnknownRevision(SchemaOutOfDate):
    """The database is at a revision this code does not know: a newer release migrated it.

    Upgrading cannot help and downgrading needs the newer release's migrations, so this is bad input
    (exit 2), not something the user can fix with ``db upgrade``.
    """

    exit_code = 2


# -- database URLs -----------------------------------------------------------------------------


def _hide_password(url: str) -> str:
    """A URL string that could not be parsed, for a message: a ``user:password@`` loses the password."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def make_url_safe(url: str | URL) -> str:
    """The URL for an error message, without its password."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return repr(_hide_password(url))


def database_url(url: str | URL) -> URL:
    """Check ``database.url`` and resolve its driver: SQLite, or PostgreSQL through psycopg 3.

    Anything else (an empty or unparsable string, another database, another driver, a port that is
    not a number) is a :class:`ConfigError` naming the key. ``postgresql://`` and ``postgres://`` both
    mean ``postgresql+psycopg://``: psycopg 3 is the driver this package installs (and the bulk
    import uses its COPY support), whatever SQLAlchemy's default for a bare scheme.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        if not url.strip():
            raise ConfigError(f"database.url: is empty; expected {URL_EXAMPLES}")
        try:
            parsed = make_url(url.strip())
        except ArgumentError:
            raise ConfigError(
                f"database.url: {make_url_safe(url)} is not a database URL; expected {URL_EXAMPLES}"
            ) from None
        except ValueError:  # raised by int() on the port
            raise ConfigError(f"database.url: the port in {make_url_safe(url)} is not a number") from None
    backend, _, driver = parsed.drivername.partition("+")
    if backend not in DRIVERS:
        raise ConfigError(
            f"database.url: {backend!r} databases are not supported ({make_url_safe(parsed)}); "
            f"use {URL_EXAMPLES}"
        )
    allowed = DRIVERS[backend]
    if driver and driver not in allowed:
        raise ConfigError(
            f"database.url: driver {driver!r} is not supported ({make_url_safe(parsed)}); "
            f"use {'sqlite' if backend == 'sqlite' else 'postgresql'}:// or "
            f"{'sqlite' if backend == 'sqlite' else 'postgresql'}+{allowed[0]}://"
        )
    if backend == "sqlite":
        if parsed.host or parsed.username or parsed.port is not None:
            raise ConfigError(
                f"database.url: a SQLite URL names a file, not a server ({make_url_safe(parsed)}); "
                "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
            )
        return parsed.set(drivername="sqlite")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise ConfigError(f"database.url: port {parsed.port} is out of range ({make_url_safe(parsed)})")
    return parsed.set(drivername="postgresql+psycopg")


def sqlite_file(url: str | URL) -> Path | None:
    """The file of a SQLite URL; ``None`` for PostgreSQL or an in-memory SQLite database."""
    parsed = database_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("mode") == "memory":
        return None
    return Path(parsed.database or "")


# -- engines -----------------------------------------------------------------------------------


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not begin transactions by itself: _sqlite_begin does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Zero deleted content, also on freed and overflow pages (FAST leaves those): without it a
        # forgotten address stays in the file's free space. Some builds (Debian's) default to ON.
        cursor.execute("PRAGMA secure_delete=ON")
    finally:
        cursor.close()


def _sqlite_begin(
    conn: Connection,
    cursor: Any,
    statement: str,
    _parameters: Any,
    _context: Any,
    _executemany: bool,
) -> None:
    """Begin SQLite transactions ourselves, just before their first statement.

    This is SQLAlchemy's pysqlite recipe (the connect hook stops the driver from emitting its own
    ``BEGIN``; we emit ours), so SAVEPOINTs and DDL (Alembic) run inside the transaction and reads
    are repeatable. It differs in two ways. ``BEGIN`` comes just before the transaction's first
    statement, not in the ``begin`` event, because that statement decides the kind: a transaction
    that starts by writing (to any table, temporary ones included) is ``BEGIN IMMEDIATE``, one that
    starts by reading is a deferred ``BEGIN``, which never holds the write lock, unless
    :func:`writing` (or :func:`session_scope`) asked for ``IMMEDIATE``. And a ``PRAGMA`` begins
    nothing: it runs outside the transaction, as with the driver's own handling
    (``PRAGMA wal_checkpoint`` cannot run inside a write transaction).
    """
    if not conn.in_transaction():
        return
    verb = _FIRST_WORD.match(statement)
    word = verb.group(1).upper() if verb else ""
    if word == "PRAGMA":
        return
    options = conn.get_execution_options()
    if options.get("isolation_level") == "AUTOCOMMIT":
        return
    dbapi_connection: Any = conn.connection.dbapi_connection
    if dbapi_connection.in_transaction:
        return
    if dbapi_connection.isolation_level is not None:
        # SQLAlchemy resets it to the driver's default after an AUTOCOMMIT checkout.
        dbapi_connection.isolation_level = None
    mode = options.get(BEGIN_OPTION) or ("DEFERRED" if word in _READS else "IMMEDIATE")
    cursor.execute(f"BEGIN {mode}")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine for a checked ``database.url`` (see :func:`database_url`).

    SQLite connections get WAL, foreign keys, a busy timeout and secure delete, and a transaction
    begins with ``BEGIN IMMEDIATE`` unless it starts by reading (see :func:`_sqlite_begin`).
    """
    parsed = database_url(url)
    try:
        engine = create_engine(parsed, **kwargs)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"database.url: cannot use {make_url_safe(parsed)}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if kwargs.get("isolation_level") != "AUTOCOMMIT":
            event.listen(engine, "before_cursor_execute", _sqlite_begin)
    return engine


def writing(engine: Engine) -> Engine:
    """The same engine (and pool), whose SQLite transactions begin with ``BEGIN IMMEDIATE``.

    For work that reads and then writes, like nearly every unit of work: a transaction that began
    by reading holds a snapshot, and SQLite cannot wait to turn it into a write transaction while
    another connection writes (the busy timeout does not apply), so it fails at once with "database
    is locked". ``BEGIN IMMEDIATE`` takes the write lock first, so writers queue instead.
    """
    return engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"})


def reading(engine: Engine) -> Engine:
    """The same engine (and pool), whose SQLite transactions begin deferred: for work that only reads.

    A deferred transaction never takes the write lock, so it neither waits for a writer (WAL readers
    see the last commit) nor holds one up, however long it stays open.
    """
    return engine.execution_options(**{BEGIN_OPTION: "DEFERRED"})


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: the CLI prints objects after committing them.
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine, *, read_only: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error. For the CLI and scripts.

    On SQLite the transaction begins with ``BEGIN IMMEDIATE`` (see :func:`writing`), or deferred
    with ``read_only`` (see :func:`reading`).
    """
    bind = reading(engine) if read_only else writing(engine)
    with make_session_factory(bind)() as session, session.begin():
        yield session


def alembic_config(engine: Engine | None = None, url: str | None = None) -> Config:
    """An Alembic config for the package's migrations (``migrations/`` in a checkout), from anywhere.

    It reads no ``alembic.ini``: the one at the top of a checkout is only for running ``alembic`` by
    hand, and an installed package has none. With ``engine``, migrations run on one of its
    connections (``env.py`` picks it up from ``config.attributes``), so callers and tests control
    exactly which database is migrated.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:  # pragma: no cover - the repository always ships migrations
        raise NewsletterError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def _unknown(revision: str) -> UnknownRevision:
    return UnknownRevision(
        f"database is at revision {revision}, which this version does not know "
        "(was it migrated by a newer release?); use that release, or restore a backup"
    )


def current_revision(engine: Engine) -> str | None:
    """The database's revision (``None`` when empty), which must be one this code knows.

    Raises :class:`UnknownRevision` for a revision that is not among our migrations.
    """
    with reading(engine).connect() as connection:
        try:
            current = MigrationContext.configure(connection).get_current_revision()
        except CommandError as exc:  # e.g. two rows in alembic_version
            raise SchemaOutOfDate(f"cannot tell the database's revision: {exc}") from None
    if current is not None:
        try:
            known = _scripts().get_revision(current)
        except CommandError:
            known = None
        if known is None:
            raise _unknown(current)
    return current


def upgrade(engine: Engine, revision: str = "head") -> None:
    current_revision(engine)  # refuses a revision we do not know before Alembic trips over it
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    current_revision(engine)
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


def open_database(url: str | URL) -> Engine:
    """The engine every command but ``db upgrade`` uses: it must be migrated to the newest revision.

    A bad URL is a :class:`ConfigError`; a missing SQLite file is reported as such rather than
    created empty as a side effect.
    """
    path = sqlite_file(url)
    if path is not None and not path.exists():
        raise SchemaOutOfDate(f"database {path} does not exist; {UPGRADE_HINT}")
    engine = make_engine(url)
    try:
        require_current_revision(engine)
    except Exception:
        engine.dispose()
        raise
    return engine
