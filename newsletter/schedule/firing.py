"""What a due job does: start a scheduled send, or run one occurrence of a weekly rule.

Both take the clock as an argument (``now``), so tests drive them at any instant. Neither sends a
message itself: starting a send means moving it to ``sending`` and snapshotting its audience in one
transaction; the worker's delivery loop (``runner.work_once``), or any other worker, then sends it.

What happens instead of a send is always said twice: in the log and, when ``[newsletter] editors``
is set, by email to the editors (``delivery.notes``). Only the worker whose guarded update won tells
anyone, so two workers never send two notes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.content.calendar import issue_file_for
from newsletter.delivery.runner import PreparedIssue, prepare_issue
from newsletter.errors import BadInput, NewsletterError
from newsletter.schedule.times import last_occurrence, parse_zone, show
from newsletter.store.db import open_database, writing
from newsletter.store.ledger import Ledger, SendInfo, SendNotFound, ledger_for
from newsletter.store.models import SendState
from newsletter.store.rules import RuleInfo, Rules

__all__ = ["Fired", "Log", "Notify", "fire_rule", "fire_send"]

Log = Callable[[str], None]
#: ``(subject, body)`` to the editors; the worker passes ``delivery.notes.tell_editors``.
Notify = Callable[[str, str], None]


class Fired(StrEnum):
    """What a firing did, for the log and the tests."""

    STARTED = "started"  #: this worker started the send
    #: Someone acted first (another worker, an earlier firing, the editor who cancelled or sent
    #: it): nothing done here.
    TAKEN = "taken"
    MISSED = "missed"  #: too late: marked missed, editors told
    REFUSED = "refused"  #: the issue file is missing or fails check: nothing sent, editors told
    NOT_DUE = "not due"  #: fired before the send's time (it was moved): left for its own job
    GONE = "gone"  #: the send or rule no longer exists


def grace(settings: Settings) -> dt.timedelta:
    return dt.timedelta(seconds=settings.schedule.misfire_grace_seconds)


def fire_send(settings: Settings, send_id: int, *, now: dt.datetime, log: Log, notify: Notify) -> Fired:
    """Start scheduled send ``send_id`` if it is due and within the grace time; else say why not."""
    zone = settings.newsletter.tz
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            try:
                send = ledger_for(conn).get_send(send_id)
            except SendNotFound:
                log(f"send {send_id}: no such send any more; nothing to do")
                return Fired.GONE
        if send.state is not SendState.SCHEDULED or send.scheduled_at is None:
            log(f"send {send.id}: {send.state}, no longer scheduled; nothing to do")
            return Fired.TAKEN
        due = send.scheduled_at
        if now < due:
            log(f"send {send.id}: not due until {show(due, zone)}")
            return Fired.NOT_DUE
        if now - due > grace(settings):
            reason = (
                f"its time, {show(due, zone)}, passed {_ago(now - due)} ago while no worker ran "
                f"(misfire grace: {_ago(grace(settings))}); it was not sent"
            )
            with writing(engine).begin() as conn:
                moved = ledger_for(conn).set_state(
                    send.id, SendState.MISSED, error=reason, only_from=[SendState.SCHEDULED]
                )
            if not moved:
                return Fired.TAKEN
            log(f"send {send.id} ({send.issue_file}): missed: {reason}")
            notify(
                f"scheduled send of {send.issue_file} missed",
                f"Send {send.id} of {send.issue_file}: {reason}.",
            )
            return Fired.MISSED
        try:
            prepared = prepare_issue(Path(send.issue_file), settings, links=True)
            if prepared.issue_date != send.issue_date:
                raise BadInput(f"its date is now {prepared.issue_date}, not {send.issue_date} as scheduled")
        except (NewsletterError, OSError) as exc:  # anything that keeps the file from going out
            reason = f"at its send time {send.issue_file} could not be sent: {exc}"
            with writing(engine).begin() as conn:
                moved = ledger_for(conn).set_state(
                    send.id, SendState.CANCELLED, error=reason, only_from=[SendState.SCHEDULED]
                )
            if not moved:
                return Fired.TAKEN
            log(f"send {send.id}: not sent: {reason}")
            notify(f"scheduled send of {send.issue_file} not sent", f"Send {send.id}: {reason}")
            return Fired.REFUSED
        for warning in prepared.warnings:
            log(f"send {send.id}: warning {warning}")
        if prepared.content_hash != send.content_hash:
            log(
                f"send {send.id}: {send.issue_file} changed since it was scheduled "
                f"({send.content_hash[:12]} then, {prepared.content_hash[:12]} now); sending it as it is now"
            )
        return _start(engine, send, prepared, settings, log)
    finally:
        engine.dispose()


def _start(engine: Engine, send: SendInfo, prepared: PreparedIssue, settings: Settings, log: Log) -> Fired:
    with writing(engine).begin() as conn:
        ledger = ledger_for(conn)
        started = ledger.start_scheduled(
            send.id,
            issue_file=str(prepared.path),
            subject=prepared.rendered.subject,
            content_hash=prepared.content_hash,
            provider=settings.esp.provider,
            issue=prepared.snapshot,
        )
        recipients = ledger.get_send(send.id).recipients
    if not started:
        log(f"send {send.id}: already started by another worker")
        return Fired.TAKEN
    log(f"send {send.id} ({send.issue_file}): started, {_recipients(recipients)}")
    return Fired.STARTED


def fire_rule(settings: Settings, rule_id: int, *, now: dt.datetime, log: Log, notify: Notify) -> Fired:
    """Run the weekly rule's latest occurrence (at or before ``now``) once, whoever fires it."""
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            rule = Rules(conn).get(rule_id)
        if rule is None:
            log(f"weekly rule {rule_id}: no such rule any more; nothing to do")
            return Fired.GONE
        zone = parse_zone(rule.timezone)
        occurrence = last_occurrence(rule.weekday, rule.send_time, zone, now)
        day = occurrence.astimezone(zone).date()
        path = issue_file_for(settings.paths.issues, day)
        what = f"weekly rule {rule.id}, {show(occurrence, zone)}"
        problem: str | None = None
        prepared: PreparedIssue | None = None
        if now - occurrence > grace(settings):
            problem = f"its time passed {_ago(now - occurrence)} ago while no worker ran; nothing was sent"
        elif not path.is_file():
            problem = f"there is no issue file {path} for that day; nothing was sent"
        else:
            try:
                prepared = prepare_issue(path, settings, links=True)
                for warning in prepared.warnings:
                    log(f"{what}: warning {warning}")
            except (NewsletterError, OSError) as exc:  # anything that keeps the file from going out
                problem = f"{path} cannot be sent: {exc}"
        with writing(engine).begin() as conn:
            if not Rules(conn).claim_occurrence(rule.id, occurrence):
                return Fired.TAKEN
            if prepared is None:
                outcome = Fired.MISSED if now - occurrence > grace(settings) else Fired.REFUSED
            else:
                outcome = _start_for_rule(ledger_for(conn), rule, prepared, occurrence, settings, log, what)
        if prepared is None:
            assert problem is not None
            log(f"{what}: {problem}")
            notify(f"no issue sent on {day}", f"{what} ({rule.describe()}):\n{problem}")
        return outcome
    finally:
        engine.dispose()


