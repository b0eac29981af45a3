"""APScheduler itself, on the service's database, with the clock under the test's control.

A scheduler here is APScheduler's own machinery (the SQLAlchemy job store, triggers, due-job
processing) with no thread: the test moves the clock with time-machine and asks it to process due
jobs, which run at once in the test's thread (APScheduler's ``DebugExecutor``). A fresh scheduler
on the same database stands for a worker restarted: only the database carries anything over.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import time_machine
from apscheduler.executors.debug import DebugExecutor
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import Engine, delete

from newsletter.config import Settings
from newsletter.delivery import runner
from newsletter.schedule import service
from newsletter.schedule.jobs import make_scheduler, reconcile, rule_job_id, send_job_id
from newsletter.store.ledger import ledger_for
from newsletter.store.models import APSCHEDULER_JOBS, SendState
from tests.schedule.conftest import ISSUE_DATE, READERS, Journal, outbox_recipients, utc

DUE = utc(2026, 11, 27, 14)  # 09:00 New York


class ManualScheduler(BaseScheduler):
    """A scheduler without a thread: :meth:`tick` processes the jobs due at the (travelled) clock."""

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)

    def wakeup(self) -> None:
        pass

    def tick(self) -> None:
        self._process_jobs()


@contextmanager
def scheduler_on(db: Engine) -> Iterator[ManualScheduler]:
    scheduler: Any = make_scheduler(db, scheduler_class=ManualScheduler, executor=DebugExecutor())
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown()


def _state(db: Engine, send_id: int) -> SendState:
    with db.connect() as conn:
        return ledger_for(conn).get_send(send_id).state


def _deliver(settings: Settings) -> None:
    runner.work_once(settings, stop=threading.Event(), log=lambda line: None)


def _schedule(settings: Settings, issues: Path) -> int:
    with time_machine.travel(utc(2026, 11, 20, 12), tick=False):
        return service.schedule_issue(settings, issues / f"{ISSUE_DATE}.yaml", "2026-11-27 09:00").send.id


def test_the_job_fires_at_its_instant_and_survives_a_restart(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    send_id = _schedule(settings, issues)  # the job is written by the command, no scheduler running
    with time_machine.travel(DUE - dt.timedelta(seconds=1), tick=False) as clock:
        with scheduler_on(db) as first:
            assert [job.id for job in first.get_jobs()] == [send_job_id(send_id)]
            first.tick()
            assert _state(db, send_id) is SendState.SCHEDULED
        # The worker stops; a new one starts on the same database and the job is still there.
        clock.move_to(DUE)
        with scheduler_on(db) as second:
            second.tick()
            assert _state(db, send_id) is SendState.SENDING
            assert second.get_jobs() == []  # a one-off job is done
    _deliver(settings)
    assert sorted(outbox_recipients(settings)) == sorted(READERS)
    assert "job send:1: done, started" in journal.text().replace(f"send:{send_id}", "send:1")


@pytest.mark.parametrize(
    ("late", "state"),
    [(dt.timedelta(minutes=30), SendState.SENDING), (dt.timedelta(hours=3), SendState.MISSED)],
)
def test_a_job_that_fired_while_the_worker_was_down(
    settings: Settings, db: Engine, issues: Path, journal: Journal, late: dt.timedelta, state: SendState
) -> None:
    send_id = _schedule(settings, issues)
    with time_machine.travel(DUE + late, tick=False), scheduler_on(db) as scheduler:
        scheduler.tick()
    assert _state(db, send_id) is state
    assert len(journal.notes) == (1 if state is SendState.MISSED else 0)


def test_a_lost_job_store_loses_no_send(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    send_id = _schedule(settings, issues)
    cancelled = service.schedule_issue(
        settings, issues / "2026-11-20.yaml", "2026-11-20 09:00", now=utc(2026, 11, 13)
    ).send.id
    service.cancel(settings, Path("2026-11-20"))
    with db.begin() as conn:  # the job store is lost; a stale job of the cancelled send comes back
        conn.execute(delete(APSCHEDULER_JOBS))
    with time_machine.travel(utc(2026, 11, 21), tick=False), scheduler_on(db) as scheduler:
        from newsletter.schedule.jobs import put_send_job

        with db.connect() as conn:
            put_send_job(scheduler, ledger_for(conn).get_send(cancelled))
        changed = reconcile(scheduler, db)
        assert changed.added == [send_job_id(send_id)] and changed.removed == [send_job_id(cancelled)]
        assert not reconcile(scheduler, db)  # nothing left to change
    with time_machine.travel(DUE, tick=False), scheduler_on(db) as scheduler:
        scheduler.tick()
    assert _state(db, send_id) is SendState.SENDING
    assert _state(db, cancelled) is SendState.CANCELLED


@pytest.mark.parametrize(
    ("zone", "fridays_utc"),
    [
        # New York: EST until Sunday 2026-03-08, then EDT: 09:00 is 14:00 UTC, then 13:00.
        ("America/New_York", [utc(2026, 3, 6, 14), utc(2026, 3, 13, 13), utc(2026, 3, 20, 13)]),
        # Berlin: CEST until Sunday 2026-10-25, then CET: 09:00 is 07:00 UTC, then 08:00.
        ("Europe/Berlin", [utc(2026, 10, 23, 7), utc(2026, 10, 30, 8), utc(2026, 11, 6, 8)]),
    ],
)
def test_the_weekly_rule_fires_at_nine_local_through_a_dst_change(
    settings: Settings, db: Engine, journal: Journal, zone: str, fridays_utc: list[dt.datetime]
) -> None:
    """No issue files for those days: each occurrence fires, at its instant, and reports the file missing."""
    zoned = settings.model_copy(
        update={"newsletter": settings.newsletter.model_copy(update={"timezone": zone})}
    )
    from newsletter.schedule.jobs import install

    install(zoned, journal.log, journal.notify)
    start = fridays_utc[0] - dt.timedelta(days=2)
    with time_machine.travel(start, tick=False) as clock:
        rule = service.set_weekly(zoned, "fri", "09:00")
        with scheduler_on(db) as scheduler:
            (job,) = scheduler.get_jobs()
            assert job.id == rule_job_id(rule.id)
            for friday in fridays_utc:
                assert job.next_run_time == friday
                clock.move_to(friday - dt.timedelta(seconds=1))
                scheduler.tick()
                clock.move_to(friday)
                scheduler.tick()
                (job,) = scheduler.get_jobs()
    days = [f.astimezone(dt.UTC).date().isoformat() for f in fridays_utc]
    assert [subject for subject, _ in journal.notes] == [f"no issue sent on {day}" for day in days]


def test_the_schedule_commands_never_eat_a_due_job(settings: Settings, db: Engine, issues: Path) -> None:
    """Each command edits the job store through a scheduler; it must not run or drop due jobs."""
    due_now = service.schedule_issue(
        settings, issues / "2026-11-20.yaml", "2026-11-20 09:00", now=utc(2026, 11, 13)
    ).send.id  # due by the real clock: a worker would run it at once
    service.set_weekly(settings, "mon", "08:00")
    service.remove_weekly(settings)
    with scheduler_on(db) as scheduler:
        assert send_job_id(due_now) in [job.id for job in scheduler.get_jobs()]
    assert _state(db, due_now) is SendState.SCHEDULED


def test_stopping_the_worker_scheduler_leaves_due_jobs_in_the_store(
    settings: Settings, db: Engine, issues: Path, journal: Journal
) -> None:
    from newsletter.schedule.jobs import stop_scheduler

    send_id = service.schedule_issue(
        settings, issues / "2026-11-20.yaml", "2026-11-20 09:00", now=utc(2026, 11, 13)
    ).send.id  # due by the real clock
    background = make_scheduler(db)
    background.start(paused=True)  # as the worker does before it reconciles
    stop_scheduler(background)
    with scheduler_on(db) as scheduler:
        assert [job.id for job in scheduler.get_jobs()] == [send_job_id(send_id)]


@pytest.mark.parametrize("junk", [b"", b"\x80\x05not a pickle", b"\x00" * 4096, b"\x80\x05N."])
def test_a_damaged_job_row_is_dropped_and_the_send_still_fires(
    settings: Settings, db: Engine, issues: Path, journal: Journal, junk: bytes
) -> None:
    send_id = _schedule(settings, issues)
    with db.begin() as conn:  # the job's row overwritten with junk, and a stray row beside it
        conn.execute(APSCHEDULER_JOBS.update().values(job_state=junk))
        conn.execute(APSCHEDULER_JOBS.insert().values(id="stray", next_run_time=0.0, job_state=junk))
    with time_machine.travel(DUE, tick=False), scheduler_on(db) as scheduler:
        assert reconcile(scheduler, db).added == [send_job_id(send_id)]
        scheduler.tick()
    assert _state(db, send_id) is SendState.SENDING


def test_jobs_hold_only_an_id(settings: Settings, db: Engine, issues: Path) -> None:
    import pickle

    from sqlalchemy import select

    send_id = _schedule(settings, issues)
    rule = service.set_weekly(settings, "fri", "09:00")
    with db.connect() as conn:
        rows = dict(conn.execute(select(APSCHEDULER_JOBS.c.id, APSCHEDULER_JOBS.c.job_state)).all())
    assert set(rows) == {send_job_id(send_id), rule_job_id(rule.id)}
    subject = runner.prepare_issue(issues / f"{ISSUE_DATE}.yaml", settings).rendered.subject
    for job_id, blob in rows.items():
        state = pickle.loads(blob)
        assert state["func"] in ("newsletter.schedule.jobs:run_send", "newsletter.schedule.jobs:run_rule")
        assert state["args"] == (int(job_id.partition(":")[2]),) and state["kwargs"] == {}
        assert subject.encode() not in blob and b"<html" not in blob
