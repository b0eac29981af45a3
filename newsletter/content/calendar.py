"""Send days: which date the next issue goes out, and which issue file belongs to which day.

Both the ``draft`` command (which file to start) and the scheduler (which file a weekly rule sends)
ask these questions, so the answers live here, below both: an issue file is named by its send date,
``YYYY-MM-DD.yaml``, and that name is the only link between a day and its issue.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from newsletter.config import WEEKDAYS, NewsletterSettings

__all__ = ["issue_file_for", "issue_files", "next_free_send_date", "next_send_date"]


def next_send_date(settings: NewsletterSettings, now: dt.datetime | None = None) -> dt.date:
    """The next configured send weekday whose send time is still ahead, in the newsletter's zone."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(settings.tz)
    target = WEEKDAYS.index(settings.send_weekday)
    days = (target - now.weekday()) % 7
    if days == 0 and now.time() >= settings.send_time:
        days = 7
    return now.date() + dt.timedelta(days=days)


def next_free_send_date(
    settings: NewsletterSettings, directory: Path, now: dt.datetime | None = None
) -> dt.date:
    """The first send date from :func:`next_send_date` on whose issue file does not exist yet.

    An issue written ahead (or a sample shipped for that week) is never in the way of ``draft``:
    the draft goes to the week after. Issue files are finite, so the walk ends.
    """
    day = next_send_date(settings, now)
    while issue_file_for(directory, day).exists():
        day += dt.timedelta(days=7)
    return day


def issue_files(directory: Path) -> list[Path]:
    """Issue files named ``YYYY-MM-DD.yaml``, oldest first."""
    found = []
    for path in directory.glob("*.yaml"):
        try:
            dt.date.fromisoformat(path.stem)
        except ValueError:
            continue
        found.append(path)
    return sorted(found)


def issue_file_for(directory: Path, day: dt.date) -> Path:
    """Where the issue sent on ``day`` lives (it may not exist yet)."""
    return directory / f"{day.isoformat()}.yaml"
