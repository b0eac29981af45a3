"""``newsletter worker`` records a heartbeat in the database; ``status`` shows the last one."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings
from newsletter.schedule.worker import run_worker
from newsletter.store.heartbeats import latest, this_worker


def test_the_worker_beats_and_status_shows_it(settings: Settings, db: Engine) -> None:
    runner = CliRunner()
    env = {"NEWSLETTER_DATABASE_URL": settings.database.url}
    before = runner.invoke(app, ["status"], env=env)
    assert "worker: none has run against this database" in before.output, before.output
    run_worker(settings, stop=threading.Event(), once=True, log=lambda line: None)
    with db.connect() as conn:
        heartbeat = latest(conn)
    assert heartbeat is not None and heartbeat.worker == this_worker()
    after = runner.invoke(app, ["status"], env=env)
    assert f"worker: {this_worker()} last seen" in after.output, after.output
