"""A scratch database for one benchmark run: a SQLite file, or a fresh PostgreSQL database.

A benchmark that wrote into the database it was pointed at would find the last run's rows there
(and fail on them, or measure a fuller table): on PostgreSQL each run creates its own database
next to the one named, migrates it, and drops it afterwards, whatever happened.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def scratch_database(server_url: str | None, directory: Path) -> Iterator[str]:
    """The URL of a migrated, empty database: a file in ``directory`` when ``server_url`` is None
    (or a SQLite URL), else a new database on the PostgreSQL server ``server_url`` names."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from newsletter.store.db import make_engine

    if server_url is None or server_url.startswith("sqlite"):
        url = f"sqlite:///{directory / f'bench-{secrets.token_hex(4)}.db'}"
        _migrate(url)
        yield url
        return
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"newsletter_bench_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
        _migrate(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _migrate(url: str) -> None:
    from newsletter.store.db import make_engine, upgrade

    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
