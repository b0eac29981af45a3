"""From the ``ISSUE`` an editor types to the reports of its sends.

``ISSUE`` is an issue file (``issues/2026-11-20.yaml``), whose ``date`` names its sends as it does
for ``send`` and ``status``, or the date itself (``2026-11-20``), so an issue whose file has since
moved or changed can still be reported on. An issue with no send is an error (exit 2), not an
empty report: the editor most likely typed the wrong issue.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from newsletter.config import Settings
from newsletter.content.loader import load_issue
from newsletter.errors import BadInput
from newsletter.report.model import SendReport
from newsletter.store.db import open_database
from newsletter.store.ledger import ledger_for
from newsletter.store.reports import send_figures

__all__ = ["HOURS", "NoSends", "collect", "issue_date"]

#: The hourly series covers the first three days after a send; later events share one bucket.
HOURS = 72


class NoSends(BadInput):
    """The issue was never sent."""


def issue_date(issue: str) -> dt.date:
    """The date an ``ISSUE`` argument names: an existing file's ``date``, else an ISO date."""
    path = Path(issue)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        exists = False
    if exists:
        return load_issue(path).issue.date
    try:
        return dt.date.fromisoformat(issue)
    except ValueError:
        shown = issue if len(issue) <= 80 else issue[:80] + "…"
        raise BadInput(f"{shown!r} is neither an issue file nor a date (YYYY-MM-DD)") from None


def collect(settings: Settings, issue: str, *, hours: int = HOURS) -> list[SendReport]:
    """The reports of every send of ``issue``, in the order they were made."""
    date = issue_date(issue)
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            sends = ledger_for(conn).sends(date)
            if not sends:
                raise NoSends(f"issue {date} has not been sent (`newsletter status` lists the sends)")
            return [SendReport(send_figures(conn, send, hours=hours)) for send in sends]
    finally:
        engine.dispose()