def _start_for_rule(
    ledger: Ledger,
    rule: RuleInfo,
    prepared: PreparedIssue,
    occurrence: dt.datetime,
    settings: Settings,
    log: Log,
    what: str,
) -> Fired:
    """In the occurrence's transaction: record the send as scheduled for now and start it at once.

    A send of that issue and audience that exists already wins: one the editor scheduled for
    another time is left to its own job; one that ran is not sent again.
    """
    existing = ledger.find_send(prepared.issue_date, rule.segment)
    if existing is not None:
        log(f"{what}: send {existing.id} of {existing.issue_file} is {existing.state}; the rule leaves it")
        return Fired.TAKEN
    send = ledger.create_scheduled(
        issue_file=str(prepared.path),
        issue_date=prepared.issue_date,
        segment=rule.segment,
        subject=prepared.rendered.subject,
        content_hash=prepared.content_hash,
        provider=settings.esp.provider,
        scheduled_at=occurrence,
    )
    ledger.start_scheduled(
        send.id,
        issue_file=str(prepared.path),
        subject=prepared.rendered.subject,
        content_hash=prepared.content_hash,
        provider=settings.esp.provider,
        issue=prepared.snapshot,
    )
    recipients = ledger.get_send(send.id).recipients
    log(f"{what}: send {send.id} ({prepared.path}) started, {_recipients(recipients)}")
    return Fired.STARTED


def _recipients(n: int) -> str:
    return f"{n:,} recipient" + ("" if n == 1 else "s")


def _ago(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} days"
