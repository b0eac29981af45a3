"""What the ``schedule`` commands do: record, list, cancel and move scheduled sends; weekly rules.

Each change writes the row first (the truth) and then the job (the alarm); if the job write fails,
the worker's reconcile adds it from the row. Times are read in the newsletter's zone unless
``--tz`` names another, and stored in UTC.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.content.loader import load_issue
from newsletter.delivery.runner import PreparedIssue, prepare_issue
from newsletter.errors import BadInput
from newsletter.schedule.jobs import (
    paused_scheduler,
    put_rule_job,
    put_send_job,
    remove_job,
    rule_job_id,
    send_job_id,
)
from newsletter.schedule.times import local_instant, parse_clock, parse_weekday, parse_zone, show
from newsletter.store.db import open_database, writing
from newsletter.store.ledger import SendInfo, ledger_for
from newsletter.store.models import SendState, utcnow
from newsletter.store.rules import RuleInfo, Rules

__all__ = [
    "Listing",
    "Scheduled",
    "cancel",
    "listing",
    "move",
    "remove_weekly",
    "schedule_issue",
    "set_weekly",
]

#: A send that was scheduled and ended without going out may be scheduled again.
RESCHEDULABLE = (SendState.CANCELLED, SendState.MISSED)


@dataclass(frozen=True)
class Scheduled:
    send: SendInfo
    zone: ZoneInfo
    audience: int
    warnings: list[str]

    def describe(self) -> str:
        send = self.send
        assert send.scheduled_at is not None
        who = f"segment {send.segment!r}" if send.segment else "all active subscribers"
        return (
            f"Send {send.id} of {send.issue_file} scheduled for {show(send.scheduled_at, self.zone)}\n"
            f"  to {who} ({self.audience:,} now; the audience is taken when it starts)\n"
            "  `newsletter worker` must be running then."
        )


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    engine = open_database(settings.database.url)
    try:
        yield engine
    finally:
        engine.dispose()


def _zone(settings: Settings, tz: str | None) -> ZoneInfo:
    return parse_zone(tz) if tz else settings.newsletter.tz


def _future(at: str, zone: ZoneInfo, now: dt.datetime | None) -> dt.datetime:
    instant = local_instant(at, zone)
    if instant <= (now or utcnow()):
        raise BadInput(f"--at {at!r} ({show(instant, zone)}) is in the past")
    return instant


def _segment(segment: str) -> str:
    if segment:
        from newsletter.store.segments import parse_segment

        parse_segment(segment)
    return segment


def schedule_issue(
    settings: Settings,
    issue: Path,
    at: str,
    *,
    tz: str | None = None,
    segment: str = "",
    now: dt.datetime | None = None,
) -> Scheduled:
    """Check the issue (refusing one that fails), record its send as ``scheduled``, add the job."""
    zone = _zone(settings, tz)
    instant = _future(at, zone, now)
    prepared: PreparedIssue = prepare_issue(issue, settings)
    segment = _segment(segment)
    current = {
        "issue_file": str(prepared.path),
        "subject": prepared.rendered.subject,
        "content_hash": prepared.content_hash,
        "provider": settings.esp.provider,
    }
    with _database(settings) as engine:
        with writing(engine).begin() as conn:
            ledger = ledger_for(conn)
            existing = ledger.find_send(prepared.issue_date, segment)
            if existing is None:
                send = ledger.create_scheduled(
                    issue_date=prepared.issue_date, segment=segment, scheduled_at=instant, **current
                )
            elif existing.state in RESCHEDULABLE and ledger.reschedule(
                existing.id, instant, only_from=RESCHEDULABLE, **current
            ):
                send = ledger.get_send(existing.id)
            else:
                raise BadInput(_taken(existing, settings.newsletter.tz))
            audience = ledger.audience_count(segment)
        with paused_scheduler(engine) as scheduler:
            put_send_job(scheduler, send)
    return Scheduled(send, zone, audience, [str(w) for w in prepared.warnings])


def _taken(send: SendInfo, zone: ZoneInfo) -> str:
    if send.state is SendState.SCHEDULED and send.scheduled_at is not None:
        return (
            f"send {send.id} of this issue is already scheduled for {show(send.scheduled_at, zone)}; "
            "change it with `newsletter schedule move`"
        )
    return f"send {send.id} of this issue is {send.state}: it cannot be scheduled again"


def _scheduled_send(engine: Engine, issue: Path, segment: str) -> SendInfo:
    """The send of ``issue`` (a file, or a date such as 2026-11-27) to ``segment``."""
    try:
        day = dt.date.fromisoformat(issue.stem if issue.suffix else issue.name)
    except ValueError:
        day = load_issue(issue).issue.date
    with engine.connect() as conn:
        send = ledger_for(conn).find_send(day, segment)
    if send is None:
        raise BadInput(f"no send of the {day} issue to {segment or 'everyone'} is scheduled")
    return send


def cancel(settings: Settings, issue: Path, *, segment: str = "") -> SendInfo:
    with _database(settings) as engine:
        send = _scheduled_send(engine, issue, segment)
        with writing(engine).begin() as conn:
            ledger = ledger_for(conn)
            if not ledger.set_state(
                send.id, SendState.CANCELLED, error="cancelled by the editor", only_from=[SendState.SCHEDULED]
            ):
                raise BadInput(f"send {send.id} is {ledger.get_send(send.id).state}, not scheduled")
            send = ledger.get_send(send.id)
        with paused_scheduler(engine) as scheduler:
            remove_job(scheduler, send_job_id(send.id))
    return send


def move(
    settings: Settings,
    issue: Path,
    at: str,
    *,
    tz: str | None = None,
    segment: str = "",
    now: dt.datetime | None = None,
) -> Scheduled:
    zone = _zone(settings, tz)
    instant = _future(at, zone, now)
    with _database(settings) as engine:
        send = _scheduled_send(engine, issue, segment)
        with writing(engine).begin() as conn:
            ledger = ledger_for(conn)
            if not ledger.reschedule(send.id, instant, only_from=[SendState.SCHEDULED]):
                raise BadInput(f"send {send.id} is {ledger.get_send(send.id).state}, not scheduled")
            send = ledger.get_send(send.id)
            audience = ledger.audience_count(send.segment)
        with paused_scheduler(engine) as scheduler:
            put_send_job(scheduler, send)
    return Scheduled(send, zone, audience, [])


@dataclass(frozen=True)
class Listing:
    sends: list[SendInfo]
    rules: list[RuleInfo]
    zone: ZoneInfo

    def describe(self) -> str:
        lines = []
        for send in self.sends:
            assert send.scheduled_at is not None
            who = f"segment {send.segment!r}" if send.segment else "everyone"
            lines.append(f"send {send.id}  {show(send.scheduled_at, self.zone)}  {send.issue_file}  to {who}")
        for rule in self.rules:
            lines.append(f"weekly rule {rule.id}  {rule.describe()}")
        return "\n".join(lines) or "nothing scheduled"

    def as_dict(self) -> dict[str, object]:
        return {
            "sends": [
                {
                    "id": s.id,
                    "issue_file": s.issue_file,
                    "segment": s.segment,
                    "scheduled_at": s.scheduled_at.isoformat() if s.scheduled_at else None,
                    "local": s.scheduled_at.astimezone(self.zone).isoformat() if s.scheduled_at else None,
                }
                for s in self.sends
            ],
            "rules": [
                {
                    "id": r.id,
                    "weekday": r.weekday,
                    "time": r.send_time.strftime("%H:%M"),
                    "timezone": r.timezone,
                    "segment": r.segment,
                }
                for r in self.rules
            ],
        }


def listing(settings: Settings) -> Listing:
    with _database(settings) as engine, engine.connect() as conn:
        return Listing(ledger_for(conn).scheduled_sends(), Rules(conn).all(), settings.newsletter.tz)


def set_weekly(
    settings: Settings, day: str, time: str, *, segment: str = "", now: dt.datetime | None = None
) -> RuleInfo:
    """The segment's standing rule, in the newsletter's zone; occurrences already past are skipped."""
    from newsletter.schedule.times import last_occurrence

    weekday, send_time = parse_weekday(day), parse_clock(time)
    segment = _segment(segment)
    zone = settings.newsletter.tz
    with _database(settings) as engine:
        with writing(engine).begin() as conn:
            rules = Rules(conn)
            rule = rules.set_weekly(weekday=weekday, send_time=send_time, timezone=zone.key, segment=segment)
            # A rule set at 09:30 on a Friday must not send that morning's issue late.
            rules.claim_occurrence(rule.id, last_occurrence(weekday, send_time, zone, now or utcnow()))
        with paused_scheduler(engine) as scheduler:
            put_rule_job(scheduler, rule)
    return rule


def remove_weekly(settings: Settings, *, segment: str = "") -> RuleInfo:
    with _database(settings) as engine:
        with writing(engine).begin() as conn:
            rule = Rules(conn).remove(segment)
        if rule is None:
            raise BadInput(f"there is no weekly rule for {segment or 'everyone'}")
        with paused_scheduler(engine) as scheduler:
            remove_job(scheduler, rule_job_id(rule.id))
    return rule
