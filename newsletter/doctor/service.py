"""The service itself: the database reachable and migrated, the secret that signs every link long
enough, a worker alive when a send is waiting for one, and the next scheduled issue passing
``check`` now rather than at its hour."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.delivery.runner import DEVELOPMENT_SECRET, SECRET_ENV, prepare_issue
from newsletter.doctor.model import Check, fail, ok, warn
from newsletter.errors import NewsletterError
from newsletter.store.models import utcnow

__all__ = ["SECTION", "ServiceState", "check_database", "check_secret", "check_worker"]

SECTION: Final = "The service"
#: A worker silent for this many heartbeats is taken for dead.
_MISSED_BEATS: Final = 3


@dataclass(frozen=True)
class ServiceState:
    """What the later checks need from the database, read once."""

    audience: int
    latest_issue: dt.date | None
    scheduled: list[tuple[dt.datetime | None, str]]
    weekly_rules: int
    running: int
    heartbeat: tuple[str, dt.datetime] | None


def check_database(settings: Settings) -> tuple[list[Check], Engine | None]:
    from newsletter.store.db import current_revision, head_revision, make_engine, make_url_safe, sqlite_file

    where = make_url_safe(settings.database.url)
    try:
        file = sqlite_file(settings.database.url)
    except NewsletterError as exc:
        return [fail(SECTION, "database", str(exc), "check [database] url")], None
    if file is not None and not file.exists():  # asking would create it
        return [fail(SECTION, "database", f"{file} does not exist", "run `newsletter db upgrade`")], None
    try:
        engine = make_engine(settings.database.url)
        revision = current_revision(engine)
    except NewsletterError as exc:
        return [fail(SECTION, "database", f"{where}: {exc}", "run `newsletter db upgrade`")], None
    except Exception as exc:  # the driver's own errors: a server down, a file that cannot be opened
        return [
            fail(
                SECTION, "database", f"{where} cannot be reached: {_first_line(exc)}", "check [database] url"
            )
        ], None
    head = head_revision()
    if revision != head:
        engine.dispose()
        found = f"{where} is at revision {revision or 'none (empty)'}, the code needs {head}"
        return [fail(SECTION, "database", found, "run `newsletter db upgrade`")], None
    return [ok(SECTION, "database", f"{where}, migrated (revision {head})")], engine


def read_state(engine: Engine, settings: Settings) -> ServiceState:
    from newsletter.store.archive import Archive
    from newsletter.store.heartbeats import latest
    from newsletter.store.ledger import ledger_for
    from newsletter.store.rules import Rules

    with engine.connect() as conn:
        ledger = ledger_for(conn)
        listing = Archive(conn).listing()
        beat = latest(conn)
        return ServiceState(
            audience=ledger.audience_count(""),
            latest_issue=listing[0].issue_date if listing else None,
            scheduled=[(send.scheduled_at, send.issue_file) for send in ledger.scheduled_sends()],
            weekly_rules=len(Rules(conn).all()),
            running=len(ledger.running_sends()),
            heartbeat=None if beat is None else (beat.worker, beat.seen_at),
        )


def check_secret(settings: Settings, environ: Mapping[str, str]) -> Check:
    name = "secret key"
    key = environ.get(SECRET_ENV, "")
    minimum = settings.doctor.secret_min_length
    make = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
    if not key:
        if settings.esp.provider == "outbox":
            return warn(
                SECTION,
                name,
                f"{SECRET_ENV} is not set: the outbox signs links with the built-in development key",
                f"set {SECRET_ENV} to a long random value ({make}) before sending for real",
            )
        return fail(SECTION, name, f"{SECRET_ENV} is not set: no send can sign its links", f"set it ({make})")
    if key == DEVELOPMENT_SECRET:
        return fail(
            SECTION,
            name,
            f"{SECRET_ENV} is the built-in development key, known to everyone",
            f"set a new one ({make})",
        )
    if len(key) < minimum:
        return fail(
            SECTION,
            name,
            f"{SECRET_ENV} has {len(key)} characters, fewer than {minimum}",
            f"set a longer one ({make}); links already sent stop working when it changes",
        )
    return ok(SECTION, name, f"{SECRET_ENV} set ({len(key)} characters)")


def check_worker(settings: Settings, state: ServiceState, *, now: dt.datetime | None = None) -> list[Check]:
    """A worker is needed when a send is scheduled, a weekly rule stands, or a send is running."""
    from newsletter.schedule.worker import HEARTBEAT_SECONDS

    now = utcnow() if now is None else now
    waiting = len(state.scheduled) + state.weekly_rules + state.running
    checks: list[Check] = []
    if state.heartbeat is None:
        seen = "no worker has ever been seen"
        alive = False
    else:
        worker, seen_at = state.heartbeat
        age = (now - _aware(seen_at)).total_seconds()
        alive = age <= _MISSED_BEATS * HEARTBEAT_SECONDS
        seen = f"worker {worker} seen {_ago(age)} ago"
    if not waiting:
        checks.append(ok(SECTION, "worker", f"nothing scheduled or running; {seen}"))
    elif alive:
        checks.append(ok(SECTION, "worker", f"{seen}, for {_waiting(state)}"))
    else:
        checks.append(
            fail(
                SECTION,
                "worker",
                f"{_waiting(state)} wait for a worker, and {seen}",
                "run `newsletter worker` (under a service manager that restarts it)",
            )
        )
    checks += _next_issue(settings, state)
    return checks


def _next_issue(settings: Settings, state: ServiceState) -> list[Check]:
    if not state.scheduled:
        return []
    at, issue_file = state.scheduled[0]
    when = f" for {at:%Y-%m-%d %H:%M} UTC" if at else ""
    path = Path(issue_file)
    name = "next scheduled issue"
    if not path.is_file():
        return [
            fail(SECTION, name, f"{issue_file}{when} does not exist", "restore the file, or cancel the send")
        ]
    try:
        prepare_issue(path, settings)
    except NewsletterError as exc:
        return [fail(SECTION, name, f"{issue_file}{when}: {exc}", f"fix it: `newsletter check {issue_file}`")]
    return [ok(SECTION, name, f"{issue_file}{when} passes check")]


def _waiting(state: ServiceState) -> str:
    parts = []
    if state.scheduled:
        parts.append(f"{len(state.scheduled)} scheduled send{'s' * (len(state.scheduled) != 1)}")
    if state.weekly_rules:
        parts.append(f"{state.weekly_rules} weekly rule{'s' * (state.weekly_rules != 1)}")
    if state.running:
        parts.append(f"{state.running} running send{'s' * (state.running != 1)}")
    return " and ".join(parts)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _first_line(exc: Exception) -> str:
    return (str(getattr(exc, "orig", None) or exc).splitlines() or [type(exc).__name__])[0][:300]
