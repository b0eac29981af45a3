"""Alembic environment: migrates the newsletter database.

The URL comes from, in order: an engine handed over by ``newsletter.store.db.alembic_config`` (the
CLI and tests), ``sqlalchemy.url`` set on the config, else the newsletter settings
(``NEWSLETTER_DATABASE_URL`` or newsletter.toml), so ``alembic upgrade head`` works by hand too.
``render_as_batch`` lets future ALTERs run on SQLite, which cannot alter most things in place.
This folder (``migrations/`` at the top of a checkout) ships inside the package as
``newsletter.migrations``, so an installed wheel migrates too; ``alembic.ini`` beside it points here
for running ``alembic`` by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from newsletter.config import load_settings
from newsletter.store.db import make_engine
from newsletter.store.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or load_settings().database.url


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def run_migrations_offline() -> None:
    url = _url()
    _configure(url=url, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is not None:
        with engine.connect() as connection:
            _run(connection)
        return
    owned = make_engine(_url())
    try:
        with owned.connect() as connection:
            _run(connection)
    finally:
        owned.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
