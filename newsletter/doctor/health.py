"""The list's health: complaint and hard-bounce rates of the latest finished sends, judged against
the thresholds ``report`` knows (complaints 0.1% / 0.3%, Gmail's and Yahoo's; hard bounces 2% / 5%).

The rates are pooled over the sends (events over accepted recipients), so one small send does not
swing the verdict.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.doctor.model import Check, fail, ok, warn
from newsletter.report.model import (
    COMPLAINT_LIMIT,
    COMPLAINT_WARNING,
    HARD_BOUNCE_LIMIT,
    HARD_BOUNCE_WARNING,
    ComplaintLevel,
    SendReport,
    level,
)
from newsletter.store.models import EventKind, SendState

__all__ = ["SECTION", "check_health"]

SECTION: Final = "The list's health"

_RULES: Final = (
    (
        EventKind.COMPLAINED,
        "complaints",
        COMPLAINT_WARNING,
        COMPLAINT_LIMIT,
        "make the sign-up promise clear and the unsubscribe link easy to find; drop readers who never open",
    ),
    (
        EventKind.BOUNCED_HARD,
        "hard bounces",
        HARD_BOUNCE_WARNING,
        HARD_BOUNCE_LIMIT,
        "check how addresses get onto the list (double opt-in) and that bounce webhooks arrive",
    ),
)


def check_health(settings: Settings, engine: Engine) -> list[Check]:
    from newsletter.store.ledger import ledger_for
    from newsletter.store.reports import send_figures

    with engine.connect() as conn:
        finished = [send for send in ledger_for(conn).sends() if send.state is SendState.FINISHED]
        latest = sorted(finished, key=lambda send: send.id)[-settings.doctor.health_sends :]
        reports = [SendReport(send_figures(conn, send, hours=1)) for send in latest]
    if not reports:
        return [ok(SECTION, "rates", "no finished send yet")]
    accepted = sum(report.accepted for report in reports)
    span = f"the last {len(reports)} send{'s' * (len(reports) != 1)}"
    checks = []
    for kind, label, warning, limit, fix in _RULES:
        recipients = sum(metric.recipients for r in reports if (metric := r.metric(kind)) is not None)
        rate = recipients / accepted if accepted else None
        found = f"{recipients:,} of {accepted:,} accepted over {span}"
        if rate is not None:
            found = f"{rate:.2%}: " + found
        verdict = level(rate, warning, limit)
        if verdict is ComplaintLevel.OVER_LIMIT:
            checks.append(fail(SECTION, label, f"{found}, at or over {limit:.1%}", fix))
        elif verdict is ComplaintLevel.WARNING:
            checks.append(warn(SECTION, label, f"{found}, over {warning:.1%}", fix))
        else:
            checks.append(ok(SECTION, label, found))
    return checks
