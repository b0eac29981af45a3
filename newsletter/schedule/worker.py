"""``newsletter worker``: the scheduler beside the delivery loop, in the foreground.

On start the worker first does what came due while no worker ran (``catch_up``: scheduled sends
whose time passed, weekly occurrences not yet handled; each within the grace time, or marked
missed), then reconciles the job store with the rows and starts APScheduler's thread. The main
thread runs the delivery loop (``runner.work_once``): whatever a job started, this worker and any
other sends. Every few seconds it wakes the scheduler, so jobs that ``newsletter schedule`` wrote
from another process are seen at once, and reconciles again, so a send recorded without its job is
not lost. ``stop`` (SIGTERM, Ctrl-C) ends the loop after the batches in flight, and the scheduler
after the job running, if any. With ``[bounces] imap_host`` set, the loop also reads the bounce
mailbox every ``[bounces] poll_seconds`` (``newsletter.bounces``); a mailbox that cannot be read
is logged and tried on the next round, and never stops the sends.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.schedule.firing import Fired, Log, Notify, fire_rule, fire_send
from newsletter.schedule.jobs import install, make_scheduler, reconcile, stop_scheduler
from newsletter.schedule.times import last_occurrence, parse_zone
from newsletter.store.db import open_database, writing
from newsletter.store.ledger import ledger_for
from newsletter.store.models import utcnow
from newsletter.store.rules import Rules

__all__ = ["RECONCILE_SECONDS", "catch_up", "editor_notifier", "run_worker"]

#: How often a running worker compares the job store with the rows.
RECONCILE_SECONDS = 30.0
#: How often a worker records that it is alive (``doctor`` calls one silent for 3 beats dead).
HEARTBEAT_SECONDS = 30.0


def editor_notifier(settings: Settings, log: Log) -> Notify:
    """Email the editors; a provider failure is logged, never fatal to the worker."""

    def notify(subject: str, body: str) -> None:
        from newsletter.delivery.notes import tell_editors

        try:
            answers = tell_editors(settings, subject, body)
        except Exception as exc:  # the note is a courtesy; the log line is already written
            log(f"could not tell the editors ({subject}): {exc}")
            return
        for address, answer in answers:
            log(f"told {address} ({subject}): {answer}")

    return notify


def catch_up(
    settings: Settings, engine: Engine, *, now: dt.datetime, log: Log, notify: Notify
) -> list[Fired]:
    """Fire what is due at ``now`` straight from the rows, whatever the job store holds."""
    with engine.connect() as conn:
        sends = ledger_for(conn).scheduled_sends()
        rules = Rules(conn).all()
    due = [send.id for send in sends if send.scheduled_at is not None and send.scheduled_at <= now]
    fired = [fire_send(settings, send_id, now=now, log=log, notify=notify) for send_id in due]
    for rule in rules:
        occurrence = last_occurrence(rule.weekday, rule.send_time, parse_zone(rule.timezone), now)
        if rule.last_occurrence is None or rule.last_occurrence < occurrence:
            fired.append(fire_rule(settings, rule.id, now=now, log=log, notify=notify))
    return fired


class _MailboxPoller:
    """Reads the bounce mailbox (``[bounces] imap_host``) at most every ``poll_seconds``."""

    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings, self.log = settings, log
        self.enabled = settings.bounces.mailbox
        self.last: float | None = None

    def __call__(self, stop: threading.Event) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.last is not None and now - self.last < self.settings.bounces.poll_seconds:
            return
        self.last = now
        from newsletter.bounces import poll
        from newsletter.errors import NewsletterError

        try:
            report = poll(self.settings, log=self.log, stop=stop)
        except NewsletterError as exc:  # a missing password: said each time, the sends go on
            self.log(f"mailbox not read: {exc}")
            return
        if report.held or report.error:
            self.log(report.describe())


def _heartbeat(engine: Engine, stop: threading.Event, log: Log) -> threading.Event:
    """Beat now and every ``HEARTBEAT_SECONDS`` from a thread of its own, so a long send does not
    look like a dead worker; the returned event (or ``stop``) ends it."""
    from newsletter.store.heartbeats import beat, this_worker

    worker, started, done = this_worker(), utcnow(), threading.Event()

    def once() -> None:
        try:
            with writing(engine).begin() as conn:
                beat(conn, worker, started_at=started)
        except Exception as exc:  # a database hiccup must not stop the worker; the next beat retries
            log(f"heartbeat not recorded: {exc}")

    def loop() -> None:
        while not (done.wait(HEARTBEAT_SECONDS) or stop.is_set()):
            once()

    once()
    threading.Thread(target=loop, name="heartbeat", daemon=True).start()
    return done


def run_worker(
    settings: Settings,
    *,
    stop: threading.Event,
    workers: int = 1,
    poll: float = 2.0,
    once: bool = False,
    log: Log = print,
) -> None:
    """Run until ``stop`` is set (or, with ``once``, until nothing is due or sending)."""
    from newsletter.delivery import runner

    notify = editor_notifier(settings, log)
    mailbox = _MailboxPoller(settings, log)
    install(settings, log, notify)
    engine = open_database(settings.database.url)
    scheduler = None
    beating = _heartbeat(engine, stop, log)
    try:
        catch_up(settings, engine, now=utcnow(), log=log, notify=notify)
        mailbox(stop)
        if once:
            while not stop.is_set() and runner.work_once(settings, stop=stop, workers=workers, log=log):
                pass
            return
        scheduler = make_scheduler(engine)
        scheduler.start(paused=True)
        reconciled = reconcile(scheduler, engine)
        scheduler.resume()
        jobs = scheduler.get_jobs()
        upcoming = min((job.next_run_time for job in jobs if job.next_run_time), default=None)
        log(
            f"worker started: {len(jobs)} scheduled job(s)"
            + (f", next at {upcoming.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC" if upcoming else "")
            + (f"; reconciled: +{len(reconciled.added)} -{len(reconciled.removed)}" if reconciled else "")
        )
        reconciled_at = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - reconciled_at >= RECONCILE_SECONDS:
                if changed := reconcile(scheduler, engine):
                    log(f"reconciled jobs: added {changed.added or '-'}, removed {changed.removed or '-'}")
                reconciled_at = time.monotonic()
            scheduler.wakeup()
            mailbox(stop)
            if not runner.work_once(settings, stop=stop, workers=workers, log=log):
                stop.wait(poll)
    finally:
        beating.set()
        if scheduler is not None:
            stop_scheduler(scheduler)
        engine.dispose()
        log("worker stopped")
