"""``run_worker`` in this process, on the real clock: the loop that reconciles while it runs."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.delivery.runner import prepare_issue
from newsletter.schedule import worker as worker_module
from newsletter.store.db import writing
from newsletter.store.ledger import ledger_for
from newsletter.store.models import SendState
from tests.schedule.conftest import ISSUE_DATE, READERS, outbox_recipients


def test_a_send_recorded_without_its_job_is_still_sent(
    settings: Settings, db: Engine, issues: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if ``schedule`` had written the row and then failed to write the job."""
    monkeypatch.setattr(worker_module, "RECONCILE_SECONDS", 0.2)
    lines: list[str] = []
    stop = threading.Event()
    thread = threading.Thread(
        target=worker_module.run_worker,
        args=(settings,),
        kwargs={"stop": stop, "poll": 0.1, "log": lines.append},
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not any("worker started" in line for line in lines):
            assert time.monotonic() < deadline and thread.is_alive(), lines
            time.sleep(0.05)
        prepared = prepare_issue(issues / f"{ISSUE_DATE}.yaml", settings)
        with writing(db).begin() as conn:
            send = ledger_for(conn).create_scheduled(
                issue_file=str(prepared.path),
                issue_date=prepared.issue_date,
                segment="",
                subject=prepared.rendered.subject,
                content_hash=prepared.content_hash,
                provider="outbox",
                scheduled_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1),
            )
        while True:
            with db.connect() as conn:
                if ledger_for(conn).get_send(send.id).state is SendState.FINISHED:
                    break
            assert time.monotonic() < deadline and thread.is_alive(), lines
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert any(f"added ['send:{send.id}']" in line for line in lines), lines
    assert sorted(outbox_recipients(settings)) == sorted(READERS)
    assert lines[-1] == "worker stopped"
