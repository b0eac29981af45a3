"""The APScheduler side: the job store, the jobs (ids only), and reconciling them with the rows.

A job's function is named by text (``newsletter.schedule.jobs:run_send``) and its only argument is
an id, so the job table never holds rendered content or settings. The functions find the worker's
settings, log and editor notifier in :data:`_context`, set by :func:`install` when a worker starts:
APScheduler stores a function by its importable name, so it must be a module-level function.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.schedule.firing import Fired, Log, Notify, fire_rule, fire_send
from newsletter.schedule.times import parse_zone, weekly_trigger
from newsletter.store.ledger import SendInfo, ledger_for
from newsletter.store.models import APSCHEDULER_JOBS, utcnow
from newsletter.store.rules import RuleInfo, Rules

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

__all__ = [
    "Reconciled",
    "install",
    "make_scheduler",
    "paused_scheduler",
    "put_rule_job",
    "put_send_job",
    "reconcile",
    "remove_job",
    "rule_job_id",
    "run_rule",
    "run_send",
    "send_job_id",
    "stop_scheduler",
]


def send_job_id(send_id: int) -> str:
    return f"send:{send_id}"


def rule_job_id(rule_id: int) -> str:
    return f"rule:{rule_id}"


# -- the jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    settings: Settings
    log: Log
    notify: Notify


_context: _Context | None = None


def install(settings: Settings, log: Log, notify: Notify) -> None:
    """Give the jobs of this process their settings, log and editor notifier (the worker does)."""
    global _context
    _context = _Context(settings, log, notify)


def _current() -> _Context:
    if _context is None:
        raise RuntimeError("a scheduled job ran outside `newsletter worker` (schedule.jobs.install)")
    return _context


def run_send(send_id: int) -> Fired:
    context = _current()
    context.log(f"job {send_job_id(send_id)}: firing")
    fired = fire_send(context.settings, send_id, now=utcnow(), log=context.log, notify=context.notify)
    context.log(f"job {send_job_id(send_id)}: done, {fired}")
    return fired


def run_rule(rule_id: int) -> Fired:
    context = _current()
    context.log(f"job {rule_job_id(rule_id)}: firing")
    fired = fire_rule(context.settings, rule_id, now=utcnow(), log=context.log, notify=context.notify)
    context.log(f"job {rule_job_id(rule_id)}: done, {fired}")
    return fired


# -- the scheduler -------------------------------------------------------------------------------


def _job_store(engine: Engine) -> Any:
    from apscheduler.jobstores.base import JobLookupError
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

    class SharedJobStore(SQLAlchemyJobStore):
        """APScheduler's SQLAlchemy store, for schedulers that share it.

        Two workers on one database both see a due job; the second to finish with it finds it
        gone. The stock store raises ``JobLookupError`` then, out of the scheduler's loop, which
        stops that scheduler for good. Here a job that is already gone is simply gone.
        """

        def remove_job(self, job_id: str) -> None:
            with suppress(JobLookupError):
                super().remove_job(job_id)

        def update_job(self, job: Any) -> None:
            with suppress(JobLookupError):
                super().update_job(job)

    return SharedJobStore(engine=engine, tablename=APSCHEDULER_JOBS.name)


#: Every job: run however late (the job judges lateness itself), once for several missed runs.
JOB_DEFAULTS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


def make_scheduler(engine: Engine, *, scheduler_class: Any = None, executor: Any = None) -> BaseScheduler:
    """A scheduler on the service's database, in UTC: a background thread unless the caller (a
    test driving the clock) passes another ``scheduler_class`` and ``executor``.

    ``misfire_grace_time=None``: APScheduler runs a late job however late, and the job decides
    against the send row's ``scheduled_at`` (``firing.fire_send``): APScheduler's own grace would
    drop the job silently and leave the send ``scheduled`` for ever. ``coalesce``: a weekly rule
    that missed several weeks runs once, for the latest week only.
    """
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler: BaseScheduler = (scheduler_class or BackgroundScheduler)(
        jobstores={"default": _job_store(engine)},
        executors={"default": executor or ThreadPoolExecutor(max_workers=2)},
        job_defaults=JOB_DEFAULTS,
        timezone=dt.UTC,
    )
    return scheduler


def _store_editor() -> Any:
    from apscheduler.schedulers.base import BaseScheduler

    class StoreEditor(BaseScheduler):
        """Adds and removes jobs, never runs one: it has no thread and stays paused.

        Not a paused ``BackgroundScheduler``: on shutdown its thread processes due jobs once more,
        with its executor already shut down (APScheduler 3.11): each fails to submit, and removing
        it raises ``JobLookupError`` in that thread. The job survives only by that accident; a
        command that edits the store has no business touching the jobs the worker is about to run.
        """

        def shutdown(self, wait: bool = True) -> None:
            super().shutdown(wait)

        def wakeup(self) -> None:
            pass

    return StoreEditor


@contextmanager
def paused_scheduler(engine: Engine) -> Iterator[BaseScheduler]:
    """A scheduler that only edits the job store (the ``schedule`` commands); it runs nothing."""
    scheduler = make_scheduler(engine, scheduler_class=_store_editor())
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def stop_scheduler(scheduler: BaseScheduler) -> None:
    """Stop a running scheduler, waiting for the job running, without losing a due job.

    ``shutdown`` alone makes APScheduler's thread process due jobs once more after its executor
    has stopped: they fail to submit, and the attempt to remove them dies with ``JobLookupError``
    in that thread. Detaching the store first leaves them untouched for the next worker.
    """
    scheduler.pause()
    scheduler.remove_jobstore("default", shutdown=False)
    scheduler.shutdown(wait=True)


def put_send_job(scheduler: BaseScheduler, send: SendInfo) -> None:
    from apscheduler.triggers.date import DateTrigger

    assert send.scheduled_at is not None
    scheduler.add_job(
        run_send,
        trigger=DateTrigger(run_date=send.scheduled_at, timezone=dt.UTC),
        args=[send.id],
        id=send_job_id(send.id),
        name=f"send {send.id} ({send.issue_file})",
        replace_existing=True,
    )


def put_rule_job(scheduler: BaseScheduler, rule: RuleInfo) -> None:
    scheduler.add_job(
        run_rule,
        trigger=weekly_trigger(rule.weekday, rule.send_time, parse_zone(rule.timezone)),
        args=[rule.id],
        id=rule_job_id(rule.id),
        name=f"weekly rule {rule.id}",
        replace_existing=True,
    )


def remove_job(scheduler: BaseScheduler, job_id: str) -> None:
    from apscheduler.jobstores.base import JobLookupError

    with suppress(JobLookupError):
        scheduler.remove_job(job_id)


@dataclass(frozen=True)
class Reconciled:
    added: list[str]
    removed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


def reconcile(scheduler: BaseScheduler, engine: Engine) -> Reconciled:
    """Make the jobs match the rows: the send rows and rules are the truth, jobs only alarms.

    A scheduled send or rule without its job (a lost job store, a job write that failed) gets one,
    as does one whose job says another time or trigger; a job whose send is no longer scheduled, or
    whose rule is gone, is removed.
    """
    with engine.connect() as conn:
        sends = ledger_for(conn).scheduled_sends()
        rules = Rules(conn).all()
    wanted: dict[str, tuple[str, Any]] = {send_job_id(s.id): ("send", s) for s in sends}
    wanted.update({rule_job_id(r.id): ("rule", r) for r in rules})
    jobs = {job.id: job for job in scheduler.get_jobs()}
    added, removed = [], []
    for job_id in sorted(set(jobs) - set(wanted)):
        remove_job(scheduler, job_id)
        removed.append(job_id)
    for job_id, (kind, row) in wanted.items():
        job = jobs.get(job_id)
        if kind == "send":
            if job is None or job.trigger.run_date != row.scheduled_at:
                put_send_job(scheduler, row)
                added.append(job_id)
        elif job is None or repr(job.trigger) != repr(
            weekly_trigger(row.weekday, row.send_time, parse_zone(row.timezone))
        ):
            put_rule_job(scheduler, row)
            added.append(job_id)
    return Reconciled(added, removed)
